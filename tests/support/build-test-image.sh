#!/bin/sh
# Builds a small container image from this host's own binaries (no registry needed) and imports it
# as $1 (default podspawn-test:latest). It has sh, bash, coreutils, grep, procps, rsync, scp and
# sftp-server: enough for shells, commands, scp, sftp and rsync sessions. PODSPAWN_IMAGE_EXTRA names
# more host programs to copy in (e.g. "ssh ssh-add git" for the agent-forwarding tests).
set -eu
TAG="${1:-podspawn-test:latest}"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  exit 0
fi
ROOT=$(mktemp -d /tmp/podspawn-image.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/usr/lib" "$ROOT/usr/lib64" "$ROOT/etc" "$ROOT/tmp" \
  "$ROOT/home" "$ROOT/root" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/run" "$ROOT/var/tmp"
ln -s usr/bin "$ROOT/bin"; ln -s usr/sbin "$ROOT/sbin"; ln -s usr/lib "$ROOT/lib"; ln -s usr/lib64 "$ROOT/lib64"
chmod 1777 "$ROOT/tmp" "$ROOT/var/tmp"
copy() { # copy a file keeping its /usr-merged path, plus the libraries it links
  src=$(readlink -f "$1")
  case "$1" in /bin/*|/sbin/*|/lib/*|/lib64/*) dst="/usr$1" ;; *) dst="$1" ;; esac
  mkdir -p "$ROOT$(dirname "$dst")"
  cp -L "$src" "$ROOT$dst"
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*'); do
    case "$lib" in /lib/*|/lib64/*) ldst="/usr$lib" ;; *) ldst="$lib" ;; esac
    if [ ! -e "$ROOT$ldst" ]; then mkdir -p "$ROOT$(dirname "$ldst")"; cp -L "$lib" "$ROOT$ldst"; fi
  done
}
for b in sh dash bash env cat ls id mkdir chown chmod sleep tty stty wc sha256sum md5sum head tail echo \
  true false touch rm mv cp ln grep sed tr dd sort uniq stat readlink dirname basename whoami hostname \
  uname printf test seq yes xargs find pwd ps kill rsync scp nproc date cut od ${PODSPAWN_IMAGE_EXTRA:-}; do
  p=$(which "$b" 2>/dev/null || true)
  [ -n "$p" ] && copy "$p"
done
copy /usr/lib/openssh/sftp-server
for f in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_compat.so.2; do
  [ -e "$f" ] && copy "$f"
done
printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
printf 'passwd: files\ngroup: files\n' > "$ROOT/etc/nsswitch.conf"
tar -C "$ROOT" -c . | docker import --change 'LABEL podspawn-test=1' - "$TAG" >/dev/null
