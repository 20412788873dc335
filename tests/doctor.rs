//! `podspawn doctor`: every check seen failing and passing, with constructed inputs for the pure
//! checks and real temp files, sockets, sshd and Docker where the check reads the system.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::TempDir;
use podspawn::commands::doctor::{
    self, Check, ContainerFacts, Listener, SocketFacts, Status, UserFacts,
};
use podspawn::core::config::PortForwarding;
use podspawn::core::sshd_config::{self, Directive, ShadowReport};
use podspawn::host::accounts::AccountFacts;
use podspawn::host::fs_policy::{self, PathEntry};
use podspawn::host::pam;
use podspawn::host::sshd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    let r = nix::unistd::geteuid().is_root();
    if !r {
        eprintln!("not running as root");
    }
    r
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn assert_status(c: &Check, s: Status) {
    assert_eq!(c.status, s, "{c:#?}");
    if s == Status::Fail {
        assert!(
            c.fix.as_deref().is_some_and(|f| !f.is_empty()),
            "a failure needs a fix: {c:#?}"
        );
    }
}

fn podspawn_gid() -> u32 {
    podspawn::host::accounts::ensure_system_identities()
        .unwrap()
        .podspawn_gid
}

// ---- sshd -----------------------------------------------------------------------------------

const GOOD_DUMP: &str = "port 22\nauthorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k\n\
    authorizedkeyscommanduser podspawn\nauthorizedkeysfile none\npermituserrc no\n\
    forcecommand /usr/bin/podspawn spawn\nauthenticationmethods publickey\n\
    pubkeyauthentication yes\npasswordauthentication no\nkbdinteractiveauthentication no\n\
    gssapiauthentication no\nhostbasedauthentication no\n\
    allowstreamlocalforwarding no\nallowtcpforwarding no\nx11forwarding no\npermittunnel no\n\
    acceptenv PODSPAWN_PROJECT\nacceptenv LANG\nacceptenv LC_*\n";

fn d(file: &str, line: usize, kw: &str, args: &str, ctx: Option<&str>) -> Directive {
    Directive {
        file: file.into(),
        line,
        keyword: kw.into(),
        args: args.into(),
        context: ctx.map(str::to_string),
        text: format!("{kw} {args}"),
    }
}

fn ours() -> Directive {
    d(
        "/etc/ssh/sshd_config.d/10-podspawn.conf",
        18,
        "authorizedkeyscommand",
        "/usr/bin/podspawn auth-keys %u %t %k",
        Some("Group podspawn-users"),
    )
}

#[test]
fn sshd_check_with_a_member() {
    let report = ShadowReport {
        ours: Some(ours()),
        ..Default::default()
    };
    let c = doctor::check_sshd(Some("alice"), Ok(GOOD_DUMP), &report);
    assert_status(&c, Status::Pass);
    assert!(c.detail.contains("alice"));

    // Shadowed by an earlier Match block: named with file and line.
    let cloud = d(
        "/etc/ssh/sshd_config.d/05-cloud.conf",
        2,
        "authorizedkeyscommand",
        "/usr/bin/other %u",
        Some("all"),
    );
    let report = ShadowReport {
        ours: Some(ours()),
        earlier_match: vec![cloud],
        global: vec![],
    };
    let dump = GOOD_DUMP.replace("/usr/bin/podspawn auth-keys %u %t %k", "/usr/bin/other %u");
    let c = doctor::check_sshd(Some("alice"), Ok(&dump), &report);
    assert_status(&c, Status::Fail);
    assert!(
        c.detail.contains("/etc/ssh/sshd_config.d/05-cloud.conf:2"),
        "{c:?}"
    );
    assert!(c.fix.as_deref().unwrap().contains("05-cloud.conf"), "{c:?}");

    // Not configured at all.
    let c = doctor::check_sshd(
        Some("alice"),
        Ok("port 22\nauthorizedkeyscommand none\n"),
        &ShadowReport::default(),
    );
    assert_status(&c, Status::Fail);
    assert_eq!(c.fix.as_deref(), Some("sudo podspawn server-setup"));

    // The forced command can be bypassed with ~/.ssh/authorized_keys.
    let dump = GOOD_DUMP.replace(
        "authorizedkeysfile none",
        "authorizedkeysfile .ssh/authorized_keys",
    );
    let c = doctor::check_sshd(Some("alice"), Ok(&dump), &report);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("authorizedkeysfile"));

    // Forwarding a unix socket would reach the host's (Docker's) sockets: a failure.
    let dump = GOOD_DUMP.replace(
        "allowstreamlocalforwarding no",
        "allowstreamlocalforwarding yes",
    );
    let c = doctor::check_sshd(Some("alice"), Ok(&dump), &report);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("allowstreamlocalforwarding"), "{c:?}");

    // Password and keyboard-interactive logins, or no forced command, bypass the container:
    // each differing value is named, with the fix.
    let dump = GOOD_DUMP
        .replace("passwordauthentication no", "passwordauthentication yes")
        .replace(
            "kbdinteractiveauthentication no",
            "kbdinteractiveauthentication yes",
        )
        .replace("forcecommand /usr/bin/podspawn spawn", "forcecommand none");
    let c = doctor::check_sshd(Some("alice"), Ok(&dump), &report);
    assert_status(&c, Status::Fail);
    for k in [
        "passwordauthentication: effective \"yes\", podspawn needs \"no\"",
        "kbdinteractiveauthentication: effective \"yes\"",
        "forcecommand: effective \"none\"",
    ] {
        assert!(c.detail.contains(k), "{k}: {c:?}");
    }
    assert!(c.fix.is_some(), "{c:?}");

    // A missing AcceptEnv only weakens project routing and locales: a warning.
    let dump = GOOD_DUMP.replace("acceptenv PODSPAWN_PROJECT\n", "");
    let c = doctor::check_sshd(Some("alice"), Ok(&dump), &report);
    assert_status(&c, Status::Warn);

    // sshd -T itself fails.
    let c = doctor::check_sshd(
        Some("alice"),
        Err("line 3: Bad configuration option: Foo"),
        &report,
    );
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("Bad configuration option"));
}

// ---- TCP forwarding and pam_podspawn.so ------------------------------------------------------

