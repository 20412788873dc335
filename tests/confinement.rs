//! A podspawn user reaches their own container and nothing else, whatever way they log in.
//!
//! The private sshd here has Debian's stock global settings (password and keyboard-interactive
//! logins on, UsePAM yes): podspawn's Match block alone has to confine its members.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod common;

use common::{run, Env, Opts};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "Correct-Horse-9";
const MARKER: &str = "REACHED-A-SHELL";

fn text_of(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn set_password(user: &str) {
    let mut c = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd (package passwd)");
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success(), "chpasswd {user}");
}

/// A login with `method` (password or keyboard-interactive) answered by SSH_ASKPASS, keys off.
fn password_login(env: &Env, user: &str, method: &str) -> Output {
    let askpass = env.root.join("askpass.sh");
    if !askpass.exists() {
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    run(Command::new("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "GSSAPIAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=20",
            "-o",
        ])
        .arg(format!("PreferredAuthentications={method}"))
        .arg("-p")
        .arg(env.port.to_string())
        .arg(format!("{user}@127.0.0.1"))
        .arg(format!("echo {MARKER}; hostname"))
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null()))
}

/// A host account that is not a podspawn user, removed on drop.
struct Plain(String);

impl Plain {
    fn new(env: &Env) -> Plain {
        let name = format!("pst{}plain", env.id);
        let o = run(Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh"])
            .arg(&name));
        assert!(o.status.success(), "useradd {name}: {}", text_of(&o));
        set_password(&name);
        Plain(name)
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.0])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn password_and_keyboard_interactive_logins_never_reach_a_host_shell() {
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "needs sshd (package openssh-server)"
    );
    let mut env = Env::with(Opts {
        stock_auth: true,
        ..Opts::default()
    });
    // The control: this sshd does take passwords, so the refusals below are podspawn's doing.
    let plain = Plain::new(&env);
    for method in ["password", "keyboard-interactive"] {
        let o = password_login(&env, &plain.0, method);
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(MARKER),
            "the control login of a non-podspawn account by {method} failed, so this sshd \
             does not take passwords and the test proves nothing:\n{}\n{}",
            text_of(&o),
            env.sshd_log()
        );
    }

    // A registered user whose account got a password after add-user (an admin's slip, or an
    // account used for something else before).
    let u = env.add_user();
    set_password(&u.name);
    for method in ["password", "keyboard-interactive"] {
        let o = password_login(&env, &u.name, method);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && !out.contains(MARKER),
            "a {method} login of podspawn user {} got a session:\n{}",
            u.name,
            text_of(&o)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied (publickey)"),
            "{method}: sshd should offer podspawn users keys only:\n{}",
            text_of(&o)
        );
    }
    // Keys still work, and land in the container (its hostname is the user name).
    let o = env.ssh(&u, &format!("echo {MARKER}; hostname"));
    assert!(o.status.success(), "key login: {}", text_of(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(MARKER) && out.contains(&u.name), "{out}");
    let host = String::from_utf8_lossy(&run(&mut Command::new("hostname")).stdout)
        .trim()
        .to_string();
    assert!(
        !out.lines().any(|l| l.trim() == host),
        "the key login ran on the host: {out}"
    );
}

/// Effective values for a member, as `server-setup` and `doctor` check them.
#[test]
fn effective_sshd_settings_confine_members() {
    let mut env = Env::with(Opts {
        stock_auth: true,
        ..Opts::default()
    });
    let u = env.add_user();
    let o = run(Command::new("/usr/sbin/sshd")
        .arg("-T")
        .arg("-f")
        .arg(env.root.join("sshd_config"))
        .arg("-C")
        .arg(format!("user={},host=localhost,addr=127.0.0.1", u.name)));
    assert!(o.status.success(), "sshd -T: {}", text_of(&o));
    let t = podspawn::core::sshd_config::parse_sshd_t(&String::from_utf8_lossy(&o.stdout));
    let spawn = format!(
        "exec {} --config {} spawn --socket {}",
        env.bin.display(),
        env.config.display(),
        env.socket.display()
    );
    let mm = podspawn::core::sshd_config::effective_mismatches(&t, Some(&spawn), None);
    let required: Vec<_> = mm.iter().filter(|m| m.required).collect();
    // auth-keys carries --config here, which only the binary-agnostic check cannot parse.
    assert!(
        required
            .iter()
            .all(|m| m.keyword == "authorizedkeyscommand"),
        "{required:?}"
    );
    for (k, v) in [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("authenticationmethods", "publickey"),
        ("hostbasedauthentication", "no"),
    ] {
        assert_eq!(t.get(k).map(|v| v[0].as_str()), Some(v), "{k}");
    }
    // A non-member keeps the global settings.
    let plain = Plain::new(&env);
    let o = run(Command::new("/usr/sbin/sshd")
        .arg("-T")
        .arg("-f")
        .arg(env.root.join("sshd_config"))
        .arg("-C")
        .arg(format!("user={},host=localhost,addr=127.0.0.1", plain.0)));
    let t = podspawn::core::sshd_config::parse_sshd_t(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        t.get("passwordauthentication").map(|v| v[0].as_str()),
        Some("yes")
    );
    assert_eq!(t.get("forcecommand").map(|v| v[0].as_str()), Some("none"));
}

fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

fn container_running(id: &str) -> bool {
    let o = docker(&["inspect", "-f", "{{.State.Running}}", id]);
    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true"
}

fn session_container(env: &Env, user: &str, project: &str) -> Option<(String, String)> {
    let list = env.sessions();
    list.as_array()?
        .iter()
        .find(|s| s["user"] == user && s["project"] == project)
        .map(|s| {
            (
                s["container"].as_str().unwrap_or("").to_string(),
                s["container_id"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// `alice` in project `dev` and user `alice-dev` both prefer the name `podspawn-alice-dev`: neither
/// may remove or enter the other's container.
#[test]
fn colliding_names_never_share_or_remove_a_container() {
    let mut env = Env::start();
    let alice = env.add_named_user(&format!("pst{}a", env.id));
    let alice_dev = env.add_named_user(&format!("pst{}a-dev", env.id));

    let mut long = env.ssh_cmd(&alice);
    long.args(["-o", "SetEnv=PODSPAWN_PROJECT=dev"])
        .arg(format!("{}@127.0.0.1", alice.name))
        .arg("sleep 8; echo alive-$(hostname)")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let long = long.spawn().unwrap();
    env.wait_for("alice's dev session", 60, || {
        session_container(&env, &alice.name, "dev").is_some()
    });
    let (a_name, a_id) = session_container(&env, &alice.name, "dev").unwrap();
    assert_eq!(a_name, format!("podspawn-{}-dev", alice.name));

    let o = env.ssh(&alice_dev, "hostname");
    assert!(o.status.success(), "alice-dev's login: {}", text_of(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), alice_dev.name);
    let (d_name, d_id) = session_container(&env, &alice_dev.name, "").unwrap();
    assert_ne!(d_id, a_id, "both users got the same container");
    assert!(
        d_name.starts_with(&format!("podspawn-{}-", alice_dev.name)) && d_name != a_name,
        "{d_name}"
    );
    assert!(container_running(&a_id), "alice's container was removed");

    let out = long.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "alice's command died: {}",
        text_of(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        // All of a user's containers share the user's network namespace, and with it its
        // hostname (the user name).
        format!("alive-{}", alice.name),
        "{}",
        text_of(&out)
    );

    // `podspawn list` shows the real names; stopping one leaves the other alone.
    let o = env.podspawn(&["list"]);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains(&a_name) && listing.contains(&d_name),
        "{listing}"
    );
    let o = env.podspawn(&["stop", &alice_dev.name]);
    assert!(o.status.success(), "stop: {}", text_of(&o));
    assert!(
        container_running(&a_id),
        "stopping alice-dev removed alice's container"
    );
    assert!(!container_running(&d_id));
    // And the other way round.
    let o = env.ssh(&alice_dev, "true");
    assert!(o.status.success(), "{}", text_of(&o));
    let (_, d_id) = session_container(&env, &alice_dev.name, "").unwrap();
    let o = env.podspawn(&["stop", &format!("{}@dev", alice.name)]);
    assert!(o.status.success(), "stop: {}", text_of(&o));
    assert!(
        container_running(&d_id),
        "stopping alice@dev removed alice-dev's container"
    );
}

/// A container of another installation (another state database) under a user's name is never
/// removed, neither by a login nor by the cleanup pass.
#[test]
fn another_installations_container_is_never_removed() {
    let mut env = Env::start();
    let bob = env.add_user();
    let name = format!("podspawn-{}", bob.name);
    let o = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "managed-by=podspawn",
        "--label",
        &format!("podspawn-user={}", bob.name),
        "--label",
        "podspawn-project=",
        "--label",
        "podspawn-instance=0000000000000000",
        "--label",
        "podspawn-test=1",
        common::IMAGE,
        "sleep",
        "infinity",
    ]);
    assert!(o.status.success(), "docker run: {}", text_of(&o));
    let foreign = String::from_utf8_lossy(&o.stdout).trim().to_string();

    let o = env.ssh(&bob, "hostname");
    assert!(o.status.success(), "bob's login: {}", text_of(&o));
    let (bob_name, bob_id) = session_container(&env, &bob.name, "").unwrap();
    assert_ne!(bob_id, foreign);
    assert_ne!(bob_name, name);
    assert!(
        container_running(&foreign),
        "a login removed the other installation's container"
    );

    // Orphan reconciliation (bob's session gone, the foreign container left).
    let o = env.podspawn(&["stop", &bob.name]);
    assert!(o.status.success(), "stop: {}", text_of(&o));
    let o = env.podspawn(&["cleanup"]);
    assert!(o.status.success(), "cleanup: {}", text_of(&o));
    assert!(
        container_running(&foreign),
        "cleanup removed the other installation's container"
    );
    docker(&["rm", "-f", &foreign]);
}

fn config_validate(env: &Env, text: &str) -> Output {
    let f = env.root.join("candidate.yaml");
    std::fs::write(&f, text).unwrap();
    env.podspawn(&["config", "validate", f.to_str().unwrap()])
}

/// Mistakes that would break logins at 3 a.m. fail at `config validate` instead, and an image
/// ENTRYPOINT or a homes_dir with unusual characters cannot break a session.
#[test]
fn config_mistakes_fail_at_validate_and_images_cannot_swallow_the_start_command() {
    let mut env = Env::with(Opts {
        mode: "named",
        ..Opts::default()
    });
    for (text, key, hint) in [
        (
            "broker:\n  socket: /run/pod spawn.sock\n",
            "broker.socket",
            "sshd would split or expand it",
        ),
        (
            "broker:\n  socket: /run/podspawn/%u.sock\n",
            "broker.socket",
            "sshd would split or expand it",
        ),
        (
            &format!("broker:\n  socket: /run/{}.sock\n", "s".repeat(110)),
            "broker.socket",
            "at most 107",
        ),
        (
            "state:\n  homes_dir: /var/lib/podspawn/../../etc\n",
            "state.homes_dir",
            "without \"..\"",
        ),
        (
            "broker:\n  max_connections_per_user: 0\n",
            "broker.max_connections_per_user",
            "at least 1",
        ),
    ] {
        let o = config_validate(&env, text);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(key) && err.contains(hint),
            "{text:?}: {}",
            text_of(&o)
        );
    }
    let o = config_validate(&env, "state:\n  homes_dir: /srv/ho:mes,x\n");
    assert!(
        o.status.success(),
        "a colon is fine in homes_dir: {}",
        text_of(&o)
    );

    // An image whose ENTRYPOINT would take podspawn's start command as arguments.
    let tag = format!("podspawn-test-entrypoint-{}:latest", env.id);
    let c = docker(&[
        "create",
        "--label",
        "podspawn-test=1",
        common::IMAGE,
        "true",
    ]);
    assert!(c.status.success(), "{}", text_of(&c));
    let cid = String::from_utf8_lossy(&c.stdout).trim().to_string();
    let o = docker(&[
        "commit",
        "--change",
        "ENTRYPOINT [\"/bin/false\"]",
        "--change",
        "LABEL podspawn-test=1",
        &cid,
        &tag,
    ]);
    docker(&["rm", "-f", &cid]);
    assert!(o.status.success(), "{}", text_of(&o));
    // ... and named homes under a directory whose name has a colon and a comma.
    let homes = env.root.join("state/ho:mes,x");
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(common::IMAGE, &tag)
        .replace(
            &format!("homes_dir: {}/state/homes", env.root.display()),
            &format!("homes_dir: \"{}\"", homes.display()),
        );
    std::fs::write(&env.config, cfg).unwrap();
    env.stop_broker(false);
    env.start_broker();
    let u = env.add_user();
    let o = env.ssh(&u, "echo kept > ~/note; cat ~/note; pwd");
    assert!(o.status.success(), "{}\n{}", text_of(&o), env.broker_log());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("kept") && out.contains(&format!("/home/{}", u.name)),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(homes.join(&u.name).join("note")).unwrap(),
        "kept\n"
    );
    let _ = env.podspawn(&["stop", &u.name]);
    docker(&["rmi", "-f", &tag]);
}

