//! The shared systemd units, sysusers.d and tmpfiles.d files and the sshd drop-in under
//! `systemd/`: `systemd-analyze verify` (no output at all), `systemd-analyze security
//! --offline=yes` exposure thresholds, and the settings the design depends on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::TempDir;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: &[&str] = &[
    "podspawn.socket",
    "podspawn.service",
    "podspawn-cleanup.service",
    "podspawn-cleanup-once.service",
    "podspawn-cleanup.timer",
    "podspawn-metrics.socket",
    "podspawn-metrics@.service",
];

/// Highest accepted `systemd-analyze security` exposure per service (measured with systemd 252:
/// podspawn.service 1.3, podspawn-cleanup.service 1.3, podspawn-cleanup-once.service 1.3,
/// podspawn-metrics@.service 0.4). Root services need CAP_CHOWN/FOWNER/DAC_OVERRIDE/KILL.
const EXPOSURE_LIMITS: &[(&str, f64)] = &[
    ("podspawn.service", 1.5),
    ("podspawn-cleanup.service", 1.5),
    ("podspawn-cleanup-once.service", 1.5),
    ("podspawn-metrics@.service", 0.8),
];

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

fn read(rel: &str) -> String {
    let p = systemd_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("{tool} is not installed");
    }
    ok
}

/// Copies of the units with ExecStart pointing at the built binary, in a fresh directory.
fn unit_copies(tag: &str) -> TempDir {
    let dir = TempDir::new(&format!("units-{tag}"));
    for u in UNITS {
        let text = read(u).replace("/usr/bin/podspawn", env!("CARGO_BIN_EXE_podspawn"));
        if u.ends_with(".service") {
            assert!(
                text.contains(env!("CARGO_BIN_EXE_podspawn")),
                "{u}: no ExecStart to rewrite"
            );
        }
        std::fs::write(dir.join(u), text).unwrap();
    }
    dir
}

