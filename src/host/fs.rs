//! Files the way podspawn writes them: atomically (temp file, fsync, rename), with an exact owner
//! and mode whatever the umask, never through a symlink.
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file or directory podspawn could not write or set up.
#[derive(Debug)]
pub enum Error {
    /// `cannot {op} {path}: {source}`: op is create, open, stat, chown, chmod, write or fsync.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    /// The path names no file (it ends in `/` or `..`).
    NotAFilePath(PathBuf),
    /// Every temporary name in `dir` was taken.
    NoTempFile {
        dir: PathBuf,
        last: Option<io::Error>,
    },
    /// A symlink where a directory must be.
    Symlink(PathBuf),
    /// Something other than a directory where a directory must be.
    NotADirectory(PathBuf),
}

impl Error {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Error::Rename { from, to, source } => write!(
                f,
                "cannot rename {} to {}: {source}",
                from.display(),
                to.display()
            ),
            Error::NotAFilePath(p) => write!(f, "{} is not a file path", p.display()),
            Error::NoTempFile { dir, last } => write!(
                f,
                "cannot create a temporary file in {}: {}",
                dir.display(),
                last.as_ref().map(|e| e.to_string()).unwrap_or_default()
            ),
            Error::Symlink(p) => write!(
                f,
                "{} is a symlink: replace it with a real directory",
                p.display()
            ),
            Error::NotADirectory(p) => write!(f, "{} exists but is not a directory", p.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Rename { source, .. } => Some(source),
            Error::NoTempFile { last, .. } => last.as_ref().map(|e| e as _),
            Error::NotAFilePath(_) | Error::Symlink(_) | Error::NotADirectory(_) => None,
        }
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

/// Atomically replaces `path` with `contents` owned by `uid:gid` with `mode`: a temp file in the
/// same directory (O_EXCL), fchown, fchmod, write, fsync, rename, fsync of the directory.
pub fn write_file_atomic(
    path: &Path,
    contents: &[u8],
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::NotAFilePath(path.to_path_buf()))?
        .to_string_lossy()
        .into_owned();
    let (tmp, mut file) = create_temp(dir, &name)?;
    let result = (|| -> Result<(), Error> {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(Error::io("chown", &tmp))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(Error::io("chmod", &tmp))?;
        file.write_all(contents).map_err(Error::io("write", &tmp))?;
        file.sync_all().map_err(Error::io("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Rename {
            from: tmp.clone(),
            to: path.to_path_buf(),
            source,
        })?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync", dir))?;
    Ok(())
}

/// Creates `<dir>/.<name>.tmp-<pid>-<n>` exclusively. Dot-prefixed so listings skip it.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File), Error> {
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
            Err(e) => return Err(Error::io("create", &tmp)(e)),
        }
    }
    Err(Error::NoTempFile {
        dir: dir.to_path_buf(),
        last: last_err,
    })
}

/// Creates the missing parents of `path` as root 0755 (explicitly, whatever the umask).
pub fn create_parent_dirs(path: &Path) -> Result<(), Error> {
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
                .map_err(Error::io("chmod", p))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create", p)(e)),
        }
    }
    Ok(())
}

