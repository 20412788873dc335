//! Fault injection, end to end (real sshd, broker, accounts and Docker; run as root): what a
//! crash, a stop, a vanished engine, a full disk or an sshd restart leaves behind, what the user
//! reads, and that the next pass or login puts everything right.
//!
//! Already covered elsewhere, and only extended here:
//! * kill -9 of spawn, and SIGTERM/kill -9 of the broker *between* logins under a live session:
//!   `ssh_e2e.rs` (`kill_9_of_spawn_…`, `broker_restart_keeps_a_live_session`);
//! * a stopped broker seen by spawn run directly (`--timeout 2s`): `broker_limits.rs`; here the
//!   same through sshd's forced command, with a live session that must not notice the stop;
//! * an engine that is down when the broker starts: `engine_down.rs`; here the engine vanishes
//!   under a running broker with a live session, and the cleanup pass meets it too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{run, Env, Opts, TempDir, User};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a failed login wrote: exactly one line on stderr, nothing on stdout.
fn one_line(o: &Output) -> String {
    assert!(!o.status.success(), "the login should fail");
    assert_eq!(text(&o.stdout), "", "stdout of a failed login");
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line on stderr, got: {err:?}");
    err.trim_end().to_string()
}

fn kill(sig: &str, pid: u32) {
    let o = run(Command::new("kill").arg(sig).arg(pid.to_string()));
    assert!(o.status.success(), "kill {sig} {pid}: {}", text(&o.stderr));
}

/// Waits for `child` at most `secs`, then kills it and fails.
fn wait_bounded(child: &mut Child, secs: u64, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `child`'s output, waiting at most `secs`.
fn output_bounded(mut child: Child, secs: u64, what: &str) -> (Output, Duration) {
    let t = Instant::now();
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as _));
    let err = read(child.stderr.take().map(|s| Box::new(s) as _));
    let status = wait_bounded(&mut child, secs, what);
    let took = t.elapsed();
    (
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        took,
    )
}

/// A process this test started, killed (SIGKILL) and reaped when dropped, also on failure.
struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test never leaves it stopped.
struct ContOnDrop(u32);

impl Drop for ContOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.0.to_string())
            .status();
    }
}

/// A login running `cat` (then `exit 7`): lines written come back, read with a bounded wait.
struct Live {
    child: Child,
    input: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Live {
    fn start(env: &Env, u: &User) -> Live {
        let mut c = env.ssh_cmd(u);
        c.arg(format!("{}@127.0.0.1", u.name))
            .arg("cat; exit 7")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let input = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut live = Live {
            child,
            input,
            lines,
        };
        live.echo("started");
        live
    }

    /// Writes `s` and expects it back within 20 s.
    fn echo(&mut self, s: &str) {
        let input = self.input.as_mut().unwrap();
        input
            .write_all(format!("{s}\n").as_bytes())
            .unwrap_or_else(|e| panic!("writing {s:?} to the live session: {e}"));
        input.flush().unwrap();
        match self.lines.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => assert_eq!(l, s, "the live session echoed something else"),
            Err(e) => panic!("the live session did not echo {s:?} within 20s ({e})"),
        }
    }

    /// Ends the input; the session's exit status (the command's `exit 7`).
    fn finish(mut self) -> ExitStatus {
        drop(self.input.take());
        wait_bounded(&mut self.child, 30, "the live session")
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// state.db passes `PRAGMA integrity_check` (and its rows can be read).
fn assert_integrity(db: &Path) {
    assert!(db.exists(), "{} does not exist", db.display());
    let c = rusqlite::Connection::open(db).unwrap();
    let r: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        r,
        vec!["ok".to_string()],
        "integrity_check of {}",
        db.display()
    );
}

/// The (user, project) of every session row.
fn rows(db: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT user, project FROM sessions").unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn instance_of(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT value FROM meta WHERE key='instance'", [], |r| {
        r.get(0)
    })
    .unwrap()
}

fn db_path(env: &Env) -> PathBuf {
    env.root.join("state/state.db")
}

fn docker_ids(args: &[&str]) -> Vec<String> {
    let o = run(Command::new("docker").args(args));
    assert!(o.status.success(), "docker {args:?}: {}", text(&o.stderr));
    text(&o.stdout).lines().map(str::to_string).collect()
}

