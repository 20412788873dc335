# The README's example, plus another module's sshd lines on either side of services.podspawn.
{ lib, ... }: {
  imports = [
    ({ ... }: { services.openssh.extraConfig = "LoginGraceTime 30"; })
    ./host-keys.nix
  ];
  virtualisation.docker.enable = true;
  services.openssh.enable = true;
  services.podspawn = {
    enable = true;
    settings = {
      defaults = { image = "ubuntu:24.04"; cpus = 2; memory = "2g"; };
      session = { mode = "grace-period"; grace_period = "5m"; };
      resources.max_per_user = 4;
    };
    users.alice.keys = [
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJCUiYx2s5pbiPL0V8r8kDknESVu0CD3HBVy4rXbJ0D alice@laptop"
      "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 alice@desk"
    ];
    users.bob = {
      keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0 bob" ];
      image = "debian:12";
      mode = "named";
      cpus = 1.5;
    };
    cleanup.interval = "2m";
  };
  services.openssh.extraConfig = lib.mkMerge [ "UseDNS no" ];
}
