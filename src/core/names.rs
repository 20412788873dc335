//! Strict allow-lists for every name that reaches Docker, a shell, a path or a label, and the
//! fixed names of podspawn's own identities.

use std::fmt;

/// The system user sshd runs auth-keys as (AuthorizedKeysCommandUser).
pub const SYSTEM_USER: &str = "podspawn";
/// The group of every podspawn user's host account; sshd's Match block and the broker socket.
pub const USERS_GROUP: &str = "podspawn-users";
/// The GECOS field of the host accounts podspawn creates; only those are ever deleted.
pub const CREATED_MARKER: &str = "podspawn";
/// Shell of the host accounts podspawn creates (sshd runs the forced command through it).
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// A name that fails its allow-list; it carries the name as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidName {
    User(String),
    Project(String),
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidName::User(name) => write!(
                f,
                "invalid user name {name:?}: use 1-32 characters, lowercase letters, digits, '_' \
                 or '-', starting with a letter or '_'"
            ),
            InvalidName::Project(name) => write!(
                f,
                "invalid project name {name:?}: use 1-64 characters, lowercase letters, digits, \
                 '_' or '-', starting with a letter"
            ),
        }
    }
}

impl std::error::Error for InvalidName {}

/// For callers that print the error (`?` where the error type is `String`).
impl From<InvalidName> for String {
    fn from(e: InvalidName) -> Self {
        e.to_string()
    }
}

/// Every candidate name (or its network) is held by something that is not this session's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesTaken {
    pub names: Vec<String>,
}

impl fmt::Display for NamesTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the container names {} (or their networks) are held by containers podspawn does not \
             manage for this user and installation; rename or remove them (docker ps -a, docker \
             network ls)",
            self.names.join(" and ")
        )
    }
}

impl std::error::Error for NamesTaken {}

/// For callers that print the error (`?` where the error type is `String`).
impl From<NamesTaken> for String {
    fn from(e: NamesTaken) -> Self {
        e.to_string()
    }
}

/// A host account name podspawn accepts: `^[a-z_][a-z0-9_-]{0,31}$` (the useradd rules).
pub fn validate_user(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName::User(name.to_string()))
    }
}

/// A project name: `^[a-z][a-z0-9_-]{0,63}$`.
pub fn validate_project(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName::Project(name.to_string()))
    }
}

/// `podspawn-<user>` or `podspawn-<user>-<project>`; both parts must already be validated.
pub fn container_name(user: &str, project: &str) -> String {
    if project.is_empty() {
        format!("podspawn-{user}")
    } else {
        format!("podspawn-{user}-{project}")
    }
}

/// Who holds a container or network name on the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nothing has that name.
    Free,
    /// An object of this (user, project, installation): left behind by a crash, ours to replace.
    Ours,
    /// Anything else: another user, project or installation, or not podspawn's at all.
    Other,
}

/// FNV-1a 64 of `bytes`: a stable, dependency-free hash for names and ids (not for secrets).
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The names a session of (user, project) in `instance` may use, in order of preference: the
/// seed page's `podspawn-<user>[-<project>]`, then a deterministic alternative for when another
/// owner holds it (`alice` in project `dev` and user `alice-dev` both map to `podspawn-alice-dev`).
pub fn name_candidates(user: &str, project: &str, instance: &str) -> [String; 2] {
    let base = container_name(user, project);
    let h = fnv1a64(
        instance
            .bytes()
            .chain([0])
            .chain(user.bytes())
            .chain([0])
            .chain(project.bytes()),
    );
    let alt = format!("{base}-{:08x}", h >> 32);
    [base, alt]
}

/// Picks the first candidate whose container name and network name are both free or ours.
/// Returns the name and whether objects of ours must be removed first. Pure.
pub fn choose_name(candidates: &[(String, Holder, Holder)]) -> Result<(String, bool), NamesTaken> {
    for (name, container, network) in candidates {
        if *container != Holder::Other && *network != Holder::Other {
            return Ok((
                name.clone(),
                *container == Holder::Ours || *network == Holder::Ours,
            ));
        }
    }
    Err(NamesTaken {
        names: candidates.iter().map(|(n, _, _)| n.clone()).collect(),
    })
}

