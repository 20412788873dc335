#!/bin/sh
# Try podspawn on this machine without touching the system sshd: a private sshd on 127.0.0.1,
# a broker on a private socket, a throwaway user with a fresh key, and a real login into a container.
# Needs root (re-runs itself with sudo), a running Docker engine and OpenSSH's sshd. Everything it
# creates (account, container, network, files, sshd, broker) is removed on exit.
#
# Environment: PODSPAWN_TRY_PORT (default 2222), PODSPAWN_TRY_USER (default try<random>),
# PODSPAWN_TRY_IMAGE (default podspawn-test:latest, built from this host's binaries),
# PODSPAWN_TRY_BIN (a podspawn binary to use instead of building one).
set -eu
step() { echo "==> make try: $*"; }
die() { echo "make try: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "needs root (it creates an account and starts sshd): run it as root"
  step "re-running as root with sudo (it creates an account and starts sshd)"
  exec sudo -E env "PATH=$PATH" sh "$0" "$@"
fi
cd "$(dirname "$0")/.."
[ -x /usr/sbin/sshd ] || die "no OpenSSH server: install it with: apt-get install openssh-server"
command -v ssh >/dev/null 2>&1 || die "no ssh client: install it with: apt-get install openssh-client"
command -v docker >/dev/null 2>&1 ||
  die "no Docker engine: install one (apt-get install docker.io, or Docker's docker-ce) and start it"
docker info >/dev/null 2>&1 ||
  die "the Docker engine is not running: start it (systemctl start docker, or service docker start)"
IMAGE=${PODSPAWN_TRY_IMAGE:-podspawn-test:latest}
PORT=${PODSPAWN_TRY_PORT:-2222}
if [ -n "${PODSPAWN_TRY_BIN:-}" ]; then
  BUILT=$PODSPAWN_TRY_BIN
else
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust 1.89 or newer (https://rustup.rs), or run: sudo env \"PATH=\$PATH\" make try"
  step "building podspawn (cargo build --release --locked)"
  cargo build --release --locked
  BUILT=target/release/podspawn
fi
USERNAME=${PODSPAWN_TRY_USER:-try$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
id "$USERNAME" >/dev/null 2>&1 && die "an account $USERNAME exists already; choose another: PODSPAWN_TRY_USER=NAME make try"
ROOT=/var/tmp/podspawn-try-$USERNAME
BIN_DIR=/usr/local/libexec/podspawn-try-$USERNAME
cleanup() {
  set +e
  trap - EXIT INT TERM
  if [ -f "$ROOT/sshd.pid" ]; then
    pid=$(cat "$ROOT/sshd.pid")
    kill "$pid" 2>/dev/null
    # The listener goes with the process: wait for it, so the port is free when we return.
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  [ -n "${BROKER:-}" ] && kill "$BROKER" 2>/dev/null && wait "$BROKER" 2>/dev/null
  pkill -KILL -u "$USERNAME" 2>/dev/null
  docker ps -aq --filter "label=podspawn-user=$USERNAME" | xargs -r docker rm -f >/dev/null 2>&1
  docker network ls -q --filter "label=podspawn-user=$USERNAME" | xargs -r docker network rm >/dev/null 2>&1
  userdel -r -f "$USERNAME" >/dev/null 2>&1
  groupdel "$USERNAME" >/dev/null 2>&1
  rm -rf "$ROOT" "$BIN_DIR"
  step "removed $USERNAME, its container and network, the private sshd and broker, and $ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$ROOT/client" "$BIN_DIR" /run/sshd
chmod 0755 "$ROOT" "$BIN_DIR"
install -m 0755 "$BUILT" "$BIN_DIR/podspawn"
P="$BIN_DIR/podspawn --config $ROOT/config.yaml"
if [ "$IMAGE" = podspawn-test:latest ]; then
  step "image $IMAGE (built from this host's own binaries; no registry needed)"
  sh tests/support/build-test-image.sh "$IMAGE"
else
  docker image inspect "$IMAGE" >/dev/null 2>&1 ||
    die "image $IMAGE is not on this host: docker pull $IMAGE (or unset PODSPAWN_TRY_IMAGE)"
  step "image $IMAGE"
fi
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
step "throwaway user $USERNAME with a fresh key"
ssh-keygen -q -t ed25519 -N '' -C try -f "$ROOT/client/id"
ssh-keygen -q -t ed25519 -N '' -f "$ROOT/hostkey"
$P add-user "$USERNAME" --key "$(cat "$ROOT/client/id.pub")" >/dev/null
step "broker on $ROOT/run/podspawn.sock (log: $ROOT/broker.log)"
$P serve --listen "$ROOT/run/podspawn.sock" 2>"$ROOT/broker.log" &
BROKER=$!
i=0
until [ -S "$ROOT/run/podspawn.sock" ]; do
  kill -0 "$BROKER" 2>/dev/null || die "the broker did not start: $(tail -1 "$ROOT/broker.log" | tr -d '\r')"
  i=$((i + 1)); [ $i -lt 200 ] || die "the broker did not start within 20s: $(tail -1 "$ROOT/broker.log" | tr -d '\r')"
  sleep 0.1
done
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
step "private sshd on 127.0.0.1:$PORT (the system sshd is untouched)"
# sshd writes its pid file once it listens; it exits at once if it cannot.
sshd_failed() {
  grep -q 'Address already in use' "$ROOT/sshd.log" 2>/dev/null &&
    die "port $PORT is in use; choose another: PODSPAWN_TRY_PORT=$((PORT + 1)) make try"
  die "sshd did not start: $(tail -1 "$ROOT/sshd.log" | tr -d '\r')"
}
/usr/sbin/sshd -f "$ROOT/sshd_config" -E "$ROOT/sshd.log" || sshd_failed
i=0
until [ -s "$ROOT/sshd.pid" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || sshd_failed
  sleep 0.1
done
SSH="ssh -i $ROOT/client/id -p $PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes"
step "logging in: ssh -p $PORT $USERNAME@127.0.0.1 (image $IMAGE)"
if [ -t 0 ]; then
  echo "You are in $USERNAME's own container; exit the shell to clean everything up."
  $SSH -t "$USERNAME@127.0.0.1" || true
else
  $SSH "$USERNAME@127.0.0.1" 'echo "hello from $(hostname) as $(id -un) (uid $(id -u)) in $(pwd)"; cat /proc/1/cgroup | head -1'
fi
echo "container: $(docker ps --filter "label=podspawn-user=$USERNAME" --format '{{.Names}} {{.ID}} {{.Status}}' | grep -v '\.netns ')"
