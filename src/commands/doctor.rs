//! `podspawn doctor [--json]`: checks everything `seed/troubleshooting.txt` makes an admin fix by
//! hand, and names the command that fixes each failure.
//!
//! Every check is a function of its inputs (paths, command outputs, parsed facts), so it can be
//! tested with constructed inputs; [`gather`] collects the real inputs.
use crate::core::config::Config;
use crate::core::sshd_config::{self, ShadowReport};
use crate::engine;
use crate::host::accounts;
use crate::host::fs_policy::{self, ChainProblem, PathEntry};
use crate::host::sshd;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

const GIB: u64 = 1024 * 1024 * 1024;
/// Below this much free space a check fails.
pub const DISK_FAIL: u64 = GIB;
/// Below this much free space a check warns.
pub const DISK_WARN: u64 = 5 * GIB;
/// Containers younger than this are not called orphans (the broker inserts the row after create).
pub const ORPHAN_MIN_AGE: i64 = 120;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Print the checks as a JSON array of {name, status, detail, fix}.
    #[arg(long)]
    pub json: bool,
    /// The main sshd configuration file.
    #[arg(long, value_name = "PATH", default_value = sshd_config::SSHD_CONFIG)]
    pub sshd_config: PathBuf,
    /// Check sshd's effective settings for this account (default: a member of podspawn-users).
    #[arg(long, value_name = "USER")]
    pub probe_user: Option<String>,
}

impl Default for DoctorArgs {
    fn default() -> Self {
        DoctorArgs {
            probe_user: None,
            json: false,
            sshd_config: PathBuf::from(sshd_config::SSHD_CONFIG),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's result. `fix` is the command that repairs a failure (or a warning, when there is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn warn(name: &str, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix,
        }
    }
    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub const SSHD_CHECK: &str = "sshd configuration";
pub const BINARY_CHECK: &str = "AuthorizedKeysCommand binary";
pub const DOCKER_CHECK: &str = "Docker connectivity";
pub const IMAGE_CHECK: &str = "default image";
pub const RUNC_CHECK: &str = "runc version";
pub const CONFIG_CHECK: &str = "configuration file";
pub const KEY_DIR_CHECK: &str = "key directory";
pub const KEY_FILES_CHECK: &str = "key files";
pub const USERS_CHECK: &str = "user accounts";
pub const STATE_CHECK: &str = "state database";
pub const LOCK_CHECK: &str = "lock directory";
pub const BROKER_CHECK: &str = "broker socket";
pub const CLEANUP_CHECK: &str = "cleanup daemon";
pub const RELOAD_CHECK: &str = "sshd running configuration";
pub const ORPHAN_CHECK: &str = "orphaned containers";

fn mode_of(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

// ---------------------------------------------------------------------------------------------
// sshd.

/// The effective sshd settings for podspawn users. `member`: the account checked with
/// `sshd -T -C user=<member>` (`None`: podspawn-users has no members); `dump`: that command's
/// output or error; `report`: the text analysis of the configuration files.
/// The package moves its sshd drop-in aside when `sshd -t` rejected it at install time; a failing
/// sshd check then has a more precise fix: put it back once sshd accepts it.
pub fn with_disabled_dropin(check: Check, disabled: Option<&Path>) -> Check {
    match (check.status, disabled) {
        (Status::Fail, Some(p)) => {
            let active = p.with_extension("");
            Check {
                detail: format!(
                    "{}; the package disabled its drop-in as {} because sshd rejected it at install time",
                    check.detail,
                    p.display()
                ),
                fix: Some(format!(
                    "sudo mv {} {} && sudo sshd -t && sudo systemctl reload ssh",
                    p.display(),
                    active.display()
                )),
                ..check
            }
        }
        _ => check,
    }
}

pub fn check_sshd(member: Option<&str>, dump: Result<&str, &str>, report: &ShadowReport) -> Check {
    let dump = match dump {
        Ok(d) => d,
        Err(e) => {
            return Check::fail(
                SSHD_CHECK,
                format!("`sshd -T` failed: {e}"),
                "sudo sshd -t   # shows the error; fix it, then: sudo podspawn server-setup",
            )
        }
    };
    let ours_ok = report
        .ours
        .as_ref()
        .is_some_and(|d| sshd_config::podspawn_command(&d.args).is_some());
    let Some(member) = member else {
        if !ours_ok {
            return Check::fail(
                SSHD_CHECK,
                "sshd has no `Match Group podspawn-users` block with podspawn's \
                 AuthorizedKeysCommand, so podspawn users cannot log in",
                "sudo podspawn server-setup",
            );
        }
        if let Some(d) = report.definite().first() {
            return Check::fail(
                SSHD_CHECK,
                format!(
                    "{} is read before podspawn's Match block and applies to every user, so sshd \
                     uses it for podspawn users too",
                    d.describe()
                ),
                format!(
                    "edit {} so that it does not apply to the group podspawn-users, then: sudo \
                     systemctl reload ssh",
                    d.file.display()
                ),
            );
        }
        return Check::warn(
            SSHD_CHECK,
            "podspawn's Match block is configured, but podspawn-users has no members yet, so the \
             effective settings could not be checked (`sshd -T -C` needs an existing account)",
            Some("sudo podspawn add-user NAME --key \"ssh-ed25519 AAAA...\"".into()),
        );
    };
    let map = sshd_config::parse_sshd_t(dump);
    let mm = sshd_config::effective_mismatches(&map, None, None);
    let (required, optional): (Vec<_>, Vec<_>) = mm.into_iter().partition(|m| m.required);
    if !required.is_empty() {
        let why = sshd_config::explain_mismatches(&required, report);
        let fix = if !ours_ok {
            "sudo podspawn server-setup".to_string()
        } else {
            let files: Vec<String> = report
                .earlier_match
                .iter()
                .map(|d| d.file.display().to_string())
                .collect();
            if files.is_empty() {
                "sudo podspawn server-setup".to_string()
            } else {
                format!(
                    "edit {} so that its Match block does not apply to podspawn-users, then: \
                     sudo systemctl reload ssh",
                    files.join(" ")
                )
            }
        };
        return Check::fail(
            SSHD_CHECK,
            format!("for podspawn users (checked as {member}):{why}"),
            fix,
        );
    }
    if !optional.is_empty() {
        return Check::warn(
            SSHD_CHECK,
            format!(
                "podspawn's AuthorizedKeysCommand is effective (checked as {member}), but some \
                 hardening settings are overridden:{}",
                sshd_config::explain_mismatches(&optional, report)
            ),
            None,
        );
    }
    Check::pass(
        SSHD_CHECK,
        format!(
            "podspawn's AuthorizedKeysCommand, user podspawn and AuthorizedKeysFile none are \
             effective for podspawn users (checked as {member})"
        ),
    )
}

/// The AuthorizedKeysCommand binary: exists, and sshd's rules for its path (root-owned, not
/// group/world-writable, all the way up).
pub fn check_binary(binary: Option<&str>, chain: Result<Vec<PathEntry>, String>) -> Check {
    let Some(bin) = binary else {
        return Check::warn(
            BINARY_CHECK,
            "skipped: sshd has no podspawn AuthorizedKeysCommand",
            Some("sudo podspawn server-setup".into()),
        );
    };
    let chain = match chain {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                BINARY_CHECK,
                format!(
                    "{bin} (sshd's AuthorizedKeysCommand) does not exist: {e}; sshd logs \
                     \"AuthorizedKeysCommand ... failed\" and nobody can log in"
                ),
                format!(
                    "install podspawn at {bin}, or point sshd at it: sudo podspawn server-setup \
                     --binary /usr/local/bin/podspawn"
                ),
            )
        }
    };
    match fs_policy::check_chain(&chain) {
        Ok(()) => Check::pass(
            BINARY_CHECK,
            format!("{bin}: root-owned, not writable by others"),
        ),
        Err(ChainProblem { detail, fix }) => Check::fail(BINARY_CHECK, detail, fix),
    }
}

