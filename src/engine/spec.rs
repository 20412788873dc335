//! What podspawn asks the engine for, as plain data (pure): container and exec specs, the
//! owner labels, names, the start command and the session wrapper scripts, and the lines users
//! see when the engine cannot serve them.
use crate::core::config::{Config, UserOverrides};
use crate::core::names::Holder;
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub const LABEL_MANAGED: &str = "managed-by";
pub const LABEL_USER: &str = "podspawn-user";
/// On containers created with podspawn-helper mounted: its path in the container.
pub const LABEL_HELPER: &str = "podspawn-helper";
/// On containers created with the user's session directory mounted: the mount point.
pub const LABEL_SESSION_DIR: &str = "podspawn-session-dir";
pub const LABEL_PROJECT: &str = "podspawn-project";
/// Which podspawn installation (state database) owns an object; reconciliation only ever touches
/// objects of its own instance, so two installations (or test runs) on one engine leave each other alone.
pub const LABEL_INSTANCE: &str = "podspawn-instance";
/// What a container that is not a session is for: [`ROLE_NETNS`] on a user's namespace holder.
pub const LABEL_ROLE: &str = "podspawn-role";
/// The role of a user's network-namespace holder (see [`holder_spec`]).
pub const ROLE_NETNS: &str = "netns";
/// On a session container that joined its user's network namespace: the holder's container ID.
pub const LABEL_NETNS: &str = "podspawn-netns";

/// 16 random hex digits from the kernel's generator.
fn random_hex16() -> io::Result<String> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A new installation's instance id: 16 random hex digits (kept in state.db).
pub fn new_instance_id() -> io::Result<String> {
    random_hex16()
}

/// The instance id that installations before state.db kept one used: FNV-1a 64 of the state
/// database path, in hex. Databases created before then keep it, so their containers stay theirs.
pub fn instance_id(db_path: &Path) -> String {
    let h = crate::core::names::fnv1a64(db_path.as_os_str().as_encoded_bytes().iter().copied());
    format!("{h:016x}")
}

/// The names a user's network-namespace holder may use, in order of preference:
/// `podspawn-<user>.netns`, then a deterministic alternative for when another installation holds
/// it. A '.' never occurs in user or project names, so no session container can have these names.
pub fn holder_name_candidates(user: &str, instance: &str) -> [String; 2] {
    let base = format!("podspawn-{user}.netns");
    let h = crate::core::names::fnv1a64(instance.bytes().chain([0]).chain(user.bytes()));
    let alt = format!("{base}-{:08x}", h >> 32);
    [base, alt]
}

/// A session container's network mode when it joins the holder `holder_id`.
pub fn joined_network(holder_id: &str) -> String {
    format!("container:{holder_id}")
}

/// Whether a spec's network is another container's namespace (then the engine refuses a
/// hostname and aliases of its own).
pub fn joins_container(network: Option<&str>) -> bool {
    network.is_some_and(|n| n.starts_with("container:"))
}

/// Is this container (by its labels) a user's network-namespace holder?
pub fn is_netns_holder(labels: &HashMap<String, String>) -> bool {
    labels.get(LABEL_ROLE).map(String::as_str) == Some(ROLE_NETNS)
}

/// The holder of `user`'s network namespace (pure): one sleeping process that every container of
/// the user joins (`container:` network mode), so `localhost` is shared by the user's containers
/// and by the SSH forwards pam_podspawn.so puts into that namespace, like a Kubernetes pod. It
/// runs the session image's `sleep` with no capabilities, a read-only root, a few pids and little
/// memory, on the user's own bridge network (`network`; None: Docker's default bridge).
pub fn holder_spec(
    cfg: &Config,
    instance: &str,
    user: &str,
    name: &str,
    image: &str,
    network: Option<String>,
) -> ContainerSpec {
    let mut labels = labels(instance, user, "");
    labels.insert(LABEL_ROLE.to_string(), ROLE_NETNS.to_string());
    ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        hostname: user.to_string(),
        labels,
        nano_cpus: 0,
        memory: 16 * 1024 * 1024,
        pids_limit: 8,
        cap_drop: vec!["ALL".to_string()],
        cap_add: Vec::new(),
        no_new_privileges: true,
        readonly_rootfs: true,
        tmpfs: HashMap::new(),
        runtime: cfg.security.runtime.clone(),
        binds: Vec::new(),
        network,
        cmd: vec!["sleep".into(), "infinity".into()],
        user: Some("0:0".into()),
        env: Vec::new(),
        aliases: Vec::new(),
        volumes: Vec::new(),
    }
}

