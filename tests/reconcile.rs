//! `podspawn server-setup --users` end to end: real host accounts in every state a registered user
//! can be in, a private key directory (`--config`), never /etc/podspawn or sshd. Accounts are
//! named `pst…` and removed on drop, also when a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4Zou pst@test";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sh(script: &str) {
    let o = Command::new("sh").arg("-ec").arg(script).output().unwrap();
    assert!(o.status.success(), "{script}: {}", text(&o));
}

/// A private config and key directory; the accounts it names are deleted on drop.
struct Env {
    root: PathBuf,
    config: PathBuf,
    keys: PathBuf,
    users: Vec<String>,
    id: String,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root() && Path::new("/usr/sbin/useradd").exists(),
            "these tests need root and useradd (passwd): run the tests as root"
        );
        podspawn::host::accounts::ensure_system_identities().unwrap();
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!(
            "{:x}{}",
            std::process::id() & 0xfffff,
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let root = PathBuf::from(format!("/var/tmp/podspawn-test-rc{id}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let keys = root.join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = root.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "auth:\n  key_dir: {}\nlog:\n  audit_log: {}\n",
                keys.display(),
                root.join("audit.jsonl").display()
            ),
        )
        .unwrap();
        Env {
            root,
            config,
            keys,
            users: Vec::new(),
            id,
        }
    }

    fn name(&mut self, suffix: &str) -> String {
        let n = format!("pst{}r{suffix}", self.id);
        self.users.push(n.clone());
        n
    }

    fn podspawn(&self, args: &[&str]) -> Output {
        let o = Command::new(env!("CARGO_BIN_EXE_podspawn"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        eprintln!("--- podspawn {args:?}: {:?}\n{}", o.status, text(&o));
        o
    }

    fn key_file(&self, name: &str) -> PathBuf {
        let p = self.keys.join(name);
        std::fs::write(&p, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// The lines of /etc/passwd, /etc/shadow and /etc/group that concern this test's accounts
    /// (other tests change other lines concurrently), and the key directory.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for f in ["/etc/passwd", "/etc/shadow"] {
            for l in std::fs::read_to_string(f).unwrap().lines() {
                let n = l.split(':').next().unwrap_or("");
                if self.users.iter().any(|u| u == n) {
                    m.insert(format!("{f}:{n}"), l.to_string());
                }
            }
        }
        for l in std::fs::read_to_string("/etc/group").unwrap().lines() {
            let f: Vec<&str> = l.split(':').collect();
            let ours: Vec<&str> = f[3]
                .split(',')
                .filter(|u| self.users.iter().any(|x| x == u))
                .collect();
            if self.users.iter().any(|u| u == f[0]) || !ours.is_empty() {
                m.insert(
                    format!("group:{}", f[0]),
                    format!("{}:{}", f[2], ours.join(",")),
                );
            }
        }
        let mut dirs = vec![self.keys.clone()];
        dirs.extend(
            self.users
                .iter()
                .map(|u| PathBuf::from(format!("/home/{u}"))),
        );
        for d in dirs {
            let Ok(meta) = std::fs::symlink_metadata(&d) else {
                continue;
            };
            m.insert(
                d.display().to_string(),
                format!("{} {} {:o}", meta.uid(), meta.gid(), meta.mode()),
            );
            if d != self.keys {
                continue;
            }
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let body = if meta.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else {
                    std::fs::read_to_string(&p).unwrap()
                };
                m.insert(
                    p.display().to_string(),
                    format!("{} {} {:o} {body}", meta.uid(), meta.gid(), meta.mode()),
                );
            }
        }
        m
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").args(["-r", "-f", u]).output();
            let _ = Command::new("groupdel").arg(u).output();
            let _ = std::fs::remove_dir_all(format!("/home/{u}"));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn shadow(user: &str) -> Option<String> {
    podspawn::host::accounts::shadow_password(user).unwrap()
}

fn mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn is_member(user: &str, group: &str) -> bool {
    let o = Command::new("id").arg("-nG").arg(user).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .any(|g| g == group)
}

fn users_check(e: &Env) -> serde_json::Value {
    let o = e.podspawn(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "user accounts")
        .cloned()
        .unwrap()
}

fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn registered_users_in_every_state() {
    let mut e = Env::new();
    let missing = e.name("m");
    let useradd_locked = e.name("u");
    let admin_locked = e.name("a");
    let with_password = e.name("p");
    let in_sudo = e.name("s");
    let foreign_key = e.name("o");
    let symlinked = e.name("l");
    for u in [
        &missing,
        &useradd_locked,
        &admin_locked,
        &with_password,
        &in_sudo,
        &foreign_key,
    ] {
        e.key_file(u);
    }
    // useradd without a password leaves '!' (and, without -m, no home).
    sh(&format!("useradd -s /bin/sh {useradd_locked}"));
    sh(&format!(
        "useradd -m -s /bin/sh {admin_locked} && echo '{admin_locked}:pst-Secret-1' | chpasswd \
         && usermod -L {admin_locked}"
    ));
    sh(&format!(
        "useradd -m -s /bin/sh {with_password} && echo '{with_password}:pst-Secret-2' | chpasswd"
    ));
    sh(&format!("useradd -m -s /bin/sh -p '*' -G sudo {in_sudo}"));
    let fk = e.keys.join(&foreign_key);
    sh(&format!("chown nobody {}", fk.display()));
    let target = e.root.join("elsewhere");
    std::fs::write(&target, format!("{KEY}\n")).unwrap();
    std::os::unix::fs::symlink(&target, e.keys.join(&symlinked)).unwrap();
    assert!(shadow(&useradd_locked).unwrap().starts_with('!'));
    assert!(shadow(&admin_locked).unwrap().starts_with("!$"));

    // --dry-run: the same lines with "would", nothing changed.
    let before = e.snapshot();
    let o = e.podspawn(&["server-setup", "--users", "--dry-run"]);
    assert!(o.status.success());
    let dry = text(&o);
    assert_eq!(before, e.snapshot(), "--dry-run changed something");
    assert!(dry.lines().all(|l| l.starts_with("podspawn: ")), "{dry}");
    assert!(
        dry.contains(&format!("podspawn: would create host account {missing} (")),
        "{dry}"
    );
    assert!(dry.contains(&format!(
        "podspawn: would set {useradd_locked}'s password field from '!' to '*'"
    )));
    assert!(dry.contains(&format!(
        "podspawn: would change the key file {} from nobody:root 0644 to root:podspawn 0640",
        fk.display()
    )));

    // The real run.
    let o = e.podspawn(&["server-setup", "--users"]);
    assert!(o.status.success());
    let real = text(&o);
    let strip = |s: &str| s.replace("podspawn: would ", "podspawn: ");
    assert_eq!(strip(&dry), real, "--dry-run and the run differ");

    // The first two (and the one with a foreign key file) now work.
    for u in [&missing, &useradd_locked, &foreign_key] {
        assert_eq!(shadow(u).as_deref(), Some("*"), "{u}");
        assert!(is_member(u, "podspawn-users"), "{u}");
        let a = podspawn::host::accounts::lookup(u).unwrap();
        assert!(a.home.is_dir(), "{u}: no home");
        assert_eq!(a.shell, Path::new("/bin/sh"));
        assert_eq!(
            lines_with(&real, &format!("not touching {u}")),
            Vec::<&str>::new()
        );
    }
    let created = podspawn::host::accounts::lookup(&useradd_locked).unwrap();
    assert_eq!(
        mode(&created.home),
        (created.uid, created.gid, 0o750),
        "home created by server-setup"
    );
    let g = podspawn::host::accounts::group_gid("podspawn").unwrap();
    for u in [
        &missing,
        &useradd_locked,
        &admin_locked,
        &with_password,
        &in_sudo,
        &foreign_key,
    ] {
        assert_eq!(mode(&e.keys.join(u)), (0, g, 0o640), "{u}");
    }
    assert_eq!(mode(&e.keys), (0, g, 0o750));

    // The others are untouched and reported with the command that converts them.
    let after = e.snapshot();
    for u in [&admin_locked, &with_password, &in_sudo] {
        for f in ["/etc/passwd", "/etc/shadow"] {
            let k = format!("{f}:{u}");
            assert_eq!(before.get(&k), after.get(&k), "{k} changed");
        }
        assert!(!is_member(u, "podspawn-users"), "{u}");
        let l = lines_with(&real, &format!("podspawn: not touching {u}: "));
        assert_eq!(l.len(), 1, "{real}");
        assert!(
            l[0].contains(&format!("`podspawn add-user {u} --convert`")),
            "{}",
            l[0]
        );
    }
    assert!(is_member(&in_sudo, "sudo"));
    assert!(real.contains(&format!(
        "podspawn: not touching {admin_locked}: the account is used for something else; \
         `podspawn add-user {admin_locked} --convert` makes it a podspawn user with these \
         changes:\npodspawn:   - set the password field to '*' (replaces the admin's lock"
    )));
    assert!(real.contains(&format!(
        "podspawn:   - remove {in_sudo} from the group sudo"
    )));
    // The symlink: reported, not followed, no account.
    let l = lines_with(&real, &format!("not touching {symlinked}"));
    assert!(l.len() == 1 && l[0].contains("is a symlink"), "{real}");
    assert!(std::fs::symlink_metadata(e.keys.join(&symlinked))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(mode(&target).2, 0o644, "the symlink's target was changed");
    assert!(podspawn::host::accounts::lookup(&symlinked).is_none());

    // Idempotent: a second run has no change lines and changes nothing.
    let o = e.podspawn(&["server-setup", "--users"]);
    assert!(o.status.success());
    let again = text(&o);
    assert!(
        again
            .lines()
            .all(|l| l.starts_with("podspawn: not touching ") || l.starts_with("podspawn:   - ")),
        "{again}"
    );
    assert_eq!(after, e.snapshot());

    // doctor names the accounts left alone, with the command that converts each.
    let c = users_check(&e);
    assert_eq!(c["status"], "fail", "{c}");
    let fix = c["fix"].as_str().unwrap();
    for u in [&admin_locked, &with_password, &in_sudo] {
        assert!(c["detail"].as_str().unwrap().contains(u.as_str()), "{c}");
        assert!(
            fix.contains(&format!("sudo podspawn add-user {u} --convert")),
            "{c}"
        );
    }
    for u in [&missing, &useradd_locked, &foreign_key] {
        assert!(!c["detail"].as_str().unwrap().contains(u.as_str()), "{c}");
    }

    // Converting them (no --key: the key file exists) makes everything right.
    for u in [&admin_locked, &with_password, &in_sudo] {
        let o = e.podspawn(&["add-user", u, "--convert"]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(shadow(u).as_deref(), Some("*"));
        assert!(is_member(u, "podspawn-users") && !is_member(u, "sudo"));
    }
    std::fs::remove_file(e.keys.join(&symlinked)).unwrap();
    let o = e.podspawn(&["server-setup", "--users"]);
    assert!(o.status.success());
    assert_eq!(text(&o), "", "nothing left to do");
    assert_eq!(users_check(&e)["status"], "pass");
}

/// What cannot be applied is listed, the rest is done, and the exit status says so.
#[test]
fn a_failure_is_reported_and_does_not_stop_the_rest() {
    let mut e = Env::new();
    let broken = e.name("h");
    let fine = e.name("f");
    e.key_file(&broken);
    e.key_file(&fine);
    // A home below a regular file can never be created.
    let blocker = e.root.join("afile");
    std::fs::write(&blocker, "").unwrap();
    sh(&format!(
        "useradd -M -d {}/home -s /bin/sh {broken}",
        blocker.display()
    ));
    let o = e.podspawn(&["server-setup", "--users"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    let l = lines_with(
        &out,
        &format!("podspawn: cannot set {broken}'s password field"),
    );
    assert_eq!(l.len(), 1, "{out}");
    assert!(
        out.contains("could not be applied"),
        "the summary names the failure: {out}"
    );
    // The other user was still set up.
    assert_eq!(shadow(&fine).as_deref(), Some("*"));
    assert!(is_member(&fine, "podspawn-users"));
}
