//! A project's repository on the host: git (the `git` CLI as a subprocess, arguments after
//! `--`, URLs and branches validated by `core::projects` first) and [`HostRepo`], the
//! production [`RepoFiles`] that reads Podfiles from a checkout and refuses symlinks leading out
//! of it.

use crate::core::podfile::{ReadError, RepoFiles};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The largest Podfile read (a Podfile is a few hundred bytes; this stops a huge file early).
const MAX_FILE: u64 = 1 << 20;

/// Files of the checkout at `root`.
pub struct HostRepo {
    root: PathBuf,
}

impl HostRepo {
    /// `root` must exist; it is canonicalized so the containment check compares real paths.
    pub fn open(root: &Path) -> Result<HostRepo, String> {
        let root = std::fs::canonicalize(root)
            .map_err(|e| format!("cannot open the checkout {}: {e}", root.display()))?;
        Ok(HostRepo { root })
    }
}

impl RepoFiles for HostRepo {
    fn read(&self, path: &str) -> Result<String, ReadError> {
        let full = self.root.join(path);
        let real = match std::fs::canonicalize(&full) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink is refused, not taken for "no such file".
                return match std::fs::symlink_metadata(&full) {
                    Ok(_) => Err(ReadError::Other(
                        "a symlink to a file that does not exist".into(),
                    )),
                    Err(_) => Err(ReadError::NotFound),
                };
            }
            Err(e) => return Err(ReadError::Other(e.to_string())),
        };
        if !real.starts_with(&self.root) {
            return Err(ReadError::Other(
                "a symlink that leads out of the repository".into(),
            ));
        }
        let f = std::fs::File::open(&real).map_err(|e| ReadError::Other(e.to_string()))?;
        let meta = f.metadata().map_err(|e| ReadError::Other(e.to_string()))?;
        if !meta.is_file() {
            return Err(ReadError::Other("not a regular file".into()));
        }
        let mut bytes = Vec::new();
        f.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ReadError::Other(e.to_string()))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(ReadError::Other("larger than 1 MiB".into()));
        }
        String::from_utf8(bytes).map_err(|_| ReadError::Other("not UTF-8 text".into()))
    }
}

/// `git` with a fixed, prompt-free environment; the caller's arguments come after the
/// options podspawn sets.
fn git() -> Command {
    let mut c = Command::new("git");
    c.args([
        "-c",
        "protocol.ext.allow=never",
        "-c",
        "protocol.fd.allow=never",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "advice.detachedHead=false",
    ])
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_ASKPASS", "/bin/false")
    .env("SSH_ASKPASS", "/bin/false")
    .env_remove("GIT_DIR")
    .env_remove("GIT_WORK_TREE")
    .stdin(Stdio::null());
    c
}

fn run(mut c: Command, what: &str) -> Result<String, String> {
    let out = c
        .output()
        .map_err(|e| format!("{what}: cannot run git ({e}); install git"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        Err(format!("{what} failed: {last}"))
    }
}

/// Clones `url` (branch `branch`, or the default branch when empty) into `dir` (which must not
/// exist), only the tip of one branch.
pub fn clone(url: &str, branch: &str, dir: &Path) -> Result<(), String> {
    let mut c = git();
    c.args([
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--single-branch",
        "--no-tags",
    ]);
    if !branch.is_empty() {
        c.args(["--branch", branch]);
    }
    c.arg("--").arg(url).arg(dir);
    run(c, &format!("git clone {url}"))?;
    Ok(())
}

/// The commit checked out in `dir`.
pub fn head(dir: &Path) -> Result<String, String> {
    let mut c = git();
    c.arg("-C").arg(dir).args(["rev-parse", "--verify", "HEAD"]);
    run(c, "git rev-parse")
}

/// Fetches the tip of `branch` (the remote's default when empty) and checks it out; returns the
/// new commit.
pub fn pull(dir: &Path, branch: &str) -> Result<String, String> {
    let mut c = git();
    c.arg("-C").arg(dir).args([
        "fetch",
        "--quiet",
        "--depth",
        "1",
        "--no-tags",
        "origin",
        "--",
    ]);
    c.arg(if branch.is_empty() { "HEAD" } else { branch });
    run(c, "git fetch")?;
    checkout(dir, "FETCH_HEAD")?;
    head(dir)
}

/// Resets the checkout to `commit` (a hex id or FETCH_HEAD), dropping any local change.
pub fn checkout(dir: &Path, commit: &str) -> Result<(), String> {
    let mut c = git();
    c.arg("-C")
        .arg(dir)
        .args(["reset", "--quiet", "--hard", commit, "--"]);
    run(c, "git reset")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_files_and_refuses_escaping_symlinks() {
        let base = std::env::temp_dir().join(format!("podspawn-repo-{}", std::process::id()));
        let root = base.join("repo");
        std::fs::create_dir_all(root.join(".podspawn")).unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        std::fs::write(root.join("podfile.yaml"), "base: x\n").unwrap();
        std::fs::write(root.join("inner.yaml"), "base: y\n").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("out.yaml")).unwrap();
        std::os::unix::fs::symlink("inner.yaml", root.join("in.yaml")).unwrap();
        std::os::unix::fs::symlink("nothing", root.join("dangling.yaml")).unwrap();
        std::os::unix::fs::symlink("..", root.join(".podspawn/up")).unwrap();
        let r = HostRepo::open(&root).unwrap();
        assert_eq!(r.read("podfile.yaml").unwrap(), "base: x\n");
        assert_eq!(r.read("in.yaml").unwrap(), "base: y\n");
        assert_eq!(r.read("missing.yaml"), Err(ReadError::NotFound));
        assert!(matches!(r.read("out.yaml"), Err(ReadError::Other(m)) if m.contains("leads out")));
        assert!(matches!(r.read("dangling.yaml"), Err(ReadError::Other(_))));
        assert!(matches!(
            r.read(".podspawn/up/../secret"),
            Err(ReadError::Other(_))
        ));
        assert!(matches!(r.read(".podspawn"), Err(ReadError::Other(m)) if m.contains("regular")));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
