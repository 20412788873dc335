#!/usr/bin/env bash
# What the test suite (make test) and CI (.ci/run) need, checked in one place so they cannot drift.
#
#   scripts/test-deps.sh            check; as root, install what is missing (Debian/Ubuntu: apt-get)
#   scripts/test-deps.sh --check    check only: exit 1 with the command that installs what is missing
#
# Every tool is checked by what the tests run. Missing Debian packages are installed with apt-get
# (as root, after apt-get update, saying what and why); without root the script stops at once and
# prints the one command that installs them. The Nix formatter and linter of the NixOS module tests
# (nixpkgs-fmt, deadnix) are not Debian packages: built once from crates.io into /usr/local/bin.
# The Docker engine is not installed here (which engine is the administrator's choice): a missing
# or stopped engine is one line saying what to do. Prints nothing else when everything is present,
# but one summary line.
set -euo pipefail
check_only=0
[ "${1:-}" = --check ] && check_only=1
say() { printf 'test-deps: %s\n' "$*"; }
die() { printf 'test-deps: %s\n' "$*" >&2; exit 1; }

# tool (a command, or an absolute path) | Debian package | what needs it
TOOLS='
/usr/sbin/sshd|openssh-server|the private sshd of the end-to-end tests
ssh|openssh-client|test logins
ssh-keygen|openssh-client|test keys
scp|openssh-client|scp transfers
sftp|openssh-client|sftp transfers
/usr/lib/openssh/sftp-server|openssh-sftp-server|sftp sessions and the test image
rsync|rsync|rsync transfers and the test image
useradd|passwd|test accounts
chpasswd|passwd|the stock-sshd confinement tests
pkill|procps|ending test users processes
setpriv|util-linux|running commands as a test user
unshare|util-linux|the journald test (a private mount namespace)
jq|jq|the audit-log filters the README prints
/etc/ssl/certs/ca-certificates.crt|ca-certificates|cargo downloads over https
dpkg-deb|dpkg|building the .deb
dpkg-shlibdeps|dpkg-dev|the .deb dependencies
lintian|lintian|linting the .deb
rpmbuild|rpm|building the .rpm
rpmlint|rpmlint|linting the .rpm
debootstrap|debootstrap|the fresh Debian rootfs the .deb is installed on
systemd-analyze|systemd|verifying the units
make|make|make test
nix-instantiate|nix-bin|the NixOS module tests
python3|python3|a hostile broker client and the make-try pty test
file|file|checking that the in-container helper is statically linked
busybox|busybox-static|the libc-free (Alpine-like) image of the SFTP tests
/usr/include/security/pam_modules.h|libpam0g-dev|building pam_podspawn.so
'

have() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

find_missing() { # sets missing_pkgs (each package once) and missing_why
  missing_pkgs=()
  missing_why=()
  while IFS='|' read -r tool pkg why; do
    [ -n "$tool" ] || continue
    have "$tool" && continue
    case " ${missing_pkgs[*]-} " in *" $pkg "*) ;; *) missing_pkgs+=("$pkg") ;; esac
    missing_why+=("$pkg ($tool: $why)")
  done <<<"$TOOLS"
  # Debian splits venv support (ensurepip) out of python3.
  if ! /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing_pkgs+=(python3-venv)
    missing_why+=("python3-venv (ensurepip: the paramiko venv of the helper's SFTP tests)")
  fi
}
find_missing

command -v cargo >/dev/null 2>&1 ||
  die "cargo not found: install Rust 1.89 or newer (https://rustup.rs), then run this again"

is_root=0
[ "$(id -u)" = 0 ] && is_root=1

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 ||
    die "missing: ${missing_why[*]}; install them with your package manager"
  if [ "$is_root" = 0 ] || [ "$check_only" = 1 ]; then
    die "missing Debian packages; install them with: sudo apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
  fi
  say "installing the Debian packages the tests need:"
  for w in "${missing_why[@]}"; do printf '  %s\n' "$w"; done
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  find_missing
  [ ${#missing_pkgs[@]} -eq 0 ] || die "still missing after apt-get install: ${missing_why[*]}"
fi

[ "$is_root" = 1 ] ||
  die "the tests create host accounts and start sshd, so they run as root: sudo env \"PATH=\$PATH\" make test"

# The Nix formatter and dead-code linter of nixos-module/tests/run.sh, pinned, from crates.io.
nix_tools=()
for spec in nixpkgs-fmt@1.3.0 deadnix@1.3.1; do
  command -v "${spec%@*}" >/dev/null 2>&1 || nix_tools+=("$spec")
done
if [ ${#nix_tools[@]} -gt 0 ]; then
  [ "$check_only" = 0 ] ||
    die "missing (NixOS module tests); install with: cargo install --locked --root /usr/local ${nix_tools[*]}"
  say "building ${nix_tools[*]} from crates.io into /usr/local/bin for the NixOS module tests (once; a few minutes)"
  cargo install --locked --quiet --root /usr/local "${nix_tools[@]}"
fi

# paramiko from PyPI: the second SFTP client of the helper's tests, in a venv under target/
# (helper/tests/sftp_paramiko.rs creates the same venv itself when missing).
venv=${CARGO_TARGET_DIR:-target}/tmp/paramiko-venv
if ! "$venv/bin/python" -c 'import paramiko' >/dev/null 2>&1; then
  [ "$check_only" = 0 ] || die "missing paramiko; install with: python3 -m venv $venv && $venv/bin/pip install paramiko==3.5.1"
  say "installing paramiko 3.5.1 from PyPI into $venv (the helper's second SFTP client)"
  /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install --quiet paramiko==3.5.1
fi

command -v docker >/dev/null 2>&1 ||
  die "no Docker engine: install one (apt-get install docker.io, or Docker's docker-ce) and start it"
docker info >/dev/null 2>&1 ||
  die "the Docker engine is not running: start it (systemctl start docker, or service docker start)"
mkdir -p /run/sshd
say "all present ($(ssh -V 2>&1 | cut -d, -f1), Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(cargo --version | cut -d' ' -f1-2))"