/// The start time of a process in seconds since boot (`/proc/<pid>/stat` field 22, in ticks).
pub fn parse_stat_starttime(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the command: state is field 3, starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The parent pid from `/proc/<pid>/stat`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The sshd listener found for the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    /// When it last read its configuration (start, or re-exec on SIGHUP, which rewrites the
    /// pid file), seconds since the epoch.
    pub loaded_at: i64,
}

/// Is the running sshd's configuration older than the files on disk?
pub fn check_sshd_reloaded(
    listener: Option<&Listener>,
    files: &[(PathBuf, i64)],
    reload: &str,
) -> Check {
    let Some(l) = listener else {
        return Check::warn(
            RELOAD_CHECK,
            "no running sshd listener found for this configuration",
            Some("sudo systemctl start ssh   # sshd on Fedora/RHEL".into()),
        );
    };
    let newer: Vec<String> = files
        .iter()
        .filter(|(_, m)| *m > l.loaded_at)
        .map(|(p, _)| p.display().to_string())
        .collect();
    if newer.is_empty() {
        Check::pass(
            RELOAD_CHECK,
            format!("sshd (pid {}) has read the current files", l.pid),
        )
    } else {
        Check::fail(
            RELOAD_CHECK,
            format!(
                "sshd (pid {}) read its configuration before {} changed: the running sshd does \
                 not use what is on disk",
                l.pid,
                newer.join(", ")
            ),
            format!("sudo sshd -t && {reload}"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Docker.

/// `GET /_ping` answered `OK`.
pub fn check_docker(socket: &Path, ping: &Result<(u16, Vec<u8>), String>) -> Check {
    match ping {
        Ok((200, body)) if body.trim_ascii() == b"OK" => {
            Check::pass(DOCKER_CHECK, format!("{} answers", socket.display()))
        }
        Ok((status, body)) => Check::fail(
            DOCKER_CHECK,
            format!(
                "{} answered /_ping with HTTP {status}: {}",
                socket.display(),
                String::from_utf8_lossy(body).trim()
            ),
            "sudo systemctl restart docker",
        ),
        Err(e) => Check::fail(
            DOCKER_CHECK,
            format!("cannot reach the Docker engine: {e}"),
            "sudo systemctl enable --now docker",
        ),
    }
}

/// `GET /images/<image>/json`: 200 present, 404 not pulled yet.
pub fn check_default_image(image: &str, res: &Result<(u16, Vec<u8>), String>) -> Check {
    match res {
        Ok((200, _)) => Check::pass(IMAGE_CHECK, format!("{image} is present")),
        Ok((404, _)) => Check::warn(
            IMAGE_CHECK,
            format!(
                "{image} is not present: the first login pulls it (slow, and it fails where no \
                 registry is reachable); or set defaults.image to an image on this host (check \
                 one with podspawn verify-image IMAGE)"
            ),
            Some(format!("sudo docker pull {image}")),
        ),
        Ok((status, body)) => Check::warn(
            IMAGE_CHECK,
            format!(
                "Docker answered HTTP {status} for {image}: {}",
                String::from_utf8_lossy(body).trim()
            ),
            None,
        ),
        Err(e) => Check::warn(IMAGE_CHECK, format!("skipped: {e}"), None),
    }
}

/// A parsed `runc --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `-rcN` / `-rc.N` pre-release.
    pub rc: Option<u32>,
    /// The version as printed.
    pub text: String,
    /// A distribution build (they backport fixes without changing the upstream version).
    pub distro: bool,
}

impl RuncVersion {
    fn key(&self) -> (u32, u32, u32, u32) {
        (
            self.major,
            self.minor,
            self.patch,
            self.rc.unwrap_or(u32::MAX),
        )
    }
}

fn ver(major: u32, minor: u32, patch: u32, rc: Option<u32>) -> (u32, u32, u32, u32) {
    (major, minor, patch, rc.unwrap_or(u32::MAX))
}

/// Parses `runc --version` output ("runc version 1.1.12", "commit: v1.1.12-0-g51d5e94", …).
pub fn parse_runc_version(out: &str) -> Option<RuncVersion> {
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("runc version "))?;
    let text = line.trim().to_string();
    let mut nums = Vec::new();
    let mut rest = text.as_str();
    for i in 0..3 {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        nums.push(rest[..end].parse::<u32>().ok()?);
        rest = &rest[end..];
        if i < 2 {
            rest = rest.strip_prefix('.')?;
        }
    }
    let mut rc = None;
    if let Some(r) = rest.strip_prefix("-rc") {
        let r = r.strip_prefix('.').unwrap_or(r);
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        rc = r[..end].parse().ok();
        rest = &r[end..];
    }
    let commit = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("commit:"))
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let distro = !rest.is_empty()
        || ["deb", "ubuntu", ".el", ".fc", "+", "suse", "alpine"]
            .iter()
            .any(|m| commit.contains(m));
    Some(RuncVersion {
        major: nums[0],
        minor: nums[1],
        patch: nums[2],
        rc,
        text,
        distro,
    })
}

/// Container escapes fixed upstream after this version: (CVE ids, first fixed versions).
pub fn runc_vulnerabilities(v: &RuncVersion) -> Vec<(&'static str, &'static str)> {
    let k = v.key();
    let mut out = Vec::new();
    if k < ver(1, 0, 0, Some(6)) {
        out.push(("CVE-2019-5736", "1.0.0-rc6"));
    }
    if k < ver(1, 1, 12, None) {
        out.push(("CVE-2024-21626", "1.1.12"));
    }
    let in_13 = k >= ver(1, 3, 0, Some(0)) && k < ver(1, 3, 3, None);
    let in_14rc = k >= ver(1, 4, 0, Some(0)) && k < ver(1, 4, 0, Some(3));
    if k < ver(1, 2, 8, None) || in_13 || in_14rc {
        out.push((
            "CVE-2025-31133, CVE-2025-52565, CVE-2025-52881",
            "1.2.8, 1.3.3 or 1.4.0-rc.3",
        ));
    }
    out
}

/// runc against known container escapes.
pub fn check_runc(out: &Result<String, String>) -> Check {
    let text = match out {
        Ok(t) => t,
        Err(e) => {
            return Check::warn(
                RUNC_CHECK,
                format!("cannot run `runc --version` ({e}); Docker may use another runtime"),
                None,
            )
        }
    };
    let Some(v) = parse_runc_version(text) else {
        return Check::warn(
            RUNC_CHECK,
            format!(
                "cannot parse `runc --version`: {}",
                text.lines().next().unwrap_or("")
            ),
            None,
        );
    };
    let vulns = runc_vulnerabilities(&v);
    if vulns.is_empty() {
        return Check::pass(RUNC_CHECK, format!("runc {}", v.text));
    }
    let list: Vec<String> = vulns
        .iter()
        .map(|(c, f)| format!("{c} (fixed in {f})"))
        .collect();
    let upgrade = "upgrade runc to 1.2.8, 1.3.3 or later (package runc, or containerd.io from \
                   Docker's repository): sudo apt-get install --only-upgrade runc, or sudo dnf \
                   upgrade runc";
    if v.distro {
        Check::warn(
            RUNC_CHECK,
            format!(
                "runc {} is a distribution build older than the upstream fixes for {}: \
                 distributions backport fixes without changing the version, so check your \
                 distribution's security tracker",
                v.text,
                list.join("; ")
            ),
            Some(upgrade.into()),
        )
    } else {
        Check::fail(
            RUNC_CHECK,
            format!(
                "runc {} has known container escapes: {}",
                v.text,
                list.join("; ")
            ),
            upgrade,
        )
    }
}

/// A container labelled managed-by=podspawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// `GET /containers/json` output.
pub fn parse_containers(body: &[u8]) -> Result<Vec<ContainerFacts>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad Docker answer: {e}"))?;
    let arr = v.as_array().ok_or("bad Docker answer: not a list")?;
    Ok(arr
        .iter()
        .map(|c| ContainerFacts {
            name: c["Names"][0]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string(),
            created: c["Created"].as_i64().unwrap_or(0),
        })
        .collect())
}