/// Where the engine keeps a container's network namespace: its sandbox file (a bind mount of the
/// namespace, readable by root without ptrace rights) and its main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsRef {
    pub running: bool,
    pub sandbox_key: Option<String>,
    pub pid: Option<i64>,
}

/// The per-session bridge network: isolates one user's containers from everyone else's.
pub fn network_name(container: &str) -> String {
    format!("{container}-net")
}

/// What an SSH user is told when the engine cannot be reached (the broker logs the details).
pub const ENGINE_DOWN: &str = "the container engine is not running on this host; ask the \
                               administrator to start it (systemctl start docker)";

/// What an SSH user is told when the session's image is neither on the host nor pullable (the
/// broker logs the registry's answer).
pub fn image_missing(image: &str) -> String {
    format!(
        "the image {image} is not on this host and could not be pulled; ask the administrator to \
         pull it (docker pull {image}) or to set defaults.image to an image on this host \
         (check it with podspawn verify-image)"
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub hostname: String,
    pub labels: HashMap<String, String>,
    pub nano_cpus: i64,
    pub memory: i64,
    pub pids_limit: i64,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub readonly_rootfs: bool,
    pub tmpfs: HashMap<String, String>,
    pub runtime: Option<String>,
    /// Bind mounts, given to the engine as structured mounts so that no character of a path can
    /// change their meaning.
    pub binds: Vec<Bind>,
    /// Network to attach to (created by the caller); None = Docker's default bridge.
    pub network: Option<String>,
    /// The start command and the user it runs as.
    pub cmd: Vec<String>,
    pub user: Option<String>,
    /// The container's environment (`NAME=value`; a project's Podfile `env`), inherited by
    /// every exec.
    pub env: Vec<String>,
    /// DNS names of the container on `network` (a companion service's name).
    pub aliases: Vec<String>,
    /// Engine volumes (a companion service's named volumes).
    pub volumes: Vec<VolumeMount>,
}

/// An engine volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub name: String,
    pub target: String,
    pub read_only: bool,
}

/// One bind mount of a host path into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    /// Mounted read-only (the container cannot write through it, even as its root).
    pub read_only: bool,
}

