//! One user cannot starve the broker: a per-uid limit on open connections, a deadline for a
//! client's first message, and a bounded wait in spawn for the broker's answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod common;

use common::{run, Env, Opts};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// Holds three silent connections, tries a fourth, waits for the silent ones to be closed, then
/// makes one real request. One JSON line per step.
const CLIENT: &str = r#"
import json, socket, sys, time
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return s
held = [conn() for _ in range(3)]
s = conn()
s.settimeout(10)
print(json.dumps({"fourth": s.recv(4096).decode()}), flush=True)
sys.stdin.readline()
t = time.time()
closed = 0
for h in held:
    h.settimeout(30)
    if h.recv(16) == b"":
        closed += 1
print(json.dumps({"closed": closed, "after": time.time() - t}), flush=True)
s = conn()
s.settimeout(10)
s.sendall(b'{"op":"list","user":null}\n')
print(json.dumps({"list": s.recv(65536).decode()}), flush=True)
"#;

fn need_python() {
    assert!(
        Path::new(PYTHON).exists(),
        "needs {PYTHON} (package python3-minimal) to act as a hostile client"
    );
}

#[test]
fn per_user_connection_limit_and_silent_clients() {
    need_python();
    let mut env = Env::with(Opts {
        extra: "  max_connections_per_user: 3\n  first_message_timeout: 12s\n".into(),
        ..Opts::default()
    });
    let u = env.add_user();
    let v = env.add_user();
    let mut child = Env::as_user(&u.name, Path::new(PYTHON))
        .arg("-c")
        .arg(CLIENT)
        .arg(&env.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        let l = lines.next().expect("client output").unwrap();
        serde_json::from_str(&l).unwrap()
    };
    let fourth = next();
    let msg = fourth["fourth"].as_str().unwrap();
    assert!(
        msg.contains("limit 3") && msg.contains("broker.max_connections_per_user"),
        "{msg}"
    );
    // While u's three connections sit silent, another user logs in normally.
    let t = Instant::now();
    let o = env.ssh(&v, "echo fine");
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "fine",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "the other user's login took {:?}: was it held up?",
        t.elapsed()
    );
    // The silent connections are closed by the first-message deadline, and u gets service again.
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let closed = next();
    assert_eq!(closed["closed"], 3, "{closed}");
    let listed = next();
    assert!(
        listed["list"]
            .as_str()
            .unwrap()
            .contains("\"reply\":\"sessions\""),
        "{listed}"
    );
    assert!(child.wait().unwrap().success());
    assert!(
        env.broker_log().contains("sent nothing"),
        "{}",
        env.broker_log()
    );
}

fn spawn_as(
    env: &Env,
    user: &str,
    socket: &Path,
    timeout: &str,
) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let o = run(Env::as_user(user, &env.bin)
        .arg("spawn")
        .arg("--socket")
        .arg(socket)
        .arg("--timeout")
        .arg(timeout)
        .env("SSH_ORIGINAL_COMMAND", "true")
        .stdin(Stdio::null()));
    (o, t.elapsed())
}

fn one_line(o: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err:?}");
    assert!(o.stdout.is_empty(), "stdout: {:?}", o.stdout);
    err
}

#[test]
fn spawn_gives_up_with_one_line_when_the_broker_never_answers() {
    let mut env = Env::start();
    let u = env.add_user();
    // A socket that accepts and never says a word.
    let path = env.root.join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(1) {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(8));
    });
    let (o, took) = spawn_as(&env, &u.name, &path, "2s");
    assert_eq!(o.status.code(), Some(1));
    let line = one_line(&o);
    assert!(
        line.starts_with("podspawn: the podspawn service did not answer within 2s"),
        "{line}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
    drop(keep);

    // The real broker, stopped (SIGSTOP): the same bounded wait; after SIGCONT logins work.
    let pid = env.broker_pid().unwrap().to_string();
    assert!(run(Command::new("kill").args(["-STOP", &pid]))
        .status
        .success());
    let (o, took) = spawn_as(&env, &u.name, &env.socket, "2s");
    let _ = run(Command::new("kill").args(["-CONT", &pid]));
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line(&o).contains("did not answer within 2s"));
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let o = env.ssh(&u, "echo back");
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "back",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