/// Makes `dir` a directory owned by `uid:gid` with `mode`, creating it (and missing parents, 0755)
/// if needed and fixing the owner and mode of an existing one. A symlink is refused.
pub fn ensure_dir(dir: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
    create_parent_dirs(dir)?;
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Symlink(dir.to_path_buf()));
    }
    match std::fs::DirBuilder::new().mode(mode & 0o777).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create", dir)(e)),
    }
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::Symlink(dir.to_path_buf())
            } else if e.raw_os_error() == Some(libc::ENOTDIR) {
                Error::NotADirectory(dir.to_path_buf())
            } else {
                Error::io("open", dir)(e)
            }
        })?;
    let meta = d.metadata().map_err(Error::io("stat", dir))?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::fchown(&d, Some(uid), Some(gid)).map_err(Error::io("chown", dir))?;
    }
    if meta.mode() & 0o7777 != mode {
        d.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(Error::io("chmod", dir))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Append-only log files (the audit log, log.file).

/// Mode of the audit log file.
pub const FILE_MODE: u32 = 0o640;
/// Mode of parent directories that `open` has to create.
pub const DIR_MODE: u32 = 0o750;

/// Creates missing ancestors of the audit log with mode 0750 (regardless of the umask).
fn create_parents(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_parents(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// What an append-only log file is, for messages: its name and the config key that sets it.
#[derive(Debug, Clone, Copy)]
pub struct LogKind {
    pub what: &'static str,
    pub key: &'static str,
    pub example: &'static str,
}

pub const AUDIT_LOG: LogKind = LogKind {
    what: "audit log",
    key: "log.audit_log",
    example: "/var/log/podspawn/audit.jsonl",
};

pub const LOG_FILE: LogKind = LogKind {
    what: "log file",
    key: "log.file",
    example: "/var/log/podspawn/podspawn.log",
};

/// A log file podspawn will not or cannot append to.
#[derive(Debug)]
pub struct LogError {
    pub kind: LogKind,
    pub path: PathBuf,
    pub problem: LogProblem,
}

/// What is wrong with a log file (see [`LogError`]'s `Display` for what a person reads).
#[derive(Debug)]
pub enum LogProblem {
    NotAbsolute,
    CreateDir {
        dir: PathBuf,
        source: io::Error,
    },
    Stat(io::Error),
    NotRegular,
    /// Owned by `uid`, not by the `euid` that writes it.
    Owner {
        uid: u32,
        euid: u32,
    },
    /// Its `mode` is wider than 0640 and could not be narrowed.
    Narrow {
        mode: u32,
        source: io::Error,
    },
    Symlink,
    PermissionDenied(io::Error),
    Open(io::Error),
    KeepsDisappearing,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LogKind { what, key, example } = self.kind;
        let path = self.path.display();
        match &self.problem {
            LogProblem::NotAbsolute => write!(
                f,
                "{what} {path}: not an absolute path; set {key} to an absolute path such as {example}"
            ),
            LogProblem::CreateDir { dir, source } => write!(
                f,
                "{what} {path}: cannot create directory {}: {source}; create it (mode 0750, owned by root) or run as root",
                dir.display()
            ),
            LogProblem::Stat(e) => write!(f, "{what} {path}: cannot stat: {e}"),
            LogProblem::NotRegular => write!(
                f,
                "{what} {path} is not a regular file; remove it or point {key} at a regular file"
            ),
            LogProblem::Owner { uid, euid } => write!(
                f,
                "{what} {path} is owned by uid {uid}, not by uid {euid} which writes it; fix with `chown root:root {path}`"
            ),
            LogProblem::Narrow { mode, source } => write!(
                f,
                "{what} {path} has mode {mode:04o} and cannot be narrowed: {source}; fix with `chmod 0640 {path}`"
            ),
            LogProblem::Symlink => write!(
                f,
                "{what} {path} is a symlink; refusing to follow it: remove it or point {key} at a regular file"
            ),
            LogProblem::PermissionDenied(e) => write!(
                f,
                "cannot open {what} {path}: {e}; the {what} is written by root: run this as root"
            ),
            LogProblem::Open(e) => {
                write!(f, "cannot open {what} {path}: {e}; check the path in {key}")
            }
            LogProblem::KeepsDisappearing => write!(
                f,
                "cannot open {what} {path}: it keeps disappearing; is something else rotating it?"
            ),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            LogProblem::CreateDir { source, .. }
            | LogProblem::Stat(source)
            | LogProblem::Narrow { source, .. }
            | LogProblem::PermissionDenied(source)
            | LogProblem::Open(source) => Some(source),
            LogProblem::NotAbsolute
            | LogProblem::NotRegular
            | LogProblem::Owner { .. }
            | LogProblem::Symlink
            | LogProblem::KeepsDisappearing => None,
        }
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<LogError> for String {
    fn from(e: LogError) -> Self {
        e.to_string()
    }
}

/// Opens a log file for appending the way podspawn opens every log it writes:
/// `O_APPEND|O_CLOEXEC|O_NOFOLLOW`: a new file gets mode 0640, missing parent directories 0750,
/// and an existing file with permission bits beyond 0640 is narrowed to them. A symlink or
/// non-regular file at the path, or a file owned by another user, is refused.
pub fn open_private_append(path: &Path, kind: LogKind) -> Result<File, LogError> {
    let fail = |problem| LogError {
        kind,
        path: path.to_path_buf(),
        problem,
    };
    if !path.is_absolute() {
        return Err(fail(LogProblem::NotAbsolute));
    }
    if let Some(parent) = path.parent() {
        create_parents(parent).map_err(|source| {
            fail(LogProblem::CreateDir {
                dir: parent.to_path_buf(),
                source,
            })
        })?;
    }
    let file = open_file(path).map_err(fail)?;
    let meta = file.metadata().map_err(|e| fail(LogProblem::Stat(e)))?;
    if !meta.file_type().is_file() {
        return Err(fail(LogProblem::NotRegular));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(fail(LogProblem::Owner {
            uid: meta.uid(),
            euid,
        }));
    }
    let mode = meta.mode() & 0o7777;
    if mode & !FILE_MODE != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & FILE_MODE))
            .map_err(|source| fail(LogProblem::Narrow { mode, source }))?;
    }
    // O_NONBLOCK only served to keep open() from hanging on a FIFO; clear it for regular writes.
    clear_nonblock(&file);
    Ok(file)
}

fn open_file(path: &Path) -> Result<File, LogProblem> {
    let flags = libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let err = |e: io::Error| -> LogProblem {
        if e.raw_os_error() == Some(libc::ELOOP) {
            LogProblem::Symlink
        } else if e.kind() == ErrorKind::PermissionDenied {
            LogProblem::PermissionDenied(e)
        } else {
            LogProblem::Open(e)
        }
    };
    // Create exclusively first, so a new file gets exactly 0640 whatever the umask; if it exists,
    // open it without O_CREAT. Retry once should it vanish in between.
    for _ in 0..3 {
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => {
                f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                    .map_err(err)?;
                return Ok(f);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        match OpenOptions::new()
            .append(true)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(LogProblem::KeepsDisappearing)
}

fn clear_nonblock(file: &File) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(bits) = fcntl(file, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(bits) & !OFlag::O_NONBLOCK;
        let _ = fcntl(file, FcntlArg::F_SETFL(flags));
    }
}
