//! `podspawn server-setup` against copies of real distributions' sshd_config files in temp
//! directories, with the real sshd (`sshd -t`, `sshd -T -C`), real accounts and groups. Never
//! touches /etc/ssh or a running sshd (`--no-reload`, no units).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::TempDir;
use podspawn::commands::server_setup::{self, ServerSetupArgs, SetupReport};
use podspawn::core::config::Config;
use podspawn::core::sshd_config;
use podspawn::host::sshd as host_sshd;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sshd")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Required, not skipped: a test that passes without running proves nothing.
fn require_root_sshd_useradd() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root: run the tests as root (see README)"
    );
    assert!(
        host_sshd::find_sshd().is_some(),
        "these tests need sshd: apt-get install openssh-server"
    );
    assert!(
        Path::new("/usr/sbin/useradd").exists(),
        "these tests need /usr/sbin/useradd: apt-get install passwd"
    );
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A member of podspawn-users for `sshd -T -C user=…` (deleted on drop).
struct Member(String);

impl Member {
    fn new() -> Member {
        podspawn::host::accounts::ensure_system_identities().unwrap();
        let name = format!(
            "pstsu{:x}{}",
            std::process::id() & 0xffff,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        for attempt in 0..40 {
            let out = Command::new("useradd")
                .args(["-M", "-N", "-s", "/bin/sh", "-G", "podspawn-users", &name])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("lock") && attempt < 39,
                "useradd {name}: {err}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        Member(name)
    }
}

impl Member {
    /// Only the name: an account a test expects podspawn to create (deleted on drop, home too).
    fn named(name: String) -> Member {
        Member(name)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for _ in 0..40 {
            let ok = Command::new("userdel")
                .arg("-r")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if ok || podspawn::host::accounts::lookup(&self.0).is_none() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

/// A temp "/etc/ssh" with a main config (Include paths rewritten to it, a private host key) and
/// a temp podspawn tree.
struct Env {
    dir: TempDir,
    config: PathBuf,
    cfg: Config,
}

#[allow(clippy::field_reassign_with_default)]
fn env(main_fixture: &str, dropins: &[(&str, &str)]) -> Env {
    let dir = TempDir::new("server-setup");
    std::fs::create_dir_all(dir.join("ssh")).unwrap();
    let ssh = dir.join("ssh");
    let key = ssh.join("ssh_host_ed25519_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&key),
    );
    let text = fixture(main_fixture).replace("/etc/ssh/", &format!("{}/", ssh.display()));
    let body: String = text
        .split_inclusive('\n')
        .filter(|l| {
            !l.trim_start()
                .trim_start_matches('#')
                .starts_with("HostKey")
        })
        .collect();
    let text = format!(
        "HostKey {}\nPidFile {}/sshd.pid\n{body}",
        key.display(),
        ssh.display()
    );
    let config = ssh.join("sshd_config");
    std::fs::write(&config, text).unwrap();
    if !dropins.is_empty() {
        std::fs::create_dir_all(ssh.join("sshd_config.d")).unwrap();
        for (name, fix) in dropins {
            std::fs::write(ssh.join("sshd_config.d").join(name), fixture(fix)).unwrap();
        }
    }
    let p = |s: &str| dir.join(s);
    let mut cfg = Config::default();
    cfg.path = p("etc/podspawn/config.yaml");
    cfg.auth.key_dir = p("etc/podspawn/keys");
    cfg.users_dir = p("etc/podspawn/users");
    cfg.state.db_path = p("lib/podspawn/state.db");
    cfg.state.lock_dir = p("lib/podspawn/locks");
    cfg.state.homes_dir = p("lib/podspawn/homes");
    cfg.broker.socket = p("run/podspawn/podspawn.sock");
    cfg.log.audit_log = Some(p("log/podspawn/audit.jsonl"));
    Env { dir, config, cfg }
}

fn args(e: &Env, probe: Option<&Member>) -> ServerSetupArgs {
    ServerSetupArgs {
        sshd_config: e.config.clone(),
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_podspawn"))),
        no_reload: true,
        no_units: true,
        probe_user: probe.map(|m| m.0.clone()),
        // Never the machine's /etc/pam.d: a private one (absent unless a test writes it).
        pam_dir: e.dir.join("pam.d"),
        ..ServerSetupArgs::default()
    }
}

fn setup_run(e: &Env, a: &ServerSetupArgs) -> (Result<SetupReport, String>, String) {
    let mut out = Vec::new();
    let r = server_setup::run(&e.cfg, a, &mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    eprintln!("--- output ---\n{out}--- result ---\n{r:?}");
    (r, out)
}

/// Every file and directory under `dir`: type, bytes, owner and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let bytes = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (bytes, m.uid(), m.gid(), m.mode()));
        }
    }
    out
}

fn sshd() -> PathBuf {
    host_sshd::find_sshd().unwrap()
}

fn effective(e: &Env, user: &str) -> BTreeMap<String, Vec<String>> {
    sshd_config::parse_sshd_t(&host_sshd::sshd_dump(&sshd(), &e.config, Some(user)).unwrap())
}

fn bin() -> String {
    env!("CARGO_BIN_EXE_podspawn").to_string()
}

fn assert_ours(e: &Env, user: &str) {
    let t = effective(e, user);
    assert_eq!(
        t["authorizedkeyscommand"],
        vec![format!("{} auth-keys %u %t %k", bin())]
    );
    assert_eq!(t["authorizedkeyscommanduser"], vec!["podspawn"]);
    assert_eq!(t["authorizedkeysfile"], vec!["none"]);
    assert_eq!(t["allowstreamlocalforwarding"], vec!["no"]);
    assert_eq!(t["x11forwarding"], vec!["no"]);
    assert_eq!(t["permittunnel"], vec!["no"]);
    assert_eq!(t["permituserrc"], vec!["no"]);
    assert!(t["acceptenv"].contains(&"PODSPAWN_PROJECT".to_string()));
}

fn mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn podspawn_gid() -> u32 {
    podspawn::host::accounts::group_gid("podspawn").unwrap()
}

fn assert_podspawn_tree(e: &Env) {
    let g = podspawn_gid();
    assert_eq!(mode(&e.dir.join("etc/podspawn")), (0, 0, 0o755));
    assert_eq!(mode(&e.cfg.auth.key_dir), (0, g, 0o750));
    assert_eq!(mode(&e.cfg.users_dir), (0, 0, 0o755));
    assert_eq!(mode(&e.dir.join("lib/podspawn")), (0, 0, 0o700));
    assert_eq!(mode(&e.cfg.state.lock_dir), (0, 0, 0o700));
    assert_eq!(mode(&e.cfg.state.homes_dir), (0, 0, 0o711));
    assert_eq!(mode(&e.dir.join("run/podspawn")), (0, 0, 0o755));
    assert_eq!(mode(&e.dir.join("log/podspawn")), (0, 0, 0o750));
    assert_eq!(mode(&e.cfg.path), (0, g, 0o640));
    assert_eq!(
        std::fs::read_to_string(&e.cfg.path).unwrap(),
        podspawn::core::config::default_config_yaml()
    );
}

/// Runs setup twice: the second run must change nothing, byte for byte.
fn assert_idempotent(e: &Env, a: &ServerSetupArgs) {
    let before = snapshot(&e.dir);
    let (r, out) = setup_run(e, a);
    let r = r.unwrap();
    assert!(r.changes.is_empty(), "second run changed: {:?}", r.changes);
    assert!(!r.sshd_changed);
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(before, snapshot(&e.dir), "second run changed files");
}

#[test]
fn debian_gets_a_dropin() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    let m = Member::new();
    let main_before = std::fs::read(&e.config).unwrap();
    let a = args(&e, Some(&m));
    let (r, _) = setup_run(&e, &a);
    let r = r.unwrap();
    let dropin = e.dir.join("ssh/sshd_config.d/10-podspawn.conf");
    assert_eq!(r.sshd_target, dropin);
    assert!(r.sshd_changed && !r.reloaded);
    assert_eq!(r.probed_user.as_deref(), Some(m.0.as_str()));
    assert_eq!(
        std::fs::read_to_string(&dropin).unwrap(),
        // This config moves the broker socket, so the forced command names it.
        sshd_config::render_dropin_with(
            &bin(),
            Some(
                &e.dir
                    .join("run/podspawn/podspawn.sock")
                    .display()
                    .to_string()
            )
        )
    );
    assert_eq!(mode(&dropin), (0, 0, 0o644));
    assert_eq!(
        std::fs::read(&e.config).unwrap(),
        main_before,
        "main file untouched"
    );
    host_sshd::sshd_test(&sshd(), &e.config).unwrap();
    assert_ours(&e, &m.0);
    // No pam_podspawn.so (no PAM service file at all): TCP forwarding stays off.
    assert!(!e
        .dir
        .join("ssh/sshd_config.d/09-podspawn-forwarding.conf")
        .exists());
    assert_eq!(effective(&e, &m.0)["allowtcpforwarding"], vec!["no"]);
    // Non-members keep the main file's settings.
    let root = effective(&e, "root");
    assert_eq!(root["authorizedkeyscommand"], vec!["none"]);
    assert_eq!(root["x11forwarding"], vec!["yes"]);
    assert_podspawn_tree(&e);
    assert!(
        r.notes.iter().any(|n| n.contains("--no-reload")),
        "{:?}",
        r.notes
    );
    assert_idempotent(&e, &a);
}

#[test]
fn fedora_gets_a_dropin_before_its_own() {
    require_root_sshd_useradd();
    let e = env(
        "fedora.sshd_config",
        &[("50-redhat.conf", "fedora-50-redhat.conf")],
    );
    let m = Member::new();
    let main_before = std::fs::read(&e.config).unwrap();
    let a = args(&e, Some(&m));
    let r = setup_run(&e, &a).0.unwrap();
    assert_eq!(
        r.sshd_target,
        e.dir.join("ssh/sshd_config.d/10-podspawn.conf")
    );
    assert_eq!(std::fs::read(&e.config).unwrap(), main_before);
    host_sshd::sshd_test(&sshd(), &e.config).unwrap();
    assert_ours(&e, &m.0);
    // 50-redhat.conf's X11Forwarding yes still applies to everyone else; ours wins for members.
    assert_eq!(effective(&e, "root")["x11forwarding"], vec!["yes"]);
    assert_eq!(effective(&e, &m.0)["x11forwarding"], vec!["no"]);
    let t = effective(&e, &m.0);
    assert_eq!(
        t["subsystem"],
        vec!["sftp /usr/libexec/openssh/sftp-server"]
    );
    assert_idempotent(&e, &a);
}

#[test]
fn without_include_a_block_goes_before_the_first_match() {
    require_root_sshd_useradd();
    let e = env("no-include.sshd_config", &[]);
    let m = Member::new();
    let original = std::fs::read_to_string(&e.config).unwrap();
    let a = args(&e, Some(&m));
    let r = setup_run(&e, &a).0.unwrap();
    assert_eq!(r.sshd_target, e.config);
    let text = std::fs::read_to_string(&e.config).unwrap();
    let begin = text.find(sshd_config::BLOCK_BEGIN).expect("marked block");
    let end = text.find(sshd_config::BLOCK_END).unwrap();
    let user_match = text.find("Match User backup").unwrap();
    assert!(begin < end && end < user_match, "{text}");
    // Only the block was added.
    let (without, had) = sshd_config::remove_block(&text).unwrap();
    assert!(had);
    assert_eq!(without, original);
    // The original is kept as a backup, with the original's owner and mode.
    let bak = e.dir.join("ssh/sshd_config.podspawn.bak");
    assert_eq!(std::fs::read_to_string(&bak).unwrap(), original);
    assert!(!e.dir.join("ssh/sshd_config.d").exists());
    host_sshd::sshd_test(&sshd(), &e.config).unwrap();
    assert_ours(&e, &m.0);
    // The trailing Match block still applies to its user, and nothing of ours leaks into it.
    assert!(
        podspawn::host::accounts::lookup("backup").is_some(),
        "this test needs the account `backup` (Debian's base-passwd) for the fixture's `Match User \
         backup`: `sshd -T -C user=backup` needs an existing account"
    );
    let b = effective(&e, "backup");
    assert_eq!(b["forcecommand"], vec!["internal-sftp"]);
    assert_eq!(b["authorizedkeyscommand"], vec!["none"]);
    assert_eq!(b["authorizedkeysfile"], vec![".ssh/authorized_keys"]);
    assert_idempotent(&e, &a);

    // A changed binary replaces the block in place (still one block, still before the Match).
    let other = TempDir::new("bin");
    let other_bin = other.join("podspawn");
    std::fs::copy(env!("CARGO_BIN_EXE_podspawn"), &other_bin).unwrap();
    let mut a2 = a.clone();
    a2.binary = Some(other_bin.clone());
    setup_run(&e, &a2).0.unwrap();
    let text = std::fs::read_to_string(&e.config).unwrap();
    assert_eq!(text.matches(sshd_config::BLOCK_BEGIN).count(), 1);
    assert!(text.contains(&format!("{} auth-keys %u %t %k", other_bin.display())));
    assert!(text.find(sshd_config::BLOCK_END).unwrap() < text.find("Match User backup").unwrap());
}

#[test]
fn a_shadowing_match_block_is_reported_and_rolled_back() {
    require_root_sshd_useradd();
    for probe in [true, false] {
        let e = env(
            "debian12.sshd_config",
            &[("05-cloud.conf", "05-cloud-match-all.conf")],
        );
        let m = Member::new();
        let ssh_before = snapshot(&e.dir.join("ssh"));
        let a = args(&e, probe.then_some(&m));
        let err = setup_run(&e, &a).0.unwrap_err();
        let cloud = e.dir.join("ssh/sshd_config.d/05-cloud.conf");
        assert!(
            err.contains(&format!("{}:4", cloud.display())),
            "names the file and line: {err}"
        );
        assert!(err.contains("rolled back"), "{err}");
        assert!(err.contains("/usr/bin/other %u"), "{err}");
        assert_eq!(
            ssh_before,
            snapshot(&e.dir.join("ssh")),
            "sshd files restored"
        );
        assert!(!e.dir.join("ssh/sshd_config.d/10-podspawn.conf").exists());
    }
}

#[test]
fn an_invalid_config_aborts_before_anything() {
    require_root_sshd_useradd();
    // A global AuthorizedKeysCommand without its user: `sshd -t` already fails.
    let e = env(
        "debian12.sshd_config",
        &[("05-cloud.conf", "05-cloud-global.conf")],
    );
    let before = snapshot(&e.dir);
    let err = setup_run(&e, &args(&e, None)).0.unwrap_err();
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(err.contains("AuthorizedKeysCommandUser"), "{err}");
    assert_eq!(before, snapshot(&e.dir));

    let e = env("debian12.sshd_config", &[]);
    let mut t = std::fs::read_to_string(&e.config).unwrap();
    t.push_str("NoSuchKeyword yes\n");
    std::fs::write(&e.config, t).unwrap();
    let before = snapshot(&e.dir);
    let err = setup_run(&e, &args(&e, None)).0.unwrap_err();
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(before, snapshot(&e.dir));
}

#[test]
fn a_global_keys_command_does_not_shadow() {
    require_root_sshd_useradd();
    let e = env(
        "debian12.sshd_config",
        &[("05-cloud.conf", "05-cloud-global-with-user.conf")],
    );
    let m = Member::new();
    let a = args(&e, Some(&m));
    let r = setup_run(&e, &a).0.unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("05-cloud.conf:3") && n.contains("other users only")),
        "{:?}",
        r.notes
    );
    assert_ours(&e, &m.0);
    assert_eq!(
        effective(&e, "root")["authorizedkeyscommand"],
        vec!["/usr/bin/other %u"]
    );
    assert_idempotent(&e, &a);
}