impl Bind {
    pub fn read_write(source: PathBuf, target: impl Into<String>) -> Bind {
        Bind {
            source,
            target: target.into(),
            read_only: false,
        }
    }
    pub fn read_only(source: PathBuf, target: impl Into<String>) -> Bind {
        Bind {
            source,
            target: target.into(),
            read_only: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    /// "uid:gid"
    pub user: String,
    pub env: Vec<String>,
    pub workdir: String,
    pub tty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecStatus {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: Option<i64>,
    pub container_id: Option<String>,
    /// The user the exec runs as ("uid:gid").
    pub user: Option<String>,
    /// The session tag of a session exec (see [`wait_ready_argv`]).
    pub session_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    /// Running as `inspect` means it (also paused or restarting).
    pub running: bool,
    pub labels: HashMap<String, String>,
    /// The networks it is attached to, by name.
    pub networks: Vec<String>,
}

/// A network as the engine lists it (the list does not say what is attached; see
/// [`crate::engine::ContainerRuntime::network_endpoints`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedNetwork {
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// The container for (user, project), from the config and the user's overrides. Pure.
pub fn container_spec(
    cfg: &Config,
    ov: &UserOverrides,
    instance: &str,
    user: &str,
    project: &str,
) -> ContainerSpec {
    let labels = labels(instance, user, project);
    let cpus = ov.cpus.unwrap_or(cfg.defaults.cpus);
    let memory = ov.memory.unwrap_or(cfg.defaults.memory);
    ContainerSpec {
        name: crate::core::names::container_name(user, project),
        image: ov
            .image
            .clone()
            .unwrap_or_else(|| cfg.defaults.image.clone()),
        hostname: if project.is_empty() {
            user.to_string()
        } else {
            project.to_string()
        },
        labels,
        nano_cpus: (cpus * 1e9) as i64,
        memory: i64::try_from(memory).unwrap_or(i64::MAX),
        pids_limit: cfg.security.pids_limit,
        cap_drop: cfg.security.cap_drop.clone(),
        cap_add: cfg.security.cap_add.clone(),
        no_new_privileges: cfg.security.no_new_privileges,
        readonly_rootfs: cfg.security.readonly_rootfs,
        tmpfs: cfg
            .security
            .tmpfs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        runtime: cfg.security.runtime.clone(),
        binds: Vec::new(),
        network: None,
        cmd: vec!["sleep".into(), "infinity".into()],
        user: None,
        env: Vec::new(),
        aliases: Vec::new(),
        volumes: Vec::new(),
    }
}

/// The labels every podspawn object of (user, project) in installation `instance` carries.
pub fn labels(instance: &str, user: &str, project: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), "podspawn".to_string());
    labels.insert(LABEL_USER.to_string(), user.to_string());
    labels.insert(LABEL_PROJECT.to_string(), project.to_string());
    labels.insert(LABEL_INSTANCE.to_string(), instance.to_string());
    labels
}

/// The labels that say who owns an object: podspawn, the user, the project, the installation.
const OWNER_LABELS: [&str; 4] = [LABEL_MANAGED, LABEL_USER, LABEL_PROJECT, LABEL_INSTANCE];

/// Does an object with `have` belong to the owner described by `want` (see [`labels`])? All four
/// owner labels must be equal: a name alone never makes an object ours.
pub fn same_owner(have: &HashMap<String, String>, want: &HashMap<String, String>) -> bool {
    OWNER_LABELS
        .iter()
        .all(|k| have.get(*k).is_some_and(|v| Some(v) == want.get(*k)))
}

/// Who holds a name, given the labels of the object that has it (`None`: no such object).
pub fn holder(found: Option<&HashMap<String, String>>, want: &HashMap<String, String>) -> Holder {
    match found {
        None => Holder::Free,
        Some(l) if same_owner(l, want) => Holder::Ours,
        Some(_) => Holder::Other,
    }
}

/// Written by the container's start command once the user's account and home exist.
pub const READY_MARKER: &str = "/run/.podspawn-ready";
/// The line the start command prints (to the container's log) when the container is ready.
pub const READY_LINE: &str = "podspawn-ready";

/// The container's start command (run as root, under docker-init): creates an account with the
/// host uid/gid and its home, marks the container ready, then sleeps. Doing this in the start
/// command rather than in a separate exec saves an exec round trip on every cold login.
/// Values are positional parameters, never interpolated into the script.
const INIT: &str = r#"set -e
rm -f /run/.podspawn-ready
u="$1"; uid="$2"; gid="$3"; home="$4"; shell="$5"
[ -x "$shell" ] || shell=/bin/sh
if ! grep -q "^[^:]*:[^:]*:$gid:" /etc/group 2>/dev/null; then
  grep -v "^$u:" /etc/group > /etc/group.podspawn 2>/dev/null || true
  echo "$u:x:$gid:" >> /etc/group.podspawn
  cat /etc/group.podspawn > /etc/group; rm -f /etc/group.podspawn
fi
grep -v "^$u:" /etc/passwd > /etc/passwd.podspawn || true
echo "$u:x:$uid:$gid:$u:$home:$shell" >> /etc/passwd.podspawn
cat /etc/passwd.podspawn > /etc/passwd; rm -f /etc/passwd.podspawn
if [ -f /etc/shadow ] && ! grep -q "^$u:" /etc/shadow; then echo "$u:*:19000:0:99999:7:::" >> /etc/shadow; fi
mkdir -p "$home"
chown "$uid:$gid" "$home"
chmod 0750 "$home"
mkdir -p /run
: > /run/.podspawn-ready
echo podspawn-ready
exec sleep infinity
"#;

/// Marks a session exec: `$0` of its wrapper is `podspawn-session:<tag>` (recoverable from the
/// engine's exec inspect after a broker restart) and its environment holds
/// `PODSPAWN_SESSION=<tag>` (inherited by everything the session starts).
pub const SESSION_TAG_PREFIX: &str = "podspawn-session:";
/// The environment variable that carries a session's tag.
pub const SESSION_TAG_ENV: &str = "PODSPAWN_SESSION";

/// A fresh random session tag (16 hex digits).
pub fn new_session_tag() -> io::Result<String> {
    random_hex16()
}

pub fn valid_tag(tag: &str) -> bool {
    tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The session tag in an exec's arguments (as the engine reports them).
pub fn session_tag_of(args: &[String]) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(SESSION_TAG_PREFIX))
        .filter(|t| valid_tag(t))
        .map(str::to_string)
}

