//! TCP forwarding (`ssh -L/-R/-D`) for podspawn users: on only where pam_podspawn.so moves their
//! connections into their container's network namespace.
//!
//! sshd opens forwards itself, from its own (the host's) network namespace, so podspawn's main
//! drop-in says `AllowTcpForwarding no`. Where sshd runs with `UsePAM yes` and pam_podspawn.so is
//! in the session stack of the `sshd` PAM service with a fail-closed control (required,
//! requisite), the connection is in the user's namespace before any forward opens, and
//! server-setup writes `09-podspawn-forwarding.conf` (read first, so its `AllowTcpForwarding yes`
//! wins). Everywhere else it removes that file: a missing file means forwarding off.
use crate::core::config::PortForwarding;
use crate::host::pam::{self, PamFacts};

/// Whether forwarding is to be on, why, and (when off for a reason that can be fixed) how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    pub reason: String,
    pub fix: Option<String>,
}

impl Decision {
    fn off(reason: String, fix: Option<String>) -> Decision {
        Decision {
            on: false,
            reason,
            fix,
        }
    }

    /// The one line server-setup prints.
    pub fn line(&self) -> String {
        format!(
            "TCP forwarding (ssh -L/-R/-D) is {}: {}",
            if self.on { "on" } else { "off" },
            self.reason
        )
    }

    /// The error of `security.port_forwarding: on` when forwarding cannot be on.
    pub fn required_error(&self) -> String {
        let mut s = format!(
            "security.port_forwarding is on, but TCP forwarding cannot be turned on safely: {}",
            self.reason
        );
        if let Some(f) = &self.fix {
            s.push_str(&format!("; fix: {f}"));
        }
        s.push_str(
            " (or set security.port_forwarding: auto to run with forwarding off until then)",
        );
        s
    }
}

/// How to put the module into sshd's session stack.
pub fn stack_fix() -> String {
    "Debian/Ubuntu: sudo pam-auth-update --enable podspawn; Fedora/RHEL: add the line \
     `session required pam_podspawn.so` to /etc/pam.d/sshd; then: sudo podspawn server-setup \
     --forwarding"
        .to_string()
}

