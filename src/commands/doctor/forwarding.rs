//! TCP forwarding (`ssh -L/-R/-D`) and pam_podspawn.so: sshd's UsePAM, the module in sshd's PAM
//! session stack, the module file, and the check that matters most: forwarding effective for
//! podspawn users while the module is not in place (forwards would open in the host's network
//! namespace).
use super::{Check, FORWARDING_CHECK, PAM_MODULE_CHECK, PAM_STACK_CHECK, USEPAM_CHECK};
use crate::commands::server_setup::forwarding::{module_in_place, stack_fix};
use crate::core::config::PortForwarding;
use crate::host::pam::{self, PamFacts};
use std::collections::BTreeMap;

const RERUN: &str = "sudo podspawn server-setup --forwarding";

/// sshd's effective `UsePAM` (`None`: `sshd -T` could not be run).
pub fn check_use_pam(setting: PortForwarding, use_pam: Option<bool>) -> Check {
    match use_pam {
        Some(true) => Check::pass(USEPAM_CHECK, "sshd runs with UsePAM yes"),
        None => Check::warn(
            USEPAM_CHECK,
            "could not read sshd's effective UsePAM (`sshd -T` failed or needs root)",
            Some("sudo podspawn doctor".into()),
        ),
        Some(false) if setting == PortForwarding::Off => Check::pass(
            USEPAM_CHECK,
            "sshd runs with UsePAM no (security.port_forwarding is off, so pam_podspawn.so is not \
             needed)",
        ),
        Some(false) => Check::warn(
            USEPAM_CHECK,
            format!(
                "sshd runs with UsePAM no, so {} never runs and TCP forwarding (ssh -L/-R/-D) \
                 stays off although security.port_forwarding is {}",
                pam::MODULE_NAME,
                setting.as_str()
            ),
            Some(format!(
                "set `UsePAM yes` in /etc/ssh/sshd_config, then: sudo systemctl reload ssh && \
                 {RERUN}"
            )),
        ),
    }
}

/// pam_podspawn.so in the session stack of sshd's PAM service, with a fail-closed control.
/// `forwarding_on`: TCP forwarding is effective for podspawn users (or required by the config):
/// then a control that lets a failing module through is an error.
pub fn check_pam_stack(setting: PortForwarding, facts: &PamFacts, forwarding_on: bool) -> Check {
    let svc = facts.service_file.display();
    let missing = |detail: String| match setting {
        PortForwarding::Off => Check::pass(
            PAM_STACK_CHECK,
            format!("{detail} (security.port_forwarding is off: not needed)"),
        ),
        PortForwarding::Auto => Check::warn(
            PAM_STACK_CHECK,
            format!("{detail}: TCP forwarding (ssh -L/-R/-D) stays off"),
            Some(stack_fix()),
        ),
        PortForwarding::On => Check::fail(
            PAM_STACK_CHECK,
            format!("{detail}, but security.port_forwarding is on"),
            stack_fix(),
        ),
    };
    let stack = match &facts.session {
        Ok(s) => s,
        Err(e) => return missing(e.clone()),
    };
    let Some((entry, skippers)) = pam::find_module(stack) else {
        return missing(format!(
            "{} is not in the session stack of {svc}",
            pam::MODULE_NAME
        ));
    };
    let problem = if !entry.control.fail_closed() {
        Some((
            format!(
                "{} has control {}: when the module fails, sshd lets the connection through in \
                 the host's network namespace",
                entry.describe(),
                entry.control.text()
            ),
            format!(
                "change the control at {} to `required`, then: {RERUN}",
                entry.location()
            ),
        ))
    } else {
        skippers.first().map(|s| {
            (
                format!(
                    "{} may be skipped: {} comes first and can end or jump over the session stack",
                    entry.describe(),
                    s.describe()
                ),
                format!(
                    "put {} before {}, then: {RERUN}",
                    pam::MODULE_NAME,
                    s.location()
                ),
            )
        })
    };
    match problem {
        Some((detail, fix)) if forwarding_on || setting == PortForwarding::On => {
            Check::fail(PAM_STACK_CHECK, detail, fix)
        }
        Some((detail, fix)) => Check::warn(
            PAM_STACK_CHECK,
            format!("{detail}; TCP forwarding stays off"),
            Some(fix),
        ),
        None => Check::pass(PAM_STACK_CHECK, entry.describe()),
    }
}