#[test]
fn dry_run_changes_nothing() {
    require_root_sshd_useradd();
    let e = env("no-include.sshd_config", &[]);
    let before = snapshot(&e.dir);
    // Our own member: other tests add and remove group members concurrently.
    let probe = Member::new();
    let mut a = args(&e, Some(&probe));
    a.dry_run = true;
    let (r, out) = setup_run(&e, &a);
    let r = r.unwrap();
    assert_eq!(before, snapshot(&e.dir));
    assert!(out.contains("nothing is changed"), "{out}");
    assert!(out.contains("would create"), "{out}");
    assert!(out.contains(sshd_config::BLOCK_BEGIN), "{out}");
    assert!(
        r.changes.iter().any(|c| c.contains("podspawn's block")),
        "{:?}",
        r.changes
    );

    // The plan also sees a shadowing drop-in.
    let e = env(
        "debian12.sshd_config",
        &[("05-cloud.conf", "05-cloud-match-all.conf")],
    );
    let before = snapshot(&e.dir);
    // Our own member: other tests add and remove group members concurrently.
    let probe = Member::new();
    let mut a = args(&e, Some(&probe));
    a.dry_run = true;
    let r = setup_run(&e, &a).0.unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("would fail") && n.contains("05-cloud.conf:4")),
        "{:?}",
        r.notes
    );
    assert_eq!(before, snapshot(&e.dir));
}