/// Signals every process of a session inside its container: those whose environment carries
/// the session's tag, and their process groups. It runs inside the container (as the session's
/// user), so it can never reach a host process, whatever PIDs were reused meanwhile. The mounted
/// podspawn-helper does it when present (any image); the shell loop needs `tr` and `grep`.
pub(crate) const SIGNAL_SESSION: &str = r#"t="$1"; s="$2"
if [ -x /.podspawn/podspawn-helper ]; then exec /.podspawn/podspawn-helper signal "$t" "$s"; fi
for d in /proc/[0-9]*; do
  if tr '\000' '\n' < "$d/environ" 2>/dev/null | grep -qx "PODSPAWN_SESSION=$t"; then
    p="${d#/proc/}"
    kill -"$s" -- -"$p" 2>/dev/null
    kill -"$s" "$p" 2>/dev/null
  fi
done
exit 0
"#;

/// Every session exec waits (at most 30 s) for the start command to finish the
/// account, then runs in the user's home.
const WAIT_READY: &str = r#"i=0
while [ ! -e /run/.podspawn-ready ]; do
  i=$((i+1))
  if [ "$i" -gt 3000 ]; then echo "podspawn: the container did not finish setting up your account" >&2; exit 1; fi
  sleep 0.01 2>/dev/null || sleep 1
done
cd "$HOME" 2>/dev/null || cd /
exec "$@"
"#;

/// Wraps a session argv so it waits for the container's setup; `tag` marks the session (see
/// [`SESSION_TAG_PREFIX`]).
pub fn wait_ready_argv(inner: Vec<String>, tag: &str) -> Vec<String> {
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        WAIT_READY.to_string(),
        format!("{SESSION_TAG_PREFIX}{tag}"),
    ];
    v.extend(inner);
    v
}

pub fn init_argv(user: &str, uid: u32, gid: u32, home: &str, shell: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        INIT.into(),
        "podspawn-init".into(),
        user.into(),
        uid.to_string(),
        gid.to_string(),
        home.into(),
        shell.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Containers of installations from before state.db kept the id carry this label value: it
    /// must never change.
    #[test]
    fn the_legacy_instance_id_is_stable() {
        assert_eq!(
            instance_id(Path::new("/var/lib/podspawn/state.db")),
            "53b9c9eb857d0818"
        );
        let a = new_instance_id().unwrap();
        assert!(
            a.len() == 16 && a.bytes().all(|b| b.is_ascii_hexdigit()),
            "{a}"
        );
        assert_ne!(a, new_instance_id().unwrap());
    }

    #[test]
    fn spec_from_config_and_overrides() {
        let cfg = Config::default();
        let s = container_spec(&cfg, &UserOverrides::default(), "i1", "alice", "");
        assert_eq!(s.name, "podspawn-alice");
        assert_eq!(s.image, "ubuntu:24.04");
        assert_eq!(s.nano_cpus, 2_000_000_000);
        assert_eq!(s.memory, 2 * 1024 * 1024 * 1024);
        assert_eq!(s.pids_limit, 256);
        assert_eq!(
            s.labels.get("managed-by").map(String::as_str),
            Some("podspawn")
        );
        assert_eq!(
            s.labels.get("podspawn-user").map(String::as_str),
            Some("alice")
        );
        assert_eq!(
            s.labels.get("podspawn-project").map(String::as_str),
            Some("")
        );
        assert_eq!(s.cap_drop, vec!["ALL"]);
        assert!(s.cap_add.contains(&"SETUID".to_string()));
        let ov = UserOverrides {
            image: Some("debian:12".into()),
            cpus: Some(0.5),
            memory: Some(256 * 1024 * 1024),
            ..Default::default()
        };
        let s = container_spec(&cfg, &ov, "i1", "bob", "web");
        assert_eq!(
            (s.name.as_str(), s.hostname.as_str()),
            ("podspawn-bob-web", "web")
        );
        assert_eq!(s.image, "debian:12");
        assert_eq!(s.nano_cpus, 500_000_000);
        assert_eq!(s.memory, 256 * 1024 * 1024);
    }

    #[test]
    fn setup_argv_passes_values_as_parameters() {
        let a = init_argv("alice", 1001, 1002, "/home/alice", "/bin/bash");
        assert_eq!(a[0], "/bin/sh");
        assert!(!a[2].contains("alice"));
        assert_eq!(
            &a[4..],
            ["alice", "1001", "1002", "/home/alice", "/bin/bash"]
        );
    }
}