fn pam_facts(use_pam: Option<bool>, sshd: Option<&str>, module_file: bool) -> pam::PamFacts {
    let text = sshd.map(str::to_string);
    let load = move |n: &str| (n == "sshd").then(|| text.clone()).flatten();
    pam::PamFacts {
        use_pam,
        service_file: PathBuf::from("/etc/pam.d/sshd"),
        session: pam::stack("sshd", "session", &load).map_err(|e| e.to_string()),
        module_file: module_file.then(|| PathBuf::from("/usr/lib64/security/pam_podspawn.so")),
    }
}

const PAM_REQUIRED: &str = "session include password-auth\nsession required pam_podspawn.so\n";
const PAM_OPTIONAL: &str = "session optional pam_podspawn.so\n";

#[test]
fn sshd_check_expects_forwarding_only_with_the_module() {
    let report = ShadowReport {
        ours: Some(ours()),
        ..Default::default()
    };
    let fwd = GOOD_DUMP.replace(
        "allowtcpforwarding no",
        "allowtcpforwarding yes\ngatewayports no",
    );
    assert_status(
        &doctor::check_sshd_with(Some("alice"), Ok(&fwd), &report, true),
        Status::Pass,
    );
    let c = doctor::check_sshd_with(Some("alice"), Ok(&fwd), &report, false);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("allowtcpforwarding"), "{c:?}");
    // GatewayPorts other than no with forwarding on: a hardening warning.
    let gw = fwd.replace("gatewayports no", "gatewayports clientspecified");
    let c = doctor::check_sshd_with(Some("alice"), Ok(&gw), &report, true);
    assert_status(&c, Status::Warn);
    assert!(c.detail.contains("gatewayports"), "{c:?}");
    // Module in place but forwarding off: the forwarding check's business, not a failure here.
    assert_status(
        &doctor::check_sshd_with(Some("alice"), Ok(GOOD_DUMP), &report, true),
        Status::Pass,
    );
}

#[test]
fn use_pam_check() {
    use PortForwarding::*;
    assert_status(&doctor::check_use_pam(Auto, Some(true)), Status::Pass);
    let c = doctor::check_use_pam(Auto, Some(false));
    assert_status(&c, Status::Warn);
    assert!(c.detail.contains("UsePAM no"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("UsePAM yes"), "{c:?}");
    assert_status(&doctor::check_use_pam(On, Some(false)), Status::Warn);
    assert_status(&doctor::check_use_pam(Off, Some(false)), Status::Pass);
    assert_status(&doctor::check_use_pam(Auto, None), Status::Warn);
}

#[test]
fn pam_stack_check() {
    use PortForwarding::*;
    let ok = pam_facts(Some(true), Some(PAM_REQUIRED), true);
    let c = doctor::check_pam_stack(Auto, &ok, true);
    assert_status(&c, Status::Pass);
    assert_eq!(c.detail, "session required pam_podspawn.so (sshd:2)");
    // Not in the stack: auto warns (forwarding stays off), on fails, off does not care.
    let none = pam_facts(Some(true), Some("session required pam_unix.so\n"), true);
    let c = doctor::check_pam_stack(Auto, &none, false);
    assert_status(&c, Status::Warn);
    assert!(
        c.fix.as_deref().unwrap().contains("pam-auth-update"),
        "{c:?}"
    );
    assert_status(&doctor::check_pam_stack(On, &none, false), Status::Fail);
    assert_status(&doctor::check_pam_stack(Off, &none, false), Status::Pass);
    let unreadable = pam_facts(Some(true), None, true);
    assert_status(
        &doctor::check_pam_stack(Auto, &unreadable, false),
        Status::Warn,
    );
    // `optional` lets a failing module through: an error while forwarding is on.
    let opt = pam_facts(Some(true), Some(PAM_OPTIONAL), true);
    let c = doctor::check_pam_stack(Auto, &opt, true);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("host's network namespace"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("`required`"), "{c:?}");
    assert_status(&doctor::check_pam_stack(Auto, &opt, false), Status::Warn);
    assert_status(&doctor::check_pam_stack(On, &opt, false), Status::Fail);
    // A `sufficient` line before it may end the stack first.
    let skipped = pam_facts(
        Some(true),
        Some("session sufficient pam_permit.so\nsession required pam_podspawn.so\n"),
        true,
    );
    let c = doctor::check_pam_stack(Auto, &skipped, true);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("may be skipped"), "{c:?}");
}

#[test]
fn pam_module_check() {
    use PortForwarding::*;
    let c = doctor::check_pam_module(Auto, &pam_facts(Some(true), Some(PAM_REQUIRED), true));
    assert_status(&c, Status::Pass);
    assert_eq!(c.detail, "/usr/lib64/security/pam_podspawn.so");
    // In the stack as `required` but missing: PAM fails every session.
    let c = doctor::check_pam_module(Off, &pam_facts(Some(true), Some(PAM_REQUIRED), false));
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("ssh logins fail"), "{c:?}");
    // `-session`: PAM skips a missing module.
    let dash = pam_facts(
        Some(true),
        Some("-session required pam_podspawn.so\n"),
        false,
    );
    assert_status(&doctor::check_pam_module(Auto, &dash), Status::Warn);
    let none = pam_facts(Some(true), Some(""), false);
    assert_status(&doctor::check_pam_module(Auto, &none), Status::Warn);
    assert_status(&doctor::check_pam_module(On, &none), Status::Fail);
    assert_status(&doctor::check_pam_module(Off, &none), Status::Pass);
}

