# Everything podspawn-related that a configuration might leave in place, with enable = false.
# Evaluated with and without the module imported (then the services.podspawn lines are absent).
{ lib, options, ... }: {
  imports = [ ./host-keys.nix ];
  config = lib.mkMerge [
    {
      virtualisation.docker.enable = true;
      services.openssh.enable = true;
      services.openssh.extraConfig = "UseDNS no";
      users.users.carol = { isNormalUser = true; group = "users"; };
      users.groups.users = { };
    }
    (lib.optionalAttrs (options.services ? podspawn) {
      services.podspawn = {
        enable = false;
        users.alice.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJCUiYx2s5pbiPL0V8r8kDknESVu0CD3HBVy4rXbJ0D alice@laptop" ];
        metrics.enable = true;
      };
    })
  ];
}
