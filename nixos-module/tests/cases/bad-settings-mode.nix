{ imports = [ ./minimal.nix ]; services.podspawn.settings.session.mode = "forever"; }
