//! Files the way podspawn writes them: atomically (temp file, fsync, rename), with an exact owner
//! and mode whatever the umask, never through a symlink.
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Atomically replaces `path` with `contents` owned by `uid:gid` with `mode`: a temp file in the
/// same directory (O_EXCL), fchown, fchmod, write, fsync, rename, fsync of the directory.
pub fn write_file_atomic(
    path: &Path,
    contents: &[u8],
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let (tmp, mut file) = create_temp(dir, &name)?;
    let result = (|| -> Result<(), String> {
        let w = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| w("chown", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| w("chmod", e))?;
        file.write_all(contents).map_err(|e| w("write", e))?;
        file.sync_all().map_err(|e| w("fsync", e))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot fsync {}: {e}", dir.display()))?;
    Ok(())
}

/// Creates `<dir>/.<name>.tmp-<pid>-<n>` exclusively. Dot-prefixed so listings skip it.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File), String> {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut last_err = None;
    for attempt in 0..32u32 {
        let tmp = dir.join(format!(".{name}.tmp-{pid}-{nanos:08x}{attempt:02x}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(format!("cannot create {}: {e}", tmp.display())),
        }
    }
    Err(format!(
        "cannot create a temporary file in {}: {}",
        dir.display(),
        last_err.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Creates the missing parents of `path` as root 0755 (explicitly, whatever the umask).
pub fn create_parent_dirs(path: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut cur = path.parent();
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || std::fs::symlink_metadata(p).is_ok() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match std::fs::create_dir(p) {
            Ok(()) => std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot chmod {}: {e}", p.display()))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", p.display())),
        }
    }
    Ok(())
}

/// Makes `dir` a directory owned by `uid:gid` with `mode`, creating it (and missing parents, 0755)
/// if needed and fixing the owner and mode of an existing one. A symlink is refused.
pub fn ensure_dir(dir: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    create_parent_dirs(dir)?;
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a symlink: replace it with a real directory",
            dir.display()
        ));
    }
    match std::fs::DirBuilder::new().mode(mode & 0o777).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                format!(
                    "{} is a symlink: replace it with a real directory",
                    dir.display()
                )
            } else if e.raw_os_error() == Some(libc::ENOTDIR) {
                format!("{} exists but is not a directory", dir.display())
            } else {
                format!("cannot open {}: {e}", dir.display())
            }
        })?;
    let meta = d
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::fchown(&d, Some(uid), Some(gid))
            .map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
    }
    if meta.mode() & 0o7777 != mode {
        d.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
    }
    Ok(())
}
