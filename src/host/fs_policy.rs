//! Who may own and write the files sshd and podspawn trust (sshd's safe_path() rules).
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

// The AuthorizedKeysCommand binary: sshd's safe_path() rules.

/// One element of a path chain (the file first, then each parent up to /).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEntry {
    pub path: PathBuf,
    pub uid: u32,
    pub mode: u32,
    pub is_file: bool,
}

/// A path-chain problem and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub detail: String,
    pub fix: String,
}

/// The resolved file and its parents, as sshd checks them (it resolves symlinks first).
pub fn path_chain(path: &Path) -> Result<Vec<PathEntry>, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut cur = Some(real.as_path());
    while let Some(p) = cur {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(PathEntry {
            path: p.to_path_buf(),
            uid: m.uid(),
            mode: m.mode(),
            is_file: m.is_file(),
        });
        cur = p.parent();
    }
    Ok(out)
}

/// sshd runs an AuthorizedKeysCommand only if it is a regular executable file and it and every
/// directory above it are owned by root and not group- or world-writable.
pub fn check_chain(entries: &[PathEntry]) -> Result<(), ChainProblem> {
    let Some(file) = entries.first() else {
        return Err(ChainProblem {
            detail: "empty path".into(),
            fix: "sudo podspawn server-setup".into(),
        });
    };
    let fp = file.path.display();
    if !file.is_file {
        return Err(ChainProblem {
            detail: format!("{fp} is not a regular file"),
            fix: format!("install the podspawn binary at {fp} (or run: sudo podspawn server-setup --binary PATH)"),
        });
    }
    if file.mode & 0o111 == 0 {
        return Err(ChainProblem {
            detail: format!("{fp} is not executable (mode {:04o})", file.mode & 0o7777),
            fix: format!("sudo chmod 0755 {fp}"),
        });
    }
    for e in entries {
        let p = e.path.display();
        if e.uid != 0 {
            return Err(ChainProblem {
                detail: format!(
                    "{p} is owned by uid {}, not root, so sshd refuses the command (\"Unsafe \
                     AuthorizedKeysCommand\")",
                    e.uid
                ),
                fix: format!("sudo chown root {p}"),
            });
        }
        if e.mode & 0o022 != 0 {
            return Err(ChainProblem {
                detail: format!(
                    "{p} is group- or world-writable (mode {:04o}), so sshd refuses the command \
                     (\"Unsafe AuthorizedKeysCommand\")",
                    e.mode & 0o7777
                ),
                fix: format!("sudo chmod go-w {p}"),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sshd_config::validate_binary_path;

    #[test]
    fn binary_paths() {
        assert!(validate_binary_path(Path::new("/usr/bin/podspawn")).is_ok());
        use crate::core::sshd_config::Error;
        let e = validate_binary_path(Path::new("podspawn")).unwrap_err();
        assert_eq!(e, Error::NotAbsolute("podspawn".into()));
        assert_eq!(
            e.to_string(),
            "podspawn is not an absolute path: sshd needs one for AuthorizedKeysCommand"
        );
        let e = validate_binary_path(Path::new("/opt/my tools/podspawn")).unwrap_err();
        assert_eq!(e, Error::Unquotable("/opt/my tools/podspawn".into()));
        assert_eq!(
            e.to_string(),
            "\"/opt/my tools/podspawn\" contains a space, quote, backslash or %: sshd would split \
             or expand it; install podspawn at a plain path such as /usr/local/bin/podspawn"
        );
        assert!(validate_binary_path(Path::new("/opt/100%/podspawn")).is_err());
        let e = |path: &str, uid, mode, is_file| PathEntry {
            path: path.into(),
            uid,
            mode,
            is_file,
        };
        let good = vec![
            e("/usr/bin/podspawn", 0, 0o100755, true),
            e("/usr/bin", 0, 0o40755, false),
            e("/usr", 0, 0o40755, false),
            e("/", 0, 0o40755, false),
        ];
        assert_eq!(check_chain(&good), Ok(()));
        let mut gw = good.clone();
        gw[1].mode = 0o40775;
        let p = check_chain(&gw).unwrap_err();
        assert!(
            p.detail.contains("/usr/bin is group- or world-writable"),
            "{p:?}"
        );
        assert_eq!(p.fix, "sudo chmod go-w /usr/bin");
        let mut owned = good.clone();
        owned[0].uid = 1000;
        assert_eq!(
            check_chain(&owned).unwrap_err().fix,
            "sudo chown root /usr/bin/podspawn"
        );
        let mut tmp = good.clone();
        tmp[1] = e("/tmp", 0, 0o41777, false);
        assert!(check_chain(&tmp).is_err());
        let mut noexec = good.clone();
        noexec[0].mode = 0o100644;
        assert!(check_chain(&noexec)
            .unwrap_err()
            .detail
            .contains("not executable"));
        let mut dir = good;
        dir[0].is_file = false;
        assert!(check_chain(&dir).is_err());
        assert!(check_chain(&[]).is_err());
    }
}
