//! Value parsers for every configuration key (shared with command-line flags): each turns text into a value or a ValueError naming the fix.
use super::*;

// ---------------------------------------------------------------------------------------------
// Value parsers (shared with other modules, e.g. for command-line flags).

/// A value that does not parse. The message says what is wrong and how to write it: it is what
/// a person reads (serde puts it behind the file, line and key), so it stays one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub(super) String);

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

pub(super) const DURATION_HINT: &str = "give a number with a unit, e.g. 60s, 5m, 8h";
pub(super) const SIZE_HINT: &str =
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
pub(super) fn scaled_decimal(num: &str, unit: u128) -> Option<u128> {
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

pub(super) fn parse_grace(text: &str) -> Result<Duration, ValueError> {
    parse_duration(text)
}

pub(super) fn parse_positive_duration(text: &str) -> Result<Duration, ValueError> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(invalid!(
            "invalid duration {text:?}: must be greater than 0; {DURATION_HINT}"
        ));
    }
    Ok(d)
}

pub(super) fn parse_cpus(text: &str) -> Result<f64, ValueError> {
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

pub(super) fn parse_mode(text: &str) -> Result<SessionMode, ValueError> {
    SessionMode::parse(text.trim()).ok_or_else(|| {
        invalid!(
            "invalid session mode {text:?}: use one of grace-period, destroy-on-disconnect, \
             named (alias persistent), ttl"
        )
    })
}

pub(super) fn parse_abs_path(text: &str, example: &str) -> Result<PathBuf, ValueError> {
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

pub(super) fn parse_opt_abs_path(text: &str, example: &str) -> Result<Option<PathBuf>, ValueError> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_abs_path(text, example)
        .map(Some)
        .map_err(|e| invalid!("{e} (or \"\" to turn it off)"))
}

pub(super) fn parse_shell(text: &str) -> Result<String, ValueError> {
    parse_abs_path(text, "/bin/bash").map(|_| text.to_string())
}

pub(super) fn parse_image(text: &str) -> Result<String, ValueError> {
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

pub(super) fn parse_capability(text: &str) -> Result<String, ValueError> {
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

pub(super) fn parse_bool(text: &str) -> Result<bool, ValueError> {
    match text.trim() {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid!("invalid value {text:?}: write true or false")),
    }
}

pub(super) fn parse_pids_limit(text: &str) -> Result<i64, ValueError> {
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

pub(super) fn parse_network(text: &str) -> Result<NetworkMode, ValueError> {
    match text.trim() {
        "isolated" => Ok(NetworkMode::Isolated),
        "shared" => Ok(NetworkMode::Shared),
        other => Err(invalid!(
            "invalid network mode {other:?}: use isolated (one network per session) or shared \
             (Docker's default bridge)"
        )),
    }
}

pub(super) fn parse_port_forwarding(text: &str) -> Result<PortForwarding, ValueError> {
    match text.trim() {
        "auto" => Ok(PortForwarding::Auto),
        "on" | "true" | "yes" => Ok(PortForwarding::On),
        "off" | "false" | "no" => Ok(PortForwarding::Off),
        other => Err(invalid!(
            "invalid port_forwarding {other:?}: use auto (where pam_podspawn.so is in sshd's PAM \
             session stack), on (required) or off"
        )),
    }
}

pub(super) fn parse_runtime(text: &str) -> Result<Option<String>, ValueError> {
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

pub(super) fn parse_tmpfs_target(text: &str) -> Result<String, ValueError> {
    if text.starts_with('/') && !text.contains('\0') {
        Ok(text.to_string())
    } else {
        Err(invalid!(
            "tmpfs mount point {text:?} is not an absolute path: write it as a full path, \
             e.g. /tmp"
        ))
    }
}

pub(super) fn parse_log_level(text: &str) -> Result<String, ValueError> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => Ok(t),
        _ => Err(invalid!(
            "invalid log level {text:?}: use one of trace, debug, info, warn, error"
        )),
    }
}

pub(super) fn parse_max_per_user(text: &str) -> Result<u32, ValueError> {
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

pub(super) fn parse_max_connections(text: &str) -> Result<u32, ValueError> {
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
pub(super) fn parse_socket(text: &str) -> Result<PathBuf, ValueError> {
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

/// `broker.session_dir`: "" turns it off (no agent forwarding, no signals); otherwise a plain absolute path (it becomes
/// the source of a bind mount and the parent of sockets, at most 107 bytes with the socket name).
pub(super) fn parse_session_dir(text: &str) -> Result<Option<PathBuf>, ValueError> {
    let Some(p) = parse_opt_abs_path(text, DEFAULT_SESSION_DIR)? else {
        return Ok(None);
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid!(
            "session directory {text:?} contains a space or control character; use a plain path \
             such as {DEFAULT_SESSION_DIR}"
        ));
    }
    // <dir>/<user (≤ 32)>/<16 hex>.sock must fit a unix socket address (107 bytes).
    if text.len() > 107 - 1 - 32 - 1 - 21 {
        return Err(invalid!(
            "session directory {text:?} is {} bytes long; sockets under it would not fit a unix \
             socket address: use a shorter one such as {DEFAULT_SESSION_DIR}",
            text.len()
        ));
    }
    Ok(Some(p))
}

/// One `session.accept_env` entry: a variable name, or a prefix ending in `*`.
pub(super) fn parse_env_pattern(text: &str) -> Result<String, ValueError> {
    let name = text.strip_suffix('*').unwrap_or(text);
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !ok {
        return Err(invalid!(
            "{text:?} is not a variable name: use letters, digits and _ (not first a digit), \
             optionally ending in * for a prefix, e.g. LANG or LC_*"
        ));
    }
    let star = text.ends_with('*');
    // A name, or a prefix, that could match one of podspawn's own variables.
    let reserved = crate::core::protocol::RESERVED_ENV.iter().any(|r| {
        if star {
            r.starts_with(name)
        } else {
            *r == name
        }
    }) || ["SSH_", "PODSPAWN_"]
        .iter()
        .any(|p| name.starts_with(p) || (star && p.starts_with(name)));
    if reserved {
        return Err(invalid!(
            "{text:?} would let a client set a variable podspawn sets itself (HOME, USER, LOGNAME, \
             SHELL, PATH, TERM, MAIL, SSH_*, PODSPAWN_*); list other names"
        ));
    }
    Ok(text.to_string())
}

/// The persistent homes' directory: bind-mounted (through the engine's Mounts API) per user.
pub(super) fn parse_homes_dir(text: &str) -> Result<PathBuf, ValueError> {
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

pub(super) fn parse_github_url(text: &str) -> Result<String, ValueError> {
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

pub(super) fn parse_env_name(text: &str) -> Result<String, ValueError> {
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
