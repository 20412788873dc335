//! TCP forwarding into the user's own network namespace, end to end: a private sshd running as a
//! copy named after the test (so it has its own PAM service, with pam_podspawn.so of this build in
//! its session stack), the broker, real OpenSSH clients and Docker.
//!
//! What a user of VS Code Remote, Jupyter or a web app does: start a server in the container over
//! one channel, reach it with `-L`, `-D` or `-W` over another; `-R` lets the container reach the
//! laptop. Forwards land in the user's namespace, never on the host's loopback nor in another
//! user's namespace; a forwarding-only connection (`ssh -N`) keeps the container; a podspawn
//! user whose module fails is refused; everybody else is left alone by the module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The port the container's server listens on, inside the user's namespace.
const PORT: u16 = 8765;

fn forwarding_env(grace: &'static str) -> Env {
    Env::with(Opts {
        grace,
        forwarding: true,
        ..Opts::default()
    })
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A child that is killed when dropped (a held ssh connection).
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hold(env: &Env, user: &User, args: &[&str]) -> Held {
    let mut c = env.ssh_cmd(user);
    c.args(["-o", "ExitOnForwardFailure=yes"])
        .args(args)
        .arg(format!("{}@127.0.0.1", user.name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Held(c.spawn().unwrap())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A static busybox in the user's container (scp'd in: the test image has no server of its own).
fn install_busybox(env: &Env, user: &User) {
    let mut scp = Command::new("scp");
    scp.args(env.ssh_opts(user))
        .arg("-P")
        .arg(env.port.to_string())
        .arg("/bin/busybox")
        .arg(format!("{}@127.0.0.1:/tmp/busybox", user.name));
    let o = run(&mut scp);
    assert!(o.status.success(), "scp busybox: {}", text(&o));
    let o = env.ssh(user, "chmod 755 /tmp/busybox && /tmp/busybox true");
    assert!(o.status.success(), "busybox: {}", text(&o));
}

/// `busybox httpd` on 127.0.0.1:PORT in the user's container, serving /x = `body`, over its own
/// ssh channel (the VS Code pattern: the server lives as long as that channel).
fn serve(env: &Env, user: &User, body: &str) -> Held {
    let mut c = env.ssh_cmd(user);
    c.arg(format!("{}@127.0.0.1", user.name))
        .arg(format!(
            "mkdir -p /tmp/www && echo {body} > /tmp/www/x && exec /tmp/busybox httpd -f -p 127.0.0.1:{PORT} -h /tmp/www"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Held(c.spawn().unwrap())
}

const GET: &[u8] = b"GET /x HTTP/1.0\r\n\r\n";

/// `ssh -W 127.0.0.1:<port>` with an HTTP request: the forward sshd opens in the user's namespace.
fn via_w(env: &Env, user: &User, port: u16) -> std::process::Output {
    let mut c = env.ssh_cmd(user);
    c.arg("-W")
        .arg(format!("127.0.0.1:{port}"))
        .arg(format!("{}@127.0.0.1", user.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(GET);
    child.wait_with_output().unwrap()
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(GET)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// An HTTP GET of 127.0.0.1:`target` through the SOCKS5 proxy of `ssh -D` on `proxy`.
fn socks_get(proxy: u16, target: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", proxy))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&[5, 1, 0])?;
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello)?;
    let [hi, lo] = target.to_be_bytes();
    s.write_all(&[5, 1, 0, 1, 127, 0, 0, 1, hi, lo])?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply)?;
    if reply[1] != 0 {
        return Err(std::io::Error::other(format!("SOCKS reply {}", reply[1])));
    }
    s.write_all(GET)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A listener on the host's loopback that says `who` and counts who came.
fn host_listener(who: &'static str) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(format!("{who}\n").as_bytes());
        }
    });
    (port, hits)
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let t = Instant::now();
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if t.elapsed() > Duration::from_secs(secs) => {
                panic!("timed out waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn forwards_reach_the_users_own_container_and_nothing_else() {
    let mut env = forwarding_env("60s");
    let alice = env.add_user();
    let bob = env.add_user();
    let (host_port, host_hits) = host_listener("HOST");

    install_busybox(&env, &alice);
    let _server = serve(&env, &alice, "CONTAINER-OF-ALICE");
    // -W (also what ProxyJump and VS Code's local server connection use): the container's server.
    eventually("alice's server through -W", 60, || {
        let o = via_w(&env, &alice, PORT);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        out.contains("CONTAINER-OF-ALICE")
            .then_some(())
            .ok_or_else(|| text(&o))
    });
    // One namespace per user: the server's channel, the -W channels and the container are all
    // alice's one container and holder.
    assert_eq!(env.containers_of(&alice.name).len(), 1);
    assert_eq!(env.holders_of(&alice.name).len(), 1);

    // -L: the laptop's port reaches the container's localhost.
    let local = free_port();
    let _l = hold(
        &env,
        &alice,
        &["-N", "-L", &format!("{local}:127.0.0.1:{PORT}")],
    );
    eventually("-L", 30, || {
        http_get(local)
            .map_err(|e| e.to_string())
            .and_then(|o| o.contains("CONTAINER-OF-ALICE").then_some(()).ok_or(o))
    });

    // -D: a SOCKS proxy whose connections open in the container's namespace.
    let socks = free_port();
    let _d = hold(&env, &alice, &["-N", "-D", &format!("127.0.0.1:{socks}")]);
    eventually("-D", 30, || {
        socks_get(socks, PORT)
            .map_err(|e| e.to_string())
            .and_then(|o| o.contains("CONTAINER-OF-ALICE").then_some(()).ok_or(o))
    });

    // -R: the container reaches a listener on the laptop.
    let (laptop, laptop_hits) = host_listener("LAPTOP");
    let rport = 9876;
    let _r = hold(
        &env,
        &alice,
        &["-N", "-R", &format!("127.0.0.1:{rport}:127.0.0.1:{laptop}")],
    );
    eventually("-R", 30, || {
        let o = env.ssh(
            &alice,
            &format!("/tmp/busybox nc 127.0.0.1 {rport} </dev/null"),
        );
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        out.contains("LAPTOP").then_some(()).ok_or_else(|| text(&o))
    });
    assert!(laptop_hits.load(Ordering::SeqCst) >= 1);

    // The host's loopback is never reached: -W and -L to a port only the host listens on land
    // in alice's namespace, where nothing listens.
    let o = via_w(&env, &alice, host_port);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("HOST"),
        "-W reached the host: {}",
        text(&o)
    );
    let local2 = free_port();
    let _l2 = hold(
        &env,
        &alice,
        &["-N", "-L", &format!("{local2}:127.0.0.1:{host_port}")],
    );
    eventually("the second -L to listen", 30, || {
        TcpStream::connect(("127.0.0.1", local2))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let got = http_get(local2).unwrap_or_default();
    assert!(!got.contains("HOST"), "-L reached the host: {got}");
    assert_eq!(
        host_hits.load(Ordering::SeqCst),
        0,
        "a forward of a podspawn user reached the host's loopback"
    );

    // Another user's ports are never reached: bob's forward to the same port lands in bob's
    // own namespace.
    let o = via_w(&env, &bob, PORT);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("CONTAINER-OF-ALICE"),
        "bob reached alice's server: {}",
        text(&o)
    );
    assert!(!o.status.success(), "{}", text(&o));
    let o = env.ssh(&bob, "hostname");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), bob.name);
    assert_ne!(env.holders_of(&alice.name), env.holders_of(&bob.name));
}

#[test]
fn a_forwarding_only_connection_keeps_the_container_past_its_grace_period() {
    let mut env = forwarding_env("3s");
    let u = env.add_user();
    // ssh -N: no command, no spawn; the module's lease alone holds the user's sessions.
    let n = hold(&env, &u, &["-N"]);
    env.wait_for("the -N connection's lease", 30, || {
        env.broker_log()
            .contains("connection joined the network namespace")
    });
    let o = env.ssh(&u, "echo hi");
    assert!(o.status.success(), "{}", text(&o));
    let id = env.containers_of(&u.name);
    assert_eq!(id.len(), 1);
    // Well past the 3 s grace period (the broker sweeps every 2 s).
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(
        env.containers_of(&u.name),
        id,
        "the container went while a connection held it"
    );
    // The connection ends: the grace period starts again, then the container and the user's
    // namespace go.
    drop(n);
    env.wait_for("the container and namespace to go", 40, || {
        env.containers_of(&u.name).is_empty()
            && env.holders_of(&u.name).is_empty()
            && env.networks_of(&u.name).is_empty()
    });
}

#[test]
fn a_member_whose_module_fails_is_refused_and_others_are_untouched() {
    let mut env = forwarding_env("60s");
    let u = env.add_user();
    let o = env.ssh(&u, "echo ok");
    assert!(o.status.success(), "{}", text(&o));

    // A host account that is not a podspawn user, with its own authorized_keys.
    let other = format!("pst{}n", env.id);
    let o = run(Command::new("useradd")
        .args(["-m", "-s", "/bin/sh"])
        .arg(&other));
    assert!(o.status.success(), "useradd: {}", text(&o));
    env.users.push(other.clone());
    let _ = run(Command::new("usermod").args(["-p", "*"]).arg(&other));
    let home = std::path::PathBuf::from(format!("/home/{other}"));
    let key = env.root.join(format!("{other}_key"));
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    assert!(o.status.success());
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(key.with_extension("pub"), home.join(".ssh/authorized_keys")).unwrap();
    let o = run(Command::new("chown")
        .arg("-R")
        .arg(&other)
        .arg(home.join(".ssh")));
    assert!(o.status.success());
    let plain = User {
        name: other.clone(),
        key: key.clone(),
        pubkey: String::new(),
    };

    // The broker is down: the module cannot put the member's connection in its namespace, so
    // sshd refuses the session (no command runs, no forward opens), and says nothing about why
    // to the client: the reason is in the log.
    env.stop_broker(true);
    let o = env.ssh(&u, "echo ok");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ok"));
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        !err.contains("broker") && !err.contains("pam"),
        "the reason reached the client: {err}"
    );
    let (host_port, host_hits) = host_listener("HOST");
    let o = via_w(&env, &u, host_port);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(host_hits.load(Ordering::SeqCst), 0);

    // Everybody else is untouched by the module, broker or not: a plain account logs in to the
    // host as before, and its forwards are the host's.
    let o = env.ssh(&plain, "echo plain-$(id -un)");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("plain-{other}")),
        "{}",
        text(&o)
    );
    let o = via_w(&env, &plain, host_port);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("HOST"),
        "{}",
        text(&o)
    );

    // The broker is back: so are the member's logins.
    env.start_broker();
    let o = env.ssh(&u, "echo ok");
    assert!(o.status.success(), "{}", text(&o));
}