/// Containers labelled managed-by=podspawn that the broker's state does not know.
pub fn check_orphans(
    containers: &Result<Vec<ContainerFacts>, String>,
    sessions: &Result<Vec<String>, String>,
    now: i64,
) -> Check {
    let containers = match containers {
        Ok(c) => c,
        Err(e) => return Check::warn(ORPHAN_CHECK, format!("skipped: {e}"), None),
    };
    let sessions = match sessions {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                ORPHAN_CHECK,
                format!("skipped: the broker's sessions are unavailable ({e})"),
                None,
            )
        }
    };
    let orphans: Vec<&str> = containers
        .iter()
        .filter(|c| !sessions.contains(&c.name) && now - c.created >= ORPHAN_MIN_AGE)
        .map(|c| c.name.as_str())
        .collect();
    if orphans.is_empty() {
        Check::pass(
            ORPHAN_CHECK,
            format!(
                "{} podspawn container(s), all known to the broker",
                containers.len()
            ),
        )
    } else {
        Check::warn(
            ORPHAN_CHECK,
            format!(
                "{} container(s) labelled managed-by=podspawn are not in the state database: {}",
                orphans.len(),
                orphans.join(", ")
            ),
            Some("sudo podspawn cleanup".into()),
        )
    }
}

/// Free space under `path`.
pub fn check_disk(path: &Path, avail: &Result<u64, String>) -> Check {
    let name = format!("disk space ({})", path.display());
    let fix = if path.starts_with("/var/lib/docker") {
        "sudo docker system prune -f   # removes stopped containers, dangling images, build cache"
            .to_string()
    } else {
        format!("free space on the file system of {}", path.display())
    };
    match avail {
        Err(e) => Check::warn(&name, format!("cannot check: {e}"), None),
        Ok(n) => {
            let gib = *n as f64 / GIB as f64;
            if *n < DISK_FAIL {
                Check::fail(
                    &name,
                    format!("{gib:.1} GiB free: container creation fails on a full disk"),
                    fix,
                )
            } else if *n < DISK_WARN {
                Check::warn(&name, format!("only {gib:.1} GiB free"), Some(fix))
            } else {
                Check::pass(&name, format!("{gib:.1} GiB free"))
            }
        }
    }
}