#[test]
fn forwarding_check() {
    use PortForwarding::*;
    let t = |v: &str| sshd_config::parse_sshd_t(&format!("allowtcpforwarding {v}\n"));
    let ok = pam_facts(Some(true), Some(PAM_REQUIRED), true);
    assert!(doctor::check_forwarding(Auto, &ok, true, None, None).is_none());
    let c = doctor::check_forwarding(Auto, &ok, true, Some("alice"), Some(&t("yes"))).unwrap();
    assert_status(&c, Status::Pass);
    assert!(c.detail.starts_with("on for podspawn users"), "{c:?}");
    // Module in place, forwarding off: server-setup --forwarding turns it on.
    let c = doctor::check_forwarding(Auto, &ok, true, Some("alice"), Some(&t("no"))).unwrap();
    assert_status(&c, Status::Warn);
    assert_eq!(
        c.fix.as_deref(),
        Some("sudo podspawn server-setup --forwarding")
    );
    assert_status(
        &doctor::check_forwarding(Off, &ok, true, Some("alice"), Some(&t("no"))).unwrap(),
        Status::Pass,
    );
    // The one that matters: forwarding effective while the module is not in place.
    for facts in [
        pam_facts(Some(false), Some(PAM_REQUIRED), true),
        pam_facts(Some(true), Some(PAM_OPTIONAL), true),
        pam_facts(Some(true), Some(PAM_REQUIRED), false),
        pam_facts(Some(true), None, true),
    ] {
        for v in ["yes", "local", "remote", "all"] {
            for setting in [Auto, On, Off] {
                let c = doctor::check_forwarding(setting, &facts, true, Some("alice"), Some(&t(v)))
                    .unwrap();
                assert_status(&c, Status::Fail);
                assert!(c.detail.contains("host's network namespace"), "{c:?}");
                assert!(c.detail.contains("checked as alice"), "{c:?}");
            }
        }
        // Without podspawn's Match block (stock sshd: forwarding on), the fix is a full setup.
        let c =
            doctor::check_forwarding(Auto, &facts, false, Some("alice"), Some(&t("yes"))).unwrap();
        assert_status(&c, Status::Fail);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .starts_with("sudo podspawn server-setup   #"));
        let c =
            doctor::check_forwarding(Auto, &facts, true, Some("alice"), Some(&t("no"))).unwrap();
        assert_status(&c, Status::Pass);
        assert!(c.detail.starts_with("off for podspawn users: "), "{c:?}");
    }
}

#[test]
fn sshd_check_without_a_member() {
    let c = doctor::check_sshd(
        None,
        Ok("port 22\n"),
        &ShadowReport {
            ours: Some(ours()),
            ..Default::default()
        },
    );
    assert_status(&c, Status::Warn);
    assert!(c.detail.contains("no members"), "{c:?}");
    let c = doctor::check_sshd(None, Ok("port 22\n"), &ShadowReport::default());
    assert_status(&c, Status::Fail);
    let report = ShadowReport {
        ours: Some(ours()),
        earlier_match: vec![d(
            "/etc/ssh/sshd_config.d/05-x.conf",
            4,
            "authorizedkeyscommand",
            "/x %u",
            Some("all"),
        )],
        global: vec![],
    };
    let c = doctor::check_sshd(None, Ok("port 22\n"), &report);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("05-x.conf:4"));
}