#[test]
fn an_unsafe_binary_is_refused() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    let d = e.dir.join("gw");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
    let b = d.join("podspawn");
    std::fs::copy(env!("CARGO_BIN_EXE_podspawn"), &b).unwrap();
    let before = snapshot(&e.dir);
    // Our own member: other tests add and remove group members concurrently.
    let probe = Member::new();
    let mut a = args(&e, Some(&probe));
    a.binary = Some(b);
    let err = setup_run(&e, &a).0.unwrap_err();
    assert!(err.contains("group- or world-writable"), "{err}");
    assert!(err.contains("Unsafe AuthorizedKeysCommand"), "{err}");
    assert!(
        err.contains(&format!("sudo chmod go-w {}", d.display())),
        "{err}"
    );
    assert_eq!(before, snapshot(&e.dir));
    a.binary = Some(e.dir.join("missing/podspawn"));
    assert!(setup_run(&e, &a).0.is_err());
    a.binary = Some(PathBuf::from("relative/podspawn"));
    assert!(setup_run(&e, &a).0.unwrap_err().contains("absolute"));
}

#[test]
fn existing_files_get_the_right_owner_and_mode() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    let keys = &e.cfg.auth.key_dir;
    std::fs::create_dir_all(keys).unwrap();
    std::fs::set_permissions(keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A registered user: server-setup creates the host account (removed by the guard).
    let user = Member::named(format!(
        "pstsk{:x}{}",
        std::process::id() & 0xffff,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let kf = keys.join(&user.0);
    std::fs::write(
        &kf,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4Zou a\n",
    )
    .unwrap();
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::symlink(&kf, keys.join("bob")).unwrap();
    std::fs::create_dir_all(e.cfg.path.parent().unwrap()).unwrap();
    std::fs::write(&e.cfg.path, "session:\n  grace_period: 30s\n").unwrap();
    std::fs::set_permissions(&e.cfg.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = &e.cfg.state.db_path;
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        db.parent().unwrap(),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    std::fs::write(db, b"x").unwrap();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let wal = db.with_file_name("state.db-wal");
    std::fs::write(&wal, b"x").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o664)).unwrap();

    // Our own member: other tests add and remove group members concurrently.
    let probe = Member::new();
    let a = args(&e, Some(&probe));
    let r = setup_run(&e, &a).0.unwrap();
    let g = podspawn_gid();
    assert_eq!(mode(keys), (0, g, 0o750));
    assert_eq!(mode(&kf), (0, g, 0o640));
    assert!(podspawn::host::accounts::is_member(
        &user.0,
        "podspawn-users"
    ));
    assert!(
        r.changes
            .iter()
            .any(|c| c.starts_with(&format!("create host account {}", user.0))),
        "{:?}",
        r.changes
    );
    assert_eq!(mode(&e.cfg.path), (0, g, 0o640));
    assert_eq!(
        std::fs::read_to_string(&e.cfg.path).unwrap(),
        "session:\n  grace_period: 30s\n",
        "an existing config is kept"
    );
    assert_eq!(mode(db), (0, 0, 0o600));
    assert_eq!(mode(&wal), (0, 0, 0o600));
    assert_eq!(mode(db.parent().unwrap()), (0, 0, 0o700));
    assert!(std::fs::symlink_metadata(keys.join("bob"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("bob") && n.contains("symlink")),
        "{:?}",
        r.notes
    );
    assert_idempotent(&e, &a);
}

#[test]
fn an_old_block_moves_to_the_dropin_when_an_include_appears() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    let m = Member::new();
    // As if an older setup had written a block (before the Include existed).
    let text = std::fs::read_to_string(&e.config).unwrap();
    let with_block =
        sshd_config::insert_block(&text, &sshd_config::render_block("/usr/sbin/old-podspawn"))
            .unwrap();
    std::fs::write(&e.config, &with_block).unwrap();
    let a = args(&e, Some(&m));
    let r = setup_run(&e, &a).0.unwrap();
    assert_eq!(
        r.sshd_target,
        e.dir.join("ssh/sshd_config.d/10-podspawn.conf")
    );
    assert_eq!(std::fs::read_to_string(&e.config).unwrap(), text);
    assert_eq!(
        std::fs::read_to_string(e.dir.join("ssh/sshd_config.podspawn.bak")).unwrap(),
        with_block
    );
    assert_ours(&e, &m.0);
    assert_idempotent(&e, &a);
}

#[test]
fn refuses_to_run_with_a_probe_user_outside_the_group() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    let mut a = args(&e, None);
    a.probe_user = Some("root".into());
    let before = snapshot(&e.dir);
    assert!(setup_run(&e, &a)
        .0
        .unwrap_err()
        .contains("not in podspawn-users"));
    a.probe_user = Some("pst-no-such-user".into());
    assert!(setup_run(&e, &a).0.unwrap_err().contains("no such account"));
    assert_eq!(before, snapshot(&e.dir));
}

