# podspawn built from this checkout (Cargo.lock pins every crate). Used by flake.nix and as the
# default of services.podspawn.package when the module is imported without the flake.
{ lib, rustPlatform, pam }:

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
      in lib.any (p: rel == p || lib.hasPrefix "${p}/" rel) [ "Cargo.toml" "Cargo.lock" "src" "systemd" "helper" "pam" ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # The workspace's default members: podspawn, podspawn-helper and the PAM session module
  # pam_podspawn (cdylib; links against linux-pam), installed where NixOS' PAM rules expect it:
  # lib/security/pam_podspawn.so (services.podspawn.portForwarding adds it to sshd's stack).
  buildInputs = [ pam ];
  postInstall = ''
    mkdir -p $out/lib/security
    mv $out/lib/libpam_podspawn.so $out/lib/security/pam_podspawn.so
    rm -f $out/lib/libpam_podspawn.a
    chmod 0444 $out/lib/security/pam_podspawn.so
  '';

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
