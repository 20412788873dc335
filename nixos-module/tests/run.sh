#!/usr/bin/env bash
# Tests of the NixOS module and the flake that run without nixpkgs, a binary cache or KVM.
#
#   nixos-module/tests/run.sh                    the stand-in lib (tests/standin/lib.nix)
#   NIXPKGS_LIB=DIR nixos-module/tests/run.sh    the same assertions (and flake checks) on nixpkgs' real module
#                                                system (DIR holds nixpkgs' lib/, e.g. 25.05)
#
# Needs: nix (Debian's nix-bin 2.8 is enough: no daemon, offline), sshd, ssh-keygen,
# systemd-analyze, jq, nixpkgs-fmt and deadnix (cargo install --locked nixpkgs-fmt deadnix), and
# a podspawn binary (PODSPAWN_BIN, default: target/debug/podspawn, built if missing).
# Prints "N passed, N failed"; exits non-zero if anything failed or a tool is missing.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

export NIX_CONFIG=$'experimental-features = nix-command flakes\nbuild-users-group =\nsandbox = false\nsubstituters ='
export NIX_PATH=

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/     /'; return 0; }
check() { # check NAME COMMAND...: passes when the command succeeds
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}

for tool in nix nix-instantiate nix-build sshd ssh-keygen systemd-analyze jq nixpkgs-fmt deadnix; do
  command -v "$tool" >/dev/null 2>&1 || { bad "tool $tool is installed"; }
done
if [ "$failed" -gt 0 ]; then
  echo "install the missing tools (see .ci/run)"
  echo "$passed passed, $failed failed"
  exit 1
fi

if [ -n "${NIXPKGS_LIB:-}" ]; then
  libFile=$(cd "$NIXPKGS_LIB" && pwd)/lib
  [ -f "$libFile/default.nix" ] || { echo "NIXPKGS_LIB=$NIXPKGS_LIB has no lib/default.nix"; exit 2; }
  echo "module system: nixpkgs lib/ from $NIXPKGS_LIB"
else
  libFile=$here/standin/lib.nix
  echo "module system: the stand-in lib (NIXPKGS_LIB=DIR uses nixpkgs' lib/ instead)"
fi

bin=${PODSPAWN_BIN:-$root/target/debug/podspawn}
if [ ! -x "$bin" ]; then
  cargo build --locked --quiet || { echo "cargo build failed"; exit 1; }
fi
work=$root/target/nixos-module-test
rm -rf "$work/tmp"
mkdir -p "$work/pkg/bin" "$work/helper/bin" "$work/tmp"
ln -sfn "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" "$work/pkg/bin/podspawn"
pkg=$work/pkg
# services.podspawn.helperPackage for the evaluations (config validate only reads the path).
: >"$work/helper/bin/podspawn-helper"
helperpkg=$work/helper
tmp=$work/tmp
ssh-keygen -q -t ed25519 -N '' -f "$tmp/hostkey" >/dev/null
export PODSPAWN_TEST_HOSTKEY=$tmp/hostkey

# evaluate CASE [extra nix-instantiate args]: JSON of what NixOS would write, on stdout.
# EVAL_HELPER= (empty) keeps the module's default helperPackage instead of $helperpkg.
evaluate() {
  local case=$1; shift
  nix-instantiate --eval --strict --json "$here/eval.nix" \
    --argstr libFile "$libFile" --argstr packageDir "$pkg" --argstr helperDir "${EVAL_HELPER-$helperpkg}" \
    --argstr caseFile "$here/cases/$case.nix" "$@"
}
# build_config CASE: builds the module's checked config.yaml; prints its path
build_config() {
  nix-build --no-out-link "$here/eval.nix" -A configFile \
    --argstr libFile "$libFile" --argstr packageDir "$pkg" --argstr helperDir "$helperpkg" \
    --argstr caseFile "$here/cases/$1.nix"
}

# The repository's files (NUL-separated): git's list, or everything but target/ without git.
repo_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard
  else
    find . -path ./target -prune -o -path ./.git -prune -o -type f -printf '%P\0'
  fi
}

