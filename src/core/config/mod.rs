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
}

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
}

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
}

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
                max_lifetime: Duration::from_secs(8 * 3600),
                mode: SessionMode::GracePeriod,
                ttl: Duration::from_secs(3600),
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

resources:
  # Containers one user may have at the same time (0 = unlimited).
  max_per_user: 3

# Project definitions (name -> repository, image, ...).
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
"#;

// ---------------------------------------------------------------------------------------------
// Value parsers (shared with other modules, e.g. for command-line flags).

/// A value that does not parse. The message says what is wrong and how to write it: it is what
/// a person reads (serde puts it behind the file, line and key), so it stays one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(String);

impl ValueError {
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<String> for ValueError {
    fn from(message: String) -> ValueError {
        ValueError(message)
    }
}

impl From<&str> for ValueError {
    fn from(message: &str) -> ValueError {
        ValueError(message.to_string())
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// For callers that print the error (`?` where the error type is `String`, e.g. clap value parsers).
impl From<ValueError> for String {
    fn from(e: ValueError) -> Self {
        e.0
    }
}

/// `ValueError(format!(..))`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        ValueError(format!($($arg)*))
    };
}

const DURATION_HINT: &str = "give a number with a unit, e.g. 60s, 5m, 8h";
const SIZE_HINT: &str =
    "give a number of bytes or a number with k, m, g or t, e.g. 512m, 2g, 1.5g (0 = unlimited)";

/// Parses a duration such as `500ms`, `60s`, `5m`, `8h`, `1d` or `1h30m`; a bare `0` is zero.
/// The error says what is wrong and how to write it.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid!("empty duration: {DURATION_HINT}"));
    }
    if t.starts_with('-') {
        return Err(invalid!(
            "invalid duration {text:?}: a duration cannot be negative; {DURATION_HINT}"
        ));
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if num.is_empty() {
            return Err(invalid!(
                "invalid duration {text:?}: expected a number before {unit:?}; {DURATION_HINT}"
            ));
        }
        if unit.is_empty() {
            return Err(invalid!("invalid duration {text:?}: {DURATION_HINT}"));
        }
        let unit_nanos: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            _ => {
                return Err(invalid!(
                    "invalid duration {text:?}: unknown unit {unit:?}; use ms, s, m, h or d, \
                     e.g. 60s, 5m, 8h, 1h30m"
                ))
            }
        };
        let value = scaled_decimal(num, unit_nanos).ok_or_else(|| {
            invalid!("invalid duration {text:?}: {num:?} is not a number; {DURATION_HINT}")
        })?;
        total = total
            .checked_add(value)
            .ok_or_else(|| invalid!("invalid duration {text:?}: too large; {DURATION_HINT}"))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| invalid!("invalid duration {text:?}: too large; {DURATION_HINT}"))?;
    // The remainder is below 10^9, so it always fits.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Parses a size such as `2g`, `512m`, `1024k`, `1.5g`, `2gb` or plain bytes `1048576`
/// (suffixes are case-insensitive, ×1024ⁿ). `""` and `"0"` mean 0 (unlimited).
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let t = text.trim();
    if t.is_empty() || t == "0" {
        return Ok(0);
    }
    if t.starts_with('-') {
        return Err(invalid!(
            "invalid size {text:?}: a size cannot be negative; {SIZE_HINT}"
        ));
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_len);
    let multiplier: u128 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => {
            return Err(invalid!(
                "invalid size {text:?}: unknown unit {suffix:?}; {SIZE_HINT}"
            ))
        }
    };
    if num.is_empty() {
        return Err(invalid!(
            "invalid size {text:?}: expected a number; {SIZE_HINT}"
        ));
    }
    if multiplier == 1 && num.contains('.') {
        return Err(invalid!(
            "invalid size {text:?}: a byte count must be a whole number; {SIZE_HINT}"
        ));
    }
    let value = scaled_decimal(num, multiplier)
        .ok_or_else(|| invalid!("invalid size {text:?}: {num:?} is not a number; {SIZE_HINT}"))?;
    u64::try_from(value).map_err(|_| invalid!("invalid size {text:?}: too large; {SIZE_HINT}"))
}

