#!/usr/bin/env bash
# podspawn benchmarks: every figure is printed next to its floor, measured in the same run on the
# same sshd, the same Docker engine and the same image. Benchmarks are not tests: nothing here
# fails on a number. Needs root, Docker, OpenSSH, hyperfine, jq, sqlite3 and curl
# (apt-get install hyperfine jq sqlite3 curl).
#
#   bash benches/run.sh                 # everything
#   BENCH_ONLY="authkeys warm" bash benches/run.sh
#   BENCH_CLEANUP_N=1000 BENCH_GIB=1 bash benches/run.sh
#   BENCH_ONLY=load bash benches/run.sh  # 200 logins over 60 s from 20 users
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
cd "$(dirname "$0")/.."
for t in hyperfine jq sqlite3 curl ssh /usr/sbin/sshd docker; do
  command -v "$t" >/dev/null 2>&1 || { echo "missing $t (apt-get install hyperfine jq sqlite3 curl openssh-server)" >&2; exit 1; }
done
ONLY=${BENCH_ONLY:-"authkeys warm cold throughput concurrency cleanup broker load"}  # also: idle
want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
CLEANUP_N=${BENCH_CLEANUP_N:-1000}
GIB=${BENCH_GIB:-1}
IMAGE=podspawn-test:latest
CIPHER=aes128-gcm@openssh.com

cargo build --release --locked 2>&1 | tail -1
sh tests/support/build-test-image.sh "$IMAGE"
ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ROOT=/var/tmp/podspawn-bench-$ID
BIN_DIR=/usr/local/libexec/podspawn-bench-$ID
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$ROOT/client" "$ROOT/out" "$BIN_DIR" /run/sshd
chmod 0755 "$ROOT" "$BIN_DIR"
install -m 0755 target/release/podspawn "$BIN_DIR/podspawn"
BIN="$BIN_DIR/podspawn"
CFG="$ROOT/config.yaml"
P() { "$BIN" --config "$CFG" "$@"; }
USERS=()
cleanup() {
  set +e
  rm -f "/etc/pam.d/sshd-pb$ID"
  [ -f "$ROOT/sshd.pid" ] && kill "$(cat "$ROOT/sshd.pid")" 2>/dev/null
  [ -n "${BROKER:-}" ] && kill "$BROKER" 2>/dev/null
  docker ps -aq --filter "label=podspawn-bench=$ID" | xargs -r docker rm -f >/dev/null 2>&1
  for u in "${USERS[@]}"; do
    docker ps -aq --filter "label=podspawn-user=$u" | xargs -r docker rm -f >/dev/null 2>&1
    docker network ls -q --filter "label=podspawn-user=$u" | xargs -r docker network rm >/dev/null 2>&1
    userdel -r -f "$u" >/dev/null 2>&1
  done
  rm -rf "$ROOT" "$BIN_DIR"
}
trap cleanup EXIT
# A signal ends the run (the EXIT trap cleans up); a handler that only cleaned up would let it go on.
trap 'exit 130' INT TERM

cat > "$CFG" <<CFG
auth:
  key_dir: $ROOT/keys
defaults:
  image: $IMAGE
  shell: /bin/bash
  cpus: 0
  memory: "0"
session:
  grace_period: 1h
state:
  db_path: $ROOT/state/state.db
  lock_dir: $ROOT/state/locks
  homes_dir: $ROOT/state/homes
resources:
  max_per_user: 0
users_dir: $ROOT/users
broker:
  socket: $ROOT/run/podspawn.sock
security:
  network: ${BENCH_NETWORK:-isolated}
