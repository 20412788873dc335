{ lib, ... }: { imports = [ ./minimal.nix ]; services.podspawn.users.alice.keys = lib.mkForce [ ]; }
