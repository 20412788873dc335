# podspawn built from this checkout (Cargo.lock pins every crate). Used by flake.nix and as the
# default of services.podspawn.package when the module is imported without the flake.
{ lib, rustPlatform }:

let
  cargo = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = cargo.package.name;
  inherit (cargo.package) version;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: _type:
      let rel = lib.removePrefix (toString ../. + "/") (toString path);
      in lib.any (p: rel == p || lib.hasPrefix "${p}/" rel) [ "Cargo.toml" "Cargo.lock" "src" "systemd" ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # The test suite needs root, a Docker engine and a real sshd (see README.md); the flake's
  # checks.vm test logs a user in on a NixOS VM instead.
  doCheck = false;

  meta = {
    description = cargo.package.description;
    homepage = cargo.package.repository;
    license = lib.licenses.agpl3Plus;
    mainProgram = "podspawn";
    platforms = lib.platforms.linux;
  };
}