# --- syntax, formatting, dead code ------------------------------------------------------------
mapfile -d '' -t nixfiles < <(repo_files | grep -z '\.nix$' | sort -z)
for f in "${nixfiles[@]}"; do
  check "nix-instantiate --parse $f" nix-instantiate --parse "$f"
done
check "nixpkgs-fmt --check (${#nixfiles[@]} files)" nixpkgs-fmt --check "${nixfiles[@]}"
check "deadnix --fail (${#nixfiles[@]} files)" deadnix --fail "${nixfiles[@]}"

# --- the example configuration -----------------------------------------------------------------
if ! evaluate base >"$tmp/base.json" 2>"$tmp/base.err"; then
  bad "the example configuration evaluates" "$(cat "$tmp/base.err")"
  echo "$passed passed, $failed failed"
  exit 1
fi
ok "the example configuration evaluates"
j() { jq -er "$@" "$tmp/base.json"; }

# sshd: the Match block, exactly, after everything else
wrapper=/etc/podspawn/bin/podspawn
cat >"$tmp/expected-block" <<EOF
Match Group podspawn-users
    AuthorizedKeysCommand $wrapper auth-keys %u %t %k
    AuthorizedKeysCommandUser podspawn
    AuthorizedKeysFile none
    ForceCommand exec $wrapper spawn
    AuthenticationMethods publickey
    PubkeyAuthentication yes
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    GSSAPIAuthentication no
    HostbasedAuthentication no
    PermitUserRC no
    AllowStreamLocalForwarding no
    AllowTcpForwarding no
    X11Forwarding no
    PermitTunnel no
    AcceptEnv PODSPAWN_PROJECT LANG LANGUAGE LC_*
EOF
j .sshd >"$tmp/sshd_config"
sed -e '/^[[:space:]]*$/d' "$tmp/sshd_config" | tail -n "$(wc -l <"$tmp/expected-block")" >"$tmp/tail"
check "sshd: the Match block is the last thing in sshd_config, line for line" diff -u "$tmp/expected-block" "$tmp/tail"
# Drift guard: the packages' drop-in Match block and the module's block are the same, line for line.
sed -n '/^Match /,$p' systemd/sshd/10-podspawn.conf | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' |
  sed "s|/usr/bin/podspawn|$wrapper|" >"$tmp/dropin-block"
check "sshd: systemd/sshd/10-podspawn.conf's Match block is the module's block, line for line" \
  diff -u "$tmp/expected-block" "$tmp/dropin-block"
check "sshd: the other modules' lines (before and after podspawn in module order) stay global" \
  sh -c "grep -e '^LoginGraceTime 30\$' -e '^UseDNS no\$' -e '^MaxStartups 10:30:100\$' '$tmp/sshd_config' | wc -l | grep -qx 3"
check "sshd -t accepts the rendered sshd_config" sshd -t -f "$tmp/sshd_config"
{ cat "$tmp/sshd_config"; echo "UseDNS no"; } >"$tmp/sshd_config.misordered"
if sshd -t -f "$tmp/sshd_config.misordered" >/dev/null 2>&1; then
  bad "sshd -t rejects a global-only line after the Match block (shows the check above can fail)"
else
  ok "sshd -t rejects a global-only line after the Match block (shows the check above can fail)"
fi
check "sshd: no AuthorizedKeysCommand or ForceCommand under /nix/store" \
  sh -c "! grep -E '^[[:space:]]*(AuthorizedKeysCommand|ForceCommand)[[:space:]]+/nix/store' '$tmp/sshd_config'"
check "sshd: openssh is enabled" j -e '.openssh == true'

# --- TCP forwarding through pam_podspawn.so (portForwarding, default auto) ----------------------
printf '%s\n' "Match Group podspawn-users" "    AllowTcpForwarding yes" "    GatewayPorts no" >"$tmp/forwarding-block"
sed -e '/^[[:space:]]*$/d' "$tmp/sshd_config" |
  tail -n "$(($(wc -l <"$tmp/expected-block") + $(wc -l <"$tmp/forwarding-block")))" |
  head -n "$(wc -l <"$tmp/forwarding-block")" >"$tmp/fwd-tail"
check "forwarding (auto, UsePAM): the forwarding Match block comes right before podspawn's block" \
  diff -u "$tmp/forwarding-block" "$tmp/fwd-tail"
