{ imports = [ ./minimal.nix ]; services.podspawn.users.podspawn.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJCUiYx2s5pbiPL0V8r8kDknESVu0CD3HBVy4rXbJ0D x" ]; }
