//! server-setup's file-system step: podspawn's directories, the default configuration, and the
//! owner and mode of key files and state files.
use crate::core::config::Config;
use crate::host::accounts;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

// File system part.

/// Directories never re-owned or re-moded, even if the configuration points there.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/etc",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/var/run",
    "/var/cache",
    "/run",
    "/tmp",
    "/usr",
    "/usr/local",
    "/home",
    "/root",
    "/opt",
    "/srv",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
];

/// The directories podspawn owns, from the configuration: (path, group, mode). The same modes
/// as systemd/tmpfiles.d/podspawn.conf.
pub fn wanted_dirs(cfg: &Config) -> Vec<(PathBuf, &'static str, u32)> {
    let root = "root";
    let sys = accounts::SYSTEM_USER;
    let parent = |p: &Path| p.parent().map(Path::to_path_buf);
    let mut v: Vec<(PathBuf, &'static str, u32)> = Vec::new();
    if let Some(d) = parent(&cfg.path) {
        v.push((d, root, 0o755));
    }
    v.push((cfg.auth.key_dir.clone(), sys, 0o750));
    v.push((cfg.users_dir.clone(), root, 0o755));
    if let Some(d) = parent(&cfg.state.db_path) {
        v.push((d, root, 0o700));
    }
    v.push((cfg.state.lock_dir.clone(), root, 0o700));
    v.push((cfg.state.homes_dir.clone(), root, 0o711));
    if let Some(d) = parent(&cfg.broker.socket) {
        v.push((d, root, 0o755));
    }
    let logs: Vec<PathBuf> = [&cfg.log.file, &cfg.log.audit_log]
        .into_iter()
        .flatten()
        .filter(|p| !p.as_os_str().is_empty())
        .filter_map(|p| parent(p))
        .collect();
    if logs.is_empty() {
        v.push((PathBuf::from("/var/log/podspawn"), root, 0o750));
    }
    for d in logs {
        v.push((d, root, 0o750));
    }
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|(p, _, _)| {
        p.is_absolute()
            && !SYSTEM_DIRS.contains(&p.to_str().unwrap_or("/"))
            && seen.insert(p.clone())
    });
    v
}

/// Collects what was (or would be) done.
pub(super) struct Log<'a> {
    pub(super) out: &'a mut dyn Write,
    pub(super) dry: bool,
    pub(super) changes: Vec<String>,
    pub(super) notes: Vec<String>,
}

impl Log<'_> {
    pub(super) fn change(&mut self, what: String) {
        let _ = writeln!(self.out, "  {}{what}", if self.dry { "would " } else { "" });
        self.changes.push(what);
    }
    pub(super) fn note(&mut self, what: String) {
        let _ = writeln!(self.out, "  note: {what}");
        self.notes.push(what);
    }
}

fn ensure_dir_step(
    log: &mut Log,
    path: &Path,
    group: &str,
    gid: Option<u32>,
    mode: u32,
) -> Result<(), String> {
    let desc = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("create {} (root:{group} {mode:04o})", path.display())
        }
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{} is a symlink: replace it with a real directory and run server-setup again",
                path.display()
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "{} exists but is not a directory: move it away and run server-setup again",
                path.display()
            ))
        }
        Ok(m) => {
            if m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == mode {
                return Ok(());
            }
            format!(
                "change {} from {} {:04o} to root:{group} {mode:04o}",
                path.display(),
                crate::host::accounts::owner_text(m.uid(), m.gid()),
                m.mode() & 0o7777
            )
        }
    };
    if !log.dry {
        let gid = gid.ok_or_else(|| format!("group {group} does not exist"))?;
        crate::host::fs::ensure_dir(path, 0, gid, mode)?;
    }
    log.change(desc);
    Ok(())
}

/// Fixes the owner and mode of an existing regular file (symlinks and others are only reported).
fn fix_file_step(
    log: &mut Log,
    path: &Path,
    group: &str,
    gid: Option<u32>,
    mode: u32,
    what: &str,
) -> Result<(), String> {
    let m = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        Ok(m) => m,
    };
    if m.file_type().is_symlink() {
        log.note(format!(
            "{what} {} is a symlink, which podspawn refuses: replace it with a regular file \
             (root:{group} {mode:04o})",
            path.display()
        ));
        return Ok(());
    }
    if !m.is_file() {
        log.note(format!(
            "{what} {} is not a regular file: remove it",
            path.display()
        ));
        return Ok(());
    }
    if m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == mode {
        return Ok(());
    }
    let desc = format!(
        "change {what} {} from {} {:04o} to root:{group} {mode:04o}",
        path.display(),
        crate::host::accounts::owner_text(m.uid(), m.gid()),
        m.mode() & 0o7777
    );
    if !log.dry {
        let gid = gid.ok_or_else(|| format!("group {group} does not exist"))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        std::os::unix::fs::fchown(&f, Some(0), Some(gid))
            .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    log.change(desc);
    Ok(())
}

pub(super) fn filesystem_steps(cfg: &Config, log: &mut Log) -> Result<(), String> {
    // System identities.
    let missing = accounts::missing_identities();
    if !log.dry {
        accounts::ensure_system_identities()?;
    }
    if !missing.is_empty() {
        log.change(format!("create {}", missing.join(", ")));
    }
    let gid_of = |g: &str| {
        if g == "root" {
            Some(0)
        } else {
            accounts::group_gid(g)
        }
    };

    // Directories.
    let wanted = wanted_dirs(cfg);
    for (path, group, mode) in &wanted {
        ensure_dir_step(log, path, group, gid_of(group), *mode)?;
    }
    if let Some(d) = cfg.path.parent() {
        if !wanted.iter().any(|(p, _, _)| p == d) && !d.exists() {
            log.change(format!("create {} (root:root 0755)", d.display()));
            if !log.dry {
                crate::host::fs::ensure_dir(d, 0, 0, 0o755)?;
            }
        }
    }

    // The configuration: auth-keys runs as the podspawn user and must be able to read it.
    let sys = accounts::SYSTEM_USER;
    let sys_gid = gid_of(sys);
    match std::fs::symlink_metadata(&cfg.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !log.dry {
                let gid = sys_gid.ok_or_else(|| format!("group {sys} does not exist"))?;
                crate::host::fs::write_file_atomic(
                    &cfg.path,
                    crate::core::config::default_config_yaml().as_bytes(),
                    0,
                    gid,
                    0o640,
                )?;
            }
            log.change(format!(
                "write the default configuration {} (root:{sys} 0640)",
                cfg.path.display()
            ));
        }
        Err(e) => return Err(format!("cannot stat {}: {e}", cfg.path.display())),
        Ok(_) => fix_file_step(log, &cfg.path, sys, sys_gid, 0o640, "configuration")?,
    }

    // Key files.
    if let Ok(rd) = std::fs::read_dir(&cfg.auth.key_dir) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            fix_file_step(log, &p, sys, sys_gid, 0o640, "key file")?;
        }
    }

    // State database (the broker creates it 0600; fix what an older install left).
    for suffix in ["", "-wal", "-shm"] {
        let mut p = cfg.state.db_path.clone().into_os_string();
        p.push(suffix);
        fix_file_step(log, Path::new(&p), "root", Some(0), 0o600, "state file")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
