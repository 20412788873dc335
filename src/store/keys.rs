//! The key store: `/etc/podspawn/keys/<user>` holds a user's bare public key lines, is
//! `root:podspawn 0640` and lives in a `root:podspawn 0750` directory. Files are read the way
//! sshd's StrictModes would (`auth-keys`, running as the `podspawn` system user, refuses anything
//! else) and written atomically.
use crate::core::keys::{parse_key_bytes, KeyError, PublicKey, MAX_FILE_LEN};
use crate::core::names::InvalidName;
use crate::host::fs::{ensure_dir, write_file_atomic};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A key file's valid keys and the lines that were skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyFile {
    pub keys: Vec<PublicKey>,
    /// (1-based line number, why it was skipped).
    pub invalid: Vec<(usize, KeyError)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFileError {
    /// The file (or its directory) does not exist: the user is not registered.
    NotFound,
    /// The file exists but is refused or unreadable; the message names it and the fix.
    Refused(String),
}

impl std::error::Error for KeyFileError {}

/// A key file that could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// The user name cannot name a key file.
    User(InvalidName),
    Fs(crate::host::fs::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::User(e) => e.fmt(f),
            WriteError::Fs(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::User(e) => Some(e),
            WriteError::Fs(e) => Some(e),
        }
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<WriteError> for String {
    fn from(e: WriteError) -> Self {
        e.to_string()
    }
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFileError::NotFound => f.write_str("no key file"),
            KeyFileError::Refused(m) => f.write_str(m),
        }
    }
}

fn file_fix(path: &Path) -> String {
    let p = path.display();
    format!(
        "fix: chown root:{} {p} && chmod 0640 {p}",
        crate::core::names::SYSTEM_USER
    )
}

fn dir_fix(path: &Path) -> String {
    let p = path.display();
    format!(
        "fix: chown root:{} {p} && chmod 0750 {p}",
        crate::core::names::SYSTEM_USER
    )
}

