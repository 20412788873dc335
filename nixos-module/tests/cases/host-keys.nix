# run.sh writes a throwaway host key here so that `sshd -t` can check the rendered file.
{ services.openssh.hostKeys = [ (builtins.getEnv "PODSPAWN_TEST_HOSTKEY") ]; services.openssh.ports = [ 2222 ]; }
