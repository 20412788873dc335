# The smallest working configuration; the other cases change one thing each.
{
  imports = [ ./host-keys.nix ];
  virtualisation.docker.enable = true;
  services.podspawn = {
    enable = true;
    users.alice.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJCUiYx2s5pbiPL0V8r8kDknESVu0CD3HBVy4rXbJ0D alice@laptop" ];
  };
}