/// After server-setup, doctor's sshd, binary and file checks pass for the same configuration.
#[test]
fn doctor_agrees_after_setup() {
    require_root_sshd_useradd();
    use podspawn::commands::doctor::{self, Status};
    let e = env("no-include.sshd_config", &[]);
    let m = Member::new();
    setup_run(&e, &args(&e, Some(&m))).0.unwrap();
    let checks = doctor::gather(
        &e.cfg,
        &doctor::DoctorArgs {
            json: false,
            sshd_config: e.config.clone(),
            // Other tests add and remove members of podspawn-users concurrently: probe ours.
            probe_user: Some(m.0.clone()),
            pam_dir: e.dir.join("pam.d"),
        },
    );
    let status = |n: &str| {
        let c = checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no check {n}"));
        eprintln!("{c:?}");
        c.status
    };
    assert_eq!(status(doctor::SSHD_CHECK), Status::Pass);
    assert_eq!(status(doctor::BINARY_CHECK), Status::Pass);
    assert_eq!(status(doctor::CONFIG_CHECK), Status::Pass);
    assert_eq!(status(doctor::KEY_DIR_CHECK), Status::Pass);
    assert_eq!(status(doctor::KEY_FILES_CHECK), Status::Pass);
    assert_eq!(status(doctor::LOCK_CHECK), Status::Pass);
    assert_eq!(status(doctor::STATE_CHECK), Status::Warn);
    // No PAM service file here: forwarding is off, which is what sshd does.
    assert_eq!(status(doctor::FORWARDING_CHECK), Status::Pass);
    assert_eq!(status(doctor::USEPAM_CHECK), Status::Pass);
    assert_eq!(status(doctor::PAM_STACK_CHECK), Status::Warn);
    assert_eq!(status(doctor::PAM_MODULE_CHECK), Status::Warn);
}

