//! `/etc/podspawn/config.yaml`: the server configuration (keys of the reference implementation).
//!
//! PUBLIC API CONTRACT (other modules rely on these names and types).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

mod values;
pub use values::*;
mod raw;
use raw::*;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/podspawn/config.yaml";
pub const DEFAULT_SOCKET: &str = "/run/podspawn/podspawn.sock";

/// How a session's container lives after its last connection ends. Serialized (the audit log's
/// `mode`) as `as_str` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionMode {
    #[default]
    GracePeriod,
    DestroyOnDisconnect,
    /// `named`, alias `persistent`.
    Named,
    Ttl,
}

impl SessionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::GracePeriod => "grace-period",
            SessionMode::DestroyOnDisconnect => "destroy-on-disconnect",
            SessionMode::Named => "named",
            SessionMode::Ttl => "ttl",
        }
    }
    pub fn parse(s: &str) -> Option<SessionMode> {
        match s {
            "grace-period" => Some(SessionMode::GracePeriod),
            "destroy-on-disconnect" => Some(SessionMode::DestroyOnDisconnect),
            "named" | "persistent" => Some(SessionMode::Named),
            "ttl" => Some(SessionMode::Ttl),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from (for messages).
    pub path: PathBuf,
    pub auth: AuthConfig,
    pub defaults: Defaults,
    pub session: SessionConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    pub security: SecurityConfig,
    pub resources: ResourcesConfig,
    pub projects_file: PathBuf,
    pub users_dir: PathBuf,
    pub broker: BrokerConfig,
    pub helper: HelperConfig,
}

/// The static in-container helper (`podspawn-helper`), bind-mounted read-only into every
/// container so that SFTP works on images without an sftp-server of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct HelperConfig {
    /// Host path of the helper binary; None (`""`) = do not mount it.
    pub path: Option<PathBuf>,
}

/// Default of `helper.path` (where the packages install the helper).
pub const DEFAULT_HELPER_PATH: &str = "/usr/lib/podspawn/podspawn-helper";
/// Where the helper appears inside every container.
pub const HELPER_CONTAINER_PATH: &str = "/.podspawn/podspawn-helper";

#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub key_dir: PathBuf,
    /// Base URL for `add-user --github` (`<github_url>/<user>.keys`).
    pub github_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub image: String,
    pub shell: String,
    /// 0.0 means unlimited.
    pub cpus: f64,
    /// Bytes; 0 means unlimited.
    pub memory: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub grace_period: Duration,
    pub max_lifetime: Duration,
    pub mode: SessionMode,
    pub ttl: Duration,
    /// Environment variables a client may pass (`SendEnv`/`SetEnv`) into the session: names, or
    /// prefixes ending in `*`. server-setup writes them into sshd's `AcceptEnv`; the broker drops
    /// anything else.
    pub accept_env: Vec<String>,
    /// How long a user's network namespace (its holder container and bridge network) is kept
    /// after the user's last container and connection end, so that a returning user's login
    /// skips creating them. 0: removed with the last.
    pub network_linger: Duration,
}

/// Default of `session.accept_env`: the locale, as OpenSSH's own Debian configuration accepts.
pub const DEFAULT_ACCEPT_ENV: [&str; 3] = ["LANG", "LANGUAGE", "LC_*"];

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub db_path: PathBuf,
    pub lock_dir: PathBuf,
    pub homes_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub file: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    /// tracing filter directive, e.g. "info".
    pub level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    /// 0 means unset.
    pub pids_limit: i64,
    pub readonly_rootfs: bool,
    pub tmpfs: BTreeMap<String, String>,
    pub runtime: Option<String>,
    /// `isolated` (default): one bridge network per session, so users cannot reach each other's
    /// containers; `shared`: Docker's default bridge (no per-session networks; use it when the
    /// engine's address pools are too small for one network per session).
    pub network: NetworkMode,
    /// Let a project's Podfile mount host paths into its companion services (default: no,
    /// only named engine volumes).
    pub allow_service_binds: bool,
    /// TCP forwarding (`ssh -L/-R/-D`) into the user's network namespace, through the PAM session
    /// module pam_podspawn.so (see [`PortForwarding`]).
    pub port_forwarding: PortForwarding,
}

