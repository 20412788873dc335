//! Session lifecycle and operations end to end: every mode, the cleanup pass and daemon, the audit
//! log, journald fields, list/status/metrics. Real sshd, accounts, broker and Docker; run as root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{run, Env, Opts};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn inspect(id: &str, fmt: &str) -> String {
    stdout(&run(Command::new("docker").args(["inspect", "-f", fmt, id])))
        .trim()
        .to_string()
}

fn status_of(env: &Env, user: &str) -> Option<String> {
    Env::session_of(&env.sessions(), user).map(|s| s["status"].as_str().unwrap_or("").to_string())
}

#[test]
fn named_sessions_keep_home_and_survive_docker_stop() {
    let mut env = Env::with(Opts {
        mode: "named",
        ..Default::default()
    });
    let u = env.add_user();
    let o = env.ssh(&u, "echo keep > ~/f; echo $HOME");
    assert_eq!(stdout(&o), format!("/home/{}\n", u.name), "{}", stderr(&o));
    env.wait_for("the named session to go idle", 20, || {
        status_of(&env, &u.name).as_deref() == Some("idle")
    });
    let id = env.containers_of(&u.name).pop().unwrap();
    // Stopped behind podspawn's back (as by a Docker restart): the next login starts it again.
    assert!(run(Command::new("docker").args(["stop", "-t", "1", &id]))
        .status
        .success());
    let o = env.ssh(&u, "cat ~/f");
    assert_eq!(stdout(&o), "keep\n", "{}", stderr(&o));
    assert_eq!(env.containers_of(&u.name), vec![id.clone()]);
    // `stop` removes the container but keeps the home, owned by the user's uid.
    let o = env.podspawn(&["stop", &u.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(env.containers_of(&u.name).is_empty());
    let home = env.root.join("state/homes").join(&u.name);
    use std::os::unix::fs::MetadataExt;
    let uid: u32 = stdout(&run(Command::new("id").arg("-u").arg(&u.name)))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(std::fs::metadata(home.join("f")).unwrap().uid(), uid);
    // A new container finds the files again.
    let o = env.ssh(&u, "cat ~/f");
    assert_eq!(stdout(&o), "keep\n", "{}", stderr(&o));
    assert_ne!(env.containers_of(&u.name), vec![id]);
    // --purge deletes the home too.
    let o = env.podspawn(&["stop", &u.name, "--purge"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!home.exists());
}

#[test]
fn ttl_sessions_warn_then_go() {
    let mut env = Env::with(Opts {
        mode: "ttl",
        ttl: "8s",
        ..Default::default()
    });
    let u = env.add_user();
    let v = env.add_user();
    // A disconnected ttl session is kept (idle) until its ttl.
    assert!(env.ssh(&v, "true").status.success());
    env.wait_for("the ttl session to go idle", 20, || {
        status_of(&env, &v.name).as_deref() == Some("idle")
    });
    assert_eq!(env.containers_of(&v.name).len(), 1);
    // A live one is told before its container goes, then the session ends.
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("echo started; sleep 120")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    let t = Instant::now();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let st = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("will be removed in"))
            .count(),
        1,
        "{err:?}"
    );
    assert!(err.contains("ttl"), "{err}");
    assert_ne!(st.code(), Some(0));
    env.wait_for("both ttl sessions to be removed", 30, || {
        let s = env.sessions();
        env.containers_of(&u.name).is_empty()
            && env.containers_of(&v.name).is_empty()
            && Env::session_of(&s, &u.name).is_none()
            && Env::session_of(&s, &v.name).is_none()
    });
    let prom = stdout(&env.podspawn(&["status", "--prometheus"]));
    assert!(
        prom.contains("podspawn_container_removals_total{reason=\"ttl\"} 2"),
        "{prom}"
    );
}

#[test]
fn cleanup_reconciles_orphans_and_leaves_foreign_containers_alone() {
    let mut env = Env::start();
    let gone = env.add_user(); // row whose container vanished
    let stopped = env.add_user(); // grace-period container stopped by a Docker restart
    let named = env.add_user(); // named container stopped by a Docker restart
    let other = env.add_user(); // owner of hand-made orphans
    std::fs::create_dir_all(env.root.join("users")).unwrap();
    std::fs::write(
        env.root.join("users").join(format!("{}.yaml", named.name)),
        "mode: named\n",
    )
    .unwrap();
    for u in [&gone, &stopped, &named] {
        let o = env.ssh(u, "true");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let gone_id = env.containers_of(&gone.name).pop().unwrap();
    let instance = inspect(&gone_id, "{{index .Config.Labels \"podspawn-instance\"}}");
    assert_eq!(instance.len(), 16);
    assert!(run(Command::new("docker").args(["rm", "-f", &gone_id]))
        .status
        .success());
    let stopped_id = env.containers_of(&stopped.name).pop().unwrap();
    let named_id = env.containers_of(&named.name).pop().unwrap();
    for id in [&stopped_id, &named_id] {
        assert!(run(Command::new("docker").args(["stop", "-t", "1", id]))
            .status
            .success());
    }
    let lab = |k: &str, v: &str| format!("--label={k}={v}");
    // A labelled container of this instance without a row, and an unused network of this instance.
    let ghost = format!("podspawn-{}-ghost", other.name);
    assert!(run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &ghost,
        &lab("managed-by", "podspawn"),
        &lab("podspawn-user", &other.name),
        &lab("podspawn-instance", &instance),
        common::IMAGE,
        "sleep",
        "infinity"
    ]))
    .status
    .success());
    let net = format!("podspawn-{}-old-net", other.name);
    assert!(run(Command::new("docker").args([
        "network",
        "create",
        &lab("managed-by", "podspawn"),
        &lab("podspawn-user", &other.name),
        &lab("podspawn-instance", &instance),
        &net
    ]))
    .status
    .success());
    // Foreign: another instance's container, and one podspawn does not manage at all.
    let foreign1 = format!("podspawn-{}-elsewhere", other.name);
    assert!(run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &foreign1,
        &lab("managed-by", "podspawn"),
        &lab("podspawn-user", &other.name),
        &lab("podspawn-instance", "0000000000000000"),
        common::IMAGE,
        "sleep",
        "infinity"
    ]))
    .status
    .success());
    let foreign2 = format!("{}-mine", other.name);
    assert!(run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &foreign2,
        &lab("podspawn-user", &other.name),
        common::IMAGE,
        "sleep",
        "infinity"
    ]))
    .status
    .success());

    let o = env.podspawn(&["cleanup"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Cleanup pass complete"), "{out}");
    let sessions = env.sessions();
    assert!(
        Env::session_of(&sessions, &gone.name).is_none(),
        "row of a vanished container kept"
    );
    assert!(Env::session_of(&sessions, &stopped.name).is_none());
    assert!(
        env.containers_of(&stopped.name).is_empty(),
        "stopped grace-period container kept"
    );
    assert_eq!(
        inspect(&named_id, "{{.State.Running}}"),
        "true",
        "named container not restarted"
    );
    let exists = |name: &str| {
        run(Command::new("docker").args(["inspect", name]))
            .status
            .success()
    };
    let net_exists = |name: &str| {
        run(Command::new("docker").args(["network", "inspect", name]))
            .status
            .success()
    };
    assert!(!exists(&ghost), "orphan container kept");
    assert!(!net_exists(&net), "unused network kept");
    assert!(
        !net_exists(&format!("podspawn-{}-net", gone.name)),
        "network of the vanished container kept"
    );
    assert!(
        exists(&foreign1) && exists(&foreign2),
        "cleanup touched a foreign container"
    );
    for n in [&foreign1, &foreign2] {
        let _ = run(Command::new("docker").args(["rm", "-f", n]));
    }
    // The named session still works.
    assert_eq!(stdout(&env.ssh(&named, "echo alive")), "alive\n");
}

#[test]
fn cleanup_racing_logins_never_removes_a_container_in_use() {
    let mut env = Env::with(Opts {
        grace: "1s",
        ..Default::default()
    });
    let u = env.add_user();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bin = env.bin.clone();
    let cfg = env.config.clone();
    let s2 = stop.clone();
    let cleaner = std::thread::spawn(move || {
        let mut passes = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let o = Command::new(&bin)
                .arg("--config")
                .arg(&cfg)
                .arg("cleanup")
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "cleanup: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            passes += 1;
        }
        passes
    });
    for i in 0..12 {
        let o = env.ssh(&u, &format!("echo begin{i}; sleep 1; echo end{i}"));
        assert_eq!(
            stdout(&o),
            format!("begin{i}\nend{i}\n"),
            "login {i}: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(300 + (i % 4) * 400));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let passes = cleaner.join().unwrap();
    assert!(passes >= 3, "only {passes} cleanup passes ran");
}

/// Decodes journald's native datagram format: `KEY=value\n`, or `KEY\n<u64 LE length><value>\n`
/// for values that may contain newlines.
fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into(),
                String::from_utf8_lossy(&line[eq + 1..]).into(),
            ));
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).to_string();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push((key, String::from_utf8_lossy(&rest[8..8 + len]).into()));
            d = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