/// `remove-user --force` while the broker is down leaves a container, a network and a row: the
/// next cleanup pass removes them, audited as `user-removed`.
#[test]
fn nothing_outlives_its_user() {
    let mut env = Env::with(Opts {
        audit: true,
        ..Opts::default()
    });
    let u = env.add_user();
    let o = env.ssh(&u, "true");
    assert!(o.status.success(), "{}", text_of(&o));
    assert!(!env.containers_of(&u.name).is_empty());
    env.stop_broker(false);
    let o = env.podspawn(&["remove-user", &u.name, "--force"]);
    assert!(o.status.success(), "remove-user: {}", text_of(&o));
    assert!(!env.containers_of(&u.name).is_empty(), "nothing to test");
    let o = env.podspawn(&["cleanup"]);
    assert!(o.status.success(), "cleanup: {}", text_of(&o));
    assert!(env.containers_of(&u.name).is_empty(), "container left");
    assert!(env.networks_of(&u.name).is_empty(), "network left");
    env.start_broker();
    assert!(env.sessions().as_array().unwrap().is_empty(), "row left");
    let audit = std::fs::read_to_string(env.audit_path()).unwrap();
    let destroyed: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "container.destroy" && e["user"] == u.name.as_str())
        .collect();
    assert_eq!(destroyed.len(), 1, "{audit}");
    assert_eq!(destroyed[0]["reason"], "user-removed", "{audit}");
}