/// `security.port_forwarding`: whether podspawn's Match block lets members forward TCP ports.
/// sshd opens forwards itself, so they are safe only where pam_podspawn.so has moved the
/// connection into the user's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortForwarding {
    /// On where sshd runs with `UsePAM yes` and pam_podspawn.so is in its session stack; off
    /// (with a note from server-setup and doctor) elsewhere.
    #[default]
    Auto,
    /// Required: server-setup fails, saying why, where the module is not in place.
    On,
    /// Never.
    Off,
}

impl PortForwarding {
    pub fn as_str(self) -> &'static str {
        match self {
            PortForwarding::Auto => "auto",
            PortForwarding::On => "on",
            PortForwarding::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    #[default]
    Isolated,
    Shared,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Isolated => "isolated",
            NetworkMode::Shared => "shared",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourcesConfig {
    /// 0 means unlimited.
    pub max_per_user: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub socket: PathBuf,
    /// Open broker connections one (non-root) uid may hold at once: each live session, scp or
    /// VS Code channel is one. Keeps one user from exhausting the broker's file descriptors.
    pub max_connections_per_user: u32,
    /// How long a new connection may take to send its first message before it is closed.
    pub first_message_timeout: Duration,
    /// Host directory under which each user gets a 0700 directory of their own, bind-mounted into
    /// their containers at [`SESSION_CONTAINER_DIR`]: per-connection files live there (the socket
    /// of a forwarded agent, the exit status of a command killed by a signal). None (`""`) = no
    /// agent forwarding and exit codes only.
    pub session_dir: Option<PathBuf>,
}

/// Default of `broker.session_dir`.
pub const DEFAULT_SESSION_DIR: &str = "/run/podspawn/sessions";
/// Where a user's session directory appears inside their containers.
pub const SESSION_CONTAINER_DIR: &str = "/.podspawn/session";

/// Default of `broker.max_connections_per_user`.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: u32 = 64;
/// Default of `broker.first_message_timeout`.
pub const DEFAULT_FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from(DEFAULT_CONFIG_PATH),
            auth: AuthConfig {
                key_dir: "/etc/podspawn/keys".into(),
                github_url: "https://github.com".into(),
            },
            defaults: Defaults {
                image: "ubuntu:24.04".into(),
                shell: "/bin/bash".into(),
                cpus: 2.0,
                memory: 2 * 1024 * 1024 * 1024,
            },
            session: SessionConfig {
                grace_period: Duration::from_secs(60),
                network_linger: Duration::from_secs(3600),
                max_lifetime: Duration::from_secs(8 * 3600),
                mode: SessionMode::GracePeriod,
                ttl: Duration::from_secs(3600),
                accept_env: DEFAULT_ACCEPT_ENV.iter().map(|s| s.to_string()).collect(),
            },
            state: StateConfig {
                db_path: "/var/lib/podspawn/state.db".into(),
                lock_dir: "/var/lib/podspawn/locks".into(),
                homes_dir: "/var/lib/podspawn/homes".into(),
            },
            log: LogConfig {
                file: None,
                audit_log: None,
                level: "info".into(),
            },
            security: SecurityConfig {
                cap_drop: vec!["ALL".into()],
                cap_add: [
                    "CHOWN",
                    "SETUID",
                    "SETGID",
                    "DAC_OVERRIDE",
                    "FOWNER",
                    "NET_BIND_SERVICE",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                no_new_privileges: true,
                pids_limit: 256,
                readonly_rootfs: false,
                allow_service_binds: false,
                port_forwarding: PortForwarding::Auto,
                tmpfs: BTreeMap::new(),
                runtime: None,
                network: NetworkMode::Isolated,
            },
            resources: ResourcesConfig { max_per_user: 3 },
            projects_file: "/etc/podspawn/projects.yaml".into(),
            users_dir: "/etc/podspawn/users".into(),
            broker: BrokerConfig {
                socket: DEFAULT_SOCKET.into(),
                max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
                first_message_timeout: DEFAULT_FIRST_MESSAGE_TIMEOUT,
                session_dir: Some(DEFAULT_SESSION_DIR.into()),
            },
            helper: HelperConfig {
                path: Some(DEFAULT_HELPER_PATH.into()),
            },
        }
    }
}