/// `digits[.digits]` × `unit`, exactly (the fractional part is truncated to whole units of 1).
fn scaled_decimal(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_val.checked_mul(unit)?;
    // Ignore digits beyond what can matter, to keep the arithmetic bounded.
    let frac = &frac[..frac.len().min(24)];
    if !frac.is_empty() {
        let frac_val: u128 = frac.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        value = value.checked_add(frac_val.checked_mul(unit)? / scale)?;
    }
    Some(value)
}

fn parse_grace(text: &str) -> Result<Duration, ValueError> {
    parse_duration(text)
}

fn parse_positive_duration(text: &str) -> Result<Duration, ValueError> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(invalid!(
            "invalid duration {text:?}: must be greater than 0; {DURATION_HINT}"
        ));
    }
    Ok(d)
}

fn parse_cpus(text: &str) -> Result<f64, ValueError> {
    const HINT: &str = "give a number of CPUs, e.g. 2 or 0.5 (0 = unlimited)";
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid!("empty value: {HINT}"));
    }
    let n: f64 = t
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| invalid!("invalid number of CPUs {text:?}: {HINT}"))?;
    if n < 0.0 {
        return Err(invalid!(
            "invalid number of CPUs {text:?}: cannot be negative; {HINT}"
        ));
    }
    if n > 1024.0 {
        return Err(invalid!(
            "invalid number of CPUs {text:?}: at most 1024 are allowed; {HINT}"
        ));
    }
    // "-0" parses as negative zero; store a plain zero.
    Ok(if n == 0.0 { 0.0 } else { n })
}

fn parse_mode(text: &str) -> Result<SessionMode, ValueError> {
    SessionMode::parse(text.trim()).ok_or_else(|| {
        invalid!(
            "invalid session mode {text:?}: use one of grace-period, destroy-on-disconnect, \
             named (alias persistent), ttl"
        )
    })
}

fn parse_abs_path(text: &str, example: &str) -> Result<PathBuf, ValueError> {
    if text.is_empty() {
        return Err(invalid!(
            "empty path: give an absolute path, e.g. {example}"
        ));
    }
    if text.contains('\0') || !text.starts_with('/') {
        return Err(invalid!(
            "path {text:?} is not absolute: give a full path starting with /, e.g. {example}"
        ));
    }
    Ok(PathBuf::from(text))
}

fn parse_opt_abs_path(text: &str, example: &str) -> Result<Option<PathBuf>, ValueError> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_abs_path(text, example)
        .map(Some)
        .map_err(|e| invalid!("{e} (or \"\" to turn it off)"))
}

fn parse_shell(text: &str) -> Result<String, ValueError> {
    parse_abs_path(text, "/bin/bash").map(|_| text.to_string())
}

fn parse_image(text: &str) -> Result<String, ValueError> {
    if text.is_empty() {
        return Err(invalid!(
            "empty image: give an image reference, e.g. ubuntu:24.04"
        ));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(invalid!(
            "invalid image {text:?}: an image reference contains no spaces, e.g. ubuntu:24.04 \
             or ghcr.io/org/dev:latest"
        ));
    }
    Ok(text.to_string())
}

fn parse_capability(text: &str) -> Result<String, ValueError> {
    let t = text.trim();
    let name = t.strip_prefix("CAP_").unwrap_or(t);
    let valid = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    if valid(name) {
        return Ok(name.to_string());
    }
    let upper = t.to_ascii_uppercase();
    let upper = upper.strip_prefix("CAP_").unwrap_or(&upper).to_string();
    let example = if valid(&upper) {
        upper
    } else {
        "NET_BIND_SERVICE".to_string()
    };
    Err(invalid!(
        "invalid capability {text:?}: write a capability name in upper case, e.g. {example} \
         (see capabilities(7)), or ALL"
    ))
}

fn parse_bool(text: &str) -> Result<bool, ValueError> {
    match text.trim() {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid!("invalid value {text:?}: write true or false")),
    }
}

fn parse_pids_limit(text: &str) -> Result<i64, ValueError> {
    const HINT: &str = "give a whole number of processes, e.g. 256 (0 = no limit)";
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| invalid!("invalid pids_limit {text:?}: {HINT}"))?;
    if n < 0 {
        return Err(invalid!(
            "invalid pids_limit {text:?}: cannot be negative; {HINT}"
        ));
    }
    Ok(n)
}

