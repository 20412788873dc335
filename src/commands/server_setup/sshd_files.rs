//! server-setup's sshd files: planned changes, backups and rollback, byte for byte.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

// sshd files: planned changes, backups, rollback.

/// A file server-setup writes.
#[derive(Debug, Clone)]
pub(super) struct FileChange {
    pub(super) path: PathBuf,
    /// Previous bytes, owner and mode (`None`: the file is new).
    pub(super) old: Existing,
    pub(super) new: Vec<u8>,
    /// Owner and mode of the new file.
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) what: String,
    /// Remove the file instead of writing `new`. A removal is never undone by a rollback: the
    /// only file removed is the forwarding drop-in, and without it forwarding is off (safe).
    pub(super) remove: bool,
}

/// A file's bytes, owner and mode (`None`: it does not exist).
pub(super) type Existing = Option<(Vec<u8>, u32, u32, u32)>;

pub(super) fn read_existing(path: &Path) -> Result<Existing, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symlink: server-setup only edits regular files; edit it by hand or \
             replace the symlink with a copy",
            path.display()
        )),
        Ok(m) => {
            let b =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Some((b, m.uid(), m.gid(), m.mode() & 0o7777)))
        }
    }
}

/// Plans a write of `new` to `path` (with a backup of a changed existing file); nothing if equal.
pub(super) fn plan_write(
    changes: &mut Vec<FileChange>,
    path: &Path,
    new: String,
    backup_dir: &Path,
    what: &str,
) -> Result<(), String> {
    let old = read_existing(path)?;
    if let Some((bytes, uid, gid, mode)) = old.clone() {
        if bytes == new.as_bytes() {
            return Ok(());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bak = backup_dir.join(format!("{name}.podspawn.bak"));
        changes.push(FileChange {
            old: read_existing(&bak)?,
            path: bak,
            new: bytes,
            uid,
            gid,
            mode,
            what: format!("back up {}", path.display()),
            remove: false,
        });
        changes.push(FileChange {
            path: path.to_path_buf(),
            old,
            new: new.into_bytes(),
            uid,
            gid,
            mode,
            what: what.to_string(),
            remove: false,
        });
    } else {
        changes.push(FileChange {
            path: path.to_path_buf(),
            old: None,
            new: new.into_bytes(),
            uid: 0,
            gid: 0,
            mode: 0o644,
            what: what.to_string(),
            remove: false,
        });
    }
    Ok(())
}

/// Plans the removal of `path` when it exists.
pub(super) fn plan_remove(
    changes: &mut Vec<FileChange>,
    path: &Path,
    what: &str,
) -> Result<(), String> {
    if let Some((bytes, uid, gid, mode)) = read_existing(path)? {
        changes.push(FileChange {
            path: path.to_path_buf(),
            old: Some((bytes, uid, gid, mode)),
            new: Vec::new(),
            uid,
            gid,
            mode,
            what: what.to_string(),
            remove: true,
        });
    }
    Ok(())
}

pub(super) fn apply_changes(changes: &[FileChange]) -> (usize, Result<(), String>) {
    for (i, c) in changes.iter().enumerate() {
        if c.remove {
            match std::fs::remove_file(&c.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return (i, Err(format!("cannot remove {}: {e}", c.path.display()))),
            }
            continue;
        }
        if let Err(e) = crate::host::fs::write_file_atomic(&c.path, &c.new, c.uid, c.gid, c.mode) {
            return (i, Err(e.into()));
        }
    }
    (changes.len(), Ok(()))
}

/// Undoes the first `n` changes, last first; returns what was restored and what could not be.
pub(super) fn rollback(
    changes: &[FileChange],
    n: usize,
    created_dir: Option<&Path>,
) -> Vec<String> {
    let mut msgs = Vec::new();
    for c in changes[..n].iter().rev() {
        if c.remove {
            msgs.push(format!(
                "left {} removed (TCP forwarding off is the safe state)",
                c.path.display()
            ));
            continue;
        }
        let r = match &c.old {
            Some((bytes, uid, gid, mode)) => {
                crate::host::fs::write_file_atomic(&c.path, bytes, *uid, *gid, *mode)
                    .map(|_| format!("restored {}", c.path.display()))
                    .map_err(String::from)
            }
            None => std::fs::remove_file(&c.path)
                .map(|_| format!("removed {}", c.path.display()))
                .map_err(|e| format!("cannot remove {}: {e}", c.path.display())),
        };
        msgs.push(r.unwrap_or_else(|e| format!("FAILED to restore: {e}")));
    }
    if let Some(d) = created_dir {
        if std::fs::remove_dir(d).is_ok() {
            msgs.push(format!("removed {}", d.display()));
        }
    }
    msgs
}

// ---------------------------------------------------------------------------------------------