/// With the module in place doctor agrees that forwarding is on; an earlier `Match all` that
/// turns forwarding on while the module is not in place is doctor's most important failure.
#[test]
fn doctor_agrees_about_forwarding() {
    require_root_sshd_useradd();
    use podspawn::commands::doctor::{self, Status};
    let e = env("debian12.sshd_config", &[]);
    let m = Member::new();
    write_pam(&e, Some("required"));
    setup_run(&e, &args(&e, Some(&m))).0.unwrap();
    let gather = || {
        doctor::gather(
            &e.cfg,
            &doctor::DoctorArgs {
                json: false,
                sshd_config: e.config.clone(),
                probe_user: Some(m.0.clone()),
                pam_dir: e.dir.join("pam.d"),
            },
        )
    };
    let status = |checks: &[doctor::Check], n: &str| {
        let c = checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no check {n}"))
            .clone();
        eprintln!("{c:?}");
        c
    };
    let checks = gather();
    for n in [
        doctor::SSHD_CHECK,
        doctor::FORWARDING_CHECK,
        doctor::USEPAM_CHECK,
        doctor::PAM_STACK_CHECK,
        doctor::PAM_MODULE_CHECK,
    ] {
        assert_eq!(status(&checks, n).status, Status::Pass, "{n}");
    }
    assert!(status(&checks, doctor::FORWARDING_CHECK)
        .detail
        .starts_with("on for podspawn users"));

    // The module's line turns optional, and server-setup has not run since: forwarding is still
    // on, so the control is an error, and so is forwarding without the module in place.
    write_pam(&e, Some("optional"));
    let checks = gather();
    assert_eq!(
        status(&checks, doctor::PAM_STACK_CHECK).status,
        Status::Fail
    );
    let c = status(&checks, doctor::FORWARDING_CHECK);
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("host's network namespace"), "{c:?}");
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("server-setup --forwarding"));
    assert_eq!(status(&checks, doctor::SSHD_CHECK).status, Status::Fail);
    let json = doctor::render_json(&checks);
    assert!(json.contains("\"TCP forwarding\""), "{json}");

    // After --forwarding: off, and the optional control is only a warning.
    let mut a = args(&e, Some(&m));
    a.forwarding = true;
    server_setup::forwarding_only(&e.cfg, &a, &mut Vec::new()).unwrap();
    let checks = gather();
    assert_eq!(
        status(&checks, doctor::FORWARDING_CHECK).status,
        Status::Pass
    );
    assert_eq!(status(&checks, doctor::SSHD_CHECK).status, Status::Pass);
    assert_eq!(
        status(&checks, doctor::PAM_STACK_CHECK).status,
        Status::Warn
    );
}

