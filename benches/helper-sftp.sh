#!/usr/bin/env bash
# Throughput of podspawn-helper's sftp-server next to OpenSSH's own sftp-server, on the same
# transfer through the same OpenSSH sftp client (`sftp -D`, no ssh, no cipher: the servers are
# the only difference). Not a test: nothing fails on a number.
#
#   bash benches/helper-sftp.sh                       # 1 GiB, 5 rounds, files in /dev/shm
#   BENCH_MIB=256 BENCH_ROUNDS=3 BENCH_DIR=/var/tmp bash benches/helper-sftp.sh
#
# Needs openssh-client and openssh-sftp-server (Debian). Prints the median MiB/s of each
# direction for each server and the ratio helper/OpenSSH (target: >= 0.9).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${BENCH_MIB:-1024}
ROUNDS=${BENCH_ROUNDS:-5}
OPENSSH_SERVER=${OPENSSH_SFTP_SERVER:-/usr/lib/openssh/sftp-server}
command -v sftp >/dev/null || { echo "missing sftp (apt-get install openssh-client)" >&2; exit 1; }
[ -x "$OPENSSH_SERVER" ] || { echo "missing $OPENSSH_SERVER (apt-get install openssh-sftp-server)" >&2; exit 1; }
HELPER=$(bash scripts/build-helper.sh | tail -n 1)
HELPER=$(realpath "$HELPER")

WORK=$(mktemp -d "${BENCH_DIR:-/dev/shm}/podspawn-helper-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/remote"
printf '#!/bin/sh\nexec %s\n' "$OPENSSH_SERVER" >"$WORK/openssh.sh"
printf '#!/bin/sh\nexec %s sftp-server\n' "$HELPER" >"$WORK/helper.sh"
chmod +x "$WORK/openssh.sh" "$WORK/helper.sh"
head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/src"

# Seconds (with nanoseconds) one sftp batch takes.
timed() { # server-wrapper batch-line
  local t0 t1
  printf '%s\n' "$2" >"$WORK/batch"
  t0=$(date +%s.%N)
  # OpenSSH's server starts in its working directory (sshd chdirs to the home), the helper in
  # $HOME: give both the same.
  (cd "$WORK/remote" && HOME="$WORK/remote" sftp -q -b "$WORK/batch" -D "$1" >/dev/null)
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

for server in openssh helper; do : >"$WORK/$server.put"; : >"$WORK/$server.get"; done
for ((i = 1; i <= ROUNDS; i++)); do
  # Alternate the order so neither server always runs on a warmer cache.
  order="openssh helper"; [ $((i % 2)) = 0 ] && order="helper openssh"
  for server in $order; do
    rm -f "$WORK/remote/dst" "$WORK/back"
    timed "$WORK/$server.sh" "put $WORK/src dst" >>"$WORK/$server.put"
    timed "$WORK/$server.sh" "get dst $WORK/back" >>"$WORK/$server.get"
    cmp -s "$WORK/src" "$WORK/back" || { echo "$server: the file came back different" >&2; exit 1; }
  done
done

printf '%s MiB, %s rounds, files in %s; median MiB/s\n' "$MIB" "$ROUNDS" "$(dirname "$WORK")"
printf '%-10s %12s %12s\n' direction openssh helper
for dir in put get; do
  o=$(median <"$WORK/openssh.$dir"); h=$(median <"$WORK/helper.$dir")
  awk -v d="$dir" -v m="$MIB" -v o="$o" -v h="$h" \
    'BEGIN {printf "%-10s %12.1f %12.1f   ratio helper/openssh %.2f\n", d, m / o, m / h, o / h}'
done