# Drift guard: the block server-setup writes for the packages (09-podspawn-forwarding.conf) is
# the module's, line for line.
fwdsrc=systemd/sshd/09-podspawn-forwarding.conf
if [ -f "$fwdsrc" ]; then
  sed -n '/^Match /,$p' "$fwdsrc" | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' >"$tmp/fwd-dropin-block"
  check "forwarding: $fwdsrc's Match block is the module's, line for line" \
    diff -u "$tmp/forwarding-block" "$tmp/fwd-dropin-block"
else
  echo "note $fwdsrc is not in this checkout yet: no drift guard for the forwarding block"
fi
# The effective values for a member, from a real sshd (Match User stands in for the group, which
# this host's accounts do not have).
effective() { # effective SSHD_CONFIG: sshd -T for a member, the forwarding keywords only
  sed 's/^Match Group podspawn-users$/Match User pstnixfwd/' "$1" >"$1.user"
  sshd -T -f "$1.user" -C user=pstnixfwd,host=x,addr=127.0.0.1 2>&1 |
    grep -E '^(allowtcpforwarding|allowstreamlocalforwarding|x11forwarding|permittunnel) ' | sort
}
printf '%s\n' "allowstreamlocalforwarding no" "allowtcpforwarding yes" "permittunnel no" "x11forwarding no" >"$tmp/eff-on"
printf '%s\n' "allowstreamlocalforwarding no" "allowtcpforwarding no" "permittunnel no" "x11forwarding no" >"$tmp/eff-off"
check "forwarding (auto, UsePAM): sshd -T for a member: TCP forwarding yes; unix sockets, X11, tunnels no" \
  diff -u "$tmp/eff-on" <(effective "$tmp/sshd_config")
pamline="session required $pkg/lib/security/pam_podspawn.so"
check "forwarding (auto, UsePAM): pam_podspawn.so is sshd's last session rule, control required" \
  j -e --arg l "$pamline" '.pam.sshd | split("\n") | map(select(. != "")) | last == $l'
check "forwarding (auto, UsePAM): config.yaml's security.port_forwarding is auto, no warning" \
  j -e '.settings.security.port_forwarding == "auto" and .warnings == []'
# no_forwarding CASE: no PAM rule, one Match block, every kind of forwarding off for a member
no_forwarding() {
  local case=$1
  jq -r .sshd "$tmp/$case.json" >"$tmp/sshd_config.$case"
  jq -e '(.pam.sshd // "" | contains("pam_podspawn") | not)' "$tmp/$case.json" >/dev/null || { echo "PAM rule: $(jq .pam "$tmp/$case.json")"; return 1; }
  [ "$(grep -c '^Match Group podspawn-users$' "$tmp/sshd_config.$case")" = 1 ] || { cat "$tmp/sshd_config.$case"; return 1; }
  diff -u "$tmp/eff-off" <(effective "$tmp/sshd_config.$case") || return 1
  sshd -t -f "$tmp/sshd_config.$case"
}
if evaluate forwarding-off >"$tmp/forwarding-off.json" 2>"$tmp/forwarding-off.err"; then
  check "forwarding off: no PAM rule, no forwarding block; sshd -T for a member: all forwarding no" \
    no_forwarding forwarding-off
  check "forwarding off: config.yaml's security.port_forwarding is off" \
    jq -e '.settings.security.port_forwarding == "off" and .warnings == []' "$tmp/forwarding-off.json"
else
  bad "portForwarding = off evaluates" "$(cat "$tmp/forwarding-off.err")"
fi
if evaluate forwarding-without-pam >"$tmp/forwarding-without-pam.json" 2>"$tmp/forwarding-without-pam.err"; then
  check "forwarding auto without UsePAM: no PAM rule, no forwarding block; sshd -T: all forwarding no" \
    no_forwarding forwarding-without-pam
  check "forwarding auto without UsePAM: a warning says so" \
    jq -e '(.warnings | length) == 1 and (.warnings[0] | contains("UsePAM is false"))' "$tmp/forwarding-without-pam.json"
else
  bad "portForwarding = auto with UsePAM = false evaluates" "$(cat "$tmp/forwarding-without-pam.err")"
fi