/// Bytes available to unprivileged users on the file system of `path` (or its nearest
/// existing ancestor).
pub fn available_bytes(path: &Path) -> Result<u64, String> {
    let mut p = path;
    while !p.exists() {
        p = p
            .parent()
            .ok_or_else(|| format!("{} does not exist", path.display()))?;
    }
    let s = nix::sys::statvfs::statvfs(p).map_err(|e| format!("statvfs {}: {e}", p.display()))?;
    #[allow(clippy::unnecessary_cast)]
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

// ---------------------------------------------------------------------------------------------
// Files and directories.

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

/// What doctor knows about a registered user's host account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub name: String,
    /// `None`: no such account.
    pub account: Option<accounts::AccountFacts>,
}

/// Every registered user (a key file) has a host account in the state `server-setup --users`
/// leaves it in: judged by [`accounts::plan_existing`], the rules add-user and server-setup use.
pub fn check_users(users: &[UserFacts], uid_min: u32) -> Check {
    let mut fails: Vec<String> = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    let mut warns: Vec<String> = Vec::new();
    let mut reconcile = false;
    for u in users {
        let n = &u.name;
        let Some(a) = &u.account else {
            fails.push(format!("{n} has no host account"));
            reconcile = true;
            continue;
        };
        let plan = accounts::plan_existing(a, uid_min);
        if !plan.refusals.is_empty() {
            for r in &plan.refusals {
                fails.push(r.describe(n));
                fixes.push(refusal_fix(n, r));
            }
            continue;
        }
        if !plan.conversions.is_empty() {
            let what: Vec<String> = plan.conversions.iter().map(|c| c.describe(n)).collect();
            fails.push(format!(
                "{n} is used for something else, so podspawn left it unchanged; converting it \
                 would {}",
                what.join(", ")
            ));
            fixes.push(format!("sudo podspawn add-user {n} --convert"));
        } else if !plan.repairs.is_empty() {
            let what: Vec<String> = plan
                .repairs
                .iter()
                .map(|r| r.describe(a, accounts::USERS_GROUP))
                .collect();
            fails.push(format!("{n} needs: {}", what.join(", ")));
            reconcile = true;
        }
        if plan.no_shadow_entry {
            warns.push(format!(
                "{n} has no readable /etc/shadow entry (a network account? run doctor with sudo): \
                 make sure it is not locked"
            ));
        }
    }
    if reconcile {
        fixes.insert(0, "sudo podspawn server-setup --users".to_string());
    }
    if !fails.is_empty() {
        let mut detail = fails.join("; ");
        if !warns.is_empty() {
            detail.push_str(&format!("; also: {}", warns.join("; ")));
        }
        return Check::fail(USERS_CHECK, detail, fixes.join(" && "));
    }
    if !warns.is_empty() {
        return Check::warn(USERS_CHECK, warns.join("; "), None);
    }
    Check::pass(
        USERS_CHECK,
        format!(
            "{} registered user(s) with usable host accounts",
            users.len()
        ),
    )
}