fn parse_network(text: &str) -> Result<NetworkMode, ValueError> {
    match text.trim() {
        "isolated" => Ok(NetworkMode::Isolated),
        "shared" => Ok(NetworkMode::Shared),
        other => Err(invalid!(
            "invalid network mode {other:?}: use isolated (one network per session) or shared \
             (Docker's default bridge)"
        )),
    }
}

fn parse_runtime(text: &str) -> Result<Option<String>, ValueError> {
    if text.is_empty() {
        return Ok(None);
    }
    let mut chars = text.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(Some(text.to_string()))
    } else {
        Err(invalid!(
            "invalid runtime {text:?}: give the name of a runtime registered with Docker \
             (letters, digits, _ . -), e.g. runc or runsc, or \"\" for Docker's default"
        ))
    }
}

fn parse_tmpfs_target(text: &str) -> Result<String, ValueError> {
    if text.starts_with('/') && !text.contains('\0') {
        Ok(text.to_string())
    } else {
        Err(invalid!(
            "tmpfs mount point {text:?} is not an absolute path: write it as a full path, \
             e.g. /tmp"
        ))
    }
}

fn parse_log_level(text: &str) -> Result<String, ValueError> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => Ok(t),
        _ => Err(invalid!(
            "invalid log level {text:?}: use one of trace, debug, info, warn, error"
        )),
    }
}

fn parse_max_per_user(text: &str) -> Result<u32, ValueError> {
    const HINT: &str = "give a whole number of containers per user, e.g. 3 (0 = unlimited)";
    let t = text.trim();
    if t.starts_with('-') {
        return Err(invalid!(
            "invalid max_per_user {text:?}: cannot be negative; {HINT}"
        ));
    }
    t.parse()
        .map_err(|_| invalid!("invalid max_per_user {text:?}: {HINT}"))
}

fn parse_max_connections(text: &str) -> Result<u32, ValueError> {
    const HINT: &str = "give a whole number of open connections per user, at least 1, e.g. 64";
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(invalid!(
            "invalid max_connections_per_user {text:?}: {HINT}"
        )),
    }
}

/// The broker socket: sshd puts it into the forced command (`spawn --socket PATH`) and a unix
/// socket address holds at most 107 bytes.
fn parse_socket(text: &str) -> Result<PathBuf, ValueError> {
    let p = parse_abs_path(text, DEFAULT_SOCKET)?;
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '%' | '\\'))
    {
        return Err(invalid!(
            "socket path {text:?} contains a space, quote, backslash or %: sshd would split or \
             expand it in the forced command; use a plain path such as {DEFAULT_SOCKET}"
        ));
    }
    if text.len() > 107 {
        return Err(invalid!(
            "socket path {text:?} is {} bytes long; a unix socket path holds at most 107: use a \
             shorter one such as {DEFAULT_SOCKET}",
            text.len()
        ));
    }
    Ok(p)
}

/// The persistent homes' directory: bind-mounted (through the engine's Mounts API) per user.
fn parse_homes_dir(text: &str) -> Result<PathBuf, ValueError> {
    let p = parse_abs_path(text, "/var/lib/podspawn/homes")?;
    if text.chars().any(|c| c.is_control()) {
        return Err(invalid!(
            "homes_dir {text:?} contains a control character; use a plain path such as \
             /var/lib/podspawn/homes"
        ));
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) || p == Path::new("/") {
        return Err(invalid!(
            "homes_dir {text:?} must name a directory of its own without \"..\", such as \
             /var/lib/podspawn/homes"
        ));
    }
    Ok(p)
}

fn parse_github_url(text: &str) -> Result<String, ValueError> {
    let t = text.trim_end_matches('/');
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !t.chars().any(char::is_whitespace) => Ok(t.to_string()),
        _ => Err(invalid!(
            "invalid URL {text:?}: give an http:// or https:// URL, e.g. https://github.com"
        )),
    }
}

