//! Strict allow-lists for every name that reaches Docker, a shell, a path or a label.

/// A host account name podspawn accepts: `^[a-z_][a-z0-9_-]{0,31}$` (the useradd rules).
pub fn validate_user(name: &str) -> Result<(), String> {
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
        Err(format!(
            "invalid user name {name:?}: use 1-32 characters, lowercase letters, digits, '_' or '-', \
             starting with a letter or '_'"
        ))
    }
}

/// A project name: `^[a-z][a-z0-9_-]{0,63}$`.
pub fn validate_project(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid project name {name:?}: use 1-64 characters, lowercase letters, digits, '_' or '-', \
             starting with a letter"
        ))
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

/// Parses `alice` or `alice@backend` as used by `podspawn stop`.
pub fn parse_target(s: &str) -> Result<(String, String), String> {
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
        assert!(parse_target("alice@Bad").is_err());
        assert_eq!(container_name("a", ""), "podspawn-a");
        assert_eq!(container_name("a", "p"), "podspawn-a-p");
    }
}
