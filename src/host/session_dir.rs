//! The users' session directories: one per user under `broker.session_dir`, owned by that user
//! and mode 0700, bind-mounted into the user's containers at
//! [`SESSION_CONTAINER_DIR`](crate::core::config::SESSION_CONTAINER_DIR). Per-connection files
//! pass through it:
//! - `<16 hex>.sock`: `spawn` (running as the user) relays a forwarded agent (`ssh -A`) through
//!   this socket to the one sshd made for the connection, so inside the container
//!   `SSH_AUTH_SOCK` reaches the client's agent, and only that uid (and the container's root)
//!   can open it;
//! - `<session tag>.status`: `podspawn-helper run` writes `signal N` there when the session's
//!   command was killed by a signal, so spawn can end the same way and sshd reports the signal.
//!
//! The broker (root) creates and repairs the directories and removes a connection's files when
//! its lease ends; it never follows a symbolic link a user could have planted.

use crate::host::accounts::Account;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Problems with the session directories, each naming the path and the fix.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "session directory {}: {}",
            self.path.display(),
            self.message
        )
    }
}

impl std::error::Error for Error {}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

pub use crate::core::protocol::valid_agent_socket as valid_socket_name;

/// Creates (or repairs) `base` (root's, 0711: users can pass through but not list it) and
/// `base/<user>` (the user's, 0700), and returns the latter. Refuses a symbolic link or a
/// non-directory at either place, and a `base` another user could write to.
pub fn ensure_user_dir(base: &Path, account: &Account) -> Result<PathBuf, Error> {
    ensure_base(base)?;
    let dir = base.join(&account.name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(&dir, format!("cannot create it: {e}"))),
    }
    // Open without following a link, then fix owner and mode on the descriptor itself.
    let f = open_dir_nofollow(&dir)?;
    let m = f
        .metadata()
        .map_err(|e| err(&dir, format!("cannot read it: {e}")))?;
    if !m.is_dir() {
        return Err(err(&dir, "is not a directory; remove it"));
    }
    if m.uid() != account.uid || m.gid() != account.gid {
        nix::unistd::fchown(
            &f,
            Some(nix::unistd::Uid::from_raw(account.uid)),
            Some(nix::unistd::Gid::from_raw(account.gid)),
        )
        .map_err(|e| err(&dir, format!("cannot give it to {}: {e}", account.name)))?;
    }
    if m.mode() & 0o7777 != 0o700 {
        f.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(&dir, format!("cannot make it 0700: {e}")))?;
    }
    Ok(dir)
}

fn ensure_base(base: &Path) -> Result<(), Error> {
    if let Some(parent) = base.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| err(parent, format!("cannot create it: {e}")))?;
    }
    match std::fs::DirBuilder::new().mode(0o711).create(base) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(base, format!("cannot create it: {e}"))),
    }
    let f = open_dir_nofollow(base)?;
    let m = f
        .metadata()
        .map_err(|e| err(base, format!("cannot read it: {e}")))?;
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(err(
            base,
            format!(
                "is owned by uid {}, not by the broker's uid {me}; remove it (the broker creates it)",
                m.uid()
            ),
        ));
    }
    if m.mode() & 0o7777 != 0o711 {
        f.set_permissions(std::fs::Permissions::from_mode(0o711))
            .map_err(|e| err(base, format!("cannot make it 0711: {e}")))?;
    }
    Ok(())
}

fn open_dir_nofollow(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                err(path, "is a symbolic link or not a directory; remove it")
            }
            _ => err(path, format!("cannot open it: {e}")),
        })?;
    Ok(f)
}

/// Removes one connection's socket (when its lease ends; spawn normally removed it already).
/// Only a name of the form spawn uses is touched, and `unlink` never follows a link.
pub fn remove_socket(base: &Path, user: &str, name: &str) {
    if !valid_socket_name(name) || crate::core::names::validate_user(user).is_err() {
        return;
    }
    let path = base.join(user).join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(path = %path.display(), "cannot remove an agent socket: {e}"),
    }
}

/// Most bytes of a status file the broker reads (`signal 64\n` is 10).
const MAX_STATUS: u64 = 32;

