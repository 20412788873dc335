//! The .deb under a real systemd as PID 1: a Debian bookworm container booted with /sbin/init
//! (the recipe of DESIGN.md, "Testing against real systemd"), the package installed with apt,
//! then for real: socket activation of the broker (Type=notify), a login over ssh from the host
//! into a sibling container on the host's engine, journald's PODSPAWN_* fields, the cleanup
//! daemon's status and watchdog pings, `systemctl restart podspawn` under a live session,
//! sshd's effective settings for a podspawn user (a password login never reaches a host shell,
//! while it does for an ordinary account: the control), pam_podspawn.so in common-session and
//! TCP forwarding agreeing with the forwarding drop-in, the removal (the module's line and the
//! drop-in gone first; an ordinary login still works) and the purge. A second container:
//! install and upgrade over key files and accounts in every state (issue 16).
//!
//! Needs root, Docker, debootstrap (the rootfs is cached under target/package-tests/) and
//! `make packages`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod common;
#[path = "support/debian_container.rs"]
mod debian_container;
#[path = "support/packages.rs"]
mod packages;

use debian_container::{
    assert_forwarding_agrees, assert_pam_enabled, assert_pam_gone, has_forwarding_flag, keygen,
    ssh, wait_until, TestContainer, FORWARDING_DROPIN,
};
use packages::{artifact, check, need, out, stdout, tempdir};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DROPIN: &str = "/etc/ssh/sshd_config.d/10-podspawn.conf";
const HOSTNAME: &str = "sdtest";

/// What a failed assertion shows of the container: the units and the recent journal.
const LOGS: &str =
    "echo '--- units'; systemctl --no-pager --all list-units 'podspawn*' ssh.service 2>&1; \
     echo '--- journal'; journalctl --no-pager -n 60 -o short-monotonic 2>&1";

/// sshd's effective values (`sshd -T`) that podspawn's Match block must give a member of
/// podspawn-users: every way in is confined to the container (ForceCommand, public keys only,
/// keys only from podspawn), and nothing but TCP is forwarded (TCP only with the forwarding
/// drop-in: `assert_forwarding_agrees`).
const MEMBER_SETTINGS: &[&str] = &[
    "forcecommand exec /usr/bin/podspawn spawn",
    "authenticationmethods publickey",
    "passwordauthentication no",
    "kbdinteractiveauthentication no",
    "gssapiauthentication no",
    "hostbasedauthentication no",
    "pubkeyauthentication yes",
    "authorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k",
    "authorizedkeyscommanduser podspawn",
    "authorizedkeysfile none",
    "permituserrc no",
    "allowstreamlocalforwarding no",
    "x11forwarding no",
    "permittunnel no",
];

/// Boots the Debian image with systemd as PID 1 (sshd published on a loopback port, the host's
/// Docker socket and target/packages/ mounted) and waits until systemd reports `running`.
fn boot(name: String, users: Vec<String>) -> TestContainer {
    need("docker", "docker.io");
    let info = common::run(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]));
    assert!(
        info.status.success(),
        "the Docker engine is not reachable (this test boots systemd in a container)\n{}",
        out(&info)
    );
    let deb = artifact("deb");
    let image = packages::debian_image();
    let c = TestContainer {
        name,
        users,
        logs_script: LOGS,
    };
    check(
        Command::new("docker")
            .args(["run", "-d", "--name", &c.name, "--hostname", HOSTNAME])
            .args(["--label", "podspawn-test=1"])
            // systemd as PID 1 (`--privileged` fails on this engine; SYS_ADMIN does not).
            .args([
                "--cap-add",
                "SYS_ADMIN",
                "--security-opt",
                "seccomp=unconfined",
            ])
            .args(["--tmpfs", "/run", "--tmpfs", "/run/lock"])
            .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
            .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
            .arg("-v")
            .arg(format!("{}:/pkg:ro", deb.parent().unwrap().display()))
            .args(["-p", "127.0.0.1::22"])
            .arg(&image)
            .arg("/sbin/init")
            .stdout(Stdio::null()),
    );
    // `is-system-running` fails while the manager is not reachable yet; its final states are
    // running and degraded.
    let mut state = String::new();
    wait_until("systemd to finish booting", 120, || {
        state = stdout(&c.sh("systemctl is-system-running 2>/dev/null"))
            .trim()
            .to_string();
        state == "running" || state == "degraded"
    });
    assert_eq!(
        state,
        "running",
        "systemd booted {state}:\n{}",
        stdout(&c.sh("systemctl --no-pager --failed; journalctl --no-pager -p warning -b"))
    );
    assert_eq!(
        c.ok("readlink /proc/1/exe").trim(),
        "/usr/lib/systemd/systemd",
        "PID 1 is not systemd"
    );
    c
}