/// The command that gets rid of a refused account's problem.
fn refusal_fix(name: &str, r: &accounts::Refusal) -> String {
    match r {
        accounts::Refusal::NoUsableHome { .. } => {
            format!("sudo usermod -d /home/{name} -m {name}")
        }
        accounts::Refusal::PrivilegedPrimaryGroup { .. } => {
            format!("sudo groupadd {name} && sudo usermod -g {name} {name}")
        }
        accounts::Refusal::Root | accounts::Refusal::SystemAccount { .. } => format!(
            "sudo podspawn remove-user {name}   # and register the keys under a regular account"
        ),
    }
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

/// Owner and mode of the broker socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFacts {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub is_socket: bool,
}

pub fn socket_facts(path: &Path) -> Result<SocketFacts, String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(SocketFacts {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        is_socket: m.file_type().is_socket(),
    })
}

/// The broker socket: root:podspawn-users 0660, and it answers a `list` request.
pub fn check_broker(
    socket: &Path,
    facts: &Result<SocketFacts, String>,
    users_gid: Option<u32>,
    reply: &Result<usize, String>,
) -> Check {
    let s = socket.display();
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            return Check::fail(
                BROKER_CHECK,
                format!("{e}: the broker's socket is not there, so logins fail"),
                "sudo systemctl enable --now podspawn.socket",
            )
        }
    };
    if !facts.is_socket {
        return Check::fail(
            BROKER_CHECK,
            format!("{s} is not a socket"),
            format!("sudo rm {s} && sudo systemctl restart podspawn.socket"),
        );
    }
    if facts.uid != 0 || Some(facts.gid) != users_gid || facts.mode != 0o660 {
        return Check::fail(
            BROKER_CHECK,
            format!(
                "{s} is {} {}, expected root:{} 0660 (members connect, nobody else)",
                crate::host::accounts::owner_text(facts.uid, facts.gid),
                mode_of(facts.mode),
                accounts::USERS_GROUP
            ),
            "sudo systemctl restart podspawn.socket",
        );
    }
    match reply {
        Ok(n) => Check::pass(BROKER_CHECK, format!("{s} answers ({n} session(s))")),
        Err(e) => Check::fail(
            BROKER_CHECK,
            format!("{s} does not answer: {e}"),
            "sudo systemctl restart podspawn.socket podspawn.service   # then: journalctl -u \
             podspawn.service",
        ),
    }
}