/// Containers and networks carrying this installation's instance label.
fn objects_of_instance(instance: &str) -> (Vec<String>, Vec<String>) {
    let f = format!("label=podspawn-instance={instance}");
    (
        docker_ids(&["ps", "-aq", "--filter", &f]),
        docker_ids(&["network", "ls", "-q", "--filter", &f]),
    )
}

/// An ssh login running `cmd` in the background.
fn ssh_bg(env: &Env, u: &User, cmd: &str) -> Child {
    let mut c = env.ssh_cmd(u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn assert_login_works(env: &Env, u: &User, what: &str) {
    let o = env.ssh(u, "echo works");
    assert!(
        o.status.success() && text(&o.stdout) == "works\n",
        "{what}: login of {}: {}\n--- broker log ---\n{}",
        u.name,
        text(&o.stderr),
        env.broker_log()
    );
}

/// The pid of the private sshd (its PidFile).
fn sshd_pid(env: &Env) -> u32 {
    let s = std::fs::read_to_string(env.root.join("sshd.pid")).unwrap();
    s.trim().parse().unwrap()
}

fn listening_count(env: &Env) -> usize {
    env.sshd_log().matches("Server listening on").count()
}

/// SIGHUP to the private sshd (it re-executes itself, as `systemctl reload ssh` does) and waits
/// until it listens again.
fn reload_sshd(env: &Env) {
    let before = listening_count(env);
    kill("-HUP", sshd_pid(env));
    env.wait_for("sshd to listen again after SIGHUP", 20, || {
        listening_count(env) > before
    });
}

/// Gives spawn, as sshd's forced command, a short bounded wait for the broker (instead of the
/// default 120 s) and reloads sshd.
fn short_spawn_timeout(env: &Env, timeout: &str) {
    let path = env.root.join("sshd_config");
    let conf = std::fs::read_to_string(&path).unwrap();
    let with = conf.replace(
        " spawn --socket ",
        &format!(" spawn --timeout {timeout} --socket "),
    );
    assert_ne!(conf, with, "no ForceCommand with spawn --socket in {conf}");
    std::fs::write(&path, with).unwrap();
    reload_sshd(env);
}

// ---------------------------------------------------------------------------------------------

/// An image whose start command holds just before the account is finished (in `chown`), after
/// marking `/tmp/podspawn-fault-holding`, until it is killed: the broker then waits for the ready
/// line with the container created and no state row yet. Made with `docker commit` (no builder
/// needed); the image and the container it is made from are removed on drop.
struct SlowStartImage {
    tag: String,
    builder: String,
}

impl SlowStartImage {
    fn build(id: &str) -> SlowStartImage {
        let img = SlowStartImage {
            tag: format!("podspawn-test-slowstart-{id}:latest"),
            builder: format!("podspawn-test-slowstart-{id}-build"),
        };
        let dir = TempDir::new("slowstart");
        let wrapper = dir.path("chown");
        std::fs::write(
            &wrapper,
            "#!/bin/sh\n: > /tmp/podspawn-fault-holding\nwhile :; do sleep 1; done\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let docker = |args: &[&str]| {
            let o = run(Command::new("docker").args(args));
            assert!(o.status.success(), "docker {args:?}: {}", text(&o.stderr));
        };
        docker(&[
            "create",
            "--name",
            &img.builder,
            "--label",
            "podspawn-test=1",
            common::IMAGE,
            "true",
        ]);
        docker(&[
            "cp",
            &wrapper.display().to_string(),
            &format!("{}:/usr/bin/chown", img.builder),
        ]);
        docker(&["commit", &img.builder, &img.tag]);
        docker(&["rm", "-f", &img.builder]);
        img
    }
}

impl Drop for SlowStartImage {
    fn drop(&mut self) {
        for args in [["rm", "-f", &self.builder], ["rmi", "-f", &self.tag]] {
            let _ = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn kill_9_of_the_broker_while_creating_a_container() {
    let mut env = Env::start();
    let u = env.add_user();
    let img = SlowStartImage::build(&env.id);
    let users = env.root.join("users");
    std::fs::create_dir_all(&users).unwrap();
    let overrides = users.join(format!("{}.yaml", u.name));
    std::fs::write(&overrides, format!("image: {}\n", img.tag)).unwrap();
    let db = db_path(&env);
    let instance = instance_of(&db);

    let login = ssh_bg(&env, &u, "echo never");
    // In the middle of creating: the container exists (with its network) and waits in its start
    // command; the broker waits for it with the user's lock held and no state row written.
    env.wait_for("the new container to hold in its start command", 60, || {
        env.containers_of(&u.name).iter().any(|id| holding(id))
    });
    assert!(
        rows(&db).iter().all(|(user, _)| *user != u.name),
        "a state row before the container was ready"
    );
    assert_eq!(env.networks_of(&u.name).len(), 1, "the session's network");
    env.stop_broker(true);

    // The login ends at once, with one line that says what happened.
    let (o, took) = output_bounded(login, 30, "the login whose broker was killed");
    let line = one_line(&o);
    assert_eq!(
        line,
        format!("podspawn: {}", podspawn::roles::spawn::SERVICE_GONE),
        "{line}"
    );
    assert!(took < Duration::from_secs(25), "took {took:?}");
    assert_eq!(
        env.containers_of(&u.name).len(),
        1,
        "the half-made container is there until the next pass"
    );

    // One cleanup pass (the broker still down) removes the half-made container and its network.
    let o = env.podspawn(&["cleanup"]);
    assert!(
        o.status.success(),
        "cleanup: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("(orphan)"), "{}", text(&o.stdout));
    let (containers, networks) = objects_of_instance(&instance);
    assert!(containers.is_empty(), "containers leaked: {containers:?}");
    assert!(networks.is_empty(), "networks leaked: {networks:?}");
    assert!(rows(&db).is_empty(), "rows: {:?}", rows(&db));
    assert_integrity(&db);

    // Once more, and this time the restarted broker meets the half-made container itself (no
    // pass in between): the user's next login replaces it and its network.
    env.start_broker();
    let login = ssh_bg(&env, &u, "echo never");
    env.wait_for(
        "the second container to hold in its start command",
        60,
        || env.containers_of(&u.name).iter().any(|id| holding(id)),
    );
    let half = env.containers_of(&u.name);
    env.stop_broker(true);
    let (o, _) = output_bounded(login, 30, "the second login whose broker was killed");
    assert_eq!(
        one_line(&o),
        format!("podspawn: {}", podspawn::roles::spawn::SERVICE_GONE)
    );
    std::fs::remove_file(&overrides).unwrap();
    env.start_broker();
    assert_login_works(&env, &u, "after kill -9 during create");
    let now = env.containers_of(&u.name);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(
        !half.contains(&now[0]),
        "the half-made container was reused"
    );
    assert_eq!(env.networks_of(&u.name).len(), 1);
    assert_eq!(rows(&db).len(), 1);
    assert_integrity(&db);
}

/// Whether container `id` holds in the start command of [`SlowStartImage`].
fn holding(id: &str) -> bool {
    run(Command::new("docker").args(["exec", id, "test", "-e", "/tmp/podspawn-fault-holding"]))
        .status
        .success()
}

#[test]
fn kill_9_of_the_cleanup_daemon_in_the_middle_of_a_pass() {
    let mut env = Env::start();
    let users: Vec<User> = (0..3).map(|_| env.add_user()).collect();
    for u in &users {
        let o = env.ssh(u, "true");
        assert!(o.status.success(), "login: {}", text(&o.stderr));
    }
    env.wait_for("three sessions in their grace period", 20, || {
        let list = env.sessions();
        users
            .iter()
            .all(|u| Env::session_of(&list, &u.name).is_some_and(|s| s["status"] == "grace_period"))
    });
    // Only the cleanup daemon reaps from here on (the broker's sweeper would, too).
    env.stop_broker(false);
    let db = db_path(&env);
    let instance = instance_of(&db);
    assert_eq!(rows(&db).len(), 3);
    // Nine orphans besides the three expired sessions: labelled containers without a row.
    let lab = |k: &str, v: &str| format!("--label={k}={v}");
    for i in 0..9 {
        let owner = &users[i % users.len()].name;
        let o = run(Command::new("docker").args([
            "run",
            "-d",
            "--name",
            &format!("podspawn-{owner}-orphan{i}"),
            &lab("managed-by", "podspawn"),
            &lab("podspawn-user", owner),
            &lab("podspawn-project", ""),
            &lab("podspawn-instance", &instance),
            common::IMAGE,
            "sleep",
            "infinity",
        ]));
        assert!(o.status.success(), "docker run: {}", text(&o.stderr));
    }
    let total = objects_of_instance(&instance).0.len();
    // Three sessions, their users' three network-namespace holders, nine orphans.
    assert_eq!(total, 15);
    // The grace periods are over (set in the past, with the broker down, instead of waiting).
    let c = rusqlite::Connection::open(&db).unwrap();
    let n = c
        .execute(
            "UPDATE sessions SET grace_expiry = strftime('%s','now') - 1 WHERE status = 'grace_period'",
            [],
        )
        .unwrap();
    assert_eq!(n, 3, "three sessions in their grace period");
    drop(c);

    let log = std::fs::File::create(env.root.join("cleanup.log")).unwrap();
    let mut daemon = Proc(Some(
        Command::new(&env.bin)
            .arg("--config")
            .arg(&env.config)
            .args(["cleanup", "--daemon", "--interval", "1h"])
            .env("PODSPAWN_LOG", "debug")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));
    // kill -9 as soon as the first removal is seen.
    let t = Instant::now();
    loop {
        if objects_of_instance(&instance).0.len() < total {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the cleanup daemon removed nothing within 60s: {}",
            std::fs::read_to_string(env.root.join("cleanup.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.kill9();
    let left = objects_of_instance(&instance).0.len();
    eprintln!(
        "killed the cleanup daemon with {left} of {total} containers and {} of 3 rows left",
        rows(&db).len()
    );
    assert!(
        left > 0,
        "the daemon finished its pass before the kill: the test interrupted nothing"
    );

    // One more pass: nothing left, the database intact.
    let o = env.podspawn(&["cleanup"]);
    assert!(
        o.status.success(),
        "cleanup: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        text(&o.stdout).contains("Cleanup pass complete"),
        "{}",
        text(&o.stdout)
    );
    let (containers, networks) = objects_of_instance(&instance);
    assert!(containers.is_empty(), "containers leaked: {containers:?}");
    assert!(networks.is_empty(), "networks leaked: {networks:?}");
    assert!(rows(&db).is_empty(), "rows left: {:?}", rows(&db));
    assert_integrity(&db);
    env.start_broker();
    assert_login_works(&env, &users[0], "after kill -9 of the cleanup daemon");
}

#[test]
fn a_stopped_broker_bounds_logins_and_recovers_after_sigcont() {
    let mut env = Env::start();
    let u = env.add_user();
    let v = env.add_user();
    short_spawn_timeout(&env, "5s");
    let mut live = Live::start(&env, &u);
    let broker = env.broker_pid().unwrap();

    kill("-STOP", broker);
    let cont = ContOnDrop(broker);
    // A new login (a new container) and a second login of u (a reattach) both end within the
    // bounded wait with one line.
    for who in [&v, &u] {
        let (o, took) = output_bounded(
            ssh_bg(&env, who, "echo never"),
            60,
            "a login to a stopped broker",
        );
        let line = one_line(&o);
        assert!(
            line.starts_with("podspawn: the podspawn service did not answer within 5s;"),
            "{line}"
        );
        // Not before spawn's 5 s, and well before forever (the broker never wakes up by itself);
        // the slack is for a loaded machine's ssh handshake.
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(45),
            "took {took:?}"
        );
    }
    // The live session does not notice: its bytes never pass through the broker.
    live.echo("while stopped");

    kill("-CONT", broker);
    drop(cont);
    assert_login_works(&env, &v, "after SIGCONT");
    assert_login_works(&env, &u, "after SIGCONT");
    live.echo("after");
    assert_eq!(live.finish().code(), Some(7));
    // The requests abandoned during the stop left no lease behind: nobody is connected.
    env.wait_for("every lease to end", 20, || {
        env.sessions()
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["connections"] == 0)
    });
    assert_eq!(env.broker_pid(), Some(broker));
    assert_integrity(&db_path(&env));
}

/// Points `link` at `target`, atomically.
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[test]
fn the_engine_vanishes_under_a_running_broker() {
    let real = podspawn::engine::http::engine_socket();
    assert!(
        real.exists(),
        "this test needs a running Docker engine at {}",
        real.display()
    );
    let dir = TempDir::under(Path::new("/var/tmp"), "podspawn-test-engine");
    let link = dir.join("engine.sock");
    point(&link, &real);
    let host = format!("unix://{}", link.display());
    let mut env = Env::with(Opts {
        broker_env: vec![("DOCKER_HOST".into(), host.clone())],
        ..Default::default()
    });
    let u = env.add_user();
    let v = env.add_user();
    let mut live = Live::start(&env, &u);
    let broker = env.broker_pid().unwrap();

    // The engine goes away (the broker's connection to it with it).
    point(&link, &dir.join("nothing.sock"));
    let want = format!("podspawn: {}", podspawn::engine::ENGINE_DOWN);
    // A new user and a second login of u: one clear line each, at once.
    for who in [&v, &u] {
        let (o, took) = output_bounded(
            ssh_bg(&env, who, "echo never"),
            100,
            "a login without engine",
        );
        assert_eq!(one_line(&o), want);
        // Well before spawn's 120 s bounded wait: the broker answers, it does not hang.
        assert!(took < Duration::from_secs(60), "took {took:?}");
    }
    // The live session runs on: its stream is the engine's upgraded connection, made before.
    live.echo("engine gone");
    // A cleanup pass without the engine fails with one line and forgets nothing.
    let o = run(Command::new(&env.bin)
        .arg("--config")
        .arg(&env.config)
        .arg("cleanup")
        .env("DOCKER_HOST", &host));
    assert!(!o.status.success(), "cleanup without the engine succeeded");
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line from cleanup: {err:?}");
    assert!(
        err.starts_with("podspawn cleanup: cannot reach the Docker engine at ")
            && err.contains("systemctl start docker"),
        "{err}"
    );
    assert_eq!(
        rows(&db_path(&env)).len(),
        1,
        "cleanup without the engine changed state"
    );

    // The engine returns: the same broker serves everybody.
    point(&link, &real);
    assert_login_works(&env, &v, "after the engine came back");
    assert_login_works(&env, &u, "after the engine came back");
    live.echo("engine back");
    assert_eq!(live.finish().code(), Some(7));
    assert_eq!(env.broker_pid(), Some(broker));
    assert!(Path::new(&format!("/proc/{broker}")).exists());
    assert_integrity(&db_path(&env));
    drop(env);
    drop(dir);
}

/// The broker in a private mount namespace with a small tmpfs over the state directory.
fn broker_on_small_state_dir(env: &Env, size: &str) -> Proc {
    let state = env.root.join("state");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.root.join("broker.log"))
        .unwrap();
    let p = Proc(Some(
        // Slave propagation: the host's unmounts (Docker's container and network mounts)
        // reach this namespace, so it never pins them; its own tmpfs stays private to it.
        Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg(
                "mount -t tmpfs -o size=\"$0\",mode=0700 podspawn-test-state \"$1\" && \
                 exec \"$2\" --config \"$3\" serve --listen \"$4\"",
            )
            .arg(size)
            .arg(&state)
            .arg(&env.bin)
            .arg(&env.config)
            .arg(&env.socket)
            .env("PODSPAWN_LOG", "debug")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));
    env.wait_for("the broker on a small state directory", 20, || {
        std::os::unix::net::UnixStream::connect(&env.socket).is_ok()
    });
    p
}

/// A consistent copy of the broker's state.db (and -wal) from its mount namespace, taken while it
/// is stopped. (SQLite resolves the /proc/PID/root link itself, so it cannot open it there.)
fn snapshot_db(env: &Env, broker: &Proc) -> TempDir {
    let state = PathBuf::from(format!(
        "/proc/{}/root{}",
        broker.pid(),
        env.root.join("state").display()
    ));
    kill("-STOP", broker.pid());
    let _cont = ContOnDrop(broker.pid());
    let copy = TempDir::new("statecopy");
    for f in ["state.db", "state.db-wal"] {
        let from = state.join(f);
        if f == "state.db" || from.exists() {
            std::fs::copy(&from, copy.path(f))
                .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
    }
    copy
}

#[test]
fn a_full_state_directory_gives_a_clear_error_and_no_corrupt_database() {
    let mut env = Env::start();
    let u = env.add_user();
    let w = env.add_user();
    env.stop_broker(false);
    let broker = broker_on_small_state_dir(&env, "1m");
    // The broker's view of its state directory (its mount namespace).
    let state = PathBuf::from(format!(
        "/proc/{}/root{}",
        broker.pid(),
        env.root.join("state").display()
    ));
    assert!(state.join("state.db").exists());
    assert_login_works(&env, &w, "before the state directory filled up");
    assert_integrity(&snapshot_db(&env, &broker).path("state.db"));

    // Fill it.
    let fill = state.join("fill");
    let mut f = std::fs::File::create(&fill).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let e = loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            break e;
        }
    };
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    drop(f);

    // A new session cannot be recorded: one line that says why, and nothing half-made is left.
    let (o, _) = output_bounded(
        ssh_bg(&env, &u, "echo never"),
        60,
        "a login with a full state directory",
    );
    let line = one_line(&o);
    assert!(
        line.starts_with("podspawn: the state database cannot be written: its file system is full"),
        "{line}"
    );
    assert!(
        env.broker_log()
            .contains("open failed: the state database cannot be written: its file system is full"),
        "{}",
        env.broker_log()
    );
    assert!(
        env.containers_of(&u.name).is_empty(),
        "a container without a row"
    );
    assert!(
        env.networks_of(&u.name).is_empty(),
        "a network without a row"
    );
    let copy = snapshot_db(&env, &broker);
    assert_integrity(&copy.path("state.db"));
    assert_eq!(rows(&copy.path("state.db")).len(), 1);

    // Space again: everything works, and the database is intact.
    std::fs::remove_file(&fill).unwrap();
    assert_login_works(&env, &u, "after freeing space");
    assert_login_works(&env, &w, "after freeing space");
    let copy = snapshot_db(&env, &broker);
    assert_integrity(&copy.path("state.db"));
    assert_eq!(rows(&copy.path("state.db")).len(), 2);
    drop(broker);
}

#[test]
fn sshd_reloaded_and_restarted_under_live_sessions() {
    let mut env = Env::start();
    let u = env.add_user();
    let v = env.add_user();
    let mut a = Live::start(&env, &u);
    let mut b = Live::start(&env, &v);

    // Reload (SIGHUP: sshd re-executes itself): the connections' own processes live on.
    let sshd = sshd_pid(&env);
    reload_sshd(&env);
    assert_eq!(sshd_pid(&env), sshd, "SIGHUP re-executes in place");
    a.echo("after reload");
    b.echo("after reload");
    assert_login_works(&env, &u, "after an sshd reload");

    // Restart: the listener stops (SIGTERM) and a new one starts on the same port and config.
    kill("-TERM", sshd);
    env.wait_for("the old sshd to stop listening", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_err()
    });
    a.echo("listener gone");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(env.root.join("sshd.log"))
        .unwrap();
    let _new = Proc(Some(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(env.root.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));
    env.wait_for("the new sshd to listen", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_ok()
    });
    a.echo("after restart");
    b.echo("after restart");
    assert_login_works(&env, &v, "after an sshd restart");
    // Both sessions still hold their leases (the logins in between have ended), and end normally.
    env.wait_for("one connection each: the live sessions", 20, || {
        let list = env.sessions();
        [&u, &v]
            .iter()
            .all(|who| Env::session_of(&list, &who.name).is_some_and(|s| s["connections"] == 1))
    });
    assert_eq!(a.finish().code(), Some(7));
    assert_eq!(b.finish().code(), Some(7));
    env.wait_for("the leases to end", 20, || {
        env.sessions()
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["connections"] == 0)
    });
}