/// Is pam_podspawn.so in place: UsePAM yes, in sshd's session stack with a fail-closed control,
/// not skippable by an earlier line, and its file present? `Err`: why not, and the fix.
pub fn module_in_place(facts: &PamFacts) -> Result<String, (String, String)> {
    let svc = facts.service_file.display();
    match facts.use_pam {
        None => {
            return Err((
                "cannot tell whether sshd runs with UsePAM yes (`sshd -T` failed)".into(),
                "sudo sshd -t   # shows the error".into(),
            ))
        }
        Some(false) => {
            return Err((
                format!(
                    "sshd runs with UsePAM no; {} needs UsePAM yes",
                    pam::MODULE_NAME
                ),
                "set `UsePAM yes` in /etc/ssh/sshd_config, then: sudo systemctl reload ssh \
                 (sshd on Fedora/RHEL)"
                    .into(),
            ))
        }
        Some(true) => {}
    }
    let stack = match &facts.session {
        Ok(s) => s,
        Err(e) => {
            return Err((
                format!(
                    "{e}, so {} cannot be in sshd's session stack",
                    pam::MODULE_NAME
                ),
                stack_fix(),
            ))
        }
    };
    let Some((entry, skippers)) = pam::find_module(stack) else {
        return Err((
            format!("{} is not in the session stack of {svc}", pam::MODULE_NAME),
            stack_fix(),
        ));
    };
    if !entry.control.fail_closed() {
        return Err((
            format!(
                "{} has control {}: when the module fails, sshd would let the connection through \
                 in the host's network namespace",
                entry.describe(),
                entry.control.text()
            ),
            format!("change the control at {} to `required`", entry.location()),
        ));
    }
    if let Some(s) = skippers.first() {
        return Err((
            format!(
                "{} may be skipped: {} comes first and can end or jump over the session stack",
                entry.describe(),
                s.describe()
            ),
            format!(
                "put {} before {} (or make that line's control not skip it)",
                pam::MODULE_NAME,
                s.location()
            ),
        ));
    }
    let Some(file) = &facts.module_file else {
        let wanted = if entry.module.starts_with('/') {
            entry.module.clone()
        } else {
            pam::module_path_candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        return Err((
            format!(
                "{} is in sshd's session stack ({}), but the module file is missing ({wanted})",
                pam::MODULE_NAME,
                entry.location()
            ),
            "install podspawn's PAM module (the podspawn package ships it), then: sudo podspawn \
             server-setup --forwarding"
                .into(),
        ));
    };
    Ok(format!(
        "{} is in sshd's PAM session stack ({}, {}; {}) and sshd runs with UsePAM yes",
        pam::MODULE_NAME,
        entry.control.text(),
        entry.location(),
        file.display()
    ))
}

/// Forwarding on or off, from `security.port_forwarding` and the PAM facts.
pub fn decide(setting: PortForwarding, facts: &PamFacts) -> Decision {
    if setting == PortForwarding::Off {
        return Decision::off("security.port_forwarding is off".into(), None);
    }
    match module_in_place(facts) {
        Ok(why) => Decision {
            on: true,
            reason: why,
            fix: None,
        },
        Err((why, fix)) => Decision::off(why, Some(fix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::pam::{stack, Entry};
    use std::path::PathBuf;

    fn facts(use_pam: Option<bool>, sshd: Option<&str>, file: bool) -> PamFacts {
        let text = sshd.map(str::to_string);
        let load = move |n: &str| (n == "sshd").then(|| text.clone()).flatten();
        let session: Result<Vec<Entry>, String> =
            stack("sshd", "session", &load).map_err(|e| e.to_string());
        PamFacts {
            use_pam,
            service_file: PathBuf::from("/etc/pam.d/sshd"),
            session,
            module_file: file.then(|| PathBuf::from("/usr/lib64/security/pam_podspawn.so")),
        }
    }

    const REQUIRED: &str = "session required pam_podspawn.so\n";

    /// Every combination: setting × UsePAM × stack (absent, optional, required, skippable,
    /// bracket, no service file) × module file.
    #[test]
    fn every_combination() {
        let stacks: [(Option<&str>, bool); 7] = [
            (None, false),
            (Some("session optional pam_unix.so\n"), false),
            (Some("session optional pam_podspawn.so\n"), false),
            (Some(REQUIRED), true),
            (Some("session requisite pam_podspawn.so\n"), true),
            (
                Some("session [success=ok ignore=ignore default=bad] pam_podspawn.so\n"),
                true,
            ),
            (
                Some("session sufficient pam_permit.so\nsession required pam_podspawn.so\n"),
                false,
            ),
        ];
        for setting in [
            PortForwarding::Auto,
            PortForwarding::On,
            PortForwarding::Off,
        ] {
            for use_pam in [None, Some(false), Some(true)] {
                for (sshd, closed) in stacks {
                    for file in [false, true] {
                        let d = decide(setting, &facts(use_pam, sshd, file));
                        let want = setting != PortForwarding::Off
                            && use_pam == Some(true)
                            && closed
                            && file;
                        assert_eq!(d.on, want, "{setting:?} {use_pam:?} {sshd:?} {file}: {d:?}");
                        assert!(!d.reason.is_empty());
                        // Off for a fixable reason names the fix; on and "setting off" do not.
                        assert_eq!(
                            d.fix.is_some(),
                            !d.on && setting != PortForwarding::Off,
                            "{d:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reasons_name_the_cause() {
        let d = decide(
            PortForwarding::Auto,
            &facts(Some(false), Some(REQUIRED), true),
        );
        assert_eq!(
            d.line(),
            "TCP forwarding (ssh -L/-R/-D) is off: sshd runs with UsePAM no; pam_podspawn.so \
             needs UsePAM yes"
        );
        assert!(d.fix.as_deref().unwrap().contains("UsePAM yes"));
        let d = decide(PortForwarding::On, &facts(Some(true), Some(""), true));
        assert!(d
            .reason
            .contains("pam_podspawn.so is not in the session stack of /etc/pam.d/sshd"));
        let e = d.required_error();
        assert!(e.starts_with("security.port_forwarding is on, but"), "{e}");
        assert!(e.contains("pam-auth-update --enable podspawn"), "{e}");
        let d = decide(
            PortForwarding::Auto,
            &facts(Some(true), Some("session optional pam_podspawn.so\n"), true),
        );
        assert!(d.reason.contains("control optional"), "{d:?}");
        assert!(d.reason.contains("host's network namespace"), "{d:?}");
        let d = decide(
            PortForwarding::Auto,
            &facts(Some(true), Some(REQUIRED), false),
        );
        assert!(d.reason.contains("module file is missing"), "{d:?}");
        let d = decide(PortForwarding::Auto, &facts(Some(true), None, true));
        assert!(d.reason.contains("cannot read the PAM file sshd"), "{d:?}");
        let d = decide(
            PortForwarding::Auto,
            &facts(Some(true), Some(REQUIRED), true),
        );
        assert!(d
            .line()
            .starts_with("TCP forwarding (ssh -L/-R/-D) is on: pam_podspawn.so is in"));
        let d = decide(
            PortForwarding::Off,
            &facts(Some(true), Some(REQUIRED), true),
        );
        assert_eq!(
            d.line(),
            "TCP forwarding (ssh -L/-R/-D) is off: security.port_forwarding is off"
        );
    }
}
