//! Per-user advisory locks in `<lock_dir>/<user>.lock`, shared by the broker and the cleanup pass so
//! a cleanup never removes a container that a login is reattaching to.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct UserLock {
    _file: File,
}

/// Blocks until the user's lock is held. `user` must already be validated.
pub fn lock_user(lock_dir: &Path, user: &str) -> io::Result<UserLock> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(lock_dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(lock_dir.join(format!("{user}.lock")))?;
    file.lock()?;
    Ok(UserLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn excludes_a_second_holder() {
        let dir = std::env::temp_dir().join(format!("podspawn-lock-{}", std::process::id()));
        let first = lock_user(&dir, "alice").unwrap();
        let (tx, rx) = mpsc::channel();
        let d2 = dir.clone();
        let t = std::thread::spawn(move || {
            let _l = lock_user(&d2, "alice").unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "second lock acquired while held"
        );
        // A different user is independent.
        let _b = lock_user(&dir, "bob").unwrap();
        drop(first);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
