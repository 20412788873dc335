//! What users expect from a normal ssh session (issue 11), through a real sshd and the real broker.
//! Agent forwarding into the container:
//! `ssh -A` gives the session an `SSH_AUTH_SOCK` that reaches the client's agent; `git push` over
//! ssh from inside the container authenticates with a key that only the client's agent holds;
//! the socket is the user's alone and gone when the connection ends; without `-A` there is none.
//! Also the client's SendEnv/SetEnv variables, filtered by `session.accept_env`, and `ssh -t` with
//! a command (a terminal, the client's TERM, the command's exit code). Run as root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{run, Env, User};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test image plus ssh, ssh-add and git, copied from the host (labelled podspawn-test=1).
const AGENT_IMAGE: &str = "podspawn-test-agent:latest";

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn build_image() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = run(Command::new("sh")
        .arg(repo.join("tests/support/build-test-image.sh"))
        .arg(AGENT_IMAGE)
        .env("PODSPAWN_IMAGE_EXTRA", "ssh ssh-add git"));
    assert!(o.status.success(), "build image: {}", text(&o));
}

/// A child process killed (and reaped) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An ssh-agent of the test's own, holding one fresh key that no podspawn user has registered.
struct Agent {
    sock: PathBuf,
    pubkey: PathBuf,
    _child: Reaped,
}

fn start_agent(dir: &Path) -> Agent {
    let key = dir.join("agent_key");
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "agent-only", "-f"])
        .arg(&key));
    assert!(o.status.success(), "ssh-keygen: {}", text(&o));
    let sock = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Reaped(child);
    let t = Instant::now();
    while !sock.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "ssh-agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = run(Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock));
    assert!(o.status.success(), "ssh-add: {}", text(&o));
    Agent {
        sock,
        pubkey: key.with_extension("pub"),
        _child: child,
    }
}