/// Reads and removes the status file of session `tag` of `user`: the signal that killed the
/// session's command, if `podspawn-helper run` recorded one. The file is the user's: it is opened
/// without following a link, and anything but `signal N` (1..=64) is ignored.
pub fn take_status(base: &Path, user: &str, tag: &str) -> Option<i32> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !crate::engine::valid_tag(tag) || crate::core::names::validate_user(user).is_err() {
        return None;
    }
    let path = base.join(user).join(format!("{tag}.status"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .ok();
    let _ = std::fs::remove_file(&path);
    let f = f?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_STATUS).read_to_string(&mut text).ok()?;
    parse_status(&text)
}

/// `signal N` → N, for N in 1..=64.
pub fn parse_status(text: &str) -> Option<i32> {
    let n: i32 = text.trim().strip_prefix("signal ")?.parse().ok()?;
    (1..=64).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    fn me() -> Account {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        Account {
            name: "pstagent".into(),
            uid,
            gid,
            home: "/nonexistent".into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn socket_names() {
        assert!(valid_socket_name("0123456789abcdef.sock"));
        assert!(!valid_socket_name("0123456789ABCDEF.sock"));
        assert!(!valid_socket_name("../../etc/passwd.sock"));
        assert!(!valid_socket_name("0123456789abcdef.socket"));
        assert!(!valid_socket_name("0123456789abcde/.sock"));
        assert!(!valid_socket_name(""));
    }

    #[test]
    fn creates_and_repairs_the_user_directory() {
        let t = TempDir::new("agent-dir");
        let base = t.path().join("run/sessions");
        let a = me();
        let dir = ensure_user_dir(&base, &a).unwrap();
        assert_eq!(dir, base.join("pstagent"));
        let m = std::fs::metadata(&dir).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        assert_eq!(m.uid(), a.uid);
        assert_eq!(
            std::fs::metadata(&base).unwrap().mode() & 0o7777,
            0o711,
            "users may pass through the base but not list it"
        );
        // A loosened mode is repaired on the next call.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_user_dir(&base, &a).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn refuses_a_planted_symlink() {
        let t = TempDir::new("agent-link");
        let base = t.path().join("agents");
        std::fs::create_dir_all(&base).unwrap();
        let target = t.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, base.join("pstagent")).unwrap();
        let e = ensure_user_dir(&base, &me()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // Nothing was done to the link's target.
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn status_files() {
        assert_eq!(parse_status("signal 9\n"), Some(9));
        assert_eq!(parse_status("signal 0"), None);
        assert_eq!(parse_status("signal 65"), None);
        assert_eq!(parse_status("exit 3"), None);
        let t = TempDir::new("status");
        let base = t.path().join("sessions");
        let dir = ensure_user_dir(&base, &me()).unwrap();
        let tag = "0123456789abcdef";
        std::fs::write(dir.join(format!("{tag}.status")), "signal 15\n").unwrap();
        assert_eq!(take_status(&base, "pstagent", tag), Some(15));
        assert!(
            !dir.join(format!("{tag}.status")).exists(),
            "read once, then removed"
        );
        assert_eq!(take_status(&base, "pstagent", tag), None);
        // A planted link is not followed (and is removed).
        let secret = t.path().join("secret");
        std::fs::write(&secret, "signal 9\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join(format!("{tag}.status"))).unwrap();
        assert_eq!(take_status(&base, "pstagent", tag), None);
        assert!(secret.exists());
        assert_eq!(take_status(&base, "pstagent", "../../etc/x"), None);
    }

    #[test]
    fn removes_only_socket_names() {
        let t = TempDir::new("agent-rm");
        let base = t.path().join("agents");
        let dir = ensure_user_dir(&base, &me()).unwrap();
        std::fs::write(dir.join("0123456789abcdef.sock"), "").unwrap();
        std::fs::write(dir.join("keep"), "").unwrap();
        remove_socket(&base, "pstagent", "0123456789abcdef.sock");
        remove_socket(&base, "pstagent", "keep");
        remove_socket(&base, "pstagent", "0123456789abcdef.sock"); // already gone: no error
        assert!(!dir.join("0123456789abcdef.sock").exists());
        assert!(dir.join("keep").exists());
    }
}
