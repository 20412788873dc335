# podspawn-helper built from this checkout, statically linked: the broker bind-mounts it into
# every container (/.podspawn/podspawn-helper), whatever libc the image has, or none. The
# default of services.podspawn.helperPackage and the flake's packages.<system>.podspawn-helper.
#
# Call it with pkgs.pkgsStatic.callPackage: musl, linked statically by nixpkgs' static stdenv.
# Why not glibc with +crt-static (what scripts/build-helper.sh does for the .deb/.rpm): a static
# glibc keeps its own paths in the binary (dlopen's search directories, gconv modules, locale
# files), which on Nix are /nix/store/<hash>-glibc paths. Nix would then count glibc as a run-time
# dependency of the helper, and the binary would name store paths that no container has. Static
# musl names none, so the output below must reference no store path at all (allowedReferences).
# The price: if the binary cache has no pkgsStatic rustc for this nixpkgs, Nix builds one once.
{ lib, stdenv, rustPlatform }:

let
  cargo = builtins.fromTOML (builtins.readFile ../helper/Cargo.toml);
  readelf = "${stdenv.cc.targetPrefix}readelf";
in
rustPlatform.buildRustPackage {
  pname = cargo.package.name;
  inherit (cargo.package) version;

  # The workspace manifest, its lock file and the helper crate: the helper builds without the
  # rest, so a change to podspawn's own sources does not rebuild it.
  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: _type:
      let rel = lib.removePrefix (toString ../. + "/") (toString path);
      in lib.any (p: rel == p || lib.hasPrefix "${p}/" rel) [ "Cargo.toml" "Cargo.lock" "helper" ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # The same profile as the packages' helper (Cargo.toml [profile.helper]: size, LTO, abort).
  # No RUSTFLAGS: nixpkgs' cargo setup hook puts -C target-feature=+crt-static in the target's
  # rustflags (.cargo/config) on a static host platform, and RUSTFLAGS would replace them.
  buildType = "helper";
  cargoBuildFlags = [ "-p" "podspawn-helper" ];

  # The helper's tests start containers and SFTP clients (see README.md).
  doCheck = false;

  # Nothing in the output may name a store path: it runs inside containers, not on the host.
  allowedReferences = [ ];

  # Fails the build if the binary is dynamically linked: no ELF interpreter, no needed
  # libraries; then runs it.
  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    bin=$out/bin/podspawn-helper
    if ${readelf} -lW "$bin" | grep -q 'INTERP'; then
      echo "podspawn-helper: $bin has an ELF interpreter (dynamically linked):" >&2
      ${readelf} -lW "$bin" >&2
      exit 1
    fi
    if ${readelf} -dW "$bin" | grep -q '(NEEDED)'; then
      echo "podspawn-helper: $bin needs shared libraries:" >&2
      ${readelf} -dW "$bin" >&2
      exit 1
    fi
    "$bin" --version | grep -qxF 'podspawn-helper ${cargo.package.version}'
    runHook postInstallCheck
  '';

  meta = {
    description = cargo.package.description;
    homepage = cargo.package.repository;
    license = lib.licenses.agpl3Plus;
    mainProgram = "podspawn-helper";
    platforms = lib.platforms.linux;
  };
}
