{ imports = [ ./minimal.nix ]; services.podspawn.cleanup.interval = "soon"; }