/// An error that names the file, the line and the key path, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ": line {l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates `path`. A missing file is an error (callers decide whether to fall back).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses YAML text; unknown keys and bad values are errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: Option<RawConfig> = deserialize_yaml(text, path)?;
        let raw = raw.unwrap_or_default();
        Ok(Config {
            path: path.to_path_buf(),
            auth: AuthConfig {
                key_dir: raw.auth.key_dir,
                github_url: raw.auth.github_url,
            },
            defaults: Defaults {
                image: raw.defaults.image,
                shell: raw.defaults.shell,
                cpus: raw.defaults.cpus,
                memory: raw.defaults.memory,
            },
            session: SessionConfig {
                grace_period: raw.session.grace_period,
                max_lifetime: raw.session.max_lifetime,
                mode: raw.session.mode,
                ttl: raw.session.ttl,
                accept_env: raw.session.accept_env,
                network_linger: raw.session.network_linger,
            },
            state: StateConfig {
                db_path: raw.state.db_path,
                lock_dir: raw.state.lock_dir,
                homes_dir: raw.state.homes_dir,
            },
            log: LogConfig {
                file: raw.log.file,
                audit_log: raw.log.audit_log,
                level: raw.log.level,
            },
            security: SecurityConfig {
                cap_drop: raw.security.cap_drop,
                cap_add: raw.security.cap_add,
                no_new_privileges: raw.security.no_new_privileges,
                pids_limit: raw.security.pids_limit,
                readonly_rootfs: raw.security.readonly_rootfs,
                allow_service_binds: raw.security.allow_service_binds,
                port_forwarding: raw.security.port_forwarding,
                tmpfs: raw.security.tmpfs,
                runtime: raw.security.runtime,
                network: raw.security.network,
            },
            resources: ResourcesConfig {
                max_per_user: raw.resources.max_per_user,
            },
            projects_file: raw.projects_file,
            users_dir: raw.users_dir,
            broker: BrokerConfig {
                socket: raw.broker.socket,
                max_connections_per_user: raw.broker.max_connections_per_user,
                first_message_timeout: raw.broker.first_message_timeout,
                session_dir: raw.broker.session_dir,
            },
            helper: HelperConfig {
                path: raw.helper.path,
            },
        })
    }
}

/// Per-user overrides `<users_dir>/<user>.yaml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserOverrides {
    pub image: Option<String>,
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
    pub shell: Option<String>,
    pub mode: Option<SessionMode>,
    pub env: BTreeMap<String, String>,
}

