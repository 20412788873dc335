# A stand-in for the parts of nixpkgs' package set that the podspawn module, package.nix and
# flake.nix use. Nothing here builds a real package: fake derivations are enough for
# `nix flake check --no-build`. runCommand and writeText are real, so run.sh can build the
# module's checked config file with a podspawn binary given as `podspawn` (sandbox off).
{ lib, system, podspawn ? null }:

let
  fake = name: attrs: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name}: the stand-in nixpkgs cannot build packages >&2; exit 1" ];
  } // attrs);

  jsonValue = with lib.types;
    let valueType = nullOr (oneOf [ bool int float str path (attrsOf valueType) (listOf valueType) ]) // { description = "JSON value"; };
    in valueType;

  pkgs = {
    inherit lib system;
    stdenv.hostPlatform.system = system;
    stdenv.cc.targetPrefix = "";
    # nixpkgs' static package set (musl, static linking); the stand-in's packages are all fakes.
    pkgsStatic = pkgs;

    callPackage = f: args:
      let fn = if builtins.isFunction f then f else import f;
      in fn (builtins.intersectAttrs (builtins.functionArgs fn) pkgs // args);

    writeText = name: text: derivation {
      inherit name system text;
      builder = "/bin/sh";
      args = [ "-c" "printf %s \"$text\" > \"$out\"" ];
    };
    runCommand = name: env: script: derivation ({
      inherit name system;
      builder = "/bin/sh";
      args = [ "-e" "-c" script ]; # stdenv builders run with set -e
      PATH = "/usr/bin:/bin";
    } // env);

    formats.yaml = _: { type = jsonValue; };
    formats.json = _: { type = jsonValue; };

    rustPlatform.buildRustPackage = a: fake "${a.pname}-${a.version}"
      {
        inherit (a) src;
        cargoLock = a.cargoLock.lockFile;
      } // { inherit (a) meta; };

    mkShell = a: fake "shell" { packages = map toString (a.packages or [ ]); inputsFrom = map toString (a.inputsFrom or [ ]); };

    dockerTools.buildLayeredImage = a: fake "docker-image-${a.name}.tar.gz" { contents = map toString (a.contents or [ ]); };

    # Evaluates every node as a stand-in NixOS system and the test script.
    testers.runNixOSTest = t:
      let
        m = if builtins.isFunction t then t { inherit pkgs lib; } else t;
        nodes = builtins.mapAttrs
          (_: node: (import ./eval-config.nix { inherit lib pkgs; modules = [ node ] ++ (m.defaults or [ ]); }).config.system.build.toplevel)
          m.nodes;
      in
      fake "vm-test-run-${m.name}" {
        nodes = builtins.attrValues nodes;
        inherit (m) testScript;
      };
  } // lib.genAttrs [ "busybox" "cargo" "clippy" "deadnix" "docker" "nixpkgs-fmt" "openssh" "pam" "rustc" "rustfmt" ]
    (n: fake n { })
  // lib.optionalAttrs (podspawn != null) { inherit podspawn; };
in
pkgs