/// `[Section] Key=Value` lines of a unit, in order (comments and blanks dropped).
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            section = l[1..l.len() - 1].to_string();
            continue;
        }
        let (k, v) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("bad unit line {l:?}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn values(unit: &str, section: &str, key: &str) -> Vec<String> {
    parse_unit(&read(unit))
        .into_iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

fn value(unit: &str, section: &str, key: &str) -> String {
    let v = values(unit, section, key);
    assert_eq!(v.len(), 1, "{unit}: [{section}] {key}: {v:?}");
    v[0].clone()
}

#[test]
fn every_unit_passes_systemd_analyze_verify_silently() {
    assert!(
        have("systemd-analyze"),
        "this test needs systemd-analyze: apt-get install systemd"
    );
    let dir = unit_copies("verify");
    for u in UNITS {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.join(u))
            .env("SYSTEMD_LOG_LEVEL", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("verify {u}: {}", out.status);
        assert!(out.status.success(), "{u}: {stderr}{stdout}");
        assert!(stderr.trim().is_empty(), "{u}: verify printed: {stderr}");
    }
    // All of them at once (cross-references: Requires=, Unit=, Conflicts=, Also=).
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.iter().map(|u| dir.join(u)))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verify_notices_a_missing_binary() {
    // Shows the verify test above is meaningful: a wrong ExecStart path is reported.
    assert!(
        have("systemd-analyze"),
        "this test needs systemd-analyze: apt-get install systemd"
    );
    let dir = unit_copies("verify-neg");
    let p = dir.join("podspawn.service");
    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace(env!("CARGO_BIN_EXE_podspawn"), "/nonexistent/podspawn");
    std::fs::write(&p, t).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success() || !out.stderr.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/podspawn"));
}

fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let after = line.split(':').nth(1)?.trim();
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn services_are_sandboxed() {
    assert!(
        have("systemd-analyze"),
        "this test needs systemd-analyze: apt-get install systemd"
    );
    let dir = unit_copies("security");
    let mut scores = BTreeMap::new();
    for (u, limit) in EXPOSURE_LIMITS {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(dir.join(u))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let score = exposure(&text).unwrap_or_else(|| panic!("{u}: no exposure level in:\n{text}"));
        println!("systemd-analyze security {u}: {score}");
        assert!(score <= *limit, "{u}: exposure {score} > {limit}:\n{text}");
        scores.insert(*u, score);
    }
    println!("exposure: {scores:?}");
}

#[test]
fn broker_socket_and_service() {
    assert_eq!(
        value("podspawn.socket", "Socket", "ListenStream"),
        "/run/podspawn/podspawn.sock"
    );
    assert_eq!(value("podspawn.socket", "Socket", "SocketUser"), "root");
    assert_eq!(
        value("podspawn.socket", "Socket", "SocketGroup"),
        "podspawn-users"
    );
    assert_eq!(value("podspawn.socket", "Socket", "SocketMode"), "0660");
    let s = "podspawn.service";
    assert_eq!(value(s, "Service", "ExecStart"), "/usr/bin/podspawn serve");
    assert_eq!(value(s, "Service", "Type"), "notify");
    assert_eq!(value(s, "Unit", "Requires"), "podspawn.socket");
    assert!(value(s, "Unit", "After").contains("docker.service"));
    assert_eq!(value(s, "Unit", "Wants"), "docker.service");
    assert_eq!(value(s, "Service", "Restart"), "on-failure");
    // A broker restart must never take sessions down: only the main process is signalled and
    // nothing is run on stop.
    assert_eq!(value(s, "Service", "KillMode"), "process");
    for k in [
        "ExecStop",
        "ExecStopPost",
        "ExecReload",
        "KillSignal",
        "SendSIGKILL",
    ] {
        assert!(values(s, "Service", k).is_empty(), "{s} must not set {k}");
    }
    assert_eq!(value(s, "Service", "ProtectSystem"), "strict");
    let rw = value(s, "Service", "ReadWritePaths");
    for p in ["/var/lib/podspawn", "/run/podspawn", "/var/log/podspawn"] {
        assert!(rw.contains(p), "{rw}");
    }
    assert_eq!(value(s, "Service", "ProtectHome"), "yes");
    assert_eq!(value(s, "Service", "PrivateTmp"), "yes");
    assert_eq!(value(s, "Service", "NoNewPrivileges"), "yes");
    assert_eq!(value(s, "Service", "RestrictAddressFamilies"), "AF_UNIX");
    assert_eq!(
        value(s, "Service", "CapabilityBoundingSet"),
        "CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE"
    );
    // One user's connections must not exhaust the broker's descriptors.
    assert_eq!(value(s, "Service", "LimitNOFILE"), "65536");
    assert_eq!(
        values(s, "Service", "SystemCallFilter")[0],
        "@system-service"
    );
    assert_eq!(value(s, "Service", "UMask"), "0077");
    for k in [
        "LockPersonality",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "RestrictRealtime",
        "MemoryDenyWriteExecute",
    ] {
        assert_eq!(value(s, "Service", k), "yes", "{k}");
    }
    // chown must stay allowed (persistent homes).
    for f in values(s, "Service", "SystemCallFilter") {
        assert!(
            !(f.starts_with('~') && (f.contains("@chown") || f.contains("@privileged"))),
            "{f}"
        );
    }
}

#[test]
fn cleanup_daemon_and_timer_alternatives() {
    let d = "podspawn-cleanup.service";
    assert_eq!(
        value(d, "Service", "ExecStart"),
        "/usr/bin/podspawn cleanup --daemon --interval 60s"
    );
    assert_eq!(value(d, "Service", "Type"), "notify");
    assert_eq!(value(d, "Service", "WatchdogSec"), "5min");
    assert_eq!(value(d, "Service", "Restart"), "always");
    assert_eq!(value(d, "Service", "ProtectSystem"), "strict");
    assert_eq!(value(d, "Install", "WantedBy"), "multi-user.target");
    let once = "podspawn-cleanup-once.service";
    assert_eq!(
        value(once, "Service", "ExecStart"),
        "/usr/bin/podspawn cleanup"
    );
    assert_eq!(value(once, "Service", "Type"), "oneshot");
    let t = "podspawn-cleanup.timer";
    assert_eq!(value(t, "Timer", "OnBootSec"), "30s");
    assert_eq!(value(t, "Timer", "OnUnitActiveSec"), "60s");
    assert_eq!(value(t, "Timer", "Unit"), "podspawn-cleanup-once.service");
    // Only one of the two runs.
    assert!(value(d, "Unit", "Conflicts").contains("podspawn-cleanup.timer"));
    assert!(value(d, "Unit", "Conflicts").contains("podspawn-cleanup-once.service"));
    assert_eq!(value(t, "Unit", "Conflicts"), "podspawn-cleanup.service");
    assert_eq!(value(once, "Unit", "Conflicts"), "podspawn-cleanup.service");
    // Same hardening as the broker.
    for k in [
        "ProtectSystem",
        "ProtectHome",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "UMask",
    ] {
        assert_eq!(
            value(d, "Service", k),
            value("podspawn.service", "Service", k),
            "{k}"
        );
        assert_eq!(
            value(once, "Service", k),
            value("podspawn.service", "Service", k),
            "{k}"
        );
    }
}

#[test]
fn metrics_endpoint() {
    let s = "podspawn-metrics.socket";
    assert_eq!(value(s, "Socket", "ListenStream"), "127.0.0.1:9108");
    assert_eq!(value(s, "Socket", "Accept"), "yes");
    let m = "podspawn-metrics@.service";
    assert_eq!(
        value(m, "Service", "ExecStart"),
        "/usr/bin/podspawn metrics-http"
    );
    assert_eq!(value(m, "Service", "StandardInput"), "socket");
    assert_eq!(value(m, "Service", "StandardOutput"), "socket");
    assert_eq!(value(m, "Service", "User"), "podspawn");
    assert_eq!(value(m, "Service", "SupplementaryGroups"), "podspawn-users");
    assert_eq!(value(m, "Service", "DynamicUser"), "no");
    assert_eq!(value(m, "Service", "PrivateNetwork"), "yes");
    assert_eq!(value(m, "Service", "RestrictAddressFamilies"), "AF_UNIX");
    assert_eq!(value(m, "Service", "CapabilityBoundingSet"), "");
}

#[test]
fn sysusers() {
    let lines: Vec<Vec<String>> = read("sysusers.d/podspawn.conf")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            // Fields are whitespace-separated; the GECOS field is quoted.
            let mut f = Vec::new();
            let mut cur = String::new();
            let mut q = false;
            for c in l.chars() {
                match c {
                    '"' => q = !q,
                    c if c.is_whitespace() && !q => {
                        if !cur.is_empty() {
                            f.push(std::mem::take(&mut cur));
                        }
                    }
                    c => cur.push(c),
                }
            }
            if !cur.is_empty() {
                f.push(cur);
            }
            f
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["g", "podspawn", "-"],
            vec![
                "u",
                "podspawn",
                "-:podspawn",
                "podspawn AuthorizedKeysCommand user",
                "/nonexistent",
                "/usr/sbin/nologin"
            ],
            vec!["g", "podspawn-users", "-"],
        ]
    );
}

