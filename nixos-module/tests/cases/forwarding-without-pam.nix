# portForwarding = "auto" (the default) where sshd does not use PAM: forwarding stays off, with a
# warning.
{ lib, ... }: {
  imports = [ ./minimal.nix ];
  services.openssh.settings.UsePAM = lib.mkForce false;
}