impl UserOverrides {
    /// Missing file → defaults (no overrides). Invalid file → error naming file, line and key.
    pub fn load(users_dir: &Path, user: &str) -> Result<UserOverrides, ConfigError> {
        let path = users_dir.join(format!("{user}.yaml"));
        if user.is_empty()
            || user == "."
            || user == ".."
            || user.contains('/')
            || user.contains('\0')
        {
            return Err(ConfigError {
                path,
                line: None,
                key: None,
                message: format!(
                    "invalid user name {user:?}: a user name cannot be empty, \".\", \"..\" or \
                     contain \"/\"; use the plain account name, e.g. alice"
                ),
            });
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(UserOverrides::default())
            }
            Err(e) => {
                return Err(ConfigError {
                    path,
                    line: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        UserOverrides::parse(&text, &path)
    }
}

impl UserOverrides {
    /// Parses the YAML text of a per-user override file (`path` is only used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<UserOverrides, ConfigError> {
        let raw: Option<RawUser> = deserialize_yaml(text, path)?;
        let raw = raw.unwrap_or_default();
        Ok(UserOverrides {
            image: raw.image,
            cpus: raw.cpus,
            memory: raw.memory,
            shell: raw.shell,
            mode: raw.mode,
            env: raw.env,
        })
    }
}

/// The commented default config written by `add-user`/`server-setup` when none exists.
pub fn default_config_yaml() -> &'static str {
    DEFAULT_CONFIG_YAML
}

const DEFAULT_CONFIG_YAML: &str = r#"# podspawn server configuration (/etc/podspawn/config.yaml).
# Every key is optional: a missing key keeps the default shown here.
# Durations: 500ms, 60s, 5m, 8h, 1d or combinations such as 1h30m (0 = zero).
# Sizes: bytes, or a number with k, m, g or t (x1024), e.g. 512m, 1.5g (0 = unlimited).

auth:
  # Directory with one authorized_keys-style file per podspawn user.
  key_dir: /etc/podspawn/keys
  # Base URL for `podspawn add-user --github` (keys are fetched from <url>/<user>.keys).
  github_url: https://github.com

defaults:
  # Container image for users and projects that do not name one.
  image: ubuntu:24.04
  # Login shell inside the container (absolute path).
  shell: /bin/bash
  # CPUs per container (0 = unlimited).
  cpus: 2.0
  # Memory per container (0 = unlimited).
  memory: 2g

session:
  # How long a container stays after its last connection closes (mode grace-period).
  grace_period: 60s
  # Hard upper bound on a container's lifetime, whatever the mode.
  max_lifetime: 8h
  # grace-period, destroy-on-disconnect, named (alias: persistent) or ttl.
  mode: grace-period
  # Lifetime of a container in mode ttl.
  ttl: 1h
  # Environment variables clients may pass with SendEnv/SetEnv (names, or prefixes ending in *).
  # server-setup writes them into sshd's AcceptEnv (re-run it after a change); HOME, PATH, USER,
  # SHELL, TERM, SSH_* and PODSPAWN_* are set by podspawn and cannot be listed.
  accept_env: [LANG, LANGUAGE, "LC_*"]
  # How long a user's network namespace (a small holder container and the user's bridge
  # network, shared by all of the user's containers) stays after the user's last container and
  # connection end: a returning user's next login then skips creating them. 0s: removed with
  # the last.
  network_linger: 1h

state:
  # SQLite database of sessions, owned by the broker.
  db_path: /var/lib/podspawn/state.db
  # Per-user lock files.
  lock_dir: /var/lib/podspawn/locks
  # Persistent home directories, one per user.
  homes_dir: /var/lib/podspawn/homes

log:
  # Log file ("" = journald/stderr only).
  file: ""
  # Audit log of logins and commands, one JSON object per line ("" = off).
  audit_log: ""
  # trace, debug, info, warn or error.
  level: info

security:
  # Linux capabilities removed from every container (ALL = all of them).
  cap_drop: [ALL]
  # Capabilities given back after cap_drop.
  cap_add: [CHOWN, SETUID, SETGID, DAC_OVERRIDE, FOWNER, NET_BIND_SERVICE]
  # Forbid gaining privileges through setuid binaries (no-new-privileges).
  no_new_privileges: true
  # Maximum number of processes per container (0 = unset).
  pids_limit: 256
  # Mount the container's root filesystem read-only.
  readonly_rootfs: false
  # Extra tmpfs mounts: mount point -> options, e.g. {/tmp: "size=256m,mode=1777"}.
  tmpfs: {}
  # OCI runtime registered with Docker, e.g. runsc ("" = Docker's default).
  runtime: ""
  # isolated: one bridge network per session (users cannot reach each other's containers);
  # shared: Docker's default bridge. Docker's default address pools allow about 30 bridges;
  # raise default-address-pools in /etc/docker/daemon.json for more isolated sessions.
  network: isolated
  # Let project Podfiles bind-mount host paths into companion services (named volumes are
  # always allowed).
  allow_service_binds: false
  # TCP forwarding (ssh -L, -R, -D; VS Code Remote) into the user's own network namespace,
  # through the PAM session module pam_podspawn.so. auto: on where sshd has UsePAM yes and the
  # module in its session stack (the packages install it), off elsewhere; on: server-setup fails
  # where the module is not in place; off: never. Unix-socket forwarding, X11 and tunnels stay off.
  port_forwarding: auto

resources:
  # Containers one user may have at the same time (0 = unlimited).
  max_per_user: 3

# Not read: projects are registered with podspawn add-project and kept in state.db (root
# only), their checkouts in projects/ next to it. Accepted so older configs still load.
projects_file: /etc/podspawn/projects.yaml

# Per-user overrides, one <user>.yaml per user (image, cpus, memory, shell, mode, env).
users_dir: /etc/podspawn/users

broker:
  # Unix socket of the broker (podspawn serve). sshd puts it into the forced command, so it must
  # be a plain absolute path (no spaces, quotes, backslashes or %), at most 107 bytes.
  socket: /run/podspawn/podspawn.sock
  # Open connections one user may hold at once (each session, scp or VS Code channel is one).
  max_connections_per_user: 64
  # A connection that sends nothing for this long is closed.
  first_message_timeout: 10s
  # Each user gets a 0700 directory under this one, mounted into their containers at
  # /.podspawn/session: a forwarded agent (ssh -A) and a killed command's signal pass through it
  # ("" = no agent forwarding, and exit codes instead of signals).
  session_dir: /run/podspawn/sessions

helper:
  # The static podspawn-helper binary (installed by the packages). When the file exists it is
  # bind-mounted read-only into every container at /.podspawn/podspawn-helper and serves SFTP
  # on images without an sftp-server of their own ("" = do not mount it).
  path: /usr/lib/podspawn/podspawn-helper
"#;

// ---------------------------------------------------------------------------------------------
// Errors.

/// Deserializes one YAML document, turning every failure into a [`ConfigError`].
fn deserialize_yaml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    // Syntax first: a pass that only checks the YAML itself, so that syntax errors are
    // reported as such (with their line) rather than as whatever the typed pass hit first.
    if let Err(e) = serde_norway::from_str::<de::IgnoredAny>(text) {
        return Err(syntax_error(&e, file));
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| convert_error(e, text, file))
}

