//! Admin commands against real host accounts: add-user (keys from --key, --key-file and a local
//! stand-in for GitHub), account creation and unlocking, list-users, remove-user with live sessions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{run, Env};
use std::io::{Read, Write};
use std::process::Command;

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn keygen(dir: &std::path::Path, name: &str) -> String {
    let p = dir.join(name);
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&p));
    assert!(o.status.success());
    std::fs::read_to_string(p.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// Serves `body` for GET /<user>.keys, 404 otherwise, on a loopback port; returns the base URL.
fn fake_github(user: &'static str, body: String) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let resp = if path == format!("/{user}.keys") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn shadow_field(user: &str) -> Option<String> {
    std::fs::read_to_string("/etc/shadow")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .and_then(|l| l.split(':').nth(1).map(str::to_string))
}

#[test]
fn add_user_sources_dedupe_and_atomicity() {
    let k1 = keygen(
        &std::env::temp_dir(),
        &format!("pstk1-{}", std::process::id()),
    );
    let k2 = keygen(
        &std::env::temp_dir(),
        &format!("pstk2-{}", std::process::id()),
    );
    let gh = fake_github("octo-cat", format!("{k2}\n\n"));
    let mut env = Env::start();
    // Point auth.github_url at the stand-in (rewrite the auth block of the generated config).
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let cfg = cfg.replacen("auth:\n", &format!("auth:\n  github_url: {gh}\n"), 1);
    std::fs::write(&env.config, cfg).unwrap();
    let name = format!("pst{}a", env.id);
    env.users.push(name.clone());

    // A bad key line: clear error, nothing written, no account created.
    let o = env.podspawn(&["add-user", &name, "--key", "ssh-ed25519 AAAAnotbase64!!"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("ssh-ed25519") || out(&o).contains("key"),
        "{}",
        out(&o)
    );
    assert!(
        shadow_field(&name).is_none(),
        "account created despite the error"
    );
    assert!(!env.root.join("keys").join(&name).exists());

    // A key file with one bad line names file and line.
    let kf = env.root.join("keys.txt");
    std::fs::write(&kf, format!("# comment\n{k1}\nssh-rsa garbage\n")).unwrap();
    let o = env.podspawn(&["add-user", &name, "--key-file", kf.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains(&format!("{}:3", kf.display())),
        "{}",
        out(&o)
    );
    assert!(shadow_field(&name).is_none());

    // --key plus --github: both stored, account created unlocked, home present, in podspawn-users.
    let o = env.podspawn(&["add-user", &name, "--key", &k1, "--github", "octo-cat"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(shadow_field(&name).as_deref(), Some("*"));
    assert!(std::path::Path::new(&format!("/home/{name}")).is_dir());
    let groups =
        String::from_utf8_lossy(&run(Command::new("id").arg("-nG").arg(&name)).stdout).to_string();
    assert!(
        groups.split_whitespace().any(|g| g == "podspawn-users"),
        "{groups}"
    );
    let keyfile = env.root.join("keys").join(&name);
    let stored = std::fs::read_to_string(&keyfile).unwrap();
    assert_eq!(
        stored
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count(),
        2,
        "{stored}"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&keyfile).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o640));
    let kd = std::fs::metadata(env.root.join("keys")).unwrap();
    assert_eq!((kd.uid(), kd.mode() & 0o777), (0, 0o750));
    let podspawn_gid = uzers_gid("podspawn");
    assert_eq!((m.gid(), kd.gid()), (podspawn_gid, podspawn_gid));

    // The same keys again: nothing duplicated.
    let o = env.podspawn(&["add-user", &name, "--key", &k2]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read_to_string(&keyfile).unwrap(), stored);

    // An unknown GitHub user is a clear error.
    let o = env.podspawn(&["add-user", &name, "--github", "nobody-here"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("404"), "{}", out(&o));

    // list-users shows the user with the key count.
    let o = env.podspawn(&["list-users"]);
    assert!(
        out(&o).contains(&name) && out(&o).contains("2 keys"),
        "{}",
        out(&o)
    );
    let _ =
        std::fs::remove_file(std::env::temp_dir().join(format!("pstk1-{}", std::process::id())));
    let _ =
        std::fs::remove_file(std::env::temp_dir().join(format!("pstk2-{}", std::process::id())));
}

fn uzers_gid(group: &str) -> u32 {
    let o = run(Command::new("getent").args(["group", group]));
    String::from_utf8_lossy(&o.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn existing_accounts_are_unlocked_or_refused() {
    let mut env = Env::start();
    let dir = env.root.join("k");
    std::fs::create_dir_all(&dir).unwrap();
    let key = keygen(&dir, "k");
    // useradd leaves the password field '!': add-user turns it into '*' (never empty).
    let locked = format!("pst{}l", env.id);
    env.users.push(locked.clone());
    assert!(
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", &locked]))
            .status
            .success()
    );
    assert!(shadow_field(&locked).unwrap().starts_with('!'));
    let o = env.podspawn(&["add-user", &locked, "--key", &key]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(shadow_field(&locked).as_deref(), Some("*"));
    // A locked account that has a real password hash is not silently changed.
    let hashed = format!("pst{}h", env.id);
    env.users.push(hashed.clone());
    assert!(run(Command::new("useradd").args([
        "-m",
        "-s",
        "/bin/sh",
        "-p",
        "!$6$salt$abcdefghijklmnop",
        &hashed
    ]))
    .status
    .success());
    let o = env.podspawn(&["add-user", &hashed, "--key", &key]);
    assert!(!o.status.success());
    assert!(out(&o).contains("--convert"), "{}", out(&o));
    assert_eq!(
        shadow_field(&hashed).as_deref(),
        Some("!$6$salt$abcdefghijklmnop")
    );
    assert!(!env.root.join("keys").join(&hashed).exists());
    // Bad names never reach useradd.
    let o = env.podspawn(&["add-user", "Bad/Name", "--key", &key]);
    assert!(!o.status.success());
    assert!(out(&o).contains("invalid user name"), "{}", out(&o));
}

#[test]
fn remove_user_with_live_sessions() {
    let mut env = Env::start();
    let u = env.add_user();
    assert!(env.ssh(&u, "true").status.success());
    assert_eq!(env.containers_of(&u.name).len(), 1);
    let o = env.podspawn(&["remove-user", &u.name]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("--force") && out(&o).contains(&format!("podspawn-{}", u.name)),
        "{}",
        out(&o)
    );
    assert!(env.root.join("keys").join(&u.name).exists());
    let o = env.podspawn(&["remove-user", &u.name, "--force", "--purge"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(env.containers_of(&u.name).is_empty());
    assert!(!env.root.join("keys").join(&u.name).exists());
    // podspawn created the account, so --purge removes it.
    assert!(!run(Command::new("id").arg(&u.name)).status.success());
    // And the login is refused now.
    let o = env.ssh(&u, "true");
    assert_eq!(o.status.code(), Some(255));
    let o = env.podspawn(&["remove-user", &u.name]);
    assert!(!o.status.success());
    assert!(out(&o).contains("not a podspawn user"), "{}", out(&o));
}

#[test]
fn stop_and_list() {
    let mut env = Env::start();
    let u = env.add_user();
    assert!(env.ssh(&u, "true").status.success());
    let o = env.podspawn(&["list"]);
    let table = out(&o);
    assert!(
        table.contains("USER") && table.contains(&format!("podspawn-{}", u.name)),
        "{table}"
    );
    let o = env.podspawn(&["stop", &u.name]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(env.containers_of(&u.name).is_empty());
    let o = env.podspawn(&["stop", &format!("{}@nothere", u.name)]);
    assert!(!o.status.success());
    assert!(out(&o).contains("no session"), "{}", out(&o));
}

/// An image with no shell at all, built locally.
fn shell_less_image() -> &'static str {
    let tag = "podspawn-test-nosh:latest";
    let dir = common::TempDir::under(&std::env::temp_dir(), "pst-nosh");
    std::fs::write(dir.join("README"), "no shell here\n").unwrap();
    let tar = dir.join("rootfs.tar");
    assert!(run(Command::new("tar")
        .arg("-C")
        .arg(&*dir)
        .arg("-cf")
        .arg(&tar)
        .arg("README"))
    .status
    .success());
    let o = run(Command::new("docker")
        .args(["import", "--change", "LABEL podspawn-test=1"])
        .arg(&tar)
        .arg(tag));
    assert!(o.status.success(), "{}", out(&o));
    tag
}

#[test]
fn verify_image_reports_what_an_image_lacks() {
    common::ensure_image();
    let o = run(Command::new(common::bin()).args(["verify-image", common::IMAGE]));
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    for found in [
        "/bin/sh found",
        "sftp-server found",
        "/bin/bash found",
        "rsync found",
        "sleep infinity found",
    ] {
        assert!(text.contains(found), "{found:?} missing in {text}");
    }
    assert!(text.contains("git not found: install git"), "{text}");
    let o = run(Command::new(common::bin()).args(["verify-image", shell_less_image()]));
    let text = out(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("/bin/sh not found") && text.contains("sftp-server not found"),
        "{text}"
    );
    let left =
        run(Command::new("docker").args(["ps", "-aq", "--filter", "label=podspawn-verify=1"]));
    assert!(
        left.stdout.is_empty(),
        "verify-image left a container behind"
    );
}

#[test]
fn a_login_into_an_image_without_a_shell_fails_with_one_line() {
    let mut env = Env::start();
    let u = env.add_user();
    let cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(common::IMAGE, shell_less_image());
    std::fs::write(&env.config, cfg).unwrap();
    env.stop_broker(false);
    env.start_broker();
    let o = env.ssh(&u, "true");
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("podspawn: ") && e.contains("podspawn-test-nosh"),
        "{e}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).is_empty());
    // Nothing half-made is left behind.
    env.wait_for(
        "the failed container, its network and its row to be gone",
        20,
        || {
            env.containers_of(&u.name).is_empty()
                && env.networks_of(&u.name).is_empty()
                && env.sessions().as_array().unwrap().is_empty()
        },
    );
}

fn passwd_entry(user: &str) -> String {
    let o = run(Command::new("getent").args(["passwd", user]));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn groups_of(user: &str) -> Vec<String> {
    let o = run(Command::new("id").arg("-nG").arg(user));
    assert!(o.status.success(), "id -nG {user}: {}", out(&o));
    let mut g: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    g.sort();
    g
}

fn sh(script: &str) {
    let o = run(Command::new("sh").arg("-ec").arg(script));
    assert!(o.status.success(), "{script}: {}", out(&o));
}

fn audit_events(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.audit_path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An existing account used for something else: add-user refuses, lists exactly what it would
/// change and names --convert; nothing changes. With --convert it makes exactly those changes
/// (getent shadow/passwd, id -nG) and audits them as user.convert.
#[test]
fn accounts_used_for_something_else_need_convert() {
    let mut env = Env::with(common::Opts {
        audit: true,
        ..common::Opts::default()
    });
    let dir = env.root.join("k");
    std::fs::create_dir_all(&dir).unwrap();
    let key = keygen(&dir, "k");
    let password = "$6$pstsalt$Jx7cQkq0o6y6wU1kVbO4jH8p4zZl0mO1jv6u3G2mCqLxM2m2b3qR0dQK9C1xk6o1Wz7QY1vQ2oK7p2u9E3mX0.";
    // (suffix, how the account is made, the expected change lines)
    let cases: &[(&str, String, &[&str])] = &[
        (
            "p",
            format!("useradd -m -s /bin/sh -p '{password}' NAME"),
            &["set the password field to '*' (removes the password: key login only)"],
        ),
        (
            "l",
            "useradd -m -s /bin/sh NAME && echo 'NAME:pst-Secret-1' | chpasswd && usermod -L NAME".to_string(),
            &["set the password field to '*' (replaces the admin's lock and the password behind it: key login only)"],
        ),
        (
            "e",
            "useradd -m -s /bin/sh -p '' NAME".to_string(),
            &["set the password field to '*' (it is empty, so anyone may log in where password login is on: key login only)"],
        ),
        (
            "b",
            "useradd -m -s /bin/bash -p '*' NAME".to_string(),
            &["change the login shell from /bin/bash to /bin/sh"],
        ),
        (
            "g",
            "useradd -m -s /bin/sh -p '*' -G sudo,docker,audio NAME".to_string(),
            &["remove NAME from the groups docker, sudo"],
        ),
        (
            "all",
            "useradd -m -s /bin/bash -G sudo NAME && echo 'NAME:pst-Secret-2' | chpasswd".to_string(),
            &[
                "set the password field to '*' (removes the password: key login only)",
                "change the login shell from /bin/bash to /bin/sh",
                "remove NAME from the group sudo",
            ],
        ),
    ];
    for (suffix, make, lines) in cases {
        let name = format!("pst{}c{suffix}", env.id);
        env.users.push(name.clone());
        sh(&make.replace("NAME", &name));
        let lines: Vec<String> = lines.iter().map(|l| l.replace("NAME", &name)).collect();
        let before = (shadow_field(&name), passwd_entry(&name), groups_of(&name));

        // Refused: the exact changes, the flag, nothing changed, no key file.
        let o = env.podspawn(&["add-user", &name, "--key", &key]);
        let text = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{name}: {text}");
        let listed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  - "))
            .collect();
        assert_eq!(listed, lines, "{name}: {text}");
        assert!(
            text.contains(&format!(
                "the account {name} already exists and is used for something else"
            )) && text.contains("with --convert to make exactly these changes"),
            "{text}"
        );
        assert_eq!(
            (shadow_field(&name), passwd_entry(&name), groups_of(&name)),
            before,
            "{name} changed without --convert"
        );
        assert!(!env.root.join("keys").join(&name).exists());

        // Converted: exactly those changes, audited.
        let o = env.podspawn(&["add-user", &name, "--key", &key, "--convert"]);
        assert!(o.status.success(), "{name}: {}", out(&o));
        assert_eq!(shadow_field(&name).as_deref(), Some("*"), "{name}");
        let pw = passwd_entry(&name);
        assert!(pw.ends_with(":/bin/sh"), "{pw}");
        assert_eq!(
            pw.rsplit_once(':').unwrap().0,
            before.1.rsplit_once(':').unwrap().0,
            "only the shell may change in passwd"
        );
        let mut want: Vec<String> = before
            .2
            .iter()
            .filter(|g| !["sudo", "docker"].contains(&g.as_str()))
            .cloned()
            .chain(["podspawn-users".to_string()])
            .collect();
        want.sort();
        assert_eq!(groups_of(&name), want, "{name}");
        let ev = audit_events(&env);
        let conv: Vec<&serde_json::Value> = ev
            .iter()
            .filter(|e| e["event"] == "user.convert" && e["user"] == name.as_str())
            .collect();
        assert_eq!(conv.len(), 1, "{ev:?}");
        assert_eq!(conv[0]["changes"], serde_json::json!(lines), "{name}");
        assert!(ev
            .iter()
            .any(|e| e["event"] == "user.add" && e["user"] == name.as_str()));

        // Now it is a podspawn account: add-user again changes nothing, needs no flag and no key.
        let o = env.podspawn(&["add-user", &name]);
        assert!(o.status.success(), "{}", out(&o));
        assert!(
            out(&o).contains(&format!("kept {name}'s 1 key")),
            "{}",
            out(&o)
        );
        let n = audit_events(&env)
            .iter()
            .filter(|e| e["event"] == "user.convert")
            .count();
        assert_eq!(
            n,
            ev.iter().filter(|e| e["event"] == "user.convert").count()
        );
    }

    // Hard refusals: no flag changes them.
    let sys = format!("pst{}s", env.id);
    env.users.push(sys.clone());
    sh(&format!("useradd --system -s /bin/sh {sys}"));
    let before = (shadow_field(&sys), passwd_entry(&sys), groups_of(&sys));
    for extra in [&[][..], &["--convert"][..]] {
        let mut a = vec!["add-user", sys.as_str(), "--key", key.as_str()];
        a.extend_from_slice(extra);
        let o = env.podspawn(&a);
        assert!(!o.status.success());
        assert!(
            out(&o).contains(&format!("{sys} is a system account"))
                && out(&o).contains("below UID_MIN"),
            "{}",
            out(&o)
        );
        assert!(!out(&o).contains("--convert"), "{}", out(&o));
    }
    assert_eq!(
        (shadow_field(&sys), passwd_entry(&sys), groups_of(&sys)),
        before
    );
    for reserved in ["root", "nobody", "podspawn"] {
        let o = env.podspawn(&["add-user", reserved, "--key", &key, "--convert"]);
        assert!(!o.status.success());
        assert!(out(&o).contains("reserved"), "{}", out(&o));
    }
    // No key and no key file: a clear error.
    let o = env.podspawn(&["add-user", &format!("pst{}none", env.id), "--convert"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("no keys given"), "{}", out(&o));
}