/// A child process killed and reaped when dropped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn recv_all(sock: &UnixDatagram, until: impl Fn(&str) -> bool, secs: u64) -> String {
    let mut all = String::new();
    let t = Instant::now();
    let mut buf = [0u8; 8192];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while !until(&all) {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out; got {all:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
    }
    all
}

#[test]
fn cleanup_daemon_speaks_sd_notify_with_watchdog() {
    let env = Env::start();
    let notify_path = env.root.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = Reap(Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ WATCHDOG_USEC=600000 exec \"$0\" --config \"$1\" cleanup --daemon --interval 1s")
        .arg(&env.bin)
        .arg(&env.config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let got = recv_all(
        &notify,
        |s| {
            s.contains("READY=1")
                && s.matches("WATCHDOG=1").count() >= 4
                && s.matches("STATUS=").count() >= 2
        },
        30,
    );
    assert!(got.contains("STATUS=0 sessions"), "{got}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let got = recv_all(&notify, |s| s.contains("STOPPING=1"), 20);
    assert!(got.contains("STOPPING=1"));
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn broker_logs_structured_fields_to_journald() {
    let mut env = Env::start();
    let u = env.add_user();
    env.stop_broker(false);
    // A stand-in journal: our datagram socket, bind-mounted over /run/systemd/journal in a private
    // mount namespace that only the broker sees.
    let jdir = env.root.join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let journal = UnixDatagram::bind(jdir.join("socket")).unwrap();
    std::fs::create_dir_all("/run/systemd/journal").unwrap();
    // Killed on drop too, so a failing assertion does not leave this broker running.
    let mut broker = Reap(Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind \"$0\" /run/systemd/journal && exec \"$1\" --config \"$2\" serve --listen \"$3\""])
        .arg(&jdir)
        .arg(&env.bin)
        .arg(&env.config)
        .arg(&env.socket)
        .env("JOURNAL_STREAM", "8:12345")
        .env("PODSPAWN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    env.wait_for("the broker on the stand-in journal", 20, || {
        std::os::unix::net::UnixStream::connect(&env.socket).is_ok()
    });
    let o = env.ssh(&u, "true");
    assert!(o.status.success(), "{}", stderr(&o));
    journal
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let t = Instant::now();
    let attached = loop {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no 'session attached' entry in the journal"
        );
        let mut buf = vec![0u8; 65536];
        let Ok(n) = journal.recv(&mut buf) else {
            continue;
        };
        let fields: std::collections::HashMap<String, String> =
            journal_fields(&buf[..n]).into_iter().collect();
        if fields.get("MESSAGE").map(String::as_str) == Some("session attached") {
            break fields;
        }
    };
    assert_eq!(
        attached.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("podspawn"),
        "{attached:?}"
    );
    assert_eq!(attached.get("PODSPAWN_USER"), Some(&u.name), "{attached:?}");
    assert_eq!(
        attached.get("PODSPAWN_CONTAINER"),
        Some(&format!("podspawn-{}", u.name)),
        "{attached:?}"
    );
    assert_eq!(
        attached.get("PODSPAWN_PROJECT").map(String::as_str),
        Some(""),
        "{attached:?}"
    );
    assert_eq!(
        attached.get("PRIORITY").map(String::as_str),
        Some("5"),
        "{attached:?}"
    );
    let _ = broker.0.kill();
    let _ = broker.0.wait();
    let mut err = String::new();
    broker
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        !err.contains("session attached"),
        "logged to stderr instead of the journal: {err}"
    );
    env.start_broker();
}

