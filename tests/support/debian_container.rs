//! A Debian container of the package tests (tests/package_deb.rs, tests/package_systemd.rs):
//! commands in it, its published SSH port, ssh logins from the host, and removal — with the
//! podspawn users' sibling containers and networks on the host engine — when dropped, even
//! when the test fails. Needs `mod common` and `mod packages` in the test crate.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use crate::common;
use crate::packages::{check, out, stdout};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A container (label podspawn-test=1), removed when dropped together with every container and
/// network labelled `podspawn-user=<u>` for its `users`.
pub struct TestContainer {
    pub name: String,
    pub users: Vec<String>,
    /// A shell script run in the container whose output is attached to failure messages.
    pub logs_script: &'static str,
}

impl TestContainer {
    /// `sh -c script` in the container.
    pub fn sh(&self, script: &str) -> Output {
        common::run(
            Command::new("docker")
                .args(["exec", &self.name, "sh", "-c", script])
                .stdin(Stdio::null()),
        )
    }

    /// Like `sh`, panicking with the output (and the container's logs) unless it succeeds.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "in the container: {script}\n{}\n{}",
            out(&o),
            self.logs()
        );
        stdout(&o)
    }

    pub fn logs(&self) -> String {
        stdout(&self.sh(self.logs_script))
    }

    /// The host port published for the container's port 22 (`-p 127.0.0.1::22`).
    pub fn ssh_port(&self) -> u16 {
        let port_out = check(Command::new("docker").args(["port", &self.name, "22/tcp"]));
        stdout(&port_out)
            .lines()
            .find_map(|l| {
                l.strip_prefix("127.0.0.1:")
                    .map(|p| p.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no published port: {}", out(&port_out)))
    }

    /// Copies the host file `from` to `to` in the container.
    pub fn copy_in(&self, from: &Path, to: &str) {
        check(
            Command::new("docker")
                .arg("cp")
                .arg(from)
                .arg(format!("{}:{to}", self.name)),
        );
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        for u in &self.users {
            for kind in [["ps", "-aq"], ["network", "ls"]] {
                let mut c = Command::new("docker");
                c.args(kind);
                if kind[0] == "network" {
                    c.arg("-q");
                }
                let o = c
                    .arg("--filter")
                    .arg(format!("label=podspawn-user={u}"))
                    .output();
                let ids = o.map(|o| stdout(&o)).unwrap_or_default();
                for id in ids.lines() {
                    let mut rm = Command::new("docker");
                    if kind[0] == "network" {
                        rm.args(["network", "rm", id]);
                    } else {
                        rm.args(["rm", "-f", id]);
                    }
                    let _ = rm.stdout(Stdio::null()).stderr(Stdio::null()).status();
                }
            }
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `ssh -i key -p port user@127.0.0.1 cmd` with the suite's client options.
pub fn ssh(key: &Path, port: u16, user: &str, cmd: &str) -> Output {
    common::run(
        Command::new("ssh")
            .args(common::SSH_OPTIONS)
            .args(["-o", "ConnectTimeout=20"])
            .arg("-i")
            .arg(key)
            .arg("-p")
            .arg(port.to_string())
            .arg(format!("{user}@127.0.0.1"))
            .arg(cmd)
            .stdin(Stdio::null()),
    )
}

/// Polls `f` every 100 ms until it is true; panics after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// stat -c '%a %U:%G' of `paths`, one line each.
pub fn modes(c: &TestContainer, paths: &[&str]) -> BTreeMap<String, String> {
    let text = c.ok(&format!("stat -c '%n %a %U:%G' {}", paths.join(" ")));
    text.lines()
        .filter_map(|l| {
            let (p, rest) = l.split_once(' ')?;
            Some((p.to_string(), rest.to_string()))
        })
        .collect()
}

/// A new key pair in `dir` (id_ed25519, no passphrase); returns (private key path, public line).
pub fn keygen(dir: &Path, comment: &str) -> (std::path::PathBuf, String) {
    let key = dir.join("id_ed25519");
    check(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&key),
    );
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, pubkey.trim().to_string())
}

/// The .deb `deb` repacked as version `version` (same payload and scripts) into `dir`: an
/// upgrade to install over it.
pub fn repack_deb(deb: &Path, version: &str, dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    check(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version: ") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).unwrap();
    let up_deb = dir.join(format!("podspawn_{version}.deb"));
    check(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-b"])
            .arg(&tree)
            .arg(&up_deb)
            .stdout(Stdio::null()),
    );
    up_deb
}

/// Written and removed by `podspawn server-setup --forwarding` (TCP forwarding for members).
pub const FORWARDING_DROPIN: &str = "/etc/ssh/sshd_config.d/09-podspawn-forwarding.conf";

/// Puts a forwarding drop-in in place where there is none (as `server-setup --forwarding` would
/// with the module in sshd's stack; a podspawn without the flag writes none), so that what the
/// removal does with one is tested either way. Returns whether it wrote one.
pub fn ensure_forwarding_dropin(c: &TestContainer) -> bool {
    c.ok(&format!(
        "if test -e {FORWARDING_DROPIN}; then echo kept; else \
           printf '%s\\n' '# test stand-in of podspawn server-setup --forwarding' \
             'Match Group podspawn-users' '    AllowTcpForwarding yes' '    GatewayPorts no' \
             >{FORWARDING_DROPIN} && \
           mkdir -p /run/sshd && sshd -t && echo wrote; fi"
    ))
    .trim()
        == "wrote"
}

/// Where the .deb installs the PAM session module: Debian's multiarch PAM directory of this
/// host's architecture (the package's).
pub fn pam_module_path() -> String {
    let o = check(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"));
    format!("/usr/lib/{}/security/pam_podspawn.so", stdout(&o).trim())
}

/// The `session required pam_podspawn.so` lines of /etc/pam.d/common-session.
pub fn common_session_lines(c: &TestContainer) -> Vec<String> {
    c.ok("grep -E '^[[:space:]]*session[[:space:]].*pam_podspawn\\.so' /etc/pam.d/common-session || true")
        .lines()
        .map(str::to_string)
        .collect()
}

/// After an install: the module file (root 0644) and one `session required pam_podspawn.so` line
/// in common-session (pam-auth-update's profile), and an ordinary PAM session (su to nobody, a
/// non-member, through common-session) still works with the module in the stack.
pub fn assert_pam_enabled(c: &TestContainer) {
    let module = pam_module_path();
    assert_eq!(
        c.ok(&format!("stat -c '%a %U:%G %F' {module}")).trim(),
        "644 root:root regular file",
        "{module}"
    );
    let lines = common_session_lines(c);
    assert!(
        lines.len() == 1
            && lines[0].split_whitespace().collect::<Vec<_>>()
                == ["session", "required", "pam_podspawn.so"],
        "/etc/pam.d/common-session should have one `session required pam_podspawn.so` line: \
         {lines:?}\n{}",
        c.ok("cat /etc/pam.d/common-session")
    );
    c.ok("su -s /bin/sh nobody -c true");
}

/// After a removal: no pam_podspawn.so line in common-session, no forwarding drop-in, and a
/// plain PAM session (su to nobody) still works.
pub fn assert_pam_gone(c: &TestContainer) {
    let lines = common_session_lines(c);
    assert!(
        lines.is_empty(),
        "pam_podspawn.so left in /etc/pam.d/common-session: {lines:?}"
    );
    c.ok(&format!(
        "! test -e {FORWARDING_DROPIN} && ! test -e {}",
        pam_module_path()
    ));
    c.ok("su -s /bin/sh nobody -c true");
}

/// Whether the installed podspawn has `server-setup --forwarding` (it decides the forwarding
/// drop-in; without it postinst leaves forwarding off).
pub fn has_forwarding_flag(c: &TestContainer) -> bool {
    c.sh("podspawn server-setup --help 2>&1 | grep -q -- --forwarding")
        .status
        .success()
}

/// sshd's effective forwarding values for the member `user` (`sshd -T -C`) agree with whether
/// the forwarding drop-in exists: allowtcpforwarding yes with it, no without; unix-socket
/// forwarding, X11 and tunnels always no. Returns whether forwarding is on.
pub fn assert_forwarding_agrees(c: &TestContainer, user: &str) -> bool {
    let on = c
        .sh(&format!("test -e {FORWARDING_DROPIN}"))
        .status
        .success();
    let effective = c.ok(&format!(
        "mkdir -p /run/sshd && sshd -T -C user={user},host=localhost,addr=127.0.0.1"
    ));
    let tcp = if on { "yes" } else { "no" };
    for want in [
        format!("allowtcpforwarding {tcp}"),
        "allowstreamlocalforwarding no".to_string(),
        "x11forwarding no".to_string(),
        "permittunnel no".to_string(),
    ] {
        assert!(
            effective.lines().any(|l| l == want),
            "sshd -T for the member {user} lacks {want:?} ({FORWARDING_DROPIN} {}):\n{effective}",
            if on { "exists" } else { "does not exist" }
        );
    }
    on
}
