//! Session lifecycle decisions as pure functions: no Docker, no database, no clock reads.
//! The broker (and later the cleanup pass) gathers the facts and acts on what these return.

use crate::config::SessionMode;
use crate::state::{SessionRow, Status};

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

/// Why a session ended (also the audit `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Disconnect,
    GraceExpired,
    Ttl,
    MaxLifetime,
    Orphan,
    Stop,
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

/// `resources.max_per_user`: `others` are the user's other live sessions (project names).
pub fn check_limit(user: &str, others: &[String], max: u32) -> Result<(), String> {
    if max == 0 || (others.len() as u64) < u64::from(max) {
        return Ok(());
    }
    let example = others
        .first()
        .map(|p| {
            if p.is_empty() {
                user.to_string()
            } else {
                format!("{user}@{p}")
            }
        })
        .unwrap_or_else(|| format!("{user}@<project>"));
    let list: Vec<String> = others
        .iter()
        .map(|p| {
            if p.is_empty() {
                "(default)".to_string()
            } else {
                p.clone()
            }
        })
        .collect();
    Err(format!(
        "user {user} has {} active sessions (max {max}: resources.max_per_user): {}; \
         stop one first with: podspawn stop {example}",
        others.len(),
        list.join(", ")
    ))
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

const SFTP_SCRIPT: &str = "for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server \
/usr/lib/ssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server /usr/sbin/sftp-server; \
do [ -x \"$p\" ] && exec \"$p\"; done; \
echo 'podspawn: this image has no sftp-server; install openssh-sftp-server in it (podspawn verify-image tells)' >&2; exit 127";

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
        Route::Sftp => vec!["/bin/sh".into(), "-c".into(), SFTP_SCRIPT.into()],
        Route::Command(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
    }
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
        assert!(err.contains("max 3"), "{err}");
        assert!(err.contains("podspawn stop alice@a"), "{err}");
        assert!(check_limit("alice", &vec!["a".to_string(); 50], 0).is_ok());
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
}