fn fingerprint(pubkey: &Path) -> String {
    let o = run(Command::new("ssh-keygen").arg("-lf").arg(pubkey));
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// `ssh [-A] user@host cmd`, with the test's agent in the environment either way, so that only
/// `-A` makes the difference.
fn ssh(env: &Env, user: &User, agent: &Agent, forward: bool, cmd: &str) -> std::process::Output {
    let mut c = env.ssh_cmd(user);
    c.args(["-o", "IdentitiesOnly=yes"])
        .arg(if forward { "-A" } else { "-a" })
        .arg(format!("{}@127.0.0.1", user.name))
        .arg(cmd)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(Stdio::null());
    run(&mut c)
}

fn set_image(env: &Env, user: &User) {
    env.set_overrides(user, &format!("image: {AGENT_IMAGE}\n"));
}

fn session_dir_entries(env: &Env, user: &User) -> Vec<String> {
    match std::fs::read_dir(env.root.join("run/sessions").join(&user.name)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_forwarded_agent_reaches_the_container_and_only_its_user() {
    build_image();
    let mut env = Env::start();
    let alice = env.add_user();
    let bob = env.add_user();
    set_image(&env, &alice);
    set_image(&env, &bob);
    let work = env.root.join("agent");
    std::fs::create_dir_all(&work).unwrap();
    let agent = start_agent(&work);
    let fp = fingerprint(&agent.pubkey);

    // With -A: SSH_AUTH_SOCK points into the mounted agent directory, and the client's key is there.
    let o = ssh(
        &env,
        &alice,
        &agent,
        true,
        "echo \"sock=$SSH_AUTH_SOCK\"; ssh-add -l",
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}\n{}", env.broker_log());
    assert!(out.contains("sock=/.podspawn/session/"), "{out}");
    assert!(out.contains(&fp), "the agent's key should be listed: {out}");

    // The socket went with the connection, on the host and so in the container.
    assert_eq!(session_dir_entries(&env, &alice), Vec::<String>::new());

    // Without -A: no SSH_AUTH_SOCK, and nothing in the directory.
    let o = ssh(
        &env,
        &alice,
        &agent,
        false,
        "echo \"sock=[$SSH_AUTH_SOCK]\"; ls -A /.podspawn/session; ssh-add -l; echo rc=$?",
    );
    let out = text(&o);
    assert!(out.contains("sock=[]"), "{out}");
    assert!(out.contains("rc=2"), "ssh-add must find no agent: {out}");

    // While alice's -A session lives: her socket is hers (0700 directory, her uid), another uid
    // in her container cannot use it, and bob's container does not see it at all.
    let mut c = env.ssh_cmd(&alice);
    c.args(["-o", "IdentitiesOnly=yes", "-A"])
        .arg(format!("{}@127.0.0.1", alice.name))
        .arg("echo \"ready $SSH_AUTH_SOCK $(stat -c %a:%u /.podspawn/session) $(id -u)\"; sleep 60")
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut live = Reaped(c.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(live.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        parts.first(),
        Some(&"ready"),
        "{line:?}\n{}",
        env.broker_log()
    );
    let sock = parts[1];
    let (mode_owner, uid) = (parts[2], parts[3]);
    assert_eq!(mode_owner, format!("700:{uid}"), "{line}");
    let container = env.containers_of(&alice.name)[0].clone();
    let o = run(Command::new("docker").args([
        "exec",
        "-u",
        "65534:65534",
        "-e",
        &format!("SSH_AUTH_SOCK={sock}"),
        &container,
        "ssh-add",
        "-l",
    ]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "another uid reached the agent: {}",
        text(&o)
    );
    let o = ssh(
        &env,
        &bob,
        &agent,
        false,
        "ls -A /.podspawn/session; echo done",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "done",
        "{}",
        text(&o)
    );
    drop(live);
}

/// `git push` from inside the container to a second sshd (on the host, reached at the user's
/// network gateway), authenticating with a key that exists only in the client's agent.
#[test]
fn git_push_from_the_container_uses_the_forwarded_key() {
    build_image();
    let mut env = Env::start();
    let alice = env.add_user();
    set_image(&env, &alice);
    let work = env.root.join("agent");
    std::fs::create_dir_all(&work).unwrap();
    let agent = start_agent(&work);

    // The container and its network exist after a first login; the gateway is the host.
    let o = ssh(&env, &alice, &agent, false, "true");
    assert!(o.status.success(), "{}", text(&o));
    let nets = env.networks_of(&alice.name);
    assert_eq!(nets.len(), 1, "{nets:?}");
    let o = run(Command::new("docker").args([
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &nets[0],
    ]));
    let gw = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!gw.is_empty(), "no gateway: {}", text(&o));

    // A bare repository behind a private sshd that accepts only the agent's key.
    let repo = work.join("repo.git");
    let o = run(Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&repo));
    assert!(o.status.success(), "{}", text(&o));
    std::fs::copy(&agent.pubkey, work.join("authorized_keys")).unwrap();
    let hostkey = work.join("host_key");
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&hostkey));
    assert!(o.status.success());
    let port = {
        let l = std::net::TcpListener::bind((gw.as_str(), 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = work.join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress {gw}\nHostKey {hk}\nPidFile {w}/sshd.pid\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nAuthorizedKeysFile {w}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
            hk = hostkey.display(),
            w = work.display()
        ),
    )
    .unwrap();
    let _git_sshd = Reaped(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while std::net::TcpStream::connect((gw.as_str(), port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "git sshd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let script = format!(
        "set -e; cd ~; rm -rf w; git init -q w; cd w; \
         git -c user.email=a@example.org -c user.name=a commit -q --allow-empty -m from-the-container; \
         GIT_SSH_COMMAND='ssh -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR' \
         git push -q root@{gw}:{repo} HEAD:refs/heads/main; echo pushed",
        repo = repo.display()
    );
    // Without the agent the push is refused ...
    let o = ssh(&env, &alice, &agent, false, &script);
    assert!(!text(&o).contains("pushed"), "{}", text(&o));
    // ... with it, it lands.
    let o = ssh(&env, &alice, &agent, true, &script);
    assert!(
        text(&o).contains("pushed"),
        "{}\n{}",
        text(&o),
        env.broker_log()
    );
    let o =
        run(Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(["log", "--format=%s", "main"]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "from-the-container"
    );
}

/// SendEnv/SetEnv: what session.accept_env (and sshd's AcceptEnv, written from it) allows
/// arrives; anything else does not.
#[test]
fn client_variables_follow_accept_env() {
    let mut env = Env::start();
    let alice = env.add_user();
    let mut c = env.ssh_cmd(&alice);
    c.args(["-o", "SetEnv=LC_MESSAGES=C.UTF-8 LANGUAGE=de:en EDITOR=vim"])
        .arg(format!("{}@127.0.0.1", alice.name))
        .arg("echo \"[$LC_MESSAGES][$LANGUAGE][$EDITOR]\"")
        .stdin(Stdio::null());
    let o = run(&mut c);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "[C.UTF-8][de:en][]",
        "{}",
        text(&o)
    );
}

/// `ssh -t host cmd`: the command gets a terminal and the client's TERM; its exit code comes back.
#[test]
fn a_command_with_a_terminal() {
    let mut env = Env::start();
    let alice = env.add_user();
    let mut c = env.ssh_cmd(&alice);
    c.arg("-tt")
        .arg(format!("{}@127.0.0.1", alice.name))
        .arg("test -t 0 && test -t 1 && echo \"tty term=$TERM\"; exit 7")
        .env("TERM", "screen-256color")
        .stdin(Stdio::null());
    let o = run(&mut c);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tty term=screen-256color"),
        "{}",
        text(&o)
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
}

/// A command killed by a signal ends the SSH session with that signal (sshd sends exit-signal,
/// as for a command it ran itself); `exit 143` stays an exit status.
#[test]
fn a_killed_command_reports_its_signal() {
    let (_dir, helper) = common::installed_helper();
    let mut env = Env::with(common::Opts {
        extra: format!("helper:\n  path: {}\n", helper.display()),
        ..common::Opts::default()
    });
    let alice = env.add_user();
    let ssh_v = |cmd: &str| {
        let mut c = env.ssh_cmd(&alice);
        c.arg("-v")
            .arg(format!("{}@127.0.0.1", alice.name))
            .arg(cmd)
            .stdin(Stdio::null());
        run(&mut c)
    };
    let o = ssh_v("echo before; kill -TERM $$; echo after");
    let out = text(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "before\n", "{out}");
    assert!(
        !out.contains("Terminated"),
        "nothing but the command's output: {out}"
    );
    assert!(
        out.contains("rtype exit-signal"),
        "sshd should report a signal: {out}\n{}",
        env.broker_log()
    );
    assert_eq!(
        o.status.code(),
        Some(255),
        "OpenSSH's ssh exits 255 on a signal"
    );
    let o = ssh_v("exit 143");
    let out = text(&o);
    assert!(
        out.contains("rtype exit-status") && !out.contains("rtype exit-signal"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(143));
    // Nothing is left in the session directory.
    let dir = env.root.join("run/sessions").join(&alice.name);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A client that vanishes hangs up its command, also on an image without `tr` and `grep` (the
/// mounted helper finds the session's processes).
#[test]
fn a_vanished_client_hangs_up_its_command_on_a_minimal_image() {
    let (_dir, helper) = common::installed_helper();
    let image = format!("podspawn-test-notr-{}:latest", std::process::id());
    let _image = common::image_without(&image, &["/usr/bin/tr", "/usr/bin/grep"]);
    let mut env = Env::with(common::Opts {
        extra: format!("helper:\n  path: {}\n", helper.display()),
        ..common::Opts::default()
    });
    let u = env.add_user();
    env.set_overrides(&u, &format!("image: {image}\n"));
    let o = env.ssh(&u, "command -v tr grep; echo none");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "none",
        "{}",
        text(&o)
    );
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("echo started; sleep 302")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = Reaped(c.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    let id = env.containers_of(&u.name).pop().unwrap();
    let procs = || {
        let o = run(Command::new("docker").args(["exec", &id, "ps", "-eo", "args"]));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(procs().contains("sleep 302"));
    drop(child);
    env.wait_for("the command to end after the client vanished", 30, || {
        !procs().contains("sleep 302")
    });
}