fn syntax_error(e: &serde_norway::Error, file: &Path) -> ConfigError {
    let loc = e.location();
    let raw = strip_location(e.to_string(), loc.as_ref());
    let message = if raw.contains("more than one document") {
        "the file contains more than one YAML document (a line \"---\" in the middle): keep a \
         single document"
            .to_string()
    } else {
        format!(
            "invalid YAML: {raw}; check the indentation (spaces, not tabs), the colons after \
             keys and the quoting near this line"
        )
    };
    ConfigError {
        path: file.to_path_buf(),
        line: loc.map(|l| l.line()),
        key: None,
        message,
    }
}

fn strip_location(mut msg: String, loc: Option<&serde_norway::Location>) -> String {
    if let Some(l) = loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if msg.ends_with(&suffix) {
            msg.truncate(msg.len() - suffix.len());
        }
    }
    msg
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Path as serde_norway prints it in front of messages (`a.b[2]`).
fn plain_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Path for people: `security.cap_add[2]`, `security.tmpfs["/tmp"]`.
fn display_path(segs: &[Seg]) -> Option<String> {
    if segs.is_empty() {
        return None;
    }
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                let simple = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if simple {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                } else {
                    out.push_str(&format!("[{k:?}]"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Some(out)
}

/// The names between backticks in a serde message, in order.
fn backticked(msg: &str) -> Vec<&str> {
    msg.split('`').skip(1).step_by(2).collect()
}

fn convert_error(
    err: serde_path_to_error::Error<serde_norway::Error>,
    text: &str,
    file: &Path,
) -> ConfigError {
    let mut segs: Vec<Seg> = err
        .path()
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => Seg::Index(*index),
            Segment::Map { key } => Seg::Key(key.clone()),
            Segment::Enum { variant } => Seg::Key(variant.clone()),
            Segment::Unknown => Seg::Key("?".to_string()),
        })
        .collect();
    let inner = err.into_inner();
    let loc = inner.location();
    let mut line = loc.as_ref().map(|l| l.line());
    let mut msg = strip_location(inner.to_string(), loc.as_ref());
    // serde_norway puts its own path in front of the message; we print ours separately.
    for n in (1..=segs.len()).rev() {
        let prefix = format!("{}: ", plain_path(&segs[..n]));
        if let Some(rest) = msg.strip_prefix(&prefix) {
            msg = rest.to_string();
            break;
        }
    }

    let message = if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let unknown = names.first().copied().unwrap_or("");
        let valid: Vec<&str> = names.iter().skip(1).copied().collect();
        // The key path names the mapping that holds the unknown key.
        if matches!(segs.last(), Some(Seg::Key(k)) if k == unknown) {
            segs.pop();
        }
        let mut m = format!(
            "unknown key {unknown:?} — valid keys here: {}",
            valid.join(", ")
        );
        if let Some(s) = suggestion(unknown, &valid) {
            m.push_str(&format!(" (did you mean {s}?)"));
        }
        m
    } else if let Some(rest) = msg.strip_prefix("duplicate field ") {
        let key = backticked(rest).first().copied().unwrap_or("").to_string();
        if let Some(l) = loc
            .as_ref()
            .and_then(|l| duplicate_line(text, l.line(), l.column(), &key))
        {
            line = Some(l);
        }
        let m = duplicate_message(&key);
        segs.push(Seg::Key(key));
        m
    } else if let Some(rest) = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
    {
        match rest.rsplit_once(", expected ") {
            Some((found, expected)) if segs.is_empty() => format!(
                "the file must be a YAML mapping of settings, but it holds a {found}: write one \
                 \"key: value\" per line, e.g. \"session:\" followed by \"  mode: grace-period\" \
                 (expected {expected})"
            ),
            Some((found, expected)) => format!("expected {expected}, found {found}"),
            None => msg.clone(),
        }
    } else if let Some(rest) = msg.strip_prefix("duplicate key ") {
        // Our own duplicate message from a checked map: name the repeated key in the path.
        if let Some(k) = rest.split('"').nth(1) {
            if !matches!(segs.last(), Some(Seg::Key(last)) if last == k) {
                segs.push(Seg::Key(k.to_string()));
            }
        }
        msg.clone()
    } else {
        msg.clone()
    };
    ConfigError {
        path: file.to_path_buf(),
        line,
        key: display_path(&segs),
        message,
    }
}

