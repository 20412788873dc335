//! Running sshd (`sshd -t`, `sshd -T -C`) and systemctl, and reading sshd's configuration files.
use crate::core::sshd_config::{glob_match, ConfigSource};
use crate::host::accounts;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Running sshd or systemctl failed.
#[derive(Debug)]
pub enum Error {
    /// No sshd binary on this host.
    SshdNotFound,
    /// The program could not be started.
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    /// sshd ran and refused (`-t`) or could not dump (`-T`) the configuration: what it said.
    Sshd(String),
    /// `systemctl <args>` ran and failed: what it said.
    Systemctl { args: String, output: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SshdNotFound => f.write_str(
                "sshd not found: install the OpenSSH server (Debian/Ubuntu: openssh-server, \
                 Fedora/RHEL: openssh-server)",
            ),
            Error::Spawn { program, source } => {
                write!(f, "cannot run {}: {source}", program.display())
            }
            Error::Sshd(output) => f.write_str(output),
            Error::Systemctl { args, output } => write!(f, "`systemctl {args}` failed: {output}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } => Some(source),
            Error::SshdNotFound | Error::Sshd(_) | Error::Systemctl { .. } => None,
        }
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

fn spawn_error(program: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spawn {
        program: program.to_path_buf(),
        source,
    }
}

/// The real file system.
pub struct RealFs;

impl ConfigSource for RealFs {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        glob_paths(pattern)
    }
}

/// Expands an absolute glob pattern against the file system, sorted.
pub fn glob_paths(pattern: &str) -> Vec<PathBuf> {
    if !pattern.starts_with('/') {
        return Vec::new();
    }
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = vec![PathBuf::from("/")];
    for c in comps {
        let wild = c.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for base in &cur {
            if !wild {
                next.push(base.join(c));
                continue;
            }
            let Ok(rd) = std::fs::read_dir(base) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| glob_match(c, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        cur = next;
    }
    cur.retain(|p| p.exists());
    cur.sort();
    cur
}

// Running sshd and systemctl.

/// The sshd binary.
pub fn find_sshd() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("sshd"))
        .find(|p| p.is_file())
}

pub fn sshd_or_err() -> Result<PathBuf, Error> {
    find_sshd().ok_or(Error::SshdNotFound)
}

pub fn output_text(out: &std::process::Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if e.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        e
    }
}

/// `sshd -t -f <config>`.
pub fn sshd_test(sshd: &Path, config: &Path) -> Result<(), Error> {
    let out = Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error(sshd))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Sshd(output_text(&out)))
    }
}

/// `sshd -T -f <config> [-C user=<user>,host=localhost,addr=127.0.0.1]`.
pub fn sshd_dump(sshd: &Path, config: &Path, user: Option<&str>) -> Result<String, Error> {
    let mut cmd = Command::new(sshd);
    cmd.arg("-T").arg("-f").arg(config);
    if let Some(u) = user {
        cmd.arg("-C")
            .arg(format!("user={u},host=localhost,addr=127.0.0.1"));
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error(sshd))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Sshd(output_text(&out)))
    }
}

/// An existing account in podspawn-users (supplementary members first, then primary ones).
pub fn podspawn_member() -> Option<String> {
    let g = uzers::get_group_by_name(accounts::USERS_GROUP)?;
    use uzers::os::unix::GroupExt;
    let mut members: Vec<String> = g
        .members()
        .iter()
        .filter_map(|m| m.to_str().map(str::to_string))
        .collect();
    members.sort();
    if let Some(m) = members.into_iter().find(|m| accounts::lookup(m).is_some()) {
        return Some(m);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let gid = g.gid().to_string();
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[3] == gid).then(|| f[0].to_string())
    })
}

/// Is systemd the init system (sd_booted)?
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl is-active <unit>` state (`None` when systemctl cannot be run).
pub fn unit_state(unit: &str) -> Option<String> {
    let out = Command::new("systemctl")
        .args(["is-active", unit])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The active sshd unit: `ssh` (Debian/Ubuntu) or `sshd` (Fedora/RHEL/Arch).
pub fn detect_ssh_service() -> Option<String> {
    ["ssh", "sshd"]
        .into_iter()
        .find(|s| unit_state(&format!("{s}.service")).as_deref() == Some("active"))
        .map(str::to_string)
}

/// How to reload sshd when server-setup cannot.
pub fn reload_hint(service: Option<&str>, pidfile: Option<&str>) -> String {
    if systemd_running() {
        format!("sudo systemctl reload {}", service.unwrap_or("ssh"))
    } else {
        format!(
            "sudo kill -HUP $(cat {})",
            pidfile.unwrap_or("/run/sshd.pid")
        )
    }
}

pub fn run_systemctl(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error(Path::new("systemctl")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Systemctl {
            args: args.join(" "),
            output: output_text(&out),
        })
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn failures_are_typed_and_read_as_before() {
        let missing = Path::new("/nonexistent/sshd");
        let e = sshd_test(missing, Path::new("/dev/null")).unwrap_err();
        assert!(
            matches!(&e, Error::Spawn { program, .. } if program == missing),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/sshd: "),
            "{e}"
        );

        // An "sshd" that refuses the configuration: its own words are the error.
        let t = crate::test_support::TempDir::new("fake-sshd");
        let fake = t.write(
            "sshd",
            "#!/bin/sh\necho \"line 3: Bad option\" >&2\nexit 255\n",
        );
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = sshd_dump(&fake, Path::new("/dev/null"), Some("alice")).unwrap_err();
        assert!(
            matches!(&e, Error::Sshd(m) if m == "line 3: Bad option"),
            "{e:?}"
        );
        assert_eq!(String::from(e), "line 3: Bad option");

        assert_eq!(
            Error::SshdNotFound.to_string(),
            "sshd not found: install the OpenSSH server (Debian/Ubuntu: openssh-server, \
             Fedora/RHEL: openssh-server)"
        );
        let e = Error::Systemctl {
            args: "reload ssh".into(),
            output: "Unit ssh.service not loaded.".into(),
        };
        assert_eq!(
            e.to_string(),
            "`systemctl reload ssh` failed: Unit ssh.service not loaded."
        );
    }
}