fn parse_env_name(text: &str) -> Result<String, ValueError> {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(text.to_string())
    } else {
        Err(invalid!(
            "invalid environment variable name {text:?}: use letters, digits and _, not \
             starting with a digit, e.g. MY_VAR"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// serde plumbing. Every value is validated inside a `Visitor`, so serde_norway attaches the
// line of the offending value to the error.

/// Visits one scalar as text and runs `f` on it. YAML null (`key:` or `~`) reads as "".
struct TextVisitor<F> {
    expecting: &'static str,
    f: F,
}

fn is_plain_null(v: &str) -> bool {
    matches!(v, "~" | "null" | "Null" | "NULL")
}

impl<'de, T, F> Visitor<'de> for TextVisitor<F>
where
    F: FnOnce(&str) -> Result<T, ValueError>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        let v = if is_plain_null(v) { "" } else { v };
        (self.f)(v).map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        (self.f)("").map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        (self.f)(if v { "true" } else { "false" }).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.f)(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.f)(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.f)(&v.to_string()).map_err(E::custom)
    }
}

fn text<'de, D, T>(
    d: D,
    expecting: &'static str,
    f: impl FnOnce(&str) -> Result<T, ValueError>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_str(TextVisitor { expecting, f })
}

macro_rules! text_fields {
    ($($name:ident -> $ty:ty, $expecting:expr, $f:expr;)*) => {
        $(
            fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                text(d, $expecting, $f)
            }
        )*
    };
}

const EXP_PATH: &str = "an absolute path";

text_fields! {
    de_key_dir -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/etc/podspawn/keys");
    de_github_url -> String, "an http:// or https:// URL", parse_github_url;
    de_image -> String, "an image reference such as ubuntu:24.04", parse_image;
    de_shell -> String, "an absolute path such as /bin/bash", parse_shell;
    de_cpus -> f64, "a number of CPUs such as 2 or 0.5", parse_cpus;
    de_memory -> u64, "a size such as 512m or 2g", parse_size;
    de_grace -> Duration, "a duration such as 60s, 5m or 8h", parse_grace;
    de_positive_duration -> Duration, "a duration such as 60s, 5m or 8h", parse_positive_duration;
    de_mode -> SessionMode, "a session mode such as grace-period", parse_mode;
    de_db_path -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/var/lib/podspawn/state.db");
    de_lock_dir -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/var/lib/podspawn/locks");
    de_homes_dir -> PathBuf, EXP_PATH, parse_homes_dir;
    de_log_file -> Option<PathBuf>, EXP_PATH, |s| parse_opt_abs_path(s, "/var/log/podspawn/podspawn.log");
    de_audit_log -> Option<PathBuf>, EXP_PATH, |s| parse_opt_abs_path(s, "/var/log/podspawn/audit.log");
    de_log_level -> String, "a log level such as info", parse_log_level;
    de_bool -> bool, "true or false", parse_bool;
    de_pids_limit -> i64, "a whole number such as 256", parse_pids_limit;
    de_runtime -> Option<String>, "a runtime name such as runsc", parse_runtime;
    de_network -> NetworkMode, "isolated or shared", parse_network;
    de_max_per_user -> u32, "a whole number such as 3", parse_max_per_user;
    de_projects_file -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/etc/podspawn/projects.yaml");
    de_users_dir -> PathBuf, EXP_PATH, |s| parse_abs_path(s, "/etc/podspawn/users");
    de_socket -> PathBuf, EXP_PATH, parse_socket;
    de_max_connections -> u32, "a whole number such as 64", parse_max_connections;
}

fn de_opt_image<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_image(d).map(Some)
}
fn de_opt_shell<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_shell(d).map(Some)
}
fn de_opt_cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    de_cpus(d).map(Some)
}
fn de_opt_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_memory(d).map(Some)
}
fn de_opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SessionMode>, D::Error> {
    de_mode(d).map(Some)
}

/// One capability name, normalized (`CAP_` stripped).
struct Capability(String);

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d, "a capability name such as CHOWN", parse_capability).map(Capability)
    }
}

fn de_caps<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<Capability>::deserialize(d).map(|v| v.into_iter().map(|c| c.0).collect())
}

/// Any scalar as a string; null is "".
struct LooseString(String);

