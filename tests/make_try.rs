//! The README's first command, `make try`, driven as a person would: on a pseudo-terminal, log in,
//! run a command in the container, `exit`; then nothing may be left behind (account, container,
//! network, files, sshd, broker, the port). Needs root, Docker, OpenSSH and make.
//!
//! It runs beside other tests: its own port (PODSPAWN_TRY_PORT), its own `pst…` user
//! (PODSPAWN_TRY_USER, so `make clean-test` finds leftovers) and this build's binary
//! (PODSPAWN_TRY_BIN, instead of a release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `make try` on a pty we own; the child leads its own session (and process group).
struct Try {
    master: std::fs::File,
    child: Child,
    out: String,
    user: String,
    done: bool,
}

impl Try {
    fn start(port: u16, user: &str) -> Try {
        let ws = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let mut c = Command::new("make");
        c.arg("try")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PODSPAWN_TRY_PORT", port.to_string())
            .env("PODSPAWN_TRY_USER", user)
            .env("PODSPAWN_TRY_BIN", common::bin())
            .env("TERM", "xterm")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; they make the pty the terminal.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = c.spawn().unwrap_or_else(|e| {
            panic!("make try: {e} (the tests need make: apt-get install make)")
        });
        drop(pty.slave);
        Try {
            master: std::fs::File::from(pty.master),
            child,
            out: String::new(),
            user: user.to_string(),
            done: false,
        }
    }

    fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }

    /// Reads what is there within `wait`; false at end of output (every slave end closed).
    fn pump(&mut self, wait: Duration) -> bool {
        let fd = self.master.as_fd();
        let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)).unwrap_or(0) == 0 {
            return true;
        }
        let mut b = [0u8; 4096];
        match self.master.read(&mut b) {
            Ok(n) if n > 0 => {
                self.out.push_str(&String::from_utf8_lossy(&b[..n]));
                true
            }
            // EIO: the last process holding the terminal has exited.
            _ => false,
        }
    }

    /// Reads until `needle` appears in the output.
    fn expect(&mut self, needle: &str, secs: u64) {
        let t = Instant::now();
        while !self.out.contains(needle) {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "make try: no {needle:?} within {secs}s; output:\n{}",
                self.out
            );
            if !self.pump(Duration::from_millis(500)) {
                assert!(
                    self.out.contains(needle),
                    "make try ended; output:\n{}",
                    self.out
                );
            }
        }
    }

    /// Drains the output until `make try` exits; its exit status.
    fn wait(&mut self, secs: u64) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                while self.pump(Duration::from_millis(100)) {}
                self.done = true;
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "make try did not end within {secs}s; output:\n{}",
                self.out
            );
            self.pump(Duration::from_millis(200));
        }
    }

    /// A line of the output that contains `needle`.
    fn line_with(&self, needle: &str) -> String {
        self.out
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", self.out))
            .to_string()
    }
}

impl Drop for Try {
    /// After a failed assertion: end make try (its own cleanup runs on SIGTERM), then remove what
    /// it may have left.
    fn drop(&mut self) {
        if !self.done {
            self.end();
        }
        for (what, list) in [("rm", "ps"), ("network", "network")] {
            let ids = labelled(list, &self.user);
            if !ids.is_empty() {
                let mut c = Command::new("docker");
                if what == "network" {
                    c.args(["network", "rm"]);
                } else {
                    c.args(["rm", "-f"]);
                }
                let _ = c.args(&ids).stdout(Stdio::null()).status();
            }
        }
        if account_exists(&self.user) {
            let _ = Command::new("userdel")
                .args(["-r", "-f", &self.user])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Try {
    fn end(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            self.pump(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// IDs of containers (`ps`) or networks (`network`) labelled as `user`'s.
fn labelled(kind: &str, user: &str) -> Vec<String> {
    let mut c = Command::new("docker");
    if kind == "network" {
        c.args(["network", "ls", "-q"]);
    } else {
        c.args(["ps", "-aq"]);
    }
    let o = common::run(c.arg("--filter").arg(format!("label=podspawn-user={user}")));
    assert!(
        o.status.success(),
        "docker {kind}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn account_exists(user: &str) -> bool {
    Command::new("id")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(p.join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn make_try_logs_in_on_a_pty_and_leaves_nothing_behind() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root: run the tests as root (see README)"
    );
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "this test needs sshd: apt-get install openssh-server"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut hex = [0u8; 3];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut hex)
        .unwrap();
    let user = format!(
        "pst{}try",
        hex.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut t = Try::start(port, &user);
    t.expect("exit the shell to clean everything up", 120);
    // While it runs: where its files are, its sshd, its container.
    let broker_line = t.line_with("broker on ");
    let root = PathBuf::from(
        broker_line
            .split_whitespace()
            .find(|w| w.starts_with("/var/tmp/podspawn-try-"))
            .and_then(|w| w.strip_suffix("/run/podspawn.sock"))
            .unwrap_or_else(|| panic!("no state directory in {broker_line:?}")),
    );
    let id = root
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("podspawn-try-")
        .to_string();
    let bin_dir = PathBuf::from(format!("/usr/local/libexec/podspawn-try-{id}"));
    assert!(root.is_dir() && bin_dir.is_dir());
    assert!(t.out.contains(&format!("127.0.0.1:{port}")), "{}", t.out);

    // A shell in the container, on a terminal.
    t.send("[ -t 0 ] && echo \"in-$((6*7))-$(id -un)\"\r");
    t.expect(&format!("in-42-{user}"), 60);
    // The session's container and the user's network-namespace holder.
    let containers = labelled("ps", &user);
    assert_eq!(
        containers.len(),
        2,
        "one container and one holder for {user}"
    );
    assert_eq!(
        labelled("network", &user).len(),
        1,
        "one network for {user}"
    );
    let sshd_pid = std::fs::read_to_string(root.join("sshd.pid"))
        .unwrap()
        .trim()
        .to_string();
    assert!(Path::new(&format!("/proc/{sshd_pid}")).exists());

    t.send("exit\r");
    let status = t.wait(120);
    assert!(status.success(), "make try: {status}; output:\n{}", t.out);
    assert!(t.out.contains(&format!("removed {user}")), "{}", t.out);

    // Nothing left behind.
    assert!(!account_exists(&user), "account {user} left behind");
    assert!(labelled("ps", &user).is_empty(), "container left behind");
    assert!(labelled("network", &user).is_empty(), "network left behind");
    assert!(!root.exists(), "{} left behind", root.display());
    assert!(!bin_dir.exists(), "{} left behind", bin_dir.display());
    assert!(
        !Path::new(&format!("/home/{user}")).exists(),
        "home directory left behind"
    );
    assert!(
        !Path::new(&format!("/proc/{sshd_pid}")).exists(),
        "sshd {sshd_pid} left running"
    );
    let left = processes_with(&root.to_string_lossy());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("port {port} not freed: {e}"));
}
