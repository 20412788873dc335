//! The files and directories podspawn reads: configuration, keys, state database, locks.
use super::{
    mode_of, Check, CONFIG_CHECK, KEY_DIR_CHECK, KEY_FILES_CHECK, LOCK_CHECK, STATE_CHECK,
};
use crate::core::config::Config;
use crate::host::accounts;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn install_dir_fix(dir: &Path, group: &str, mode: u32) -> String {
    format!(
        "sudo install -d -m {mode:04o} -o root -g {group} {}",
        dir.display()
    )
}

/// The server configuration: root-owned, not writable by others, readable by the podspawn
/// group (auth-keys runs as podspawn and reads it), valid.
pub fn check_config_file(path: &Path, podspawn_gid: Option<u32>) -> Check {
    let sys = accounts::SYSTEM_USER;
    let fix = format!(
        "sudo chown root:{sys} {p} && sudo chmod 0640 {p}",
        p = path.display()
    );
    let m = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::warn(
                CONFIG_CHECK,
                format!(
                    "{} does not exist: built-in defaults are used",
                    path.display()
                ),
                Some("sudo podspawn server-setup".into()),
            )
        }
        Err(e) => {
            return Check::fail(
                CONFIG_CHECK,
                format!("cannot stat {}: {e}", path.display()),
                fix,
            )
        }
        Ok(m) => m,
    };
    if !m.is_file() {
        return Check::fail(
            CONFIG_CHECK,
            format!("{} is not a regular file", path.display()),
            "sudo podspawn server-setup",
        );
    }
    if m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Check::fail(
            CONFIG_CHECK,
            format!(
                "{} is {} {}: only root may be able to change it",
                path.display(),
                m.uid(),
                mode_of(m.mode())
            ),
            fix,
        );
    }
    let group_reads = podspawn_gid == Some(m.gid()) && m.mode() & 0o040 != 0;
    if !group_reads && m.mode() & 0o004 == 0 {
        return Check::fail(
            CONFIG_CHECK,
            format!(
                "{} (mode {}) is not readable by the {sys} group: auth-keys runs as {sys} and \
                 fails, so nobody can log in (\"AuthorizedKeysCommand ... failed, status 1\")",
                path.display(),
                mode_of(m.mode())
            ),
            fix,
        );
    }
    if let Err(e) = Config::load(path) {
        return Check::fail(
            CONFIG_CHECK,
            e.to_string(),
            format!(
                "sudoedit {}   # then: podspawn config validate",
                path.display()
            ),
        );
    }
    if !group_reads || m.mode() & 0o7777 != 0o640 {
        return Check::warn(
            CONFIG_CHECK,
            format!(
                "{} is mode {}; expected root:{sys} 0640",
                path.display(),
                mode_of(m.mode())
            ),
            Some(fix),
        );
    }
    Check::pass(CONFIG_CHECK, format!("{} root:{sys} 0640", path.display()))
}

/// The key directory: root:podspawn 0750 (auth-keys reads it as podspawn; nobody else may).
pub fn check_key_dir(dir: &Path, podspawn_gid: Option<u32>) -> Check {
    let sys = accounts::SYSTEM_USER;
    let fix = install_dir_fix(dir, sys, 0o750);
    let m = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::fail(
                KEY_DIR_CHECK,
                format!("{} does not exist", dir.display()),
                fix,
            )
        }
        Err(e) => {
            return Check::fail(
                KEY_DIR_CHECK,
                format!("cannot stat {}: {e}", dir.display()),
                fix,
            )
        }
        Ok(m) => m,
    };
    if m.file_type().is_symlink() || !m.is_dir() {
        return Check::fail(
            KEY_DIR_CHECK,
            format!(
                "{} is not a directory (a symlink or a file): auth-keys refuses it",
                dir.display()
            ),
            format!("sudo rm {d} && {fix}", d = dir.display()),
        );
    }
    let mode = m.mode() & 0o7777;
    if m.uid() != 0 || Some(m.gid()) != podspawn_gid || mode != 0o750 {
        let why = if m.uid() != 0 || mode & 0o022 != 0 {
            "auth-keys refuses keys that someone other than root can change"
        } else if mode & 0o007 != 0 {
            "it must not be world-readable"
        } else {
            "the podspawn user (auth-keys) must be able to read it (\"Could not open authorized \
             keys command output\")"
        };
        return Check::fail(
            KEY_DIR_CHECK,
            format!(
                "{} is {} {}, expected root:{sys} 0750: {why}",
                dir.display(),
                crate::host::accounts::owner_text(m.uid(), m.gid()),
                mode_of(mode)
            ),
            fix,
        );
    }
    Check::pass(KEY_DIR_CHECK, format!("{} root:{sys} 0750", dir.display()))
}

