//! Session lifecycle decisions as pure functions: no Docker, no database, no clock reads.
//! The broker (and later the cleanup pass) gathers the facts and acts on what these return.

use crate::core::config::{SessionMode, HELPER_CONTAINER_PATH};

/// What Docker says about a session's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Stopped,
    Missing,
}

/// What to do when a connection arrives for (user, project).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenDecision {
    /// The container runs and the session is live or in its grace period: attach to it.
    Reattach,
    /// The container exists but was stopped (Docker or host restart): start it, then attach.
    StartAndReattach,
    /// No usable session: create a new container (removing whatever is left of the old one).
    Create { remove_old: bool },
}

/// Decides reattach or create. `now` is unix seconds.
pub fn decide_open(row: Option<&SessionRow>, container: ContainerState, now: i64) -> OpenDecision {
    let Some(row) = row else {
        // No row: a container of that name (if any) is an orphan of a crash; replace it.
        return OpenDecision::Create {
            remove_old: container != ContainerState::Missing,
        };
    };
    if container == ContainerState::Missing {
        return OpenDecision::Create { remove_old: false };
    }
    if is_expired(row, now) {
        return OpenDecision::Create { remove_old: true };
    }
    match container {
        ContainerState::Running => OpenDecision::Reattach,
        ContainerState::Stopped => OpenDecision::StartAndReattach,
        ContainerState::Missing => OpenDecision::Create { remove_old: false },
    }
}

/// A session is over when its grace period ran out or its ttl / max lifetime passed.
pub fn is_expired(row: &SessionRow, now: i64) -> bool {
    if row.status == Status::Grace && row.grace_expiry.is_some_and(|t| t <= now) {
        return true;
    }
    row.expires_at.is_some_and(|t| t <= now)
}

/// Why a session ended (also the audit `reason`, spelled as `as_str` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    Disconnect,
    GraceExpired,
    Ttl,
    MaxLifetime,
    Orphan,
    Stop,
    /// The user is no longer registered (e.g. `remove-user --force` while the broker was down).
    UserRemoved,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Disconnect => "disconnect",
            EndReason::GraceExpired => "grace-expired",
            EndReason::Ttl => "ttl",
            EndReason::MaxLifetime => "max-lifetime",
            EndReason::Orphan => "orphan",
            EndReason::Stop => "stop",
            EndReason::UserRemoved => "user-removed",
        }
    }
}

/// Why an expired row expired (for the audit reason).
pub fn expiry_reason(row: &SessionRow, now: i64) -> Option<EndReason> {
    if row.status == Status::Grace && row.grace_expiry.is_some_and(|t| t <= now) {
        return Some(EndReason::GraceExpired);
    }
    if row.expires_at.is_some_and(|t| t <= now) {
        return Some(if row.mode == SessionMode::Ttl {
            EndReason::Ttl
        } else {
            EndReason::MaxLifetime
        });
    }
    None
}

/// What a cleanup pass does with one session row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupAction {
    Keep,
    /// Remove the container (and network) and the row.
    Destroy(EndReason),
    /// The container was stopped by a Docker or host restart and the mode keeps it: start it again.
    Restart,
    /// The container is gone: forget the row.
    ForgetRow,
}

/// Decides one row of a cleanup pass. `leased` says whether the session has live connections
/// (the broker knows; a separate cleanup process reads it from the row's status).
pub fn decide_cleanup(
    row: &SessionRow,
    container: ContainerState,
    leased: bool,
    registered: bool,
    now: i64,
) -> CleanupAction {
    if container == ContainerState::Missing {
        return CleanupAction::ForgetRow;
    }
    // Nothing outlives its user: not even a session someone still holds.
    if !registered {
        return CleanupAction::Destroy(EndReason::UserRemoved);
    }
    match expiry_reason(row, now) {
        // Someone reconnected since the grace period started.
        Some(EndReason::GraceExpired) if leased => {}
        Some(reason) => return CleanupAction::Destroy(reason),
        None => {}
    }
    if container == ContainerState::Stopped {
        return match row.mode {
            SessionMode::Named | SessionMode::Ttl => CleanupAction::Restart,
            SessionMode::GracePeriod | SessionMode::DestroyOnDisconnect => {
                CleanupAction::Destroy(EndReason::Orphan)
            }
        };
    }
    CleanupAction::Keep
}

/// Seconds before a ttl / max-lifetime removal at which live sessions are told: five minutes, or
/// half the session's whole lifetime when that is shorter.
pub fn warn_before(row: &SessionRow) -> Option<i64> {
    let end = row.expires_at?;
    Some(300.min((end - row.created_at).max(0) / 2))
}