# the wrapper: a 0755 root-owned copy in /etc that execs the package's binary
check "wrapper: /etc/podspawn/bin/podspawn is a 0755 root:root copy" \
  j -e '.etc["podspawn/bin/podspawn"] | .mode == "0755" and .user == "root" and .group == "root" and .enable'
j '.etc["podspawn/bin/podspawn"].text' >"$tmp/wrapper"
chmod 0755 "$tmp/wrapper"
check "wrapper: execs \$package/bin/podspawn with the arguments" \
  grep -qxF "exec $pkg/bin/podspawn \"\$@\"" "$tmp/wrapper"
check "wrapper: runs podspawn (config default)" sh -c "'$tmp/wrapper' config default | grep -q '^auth:'"

# accounts and groups
check "groups: podspawn, podspawn-users and one per user" \
  j -e '.groups == ["alice", "bob", "podspawn", "podspawn-users"]'
check "users: podspawn is a system user in group podspawn" \
  j -e '.users.podspawn | .isSystemUser and (.isNormalUser | not) and .group == "podspawn"'
for u in alice bob; do
  check "users: $u is what add-user creates (podspawn-users, /bin/sh, /home/$u, password '*')" \
    j -e --arg u "$u" '.users[$u] | .isNormalUser and .group == $u and .extraGroups == ["podspawn-users"]
      and .shell == "/bin/sh" and .home == "/home/\($u)" and .createHome and .hashedPassword == "*"'
done

# key files, override files, directories
check "keys: /etc/podspawn/keys/alice is root:podspawn 0640 with one line per key" \
  j -e '.etc["podspawn/keys/alice"] | .mode == "0640" and .user == "root" and .group == "podspawn"
    and (.text | split("\n") | length) == 3 and (.text | startswith("ssh-ed25519 AAAAC3"))'
check "keys: the key directory is root:podspawn 0750" \
  j -e '.tmpfiles | index("d /etc/podspawn/keys           0750 root podspawn -") != null'
check "keys: text files are copies, not store symlinks (they carry owner and mode)" \
  j -e '[.etc[] | select(.target | startswith("podspawn/")) | .mode] | all(. != "symlink")'
check "overrides: bob.yaml holds bob's image, cpus and mode; alice (none) gets no file" \
  j -e '(.etc["podspawn/users/bob.yaml"].text | fromjson) == {"cpus": 1.5, "image": "debian:12", "mode": "named"}
    and (.etc | has("podspawn/users/alice.yaml") | not)'
check "tmpfiles: the rules of systemd/tmpfiles.d/podspawn.conf" \
  bash -c "diff <(grep -v -e '^#' -e '^\$' systemd/tmpfiles.d/podspawn.conf) <(jq -r '.tmpfiles[]' '$tmp/base.json')"

# config.yaml: built (and validated) by the module's runCommand
check "config: /etc/podspawn/config.yaml is root:podspawn 0640" \
  j -e '.etc["podspawn/config.yaml"] | .mode == "0640" and .user == "root" and .group == "podspawn"'
if out=$(build_config base 2>&1); then
  cfgfile=$(printf '%s\n' "$out" | tail -n 1)
  ok "config: the checked config builds"
  check "config: it carries the settings" \
    jq -e '.defaults.image == "ubuntu:24.04" and .session.grace_period == "5m" and .resources.max_per_user == 4' "$cfgfile"
  check "config: podspawn config validate accepts it" "$bin" config validate "$cfgfile"
  check "config: helper.path is helperPackage's bin/podspawn-helper" \
    jq -e --arg p "$helperpkg/bin/podspawn-helper" '.helper.path == $p' "$cfgfile"
else
  bad "config: the checked config builds" "$out"
fi

# units
mkdir -p "$tmp/units"
for u in $(j '.units | keys[]'); do
  jq -r --arg u "$u" '.units[$u].text' "$tmp/base.json" >"$tmp/units/$u"
done
check "units: the daemon set (podspawn.socket, podspawn.service, podspawn-cleanup.service)" \
  j -e '.units | keys == ["podspawn-cleanup.service", "podspawn.service", "podspawn.socket"]'