/// The cleanup daemon or timer is active (systemd), or a `podspawn cleanup --daemon` runs.
pub fn check_cleanup(
    systemd: bool,
    service: Option<&str>,
    timer: Option<&str>,
    daemon_pids: &[u32],
) -> Check {
    if systemd {
        if service == Some("active") {
            return Check::pass(CLEANUP_CHECK, "podspawn-cleanup.service is active");
        }
        if timer == Some("active") {
            return Check::pass(CLEANUP_CHECK, "podspawn-cleanup.timer is active");
        }
        return Check::fail(
            CLEANUP_CHECK,
            format!(
                "neither podspawn-cleanup.service ({}) nor podspawn-cleanup.timer ({}) is \
                 active: grace periods, ttl and max lifetime are not enforced",
                service.unwrap_or("unknown"),
                timer.unwrap_or("unknown")
            ),
            "sudo systemctl enable --now podspawn-cleanup.service",
        );
    }
    if let Some(pid) = daemon_pids.first() {
        return Check::pass(
            CLEANUP_CHECK,
            format!("`podspawn cleanup --daemon` runs (pid {pid})"),
        );
    }
    Check::fail(
        CLEANUP_CHECK,
        "no `podspawn cleanup --daemon` process (systemd is not running): grace periods, ttl and \
         max lifetime are not enforced",
        "run `podspawn cleanup --daemon --interval 60s` under your service manager (or \
         `podspawn cleanup` from cron every minute)",
    )
}

/// Is this argv a `podspawn cleanup --daemon`?
pub fn is_cleanup_daemon(argv: &[String]) -> bool {
    let Some((exe, rest)) = argv.split_first() else {
        return false;
    };
    let is_podspawn = Path::new(exe)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("podspawn"));
    is_podspawn && rest.iter().any(|a| a == "cleanup") && rest.iter().any(|a| a == "--daemon")
}

// ---------------------------------------------------------------------------------------------
// Output.

pub fn render_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        match c.status {
            Status::Pass => s.push_str(&format!("  [pass] {}\n", c.name)),
            Status::Warn => {
                s.push_str(&format!("  [warn] {}: {}", c.name, c.detail));
                if let Some(f) = &c.fix {
                    s.push_str(&format!(" (fix: {f})"));
                }
                s.push('\n');
            }
            Status::Fail => {
                s.push_str(&format!("  [FAIL] {}: {}\n", c.name, c.detail));
                if let Some(f) = &c.fix {
                    s.push_str(&format!("         fix: {f}\n"));
                }
            }
        }
    }
    let n = |st: Status| checks.iter().filter(|c| c.status == st).count();
    s.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        n(Status::Pass),
        n(Status::Warn),
        n(Status::Fail)
    ));
    s
}

pub fn render_json(checks: &[Check]) -> String {
    serde_json::to_string_pretty(checks).unwrap_or_else(|_| "[]".into())
}

pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

// ---------------------------------------------------------------------------------------------
// Gathering the real inputs.

/// `podspawn doctor`.
pub fn doctor(cfg: &Config, args: &DoctorArgs) -> ExitCode {
    let checks = gather(cfg, args);
    let mut out = std::io::stdout();
    let text = if args.json {
        format!("{}\n", render_json(&checks))
    } else {
        render_text(&checks)
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if any_failed(&checks) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mtime(p: &Path) -> Option<i64> {
    std::fs::metadata(p).ok().map(|m| m.mtime())
}

/// (pid, argv) of every process.
fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The sshd listener serving `config`: the pid file's process, else an sshd whose parent is not
/// sshd and whose `-f` (or the default) is `config`. sshd re-executes itself on SIGHUP (same
/// pid and start time) and then rewrites its pid file, so the pid file's mtime tells when it
/// last read its configuration (checked with OpenSSH 9.2).
pub fn find_listener(config: &Path, pidfile: Option<&str>) -> Option<Listener> {
    let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let ticks = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    };
    let started = |pid: u32| -> Option<i64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(btime + (parse_stat_starttime(&stat)? / ticks) as i64)
    };
    if let Some(pf) = pidfile {
        if let Some(pid) = std::fs::read_to_string(pf)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if comm(pid).starts_with("sshd") {
                let loaded = started(pid)?.max(mtime(Path::new(pf)).unwrap_or(0));
                return Some(Listener {
                    pid,
                    loaded_at: loaded,
                });
            }
        }
    }
    for (pid, argv) in processes() {
        if comm(pid) != "sshd" {
            continue;
        }
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat_ppid(&s))
            .unwrap_or(1);
        if comm(ppid).starts_with("sshd") {
            continue;
        }
        // setproctitle may have joined the arguments into one string.
        let words: Vec<String> = argv
            .iter()
            .flat_map(|a| a.split_whitespace().map(str::to_string))
            .collect();
        let f = words
            .iter()
            .position(|w| w == "-f")
            .and_then(|i| words.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(sshd_config::SSHD_CONFIG));
        if f == config {
            return Some(Listener {
                pid,
                loaded_at: started(pid)?,
            });
        }
    }
    None
}

