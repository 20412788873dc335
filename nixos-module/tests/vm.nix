# NixOS VM test (pkgs.testers.runNixOSTest): a declared user logs in over ssh from another machine
# and lands in a container of the server's Docker engine. Needs KVM and a binary cache, so it runs
# in users' CI (`nix build .#checks.x86_64-linux.vm`), not in this repository's offline CI, which
# only evaluates it (run.sh: nix flake check --no-build with the stand-in nixpkgs).
# vm-test-key is a throwaway key for this test only, like nixpkgs' snakeoil keys.
{ module }:
{ pkgs, ... }:

let
  # Enough for podspawn's start command (sh, grep, cat, chown, sleep) and an interactive shell.
  image = pkgs.dockerTools.buildLayeredImage {
    name = "podspawn-test";
    tag = "latest";
    contents = [ pkgs.busybox ];
    extraCommands = ''
      mkdir -p etc run tmp
      chmod 1777 tmp
      echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd
      echo 'root:x:0:' > etc/group
    '';
    config.Cmd = [ "/bin/sh" ];
  };
in
{
  name = "podspawn";

  nodes.server = {
    imports = [ module ];
    virtualisation.memorySize = 2048;
    virtualisation.diskSize = 4096;
    virtualisation.docker.enable = true;
    services.openssh.enable = true;
    networking.firewall.allowedTCPPorts = [ 22 ];
    services.podspawn = {
      enable = true;
      settings.defaults = { image = "podspawn-test:latest"; shell = "/bin/sh"; };
      users.alice.keys = [ (builtins.readFile ./vm-test-key.pub) ];
    };
  };

  nodes.client = { };

  testScript = ''
    start_all()
    server.wait_for_unit("docker.service")
    server.wait_for_unit("sshd.service")
    server.wait_for_unit("podspawn.socket")
    server.succeed("docker load < ${image}")

    # What the .deb gives: the account, the key file and its modes, the wrapper.
    server.succeed("id -nG alice | grep -qw podspawn-users")
    server.succeed("test \"$(stat -c '%U:%G %a' /etc/podspawn/keys/alice)\" = 'root:podspawn 640'")
    server.succeed("test \"$(stat -c '%U:%G %a' /etc/podspawn/keys)\" = 'root:podspawn 750'")
    server.succeed("test \"$(stat -c '%U %a' /etc/podspawn/bin/podspawn)\" = 'root 755'")
    server.succeed("sshd -T -C user=alice,host=client,addr=192.168.1.1 | grep -qx 'forcecommand exec /etc/podspawn/bin/podspawn spawn'")

    # Forwarding (portForwarding = "auto", sshd with UsePAM): pam_podspawn.so is a required
    # session rule of sshd, and members get TCP forwarding (into their container) and nothing else.
    server.succeed("grep -Eq '^session[[:space:]]+required[[:space:]]+/nix/store/[^ ]+/lib/security/pam_podspawn[.]so' /etc/pam.d/sshd")
    effective = server.succeed("sshd -T -C user=alice,host=client,addr=192.168.1.1").splitlines()
    for want in ["allowtcpforwarding yes", "allowstreamlocalforwarding no", "x11forwarding no", "permittunnel no"]:
        assert want in effective, want

    client.succeed("install -D -m 600 ${./vm-test-key} /root/.ssh/id_ed25519")
    ssh = "ssh -o StrictHostKeyChecking=no -o BatchMode=yes alice@server"
    out = client.succeed(f"{ssh} 'id -un; test -f /.dockerenv && echo in-a-container'")
    assert "in-a-container" in out, out
    assert "alice" in out, out
    server.succeed("docker ps --filter label=podspawn-user=alice --format '{{.Names}}' | grep -qx podspawn-alice")

    # The exit status of the command in the container is ssh's.
    client.fail(f"{ssh} 'exit 3'")
    # add-user refuses on NixOS: users are declared in the configuration.
    out = server.fail("podspawn add-user bob --key 'ssh-ed25519 AAAA bob' 2>&1")
    assert "services.podspawn.users" in out, out
  '';
}