/// The one line shown in a live session before its container is removed.
pub fn removal_notice(row: &SessionRow, now: i64) -> Option<String> {
    let end = row.expires_at?;
    let left = (end - now).max(0);
    let why = if row.mode == SessionMode::Ttl {
        "its ttl"
    } else {
        "session.max_lifetime"
    };
    let when = if left >= 60 {
        format!("{}m{}s", left / 60, left % 60)
    } else {
        format!("{left}s")
    };
    Some(format!(
        "podspawn: this container will be removed in {when} ({why} is reached); save your work"
    ))
}

/// What to do when the last live connection of a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseDecision {
    /// Remove the container now.
    Destroy,
    /// Keep it until this unix time, then remove it unless someone reconnects.
    Grace { until: i64 },
    /// Keep it (named: until `podspawn stop`; ttl: until its deadline).
    Keep,
}

pub fn decide_last_close(mode: SessionMode, grace_secs: u64, now: i64) -> CloseDecision {
    match mode {
        SessionMode::DestroyOnDisconnect => CloseDecision::Destroy,
        SessionMode::GracePeriod if grace_secs == 0 => CloseDecision::Destroy,
        SessionMode::GracePeriod => CloseDecision::Grace {
            until: now.saturating_add(grace_secs as i64),
        },
        SessionMode::Named | SessionMode::Ttl => CloseDecision::Keep,
    }
}

/// The absolute deadline of a new session: ttl and max lifetime cap every mode but named.
pub fn deadline(mode: SessionMode, created: i64, max_lifetime: u64, ttl: u64) -> Option<i64> {
    let max = created.saturating_add(max_lifetime as i64);
    match mode {
        SessionMode::Named => None,
        SessionMode::Ttl => Some(max.min(created.saturating_add(ttl as i64))),
        SessionMode::GracePeriod | SessionMode::DestroyOnDisconnect => Some(max),
    }
}

/// A user is at `resources.max_per_user`: `sessions` are the projects of their live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReached {
    pub user: String,
    pub sessions: Vec<String>,
    pub max: u32,
}

impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LimitReached {
            user,
            sessions,
            max,
        } = self;
        let example = sessions
            .first()
            .map(|p| {
                if p.is_empty() {
                    user.to_string()
                } else {
                    format!("{user}@{p}")
                }
            })
            .unwrap_or_else(|| format!("{user}@<project>"));
        let list: Vec<&str> = sessions
            .iter()
            .map(|p| {
                if p.is_empty() {
                    "(default)"
                } else {
                    p.as_str()
                }
            })
            .collect();
        write!(
            f,
            "user {user} has {} active sessions (max {max}: resources.max_per_user): {}; \
             stop one first with: podspawn stop {example}",
            sessions.len(),
            list.join(", ")
        )
    }
}

impl std::error::Error for LimitReached {}

/// For callers that print the error (`?` where the error type is `String`).
impl From<LimitReached> for String {
    fn from(e: LimitReached) -> Self {
        e.to_string()
    }
}

/// `resources.max_per_user`: `others` are the user's other live sessions (project names).
pub fn check_limit(user: &str, others: &[String], max: u32) -> Result<(), LimitReached> {
    if max == 0 || (others.len() as u64) < u64::from(max) {
        return Ok(());
    }
    Err(LimitReached {
        user: user.to_string(),
        sessions: others.to_vec(),
        max,
    })
}

/// How the session's command is run in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Shell,
    Sftp,
    Command(String),
}

/// Routes SSH_ORIGINAL_COMMAND: none → login shell; sshd's sftp subsystem → sftp-server; else `sh -c`.
pub fn route(original: Option<&str>) -> Route {
    let Some(cmd) = original else {
        return Route::Shell;
    };
    let trimmed = cmd.trim();
    if trimmed.is_empty() {
        return Route::Shell;
    }
    let first = trimmed.split_whitespace().next().unwrap_or("");
    let base = first.rsplit('/').next().unwrap_or(first);
    if trimmed == "internal-sftp" || base == "sftp-server" {
        return Route::Sftp;
    }
    Route::Command(cmd.to_string())
}

/// Where images keep OpenSSH's sftp-server, tried in this order (Debian/Ubuntu, Fedora/RHEL,
/// Arch, Alpine and others).
pub const SFTP_SERVER_PATHS: [&str; 6] = [
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/sftp-server",
    "/usr/sbin/sftp-server",
];

