//! Pure decisions about registered projects: which repository URLs and branches are accepted,
//! the build context of a project's image, the client's `~/.ssh/config` blocks for `.pod`
//! routing, and which podspawn-built images no project uses any more.

use std::collections::BTreeSet;
use std::fmt;

/// Label on every image podspawn builds for a project (value: the project name).
pub const LABEL_PROJECT_IMAGE: &str = "podspawn-project-image";

/// Why a repository URL or branch was refused; `Display` says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    Url { url: String, why: &'static str },
    Branch { branch: String, why: &'static str },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Url { url, why } => write!(
                f,
                "invalid repository URL {url:?}: {why}; use https://host/path, ssh://[user@]host/path, \
                 user@host:path, git://host/path or file:///absolute/path"
            ),
            InputError::Branch { branch, why } => write!(
                f,
                "invalid branch {branch:?}: {why}; use a branch name such as main or release/1.2 \
                 (letters, digits, '.', '_', '-', '/')"
            ),
        }
    }
}

impl std::error::Error for InputError {}

/// Accepts the URL forms git clones from without running anything: `https://`, `http://`,
/// `ssh://`, `git://`, `file:///abs`, and scp-like `user@host:path`. Refuses anything git would
/// read as an option (a leading `-`), its command-running transports (`ext::`, `fd::`), and
/// whitespace or control characters.
pub fn validate_repo_url(url: &str) -> Result<(), InputError> {
    let bad = |why| {
        Err(InputError::Url {
            url: url.to_string(),
            why,
        })
    };
    if url.is_empty() {
        return bad("it is empty");
    }
    if url.len() > 2048 {
        return bad("it is longer than 2048 characters");
    }
    if url.starts_with('-') {
        return bad("it starts with '-'");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it holds whitespace or control characters");
    }
    if url.contains("::") {
        return bad("git's '<transport>::' forms (ext::, fd::) can run commands");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        return match scheme {
            "https" | "http" | "ssh" | "git" => {
                let host = rest.split('/').next().unwrap_or("");
                if host.is_empty() || host.rsplit('@').next().unwrap_or("").is_empty() {
                    bad("it names no host")
                } else {
                    Ok(())
                }
            }
            "file" => {
                if rest.starts_with('/') && !rest.split('/').any(|c| c == "..") {
                    Ok(())
                } else {
                    bad("a file:// URL needs an absolute path without '..'")
                }
            }
            _ => bad("unsupported scheme"),
        };
    }
    // scp-like: [user@]host:path (git's rule: a ':' before any '/').
    match url.split_once(':') {
        Some((host, path))
            if !host.is_empty()
                && !host.contains('/')
                && !path.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b)) =>
        {
            Ok(())
        }
        _ => bad("it is not a URL (local paths must be written file:///absolute/path)"),
    }
}

/// A branch name git accepts (`git check-ref-format --branch`), restricted to a plain alphabet.
pub fn validate_branch(branch: &str) -> Result<(), InputError> {
    let bad = |why| {
        Err(InputError::Branch {
            branch: branch.to_string(),
            why,
        })
    };
    if branch.is_empty() || branch.len() > 200 {
        return bad("it must be 1-200 characters");
    }
    if !branch
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
    {
        return bad("it holds a character other than letters, digits, '.', '_', '-', '/'");
    }
    if branch.starts_with('-') || branch.starts_with('/') || branch.starts_with('.') {
        return bad("it starts with '-', '/' or '.'");
    }
    if branch.ends_with('/') || branch.ends_with('.') || branch.ends_with(".lock") {
        return bad("it ends with '/', '.' or '.lock'");
    }
    if branch.contains("..") || branch.contains("//") || branch.contains("/.") {
        return bad("it holds '..', '//' or a component starting with '.'");
    }
    Ok(())
}

/// The build context of a project image: a tar archive (ustar) holding only `Dockerfile`.
pub fn build_context(dockerfile: &str) -> Vec<u8> {
    let data = dockerfile.as_bytes();
    let mut h = [0u8; 512];
    let name = b"Dockerfile";
    h[..name.len()].copy_from_slice(name);
    let octal = |buf: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = buf.len() - 1);
        buf.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], 0o644); // mode
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], data.len() as u64); // size
    octal(&mut h[136..148], 0); // mtime: fixed, so the same Dockerfile gives the same context
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = Vec::with_capacity(512 + data.len() + 1536);
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0);
    out
}