#[test]
fn audit_log_lines_are_json_and_the_seed_filters_work() {
    let mut env = Env::with(Opts {
        audit: true,
        ..Default::default()
    });
    let u = env.add_user();
    let v = env.add_user();
    assert!(env.ssh(&u, "true").status.success());
    assert_eq!(
        env.ssh(&u, "echo \"quote\\\"d\"; exit 3").status.code(),
        Some(3)
    );
    assert!(env.ssh(&v, "true").status.success());
    assert!(env.podspawn(&["stop", &u.name]).status.success());
    let o = env.podspawn(&["remove-user", &v.name, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    env.wait_for("v's container to be removed", 20, || {
        env.containers_of(&v.name).is_empty()
    });
    let path = env.audit_path();
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o640));
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |user: &str, event: &str| {
        events
            .iter()
            .filter(|e| e["user"] == user && e["event"] == event)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(of(&u.name, "user.add").len(), 1);
    assert_eq!(of(&u.name, "connect").len(), 2);
    assert_eq!(of(&u.name, "disconnect").len(), 2);
    assert_eq!(of(&u.name, "container.create").len(), 1);
    assert_eq!(of(&u.name, "container.create")[0]["image"], common::IMAGE);
    let cmds = of(&u.name, "command");
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert_eq!(cmds[1]["exit_code"], 3);
    assert_eq!(cmds[1]["command"], "echo \"quote\\\"d\"; exit 3");
    let destroy = of(&u.name, "container.destroy");
    assert_eq!(destroy.len(), 1);
    assert_eq!(destroy[0]["reason"], "stop");
    assert_eq!(of(&v.name, "user.remove").len(), 1);
    for e in &events {
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        // user.* events are about accounts, netns.* about the user's namespace (all projects).
        let ev = e["event"].as_str().unwrap();
        if ev.starts_with("netns.") {
            assert!(e["container"].as_str().is_some(), "{e}");
        } else if !ev.starts_with("user.") {
            assert!(
                e["container"].as_str().is_some() && e["project"].as_str().is_some(),
                "{e}"
            );
        }
    }
    // The seed page's examples, as printed.
    let jq = |filter: &str| stdout(&run(Command::new("jq").arg("-c").arg(filter).arg(&path)));
    let connects = jq("select(.event == \"connect\")");
    assert_eq!(connects.lines().count(), 3, "{connects}");
    let users = jq(&format!("select(.user == \"{}\")", u.name));
    assert_eq!(
        users.lines().count(),
        events
            .iter()
            .filter(|e| e["user"] == u.name.as_str())
            .count()
    );
}

#[test]
fn list_status_and_metrics_match_what_was_created() {
    let mut env = Env::start();
    let a = env.add_user();
    let b = env.add_user();
    assert!(env.ssh(&a, "true").status.success());
    assert!(env.ssh(&b, "true").status.success());
    env.wait_for("both sessions in their grace period", 20, || {
        let s = env.sessions();
        [&a, &b]
            .iter()
            .all(|u| Env::session_of(&s, &u.name).is_some_and(|x| x["status"] == "grace_period"))
    });
    let s = env.sessions();
    for u in [&a, &b] {
        let x = Env::session_of(&s, &u.name).unwrap();
        assert_eq!(x["container"], format!("podspawn-{}", u.name));
        assert_eq!(x["container_id"], env.containers_of(&u.name)[0].as_str());
        assert_eq!(x["mode"], "grace-period");
        assert_eq!(x["connections"], 0);
        assert_eq!(x["project"], "");
    }
    let table = stdout(&env.podspawn(&["list"]));
    assert!(
        table.starts_with("USER") && table.contains("LIFETIME-LEFT") && table.contains("(default)"),
        "{table}"
    );
    let prom = stdout(&env.podspawn(&["status", "--prometheus"]));
    for line in [
        "podspawn_sessions{state=\"grace_period\"} 2",
        "podspawn_sessions{state=\"running\"} 0",
        "podspawn_sessions_total 2",
        "podspawn_containers_docker 2",
        "podspawn_connections 0",
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "missing {line:?} in\n{prom}"
        );
    }
    let human = stdout(&env.podspawn(&["status"]));
    assert!(human.contains("2 total"), "{human}");
    // The metrics endpoint, without systemd: --listen …
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Reap(
        Command::new(&env.bin)
            .arg("--config")
            .arg(&env.config)
            .args(["metrics-http", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("metrics endpoint: {e}"),
        }
    };
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    drop(server);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("podspawn_sessions_total 2"), "{resp}");
    // … and the way systemd's Accept=yes runs it: the connection on stdin/stdout.
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut one = Command::new(&env.bin)
        .arg("--config")
        .arg(&env.config)
        .arg("metrics-http")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ours.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    ours.read_to_string(&mut resp).unwrap();
    assert!(one.wait().unwrap().success());
    assert!(
        resp.starts_with("HTTP/1.")
            && resp.contains(" 200 ")
            && resp.contains("podspawn_containers_docker 2"),
        "{resp}"
    );
}
