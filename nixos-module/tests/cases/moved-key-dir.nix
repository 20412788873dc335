{ imports = [ ./minimal.nix ]; services.podspawn.settings.auth.key_dir = "/var/lib/keys"; }
