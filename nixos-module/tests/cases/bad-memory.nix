# Only podspawn knows what a size is: the module's build-time `podspawn config validate` says so.
{ imports = [ ./minimal.nix ]; services.podspawn.settings.defaults.memory = "lots"; }
