//! The broker under systemd's protocols without systemd: a listening socket passed as fd 3 with
//! LISTEN_FDS/LISTEN_PID, READY=1 and STOPPING=1 on a NOTIFY_SOCKET we bind, and clear errors for
//! malformed messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn recv_until(sock: &UnixDatagram, needle: &str, child: &mut std::process::Child) -> String {
    let mut all = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut err);
                }
                panic!("no {needle} from the broker ({e}); got {all:?}; broker stderr: {err}");
            }
        };
        all.push_str(&String::from_utf8_lossy(&buf[..n]));
        all.push('\n');
        if all.contains(needle) {
            return all;
        }
    }
}

#[test]
fn socket_activation_and_sd_notify() {
    let dir = common::TempDir::under(&std::env::temp_dir(), "podspawn-act");
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth:\n  key_dir: {d}/keys\nstate:\n  db_path: {d}/state/state.db\n  lock_dir: {d}/state/locks\n  homes_dir: {d}/state/homes\nbroker:\n  socket: {d}/unused.sock\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let sock_path = dir.join("podspawn.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let lfd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the broker itself, as systemd would.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\" serve")
        .arg(common::bin())
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it places the listening socket at fd 3 for the child.
    unsafe {
        cmd.pre_exec(move || {
            // dup2(3, 3) would keep FD_CLOEXEC, so clear it instead when the listener already is fd 3.
            let r = if lfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(lfd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let got = recv_until(&notify, "READY=1", &mut child);
    assert!(got.contains("READY=1"), "{got}");

    // The passed socket serves requests.
    let mut c = UnixStream::connect(&sock_path).unwrap();
    c.write_all(b"{\"op\":\"list\",\"user\":null}\n").unwrap();
    let mut line = String::new();
    BufReader::new(c.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), r#"{"reply":"sessions","sessions":[]}"#);
    // Malformed and unknown messages get an error that says what was wrong.
    for bad in [
        "not json\n",
        "{\"op\":\"become_root\"}\n",
        "{\"op\":\"wait\",\"x\":1}\n",
    ] {
        let mut c = UnixStream::connect(&sock_path).unwrap();
        c.write_all(bad.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        assert!(
            line.contains("\"reply\":\"error\"") && line.contains("malformed"),
            "{bad:?} -> {line}"
        );
    }
    // A non-root caller cannot stop sessions: the broker checks the peer's uid, not a name.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let client_cfg = dir.join("client.yaml");
    std::fs::write(
        &client_cfg,
        format!("broker:\n  socket: {}\n", sock_path.display()),
    )
    .unwrap();
    std::fs::set_permissions(&client_cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(common::bin())
        .arg("--config")
        .arg(&client_cfg)
        .args(["stop", "alice"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("only root may stop sessions"), "{e}");

    // SIGTERM: STOPPING=1 and a clean exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let got = recv_until(&notify, "STOPPING=1", &mut child);
    assert!(got.contains("STOPPING=1"), "{got}");
    let st = child.wait().unwrap();
    assert!(st.success(), "broker exit: {st:?}");
    let _ = child.stderr.take();
}

#[test]
fn serve_without_a_socket_explains_itself() {
    let o = Command::new(common::bin())
        .args(["--config", "/nonexistent/podspawn.yaml", "serve"])
        .env_remove("LISTEN_FDS")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("/nonexistent/podspawn.yaml"), "{e}");
}