CFG
chmod 0644 "$CFG"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$ROOT/client/id"
ssh-keygen -q -t ed25519 -N '' -f "$ROOT/hostkey"
PUB=$(cat "$ROOT/client/id.pub")
KEYTYPE=$(echo "$PUB" | cut -d' ' -f1); KEYDATA=$(echo "$PUB" | cut -d' ' -f2)
ALICE=pb${ID}a
PLAIN=pb${ID}p
USERS+=("$ALICE" "$PLAIN")
P add-user "$ALICE" --key "$PUB" >/dev/null
# The floor's account: a normal host account with the same key in ~/.ssh/authorized_keys.
useradd -m -s /bin/sh -p '*' "$PLAIN"
install -d -m 0700 -o "$PLAIN" -g "$PLAIN" "/home/$PLAIN/.ssh"
install -m 0600 -o "$PLAIN" -g "$PLAIN" "$ROOT/client/id.pub" "/home/$PLAIN/.ssh/authorized_keys"
PODSPAWN_LOG=warn "$BIN" --config "$CFG" serve --listen "$ROOT/run/podspawn.sock" 2>"$ROOT/broker.log" &
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
MaxStartups 200:30:300
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
# The throughput floor logs in as root with a key file private to this benchmark's sshd.
Match User root
  PermitRootLogin prohibit-password
  AuthorizedKeysFile $BIN_DIR/root_keys
CFG
# BENCH_PAM=1 (default): pam_podspawn.so in the session stack, as the packages install it, and TCP
# forwarding on. sshd runs as a copy named after the run, so it has its own PAM service (the floor's
# plain account goes through the same stack: the module ignores non-members).
SSHD=/usr/sbin/sshd
if [ "${BENCH_PAM:-1}" = 1 ]; then
  install -m 0644 target/release/libpam_podspawn.so "$BIN_DIR/pam_podspawn.so"
  install -m 0755 /usr/sbin/sshd "$BIN_DIR/sshd-pb$ID"
  SSHD="$BIN_DIR/sshd-pb$ID"
  printf '@include common-auth\n@include common-account\n@include common-session\nsession required %s service=sshd-pb%s socket=%s\n' \
    "$BIN_DIR/pam_podspawn.so" "$ID" "$ROOT/run/podspawn.sock" > "/etc/pam.d/sshd-pb$ID"
  grep -v '^#' systemd/sshd/09-podspawn-forwarding.conf >> "$ROOT/sshd_config"
fi
"$BIN" --config "$CFG" sshd-block --binary "$BIN" >> "$ROOT/sshd_config"
install -m 0600 "$ROOT/client/id.pub" "$BIN_DIR/root_keys"  # StrictModes: a root-owned 0755 path
"$SSHD" -f "$ROOT/sshd_config" -E "$ROOT/sshd.log"
for _ in $(seq 50); do [ -S "$ROOT/run/podspawn.sock" ] && break; sleep 0.1; done
SSH="ssh -q -i $ROOT/client/id -p $PORT -c $CIPHER -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no"