/// The `sh -c` script of the SFTP route: the image's own sftp-server first (it knows the image
/// best), else podspawn-helper mounted at `helper`, else one line on stderr and exit 127.
/// The paths are podspawn's own constants (single quotes suffice).
pub fn sftp_script(servers: &[&str], helper: &str) -> String {
    let list: Vec<String> = servers.iter().map(|p| format!("'{p}'")).collect();
    format!(
        "for p in {}; do [ -x \"$p\" ] && exec \"$p\"; done; \
         [ -x '{helper}' ] && exec '{helper}' sftp-server; \
         echo 'podspawn: this image has no sftp-server and podspawn-helper is not mounted at \
         {helper}: install openssh-sftp-server in the image, or the helper on the host \
         (config helper.path); podspawn verify-image <image> tells what an image lacks' >&2; \
         exit 127",
        list.join(" ")
    )
}

const SHELL_SCRIPT: &str = "if [ -x \"$1\" ]; then exec \"$1\" -l; fi; exec /bin/sh -l";

/// The argv of the exec for a route. The user's command is one argv element for `sh -c` inside the
/// container: it never passes through a host shell.
pub fn exec_argv(route: &Route, shell: &str) -> Vec<String> {
    match route {
        Route::Shell => vec![
            "/bin/sh".into(),
            "-c".into(),
            SHELL_SCRIPT.into(),
            "podspawn-shell".into(),
            shell.into(),
        ],
        Route::Sftp => vec![
            "/bin/sh".into(),
            "-c".into(),
            sftp_script(&SFTP_SERVER_PATHS, HELPER_CONTAINER_PATH),
        ],
        Route::Command(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
    }
}

/// `inner` run under `podspawn-helper run` (at `helper` in the container), which records the
/// signal that kills the command in `<session_dir>/<tag>.status`.
pub fn with_status_file(
    inner: Vec<String>,
    helper: &str,
    session_dir: &str,
    tag: &str,
) -> Vec<String> {
    let mut v = vec![
        helper.to_string(),
        "run".to_string(),
        format!("{session_dir}/{tag}.status"),
        "--".to_string(),
    ];
    v.extend(inner);
    v
}

/// Session status as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// At least one live connection.
    Running,
    /// No connection; removed at `grace_expiry` unless someone reconnects.
    Grace,
    /// No connection; kept (named until stop, ttl until `expires_at`).
    Idle,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Grace => "grace_period",
            Status::Idle => "idle",
        }
    }
    pub fn parse(s: &str) -> Status {
        match s {
            "grace_period" => Status::Grace,
            "idle" => Status::Idle,
            _ => Status::Running,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub user: String,
    pub project: String,
    pub container_id: String,
    pub container_name: String,
    pub image: String,
    pub mode: SessionMode,
    pub status: Status,
    pub created_at: i64,
    pub last_activity: i64,
    pub grace_expiry: Option<i64>,
    /// ttl / max-lifetime deadline; None for named sessions.
    pub expires_at: Option<i64>,
    pub uid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        status: Status,
        grace: Option<i64>,
        expires: Option<i64>,
        mode: SessionMode,
    ) -> SessionRow {
        SessionRow {
            user: "alice".into(),
            project: String::new(),
            container_id: "id".into(),
            container_name: "podspawn-alice".into(),
            image: "img".into(),
            mode,
            status,
            created_at: 0,
            last_activity: 0,
            grace_expiry: grace,
            expires_at: expires,
            uid: 1000,
        }
    }

    #[test]
    fn open_decisions() {
        use ContainerState::*;
        assert_eq!(
            decide_open(None, Missing, 10),
            OpenDecision::Create { remove_old: false }
        );
        assert_eq!(
            decide_open(None, Running, 10),
            OpenDecision::Create { remove_old: true }
        );
        let live = row(Status::Running, None, Some(100), SessionMode::GracePeriod);
        assert_eq!(
            decide_open(Some(&live), Running, 10),
            OpenDecision::Reattach
        );
        assert_eq!(
            decide_open(Some(&live), Stopped, 10),
            OpenDecision::StartAndReattach
        );
        assert_eq!(
            decide_open(Some(&live), Missing, 10),
            OpenDecision::Create { remove_old: false }
        );
        // max lifetime passed: even a live-looking row is replaced.
        assert_eq!(
            decide_open(Some(&live), Running, 100),
            OpenDecision::Create { remove_old: true }
        );
        let grace = row(
            Status::Grace,
            Some(50),
            Some(1000),
            SessionMode::GracePeriod,
        );
        assert_eq!(
            decide_open(Some(&grace), Running, 49),
            OpenDecision::Reattach
        );
        assert_eq!(
            decide_open(Some(&grace), Running, 50),
            OpenDecision::Create { remove_old: true }
        );
        let named = row(Status::Idle, None, None, SessionMode::Named);
        assert_eq!(
            decide_open(Some(&named), Running, i64::MAX),
            OpenDecision::Reattach
        );
    }

    #[test]
    fn expiry_reasons() {
        let g = row(Status::Grace, Some(5), Some(100), SessionMode::GracePeriod);
        assert_eq!(expiry_reason(&g, 4), None);
        assert_eq!(expiry_reason(&g, 5), Some(EndReason::GraceExpired));
        let t = row(Status::Idle, None, Some(7), SessionMode::Ttl);
        assert_eq!(expiry_reason(&t, 7), Some(EndReason::Ttl));
        let m = row(Status::Running, None, Some(7), SessionMode::GracePeriod);
        assert_eq!(expiry_reason(&m, 8), Some(EndReason::MaxLifetime));
    }

    #[test]
    fn close_decisions() {
        assert_eq!(
            decide_last_close(SessionMode::GracePeriod, 60, 100),
            CloseDecision::Grace { until: 160 }
        );
        assert_eq!(
            decide_last_close(SessionMode::GracePeriod, 0, 100),
            CloseDecision::Destroy
        );
        assert_eq!(
            decide_last_close(SessionMode::DestroyOnDisconnect, 60, 100),
            CloseDecision::Destroy
        );
        assert_eq!(
            decide_last_close(SessionMode::Named, 60, 100),
            CloseDecision::Keep
        );
        assert_eq!(
            decide_last_close(SessionMode::Ttl, 60, 100),
            CloseDecision::Keep
        );
    }

    #[test]
    fn deadlines() {
        assert_eq!(deadline(SessionMode::Named, 10, 100, 5), None);
        assert_eq!(deadline(SessionMode::Ttl, 10, 100, 5), Some(15));
        assert_eq!(deadline(SessionMode::Ttl, 10, 3, 5), Some(13));
        assert_eq!(deadline(SessionMode::GracePeriod, 10, 100, 5), Some(110));
    }

    #[test]
    fn limits() {
        assert!(check_limit("alice", &[], 3).is_ok());
        assert!(check_limit("alice", &["a".into(), "b".into()], 3).is_ok());
        let err = check_limit("alice", &["a".into(), "b".into(), "".into()], 3).unwrap_err();
        assert_eq!(
            err,
            LimitReached {
                user: "alice".into(),
                sessions: vec!["a".into(), "b".into(), "".into()],
                max: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "user alice has 3 active sessions (max 3: resources.max_per_user): a, b, (default); \
             stop one first with: podspawn stop alice@a"
        );
        let err = check_limit("bob", &["".into()], 1).unwrap_err();
        assert!(String::from(err).ends_with(
            "(max 1: resources.max_per_user): (default); stop one first with: podspawn stop bob"
        ),);
        assert!(check_limit("alice", &vec!["a".to_string(); 50], 0).is_ok());
    }

    #[test]
    fn cleanup_decisions() {
        use ContainerState::*;
        let live = row(Status::Running, None, Some(100), SessionMode::GracePeriod);
        assert_eq!(
            decide_cleanup(&live, Missing, true, true, 10),
            CleanupAction::ForgetRow
        );
        assert_eq!(
            decide_cleanup(&live, Running, true, true, 10),
            CleanupAction::Keep
        );
        // max lifetime caps even a session in use
        assert_eq!(
            decide_cleanup(&live, Running, true, true, 100),
            CleanupAction::Destroy(EndReason::MaxLifetime)
        );
        let grace = row(
            Status::Grace,
            Some(50),
            Some(1000),
            SessionMode::GracePeriod,
        );
        assert_eq!(
            decide_cleanup(&grace, Running, false, true, 49),
            CleanupAction::Keep
        );
        assert_eq!(
            decide_cleanup(&grace, Running, false, true, 50),
            CleanupAction::Destroy(EndReason::GraceExpired)
        );
        // a login reattached in between: keep
        assert_eq!(
            decide_cleanup(&grace, Running, true, true, 50),
            CleanupAction::Keep
        );
        // stopped by a Docker restart
        assert_eq!(
            decide_cleanup(&grace, Stopped, false, true, 10),
            CleanupAction::Destroy(EndReason::Orphan)
        );
        // A user no longer registered loses every session, even a live or named one.
        assert_eq!(
            decide_cleanup(&live, Running, true, false, 10),
            CleanupAction::Destroy(EndReason::UserRemoved)
        );
        let named = row(Status::Idle, None, None, SessionMode::Named);
        assert_eq!(
            decide_cleanup(&named, Running, false, false, 10),
            CleanupAction::Destroy(EndReason::UserRemoved)
        );
        assert_eq!(
            decide_cleanup(&named, Missing, false, false, 10),
            CleanupAction::ForgetRow
        );
        assert_eq!(
            decide_cleanup(&named, Stopped, false, true, i64::MAX),
            CleanupAction::Restart
        );
        assert_eq!(
            decide_cleanup(&named, Running, false, true, i64::MAX),
            CleanupAction::Keep
        );
        let ttl = row(Status::Idle, None, Some(70), SessionMode::Ttl);
        assert_eq!(
            decide_cleanup(&ttl, Stopped, false, true, 10),
            CleanupAction::Restart
        );
        assert_eq!(
            decide_cleanup(&ttl, Stopped, false, true, 70),
            CleanupAction::Destroy(EndReason::Ttl)
        );
    }

    #[test]
    fn removal_notices() {
        let mut r = row(Status::Running, None, Some(10_000), SessionMode::Ttl);
        r.created_at = 0;
        assert_eq!(warn_before(&r), Some(300));
        let n = removal_notice(&r, 10_000 - 299).unwrap();
        assert!(n.contains("4m59s") && n.contains("ttl"), "{n}");
        r.expires_at = Some(20);
        assert_eq!(warn_before(&r), Some(10));
        assert!(removal_notice(&r, 15).unwrap().contains("5s"));
        let named = row(Status::Running, None, None, SessionMode::Named);
        assert_eq!(warn_before(&named), None);
    }

    #[test]
    fn routing() {
        assert_eq!(route(None), Route::Shell);
        assert_eq!(route(Some("  ")), Route::Shell);
        assert_eq!(route(Some("internal-sftp")), Route::Sftp);
        assert_eq!(route(Some("/usr/lib/openssh/sftp-server")), Route::Sftp);
        assert_eq!(
            route(Some("/usr/libexec/openssh/sftp-server -l INFO")),
            Route::Sftp
        );
        assert_eq!(
            route(Some("echo $(id); exit 42")),
            Route::Command("echo $(id); exit 42".into())
        );
        let argv = exec_argv(&Route::Command("a'b\"c\nd".into()), "/bin/bash");
        assert_eq!(argv, vec!["/bin/sh", "-c", "a'b\"c\nd"]);
        let sh = exec_argv(&Route::Shell, "/bin/zsh");
        assert_eq!(sh.last().map(String::as_str), Some("/bin/zsh"));
    }

    /// Runs the SFTP script with fake server and helper paths under a temporary root; returns
    /// (exit code, stdout, stderr).
    fn run_sftp_script(root: &std::path::Path, present: &[&str]) -> (i32, String, String) {
        use std::os::unix::fs::PermissionsExt;
        for name in present {
            let p = root.join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho {name} \"$@\"\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let s = |n: &str| root.join(n).to_string_lossy().into_owned();
        let servers = [s("server-a"), s("server-b")];
        let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(sftp_script(&servers, &s("helper")))
            .output()
            .unwrap();
        for name in present {
            std::fs::remove_file(root.join(name)).unwrap();
        }
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn sftp_prefers_the_image_server_then_the_helper() {
        let dir = crate::test_support::TempDir::new("sftp-script");
        let root = dir.path();
        let (code, out, _) = run_sftp_script(root, &["server-b", "helper"]);
        assert_eq!((code, out.as_str()), (0, "server-b\n"));
        let (code, out, _) = run_sftp_script(root, &["server-a", "server-b", "helper"]);
        assert_eq!((code, out.as_str()), (0, "server-a\n"));
        let (code, out, _) = run_sftp_script(root, &["helper"]);
        assert_eq!((code, out.as_str()), (0, "helper sftp-server\n"));
        let (code, out, err) = run_sftp_script(root, &[]);
        assert_eq!((code, out.as_str()), (127, ""));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("podspawn verify-image"), "{err}");
        // The real route uses the fixed mount point and every usual server path.
        let argv = exec_argv(&Route::Sftp, "/bin/bash");
        assert!(argv[2].contains("exec '/.podspawn/podspawn-helper' sftp-server"));
        for p in SFTP_SERVER_PATHS {
            assert!(argv[2].contains(p), "{p}");
        }
    }
}