// ---- TCP forwarding and pam_podspawn.so ------------------------------------------------------

/// A private pam.d whose sshd service has `@include common-session` (Debian's layout) with
/// pam_podspawn.so (an absolute path to a file of this test) under `control`; `None`: no
/// module line.
fn write_pam(e: &Env, control: Option<&str>) -> PathBuf {
    let pam = e.dir.join("pam.d");
    std::fs::create_dir_all(&pam).unwrap();
    let module = e.dir.join("security/pam_podspawn.so");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::write(&module, b"not really a module").unwrap();
    std::fs::write(
        pam.join("sshd"),
        "@include common-auth\nsession    required     pam_loginuid.so\n@include common-session\n",
    )
    .unwrap();
    let mut common = String::from(
        "session\t[default=1]\t\t\tpam_permit.so\nsession\trequisite\t\t\tpam_deny.so\n\
         session\trequired\t\t\tpam_permit.so\nsession\trequired\tpam_unix.so\n",
    );
    if let Some(c) = control {
        common.push_str(&format!("session\t{c}\t{}\n", module.display()));
    }
    std::fs::write(pam.join("common-session"), common).unwrap();
    module
}

fn forwarding_run(
    cfg: &Config,
    a: &ServerSetupArgs,
) -> Result<server_setup::ForwardingReport, String> {
    let mut a = a.clone();
    a.forwarding = true;
    let mut out = Vec::new();
    let r = server_setup::forwarding_only(cfg, &a, &mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    eprintln!("--- forwarding ---\n{out}--- result ---\n{r:?}");
    if let Ok(r) = &r {
        assert_eq!(out, format!("{}\n", r.line), "one line only");
    }
    r
}

#[test]
fn forwarding_follows_the_pam_module() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    let m = Member::new();
    write_pam(&e, Some("required"));
    let a = args(&e, Some(&m));
    let fwd = e.dir.join("ssh/sshd_config.d/09-podspawn-forwarding.conf");
    let dropin = e.dir.join("ssh/sshd_config.d/10-podspawn.conf");

    let (r, out) = setup_run(&e, &a);
    r.unwrap();
    assert!(
        out.contains("TCP forwarding (ssh -L/-R/-D) is on: pam_podspawn.so is in sshd's PAM"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&fwd).unwrap(),
        sshd_config::render_forwarding_dropin()
    );
    assert_eq!(mode(&fwd), (0, 0, 0o644));
    // The main drop-in is the one the packages ship: forwarding off there, whatever happens.
    assert!(std::fs::read_to_string(&dropin)
        .unwrap()
        .lines()
        .any(|l| l.trim() == "AllowTcpForwarding no"));
    assert_ours(&e, &m.0);
    let t = effective(&e, &m.0);
    assert_eq!(t["allowtcpforwarding"], vec!["yes"]);
    assert_eq!(t["gatewayports"], vec!["no"]);
    assert_idempotent(&e, &a);
    // --forwarding: nothing to change, one line.
    let f = forwarding_run(&e.cfg, &a).unwrap();
    assert!(f.on && !f.changed, "{f:?}");

    // An `optional` control would let a failing module through: off, the file removed.
    write_pam(&e, Some("optional"));
    let f = forwarding_run(&e.cfg, &a).unwrap();
    assert!(!f.on && f.changed, "{f:?}");
    assert!(
        f.line.starts_with("TCP forwarding (ssh -L/-R/-D) is off: "),
        "{f:?}"
    );
    assert!(f.line.contains("control optional"), "{f:?}");
    assert!(!fwd.exists());
    assert_eq!(effective(&e, &m.0)["allowtcpforwarding"], vec!["no"]);
    assert!(!forwarding_run(&e.cfg, &a).unwrap().changed, "idempotent");

    // security.port_forwarding: on refuses, naming why and the fix, and changes nothing.
    let mut on = e.cfg.clone();
    on.security.port_forwarding = podspawn::core::config::PortForwarding::On;
    let before = snapshot(&e.dir);
    let err = forwarding_run(&on, &a).unwrap_err();
    assert!(err.contains("security.port_forwarding is on"), "{err}");
    assert!(
        err.contains("control optional") && err.contains("fix:"),
        "{err}"
    );
    let err = server_setup::run(&on, &a, &mut Vec::new()).unwrap_err();
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(before, snapshot(&e.dir));

    // Back to required: on again; then UsePAM no turns it off.
    write_pam(&e, Some("[success=ok ignore=ignore default=bad]"));
    assert!(forwarding_run(&e.cfg, &a).unwrap().on);
    assert!(fwd.exists());
    let text = std::fs::read_to_string(&e.config)
        .unwrap()
        .replace("UsePAM yes", "UsePAM no");
    std::fs::write(&e.config, text).unwrap();
    let f = forwarding_run(&e.cfg, &a).unwrap();
    assert!(!f.on && f.changed, "{f:?}");
    assert!(
        f.line
            .contains("sshd runs with UsePAM no; pam_podspawn.so needs UsePAM yes"),
        "{f:?}"
    );
    assert!(!fwd.exists());

    // security.port_forwarding: off never turns it on.
    let text = std::fs::read_to_string(&e.config)
        .unwrap()
        .replace("UsePAM no", "UsePAM yes");
    std::fs::write(&e.config, text).unwrap();
    let mut off = e.cfg.clone();
    off.security.port_forwarding = podspawn::core::config::PortForwarding::Off;
    let f = forwarding_run(&off, &a).unwrap();
    assert!(
        !f.on && f.line.ends_with("security.port_forwarding is off"),
        "{f:?}"
    );
    assert!(!fwd.exists());
}

