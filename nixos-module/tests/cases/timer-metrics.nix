{
  imports = [ ./minimal.nix ];
  services.podspawn.cleanup = { mode = "timer"; interval = "5m"; };
  services.podspawn.metrics.enable = true;
}