/// Key files: regular files (not symlinks), root:podspawn 0640.
pub fn check_key_files(dir: &Path, podspawn_gid: Option<u32>) -> Check {
    let sys = accounts::SYSTEM_USER;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::pass(KEY_FILES_CHECK, "no key directory, no users")
        }
        Err(e) => {
            return Check::warn(
                KEY_FILES_CHECK,
                format!("cannot read {}: {e} (run doctor with sudo)", dir.display()),
                None,
            )
        }
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    let mut bad_links = Vec::new();
    let mut bad_modes = Vec::new();
    for p in &paths {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if m.file_type().is_symlink() || !m.is_file() {
            bad_links.push(p.display().to_string());
        } else if m.uid() != 0 || Some(m.gid()) != podspawn_gid || m.mode() & 0o7777 != 0o640 {
            bad_modes.push(format!(
                "{} ({} {})",
                p.display(),
                crate::host::accounts::owner_text(m.uid(), m.gid()),
                mode_of(m.mode())
            ));
        }
    }
    if !bad_links.is_empty() {
        return Check::fail(
            KEY_FILES_CHECK,
            format!(
                "not regular files (symlinks or others), refused by auth-keys: {}",
                bad_links.join(", ")
            ),
            format!(
                "replace each with a regular file, e.g.: sudo cp --remove-destination \"$(readlink \
                 -f F)\" F && sudo chown root:{sys} F && sudo chmod 0640 F   # F: {}",
                bad_links.join(" ")
            ),
        );
    }
    if !bad_modes.is_empty() {
        let files: Vec<String> = bad_modes
            .iter()
            .map(|s| s.split(" (").next().unwrap_or("").to_string())
            .collect();
        return Check::fail(
            KEY_FILES_CHECK,
            format!("expected root:{sys} 0640: {}", bad_modes.join(", ")),
            format!(
                "sudo chown root:{sys} {f} && sudo chmod 0640 {f}",
                f = files.join(" ")
            ),
        );
    }
    Check::pass(
        KEY_FILES_CHECK,
        format!("{} key file(s), root:{sys} 0640", paths.len()),
    )
}

fn check_root_file(path: &Path, problems: &mut Vec<String>, files: &mut Vec<String>) {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    if m.file_type().is_symlink() || !m.is_file() {
        problems.push(format!("{} is not a regular file", path.display()));
    } else if m.uid() != 0 || m.mode() & 0o077 != 0 {
        problems.push(format!(
            "{} is {} {}",
            path.display(),
            crate::host::accounts::owner_text(m.uid(), m.gid()),
            mode_of(m.mode())
        ));
    } else {
        return;
    }
    files.push(path.display().to_string());
}

/// state.db and its -wal/-shm: root-owned 0600, in a root 0700 directory.
pub fn check_state_db(db: &Path) -> Check {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    if let Some(dir) = db.parent() {
        if let Ok(m) = std::fs::symlink_metadata(dir) {
            if !m.is_dir() || m.uid() != 0 || m.mode() & 0o077 != 0 {
                problems.push(format!(
                    "{} is {} {}, expected root 0700",
                    dir.display(),
                    crate::host::accounts::owner_text(m.uid(), m.gid()),
                    mode_of(m.mode())
                ));
                return Check::fail(
                    STATE_CHECK,
                    problems.join("; "),
                    install_dir_fix(dir, "root", 0o700),
                );
            }
        }
    }
    if std::fs::symlink_metadata(db).is_err() {
        return Check::warn(
            STATE_CHECK,
            format!(
                "{} does not exist yet: the broker creates it when it first starts",
                db.display()
            ),
            Some("sudo systemctl start podspawn.socket podspawn.service".into()),
        );
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_os_string();
        p.push(suffix);
        check_root_file(Path::new(&p), &mut problems, &mut files);
    }
    if problems.is_empty() {
        Check::pass(STATE_CHECK, format!("{} root 0600", db.display()))
    } else {
        Check::fail(
            STATE_CHECK,
            format!(
                "the session database must be readable by the broker (root) only: {}",
                problems.join("; ")
            ),
            format!(
                "sudo chown root:root {f} && sudo chmod 0600 {f}",
                f = files.join(" ")
            ),
        )
    }
}

/// The lock directory: root 0700.
pub fn check_lock_dir(dir: &Path) -> Check {
    let fix = install_dir_fix(dir, "root", 0o700);
    match std::fs::symlink_metadata(dir) {
        Err(_) => Check::fail(LOCK_CHECK, format!("{} does not exist", dir.display()), fix),
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => Check::fail(
            LOCK_CHECK,
            format!("{} is not a directory", dir.display()),
            format!("sudo rm {} && {fix}", dir.display()),
        ),
        Ok(m) if m.uid() != 0 || m.mode() & 0o7777 != 0o700 => Check::fail(
            LOCK_CHECK,
            format!(
                "{} is {} {}, expected root 0700 (only the broker and cleanup use it)",
                dir.display(),
                crate::host::accounts::owner_text(m.uid(), m.gid()),
                mode_of(m.mode())
            ),
            fix,
        ),
        Ok(_) => Check::pass(LOCK_CHECK, format!("{} root 0700", dir.display())),
    }
}