# hyperfine helpers: median and p95 in milliseconds of the n-th result of an export.
med() { jq -r ".results[$2].median * 1000 | . * 100 | round / 100" "$1"; }
p95() { jq -r "[.results[$2].times[]] | sort | .[(length * 0.95 | floor)] * 1000 | . * 100 | round / 100" "$1"; }
row() { printf '%-52s %12s %12s\n' "$1" "$2" "$3"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "podspawn benchmarks, security.network=${BENCH_NETWORK:-isolated}, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, Docker $(docker version -f '{{.Server.Version}}'), $(ssh -V 2>&1 | cut -d, -f1)"

if want authkeys; then
  echo; echo "== auth-keys latency (as sshd runs it: as the podspawn user, one process per call) =="
  # 10,000 registered users in another key dir; a key file of 100 keys.
  mkdir -p "$ROOT/keys10k"; chmod 0750 "$ROOT/keys10k"; chown root:podspawn "$ROOT/keys10k"
  for i in $(seq 1 10000); do echo "$PUB" > "$ROOT/keys10k/pbu$i"; done
  chown root:podspawn "$ROOT"/keys10k/*; chmod 0640 "$ROOT"/keys10k/*
  cp "$ROOT/keys/$ALICE" "$ROOT/keys10k/$ALICE"
  for i in $(seq 1 99); do ssh-keygen -q -t ed25519 -N '' -f "$ROOT/client/k$i"; cat "$ROOT/client/k$i.pub"; done > "$ROOT/keys10k/pbhundred"
  echo "$PUB" >> "$ROOT/keys10k/pbhundred"
  chown root:podspawn "$ROOT/keys10k/pbhundred"; chmod 0640 "$ROOT/keys10k/pbhundred"
  sed "s|key_dir: $ROOT/keys|key_dir: $ROOT/keys10k|" "$CFG" > "$ROOT/config10k.yaml"; chmod 0644 "$ROOT/config10k.yaml"
  AS="setpriv --reuid=podspawn --regid=podspawn --clear-groups"
  hyperfine -N -w 20 -r 300 --export-json "$ROOT/out/ak.json" \
    "$AS /bin/true" \
    "$AS $BIN --config $CFG auth-keys $ALICE $KEYTYPE $KEYDATA" \
    "$AS $BIN --config $ROOT/config10k.yaml auth-keys $ALICE $KEYTYPE $KEYDATA" \
    "$AS $BIN --config $ROOT/config10k.yaml auth-keys pbhundred $KEYTYPE $KEYDATA" \
    "$AS $BIN --config $CFG auth-keys nosuchuser $KEYTYPE $KEYDATA" >/dev/null
  row "case" "p50 ms" "p95 ms"
  row "floor: setpriv + /bin/true (process start)" "$(med "$ROOT/out/ak.json" 0)" "$(p95 "$ROOT/out/ak.json" 0)"
  row "1 registered user" "$(med "$ROOT/out/ak.json" 1)" "$(p95 "$ROOT/out/ak.json" 1)"
  row "10,000 registered users" "$(med "$ROOT/out/ak.json" 2)" "$(p95 "$ROOT/out/ak.json" 2)"
  row "key file of 100 keys" "$(med "$ROOT/out/ak.json" 3)" "$(p95 "$ROOT/out/ak.json" 3)"
  row "unknown user" "$(med "$ROOT/out/ak.json" 4)" "$(p95 "$ROOT/out/ak.json" 4)"
fi

start_container() { $SSH "$ALICE@127.0.0.1" true; }
CID() { docker ps -q --filter "label=podspawn-user=$ALICE" | head -1; }

if want warm; then
  echo; echo "== warm login: ssh user@host true into a running container =="
  start_container
  C=$(CID)
  hyperfine -N -w 3 -r 40 --export-json "$ROOT/out/warm.json" \
    "$SSH $PLAIN@127.0.0.1 true" \
    "docker exec $C true" \
    "$SSH $ALICE@127.0.0.1 true" >/dev/null
  F1=$(med "$ROOT/out/warm.json" 0); F2=$(med "$ROOT/out/warm.json" 1); W=$(med "$ROOT/out/warm.json" 2)
  FLOOR=$(python3 -c "print(round($F1+$F2,2))")
  row "case" "p50 ms" "p95 ms"
  row "floor: ssh plain@host true" "$F1" "$(p95 "$ROOT/out/warm.json" 0)"
  row "floor: docker exec (CLI) true" "$F2" "$(p95 "$ROOT/out/warm.json" 1)"
  row "floor total" "$FLOOR" ""
  row "podspawn warm login" "$W" "$(p95 "$ROOT/out/warm.json" 2)"
  row "ratio to floor (target <= 1.10)" "$(ratio "$W" "$FLOOR")" ""
fi

if want cold; then
  echo; echo "== cold login: no container yet =="
  # Floor: the same engine work through the API (create, start, exec create, exec start).
  cat > "$ROOT/floor-cold.sh" <<EOF
#!/bin/sh
set -e
D="curl -sf --unix-socket /var/run/docker.sock -H Content-Type:application/json"
id=\$(\$D -X POST -d '{"Image":"$IMAGE","Cmd":["sleep","infinity"],"Labels":{"podspawn-bench":"$ID"},"HostConfig":{"Init":true}}' http://d/containers/create | jq -r .Id)
\$D -X POST http://d/containers/\$id/start
ex=\$(\$D -X POST -d '{"Cmd":["true"],"AttachStdout":true}' http://d/containers/\$id/exec | jq -r .Id)
\$D -X POST -d '{"Detach":false}' http://d/exec/\$ex/start >/dev/null
EOF
  chmod +x "$ROOT/floor-cold.sh"
  hyperfine -N -w 1 -r 15 --export-json "$ROOT/out/cold.json" \
    --prepare "docker ps -aq --filter label=podspawn-bench=$ID" \
    "$SSH $PLAIN@127.0.0.1 true" \
    --prepare "sh -c 'docker ps -aq --filter label=podspawn-bench=$ID | xargs -r docker rm -f >/dev/null'" \
    "$ROOT/floor-cold.sh" \
    --prepare "sh -c '$BIN --config $CFG stop $ALICE >/dev/null 2>&1; true'" \
    "$SSH $ALICE@127.0.0.1 true" \
    --prepare "sh -c 'docker rm -f podspawn-$ALICE >/dev/null 2>&1; true'" \
    "$SSH $ALICE@127.0.0.1 true " >/dev/null
  F1=$(med "$ROOT/out/cold.json" 0); F2=$(med "$ROOT/out/cold.json" 1); C=$(med "$ROOT/out/cold.json" 2)
  R=$(med "$ROOT/out/cold.json" 3)
  FLOOR=$(python3 -c "print(round($F1+$F2,2))")
  row "case" "p50 ms" "p95 ms"
  row "floor: ssh plain@host true" "$F1" "$(p95 "$ROOT/out/cold.json" 0)"
  row "floor: create+start+exec via the API (curl)" "$F2" "$(p95 "$ROOT/out/cold.json" 1)"
  row "floor total" "$FLOOR" ""
  row "podspawn cold login, brand-new user (network + namespace holder + container)" "$C" "$(p95 "$ROOT/out/cold.json" 2)"
  row "  over the floor" "$(python3 -c "print(round($C-$FLOOR,2))")" ""
  row "podspawn cold login, returning user (namespace kept: container only)" "$R" "$(p95 "$ROOT/out/cold.json" 3)"
  row "  over the floor (target <= +50 ms)" "$(python3 -c "print(round($R-$FLOOR,2))")" ""
  docker ps -aq --filter "label=podspawn-bench=$ID" | xargs -r docker rm -f >/dev/null
fi

if want throughput; then
  echo; echo "== throughput: ${GIB} GiB through the session, cipher $CIPHER =="
  start_container
  C=$(CID)
  BYTES=$((GIB * 1024 * 1024 * 1024))
  head -c "$BYTES" /dev/urandom > "$ROOT/big"
  hyperfine -w 1 -r 3 --export-json "$ROOT/out/tp.json" \
    "docker exec -i $C sh -c 'cat > /dev/null' < $ROOT/big" \
    "$SSH $PLAIN@127.0.0.1 'cat > /dev/null' < $ROOT/big" \
    "$SSH root@127.0.0.1 \"docker exec -i $C sh -c 'cat > /dev/null'\" < $ROOT/big" \
    "$SSH $ALICE@127.0.0.1 'cat > /dev/null' < $ROOT/big" \
    "docker exec $C head -c $BYTES /dev/zero > /dev/null" \
    "$SSH $PLAIN@127.0.0.1 head -c $BYTES /dev/zero > /dev/null" \
    "$SSH root@127.0.0.1 docker exec $C head -c $BYTES /dev/zero > /dev/null" \
    "$SSH $ALICE@127.0.0.1 head -c $BYTES /dev/zero > /dev/null" >/dev/null
  mbs() { python3 -c "print(round($GIB*1024/$(jq -r ".results[$1].median" "$ROOT/out/tp.json"),1))"; }
  row "direction / path" "MiB/s" ""
  row "upload: plain docker exec -i" "$(mbs 0)" ""
  row "upload: plain ssh to the host" "$(mbs 1)" ""
  row "upload: floor = ssh + docker exec in series" "$(mbs 2)" ""
  row "upload: podspawn" "$(mbs 3)" "x$(ratio "$(mbs 3)" "$(mbs 2)") of floor"
  row "download: plain docker exec" "$(mbs 4)" ""
  row "download: plain ssh to the host" "$(mbs 5)" ""
  row "download: floor = ssh + docker exec in series" "$(mbs 6)" ""
  row "download: podspawn" "$(mbs 7)" "x$(ratio "$(mbs 7)" "$(mbs 6)") of floor"
  rm -f "$ROOT/big"
fi

broker_rss() { awk '/VmRSS/ {print $2}' "/proc/$BROKER/status"; }
broker_hwm() { awk '/VmHWM/ {print $2}' "/proc/$BROKER/status"; }
broker_cpu() { awk '{print $14+$15}' "/proc/$BROKER/stat"; }
TCK=$(getconf CLK_TCK)

if want concurrency; then
  echo; echo "== concurrent logins =="
  one() { local s e; s=$(date +%s%N); if $SSH "$1@127.0.0.1" true; then e=$(date +%s%N); echo "ok $(( (e - s) / 1000000 ))"; else echo fail; fi; }
  summarize() {
    local f=$1 ok fails p50 p95
    ok=$(grep -c '^ok' "$f" || true); fails=$(grep -c '^fail' "$f" || true)
    p50=$(grep '^ok' "$f" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    p95=$(grep '^ok' "$f" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.95); if (i<1) i=1; print a[i]}')
    echo "$ok ok, $fails failed, p50 ${p50} ms, p95 ${p95} ms"
  }
  pids=(); for _ in $(seq 50); do one "$PLAIN" >> "$ROOT/out/c50plain" & pids+=($!); done; wait "${pids[@]}"
  row "floor: 50 concurrent plain ssh logins" "$(summarize "$ROOT/out/c50plain")" ""
  P stop "$ALICE" >/dev/null 2>&1 || true
  CPU0=$(broker_cpu)
  # Wait for the login jobs only: a bare `wait` would also wait for the broker.
  pids=(); for _ in $(seq 50); do one "$ALICE" >> "$ROOT/out/c50" & pids+=($!); done; wait "${pids[@]}"
  CPU1=$(broker_cpu)
  row "50 concurrent logins of one user (cold)" "$(summarize "$ROOT/out/c50")" ""
  row "  containers created" "$(docker ps -q --filter "label=podspawn-user=$ALICE" | wc -l)" ""
  row "  broker CPU during the burst" "$(python3 -c "print(round(($CPU1-$CPU0)/$TCK,2))") s" ""
  MANY=()
  for i in $(seq 1 10); do u=pb${ID}m$i; USERS+=("$u"); MANY+=("$u"); P add-user "$u" --key "$PUB" >/dev/null; done
  pids=(); for u in "${MANY[@]}"; do for _ in 1 2 3 4 5; do one "$u" >> "$ROOT/out/c10x5" & pids+=($!); done; done; wait "${pids[@]}"
  row "10 users x 5 concurrent logins (cold)" "$(summarize "$ROOT/out/c10x5")" ""
  n=0; for u in "${MANY[@]}"; do n=$((n + $(docker ps -q --filter "label=podspawn-user=$u" | wc -l))); done
  row "  containers created (want 10)" "$n" ""
  for u in "${MANY[@]}"; do P stop "$u" >/dev/null 2>&1 || true; done
fi

if want broker; then
  echo; echo "== broker resources =="
  C0=$(broker_cpu); sleep 10; C1=$(broker_cpu)
  row "idle RSS" "$(broker_rss) KiB" ""
  row "idle CPU over 10 s" "$(python3 -c "print(round(($C1-$C0)/$TCK,3))") s" ""
  row "peak RSS so far (VmHWM)" "$(broker_hwm) KiB" ""
fi

stop_broker() { kill "$BROKER" 2>/dev/null; wait "$BROKER" 2>/dev/null || true; BROKER=; }
start_broker() {
  rm -f "$ROOT/run/podspawn.sock"
  PODSPAWN_LOG=warn "$BIN" --config "$CFG" serve --listen "$ROOT/run/podspawn.sock" 2>>"$ROOT/broker.log" &
  BROKER=$!
  for _ in $(seq 50); do [ -S "$ROOT/run/podspawn.sock" ] && break; sleep 0.1; done
}

if want cleanup || want idle; then
  # The same parallelism as podspawn's pass: CLEANUP_PARALLELISM in src/roles/lifecycle.rs.
  PAR=8
  INST=$(sqlite3 "$ROOT/state/state.db" "SELECT value FROM meta WHERE key='instance'")
  # mkset SET: CLEANUP_N running containers, made as sessions are (--init, sleep infinity), $PAR
  # at a time, labelled as sessions of users pb<ID><SET><i> of this installation (or, for the
  # floor's set, with the bench's labels only); prints "<full id> <user>" lines.
  mkset() {
    local set=$1 labels
    if [ "$set" = f ]; then labels="--label podspawn-bench-set=f$ID"
    else labels="--label managed-by=podspawn --label podspawn-user=pb$ID$set{} --label podspawn-project= --label podspawn-instance=$INST --label podspawn-bench-set=$set$ID"; fi
    # shellcheck disable=SC2086
    seq 1 "$CLEANUP_N" | xargs -P "$PAR" -I{} docker run -d --init --network none --name "podspawn-pb$ID$set{}" \
      --label "podspawn-bench=$ID" $labels "$IMAGE" sleep infinity >/dev/null
    docker ps -a --no-trunc --filter "label=podspawn-bench-set=$set$ID" --format '{{.ID}} {{.Label "podspawn-user"}}'
  }
  # rows SET MODE STATUS GRACE_EXPIRY: a state row and a key file (a registered user) per container.
  rows() {
    local now; now=$(date +%s)
    mkset "$1" | while read -r id u; do
      echo "$PUB" > "$ROOT/keys/$u"
      echo "INSERT INTO sessions (user, project, container_id, container_name, image, mode, status, created_at, last_activity, grace_expiry, expires_at, uid) VALUES ('$u', '', '$id', 'podspawn-$u', '$IMAGE', '$2', '$3', $now, $now, $4, NULL, 1000);"
    done > "$ROOT/out/rows-$1.sql"
    chown root:podspawn "$ROOT"/keys/pb"$ID$1"*; chmod 0640 "$ROOT"/keys/pb"$ID$1"*
    sqlite3 "$ROOT/state/state.db" < "$ROOT/out/rows-$1.sql"
  }
  ms() { echo $(( ($2 - $1) / 1000000 )); }
fi

# idle: only the pass with nothing to do (no mass removal by hand, which can deadlock Docker
# 20.10.24, see §6): CLEANUP_N live named sessions, made 8 at a time and removed one at a time.
if want idle; then
  echo; echo "== cleanup pass with nothing to do over $CLEANUP_N live sessions =="
  stop_broker
  rows l named idle NULL
  hyperfine -N -w 2 -r 30 --export-json "$ROOT/out/idle.json" "$BIN --config $CFG cleanup" >/dev/null
  row "case" "p50 ms" "p95 ms"
  row "pass with nothing to do over $CLEANUP_N live sessions" "$(med "$ROOT/out/idle.json" 0)" "$(p95 "$ROOT/out/idle.json" 0)"
  row "  of which the engine's container list (curl, same filter)" "$(s=$(date +%s%N); curl -sf --unix-socket /var/run/docker.sock -G --data-urlencode "filters={\"label\":[\"managed-by=podspawn\",\"podspawn-instance=$INST\"]}" 'http://d/containers/json?all=1' >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )))" ""
  echo "  $(P cleanup 2>&1 | tail -1)"
  docker ps -aq --filter "label=podspawn-bench-set=l$ID" | xargs -r -n 1 docker rm -f >/dev/null
  sqlite3 "$ROOT/state/state.db" "DELETE FROM sessions WHERE user LIKE 'pb${ID}l%'"
  rm -f "$ROOT"/keys/pb"$ID"l*
  start_broker
fi

if want cleanup; then
  echo; echo "== cleanup pass at scale: $CLEANUP_N sessions, removals $PAR at a time =="
  # The broker's own 2-second sweep would share the work: measure the pass alone.
  stop_broker
  mkset f > "$ROOT/out/floor-ids"
  s=$(date +%s%N)
  cut -d' ' -f1 "$ROOT/out/floor-ids" | xargs -P "$PAR" -n 1 docker rm -f >/dev/null
  e=$(date +%s%N); FLOOR=$(ms "$s" "$e")
  # Expired grace periods of registered users: the pass removes every one.
  rows e grace-period grace_period "$(( $(date +%s) - 10 ))"
  s=$(date +%s%N); P cleanup > "$ROOT/out/cleanup.txt" 2>&1 || true; e=$(date +%s%N); PASS=$(ms "$s" "$e")
  LEFT=$(docker ps -aq --filter "label=podspawn-bench-set=e$ID" | wc -l)
  row "case" "value" ""
  row "floor: docker rm -f of $CLEANUP_N containers (xargs -P $PAR)" "$FLOOR ms" ""
  row "pass removing $CLEANUP_N expired sessions" "$PASS ms" "x$(ratio "$PASS" "$FLOOR") of floor"
  row "  containers left (want 0)" "$LEFT" ""
  echo "  $(tail -1 "$ROOT/out/cleanup.txt")"
  # Live named sessions: the next passes have nothing to do.
  rows l named idle NULL
  hyperfine -N -w 2 -r 20 --export-json "$ROOT/out/idle.json" "$BIN --config $CFG cleanup" >/dev/null
  row "pass with nothing to do over $CLEANUP_N live sessions" "$(med "$ROOT/out/idle.json" 0) ms" "p95 $(p95 "$ROOT/out/idle.json" 0) ms"
  echo "  $(P cleanup 2>&1 | tail -1)"
  # Remove the live set by hand, $PAR at a time (the trap would do it one by one).
  docker ps -aq --filter "label=podspawn-bench-set=l$ID" | xargs -r -P "$PAR" -n 20 docker rm -f >/dev/null
  sqlite3 "$ROOT/state/state.db" "DELETE FROM sessions WHERE user LIKE 'pb${ID}e%' OR user LIKE 'pb${ID}l%'"
  rm -f "$ROOT"/keys/pb"$ID"[el]*
  start_broker
fi

if want load; then
  # 200 logins over 60 s from 20 users: ssh commands, pty shells (ssh -tt) and sftp batches,
  # a new one every 0.3 s whatever the earlier ones are doing.
  LOGINS=${BENCH_LOAD_LOGINS:-200}; LUSERS=${BENCH_LOAD_USERS:-20}; SPAN=${BENCH_LOAD_SECONDS:-60}
  echo; echo "== load: $LOGINS logins over $SPAN s from $LUSERS users (commands, pty shells, sftp) =="
  LOAD=()
  for i in $(seq 1 "$LUSERS"); do u=pb${ID}u$i; USERS+=("$u"); LOAD+=("$u"); P add-user "$u" --key "$PUB" >/dev/null; done
  mkdir -p "$ROOT/out/load"
  head -c 262144 /dev/urandom > "$ROOT/out/load/payload"
  SUM=$(sha256sum < "$ROOT/out/load/payload" | cut -d' ' -f1)
  SFTP="sftp -q -i $ROOT/client/id -P $PORT -c $CIPHER -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no"
  # One login: k, user; writes "ok|fail KIND ms" and, on failure, what it saw.
  login() {
    local k=$1 u=$2 kind out s e ok=0 d=$ROOT/out/load
    s=$(date +%s%N)
    case $((k % 3)) in
      0) kind=cmd
         out=$($SSH "$u@127.0.0.1" "echo $((k + 1000000)); id -un; seq 1 1000 | wc -l" 2>&1 </dev/null) &&
           [ "$out" = "$(printf '%s\n%s\n%s' $((k + 1000000)) "$u" 1000)" ] && ok=1 ;;
      1) kind=pty
         out=$(printf 'echo $((%d + 1000000))\nexit 0\n' "$k" | $SSH -tt "$u@127.0.0.1" 2>&1) &&
           printf '%s' "$out" | grep -q "^$((k + 1000000))" && ok=1 ;;
      2) kind=sftp
         printf 'put %s f%d\nget f%d %s\nrm f%d\n' "$d/payload" "$k" "$k" "$d/got$k" "$k" > "$d/batch$k"
         out=$($SFTP -b "$d/batch$k" "$u@127.0.0.1" 2>&1 </dev/null) &&
           [ "$(sha256sum < "$d/got$k" | cut -d' ' -f1)" = "$SUM" ] && ok=1
         rm -f "$d/got$k" "$d/batch$k" ;;
    esac
    e=$(date +%s%N)
    if [ $ok = 1 ]; then echo "ok $kind $(( (e - s) / 1000000 ))"; else echo "fail $kind $(( (e - s) / 1000000 ))"; printf '%s\n' "--- login $k ($kind, $u): $out" >> "$d/failures"; fi
  }
  RSSMAX=0
  HWM0=$(broker_hwm)
  STEP=$(python3 -c "print($SPAN/$LOGINS)")
  pids=()
  T0=$(date +%s%N)
  for k in $(seq 0 $((LOGINS - 1))); do
    login "$k" "${LOAD[$((k % LUSERS))]}" >> "$ROOT/out/load/results" & pids+=($!)
    r=$(broker_rss); [ "$r" -gt "$RSSMAX" ] && RSSMAX=$r
    # Keep to the schedule: the k-th login starts k*STEP s after the first.
    sleep "$(python3 -c "import time; print(max(0, $T0/1e9 + ($k + 1) * $STEP - time.time()))")"
  done
  wait "${pids[@]}"
  T1=$(date +%s%N)
  r=$(broker_rss); [ "$r" -gt "$RSSMAX" ] && RSSMAX=$r
  res=$ROOT/out/load/results
  kindstat() { # KIND: "n ok, p50 ms, p95 ms"
    grep " $1 " "$res" | awk '$1 == "ok" {print $3}' | sort -n |
      awk -v n="$(grep -c " $1 " "$res")" '{a[NR]=$1} END {i=int(NR*0.95); if (i<1) i=1; printf "%d/%d ok, p50 %d ms, p95 %d ms", NR, n, a[int((NR+1)/2)], a[i]}'
  }
  row "logins started / finished in" "$LOGINS" "$(( (T1 - T0) / 1000000 )) ms"
  row "  ssh user@host cmd" "$(kindstat cmd)" ""
  row "  ssh -tt (pty shell)" "$(kindstat pty)" ""
  row "  sftp -b (256 KiB put + get, checksum)" "$(kindstat sftp)" ""
  row "  errors" "$(grep -c '^fail' "$res" || true)" ""
  n=0; one=0
  for u in "${LOAD[@]}"; do
    c=$(docker ps -aq --filter "label=podspawn-user=$u" | wc -l); n=$((n + c)); [ "$c" = 1 ] && one=$((one + 1))
  done
  row "  containers (want $LUSERS, one per user)" "$n ($one users with exactly one)" ""
  row "  broker RSS: max sampled VmRSS" "$RSSMAX KiB" ""
  row "  broker VmHWM before / after" "$HWM0 / $(broker_hwm) KiB" ""
  [ -s "$ROOT/out/load/failures" ] && head -40 "$ROOT/out/load/failures"
  for u in "${LOAD[@]}"; do P stop "$u" >/dev/null 2>&1 || true; done
fi
echo
echo "broker log warnings/errors: $(grep -ciE 'warn|error' "$ROOT/broker.log" || true)"