fn tmpfiles_entries() -> Vec<(String, String, String, String, String)> {
    read("tmpfiles.d/podspawn.conf")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 5, "{l}");
            (
                f[0].into(),
                f[1].into(),
                f[2].into(),
                f[3].into(),
                f[4].into(),
            )
        })
        .collect()
}

const DIRS: &[(&str, &str, &str, &str)] = &[
    ("/etc/podspawn", "0755", "root", "root"),
    ("/etc/podspawn/keys", "0750", "root", "podspawn"),
    ("/etc/podspawn/users", "0755", "root", "root"),
    ("/var/lib/podspawn", "0700", "root", "root"),
    ("/var/lib/podspawn/locks", "0700", "root", "root"),
    ("/var/lib/podspawn/homes", "0711", "root", "root"),
    ("/run/podspawn", "0755", "root", "root"),
    ("/var/log/podspawn", "0750", "root", "root"),
];

#[test]
fn tmpfiles_modes() {
    let entries = tmpfiles_entries();
    for (path, mode, user, group) in DIRS {
        let e = entries
            .iter()
            .find(|e| e.0 == "d" && e.1 == *path)
            .unwrap_or_else(|| panic!("no d line for {path}"));
        assert_eq!(
            (e.2.as_str(), e.3.as_str(), e.4.as_str()),
            (*mode, *user, *group),
            "{path}"
        );
    }
    // The same modes server-setup uses.
    let cfg = podspawn::core::config::Config::default();
    for (p, group, mode) in podspawn::commands::server_setup::wanted_dirs(&cfg) {
        let want = DIRS
            .iter()
            .find(|d| Path::new(d.0) == p)
            .unwrap_or_else(|| panic!("{}", p.display()));
        assert_eq!(
            (format!("{mode:04o}"), group),
            (want.1.to_string(), want.3),
            "{}",
            p.display()
        );
    }
    let z: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == "z")
        .map(|e| (e.1.as_str(), e.2.as_str(), e.4.as_str()))
        .collect();
    assert!(z.contains(&("/etc/podspawn/config.yaml", "0640", "podspawn")));
    assert!(z.contains(&("/etc/podspawn/keys/*", "0640", "podspawn")));
    assert!(z.contains(&("/var/lib/podspawn/state.db*", "0600", "root")));
}

