//! open_session and close_session, written against `Pam` (what the module needs from libpam and
//! the kernel) so the whole flow is tested with a fake one; `ffi` implements it over libpam.

use crate::args::{self, Parsed};
use crate::broker::{self, Granted};
use crate::decide::{self, Decision, UserFacts, PAM_IGNORE, PAM_SESSION_ERR, PAM_SUCCESS};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

/// syslog priorities (pam_syslog adds LOG_AUTHPRIV).
pub const LOG_ERR: i32 = libc::LOG_ERR;
pub const LOG_WARNING: i32 = libc::LOG_WARNING;
pub const LOG_INFO: i32 = libc::LOG_INFO;
pub const LOG_DEBUG: i32 = libc::LOG_DEBUG;

/// The broker connection, held from open_session to close_session (or pam_end).
#[derive(Debug)]
pub struct Lease {
    /// Never read: closing it ends the lease.
    pub conn: UnixStream,
}

/// What the session hooks need from their surroundings.
pub trait Pam {
    /// PAM_SERVICE.
    fn service(&self) -> Option<String>;
    /// PAM_USER (pam_get_user), as bytes.
    fn user(&self) -> Result<Vec<u8>, String>;
    /// One line to syslog (LOG_AUTHPRIV).
    fn log(&self, priority: i32, msg: &str);
    /// The account database.
    fn facts(&self, user: &OsStr, group: &str) -> UserFacts {
        decide::user_facts(user, group)
    }
    /// The broker exchange.
    fn request(&self, a: &args::Args, user: &str) -> Result<Granted, broker::Failure> {
        broker::request_netns(&a.socket, user, a.timeout)
    }
    /// setns(fd, CLONE_NEWNET) for this process.
    fn join(&self, netns: &OwnedFd) -> Result<(), String>;
    /// Stores the lease in the PAM handle (libpam drops it at close_session or pam_end).
    fn store_lease(&self, lease: Lease) -> Result<(), String>;
    /// Drops the stored lease; false when there was none.
    fn release_lease(&self) -> bool;
}

/// pam_sm_open_session.
pub fn open(pam: &impl Pam, parsed: &Parsed) -> i32 {
    let service = pam.service();
    let debug = parsed.args.debug;
    // The user is looked up only when the service is listed: other stacks never pay for NSS.
    let (facts, name) = if decide::service_listed(parsed, service.as_deref()) {
        match pam.user() {
            Ok(name) => (
                pam.facts(OsStr::from_bytes(&name), &parsed.args.group),
                Some(name),
            ),
            Err(e) => (UserFacts::Unavailable(e), None),
        }
    } else {
        (UserFacts::Unknown, None)
    };
    let shown = name
        .as_deref()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_else(|| "?".to_string());
    match decide::decide(parsed, service.as_deref(), &facts) {
        Decision::Ignore { why, note } => {
            if let Some(n) = note {
                pam.log(LOG_WARNING, &format!("user {shown}: {n}"));
            }
            if debug {
                pam.log(
                    LOG_DEBUG,
                    &format!(
                        "ignoring service {:?}, user {shown}: {why}",
                        service.as_deref().unwrap_or("?")
                    ),
                );
            }
            PAM_IGNORE
        }
        Decision::Refuse(why) => {
            pam.log(LOG_ERR, &format!("refusing the session of {shown}: {why}"));
            PAM_SESSION_ERR
        }
        Decision::Act => {
            let Some(user) = name.and_then(|n| String::from_utf8(n).ok()) else {
                pam.log(
                    LOG_ERR,
                    &format!("refusing the session of {shown}: the user name is not UTF-8"),
                );
                return PAM_SESSION_ERR;
            };
            join(pam, parsed, &user)
        }
    }
}

fn join(pam: &impl Pam, parsed: &Parsed, user: &str) -> i32 {
    if parsed.args.debug {
        pam.log(
            LOG_DEBUG,
            &format!(
                "asking the broker at {} for the network namespace of {user}",
                parsed.args.socket.display()
            ),
        );
    }
    let g = match pam.request(&parsed.args, user) {
        Ok(g) => g,
        Err(f) => {
            pam.log(LOG_ERR, &format!("refusing the session of {user}: {f}"));
            return f.pam_code();
        }
    };
    let joined = pam.join(&g.netns);
    drop(g.netns);
    if let Err(e) = joined {
        pam.log(
            LOG_ERR,
            &format!(
                "refusing the session of {user}: cannot join the network namespace of {}: {e}",
                g.holder
            ),
        );
        return PAM_SESSION_ERR;
    }
    if let Err(e) = pam.store_lease(Lease { conn: g.lease }) {
        pam.log(
            LOG_ERR,
            &format!("refusing the session of {user}: cannot keep the broker lease: {e}"),
        );
        return PAM_SESSION_ERR;
    }
    pam.log(
        LOG_INFO,
        &format!("{user}: joined the network namespace of {}", g.holder),
    );
    PAM_SUCCESS
}

/// pam_sm_close_session.
pub fn close(pam: &impl Pam, parsed: &Parsed) -> i32 {
    let service = pam.service();
    if !decide::service_listed(parsed, service.as_deref()) {
        return PAM_IGNORE;
    }
    if pam.release_lease() {
        if parsed.args.debug {
            pam.log(LOG_DEBUG, "released the broker lease");
        }
        PAM_SUCCESS
    } else {
        PAM_IGNORE
    }
}

#[cfg(test)]
mod tests;