/// Checks the directory holding a key file: root-owned, not group- or world-writable.
fn check_key_dir(dir: &Path) -> Result<(), KeyFileError> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(KeyFileError::NotFound),
        Err(e) => {
            return Err(KeyFileError::Refused(format!(
                "cannot stat key directory {}: {e}",
                dir.display()
            )))
        }
    };
    if !meta.is_dir() {
        return Err(KeyFileError::Refused(format!(
            "key directory {} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != 0 {
        return Err(KeyFileError::Refused(format!(
            "key directory {} is owned by uid {}, not root; {}",
            dir.display(),
            meta.uid(),
            dir_fix(dir)
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(KeyFileError::Refused(format!(
            "key directory {} is group- or world-writable (mode {:04o}); {}",
            dir.display(),
            meta.mode() & 0o7777,
            dir_fix(dir)
        )));
    }
    Ok(())
}

/// Checks a key file's metadata: a regular file, owned by root, not group- or world-writable.
fn check_key_file_meta(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(KeyFileError::Refused(format!(
            "key file {} is a symlink; replace it with a regular file ({})",
            path.display(),
            file_fix(path)
        )));
    }
    if !ft.is_file() {
        return Err(KeyFileError::Refused(format!(
            "key file {} is not a regular file; remove it and run `podspawn add-user` again",
            path.display()
        )));
    }
    if meta.uid() != 0 {
        return Err(KeyFileError::Refused(format!(
            "key file {} is owned by uid {}, not root; {}",
            path.display(),
            meta.uid(),
            file_fix(path)
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(KeyFileError::Refused(format!(
            "key file {} is group- or world-writable (mode {:04o}); {}",
            path.display(),
            meta.mode() & 0o7777,
            file_fix(path)
        )));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(KeyFileError::Refused(format!(
            "key file {} is {} bytes, more than the 1 MiB limit",
            path.display(),
            meta.len()
        )));
    }
    Ok(())
}

/// Reads and checks a key file (see [`read_key_file`]), returning skipped lines too.
pub fn load_key_file(path: &Path) -> Result<KeyFile, KeyFileError> {
    let refused = |what: &str, e: std::io::Error| {
        KeyFileError::Refused(format!("cannot {what} key file {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_key_dir(dir)?;
    }
    // lstat first so that FIFOs and devices are never opened.
    let lmeta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(KeyFileError::NotFound),
        Err(e) => return Err(refused("stat", e)),
    };
    check_key_file_meta(path, &lmeta)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(KeyFileError::NotFound),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(KeyFileError::Refused(format!(
                "key file {} is a symlink; replace it with a regular file ({})",
                path.display(),
                file_fix(path)
            )))
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(KeyFileError::Refused(format!(
                "cannot open key file {}: {e} (auth-keys runs as the {} user); {}",
                path.display(),
                crate::core::names::SYSTEM_USER,
                file_fix(path)
            )))
        }
        Err(e) => return Err(refused("open", e)),
    };
    // fstat what was actually opened.
    let meta = file.metadata().map_err(|e| refused("stat", e))?;
    check_key_file_meta(path, &meta)?;
    if meta.ino() != lmeta.ino() || meta.dev() != lmeta.dev() {
        return Err(KeyFileError::Refused(format!(
            "key file {} changed while it was being read; try again",
            path.display()
        )));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| refused("read", e))?;
    if buf.len() as u64 > MAX_FILE_LEN {
        return Err(KeyFileError::Refused(format!(
            "key file {} is more than the 1 MiB limit",
            path.display()
        )));
    }
    let (keys, invalid) = parse_key_bytes(&buf);
    Ok(KeyFile { keys, invalid })
}

/// Reads a key file, refusing symlinks, non-regular files, files not owned by root, and group- or
/// world-writable files (or directories). Invalid lines are skipped with a `tracing` warning.
pub fn read_key_file(path: &Path) -> Result<Vec<PublicKey>, KeyFileError> {
    match load_key_file(path) {
        Ok(kf) => {
            for (line, e) in &kf.invalid {
                tracing::warn!("{}: line {line}: {e}; line skipped", path.display());
            }
            Ok(kf.keys)
        }
        Err(e) => Err(e),
    }
}

/// Path of a user's key file.
pub fn key_file(key_dir: &Path, user: &str) -> PathBuf {
    key_dir.join(user)
}

/// A user is registered when their key file exists (as a regular file, not a symlink).
pub fn is_registered(key_dir: &Path, user: &str) -> bool {
    std::fs::symlink_metadata(key_file(key_dir, user)).is_ok_and(|m| m.is_file())
}

/// The text of a key file: one key line each.
pub fn render_key_file(keys: &[PublicKey]) -> String {
    let mut s = String::new();
    for k in keys {
        s.push_str(&k.to_line());
        s.push('\n');
    }
    s
}

/// Atomically writes `<key_dir>/<user>` as root:`group_gid` 0640.
pub fn write_key_file(
    key_dir: &Path,
    user: &str,
    keys: &[PublicKey],
    group_gid: u32,
) -> Result<(), WriteError> {
    crate::core::names::validate_user(user).map_err(WriteError::User)?;
    write_file_atomic(
        &key_file(key_dir, user),
        render_key_file(keys).as_bytes(),
        0,
        group_gid,
        0o640,
    )
    .map_err(WriteError::Fs)
}

/// Makes the key directory root:`group_gid` 0750 (creating it if missing).
pub fn ensure_key_dir(key_dir: &Path, group_gid: u32) -> Result<(), crate::host::fs::Error> {
    ensure_dir(key_dir, 0, group_gid, 0o750)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::tests::{ED25519, RSA, SK_ECDSA};
    use crate::test_support::TempDir;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn reads_good_key_file_and_reports_bad_lines() {
        assert!(
            is_root(),
            "this test needs root (root-owned key files); run the tests as root"
        );
        let t = TempDir::new("good");
        let f = t.0.join("alice");
        write(
            &f,
            &format!("{ED25519}\nbogus line\n{RSA}\n{ED25519}\n"),
            0o640,
        );
        let kf = load_key_file(&f).unwrap();
        assert_eq!(kf.keys.len(), 3);
        assert_eq!(kf.invalid.len(), 1);
        assert_eq!(kf.invalid[0].0, 2);
        assert_eq!(read_key_file(&f).unwrap().len(), 3);
        // 0644 and 0600 are fine too (only writability matters).
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_key_file(&f).is_ok());
        assert_eq!(
            load_key_file(&t.0.join("nobody-here")),
            Err(KeyFileError::NotFound)
        );
        assert_eq!(
            load_key_file(&t.0.join("missing-dir/alice")),
            Err(KeyFileError::NotFound)
        );
    }

    #[test]
    fn refuses_bad_key_files() {
        assert!(
            is_root(),
            "this test needs root (root-owned key files); run the tests as root"
        );
        let t = TempDir::new("bad");
        let good = t.0.join("good");
        write(&good, ED25519, 0o640);

        let not_root = t.0.join("notroot");
        write(&not_root, ED25519, 0o640);
        std::os::unix::fs::chown(&not_root, Some(65534), Some(65534)).unwrap();
        let e = read_key_file(&not_root).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
        assert!(
            e.contains(&format!(
                "chown root:podspawn {0} && chmod 0640 {0}",
                not_root.display()
            )),
            "{e}"
        );

        let gw = t.0.join("groupw");
        write(&gw, ED25519, 0o660);
        let e = read_key_file(&gw).unwrap_err().to_string();
        assert!(e.contains("group- or world-writable (mode 0660)"), "{e}");

        let ww = t.0.join("worldw");
        write(&ww, ED25519, 0o646);
        let e = read_key_file(&ww).unwrap_err().to_string();
        assert!(e.contains("mode 0646"), "{e}");

        let link = t.0.join("link");
        symlink(&good, &link).unwrap();
        let e = read_key_file(&link).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");

        let dangling = t.0.join("dangling");
        symlink(t.0.join("does-not-exist"), &dangling).unwrap();
        let e = read_key_file(&dangling).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");

        let dir = t.0.join("adir");
        std::fs::create_dir(&dir).unwrap();
        let e = read_key_file(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");

        let fifo = t.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_key_file(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");

        let big = t.0.join("big");
        write(&big, &"#".repeat(MAX_FILE_LEN as usize + 1), 0o640);
        let e = read_key_file(&big).unwrap_err().to_string();
        assert!(e.contains("1 MiB"), "{e}");

        assert!(read_key_file(&good).is_ok());
    }

    #[test]
    fn refuses_bad_key_dirs() {
        assert!(
            is_root(),
            "this test needs root (root-owned key files); run the tests as root"
        );
        let t = TempDir::new("dirs");
        let d = t.0.join("keys");
        std::fs::create_dir(&d).unwrap();
        let f = d.join("alice");
        write(&f, ED25519, 0o640);

        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = read_key_file(&f).unwrap_err().to_string();
        assert!(e.contains("key directory"), "{e}");
        assert!(e.contains("chmod 0750"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(read_key_file(&f).is_err());

        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(read_key_file(&f).is_ok());
        std::os::unix::fs::chown(&d, Some(65534), None).unwrap();
        let e = read_key_file(&f).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
    }

    #[test]
    fn writes_key_files_atomically() {
        assert!(
            is_root(),
            "this test needs root (root-owned key files); run the tests as root"
        );
        let t = TempDir::new("write");
        let d = t.0.join("etc/podspawn/keys");
        ensure_key_dir(&d, 65533).unwrap();
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 65533, 0o750));
        let parent = std::fs::metadata(t.0.join("etc/podspawn")).unwrap();
        assert_eq!(parent.mode() & 0o7777, 0o755);
        // Fixes an existing directory's owner and mode.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(0)).unwrap();
        ensure_key_dir(&d, 65533).unwrap();
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 65533, 0o750));

        let keys = vec![
            PublicKey::parse(ED25519).unwrap(),
            PublicKey::parse(SK_ECDSA).unwrap(),
        ];
        write_key_file(&d, "alice", &keys, 65533).unwrap();
        let f = d.join("alice");
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 65533, 0o640));
        assert_eq!(read_key_file(&f).unwrap(), keys);
        // Overwrite (replacing a bad-mode file) and no temp files left behind.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_key_file(&d, "alice", &keys[..1], 65533).unwrap();
        assert_eq!(read_key_file(&f).unwrap(), keys[..1].to_vec());
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("alice")]);
        let e = write_key_file(&d, "../evil", &keys, 0).unwrap_err();
        assert!(
            matches!(&e, WriteError::User(InvalidName::User(n)) if n == "../evil"),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("invalid user name \"../evil\""),
            "{e}"
        );
        let e = write_key_file(&d.join("missing"), "alice", &keys, 0).unwrap_err();
        assert!(matches!(&e, WriteError::Fs(_)), "{e:?}");
        assert!(String::from(e).starts_with("cannot create "));

        // A symlinked key dir is refused by ensure_key_dir.
        let real = t.0.join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.0.join("linked");
        symlink(&real, &link).unwrap();
        let e = ensure_key_dir(&link, 0).unwrap_err();
        assert!(
            matches!(&e, crate::host::fs::Error::Symlink(p) if *p == link),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{} is a symlink: replace it with a real directory",
                link.display()
            )
        );
        let file = t.0.join("plainfile");
        write(&file, "", 0o600);
        let e = ensure_key_dir(&file, 0).unwrap_err();
        assert!(
            matches!(&e, crate::host::fs::Error::NotADirectory(p) if *p == file),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("{} exists but is not a directory", file.display())
        );
    }
}
