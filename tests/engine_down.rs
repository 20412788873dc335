//! The seed page's "Docker not running" and "Image not pulled": an SSH user gets one clear line,
//! the broker keeps serving and recovers by itself when the engine comes back, and
//! `podspawn doctor` names the fix. Real sshd, broker, accounts and Docker; run as root.
//!
//! The broker talks to the engine through a symlink (DOCKER_HOST=unix://…/engine.sock): pointing
//! it at nothing is an engine that is down, pointing it at the real socket brings it back, without
//! stopping the machine's Docker (other tests use it) or restarting the broker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{run, Env, Opts, TempDir};
use std::path::Path;
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A directory for the engine symlink, named like the harness's so `make clean-test` removes it.
fn engine_dir(tag: &str) -> TempDir {
    TempDir::under(Path::new("/var/tmp"), &format!("podspawn-test-{tag}"))
}

/// Points `link` at `target`, atomically (a new symlink renamed over the old one).
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// `podspawn doctor --json` with the broker's DOCKER_HOST; the check named `name`.
fn doctor_check(env: &Env, docker_host: &str, name: &str) -> serde_json::Value {
    let out = run(Command::new(&env.bin)
        .arg("--config")
        .arg(&env.config)
        .args(["doctor", "--json"])
        .env("DOCKER_HOST", docker_host));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out.stdout)));
    all.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("doctor has no check {name:?}: {all}"))
}

/// What a failed login wrote: exactly one line on stderr, nothing on stdout.
fn one_line(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "the login should fail");
    assert_eq!(text(&o.stdout), "", "stdout of a failed login");
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line on stderr, got: {err:?}");
    err.trim_end().to_string()
}

#[test]
fn engine_down_one_line_doctor_fix_and_recovery_without_restart() {
    let real = podspawn::engine::http::engine_socket();
    assert!(
        real.exists(),
        "this test needs a running Docker engine at {} (systemctl start docker)",
        real.display()
    );
    let dir = engine_dir("engine");
    let link = dir.join("engine.sock");
    point(&link, &dir.join("nothing.sock"));
    let host = format!("unix://{}", link.display());
    // The broker starts (Env waits for its socket) although the engine cannot be reached.
    let mut env = Env::with(Opts {
        broker_env: vec![("DOCKER_HOST".into(), host.clone())],
        ..Default::default()
    });
    let u = env.add_user();
    let broker = env.broker_pid().unwrap();

    let line = one_line(&env.ssh(&u, "echo hello"));
    assert_eq!(line, format!("podspawn: {}", podspawn::engine::ENGINE_DOWN));
    // An interactive login (ssh -t) gets the same line.
    let mut c = env.ssh_cmd(&u);
    c.arg("-tt").arg(format!("{}@127.0.0.1", u.name));
    let o = run(c.stdin(std::process::Stdio::null()));
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        all.contains(podspawn::engine::ENGINE_DOWN),
        "ssh -tt: {all:?}"
    );
    assert!(!o.status.success());

    let c = podspawn_doctor_docker(&env, &host);
    assert_eq!(c["status"], "fail", "{c}");
    assert_eq!(c["fix"], "sudo systemctl enable --now docker", "{c}");

    // The engine comes back: the same broker serves the next login.
    point(&link, &real);
    let o = env.ssh(&u, "echo hello");
    assert!(
        o.status.success(),
        "login after the engine came back: {}\n{}",
        text(&o.stderr),
        env.broker_log()
    );
    assert_eq!(text(&o.stdout), "hello\n");
    assert_eq!(env.broker_pid(), Some(broker));
    assert!(
        Path::new(&format!("/proc/{broker}")).exists(),
        "the broker was restarted"
    );
    assert_eq!(podspawn_doctor_docker(&env, &host)["status"], "pass");
    drop(env);
    drop(dir);
}

fn podspawn_doctor_docker(env: &Env, host: &str) -> serde_json::Value {
    doctor_check(env, host, podspawn::commands::doctor::DOCKER_CHECK)
}

#[test]
fn missing_default_image_one_line_and_doctor_fix() {
    let mut env = Env::start();
    // An image that is not on this host, from a registry that refuses connections at once.
    let image = format!("127.0.0.1:1/podspawn-missing-{}:latest", env.id);
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let with = cfg.replace(
        &format!("image: {}", common::IMAGE),
        &format!("image: {image}"),
    );
    assert_ne!(cfg, with);
    std::fs::write(&env.config, with).unwrap();
    env.stop_broker(false);
    env.start_broker();
    let u = env.add_user();

    let line = one_line(&env.ssh(&u, "echo hello"));
    assert_eq!(
        line,
        format!("podspawn: {}", podspawn::engine::image_missing(&image))
    );
    assert!(line.contains(&format!("docker pull {image}")), "{line}");
    assert!(line.contains("defaults.image"), "{line}");
    assert!(env.containers_of(&u.name).is_empty());
    assert!(env.networks_of(&u.name).is_empty());
    // The registry's answer is in the broker's log, for the administrator.
    assert!(env.broker_log().contains(&image), "{}", env.broker_log());

    let real = format!(
        "unix://{}",
        podspawn::engine::http::engine_socket().display()
    );
    let c = doctor_check(&env, &real, podspawn::commands::doctor::IMAGE_CHECK);
    assert_eq!(c["status"], "warn", "{c}");
    assert_eq!(c["fix"], format!("sudo docker pull {image}"), "{c}");
    let detail = c["detail"].as_str().unwrap_or("");
    assert!(detail.contains(&image), "{c}");
    assert!(detail.contains("defaults.image"), "{c}");
}