/// The line of the second occurrence of `key` in the block mapping that starts at
/// (`line`, `column`), both 1-based; `None` when it cannot be told (e.g. flow style).
fn duplicate_line(text: &str, line: usize, column: usize, key: &str) -> Option<usize> {
    let indent = column.checked_sub(1)?;
    let first = line.checked_sub(1)?;
    let is_key = |s: &str| {
        [key.to_string(), format!("{key:?}"), format!("'{key}'")]
            .iter()
            .any(|k| {
                s.strip_prefix(k.as_str())
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
    };
    let mut seen = 0;
    for (i, l) in text.lines().enumerate().skip(first) {
        let content = if i == first {
            l.get(indent..)?
        } else {
            let trimmed = l.trim_start_matches(' ');
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let this_indent = l.len() - trimmed.len();
            if this_indent < indent {
                return None;
            }
            if this_indent > indent {
                continue;
            }
            trimmed
        };
        if is_key(content) {
            seen += 1;
            if seen == 2 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// A valid key close to `unknown` (same up to case, a prefix, or at most two edits).
fn suggestion<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let u = unknown.to_ascii_lowercase().replace('-', "_");
    valid
        .iter()
        .map(|v| (edit_distance(&u, v), *v))
        .filter(|(d, v)| {
            *d <= (u.len() / 3).max(1)
                || (u.len() >= 3 && (v.starts_with(u.as_str()) || u.starts_with(*v)))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// Levenshtein distance, for "did you mean" suggestions (config keys, Podfile keys).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
