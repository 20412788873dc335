//! The module arguments of the PAM configuration line, e.g.
//! `session required pam_podspawn.so service=sshd group=podspawn-users timeout=30`.
//!
//! Parsing is best effort: every argument that is well formed is applied, every one that is not
//! is recorded in `errors` (and its default kept). The caller fails closed for members of the group
//! when `errors` is not empty, and ignores everyone else, so a typo never locks out the admin.

use std::path::PathBuf;
use std::time::Duration;

/// The group whose members are confined, when `group=` is not given.
pub const DEFAULT_GROUP: &str = "podspawn-users";
/// The PAM service the module acts for, when `service=` is not given.
pub const DEFAULT_SERVICE: &str = "sshd";
/// The bound on the whole broker exchange, when `timeout=` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The accepted range of `timeout=` (seconds).
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=300;
/// sun_path holds 108 bytes, the terminating NUL included.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// PAM service names (PAM_SERVICE) the module acts for.
    pub services: Vec<String>,
    /// Members of this group are put into their network namespace.
    pub group: String,
    /// The broker's unix socket.
    pub socket: PathBuf,
    /// Bound on connecting to the broker, sending the request and reading the reply.
    pub timeout: Duration,
    /// Log each decision (LOG_DEBUG).
    pub debug: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            services: vec![DEFAULT_SERVICE.to_string()],
            group: DEFAULT_GROUP.to_string(),
            socket: PathBuf::from(podspawn::core::config::DEFAULT_SOCKET),
            timeout: DEFAULT_TIMEOUT,
            debug: false,
        }
    }
}

/// The outcome of parsing: the arguments (defaults where an argument was missing or bad) and what
/// was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub args: Args,
    /// False when `service=` was given but malformed: the service list is then unknown, and the
    /// module acts (fails closed for members) whatever the service.
    pub services_known: bool,
    /// One line per bad argument, for the log.
    pub errors: Vec<String>,
}

impl Parsed {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Parses the module arguments. `None` stands for an argument that is not valid UTF-8.
pub fn parse<'a>(argv: impl IntoIterator<Item = Option<&'a str>>) -> Parsed {
    let mut args = Args::default();
    let mut services_known = true;
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, arg) in argv.into_iter().enumerate() {
        let Some(arg) = arg else {
            errors.push(format!("argument {} is not valid UTF-8", i + 1));
            continue;
        };
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg, None),
        };
        let known = ["service", "group", "socket", "timeout", "debug"];
        if let Some(k) = known.iter().find(|k| **k == key) {
            if seen.contains(k) {
                errors.push(format!("{key}= given more than once"));
                if *k == "service" {
                    services_known = false;
                }
                continue;
            }
            seen.push(k);
        }
        match (key, value) {
            ("service", Some(v)) => match services(v) {
                Ok(list) => args.services = list,
                Err(e) => {
                    services_known = false;
                    errors.push(e);
                }
            },
            ("group", Some(v)) => match group(v) {
                Ok(g) => args.group = g,
                Err(e) => errors.push(e),
            },
            ("socket", Some(v)) => match socket(v) {
                Ok(p) => args.socket = p,
                Err(e) => errors.push(e),
            },
            ("timeout", Some(v)) => match timeout(v) {
                Ok(t) => args.timeout = t,
                Err(e) => errors.push(e),
            },
            ("debug", None) => args.debug = true,
            ("debug", Some(_)) => errors.push(format!("{arg:?}: debug takes no value")),
            ("service" | "group" | "socket" | "timeout", None) => {
                if key == "service" {
                    services_known = false;
                }
                errors.push(format!("{arg:?}: {key} needs a value ({key}=...)"));
            }
            _ => errors.push(format!("unknown argument {arg:?}")),
        }
    }
    Parsed {
        args,
        services_known,
        errors,
    }
}

fn services(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for name in v.split(',') {
        // A PAM service name is a file name in /etc/pam.d.
        let good = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@'));
        if !good {
            return Err(format!("service={v:?}: {name:?} is not a PAM service name"));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

fn group(v: &str) -> Result<String, String> {
    let good = !v.is_empty()
        && v.len() <= 256
        && !v.starts_with('-')
        && v.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ':' && c != ',' && c != '/');
    if good {
        Ok(v.to_string())
    } else {
        Err(format!("group={v:?} is not a group name"))
    }
}

fn socket(v: &str) -> Result<PathBuf, String> {
    if !v.starts_with('/') {
        return Err(format!("socket={v:?}: the path must be absolute"));
    }
    if v.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "socket={v:?}: longer than a unix socket path can be ({MAX_SOCKET_PATH} bytes)"
        ));
    }
    Ok(PathBuf::from(v))
}

