{ lib, ... }: { imports = [ ./minimal.nix ]; virtualisation.docker.enable = lib.mkForce false; }