fn broker_sessions(socket: &Path) -> Result<Vec<String>, String> {
    use crate::core::protocol::{Client, Request, Response};
    let mut c = Client::connect(socket).map_err(|e| format!("cannot connect: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    match c
        .call(&Request::List { user: None })
        .map_err(|e| format!("no answer to a list request: {e}"))?
    {
        Response::Sessions { sessions } => Ok(sessions.into_iter().map(|s| s.container).collect()),
        Response::Error { message, .. } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Runs every check against the real system.
pub fn gather(cfg: &Config, args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    if !root {
        checks.push(Check::warn(
            "privileges",
            "not running as root: sshd, key and account checks cannot see everything",
            Some("sudo podspawn doctor".into()),
        ));
    }
    let podspawn_gid = accounts::group_gid(accounts::SYSTEM_USER);
    let users_gid = accounts::group_gid(accounts::USERS_GROUP);

    // sshd.
    let config = &args.sshd_config;
    let mut akc_binary: Option<String> = None;
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    let mut pidfile = None;
    match sshd::find_sshd() {
        None => checks.push(Check::fail(
            SSHD_CHECK,
            "sshd not found: the OpenSSH server is not installed",
            "sudo apt-get install openssh-server   # or: sudo dnf install openssh-server",
        )),
        Some(sshd) => {
            let flat = sshd_config::flatten(config, &sshd::RealFs).unwrap_or_default();
            files = flat
                .files
                .iter()
                .filter_map(|p| Some((p.clone(), mtime(p)?)))
                .collect();
            let managed = |d: &sshd_config::Directive| {
                d.context
                    .as_deref()
                    .is_some_and(sshd_config::is_podspawn_match)
            };
            let report = sshd_config::analyze(&flat.directives, &managed);
            let member = args.probe_user.clone().or_else(sshd::podspawn_member);
            let dump = sshd::sshd_dump(&sshd, config, member.as_deref()).map_err(String::from);
            pidfile = sshd::sshd_dump(&sshd, config, None).ok().and_then(|t| {
                sshd_config::parse_sshd_t(&t)
                    .get("pidfile")
                    .and_then(|v| v.first().cloned())
            });
            let check = match (&dump, root) {
                (Err(e), false) => Check::warn(
                    SSHD_CHECK,
                    format!("`sshd -T` needs root: {e}"),
                    Some("sudo podspawn doctor".into()),
                ),
                _ => check_sshd(
                    member.as_deref(),
                    dump.as_deref().map_err(|e| e.as_str()),
                    &report,
                ),
            };
            let disabled = config
                .parent()
                .map(|d| d.join("sshd_config.d/10-podspawn.conf.disabled"))
                .filter(|p| p.exists());
            checks.push(with_disabled_dropin(check, disabled.as_deref()));
            akc_binary = dump
                .ok()
                .filter(|_| member.is_some())
                .and_then(|d| {
                    sshd_config::parse_sshd_t(&d)
                        .get("authorizedkeyscommand")
                        .and_then(|v| v.first().cloned())
                })
                .and_then(|c| sshd_config::podspawn_command(&c))
                .or_else(|| {
                    report
                        .ours
                        .as_ref()
                        .and_then(|d| sshd_config::podspawn_command(&d.args))
                });
        }
    }
    let chain = match &akc_binary {
        Some(b) => fs_policy::path_chain(Path::new(b)),
        None => Err(String::new()),
    };
    checks.push(check_binary(akc_binary.as_deref(), chain));
    let listener = find_listener(config, pidfile.as_deref());
    let service = sshd::detect_ssh_service();
    let reload = sshd::reload_hint(service.as_deref(), pidfile.as_deref());
    checks.push(check_sshd_reloaded(listener.as_ref(), &files, &reload));

    // Files, accounts, state.
    checks.push(check_config_file(&cfg.path, podspawn_gid));
    checks.push(check_key_dir(&cfg.auth.key_dir, podspawn_gid));
    checks.push(check_key_files(&cfg.auth.key_dir, podspawn_gid));
    match crate::commands::user::registered_users(&cfg.auth.key_dir) {
        Ok(names) => {
            let facts: Vec<UserFacts> = names
                .into_iter()
                .map(|n| UserFacts {
                    // Without root /etc/shadow is unreadable: judge what can be seen.
                    account: accounts::visible_facts(
                        &n,
                        accounts::shadow_password(&n).ok().flatten(),
                    ),
                    name: n,
                })
                .collect();
            checks.push(check_users(&facts, accounts::uid_min()));
        }
        Err(e) => checks.push(Check::warn(USERS_CHECK, format!("skipped: {e}"), None)),
    }
    checks.push(check_state_db(&cfg.state.db_path));
    checks.push(check_lock_dir(&cfg.state.lock_dir));

    // Broker and cleanup.
    let sessions = broker_sessions(&cfg.broker.socket);
    checks.push(check_broker(
        &cfg.broker.socket,
        &socket_facts(&cfg.broker.socket),
        users_gid,
        &sessions.as_ref().map(|s| s.len()).map_err(|e| e.clone()),
    ));
    let systemd = sshd::systemd_running();
    let (svc, timer) = if systemd {
        (
            sshd::unit_state("podspawn-cleanup.service"),
            sshd::unit_state("podspawn-cleanup.timer"),
        )
    } else {
        (None, None)
    };
    let daemons: Vec<u32> = processes()
        .into_iter()
        .filter(|(_, argv)| is_cleanup_daemon(argv))
        .map(|(pid, _)| pid)
        .collect();
    checks.push(check_cleanup(
        systemd,
        svc.as_deref(),
        timer.as_deref(),
        &daemons,
    ));

    // Docker.
    let sock = engine::http::engine_socket();
    let ping = engine::http::get(&sock, "/_ping");
    checks.push(check_docker(&sock, &ping));
    let docker_ok = matches!(ping, Ok((200, _)));
    let image = &cfg.defaults.image;
    let img = if docker_ok {
        engine::http::get(&sock, &format!("/images/{}/json", url_path(image)))
    } else {
        Err("Docker is unreachable".into())
    };
    checks.push(check_default_image(image, &img));
    let runc = Command::new("runc")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    checks.push(check_runc(&runc));
    let containers = if docker_ok {
        engine::http::get(
            &sock,
            "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22managed-by%3Dpodspawn%22%5D%7D",
        )
        .and_then(|(status, body)| {
            if status == 200 {
                parse_containers(&body)
            } else {
                Err(format!("Docker answered HTTP {status}"))
            }
        })
    } else {
        Err("Docker is unreachable".into())
    };
    checks.push(check_orphans(&containers, &sessions, now()));

    // Disk space.
    let docker_root = if docker_ok {
        engine::http::get(&sock, "/info").ok().and_then(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .ok()?
                .get("DockerRootDir")?
                .as_str()
                .map(PathBuf::from)
        })
    } else {
        None
    };
    let docker_root = docker_root.unwrap_or_else(|| PathBuf::from("/var/lib/docker"));
    let state_dir = cfg
        .state
        .db_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/var/lib/podspawn"));
    for p in [docker_root, state_dir] {
        checks.push(check_disk(&p, &available_bytes(&p)));
    }
    checks
}

/// Percent-encodes what may not appear raw in a URL path (image names keep `/` and `:`).
fn url_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/:._-@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod disabled_dropin_tests {
    use super::*;

    #[test]
    fn a_disabled_dropin_changes_the_fix_of_a_failing_sshd_check() {
        let p = Path::new("/etc/ssh/sshd_config.d/10-podspawn.conf.disabled");
        let fail = Check::fail(
            SSHD_CHECK,
            "no podspawn block",
            "sudo podspawn server-setup",
        );
        let c = with_disabled_dropin(fail.clone(), Some(p));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some("sudo mv /etc/ssh/sshd_config.d/10-podspawn.conf.disabled /etc/ssh/sshd_config.d/10-podspawn.conf && sudo sshd -t && sudo systemctl reload ssh")
        );
        assert!(c.detail.contains("disabled its drop-in"));
        assert_eq!(with_disabled_dropin(fail.clone(), None), fail);
        let pass = Check::pass(SSHD_CHECK, "ok");
        assert_eq!(with_disabled_dropin(pass.clone(), Some(p)), pass);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_parsing() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOKgarbage";
        assert_eq!(
            engine::http::parse_response(r).unwrap(),
            (200, b"OK".to_vec())
        );
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            engine::http::parse_response(r).unwrap(),
            (200, b"abcde".to_vec())
        );
        let r = b"HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"no\"}";
        assert_eq!(engine::http::parse_response(r).unwrap().0, 404);
        assert!(engine::http::parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(engine::http::parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(
            engine::http::parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nab")
                .is_err()
        );
        assert_eq!(url_path("ubuntu:24.04"), "ubuntu:24.04");
        assert_eq!(url_path("a b?"), "a%20b%3F");
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (sshd: /usr/sbin/sshd -D [listener]) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5678 0 0";
        assert_eq!(parse_stat_starttime(stat), Some(5678));
        assert_eq!(parse_stat_ppid(stat), Some(1));
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
    }
}