/// The client's `~/.ssh/config` blocks: one `Host <project>.pod` per project, with the project
/// written out in `SetEnv` (sshd expands no tokens there: the reference's `%n` arrived
/// literally). Host-key checking stays on; `HostKeyAlias` makes every `.pod` alias use the
/// server's one known_hosts entry.
pub fn ssh_config(user: &str, host: &str, port: Option<u16>, projects: &[String]) -> String {
    let mut out = format!(
        "# podspawn projects of {user} on {host} (podspawn ssh-config); add to ~/.ssh/config,\n\
         # then: ssh <project>.pod\n"
    );
    for p in projects {
        out.push_str(&format!(
            "Host {p}.pod\n    HostName {host}\n    User {user}\n"
        ));
        if let Some(port) = port {
            out.push_str(&format!("    Port {port}\n"));
        }
        out.push_str(&format!(
            "    HostKeyAlias {host}\n    SetEnv PODSPAWN_PROJECT={p}\n"
        ));
    }
    out
}

/// A host name for `ssh-config --host`: a DNS name or an IP address, nothing ssh_config reads
/// as syntax.
pub fn validate_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid host {host:?}: use a DNS name or an IP address (letters, digits, '.', '-', ':')"
        ))
    }
}

/// The images podspawn built that neither a registered project's current image nor a container
/// uses: `(id, tags)` of every labelled image, the images still wanted (by tag) and those
/// containers run (by tag or id). Returns the ids to remove.
pub fn unused_images(built: &[(String, Vec<String>)], wanted: &BTreeSet<String>) -> Vec<String> {
    built
        .iter()
        .filter(|(id, tags)| !wanted.contains(id) && !tags.iter().any(|t| wanted.contains(t)))
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn repository_urls() {
        for ok in [
            "https://github.com/org/repo.git",
            "ssh://git@host:2222/org/repo",
            "git@github.com:org/repo.git",
            "git://host/repo",
            "file:///srv/git/backend.git",
        ] {
            assert!(validate_repo_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-uhttps://x",
            "--upload-pack=touch /tmp/x",
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "https://",
            "file://relative/path",
            "file:///srv/../etc",
            "/srv/git/backend",
            "ftp://host/x",
            "https://host/a b",
            "https://host/a\nb",
        ] {
            let e = validate_repo_url(bad).unwrap_err().to_string();
            assert!(e.contains("invalid repository URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn branches() {
        for ok in ["main", "release/1.2", "feature_x-y"] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-b", "--orphan", "/x", "x/", "a..b", "a//b", "x.lock", ".hidden", "a/.b", "a b",
            "a~1", "a^", "a:b", "HEAD@{1}",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad}");
        }
        assert!(validate_branch("-x")
            .unwrap_err()
            .to_string()
            .contains("use a branch name"));
    }

    #[test]
    fn the_build_context_is_a_tar_with_the_dockerfile() {
        let t = build_context("FROM debian\n");
        assert_eq!(t.len() % 512, 0);
        assert_eq!(t.len(), 512 + 512 + 1024);
        assert_eq!(&t[..10], b"Dockerfile");
        assert_eq!(&t[512..524], b"FROM debian\n");
        assert_eq!(&t[124..136], b"00000000014\0");
        // The checksum field: the sum of the header with the field as spaces.
        let mut h = t[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(&t[148..155], format!("{sum:06o}\0").as_bytes());
        assert_eq!(build_context("x"), build_context("x"), "deterministic");
    }

    #[test]
    fn ssh_config_blocks() {
        let c = ssh_config(
            "alice",
            "dev.example.com",
            None,
            &["backend".into(), "web".into()],
        );
        assert!(c.contains(
            "Host backend.pod\n    HostName dev.example.com\n    User alice\n    HostKeyAlias \
             dev.example.com\n    SetEnv PODSPAWN_PROJECT=backend\n"
        ));
        assert!(c.contains("Host web.pod\n"));
        assert!(c.contains("SetEnv PODSPAWN_PROJECT=web\n"));
        assert!(
            !c.contains('%'),
            "no tokens: sshd does not expand them in SetEnv"
        );
        assert!(!c.contains("StrictHostKeyChecking"));
        assert!(!c.contains("/dev/null"));
        let c = ssh_config("alice", "127.0.0.1", Some(2222), &["x".into()]);
        assert!(c.contains("    Port 2222\n"));
        assert!(validate_host("dev.example.com").is_ok());
        assert!(validate_host("::1").is_ok());
        assert!(validate_host("-oProxyCommand=x").is_err());
        assert!(validate_host("a\nProxyCommand x").is_err());
        assert!(validate_host("a b").is_err());
    }

    #[test]
    fn unused_images_are_those_nothing_wants() {
        let built = vec![
            ("sha256:1".to_string(), vec!["p-a:1".to_string()]),
            ("sha256:2".to_string(), vec!["p-a:2".to_string()]),
            ("sha256:3".to_string(), vec![]),
            ("sha256:4".to_string(), vec!["p-b:1".to_string()]),
        ];
        let wanted: BTreeSet<String> = ["p-a:2", "sha256:3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(unused_images(&built, &wanted), vec!["sha256:1", "sha256:4"]);
    }
}