#[test]
fn forwarding_in_the_marked_block() {
    require_root_sshd_useradd();
    let e = env("no-include.sshd_config", &[]);
    let m = Member::new();
    let module = write_pam(&e, Some("requisite"));
    let a = args(&e, Some(&m));
    setup_run(&e, &a).0.unwrap();
    let text = std::fs::read_to_string(&e.config).unwrap();
    assert!(sshd_config::block_has_forwarding(&text), "{text}");
    assert!(text.find(sshd_config::BLOCK_END).unwrap() < text.find("Match User backup").unwrap());
    assert_ours(&e, &m.0);
    assert_eq!(effective(&e, &m.0)["allowtcpforwarding"], vec!["yes"]);
    // The trailing Match block keeps its own value.
    assert_eq!(effective(&e, "backup")["allowtcpforwarding"], vec!["no"]);
    assert_idempotent(&e, &a);

    // The module file goes away: --forwarding takes the lines out of the block, nothing else.
    std::fs::remove_file(&module).unwrap();
    let f = forwarding_run(&e.cfg, &a).unwrap();
    assert!(!f.on && f.changed, "{f:?}");
    assert!(f.line.contains("module file is missing"), "{f:?}");
    let after = std::fs::read_to_string(&e.config).unwrap();
    assert!(!sshd_config::block_has_forwarding(&after));
    assert_eq!(
        after,
        sshd_config::set_block_forwarding(&text, false).unwrap()
    );
    assert_eq!(effective(&e, &m.0)["allowtcpforwarding"], vec!["no"]);
    assert_ours(&e, &m.0);
}