verify_units() { # verify_units DIR: systemd-analyze verify, each unit and all at once, silently
  local d=$1 f out
  for f in "$d"/*; do
    out=$(SYSTEMD_LOG_LEVEL=info systemd-analyze verify "$f" 2>&1) || { echo "$f: $out"; return 1; }
    [ -z "$out" ] || { echo "$f: $out"; return 1; }
  done
  out=$(systemd-analyze verify "$d"/* 2>&1) || { echo "$out"; return 1; }
  [ -z "$out" ] || { echo "$out"; return 1; }
}
check "units: systemd-analyze verify is silent" verify_units "$tmp/units"
cp -r "$tmp/units" "$tmp/units-broken"
sed -i "s|$pkg/bin/podspawn|/nonexistent/podspawn|" "$tmp/units-broken/podspawn.service"
if verify_units "$tmp/units-broken" >/dev/null 2>&1; then
  bad "units: verify notices a missing binary (shows the check above can fail)"
else
  ok "units: verify notices a missing binary (shows the check above can fail)"
fi
check "units: ExecStart is the package's binary, not /usr/bin" \
  sh -c "grep -h '^ExecStart=' '$tmp/units'/*.service | grep -v -q -F '/usr/bin/' && grep -q '^ExecStart=$pkg/bin/podspawn serve\$' '$tmp/units/podspawn.service'"
check "units: cleanup runs every cleanup.interval" \
  grep -qx "ExecStart=$pkg/bin/podspawn cleanup --daemon --interval 2m" "$tmp/units/podspawn-cleanup.service"
check "units: wantedBy set by the module (NixOS ignores [Install])" \
  j -e '.units["podspawn.socket"].wantedBy == ["sockets.target"] and .units["podspawn-cleanup.service"].wantedBy == ["multi-user.target"]
    and .units["podspawn.service"].wantedBy == []'
check "units: no [Install] section is rendered" sh -c "! grep -q '^\[Install\]' '$tmp/units'/*"
check "units: the broker keeps its sandbox and Type=notify from systemd/podspawn.service" \
  sh -c "grep -qx 'Type=notify' '$tmp/units/podspawn.service' && grep -qx 'ProtectSystem=strict' '$tmp/units/podspawn.service' && [ \$(grep -c '^SystemCallFilter=' '$tmp/units/podspawn.service') = 2 ]"
check "units: the socket is root:podspawn-users 0660" \
  sh -c "grep -qx 'SocketGroup=podspawn-users' '$tmp/units/podspawn.socket' && grep -qx 'SocketMode=0660' '$tmp/units/podspawn.socket'"

# --- other unit sets ----------------------------------------------------------------------------
if evaluate timer-metrics >"$tmp/tm.json" 2>"$tmp/tm.err"; then
  ok "cleanup.mode = timer with metrics.enable evaluates"
  mkdir -p "$tmp/units-tm"
  for u in $(jq -r '.units | keys[]' "$tmp/tm.json"); do
    jq -r --arg u "$u" '.units[$u].text' "$tmp/tm.json" >"$tmp/units-tm/$u"
  done
  check "timer+metrics: timer, one-pass service, metrics socket and template; no daemon" \
    jq -e '.units | keys == ["podspawn-cleanup-once.service", "podspawn-cleanup.timer", "podspawn-metrics.socket", "podspawn-metrics@.service", "podspawn.service", "podspawn.socket"]' "$tmp/tm.json"
  check "timer+metrics: systemd-analyze verify is silent" verify_units "$tmp/units-tm"
  check "timer+metrics: the timer fires every cleanup.interval and is wanted by timers.target" \
    sh -c "grep -qx 'OnUnitActiveSec=5m' '$tmp/units-tm/podspawn-cleanup.timer' && jq -e '.units[\"podspawn-cleanup.timer\"].wantedBy == [\"timers.target\"] and .units[\"podspawn-metrics.socket\"].wantedBy == [\"sockets.target\"]' '$tmp/tm.json'"
else
  bad "cleanup.mode = timer with metrics.enable evaluates" "$(cat "$tmp/tm.err")"
fi

# --- podspawn-helper: helperPackage and helper.path ---------------------------------------------
# The module's default: the static build of nixos-module/helper.nix (through pkgsStatic).
if EVAL_HELPER='' evaluate base >"$tmp/helper-default.json" 2>"$tmp/helper-default.err"; then
  check "helper: by default helper.path is the bin/podspawn-helper of pkgsStatic.callPackage ./helper.nix" \
    jq -e '.defaultHelper | test("^/nix/store/[a-z0-9]{32}-podspawn-helper-[0-9.]+$")' "$tmp/helper-default.json"
  check "helper: (and settings.helper.path is that package's binary)" \
    jq -e '.settings.helper.path == .defaultHelper + "/bin/podspawn-helper"' "$tmp/helper-default.json"
  # config.yaml names the helper with its store context: the system closure holds the helper.
  if drv=$(nix-instantiate "$here/eval.nix" -A configFile --argstr libFile "$libFile" --argstr packageDir "$pkg" \
    --argstr helperDir "" --argstr caseFile "$here/cases/base.nix" 2>"$tmp/helper-drv.err"); then
    check "helper: the default helper is a dependency of config.yaml (in the system's closure)" \
      sh -c "nix-store --query --requisites '$drv' | grep -q -- '-podspawn-helper-[0-9.]*\.drv\$'"
  else
    bad "helper: config.yaml with the default helper instantiates" "$(cat "$tmp/helper-drv.err")"
  fi
else
  bad "helper: the example configuration evaluates with the default helperPackage" "$(cat "$tmp/helper-default.err")"
fi
check "helper: the evaluated settings carry helper.path = helperPackage's binary" \
  j -e --arg p "$helperpkg/bin/podspawn-helper" '.settings.helper.path == $p'
if evaluate no-helper >"$tmp/no-helper.json" 2>"$tmp/no-helper.err"; then
  check "helper: helperPackage = null gives helper.path \"\" (no mount)" \
    jq -e '.settings.helper.path == ""' "$tmp/no-helper.json"
  if out=$(build_config no-helper 2>&1); then
    check "helper: (and podspawn config validate accepts that config.yaml)" \
      sh -c "jq -e '.helper.path == \"\"' '$(tail -n 1 <<<"$out")' >/dev/null && '$bin' config validate '$(tail -n 1 <<<"$out")'"
  else
    bad "helper: the config without a helper builds" "$out"
  fi
else
  bad "helper: helperPackage = null evaluates" "$(cat "$tmp/no-helper.err")"
fi
if EVAL_HELPER='' evaluate helper-path >"$tmp/helper-path.json" 2>"$tmp/helper-path.err"; then
  check "helper: a settings.helper.path of the user's own wins over helperPackage's" \
    jq -e '.settings.helper.path == "/opt/podspawn/podspawn-helper"' "$tmp/helper-path.json"
else
  bad "helper: settings.helper.path = /opt/... evaluates" "$(cat "$tmp/helper-path.err")"
fi

# --- a disabled module adds nothing --------------------------------------------------------------
if evaluate disabled >"$tmp/off.json" 2>"$tmp/off.err" &&
  evaluate disabled --arg withModule false >"$tmp/none.json" 2>>"$tmp/off.err"; then
  check "enable = false: the configuration is the same as without the module" \
    diff <(jq -S . "$tmp/off.json") <(jq -S . "$tmp/none.json")
  check "enable = false: (and the comparison sees podspawn when enabled)" \
    bash -c "! diff <(jq -S 'del(.sshd)' '$tmp/base.json') <(jq -S 'del(.sshd)' '$tmp/off.json') >/dev/null"
else
  bad "enable = false evaluates" "$(cat "$tmp/off.err")"
fi

# --- bad settings fail evaluation with a clear message -------------------------------------------
rejects() { # rejects CASE MESSAGE-PATTERN...: evaluation fails and stderr matches every pattern
  local case=$1; shift
  local err p
  if evaluate "$case" >/dev/null 2>"$tmp/$case.err"; then
    bad "$case: evaluation fails" "it evaluated"
    return
  fi
  err=$(cat "$tmp/$case.err")
  for p in "$@"; do
    if ! grep -qF -- "$p" <<<"$err"; then
      bad "$case: evaluation fails with a message naming $p" "$err"
      return
    fi
  done
  ok "$case: evaluation fails: $(grep -F -- "$1" <<<"$err" | head -n 1 | sed 's/^[[:space:]-]*//' | cut -c1-110)"
}
rejects bad-user-mode "services.podspawn.users.alice.mode" "is not of type" "forever"
rejects bad-settings-mode "settings.session.mode = \"forever\" is not a session mode"
rejects bad-user-name 'services.podspawn.users."Bob": podspawn does not accept this user name'
rejects reserved-user-name 'services.podspawn.users."podspawn": podspawn does not accept this user name'
rejects no-docker "services.podspawn needs a Docker engine: set virtualisation.docker.enable = true;"
rejects key-with-options "services.podspawn.users.alice.keys:" "is not a public key line"
rejects no-keys "services.podspawn.users.alice.keys is empty"
rejects moved-key-dir "services.podspawn.settings.auth.key_dir is fixed to /etc/podspawn/keys"
rejects bad-interval "services.podspawn.cleanup.interval" "is not of type"
rejects forwarding-on-without-pam 'services.podspawn.portForwarding = "on" needs sshd' "UsePAM = true"
rejects forwarding-in-settings "services.podspawn.settings.security.port_forwarding is set from services.podspawn.portForwarding"