/// The module file: present where the stack (or the usual locations) name it. A fail-closed
/// line for a missing module makes PAM fail the session stack: every ssh login fails.
pub fn check_pam_module(setting: PortForwarding, facts: &PamFacts) -> Check {
    let entry = facts.module().map(|(e, _)| e);
    let install =
        format!("install podspawn's PAM module (the podspawn package ships it), then: {RERUN}");
    match (&facts.module_file, entry) {
        (Some(f), _) => Check::pass(PAM_MODULE_CHECK, f.display().to_string()),
        (None, Some(e)) if !e.skip_if_missing && e.control.fail_closed() => Check::fail(
            PAM_MODULE_CHECK,
            format!(
                "{} is in sshd's session stack ({}) but the module file is missing: PAM cannot \
                 load it and fails the session, so ssh logins fail (for every user of this \
                 stack)",
                pam::MODULE_NAME,
                e.describe()
            ),
            format!(
                "{install}; or remove the line at {} (Debian: sudo pam-auth-update --disable \
                 podspawn)",
                e.location()
            ),
        ),
        (None, _) => {
            let wanted = match entry {
                Some(e) if e.module.starts_with('/') => e.module.clone(),
                _ => pam::module_path_candidates()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            let detail = format!("{} is not installed ({wanted})", pam::MODULE_NAME);
            match setting {
                PortForwarding::Off => Check::pass(
                    PAM_MODULE_CHECK,
                    format!("{detail}; security.port_forwarding is off: not needed"),
                ),
                PortForwarding::Auto => Check::warn(
                    PAM_MODULE_CHECK,
                    format!("{detail}: TCP forwarding (ssh -L/-R/-D) stays off"),
                    Some(install),
                ),
                PortForwarding::On => Check::fail(
                    PAM_MODULE_CHECK,
                    format!("{detail}, but security.port_forwarding is on"),
                    install,
                ),
            }
        }
    }
}

/// sshd's effective AllowTcpForwarding for a member (`sshd -T -C user=<member>`, parsed) against
/// whether pam_podspawn.so is in place. `installed`: sshd reads podspawn's Match block (else the
/// fix is a full server-setup). `None` without a member to check.
pub fn check_forwarding(
    setting: PortForwarding,
    facts: &PamFacts,
    installed: bool,
    member: Option<&str>,
    dump: Option<&BTreeMap<String, Vec<String>>>,
) -> Option<Check> {
    let (member, t) = (member?, dump?);
    let got = t
        .get("allowtcpforwarding")
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or("(unset)");
    let in_place = module_in_place(facts);
    Some(match (got == "no", in_place) {
        (false, Err((why, _))) => Check::fail(
            FORWARDING_CHECK,
            format!(
                "sshd's effective AllowTcpForwarding for podspawn users (checked as {member}) is \
                 {got}, but pam_podspawn.so is not in place ({why}): forwards would open in the \
                 host's network namespace"
            ),
            if installed {
                format!(
                    "{RERUN}   # removes sshd_config.d/09-podspawn-forwarding.conf; if it stays, \
                     remove the AllowTcpForwarding line that applies to podspawn-users (`sudo \
                     sshd -T -C user={member}` shows the value), then: sudo systemctl reload ssh"
                )
            } else {
                "sudo podspawn server-setup   # podspawn's Match block (AllowTcpForwarding no) is \
                 not installed"
                    .to_string()
            },
        ),
        (false, Ok(why)) => Check::pass(
            FORWARDING_CHECK,
            format!("on for podspawn users (AllowTcpForwarding {got}): {why}"),
        ),
        (true, Ok(_)) if setting != PortForwarding::Off => Check::warn(
            FORWARDING_CHECK,
            format!(
                "off for podspawn users (checked as {member}), although pam_podspawn.so is in \
                 place and security.port_forwarding is {}",
                setting.as_str()
            ),
            Some(RERUN.into()),
        ),
        (true, Ok(_)) => Check::pass(
            FORWARDING_CHECK,
            "off for podspawn users: security.port_forwarding is off",
        ),
        (true, Err((why, _))) => {
            Check::pass(FORWARDING_CHECK, format!("off for podspawn users: {why}"))
        }
    })
}