/// The check that matters: an earlier drop-in turning forwarding on for everyone, while the
/// module is not in place, would open forwards in the host's network namespace.
#[test]
fn forwarding_on_without_the_module_is_refused_and_rolled_back() {
    require_root_sshd_useradd();
    let e = env("debian12.sshd_config", &[]);
    std::fs::create_dir_all(e.dir.join("ssh/sshd_config.d")).unwrap();
    std::fs::write(
        e.dir.join("ssh/sshd_config.d/05-fwd.conf"),
        "Match all\n    AllowTcpForwarding yes\n",
    )
    .unwrap();
    let m = Member::new();
    let ssh_before = snapshot(&e.dir.join("ssh"));
    let err = setup_run(&e, &args(&e, Some(&m))).0.unwrap_err();
    assert!(err.contains("host's network namespace"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(ssh_before, snapshot(&e.dir.join("ssh")));

    // --forwarding says the same, and a forwarding drop-in left from before stays removed.
    std::fs::write(
        e.dir.join("ssh/sshd_config.d/10-podspawn.conf"),
        sshd_config::render_dropin(&bin()),
    )
    .unwrap();
    let fwd = e.dir.join("ssh/sshd_config.d/09-podspawn-forwarding.conf");
    std::fs::write(&fwd, sshd_config::render_forwarding_dropin()).unwrap();
    let err = forwarding_run(&e.cfg, &args(&e, Some(&m))).unwrap_err();
    assert!(err.contains("host's network namespace"), "{err}");
    assert!(err.contains("stay removed"), "{err}");
    assert!(!fwd.exists());
}
