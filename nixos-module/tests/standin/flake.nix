# Stand-in for the nixpkgs flake input, for
#   nix flake check --no-build --no-write-lock-file --override-input nixpkgs path:<this directory>
# It offers what flake.nix uses: lib (with nixosSystem) and legacyPackages.<system>.
{
  description = "stand-in nixpkgs for podspawn's flake checks (no packages, no NixOS)";

  outputs = { self }:
    let
      lib = import ./lib.nix;
      systems = [ "x86_64-linux" "aarch64-linux" ];
    in
    {
      lib = lib // {
        nixosSystem = { system, modules, specialArgs ? { } }:
          import ./eval-config.nix {
            inherit lib modules specialArgs;
            pkgs = self.legacyPackages.${system};
          };
      };
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
    };
}
