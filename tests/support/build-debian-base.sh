#!/bin/sh
# Builds a minimal Debian image with debootstrap (from the mirror the host's apt is configured
# with: no mirror is hard-coded) and imports it as $1 (default podspawn-test-debian:bookworm),
# labelled podspawn-test=1. Cached by name: does nothing if the image exists. Its apt sources
# point at the same mirror, so Podfile `packages:` can be installed in builds from it.
set -eu
TAG="${1:-podspawn-test-debian:bookworm}"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is needed: apt-get install debootstrap" >&2; exit 1; }
MIRROR=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  MIRROR=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
  [ -n "$MIRROR" ] && break
done
if [ -z "$MIRROR" ] && [ -e /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
[ -n "$MIRROR" ] || { echo "no Debian mirror configured in /etc/apt (sources.list.d/*.sources or sources.list)" >&2; exit 1; }
SUITE="${SUITE:-bookworm}"
ROOT=$(mktemp -d /tmp/podspawn-debian.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >/dev/null
rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"*
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOT/etc/apt/sources.list"
tar -C "$ROOT" -c . | docker import --change 'LABEL podspawn-test=1' - "$TAG" >/dev/null