# a setting only podspawn itself can judge: evaluation works, the build fails with its message
if evaluate bad-memory >"$tmp/mem.json" 2>"$tmp/mem.err"; then
  if out=$(build_config bad-memory 2>&1); then
    bad "defaults.memory = \"lots\": the config build fails" "$out"
  elif grep -q "memory" <<<"$out" && grep -q "512m" <<<"$out"; then
    ok "defaults.memory = \"lots\": the config build fails with podspawn's message"
  else
    bad "defaults.memory = \"lots\": the build fails with podspawn's message" "$out"
  fi
else
  bad "defaults.memory = \"lots\" evaluates (podspawn checks it at build time)" "$(cat "$tmp/mem.err")"
fi

# --- package.nix: its filtered source holds every file the crate compiles in ----------------------
if pkgsrc=$(nix-instantiate --eval --read-write-mode --json -E "
    let lib = import $libFile; pkgs = import $here/standin/pkgs.nix { inherit lib; system = builtins.currentSystem; };
    in toString (pkgs.callPackage $root/nixos-module/package.nix { }).src" 2>&1); then
  pkgsrc=$(jq -r . <<<"$pkgsrc")
  missing=$(cd "$root" && grep -rhoE 'include_(str|bytes)!\("[^"]+"\)' src | sed -E 's/.*\("(.*)"\)/\1/' |
    while read -r inc; do for d in $(grep -rlF "\"$inc\"" src | xargs -n1 dirname | sort -u); do
      p=$(realpath -m --relative-to="$root" "$d/$inc"); [ -e "$pkgsrc/$p" ] || echo "$p"; done; done)
  check "package.nix: the source has Cargo.toml, Cargo.lock, src/ and every include_str! target" \
    sh -c "[ -f '$pkgsrc/Cargo.toml' ] && [ -f '$pkgsrc/Cargo.lock' ] && [ -f '$pkgsrc/src/main.rs' ] && [ -z '$missing' ] || { echo 'missing: $missing'; exit 1; }"
  check "package.nix: the source leaves out target/, tests/ and the NixOS files" \
    sh -c "[ -d '$pkgsrc/src' ] && [ ! -e '$pkgsrc/target' ] && [ ! -e '$pkgsrc/tests' ] && [ ! -e '$pkgsrc/nixos-module' ]"
else
  bad "package.nix evaluates" "$pkgsrc"
fi

# --- helper.nix: the helper crate alone, static, no store references ------------------------------
# buildRustPackage's arguments, as helper.nix passes them (with a rustPlatform that returns them).
if helperargs=$(nix-instantiate --eval --strict --read-write-mode --json -E "
    let
      lib = import $libFile;
      a = import $root/nixos-module/helper.nix { inherit lib; stdenv.cc.targetPrefix = \"\"; rustPlatform.buildRustPackage = a: a; };
    in { inherit (a) pname buildType cargoBuildFlags allowedReferences doInstallCheck installCheckPhase; src = toString a.src; }" 2>&1); then
  helpersrc=$(jq -r .src <<<"$helperargs")
  check "helper.nix: the source is the workspace manifest, Cargo.lock and helper/ (not podspawn's src/)" \
    sh -c "[ -f '$helpersrc/Cargo.toml' ] && [ -f '$helpersrc/Cargo.lock' ] && [ -f '$helpersrc/helper/Cargo.toml' ] && [ -f '$helpersrc/helper/src/main.rs' ] && [ ! -e '$helpersrc/src' ] && [ ! -e '$helpersrc/nixos-module' ]"
  check "helper.nix: builds -p podspawn-helper with Cargo.toml's helper profile" \
    jq -e '.pname == "podspawn-helper" and .buildType == "helper" and .cargoBuildFlags == ["-p", "podspawn-helper"]' <<<"$helperargs"
  check "helper.nix: its output may reference no store path (allowedReferences = [ ])" \
    jq -e '.allowedReferences == []' <<<"$helperargs"
  check "helper.nix: the install check rejects an ELF interpreter or needed libraries" \
    jq -e '.doInstallCheck and (.installCheckPhase | contains("INTERP") and contains("(NEEDED)"))' <<<"$helperargs"
  check "helper.nix: profile.helper exists in Cargo.toml" grep -qx '\[profile.helper\]' Cargo.toml
else
  bad "helper.nix evaluates" "$helperargs"
fi

# --- the flake, with the stand-in nixpkgs -----------------------------------------------------------
standin=$here/standin
if [ -n "${NIXPKGS_LIB:-}" ]; then
  # The stand-in nixpkgs flake with nixpkgs' lib/ in place of the stand-in lib.
  standin=$tmp/standin-nixpkgs-lib
  cp -r "$here/standin" "$standin"
  cp -r "$libFile" "$standin/nixpkgs-lib"
  echo 'import ./nixpkgs-lib' >"$standin/lib.nix"
fi
{
  # Nix reads a path: flake from a copy of the tree; git-tracked or not, every file is included.
  src=$tmp/flake-src
  mkdir -p "$src"
  repo_files | (while IFS= read -r -d '' f; do [ -e "$f" ] && cp --parents "$f" "$src/"; done)
  check "nix flake check --no-build with the stand-in nixpkgs" \
    nix flake check --no-build --no-write-lock-file --override-input nixpkgs "path:$standin" "path:$src"
  # The same check notices a broken module configuration and a broken VM test node.
  cp -r "$src" "$tmp/flake-bad1"
  sed -i 's/mode = "named";/mode = "forever";/' "$tmp/flake-bad1/nixos-module/tests/example.nix"
  cp -r "$src" "$tmp/flake-bad2"
  sed -i '/virtualisation.docker.enable = true;/d' "$tmp/flake-bad2/nixos-module/tests/vm.nix"
  for b in "bad1:services.podspawn.users.bob.mode" "bad2:needs a Docker engine"; do
    if out=$(nix flake check --no-build --no-write-lock-file --override-input nixpkgs "path:$standin" "path:$tmp/flake-${b%%:*}" 2>&1); then
      bad "nix flake check fails on flake-${b%%:*} (${b#*:})" "it passed"
    elif grep -qF -- "${b#*:}" <<<"$out"; then
      ok "nix flake check notices $([ "${b%%:*}" = bad1 ] && echo "a bad example.nix" || echo "a VM test node without Docker"): ${b#*:}"
    else
      bad "nix flake check fails on flake-${b%%:*} naming ${b#*:}" "$out"
    fi
  done
  check "nix flake show lists the packages (podspawn, podspawn-helper), module, checks, devShell and formatter" \
    sh -c "nix flake show --json --no-write-lock-file --override-input nixpkgs 'path:$standin' 'path:$src' 2>/dev/null |
      jq -e '.packages[\"x86_64-linux\"].default and .packages[\"x86_64-linux\"][\"podspawn-helper\"] and .nixosModules.default and (.checks[\"x86_64-linux\"] | has(\"package\") and has(\"helper\") and has(\"module\") and has(\"vm\"))
        and .devShells[\"x86_64-linux\"].default and .formatter[\"x86_64-linux\"]' >/dev/null"
  check "flake.lock pins nixpkgs to a revision and hash" \
    jq -e '.nodes.nixpkgs.locked | .type == "github" and (.rev | length) == 40 and (.narHash | startswith("sha256-"))' flake.lock
}

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
