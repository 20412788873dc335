//! The sshd checks: the effective configuration for podspawn users, the AuthorizedKeysCommand
//! binary, and whether the running sshd has read the files on disk.
use super::{
    Check, Status, ACCEPT_ENV_CHECK, BINARY_CHECK, MAXSTARTUPS_CHECK, RELOAD_CHECK, SSHD_CHECK,
};
use crate::core::sshd_config::{self, ShadowReport};
use crate::host::fs_policy::{self, ChainProblem, PathEntry};
use std::path::{Path, PathBuf};

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
    check_sshd_with(member, dump, report, false)
}

/// [`check_sshd`]; `forwarding`: TCP forwarding may be on (pam_podspawn.so is in place). Forwarding
/// that is merely off is the forwarding check's business, not a failure here.
pub fn check_sshd_with(
    member: Option<&str>,
    dump: Result<&str, &str>,
    report: &ShadowReport,
    forwarding: bool,
) -> Check {
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
    let mm = sshd_config::effective_mismatches_with(&map, None, None, forwarding);
    let (required, optional): (Vec<_>, Vec<_>) = mm
        .into_iter()
        .filter(|m| m.required || m.keyword != "allowtcpforwarding")
        .partition(|m| m.required);
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

/// Variables of `session.accept_env` that sshd does not accept for podspawn users (their
/// SendEnv/SetEnv values would silently not arrive). Nothing to say when all are accepted.
pub fn check_accept_env(member_dump: &str, accept: &[String]) -> Option<Check> {
    let missing = sshd_config::accept_env_missing(&sshd_config::parse_sshd_t(member_dump), accept);
    if missing.is_empty() {
        return None;
    }
    Some(Check::warn(
        ACCEPT_ENV_CHECK,
        format!(
            "session.accept_env lists {} but sshd does not accept {} for podspawn users, so \
             clients' values never reach the container",
            accept.join(" "),
            missing.join(" ")
        ),
        Some("sudo podspawn server-setup   # writes AcceptEnv from session.accept_env".into()),
    ))
}

/// sshd drops connections that are still authenticating beyond `MaxStartups` (start:rate:full,
/// at random from `start`): with more registered users than `start`, a burst of logins (everyone
/// at 9:00, a CI fan-out) loses some. `value` is the effective `maxstartups` of `sshd -T`.
pub fn check_max_startups(value: Option<&str>, users: usize) -> Check {
    let Some(v) = value else {
        return Check::warn(
            MAXSTARTUPS_CHECK,
            "could not read sshd's effective MaxStartups (`sshd -T` needs root)",
            Some("sudo podspawn doctor".into()),
        );
    };
    let start = v
        .split(':')
        .next()
        .and_then(|s| s.trim().parse::<usize>().ok());
    let Some(start) = start else {
        return Check::warn(
            MAXSTARTUPS_CHECK,
            format!("unexpected MaxStartups value {v:?}"),
            None,
        );
    };
    if users <= start {
        return Check::pass(
            MAXSTARTUPS_CHECK,
            format!("{v}: room for {start} logins at once ({users} registered users)"),
        );
    }
    let want = users.next_power_of_two().max(start * 2);
    Check::warn(
        MAXSTARTUPS_CHECK,
        format!(
            "MaxStartups is {v} and {users} users are registered: when more than {start} of them \
             log in at the same moment, sshd drops some of the connections at random"
        ),
        Some(format!(
            "set `MaxStartups {want}:30:{}` in /etc/ssh/sshd_config, then: sudo systemctl reload ssh",
            want * 2
        )),
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
mod proc_tests {
    use super::*;

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

#[cfg(test)]
mod max_startups_tests {
    use super::*;

    #[test]
    fn max_startups_against_the_registered_users() {
        // sshd's default 10:30:100 with 20 users: 4 of 20 simultaneous logins were dropped.
        let c = check_max_startups(Some("10:30:100"), 20);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("MaxStartups is 10:30:100 and 20 users"),
            "{c:?}"
        );
        assert_eq!(
            c.fix.as_deref(),
            Some("set `MaxStartups 32:30:64` in /etc/ssh/sshd_config, then: sudo systemctl reload ssh")
        );
        assert_eq!(
            check_max_startups(Some("10:30:100"), 10).status,
            Status::Pass
        );
        assert_eq!(check_max_startups(Some("100"), 20).status, Status::Pass);
        assert_eq!(check_max_startups(Some("x:y"), 20).status, Status::Warn);
        assert_eq!(check_max_startups(None, 20).status, Status::Warn);
    }
}
