# The README's configuration.nix example (services.podspawn part) as a whole NixOS system, for
# the flake's checks.module. Keep it in step with nixos-module/README.md.
{
  boot.isContainer = true;
  system.stateVersion = "25.11";

  virtualisation.docker.enable = true;
  services.openssh.enable = true;

  services.podspawn = {
    enable = true;
    settings = {
      defaults = { image = "ubuntu:24.04"; cpus = 2; memory = "2g"; };
      session = { mode = "grace-period"; grace_period = "5m"; max_lifetime = "8h"; };
      resources.max_per_user = 3;
    };
    users = {
      alice.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJCUiYx2s5pbiPL0V8r8kDknESVu0CD3HBVy4rXbJ0D alice@laptop" ];
      bob = {
        keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMX0B2kKf1v3lqjM7o3ZcY7Y3eD0n2bq4Fh0xG1L5wqS bob@desk" ];
        image = "debian:12";
        mode = "named";
      };
    };
  };
}
