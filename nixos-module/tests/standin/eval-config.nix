# The stand-in of nixpkgs' nixos/lib/eval-config.nix: the stand-in option tree plus `modules`.
{ lib, pkgs, modules, specialArgs ? { } }:

lib.evalModules {
  modules = [ ./nixos.nix ] ++ modules;
  specialArgs = { inherit pkgs; } // specialArgs;
}
