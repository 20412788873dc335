{
  description = "podspawn: every SSH user gets their own Docker container behind the host's own OpenSSH";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (system: pkgs: {
        default = self.packages.${system}.podspawn;
        podspawn = pkgs.callPackage ./nixos-module/package.nix { };
        # The in-container helper, static (musl): see nixos-module/helper.nix.
        podspawn-helper = pkgs.pkgsStatic.callPackage ./nixos-module/helper.nix { };
      });

      # services.podspawn, with this flake's packages as the default packages.
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nixos-module ];
        services.podspawn.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        services.podspawn.helperPackage = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.podspawn-helper;
      };
      nixosModules.podspawn = self.nixosModules.default;

      checks = forAllSystems (system: pkgs: {
        package = self.packages.${system}.default;
        helper = self.packages.${system}.podspawn-helper;
        # A whole NixOS system with the README's example: option types, assertions, units.
        module = (lib.nixosSystem {
          inherit system;
          modules = [ self.nixosModules.default ./nixos-module/tests/example.nix ];
        }).config.system.build.toplevel;
        # Logs a declared user in over ssh and checks the session is a container. Needs KVM.
        vm = pkgs.testers.runNixOSTest (import ./nixos-module/tests/vm.nix { module = self.nixosModules.default; });
      });

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${system}.default ];
          packages = [ pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt pkgs.nixpkgs-fmt pkgs.deadnix pkgs.openssh ];
        };
      });

      formatter = forAllSystems (_: pkgs: pkgs.nixpkgs-fmt);
    };
}