fn timeout(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(s) if TIMEOUT_RANGE.contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "timeout={v:?}: want whole seconds from {} to {}",
            TIMEOUT_RANGE.start(),
            TIMEOUT_RANGE.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(argv: &[&str]) -> Parsed {
        parse(argv.iter().map(|a| Some(*a)))
    }

    #[test]
    fn defaults() {
        let r = p(&[]);
        assert!(r.ok());
        assert!(r.services_known);
        assert_eq!(r.args.services, vec!["sshd"]);
        assert_eq!(r.args.group, "podspawn-users");
        assert_eq!(r.args.socket, PathBuf::from("/run/podspawn/podspawn.sock"));
        assert_eq!(r.args.timeout, Duration::from_secs(30));
        assert!(!r.args.debug);
    }

    #[test]
    fn all_given() {
        let r = p(&[
            "service=sshd,sshd-pamwt",
            "group=devs",
            "socket=/tmp/x.sock",
            "timeout=5",
            "debug",
        ]);
        assert!(r.ok(), "{:?}", r.errors);
        assert_eq!(r.args.services, vec!["sshd", "sshd-pamwt"]);
        assert_eq!(r.args.group, "devs");
        assert_eq!(r.args.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(r.args.timeout, Duration::from_secs(5));
        assert!(r.args.debug);
        let r = p(&["service=login"]);
        assert_eq!(r.args.services, vec!["login"]);
    }

    #[test]
    fn timeout_bounds() {
        assert_eq!(p(&["timeout=1"]).args.timeout, Duration::from_secs(1));
        assert_eq!(p(&["timeout=300"]).args.timeout, Duration::from_secs(300));
        for bad in [
            "timeout=0",
            "timeout=301",
            "timeout=-1",
            "timeout=1.5",
            "timeout=",
            "timeout=x",
        ] {
            let r = p(&[bad]);
            assert_eq!(r.errors.len(), 1, "{bad}");
            assert!(r.errors[0].contains("timeout"), "{bad}: {:?}", r.errors);
            assert_eq!(r.args.timeout, DEFAULT_TIMEOUT, "{bad}");
            assert!(r.services_known, "{bad}");
        }
    }

    #[test]
    fn bad_values_keep_defaults_and_say_why() {
        for bad in [
            "service=",
            "service=sshd,",
            "service=,sshd",
            "service=ss hd",
            "service=../etc",
            "service",
        ] {
            let r = p(&[bad]);
            assert!(!r.ok(), "{bad}");
            assert!(!r.services_known, "{bad}");
            assert_eq!(r.args.services, vec!["sshd"], "{bad}");
        }
        for bad in ["group=", "group=a:b", "group=a b", "group=-x", "group"] {
            let r = p(&[bad]);
            assert!(!r.ok(), "{bad}");
            assert!(r.services_known, "{bad}");
            assert_eq!(r.args.group, DEFAULT_GROUP, "{bad}");
        }
        let long = format!("socket=/{}", "a".repeat(120));
        for bad in ["socket=", "socket=relative.sock", "socket", long.as_str()] {
            let r = p(&[bad]);
            assert!(!r.ok(), "{bad}");
            assert_eq!(
                r.args.socket,
                PathBuf::from(podspawn::core::config::DEFAULT_SOCKET),
                "{bad}"
            );
        }
        let r = p(&["debug=yes"]);
        assert!(!r.ok());
        assert!(!r.args.debug);
    }

    #[test]
    fn unknown_duplicate_and_non_utf8() {
        let r = p(&["grop=devs"]);
        assert_eq!(r.errors, vec![r#"unknown argument "grop=devs""#]);
        assert!(r.services_known);
        let r = p(&["use_first_pass"]);
        assert_eq!(r.errors.len(), 1);

        // The first value stays; a second one is an error (which one did the admin mean?).
        let r = p(&["group=a", "group=b"]);
        assert_eq!(r.args.group, "a");
        assert_eq!(r.errors.len(), 1);
        let r = p(&["service=a", "service=b"]);
        assert!(!r.services_known);

        let r = parse([Some("debug"), None]);
        assert!(r.args.debug);
        assert_eq!(r.errors, vec!["argument 2 is not valid UTF-8"]);
    }

    #[test]
    fn good_arguments_apply_next_to_bad_ones() {
        let r = p(&["group=devs", "timeout=9999", "service=sshd-x"]);
        assert_eq!(r.args.group, "devs");
        assert_eq!(r.args.services, vec!["sshd-x"]);
        assert!(r.services_known);
        assert_eq!(r.errors.len(), 1);
    }
}
