#!/usr/bin/env bash
# Builds podspawn-helper statically linked (static-pie, glibc, no NSS), so that it runs in any
# image: Alpine/musl, distroless, or one holding nothing but this file. The musl target is not
# needed: +crt-static on the gnu target links libc in. Checks the result with file(1) and ldd(1),
# and that no NSS module can be loaded at run time (a libnss_* reference means some code called
# getpwnam and friends, which static glibc resolves by dlopen of the host's libraries).
#
# Prints the binary's path on the last line of stdout. Environment: CARGO (default cargo),
# CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
TARGET=x86_64-unknown-linux-gnu
for tool in file ldd; do
  command -v "$tool" >/dev/null || { echo "build-helper: $tool missing (Debian package: ${tool/ldd/libc-bin})" >&2; exit 1; }
done
# --target keeps these artifacts (built with RUSTFLAGS) apart from the host build's, so neither
# invalidates the other.
RUSTFLAGS="-C target-feature=+crt-static" "$CARGO" build --quiet --locked --profile helper \
  --target "$TARGET" -p podspawn-helper >&2
BIN=${CARGO_TARGET_DIR:-target}/$TARGET/helper/podspawn-helper
desc=$(file -b "$BIN")
case $desc in
  *static-pie\ linked*|*statically\ linked*) ;;
  *) echo "build-helper: $BIN is not statically linked: $desc" >&2; exit 1 ;;
esac
if ldd "$BIN" 2>&1 | grep -q '=>'; then
  echo "build-helper: ldd lists shared libraries for $BIN:" >&2; ldd "$BIN" >&2; exit 1
fi
if grep -aq 'libnss_' "$BIN"; then
  echo "build-helper: $BIN references NSS modules (a getpw*/getgr* call crept in)" >&2; exit 1
fi
echo "build-helper: $BIN: $(stat -c %s "$BIN") bytes; $desc" >&2
echo "$BIN"