/// The real sshd with a temp configuration and a real member of podspawn-users.
#[test]
fn sshd_check_against_the_real_sshd() {
    let sshd = sshd::find_sshd().expect("this test needs sshd: apt-get install openssh-server");
    assert!(
        is_root(),
        "this test needs root: run the tests as root (see README)"
    );
    podspawn_gid();
    let t = TempDir::new("doctor-sshd");
    let key = t.path("hostkey");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let dropdir = t.path("sshd_config.d");
    std::fs::create_dir(&dropdir).unwrap();
    let config = t.path("sshd_config");
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nInclude {}/*.conf\nAuthorizedKeysFile .ssh/authorized_keys\n",
            key.display(),
            dropdir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dropdir.join("10-podspawn.conf"),
        sshd_config::render_dropin("/usr/bin/podspawn"),
    )
    .unwrap();
    let name = format!("pstdoc{:x}", std::process::id() & 0xffff);
    assert!(Command::new("useradd")
        .args(["-M", "-N", "-s", "/bin/sh", "-G", "podspawn-users", &name])
        .status()
        .unwrap()
        .success());
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).status();
        }
    }
    let _del = Del(name.clone());
    let check = |cfg: &Path| {
        let flat = sshd_config::flatten(cfg, &sshd::RealFs).unwrap();
        let managed = |d: &Directive| {
            d.context
                .as_deref()
                .is_some_and(sshd_config::is_podspawn_match)
        };
        let report = sshd_config::analyze(&flat.directives, &managed);
        let dump = sshd::sshd_dump(&sshd, cfg, Some(&name)).map_err(String::from);
        doctor::check_sshd(
            Some(&name),
            dump.as_deref().map_err(|e| e.as_str()),
            &report,
        )
    };
    assert_status(&check(&config), Status::Pass);
    std::fs::write(
        dropdir.join("05-cloud.conf"),
        "Match all\n  AuthorizedKeysCommand /usr/bin/other %u\n  AuthorizedKeysCommandUser nobody\n",
    )
    .unwrap();
    let c = check(&config);
    assert_status(&c, Status::Fail);
    assert!(
        c.detail
            .contains(&format!("{}/05-cloud.conf:2", dropdir.display())),
        "{c:?}"
    );
}

#[test]
fn binary_check() {
    let c = doctor::check_binary(None, Err(String::new()));
    assert_status(&c, Status::Warn);
    let c = doctor::check_binary(
        Some("/nonexistent/podspawn"),
        fs_policy::path_chain(Path::new("/nonexistent/podspawn")),
    );
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("does not exist"));

    let t = TempDir::new("doctor-bin");
    let dir = t.path("bin");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let b = dir.join("podspawn");
    std::fs::copy(env!("CARGO_BIN_EXE_podspawn"), &b).unwrap();
    chmod(&b, 0o755);
    let bs = b.to_str().unwrap();
    assert!(
        is_root(),
        "this test needs root (the binary's directory chain must be root-owned): run the tests as root"
    );
    chown(&dir, 0, 0);
    chown(&b, 0, 0);
    assert_status(
        &doctor::check_binary(Some(bs), fs_policy::path_chain(&b)),
        Status::Pass,
    );
    // A group-writable directory on the way: sshd says "Unsafe AuthorizedKeysCommand".
    chmod(&dir, 0o775);
    let c = doctor::check_binary(Some(bs), fs_policy::path_chain(&b));
    assert_status(&c, Status::Fail);
    assert_eq!(
        c.fix.as_deref(),
        Some(format!("sudo chmod go-w {}", dir.display()).as_str())
    );
    chmod(&dir, 0o755);
    // Not owned by root.
    chown(&b, 1, 1);
    let c = doctor::check_binary(Some(bs), fs_policy::path_chain(&b));
    assert_status(&c, Status::Fail);
    assert!(c.fix.as_deref().unwrap().starts_with("sudo chown root"));
    chown(&b, 0, 0);
    // Through a symlink, the target's chain counts.
    let link = t.path("link");
    std::os::unix::fs::symlink(&b, &link).unwrap();
    assert_status(
        &doctor::check_binary(Some(link.to_str().unwrap()), fs_policy::path_chain(&link)),
        Status::Pass,
    );
    // Pure: a chain through /tmp (world-writable) fails.
    let chain = vec![
        PathEntry {
            path: "/tmp/podspawn".into(),
            uid: 0,
            mode: 0o100755,
            is_file: true,
        },
        PathEntry {
            path: "/tmp".into(),
            uid: 0,
            mode: 0o41777,
            is_file: false,
        },
        PathEntry {
            path: "/".into(),
            uid: 0,
            mode: 0o40755,
            is_file: false,
        },
    ];
    assert_status(
        &doctor::check_binary(Some("/tmp/podspawn"), Ok(chain)),
        Status::Fail,
    );
}

#[test]
fn sshd_reload_check() {
    let l = Listener {
        pid: 42,
        loaded_at: 1000,
    };
    let files = vec![
        (PathBuf::from("/etc/ssh/sshd_config"), 900),
        (
            PathBuf::from("/etc/ssh/sshd_config.d/10-podspawn.conf"),
            1100,
        ),
    ];
    let c = doctor::check_sshd_reloaded(Some(&l), &files, "sudo systemctl reload ssh");
    assert_status(&c, Status::Fail);
    assert!(
        c.detail.contains("10-podspawn.conf") && !c.detail.contains("sshd_config,"),
        "{c:?}"
    );
    assert_eq!(
        c.fix.as_deref(),
        Some("sudo sshd -t && sudo systemctl reload ssh")
    );
    let c = doctor::check_sshd_reloaded(
        Some(&Listener {
            pid: 42,
            loaded_at: 1200,
        }),
        &files,
        "x",
    );
    assert_status(&c, Status::Pass);
    assert_status(
        &doctor::check_sshd_reloaded(None, &files, "x"),
        Status::Warn,
    );
}

// ---- Docker ---------------------------------------------------------------------------------

#[test]
fn docker_check() {
    let s = Path::new("/var/run/docker.sock");
    assert_status(
        &doctor::check_docker(s, &Ok((200, b"OK".to_vec()))),
        Status::Pass,
    );
    assert_status(
        &doctor::check_docker(s, &Ok((500, b"boom".to_vec()))),
        Status::Fail,
    );
    let c = doctor::check_docker(
        s,
        &Err("cannot connect to /var/run/docker.sock: No such file".into()),
    );
    assert_status(&c, Status::Fail);
    assert_eq!(c.fix.as_deref(), Some("sudo systemctl enable --now docker"));
    // Real sockets: a missing one fails; the real engine passes.
    let t = TempDir::new("doctor-docker");
    let missing = t.path("docker.sock");
    assert_status(
        &doctor::check_docker(&missing, &podspawn::engine::http::get(&missing, "/_ping")),
        Status::Fail,
    );
    let real = podspawn::engine::http::engine_socket();
    assert!(
        real.exists(),
        "this test needs a running Docker engine at {} (systemctl start docker)",
        real.display()
    );
    assert_status(
        &doctor::check_docker(&real, &podspawn::engine::http::get(&real, "/_ping")),
        Status::Pass,
    );
}

/// A fake engine on a unix socket: answers one request with `response`.
fn fake_engine(path: &Path, response: &'static [u8]) -> std::thread::JoinHandle<String> {
    use std::io::{Read, Write};
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        s.write_all(response).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
}

#[test]
fn docker_over_a_fake_engine() {
    let t = TempDir::new("doctor-fake");
    let sock = t.path("e.sock");
    let h = fake_engine(
        &sock,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n",
    );
    let r = podspawn::engine::http::get(&sock, "/_ping");
    let req = h.join().unwrap();
    assert!(req.starts_with("GET /_ping HTTP/1.0\r\n"), "{req}");
    assert_status(&doctor::check_docker(&sock, &r), Status::Pass);
    std::fs::remove_file(&sock).unwrap();
    let h = fake_engine(
        &sock,
        b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
    );
    let r = podspawn::engine::http::get(&sock, "/images/ubuntu:24.04/json");
    h.join().unwrap();
    let c = doctor::check_default_image("ubuntu:24.04", &r);
    assert_status(&c, Status::Warn);
    assert_eq!(c.fix.as_deref(), Some("sudo docker pull ubuntu:24.04"));
}

#[test]
fn default_image_check() {
    assert_status(
        &doctor::check_default_image("ubuntu:24.04", &Ok((200, b"{}".to_vec()))),
        Status::Pass,
    );
    assert_status(
        &doctor::check_default_image("ubuntu:24.04", &Ok((404, b"{}".to_vec()))),
        Status::Warn,
    );
    assert_status(
        &doctor::check_default_image("ubuntu:24.04", &Err("Docker is unreachable".into())),
        Status::Warn,
    );
}

#[test]
fn runc_versions() {
    let v = doctor::parse_runc_version(
        "runc version 1.1.12\ncommit: v1.1.12-0-g51d5e94\nspec: 1.0.2-dev\n",
    )
    .unwrap();
    assert_eq!(
        (v.major, v.minor, v.patch, v.rc, v.distro),
        (1, 1, 12, None, false)
    );
    let v = doctor::parse_runc_version("runc version 1.0.0-rc92\ncommit: ff819c7e\n").unwrap();
    assert_eq!(v.rc, Some(92));
    let v = doctor::parse_runc_version("runc version 1.4.0-rc.3\n").unwrap();
    assert_eq!(v.rc, Some(3));
    let v = doctor::parse_runc_version("runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n")
        .unwrap();
    assert!(v.distro);
    assert!(doctor::parse_runc_version("crun version 1.8\n").is_none());

    let status = |out: &str| doctor::check_runc(&Ok(out.to_string())).status;
    let fail = |out: &str| {
        let c = doctor::check_runc(&Ok(out.to_string()));
        assert_status(&c, Status::Fail);
        c
    };
    let c = fail("runc version 1.0.0-rc5\ncommit: v1.0.0-rc5\n");
    assert!(
        c.detail.contains("CVE-2019-5736")
            && c.detail.contains("CVE-2024-21626")
            && c.detail.contains("CVE-2025-31133")
    );
    let c = fail("runc version 1.1.11\ncommit: v1.1.11-0-g4bccb38\n");
    assert!(c.detail.contains("CVE-2024-21626") && !c.detail.contains("CVE-2019-5736"));
    let c = fail("runc version 1.1.12\ncommit: v1.1.12-0-g51d5e94\n");
    assert!(
        !c.detail.contains("CVE-2024-21626") && c.detail.contains("CVE-2025-52881"),
        "{c:?}"
    );
    fail("runc version 1.2.7\ncommit: v1.2.7-0-g0\n");
    fail("runc version 1.3.2\ncommit: v1.3.2-0-g0\n");
    fail("runc version 1.4.0-rc.2\ncommit: v1.4.0-rc.2-0-g0\n");
    assert_eq!(
        status("runc version 1.2.8\ncommit: v1.2.8-0-g0\n"),
        Status::Pass
    );
    assert_eq!(
        status("runc version 1.3.3\ncommit: v1.3.3-0-g0\n"),
        Status::Pass
    );
    assert_eq!(
        status("runc version 1.4.0-rc.3\ncommit: v1.4.0-rc.3-0-g0\n"),
        Status::Pass
    );
    assert_eq!(
        status("runc version 1.4.0\ncommit: v1.4.0-0-g0\n"),
        Status::Pass
    );
    // Distribution builds backport fixes: a warning that says so.
    let c = doctor::check_runc(&Ok(
        "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n".into()
    ));
    assert_status(&c, Status::Warn);
    assert!(c.detail.contains("security tracker"));
    assert_status(
        &doctor::check_runc(&Err("No such file or directory".into())),
        Status::Warn,
    );
}

#[test]
fn orphan_check() {
    let now = 10_000;
    let cs = vec![
        ContainerFacts {
            name: "podspawn-alice".into(),
            created: 1000,
        },
        ContainerFacts {
            name: "podspawn-bob-web".into(),
            created: 1000,
        },
        ContainerFacts {
            name: "podspawn-carol".into(),
            created: now - 5,
        },
    ];
    let c = doctor::check_orphans(&Ok(cs.clone()), &Ok(vec!["podspawn-alice".into()]), now);
    assert_status(&c, Status::Warn);
    assert!(
        c.detail.contains("podspawn-bob-web") && !c.detail.contains("podspawn-carol"),
        "{c:?}"
    );
    assert_eq!(c.fix.as_deref(), Some("sudo podspawn cleanup"));
    let c = doctor::check_orphans(
        &Ok(cs),
        &Ok(vec!["podspawn-alice".into(), "podspawn-bob-web".into()]),
        now,
    );
    assert_status(&c, Status::Pass);
    assert_status(
        &doctor::check_orphans(&Ok(vec![]), &Err("broker down".into()), now),
        Status::Warn,
    );
    assert_status(
        &doctor::check_orphans(&Err("docker down".into()), &Ok(vec![]), now),
        Status::Warn,
    );
    let parsed = doctor::parse_containers(br#"[{"Id":"x","Names":["/podspawn-alice"],"Created":1700000000,"Labels":{"managed-by":"podspawn"}}]"#).unwrap();
    assert_eq!(
        parsed,
        vec![ContainerFacts {
            name: "podspawn-alice".into(),
            created: 1_700_000_000
        }]
    );
    assert!(doctor::parse_containers(b"{").is_err());
}

#[test]
fn disk_check() {
    let p = Path::new("/var/lib/docker");
    let c = doctor::check_disk(p, &Ok(512 * 1024 * 1024));
    assert_status(&c, Status::Fail);
    assert!(c.fix.as_deref().unwrap().contains("docker system prune"));
    assert_status(
        &doctor::check_disk(p, &Ok(3 * 1024 * 1024 * 1024)),
        Status::Warn,
    );
    assert_status(
        &doctor::check_disk(p, &Ok(50 * 1024 * 1024 * 1024)),
        Status::Pass,
    );
    assert_status(&doctor::check_disk(p, &Err("x".into())), Status::Warn);
    assert!(doctor::available_bytes(Path::new("/")).unwrap() > 0);
    // A missing path is measured on its nearest existing ancestor.
    assert!(doctor::available_bytes(Path::new("/nonexistent/deeper")).unwrap() > 0);
}

// ---- files ----------------------------------------------------------------------------------

#[test]
fn config_file_check() {
    assert!(
        is_root(),
        "this test needs root: run the tests as root (see README)"
    );
    let g = podspawn_gid();
    let t = TempDir::new("doctor-config");
    let p = t.path("config.yaml");
    assert_status(&doctor::check_config_file(&p, Some(g)), Status::Warn);
    std::fs::write(&p, podspawn::core::config::default_config_yaml()).unwrap();
    chown(&p, 0, g);
    chmod(&p, 0o640);
    assert_status(&doctor::check_config_file(&p, Some(g)), Status::Pass);
    // auth-keys (user podspawn) cannot read it: logins fail.
    chmod(&p, 0o600);
    let c = doctor::check_config_file(&p, Some(g));
    assert_status(&c, Status::Fail);
    assert_eq!(
        c.fix.as_deref(),
        Some(
            format!(
                "sudo chown root:podspawn {p} && sudo chmod 0640 {p}",
                p = p.display()
            )
            .as_str()
        )
    );
    chmod(&p, 0o660);
    assert_status(&doctor::check_config_file(&p, Some(g)), Status::Fail);
    chmod(&p, 0o644);
    chown(&p, 0, 0);
    assert_status(&doctor::check_config_file(&p, Some(g)), Status::Warn);
    chown(&p, 0, g);
    chmod(&p, 0o640);
    std::fs::write(&p, "session:\n  mode: sometimes\n").unwrap();
    let c = doctor::check_config_file(&p, Some(g));
    assert_status(&c, Status::Fail);
    assert!(
        c.detail.contains("session.mode") || c.detail.contains("mode"),
        "{c:?}"
    );
}

#[test]
fn key_dir_and_files_checks() {
    assert!(
        is_root(),
        "this test needs root: run the tests as root (see README)"
    );
    let g = podspawn_gid();
    let t = TempDir::new("doctor-keys");
    let dir = t.path("keys");
    let c = doctor::check_key_dir(&dir, Some(g));
    assert_status(&c, Status::Fail);
    assert_eq!(
        c.fix.as_deref(),
        Some(
            format!(
                "sudo install -d -m 0750 -o root -g podspawn {}",
                dir.display()
            )
            .as_str()
        )
    );
    assert_status(&doctor::check_key_files(&dir, Some(g)), Status::Pass);
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, 0, g);
    chmod(&dir, 0o750);
    assert_status(&doctor::check_key_dir(&dir, Some(g)), Status::Pass);
    for bad in [0o755, 0o700, 0o770] {
        chmod(&dir, bad);
        assert_status(&doctor::check_key_dir(&dir, Some(g)), Status::Fail);
    }
    chmod(&dir, 0o750);
    chown(&dir, 0, 0);
    assert!(doctor::check_key_dir(&dir, Some(g))
        .detail
        .contains("podspawn user"));
    chown(&dir, 0, g);
    let link = t.path("keylink");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    assert_status(&doctor::check_key_dir(&link, Some(g)), Status::Fail);

    // Key files.
    let alice = dir.join("alice");
    std::fs::write(&alice, "ssh-ed25519 AAAA a\n").unwrap();
    chown(&alice, 0, g);
    chmod(&alice, 0o640);
    std::fs::write(dir.join(".alice.tmp-1"), "").unwrap();
    assert_status(&doctor::check_key_files(&dir, Some(g)), Status::Pass);
    chmod(&alice, 0o644);
    let c = doctor::check_key_files(&dir, Some(g));
    assert_status(&c, Status::Fail);
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains(&format!("sudo chown root:podspawn {}", alice.display())));
    chmod(&alice, 0o640);
    std::os::unix::fs::symlink(&alice, dir.join("bob")).unwrap();
    let c = doctor::check_key_files(&dir, Some(g));
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("bob"));
}

fn ok_account() -> AccountFacts {
    AccountFacts {
        name: "alice".into(),
        uid: 1001,
        shadow: Some("*".into()),
        home: "/home/alice".into(),
        home_exists: true,
        shell: "/bin/sh".into(),
        primary_group: "alice".into(),
        groups: vec!["podspawn-users".into()],
    }
}

/// The users check judges accounts with the same classification as add-user and
/// `server-setup --users` (accounts::plan_existing), and names the command for each state.
#[test]
fn user_accounts_check() {
    let user = |a: Option<AccountFacts>| UserFacts {
        name: "alice".into(),
        account: a,
    };
    let check = |f: &dyn Fn(&mut AccountFacts)| {
        let mut a = ok_account();
        f(&mut a);
        doctor::check_users(&[user(Some(a))], 1000)
    };
    assert_status(&doctor::check_users(&[], 1000), Status::Pass);
    assert_status(&check(&|_| {}), Status::Pass);

    // What server-setup --users repairs by itself.
    let c = doctor::check_users(&[user(None)], 1000);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("alice has no host account"), "{c:?}");
    assert_eq!(c.fix.as_deref(), Some("sudo podspawn server-setup --users"));
    for locked in ["!", "!!", "*LK*"] {
        let c = check(&|a| a.shadow = Some(locked.into()));
        assert_status(&c, Status::Fail);
        assert_eq!(c.fix.as_deref(), Some("sudo podspawn server-setup --users"));
        assert!(
            c.detail.contains(&format!(
                "set alice's password field from '{locked}' to '*'"
            )),
            "{c:?}"
        );
    }
    let c = check(&|a| a.home_exists = false);
    assert_status(&c, Status::Fail);
    assert!(c
        .detail
        .contains("create alice's home directory /home/alice"));
    assert_eq!(c.fix.as_deref(), Some("sudo podspawn server-setup --users"));
    let c = check(&|a| a.groups.clear());
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("add alice to podspawn-users"), "{c:?}");

    // What only add-user --convert changes.
    for (f, text) in [
        (
            &(|a: &mut AccountFacts| a.shadow = Some("!$6$x$y".into()))
                as &dyn Fn(&mut AccountFacts),
            "replaces the admin's lock",
        ),
        (
            &|a: &mut AccountFacts| a.shadow = Some("$6$x$y".into()),
            "removes the password",
        ),
        (
            &|a: &mut AccountFacts| a.shadow = Some(String::new()),
            "it is empty",
        ),
        (
            &|a: &mut AccountFacts| a.shell = "/bin/bash".into(),
            "change the login shell from /bin/bash to /bin/sh",
        ),
        (
            &|a: &mut AccountFacts| a.shell = "/usr/sbin/nologin".into(),
            "change the login shell from /usr/sbin/nologin to /bin/sh",
        ),
        (
            &|a: &mut AccountFacts| a.groups.extend(["docker".into(), "sudo".into()]),
            "remove alice from the groups docker, sudo",
        ),
    ] {
        let c = check(f);
        assert_status(&c, Status::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some("sudo podspawn add-user alice --convert")
        );
        assert!(
            c.detail.contains("used for something else") && c.detail.contains(text),
            "{text}: {c:?}"
        );
    }

    // Never taken over.
    let c = check(&|a| a.uid = 0);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("uid 0"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("remove-user alice"));
    let c = check(&|a| a.home = "/nonexistent".into());
    assert_eq!(
        c.fix.as_deref(),
        Some("sudo usermod -d /home/alice -m alice")
    );

    // Unreadable shadow (not root): a warning, not a verdict.
    let c = check(&|a| a.shadow = None);
    assert_status(&c, Status::Warn);

    // Several users: each named, fixes joined.
    let bob = UserFacts {
        name: "bob".into(),
        account: Some(AccountFacts {
            name: "bob".into(),
            shell: "/bin/zsh".into(),
            ..ok_account()
        }),
    };
    let c = doctor::check_users(&[user(None), bob], 1000);
    assert_eq!(
        c.fix.as_deref(),
        Some("sudo podspawn server-setup --users && sudo podspawn add-user bob --convert")
    );
}

#[test]
fn state_db_and_lock_dir_checks() {
    assert!(
        is_root(),
        "this test needs root: run the tests as root (see README)"
    );
    let t = TempDir::new("doctor-state");
    let dir = t.path("lib");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    let db = dir.join("state.db");
    let c = doctor::check_state_db(&db);
    assert_status(&c, Status::Warn);
    // The broker's own database code creates it right.
    drop(podspawn::store::state::Db::open(&db).unwrap());
    assert_status(&doctor::check_state_db(&db), Status::Pass);
    let wal = dir.join("state.db-wal");
    std::fs::write(&wal, b"").unwrap();
    chmod(&wal, 0o644);
    let c = doctor::check_state_db(&db);
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("state.db-wal"), "{c:?}");
    assert_eq!(
        c.fix.as_deref(),
        Some(
            format!(
                "sudo chown root:root {w} && sudo chmod 0600 {w}",
                w = wal.display()
            )
            .as_str()
        )
    );
    chmod(&wal, 0o600);
    chown(&db, 1000, 1000);
    assert_status(&doctor::check_state_db(&db), Status::Fail);
    chown(&db, 0, 0);
    chmod(&dir, 0o1777);
    let c = doctor::check_state_db(&db);
    assert_status(&c, Status::Fail);
    assert!(c.fix.unwrap().contains("install -d -m 0700"));
    chmod(&dir, 0o700);
    assert_status(&doctor::check_state_db(&db), Status::Pass);

    let locks = dir.join("locks");
    let c = doctor::check_lock_dir(&locks);
    assert_status(&c, Status::Fail);
    assert_eq!(
        c.fix.as_deref(),
        Some(
            format!(
                "sudo install -d -m 0700 -o root -g root {}",
                locks.display()
            )
            .as_str()
        )
    );
    std::fs::create_dir(&locks).unwrap();
    chmod(&locks, 0o1777);
    assert_status(&doctor::check_lock_dir(&locks), Status::Fail);
    chmod(&locks, 0o700);
    assert_status(&doctor::check_lock_dir(&locks), Status::Pass);
}

#[test]
fn broker_check() {
    let s = Path::new("/run/podspawn/podspawn.sock");
    let good = SocketFacts {
        uid: 0,
        gid: 994,
        mode: 0o660,
        is_socket: true,
    };
    assert_status(
        &doctor::check_broker(s, &Ok(good), Some(994), &Ok(2)),
        Status::Pass,
    );
    let c = doctor::check_broker(s, &Err("No such file".into()), Some(994), &Err("x".into()));
    assert_status(&c, Status::Fail);
    assert_eq!(
        c.fix.as_deref(),
        Some("sudo systemctl enable --now podspawn.socket")
    );
    let c = doctor::check_broker(
        s,
        &Ok(SocketFacts {
            mode: 0o666,
            ..good
        }),
        Some(994),
        &Ok(0),
    );
    assert_status(&c, Status::Fail);
    assert_status(
        &doctor::check_broker(s, &Ok(SocketFacts { gid: 0, ..good }), Some(994), &Ok(0)),
        Status::Fail,
    );
    assert_status(
        &doctor::check_broker(
            s,
            &Ok(SocketFacts {
                is_socket: false,
                ..good
            }),
            Some(994),
            &Ok(0),
        ),
        Status::Fail,
    );
    let c = doctor::check_broker(s, &Ok(good), Some(994), &Err("connection refused".into()));
    assert_status(&c, Status::Fail);
    assert!(c.fix.unwrap().contains("restart podspawn.socket"));

    // Real socket metadata.
    let t = TempDir::new("doctor-broker");
    let p = t.path("b.sock");
    let _l = std::os::unix::net::UnixListener::bind(&p).unwrap();
    chmod(&p, 0o660);
    let f = doctor::socket_facts(&p).unwrap();
    assert!(f.is_socket && f.mode == 0o660);
    assert!(doctor::socket_facts(&t.path("none")).is_err());
}

#[test]
fn cleanup_check() {
    assert_status(
        &doctor::check_cleanup(true, Some("active"), Some("inactive"), &[]),
        Status::Pass,
    );
    assert_status(
        &doctor::check_cleanup(true, Some("inactive"), Some("active"), &[]),
        Status::Pass,
    );
    let c = doctor::check_cleanup(true, Some("inactive"), Some("inactive"), &[]);
    assert_status(&c, Status::Fail);
    assert_eq!(
        c.fix.as_deref(),
        Some("sudo systemctl enable --now podspawn-cleanup.service")
    );
    assert_status(
        &doctor::check_cleanup(false, None, None, &[1234]),
        Status::Pass,
    );
    assert_status(&doctor::check_cleanup(false, None, None, &[]), Status::Fail);
    let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    assert!(doctor::is_cleanup_daemon(&argv(
        "/usr/bin/podspawn cleanup --daemon --interval 60s"
    )));
    assert!(doctor::is_cleanup_daemon(&argv(
        "/usr/local/bin/podspawn --config /x cleanup --daemon"
    )));
    assert!(!doctor::is_cleanup_daemon(&argv(
        "/usr/bin/podspawn cleanup"
    )));
    assert!(!doctor::is_cleanup_daemon(&argv(
        "grep podspawn cleanup --daemon"
    )));
    assert!(!doctor::is_cleanup_daemon(&argv("/usr/bin/podspawn serve")));
}

// ---- output ---------------------------------------------------------------------------------

#[test]
fn output_formats_and_exit_status() {
    let checks = vec![
        Check::pass("key directory", "ok"),
        Check::warn(
            "default image",
            "ubuntu:24.04 is not present",
            Some("sudo docker pull ubuntu:24.04".into()),
        ),
        Check::fail(
            "lock directory",
            "/var/lib/podspawn/locks does not exist",
            "sudo install -d -m 0700 -o root -g root /var/lib/podspawn/locks",
        ),
    ];
    let text = doctor::render_text(&checks);
    assert_eq!(
        text,
        "  [pass] key directory\n  [warn] default image: ubuntu:24.04 is not present (fix: sudo docker pull ubuntu:24.04)\n  [FAIL] lock directory: /var/lib/podspawn/locks does not exist\n         fix: sudo install -d -m 0700 -o root -g root /var/lib/podspawn/locks\n1 passed, 1 warnings, 1 failed\n"
    );
    let v: serde_json::Value = serde_json::from_str(&doctor::render_json(&checks)).unwrap();
    assert_eq!(v[0]["status"], "pass");
    assert_eq!(v[0]["fix"], serde_json::Value::Null);
    assert_eq!(v[2]["status"], "fail");
    assert_eq!(v[2]["name"], "lock directory");
    assert!(v[2]["fix"].as_str().unwrap().starts_with("sudo install"));
    assert!(doctor::any_failed(&checks));
    assert!(!doctor::any_failed(&checks[..2]));
}

/// The whole doctor against this machine with a temp configuration: runs, and reports the
/// missing pieces of that configuration as failures with fixes.
#[test]
#[allow(clippy::field_reassign_with_default)]
fn gather_against_a_temp_config() {
    let t = TempDir::new("doctor-gather");
    let mut cfg = podspawn::core::config::Config::default();
    cfg.path = t.path("config.yaml");
    cfg.auth.key_dir = t.path("keys");
    cfg.state.db_path = t.path("lib/state.db");
    cfg.state.lock_dir = t.path("lib/locks");
    cfg.broker.socket = t.path("run/podspawn.sock");
    let checks = doctor::gather(&cfg, &doctor::DoctorArgs::default());
    for c in &checks {
        eprintln!("{:?} {}: {} / {:?}", c.status, c.name, c.detail, c.fix);
    }
    let by = |n: &str| {
        checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no check {n}"))
    };
    assert_status(by(doctor::KEY_DIR_CHECK), Status::Fail);
    assert_status(by(doctor::LOCK_CHECK), Status::Fail);
    assert_status(by(doctor::BROKER_CHECK), Status::Fail);
    assert_status(by(doctor::CONFIG_CHECK), Status::Warn);
    for n in [
        doctor::SSHD_CHECK,
        doctor::BINARY_CHECK,
        doctor::RELOAD_CHECK,
        doctor::DOCKER_CHECK,
        doctor::IMAGE_CHECK,
        doctor::RUNC_CHECK,
        doctor::KEY_FILES_CHECK,
        doctor::USERS_CHECK,
        doctor::MAXSTARTUPS_CHECK,
        doctor::STATE_CHECK,
        doctor::CLEANUP_CHECK,
        doctor::ORPHAN_CHECK,
    ] {
        by(n);
    }
    assert!(
        checks
            .iter()
            .filter(|c| c.name.starts_with("disk space"))
            .count()
            == 2
    );
    assert!(doctor::any_failed(&checks));
    for c in checks.iter().filter(|c| c.status == Status::Fail) {
        assert!(c.fix.is_some(), "{c:?}");
    }
}

/// A private sshd on a loopback port: found by its pid file and by its command line; a drop-in
/// changed after it started is reported until a SIGHUP makes it re-read its configuration.
#[test]
fn sshd_reloaded_against_a_real_sshd() {
    let sshd = sshd::find_sshd().expect("this test needs sshd: apt-get install openssh-server");
    assert!(
        is_root(),
        "this test needs root: run the tests as root (see README)"
    );
    let t = TempDir::new("doctor-listener");
    let key = t.path("hostkey");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dropdir = t.path("sshd_config.d");
    std::fs::create_dir(&dropdir).unwrap();
    let pidfile = t.path("sshd.pid");
    let config = t.path("sshd_config");
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nPidFile {}\nListenAddress 127.0.0.1:{port}\nInclude {}/*.conf\n",
            key.display(),
            pidfile.display(),
            dropdir.display()
        ),
    )
    .unwrap();
    let st = Command::new(&sshd).arg("-f").arg(&config).status().unwrap();
    assert!(st.success(), "the test's private sshd did not start");
    let start = std::time::Instant::now();
    let read_pid = || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    };
    while read_pid().is_none() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = read_pid().expect("sshd wrote its pid file");
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let _kill = Kill(pid);
    let pf = pidfile.to_str().unwrap();
    let l = doctor::find_listener(&config, Some(pf)).expect("listener by pid file");
    assert_eq!(l.pid, pid as u32);
    let by_cmdline = doctor::find_listener(&config, None).expect("listener by command line");
    assert_eq!(by_cmdline.pid, pid as u32);

    let files = || {
        sshd_config::flatten(&config, &sshd::RealFs)
            .unwrap()
            .files
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).unwrap();
                (p.clone(), std::os::unix::fs::MetadataExt::mtime(&m))
            })
            .collect::<Vec<_>>()
    };
    // The config was written before sshd started.
    std::fs::File::options()
        .write(true)
        .open(&config)
        .unwrap()
        .set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs((l.loaded_at - 1) as u64),
        )
        .unwrap();
    assert_status(
        &doctor::check_sshd_reloaded(Some(&l), &files(), "reload"),
        Status::Pass,
    );

    // A drop-in written after sshd read its configuration.
    let dropin = dropdir.join("10-podspawn.conf");
    std::fs::write(&dropin, sshd_config::render_dropin("/usr/bin/podspawn")).unwrap();
    let changed_at = l.loaded_at + 1;
    std::fs::File::options()
        .write(true)
        .open(&dropin)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(changed_at as u64))
        .unwrap();
    let c = doctor::check_sshd_reloaded(Some(&l), &files(), "sudo systemctl reload ssh");
    assert_status(&c, Status::Fail);
    assert!(c.detail.contains("10-podspawn.conf"), "{c:?}");

    // SIGHUP: sshd re-executes itself (same pid, same start time) and rewrites its pid file.
    while doctor_now() <= changed_at {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let start = std::time::Instant::now();
    let mut after = doctor::find_listener(&config, Some(pf));
    while after.as_ref().is_none_or(|a| a.loaded_at <= changed_at) && start.elapsed().as_secs() < 10
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
        after = doctor::find_listener(&config, Some(pf));
    }
    let after = after.expect("listener after SIGHUP");
    assert_eq!(after.pid, pid as u32, "same process after the re-exec");
    assert_status(
        &doctor::check_sshd_reloaded(Some(&after), &files(), "x"),
        Status::Pass,
    );
}

fn doctor_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