impl<'de> Deserialize<'de> for LooseString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LooseString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_none<E: de::Error>(self) -> Result<LooseString, E> {
                Ok(LooseString(String::new()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LooseString, E> {
                Ok(LooseString(String::new()))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<LooseString, D::Error> {
                text(d, "a string", |s| Ok(s.to_string())).map(LooseString)
            }
        }
        d.deserialize_option(V)
    }
}

/// A map key checked by `check` and rejected when it is already in `seen` (the error then
/// carries the line of the repeated key).
struct KeySeed<'a, F> {
    seen: &'a BTreeMap<String, String>,
    expecting: &'static str,
    check: F,
}

impl<'de, F> DeserializeSeed<'de> for KeySeed<'_, F>
where
    F: FnOnce(&str) -> Result<String, ValueError>,
{
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let KeySeed {
            seen,
            expecting,
            check,
        } = self;
        d.deserialize_str(TextVisitor {
            expecting,
            f: move |s: &str| {
                let key = check(s)?;
                if seen.contains_key(&key) {
                    Err(ValueError(duplicate_message(&key)))
                } else {
                    Ok(key)
                }
            },
        })
    }
}

/// A string→string map with checked keys and no duplicates.
struct CheckedMapVisitor {
    expecting: &'static str,
    key_expecting: &'static str,
    check: fn(&str) -> Result<String, ValueError>,
}

impl<'de> Visitor<'de> for CheckedMapVisitor {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        loop {
            let seed = KeySeed {
                seen: &out,
                expecting: self.key_expecting,
                check: self.check,
            };
            let Some(key) = map.next_key_seed(seed)? else {
                break;
            };
            let LooseString(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

fn de_tmpfs<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(CheckedMapVisitor {
        expecting: "a mapping of mount point to options, e.g. {/tmp: \"size=256m\"}",
        key_expecting: "an absolute mount point such as /tmp",
        check: parse_tmpfs_target,
    })
}

fn de_env<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(CheckedMapVisitor {
        expecting: "a mapping of variable name to value, e.g. {EDITOR: vim}",
        key_expecting: "an environment variable name such as EDITOR",
        check: parse_env_name,
    })
}

fn duplicate_message(key: &str) -> String {
    format!("duplicate key {key:?}: each key may appear only once here; remove or merge the repeated entry")
}

// Raw mirrors of the YAML layout. `default` makes absent keys keep the defaults.

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping of settings (auth, defaults, session, state, log, security, resources, projects_file, users_dir, broker)"
)]
struct RawConfig {
    auth: RawAuth,
    defaults: RawDefaults,
    session: RawSession,
    state: RawState,
    log: RawLog,
    security: RawSecurity,
    resources: RawResources,
    #[serde(deserialize_with = "de_projects_file")]
    projects_file: PathBuf,
    #[serde(deserialize_with = "de_users_dir")]
    users_dir: PathBuf,
    broker: RawBroker,
}

impl Default for RawConfig {
    fn default() -> Self {
        let d = Config::default();
        RawConfig {
            auth: RawAuth {
                key_dir: d.auth.key_dir,
                github_url: d.auth.github_url,
            },
            defaults: RawDefaults {
                image: d.defaults.image,
                shell: d.defaults.shell,
                cpus: d.defaults.cpus,
                memory: d.defaults.memory,
            },
            session: RawSession {
                grace_period: d.session.grace_period,
                max_lifetime: d.session.max_lifetime,
                mode: d.session.mode,
                ttl: d.session.ttl,
            },
            state: RawState {
                db_path: d.state.db_path,
                lock_dir: d.state.lock_dir,
                homes_dir: d.state.homes_dir,
            },
            log: RawLog {
                file: d.log.file,
                audit_log: d.log.audit_log,
                level: d.log.level,
            },
            security: RawSecurity {
                cap_drop: d.security.cap_drop,
                cap_add: d.security.cap_add,
                no_new_privileges: d.security.no_new_privileges,
                pids_limit: d.security.pids_limit,
                readonly_rootfs: d.security.readonly_rootfs,
                tmpfs: d.security.tmpfs,
                runtime: d.security.runtime,
                network: d.security.network,
            },
            resources: RawResources {
                max_per_user: d.resources.max_per_user,
            },
            projects_file: d.projects_file,
            users_dir: d.users_dir,
            broker: RawBroker {
                socket: d.broker.socket,
                max_connections_per_user: d.broker.max_connections_per_user,
                first_message_timeout: d.broker.first_message_timeout,
            },
        }
    }
}

