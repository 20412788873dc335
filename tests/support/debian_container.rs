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
