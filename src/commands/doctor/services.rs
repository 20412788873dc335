//! The broker socket and the cleanup daemon.
use super::{mode_of, Check, BROKER_CHECK, CLEANUP_CHECK};
use crate::host::accounts;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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