macro_rules! raw_section_default {
    ($($raw:ident => $field:ident),* $(,)?) => {
        $(
            impl Default for $raw {
                fn default() -> Self {
                    RawConfig::default().$field
                }
            }
        )*
    };
}

raw_section_default! {
    RawAuth => auth,
    RawDefaults => defaults,
    RawSession => session,
    RawState => state,
    RawLog => log,
    RawSecurity => security,
    RawResources => resources,
    RawBroker => broker,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys key_dir, github_url"
)]
struct RawAuth {
    #[serde(deserialize_with = "de_key_dir")]
    key_dir: PathBuf,
    #[serde(deserialize_with = "de_github_url")]
    github_url: String,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys image, shell, cpus, memory"
)]
struct RawDefaults {
    #[serde(deserialize_with = "de_image")]
    image: String,
    #[serde(deserialize_with = "de_shell")]
    shell: String,
    #[serde(deserialize_with = "de_cpus")]
    cpus: f64,
    #[serde(deserialize_with = "de_memory")]
    memory: u64,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys grace_period, max_lifetime, mode, ttl"
)]
struct RawSession {
    #[serde(deserialize_with = "de_grace")]
    grace_period: Duration,
    #[serde(deserialize_with = "de_positive_duration")]
    max_lifetime: Duration,
    #[serde(deserialize_with = "de_mode")]
    mode: SessionMode,
    #[serde(deserialize_with = "de_positive_duration")]
    ttl: Duration,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys db_path, lock_dir, homes_dir"
)]
struct RawState {
    #[serde(deserialize_with = "de_db_path")]
    db_path: PathBuf,
    #[serde(deserialize_with = "de_lock_dir")]
    lock_dir: PathBuf,
    #[serde(deserialize_with = "de_homes_dir")]
    homes_dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys file, audit_log, level"
)]
struct RawLog {
    #[serde(deserialize_with = "de_log_file")]
    file: Option<PathBuf>,
    #[serde(deserialize_with = "de_audit_log")]
    audit_log: Option<PathBuf>,
    #[serde(deserialize_with = "de_log_level")]
    level: String,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys cap_drop, cap_add, no_new_privileges, pids_limit, readonly_rootfs, tmpfs, runtime, network"
)]
struct RawSecurity {
    #[serde(deserialize_with = "de_caps")]
    cap_drop: Vec<String>,
    #[serde(deserialize_with = "de_caps")]
    cap_add: Vec<String>,
    #[serde(deserialize_with = "de_bool")]
    no_new_privileges: bool,
    #[serde(deserialize_with = "de_pids_limit")]
    pids_limit: i64,
    #[serde(deserialize_with = "de_bool")]
    readonly_rootfs: bool,
    #[serde(deserialize_with = "de_tmpfs")]
    tmpfs: BTreeMap<String, String>,
    #[serde(deserialize_with = "de_runtime")]
    runtime: Option<String>,
    #[serde(deserialize_with = "de_network")]
    network: NetworkMode,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the key max_per_user"
)]
struct RawResources {
    #[serde(deserialize_with = "de_max_per_user")]
    max_per_user: u32,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping with the keys socket, max_connections_per_user, first_message_timeout"
)]
struct RawBroker {
    #[serde(deserialize_with = "de_socket")]
    socket: PathBuf,
    #[serde(deserialize_with = "de_max_connections")]
    max_connections_per_user: u32,
    #[serde(deserialize_with = "de_positive_duration")]
    first_message_timeout: Duration,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping of overrides (image, cpus, memory, shell, mode, env)"
)]
struct RawUser {
    #[serde(deserialize_with = "de_opt_image")]
    image: Option<String>,
    #[serde(deserialize_with = "de_opt_cpus")]
    cpus: Option<f64>,
    #[serde(deserialize_with = "de_opt_memory")]
    memory: Option<u64>,
    #[serde(deserialize_with = "de_opt_shell")]
    shell: Option<String>,
    #[serde(deserialize_with = "de_opt_mode")]
    mode: Option<SessionMode>,
    #[serde(deserialize_with = "de_env")]
    env: BTreeMap<String, String>,
}

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

fn edit_distance(a: &str, b: &str) -> usize {
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