/// systemd-sysusers and systemd-tmpfiles applied to an empty root: the real modes.
#[test]
fn sysusers_and_tmpfiles_apply() {
    assert!(
        nix::unistd::geteuid().is_root() && have("systemd-sysusers") && have("systemd-tmpfiles"),
        "this test needs root and systemd-sysusers/systemd-tmpfiles: apt-get install systemd"
    );
    let root = TempDir::new("tmpfiles-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(systemd_dir().join("sysusers.d/podspawn.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let gid = |name: &str| -> u32 {
        group
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f[0] == name).then(|| f[2].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no group {name} in {group}"))
    };
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let pw: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("podspawn:"))
        .unwrap()
        .split(':')
        .collect();
    assert_eq!(pw[3].parse::<u32>().unwrap(), gid("podspawn"));
    assert_eq!(pw[5], "/nonexistent");
    assert_eq!(pw[6], "/usr/sbin/nologin");
    let _ = gid("podspawn-users");

    let out = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create")
        .arg(systemd_dir().join("tmpfiles.d/podspawn.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, mode, _, group) in DIRS {
        let m = std::fs::metadata(root.join(path.trim_start_matches('/'))).unwrap();
        let want_gid = if *group == "root" { 0 } else { gid(group) };
        assert_eq!(
            (format!("{:04o}", m.mode() & 0o7777), m.uid(), m.gid()),
            (mode.to_string(), 0, want_gid),
            "{path}"
        );
    }
    // `z` lines repair modes of existing files.
    let kf = root.join("etc/podspawn/keys/alice");
    std::fs::write(&kf, "x\n").unwrap();
    std::fs::set_permissions(&kf, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let out = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create")
        .arg(systemd_dir().join("tmpfiles.d/podspawn.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::metadata(&kf).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o640, gid("podspawn")));
}

#[test]
fn sshd_dropin() {
    let text = read("sshd/10-podspawn.conf");
    let directives: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        directives,
        vec![
            "Match Group podspawn-users",
            "AuthorizedKeysCommand /usr/bin/podspawn auth-keys %u %t %k",
            "AuthorizedKeysCommandUser podspawn",
            "AuthorizedKeysFile none",
            "ForceCommand exec /usr/bin/podspawn spawn",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "GSSAPIAuthentication no",
            "HostbasedAuthentication no",
            "PermitUserRC no",
            "AllowStreamLocalForwarding no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "AcceptEnv PODSPAWN_PROJECT LANG LANGUAGE LC_*",
        ]
    );
    // The header explains the prefix.
    assert!(text.contains("20-systemd-userdb.conf"));
    assert!(text.contains("FIRST value"));
    assert_eq!(text, podspawn::core::sshd_config::DROPIN_TEMPLATE);
}
