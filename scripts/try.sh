#!/bin/sh
# Try podspawn on this machine without touching the system sshd: a private sshd on 127.0.0.1,
# a broker on a private socket, a throwaway user with a fresh key, and a real login into a container.
# Needs root, Docker and OpenSSH. Everything is removed on exit.
set -eu
[ "$(id -u)" = 0 ] || exec sudo -E sh "$0" "$@"
cd "$(dirname "$0")/.."
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || { echo "install openssh-server first" >&2; exit 1; }
cargo build --release --locked
ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ROOT=/var/tmp/podspawn-try-$ID
BIN_DIR=/usr/local/libexec/podspawn-try-$ID
USERNAME=try$ID
IMAGE=${PODSPAWN_TRY_IMAGE:-podspawn-test:latest}
PORT=${PODSPAWN_TRY_PORT:-2222}
mkdir -p "$ROOT/client" "$BIN_DIR" /run/sshd
chmod 0755 "$ROOT" "$BIN_DIR"
install -m 0755 target/release/podspawn "$BIN_DIR/podspawn"
P="$BIN_DIR/podspawn --config $ROOT/config.yaml"
cleanup() {
  set +e
  [ -f "$ROOT/sshd.pid" ] && kill "$(cat "$ROOT/sshd.pid")" 2>/dev/null
  [ -n "${BROKER:-}" ] && kill "$BROKER" 2>/dev/null
  docker rm -f "podspawn-$USERNAME" >/dev/null 2>&1
  docker network rm "podspawn-$USERNAME-net" >/dev/null 2>&1
  userdel -r -f "$USERNAME" >/dev/null 2>&1
  rm -rf "$ROOT" "$BIN_DIR"
}
trap cleanup EXIT INT TERM
[ "$IMAGE" = podspawn-test:latest ] && sh tests/support/build-test-image.sh "$IMAGE"
cat > "$ROOT/config.yaml" <<CFG
auth:
  key_dir: $ROOT/keys
defaults:
  image: $IMAGE
  shell: /bin/bash
session:
  grace_period: 10s
state:
  db_path: $ROOT/state/state.db
  lock_dir: $ROOT/state/locks
  homes_dir: $ROOT/state/homes
users_dir: $ROOT/users
broker:
  socket: $ROOT/run/podspawn.sock
CFG
chmod 0644 "$ROOT/config.yaml"
ssh-keygen -q -t ed25519 -N '' -C try -f "$ROOT/client/id"
ssh-keygen -q -t ed25519 -N '' -f "$ROOT/hostkey"
$P add-user "$USERNAME" --key "$(cat "$ROOT/client/id.pub")"
$P serve --listen "$ROOT/run/podspawn.sock" 2>"$ROOT/broker.log" &
BROKER=$!
cat > "$ROOT/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $ROOT/hostkey
PidFile $ROOT/sshd.pid
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
# podspawn's Match block, rendered by this build for its private config and socket.
$P sshd-block --binary "$BIN_DIR/podspawn" >> "$ROOT/sshd_config"
/usr/sbin/sshd -t -f "$ROOT/sshd_config"
/usr/sbin/sshd -f "$ROOT/sshd_config" -E "$ROOT/sshd.log"
sleep 0.5
SSH="ssh -i $ROOT/client/id -p $PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
echo "podspawn try-out: logging in as $USERNAME@127.0.0.1:$PORT (image $IMAGE)"
if [ -t 0 ]; then
  echo "You are in $USERNAME's own container; exit the shell to clean everything up."
  $SSH -t "$USERNAME@127.0.0.1" || true
else
  $SSH "$USERNAME@127.0.0.1" 'echo "hello from $(hostname) as $(id -un) (uid $(id -u)) in $(pwd)"; cat /proc/1/cgroup | head -1'
fi
echo "container: $(docker ps --filter label=podspawn-user=$USERNAME --format '{{.Names}} {{.ID}} {{.Status}}')"