/// Parses `alice` or `alice@backend` as used by `podspawn stop`.
pub fn parse_target(s: &str) -> Result<(String, String), InvalidName> {
    let (user, project) = match s.split_once('@') {
        Some((u, p)) => (u, p),
        None => (s, ""),
    };
    validate_user(user)?;
    if !project.is_empty() {
        validate_project(project)?;
    }
    Ok((user.to_string(), project.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in ["alice", "_svc", "a", "bob-2", "x_y", &"a".repeat(32)] {
            assert!(validate_user(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            "1abc",
            "-a",
            "a b",
            "a/b",
            "..",
            "a.b",
            "a$",
            "a\"b",
            "a\nb",
            &"a".repeat(33),
            "é",
        ] {
            assert!(validate_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn project_names_and_targets() {
        assert!(validate_project("backend").is_ok());
        assert!(validate_project("_x").is_err());
        assert!(validate_project("%n").is_err());
        assert_eq!(parse_target("alice").unwrap(), ("alice".into(), "".into()));
        assert_eq!(
            parse_target("alice@backend").unwrap(),
            ("alice".into(), "backend".into())
        );
        assert_eq!(
            parse_target("alice@Bad"),
            Err(InvalidName::Project("Bad".into()))
        );
        assert_eq!(
            parse_target("Alice@web"),
            Err(InvalidName::User("Alice".into()))
        );
        assert_eq!(
            validate_user("1abc").unwrap_err().to_string(),
            "invalid user name \"1abc\": use 1-32 characters, lowercase letters, digits, '_' or \
             '-', starting with a letter or '_'"
        );
        assert_eq!(
            String::from(validate_project("%n").unwrap_err()),
            "invalid project name \"%n\": use 1-64 characters, lowercase letters, digits, '_' \
             or '-', starting with a letter"
        );
        assert_eq!(container_name("a", ""), "podspawn-a");
        assert_eq!(container_name("a", "p"), "podspawn-a-p");
    }

    #[test]
    fn colliding_names_get_distinct_deterministic_alternatives() {
        // alice in project dev and user alice-dev share the preferred name, never the alternative.
        let a = name_candidates("alice", "dev", "i1");
        let b = name_candidates("alice-dev", "", "i1");
        assert_eq!(a[0], b[0]);
        assert_eq!(a[0], "podspawn-alice-dev");
        assert_ne!(a[1], b[1]);
        assert!(a[1].starts_with("podspawn-alice-dev-") && a[1].len() == a[0].len() + 9);
        // Stable across calls, different per installation.
        assert_eq!(a, name_candidates("alice", "dev", "i1"));
        assert_ne!(a[1], name_candidates("alice", "dev", "i2")[1]);
    }

    #[test]
    fn choosing_a_name() {
        use Holder::*;
        let c = |n: &str, c, net| (n.to_string(), c, net);
        assert_eq!(
            choose_name(&[c("p", Free, Free), c("q", Free, Free)]).unwrap(),
            ("p".into(), false)
        );
        assert_eq!(
            choose_name(&[c("p", Ours, Free), c("q", Free, Free)]).unwrap(),
            ("p".into(), true)
        );
        assert_eq!(
            choose_name(&[c("p", Free, Ours), c("q", Free, Free)]).unwrap(),
            ("p".into(), true)
        );
        assert_eq!(
            choose_name(&[c("p", Other, Free), c("q", Free, Free)]).unwrap(),
            ("q".into(), false)
        );
        assert_eq!(
            choose_name(&[c("p", Free, Other), c("q", Ours, Free)]).unwrap(),
            ("q".into(), true)
        );
        let e = choose_name(&[c("p", Other, Free), c("q", Free, Other)]).unwrap_err();
        assert_eq!(e.names, ["p", "q"]);
        assert!(
            e.to_string().contains("the container names p and q (or"),
            "{e}"
        );
    }
}