/// How often sshd (ssh.service) was told to reload in this boot: its "Received SIGHUP" lines.
fn sshd_reloads(c: &TestContainer) -> usize {
    stdout(&c.sh("journalctl --no-pager -b -u ssh.service -o cat"))
        .lines()
        .filter(|l| *l == "Received SIGHUP; restarting.")
        .count()
}

/// Waits until sshd has handled at least `reloads` SIGHUPs in this boot and listens again
/// after the last (re)start: sshd re-executes itself on SIGHUP, and a connection made before it
/// listens again is reset. From sshd's own log lines, in order, in the journal.
fn wait_sshd_listening(c: &TestContainer, reloads: usize) {
    let t = Instant::now();
    loop {
        let log = stdout(&c.sh("journalctl --no-pager -b -u ssh.service -o cat"));
        let lines: Vec<&str> = log.lines().collect();
        let hups = lines
            .iter()
            .filter(|l| **l == "Received SIGHUP; restarting.")
            .count();
        let starts = hups
            + lines
                .iter()
                .filter(|l| l.starts_with("Starting ssh.service"))
                .count();
        let listening = lines
            .iter()
            .filter(|l| **l == "Server listening on 0.0.0.0 port 22.")
            .count();
        if hups >= reloads && starts > 0 && listening >= starts {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "sshd did not listen again after {reloads} reloads:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deselects pam_podspawn.so's profile the way README.Debian tells an admin to
/// (`pam-auth-update --disable podspawn`, then `podspawn server-setup --forwarding`, which then
/// removes the forwarding drop-in) and reloads sshd. Needed here: the module joins the network
/// namespace of the user's container, a sibling on the host's engine, which the broker opens as
/// /proc/<host pid>/ns/net or the engine's /var/run/docker/netns/<id>; neither is visible in this
/// container (systemd must be PID 1, so it cannot share the host's pid namespace), and member
/// logins would fail closed. tests/package_deb.rs logs in through the module (its container
/// shares the host's pid namespace); this checks the opt-out and that an upgrade keeps it.
fn opt_out_of_pam_module(c: &TestContainer) {
    let reloads = sshd_reloads(c);
    c.ok(&format!(
        "DEBIAN_FRONTEND=noninteractive pam-auth-update --disable podspawn && \
         ! grep -q pam_podspawn.so /etc/pam.d/common-session && \
         podspawn server-setup --forwarding && ! test -e {FORWARDING_DROPIN} && \
         sshd -t && systemctl reload ssh.service"
    ));
    wait_sshd_listening(c, reloads + 1);
}

/// `apt-get install` of the package file `path` in the container (a first install or an
/// upgrade); waits until sshd, which postinst reloads, listens again. Returns apt's output.
fn apt_install(c: &TestContainer, path: &str) -> String {
    let reloads = sshd_reloads(c);
    let o = c.sh(&format!(
        "apt-get install -y --no-install-recommends {path}"
    ));
    assert!(o.status.success(), "apt install {path}\n{}", out(&o));
    let log = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(
        log.contains("podspawn: reloaded sshd"),
        "postinst did not reload sshd:\n{log}"
    );
    wait_sshd_listening(c, reloads + 1);
    log
}

/// The admin's edits after the install: the host's test image, and a state database of this
/// test's own. The instance label of podspawn's containers is derived from the database path,
/// and the cleanup daemon removes containers of its instance that its database does not know:
/// with the default path it would treat the sessions of another package test (or of a real
/// installation) on this Docker engine as its orphans.
fn configure(c: &TestContainer, id: &str) {
    c.ok(&format!(
        "sed -i -e 's|^  image: .*|  image: {image}|' \
                -e 's|^  db_path: /var/lib/podspawn/state.db$|  db_path: {db}|' \
           /etc/podspawn/config.yaml && \
         grep -q '^  image: {image}$' /etc/podspawn/config.yaml && \
         grep -q '^  db_path: {db}$' /etc/podspawn/config.yaml && \
         podspawn config validate && systemctl restart podspawn-cleanup.service",
        image = common::IMAGE,
        db = format!("/var/lib/podspawn/state-{id}.db"),
    ));
}

/// `systemctl show UNIT -p A,B` as a map.
fn show(c: &TestContainer, unit: &str, props: &str) -> BTreeMap<String, String> {
    c.ok(&format!("systemctl show {unit} -p {props}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A password login (no keys tried) as `user`, the password given by an SSH_ASKPASS program.
fn password_ssh(askpass: &Path, port: u16, user: &str, cmd: &str) -> Output {
    common::run(
        Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "GSSAPIAuthentication=no",
            ])
            .args([
                "-o",
                "PreferredAuthentications=keyboard-interactive,password",
            ])
            .args(["-o", "NumberOfPasswordPrompts=1", "-o", "BatchMode=no"])
            .args(["-F", "/dev/null", "-p", &port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg(cmd)
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY")
            .stdin(Stdio::null()),
    )
}

/// An SSH_ASKPASS program in `dir` that answers `password`.
fn askpass(dir: &Path, name: &str, password: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p
}

/// Parsed `journalctl -o json` lines of `args`.
fn journal(c: &TestContainer, args: &str) -> Vec<serde_json::Value> {
    c.ok(&format!("journalctl --no-pager -o json {args}"))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn deb_under_systemd_pid1() {
    need("ssh", "openssh-client");
    let started = Instant::now();
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let mut lap = Instant::now();
    let mut phase = |name: &'static str| {
        phases.push((name, lap.elapsed()));
        lap = Instant::now();
    };
    common::ensure_image();
    let deb = artifact("deb");
    let deb_name = deb.file_name().unwrap().to_str().unwrap().to_string();
    let id = packages::rand_hex(8);
    let user = format!("pst{id}");
    let plain = format!("pst{id}p");
    let c = boot(format!("podspawn-sdtest-{id}"), vec![user.clone()]);
    let port = c.ssh_port();
    phase("image and boot");

    // --- 1. apt installs the .deb; the units are enabled; the socket listens, the broker does
    // not run before the first connection; sshd was reloaded with the drop-in.
    let log = apt_install(&c, &format!("/pkg/{deb_name}"));
    assert!(
        !log.contains("*****"),
        "postinst complained on a clean install:\n{log}"
    );
    assert_eq!(
        c.ok("systemctl is-enabled podspawn.socket podspawn-cleanup.service"),
        "enabled\nenabled\n"
    );
    assert_eq!(
        show(&c, "podspawn.socket", "ActiveState,SubState"),
        BTreeMap::from([
            ("ActiveState".into(), "active".into()),
            ("SubState".into(), "listening".into())
        ]),
        "{}",
        c.logs()
    );
    assert_eq!(
        c.ok("stat -c '%a %U:%G %F' /run/podspawn/podspawn.sock")
            .trim(),
        "660 root:podspawn-users socket"
    );
    let broker = show(&c, "podspawn.service", "ActiveState,MainPID");
    assert_eq!(
        (broker["ActiveState"].as_str(), broker["MainPID"].as_str()),
        ("inactive", "0"),
        "the broker runs before any connection\n{}",
        c.logs()
    );
    c.ok("sshd -t && systemctl is-active ssh.service");
    assert_pam_enabled(&c);
    // security.port_forwarding: auto, UsePAM yes, the module in common-session: forwarding on.
    if has_forwarding_flag(&c) {
        c.ok(&format!("test -f {FORWARDING_DROPIN}"));
    }
    opt_out_of_pam_module(&c);
    phase("install");

    // --- 2. A registered user logs in over ssh and runs a command in their container.
    configure(&c, &id);
    let keydir = tempdir("sdkey");
    let (key, pubkey) = keygen(&keydir, "sdtest");
    c.ok(&format!("podspawn add-user {user} --key '{pubkey}'"));
    let uid = c.ok(&format!("id -u {user}")).trim().to_string();
    let login = ssh(&key, port, &user, "echo hi; id -u; cat /etc/hostname");
    assert!(
        login.status.success(),
        "ssh {user}@127.0.0.1:{port}\n{}\n{}",
        out(&login),
        c.logs()
    );
    let text = stdout(&login);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(&lines[..2], ["hi", uid.as_str()], "{}", c.logs());
    assert_ne!(
        lines[2], HOSTNAME,
        "the command ran on the host, not in a container"
    );
    let ps = check(
        Command::new("docker")
            .args(["ps", "--format", "{{.Names}} {{.Image}}", "--filter"])
            .arg(format!("label=podspawn-user={user}")),
    );
    let container = format!("podspawn-{user}");
    // The session's container and the holder of the user's network namespace.
    let mut running: Vec<String> = stdout(&ps).lines().map(str::to_string).collect();
    running.sort();
    assert_eq!(
        running,
        [
            format!("{container} {}", common::IMAGE),
            format!("{container}.netns {}", common::IMAGE)
        ],
        "the user's containers on the host engine"
    );
    // Socket activation: the first connection started the broker, which reached READY=1
    // (Type=notify: `active` only after it).
    let broker = show(
        &c,
        "podspawn.service",
        "ActiveState,SubState,Type,MainPID,StatusText",
    );
    assert_eq!(
        (
            broker["ActiveState"].as_str(),
            broker["SubState"].as_str(),
            broker["Type"].as_str()
        ),
        ("active", "running", "notify"),
        "{broker:?}\n{}",
        c.logs()
    );
    assert_ne!(broker["MainPID"], "0");
    phase("first login");

    // --- 3. journald: the broker's entries carry PODSPAWN_USER and PODSPAWN_CONTAINER.
    let mut entries = Vec::new();
    wait_until("the broker's journal entry for the login", 20, || {
        entries = journal(&c, "-t podspawn _SYSTEMD_UNIT=podspawn.service");
        entries.iter().any(|e| {
            e["PODSPAWN_USER"] == user.as_str() && e["PODSPAWN_CONTAINER"] == container.as_str()
        })
    });
    let all = journal(&c, "-t podspawn");
    assert!(
        all.iter()
            .all(|e| e["PRIORITY"] != "2" && e["PRIORITY"] != "3"),
        "errors in podspawn's journal: {all:#?}"
    );
    phase("journald");

    // --- 4. The cleanup daemon: active, its STATUS= text, a watchdog, and pings that reach
    // systemd (seen with a 2 s watchdog: WatchdogTimestamp moves and the daemon is not killed).
    let cl = show(
        &c,
        "podspawn-cleanup.service",
        "ActiveState,SubState,Type,StatusText,WatchdogUSec",
    );
    assert_eq!(
        (
            cl["ActiveState"].as_str(),
            cl["Type"].as_str(),
            cl["WatchdogUSec"].as_str()
        ),
        ("active", "notify", "5min"),
        "{cl:?}\n{}",
        c.logs()
    );
    assert!(!cl["StatusText"].is_empty(), "no STATUS= text: {cl:?}");
    c.ok(
        "mkdir -p /run/systemd/system/podspawn-cleanup.service.d && \
         printf '[Service]\\nWatchdogSec=2s\\n' \
           >/run/systemd/system/podspawn-cleanup.service.d/50-test-watchdog.conf && \
         systemctl daemon-reload && systemctl restart podspawn-cleanup.service",
    );
    let props = "ActiveState,MainPID,NRestarts,WatchdogUSec,WatchdogTimestampMonotonic";
    let first = show(&c, "podspawn-cleanup.service", props);
    assert_eq!(first["WatchdogUSec"], "2s", "{first:?}");
    let t0: u64 = first["WatchdogTimestampMonotonic"].parse().unwrap();
    let mut pings = Vec::new();
    // Three pings after the start, i.e. well past the 2 s deadline.
    wait_until("three watchdog pings of the cleanup daemon", 15, || {
        let now = show(&c, "podspawn-cleanup.service", props);
        let t: u64 = now["WatchdogTimestampMonotonic"].parse().unwrap();
        if pings.last().is_none_or(|&p| t > p) && t > t0 {
            pings.push(t);
        }
        pings.len() >= 3
    });
    let after = show(&c, "podspawn-cleanup.service", props);
    assert_eq!(
        (
            after["ActiveState"].as_str(),
            after["MainPID"].as_str(),
            after["NRestarts"].as_str()
        ),
        ("active", first["MainPID"].as_str(), "0"),
        "the watchdog killed the cleanup daemon\n{}",
        c.logs()
    );
    c.ok(
        "rm -r /run/systemd/system/podspawn-cleanup.service.d && systemctl daemon-reload && \
         systemctl restart podspawn-cleanup.service && \
         test \"$(systemctl show podspawn-cleanup.service -p WatchdogUSec --value)\" = 5min",
    );
    phase("cleanup daemon");

    // --- 5. `systemctl restart podspawn` under a live session: it completes, exit code 0.
    let mut live = Command::new("timeout");
    live.args(["60", "ssh"])
        .args(common::SSH_OPTIONS)
        .arg("-i")
        .arg(&key)
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("{user}@127.0.0.1"))
        .arg("echo started; sleep 6; echo survived")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut session = live.spawn().unwrap();
    let mut session_out = std::io::BufReader::new(session.stdout.take().unwrap());
    let mut line = String::new();
    session_out.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        "started\n",
        "the live session did not start\n{}",
        c.logs()
    );
    let before = show(&c, "podspawn.service", "MainPID")["MainPID"].clone();
    c.ok("systemctl restart podspawn.service");
    let restarted = show(&c, "podspawn.service", "ActiveState,MainPID");
    assert_eq!(restarted["ActiveState"], "active", "{}", c.logs());
    assert_ne!(restarted["MainPID"], before, "the broker was not restarted");
    let mut rest = String::new();
    session_out.read_to_string(&mut rest).unwrap();
    let session = session.wait_with_output().unwrap();
    assert!(
        session.status.success() && rest == "survived\n",
        "the session across `systemctl restart podspawn`: stdout after \"started\": {rest:?}\n{}\n{}",
        out(&session),
        c.logs()
    );
    phase("restart under a live session");

    // --- 6. sshd's effective values for a member; a password never opens a host shell for
    // them, while it does for an ordinary account (the control: the stock sshd_config allows
    // passwords, so this part of the test can fail).
    let effective = c.ok(&format!(
        "sshd -T -C user={user},host=localhost,addr=127.0.0.1"
    ));
    let missing: Vec<&&str> = MEMBER_SETTINGS
        .iter()
        .filter(|w| !effective.lines().any(|l| l == **w))
        .collect();
    assert!(
        missing.is_empty(),
        "sshd -T for the member {user} lacks {missing:#?}\n{}",
        c.ok(&format!("cat {DROPIN}"))
    );
    // TCP forwarding agrees with the forwarding drop-in: off, the module being deselected.
    assert!(
        !assert_forwarding_agrees(&c, &user),
        "pam_podspawn.so deselected, yet {FORWARDING_DROPIN} exists"
    );
    let password = packages::rand_hex(16);
    c.ok(&format!(
        "useradd -m -s /bin/bash {plain} && \
         printf '%s\\n' '{user}:{password}' '{plain}:{password}' | chpasswd"
    ));
    let plain_effective = c.ok(&format!(
        "sshd -T -C user={plain},host=localhost,addr=127.0.0.1"
    ));
    assert!(
        plain_effective
            .lines()
            .any(|l| l == "passwordauthentication yes"),
        "the stock sshd_config should allow passwords for other accounts:\n{plain_effective}"
    );
    let pwdir = tempdir("sdpw");
    let ask = askpass(&pwdir, "askpass", &password);
    let probe = "echo HOST-SHELL-$(hostname)";
    let control = password_ssh(&ask, port, &plain, probe);
    assert!(
        control.status.success() && stdout(&control) == format!("HOST-SHELL-{HOSTNAME}\n"),
        "the control: a password login of an ordinary account must work\n{}\n{}",
        out(&control),
        c.logs()
    );
    let member = password_ssh(&ask, port, &user, probe);
    assert!(
        !member.status.success()
            && !stdout(&member).contains("HOST-SHELL")
            && String::from_utf8_lossy(&member.stderr).contains("Permission denied"),
        "a password login of the podspawn user {user} was not refused\n{}",
        out(&member)
    );
    // Their key login still works.
    let again = ssh(&key, port, &user, "echo key-ok");
    assert_eq!(stdout(&again), "key-ok\n", "{}\n{}", out(&again), c.logs());
    phase("sshd settings and passwords");

    // --- 7. Remove: prerm takes the forwarding drop-in away (reloading sshd if there was one)
    // and pam_podspawn.so out of common-session before the file goes; an ordinary account's
    // login through sshd's PAM stack still works.
    // With a forwarding drop-in (server-setup's, or a stand-in where it has no --forwarding),
    // so that prerm's reload is exercised either way.
    if debian_container::ensure_forwarding_dropin(&c) {
        let reloads = sshd_reloads(&c);
        c.ok("systemctl reload ssh.service");
        wait_sshd_listening(&c, reloads + 1);
    }
    assert!(assert_forwarding_agrees(&c, &user));
    let reloads = sshd_reloads(&c);
    let o = c.sh("apt-get remove -y podspawn");
    assert!(o.status.success(), "apt remove\n{}", out(&o));
    assert_pam_gone(&c);
    assert_forwarding_agrees(&c, &user);
    c.ok("sshd -t && systemctl is-active ssh.service");
    // prerm removed the drop-in and reloaded sshd.
    wait_sshd_listening(&c, reloads + 1);
    let after_remove = password_ssh(&ask, port, &plain, probe);
    assert_eq!(
        stdout(&after_remove),
        format!("HOST-SHELL-{HOSTNAME}\n"),
        "an ordinary login after the removal\n{}\n{}",
        out(&after_remove),
        c.logs()
    );
    phase("remove");

    // --- 8. Purge: units gone, sshd valid, reloads and serves.
    let reloads = sshd_reloads(&c);
    let o = c.sh("apt-get purge -y podspawn");
    assert!(o.status.success(), "apt purge\n{}", out(&o));
    assert_eq!(
        c.ok("systemctl list-unit-files --no-legend 'podspawn*'; ls /etc/systemd/system/*/podspawn* /usr/lib/systemd/system/podspawn* 2>/dev/null; true"),
        "",
        "units left after the purge"
    );
    for unit in [
        "podspawn.socket",
        "podspawn.service",
        "podspawn-cleanup.service",
    ] {
        let s = show(&c, unit, "LoadState,ActiveState");
        assert_eq!(
            (s["LoadState"].as_str(), s["ActiveState"].as_str()),
            ("not-found", "inactive"),
            "{unit} after the purge\n{}",
            c.logs()
        );
    }
    c.ok(&format!(
        "! pgrep -x podspawn && ! test -e {DROPIN} && ! test -e /etc/podspawn && \
         ! test -e /usr/bin/podspawn"
    ));
    // postrm reloaded sshd without the drop-in; reload it once more, as an admin would.
    c.ok("sshd -t && systemctl reload ssh.service && systemctl is-active ssh.service");
    wait_sshd_listening(&c, reloads + 2);
    let served = password_ssh(&ask, port, &plain, probe);
    assert_eq!(
        stdout(&served),
        format!("HOST-SHELL-{HOSTNAME}\n"),
        "sshd does not serve after the purge\n{}\n{}",
        out(&served),
        c.logs()
    );
    let gone = ssh(&key, port, &user, "echo should-not-run");
    assert!(
        !gone.status.success() && !stdout(&gone).contains("should-not-run"),
        "a podspawn user logged in after the purge\n{}",
        out(&gone)
    );
    phase("purge");

    drop(c);
    let _ = std::fs::remove_dir_all(&keydir);
    let _ = std::fs::remove_dir_all(&pwdir);
    let left = check(
        Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=podspawn-user={user}")),
    );
    assert_eq!(stdout(&left), "", "the user's container was not removed");
    phase("teardown");
    eprintln!(
        "deb_under_systemd_pid1: {:.1}s {phases:?}",
        started.elapsed().as_secs_f64()
    );
}

/// `podspawn doctor --json`'s check named `name`.
fn doctor_check(c: &TestContainer, name: &str) -> serde_json::Value {
    // doctor exits non-zero when a check fails; its JSON is on stdout either way.
    let o = c.sh("podspawn doctor --json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", out(&o)));
    v.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("doctor has no check {name:?}: {v:#}"))
}

/// The /etc/passwd, /etc/shadow and /etc/group lines that mention each of `users`.
fn account_lines(c: &TestContainer, users: &[&String]) -> BTreeMap<String, String> {
    users
        .iter()
        .map(|u| {
            let text = c.ok(&format!(
                "getent passwd {u}; getent shadow {u}; grep -E '[:,]{u}(,|$)' /etc/group; true"
            ));
            (u.to_string(), text)
        })
        .collect()
}

/// Issue 16: key files restored into /etc/podspawn/keys before the package is installed, for
/// accounts in every state. Install and upgrade make the missing and the never-locked-by-an-admin
/// accounts work over ssh, leave the accounts used for something else untouched and name them
/// (install output, upgrade output, doctor); `server-setup --users --dry-run` changes nothing.
#[test]
fn deb_install_and_upgrade_reconcile_registered_users() {
    need("ssh", "openssh-client");
    let started = Instant::now();
    common::ensure_image();
    let deb = artifact("deb");
    let deb_name = deb.file_name().unwrap().to_str().unwrap().to_string();
    let id = packages::rand_hex(8);
    let missing = format!("pst{id}m");
    let useradd_locked = format!("pst{id}u");
    let admin_locked = format!("pst{id}a");
    let with_password = format!("pst{id}p");
    let in_sudo = format!("pst{id}s");
    // Registered after the install, reconciled by the upgrade.
    let missing2 = format!("pst{id}n");
    let useradd_locked2 = format!("pst{id}v");
    let everyone = [
        &missing,
        &useradd_locked,
        &admin_locked,
        &with_password,
        &in_sudo,
        &missing2,
        &useradd_locked2,
    ];
    let c = boot(
        format!("podspawn-sdusers-{id}"),
        everyone.iter().map(|u| u.to_string()).collect(),
    );
    let port = c.ssh_port();
    let keydir = tempdir("sdusers");
    let (key, pubkey) = keygen(&keydir, "sdusers");

    // --- Before the install: key files from a backup (no group podspawn yet: root 0644), and
    // accounts made by other tools.
    let write_keys = |users: &[&String]| {
        for u in users {
            c.ok(&format!(
                "mkdir -p /etc/podspawn/keys && echo '{pubkey}' >/etc/podspawn/keys/{u} && \
                 chmod 0644 /etc/podspawn/keys/{u}"
            ));
        }
    };
    write_keys(&everyone[..5]);
    c.ok(&format!(
        "useradd -s /bin/sh {useradd_locked} && \
         useradd -m -s /bin/sh {admin_locked} && echo '{admin_locked}:pst-Secret-1' | chpasswd && \
           usermod -L {admin_locked} && \
         useradd -m -s /bin/sh {with_password} && echo '{with_password}:pst-Secret-2' | chpasswd && \
         useradd -m -s /bin/sh -p '*' -G sudo {in_sudo}"
    ));
    let shadow = |u: &str| c.ok(&format!("getent shadow {u} | cut -d: -f2"));
    assert_eq!(shadow(&useradd_locked).trim(), "!");
    assert!(shadow(&admin_locked).starts_with("!$"));
    let untouched = [&admin_locked, &with_password, &in_sudo];
    let before = account_lines(&c, &untouched);

    // --- Install: the first two are set up, the others are named with the fix.
    let log = apt_install(&c, &format!("/pkg/{deb_name}"));
    let named = |log: &str, when: &str| {
        assert!(
            log.contains(&format!("podspawn: create host account {missing} (")),
            "{when}: {missing} not created:\n{log}"
        );
        assert!(
            log.contains(&format!(
                "podspawn: set {useradd_locked}'s password field from '!' to '*'"
            )),
            "{when}: {useradd_locked} not unlocked:\n{log}"
        );
    };
    named(&log, "install");
    opt_out_of_pam_module(&c);
    let left_alone = |log: &str, when: &str| {
        for u in untouched {
            let l: Vec<&str> = log
                .lines()
                .filter(|l| l.starts_with(&format!("podspawn: not touching {u}: ")))
                .collect();
            assert!(
                l.len() == 1 && l[0].contains(&format!("`podspawn add-user {u} --convert`")),
                "{when}: {u} is not named with its fix:\n{log}"
            );
        }
        assert!(
            log.contains("some registered users cannot log in yet"),
            "{when}: no notice that some users cannot log in:\n{log}"
        );
    };
    left_alone(&log, "install");
    assert_eq!(
        before,
        account_lines(&c, &untouched),
        "the install changed them"
    );
    configure(&c, &id);

    let login_works = |u: &str| {
        let uid = c.ok(&format!("id -u {u}")).trim().to_string();
        let o = ssh(&key, port, u, "id -u; cat /etc/hostname");
        let text = stdout(&o);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            o.status.success() && lines.len() == 2 && lines[0] == uid && lines[1] != HOSTNAME,
            "{u} does not land in their container\n{}\n{}",
            out(&o),
            c.logs()
        );
    };
    let login_refused = |u: &str| {
        let o = ssh(&key, port, u, "echo HOST-SHELL");
        assert!(
            !o.status.success() && !stdout(&o).contains("HOST-SHELL"),
            "{u}, left alone, logged in with the podspawn key\n{}",
            out(&o)
        );
    };
    for u in [&missing, &useradd_locked] {
        login_works(u);
    }
    for u in untouched {
        login_refused(u);
    }
    let doc = doctor_check(&c, "user accounts");
    let detail = doc["detail"].as_str().unwrap_or_default();
    let fix = doc["fix"].as_str().unwrap_or_default();
    assert_eq!(doc["status"], "fail", "{doc:#}");
    for u in untouched {
        assert!(
            detail.contains(u.as_str()),
            "doctor does not name {u}: {doc:#}"
        );
        assert!(
            fix.contains(&format!("podspawn add-user {u} --convert")),
            "doctor has no fix for {u}: {doc:#}"
        );
    }
    for u in [&missing, &useradd_locked] {
        assert!(!detail.contains(u.as_str()), "doctor names {u}: {doc:#}");
    }

    // --- More key files restored; --dry-run lists what it would do and changes nothing.
    write_keys(&everyone[5..]);
    c.ok(&format!("useradd -s /bin/sh {useradd_locked2}"));
    let state = "cat /etc/passwd /etc/shadow /etc/group /etc/gshadow; \
                 stat -c '%n %a %U:%G' /etc/podspawn/keys /etc/podspawn/keys/*; ls /home";
    let snap = c.ok(state);
    let o = c.sh("podspawn server-setup --users --dry-run");
    let dry = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "--dry-run\n{}", out(&o));
    assert_eq!(snap, c.ok(state), "--dry-run changed something:\n{dry}");
    assert!(
        dry.contains(&format!("podspawn: would create host account {missing2} ("))
            && dry.contains(&format!(
                "podspawn: would set {useradd_locked2}'s password field from '!' to '*'"
            )),
        "--dry-run does not list the changes:\n{dry}"
    );
    login_refused(&useradd_locked2);

    // --- Upgrade (the same payload as a newer version): the new ones are set up, the others
    // are named again and still untouched.
    let up_dir = tempdir("sdusers-upgrade");
    let new_version = format!("{}-99", env!("CARGO_PKG_VERSION"));
    let up_deb = debian_container::repack_deb(&deb, &new_version, &up_dir);
    c.copy_in(&up_deb, "/tmp/podspawn-upgrade.deb");
    let log = apt_install(&c, "/tmp/podspawn-upgrade.deb");
    assert_eq!(c.ok("dpkg-query -W -f '${Version}' podspawn"), new_version);
    assert!(
        log.contains(&format!("podspawn: create host account {missing2} ("))
            && log.contains(&format!(
                "podspawn: set {useradd_locked2}'s password field from '!' to '*'"
            )),
        "upgrade: the new users were not set up:\n{log}"
    );
    left_alone(&log, "upgrade");
    // The admin's deselection of pam_podspawn.so survives the upgrade (pam-auth-update
    // --package adds only profiles it has not seen), and forwarding stays off.
    assert!(
        debian_container::common_session_lines(&c).is_empty(),
        "the upgrade put pam_podspawn.so back into common-session:\n{log}"
    );
    c.ok(&format!("! test -e {FORWARDING_DROPIN}"));
    assert_eq!(
        before,
        account_lines(&c, &untouched),
        "the upgrade changed them"
    );
    c.ok(&format!("id -nG {in_sudo} | tr ' ' '\\n' | grep -qx sudo"));
    for u in [&missing, &useradd_locked, &missing2, &useradd_locked2] {
        login_works(u);
    }
    for u in untouched {
        login_refused(u);
    }
    let m = debian_container::modes(
        &c,
        &[
            "/etc/podspawn/keys",
            &format!("/etc/podspawn/keys/{missing2}"),
        ],
    );
    assert_eq!(m["/etc/podspawn/keys"], "750 root:podspawn");
    assert_eq!(
        m[&format!("/etc/podspawn/keys/{missing2}")],
        "640 root:podspawn"
    );

    drop(c);
    let _ = std::fs::remove_dir_all(&keydir);
    let _ = std::fs::remove_dir_all(&up_dir);
    eprintln!(
        "deb_install_and_upgrade_reconcile_registered_users: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
