{ imports = [ ./minimal.nix ]; services.podspawn.users.alice.mode = "forever"; }
