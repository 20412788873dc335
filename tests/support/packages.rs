//! Helpers shared by the package tests (tests/package_*.rs): the built packages (`make
//! packages` puts them in target/packages/), required tools, and a fresh Debian rootfs made by
//! debootstrap from the mirror apt uses (cached as a tarball under target/package-tests/
//! between runs).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const SUITE: &str = "bookworm";
/// What debootstrap puts into the rootfs on top of minbase. systemd-sysv (/sbin/init) and dbus
/// make it bootable with systemd as PID 1 (tests/package_systemd.rs); the same rootfs serves
/// the tests that run it without systemd, so CI builds it once.
pub const INCLUDE: &str =
    "openssh-server,openssh-sftp-server,passwd,systemd,systemd-sysv,dbus,procps";

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => manifest_dir().join(d),
        None => manifest_dir().join("target"),
    }
}

/// The package built by `make packages` (`deb` or `rpm`); panics, saying how to build it, if
/// there is none.
pub fn artifact(ext: &str) -> PathBuf {
    let dir = target_dir().join("packages");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        1 => found.pop().unwrap(),
        0 => panic!(
            "no .{ext} package in {}: run `make packages` (scripts/build-packages.sh) first",
            dir.display()
        ),
        _ => panic!(
            "more than one .{ext} package in {}: {found:?}; run `make packages` (it empties the \
             directory first)",
            dir.display()
        ),
    }
}

/// Panics unless `tool` is on PATH (the CI installs it: .ci/run).
pub fn need(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is not installed: apt-get install {package} (see .ci/run)"
    );
}

pub fn out(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `cmd`, panicking with its output unless it succeeds.
pub fn check(cmd: &mut Command) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed\n{}", out(&o));
    o
}

pub fn rand_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()[..n].to_string()
}

/// FNV-1a, as a short stable key for cache names.
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")[..12].to_string()
}

/// An exclusive lock on `path` for the life of the returned file (flock(2)).
pub fn lock(path: &Path) -> std::fs::File {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on a file descriptor we own; released when the file is closed.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock {}", path.display());
    f
}

fn rootfs_key() -> String {
    short_hash(&format!("{SUITE} minbase {INCLUDE} {} v1", apt_mirror()))
}

/// The Debian archive this machine's apt uses (debootstrap must use it too: it may be the only
/// one reachable). From /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line and deb822
/// formats): the URI of a `deb` source with component main for SUITE, else of any Debian main
/// archive (a suite without `-security`/`-updates`; a mirror carries every suite).
pub fn apt_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("list", t));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let kind = match p.extension().and_then(|x| x.to_str()) {
                Some("list") => "list",
                Some("sources") => "sources",
                _ => continue,
            };
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push((kind, t));
            }
        }
    }
    // (uris, suites, components) of every `deb` source.
    let mut sources: Vec<(Vec<String>, Vec<String>, Vec<String>)> = Vec::new();
    for (kind, text) in &texts {
        if *kind == "list" {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                let Some(rest) = line.strip_prefix("deb ") else {
                    continue;
                };
                let rest = rest.trim_start();
                // Skip the options: "[arch=amd64 signed-by=…]".
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
                    None => rest,
                };
                let f: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
                if f.len() >= 3 {
                    sources.push((vec![f[0].clone()], vec![f[1].clone()], f[2..].to_vec()));
                }
            }
        } else {
            for stanza in text.split("\n\n") {
                let mut fields = std::collections::HashMap::new();
                for line in stanza.lines() {
                    if line.starts_with('#') {
                        continue;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let words = |k: &str| -> Vec<String> {
                    fields
                        .get(k)
                        .map(|v| v.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default()
                };
                let enabled = fields.get("enabled").is_none_or(|v| v != "no");
                if enabled && words("types").iter().any(|t| t == "deb") {
                    sources.push((words("uris"), words("suites"), words("components")));
                }
            }
        }
    }
    let main = |s: &&(Vec<String>, Vec<String>, Vec<String>)| s.2.iter().any(|c| c == "main");
    let exact = sources
        .iter()
        .filter(main)
        .find(|s| s.1.iter().any(|x| x == SUITE));
    let any = || {
        sources
            .iter()
            .filter(main)
            .find(|s| s.1.iter().any(|x| !x.contains('-') && !x.contains('/')))
    };
    match exact.or_else(any).and_then(|s| s.0.first()) {
        Some(uri) => uri.trim_end_matches('/').to_string(),
        None => panic!(
            "no Debian archive with component main in /etc/apt/sources.list or \
             /etc/apt/sources.list.d/: debootstrap uses the mirror apt is configured with"
        ),
    }
}

/// A tarball of a fresh Debian (`debootstrap --variant=minbase --include=…`), made once and
/// cached under target/package-tests/.
pub fn debian_rootfs_tarball() -> PathBuf {
    let dir = target_dir().join("package-tests");
    let tarball = dir.join(format!("debian-{SUITE}-{}.tar", rootfs_key()));
    let _lock = lock(&dir.join("rootfs.lock"));
    if tarball.is_file() {
        return tarball;
    }
    need("debootstrap", "debootstrap");
    assert!(
        nix::unistd::geteuid().is_root(),
        "building the Debian rootfs with debootstrap needs root: run the tests as root"
    );
    let root = dir.join(format!("rootfs-{}", std::process::id()));
    let mut last = String::new();
    for attempt in 0..2 {
        let _ = std::fs::remove_dir_all(&root);
        let o = Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={INCLUDE}"))
            .arg(SUITE)
            .arg(&root)
            .arg(apt_mirror())
            .stdin(Stdio::null())
            .output()
            .expect("running debootstrap");
        if o.status.success() {
            last.clear();
            break;
        }
        last = format!("debootstrap attempt {attempt} failed\n{}", out(&o));
        eprintln!("{last}");
    }
    assert!(last.is_empty(), "{last}");
    let tmp = dir.join(format!("rootfs-{}.tar.tmp", std::process::id()));
    check(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tmp)
            .arg("."),
    );
    std::fs::rename(&tmp, &tarball).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    tarball
}

/// The Debian rootfs as a Docker image `podspawn-debtest:<key>` (label podspawn-test=1).
pub fn debian_image() -> String {
    let tag = format!("podspawn-debtest:{}", rootfs_key());
    let tarball = debian_rootfs_tarball();
    let _lock = lock(&target_dir().join("package-tests/image.lock"));
    let present = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        check(
            Command::new("docker")
                .args(["import", "--change", "LABEL podspawn-test=1"])
                .arg(&tarball)
                .arg(&tag)
                .stdout(Stdio::null()),
        );
    }
    tag
}

/// A fresh directory under target/package-tests/ for `what`.
pub fn tempdir(what: &str) -> PathBuf {
    let d = target_dir().join(format!(
        "package-tests/{what}-{}-{}",
        std::process::id(),
        rand_hex(6)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Unpacks the Debian rootfs tarball into `dir` (for `rpm --root`).
pub fn unpack_rootfs(dir: &Path) {
    let tarball = debian_rootfs_tarball();
    std::fs::create_dir_all(dir).unwrap();
    check(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(dir)
            .arg("-xf")
            .arg(&tarball),
    );
}

/// The files a package must install (both formats): (path, mode).
pub const COMMON_FILES: &[(&str, u32)] = &[
    ("/usr/bin/podspawn", 0o755),
    // The static in-container helper, at helper.path's default.
    ("/usr/lib/podspawn/podspawn-helper", 0o755),
    ("/usr/lib/systemd/system/podspawn.socket", 0o644),
    ("/usr/lib/systemd/system/podspawn.service", 0o644),
    ("/usr/lib/systemd/system/podspawn-cleanup.service", 0o644),
    (
        "/usr/lib/systemd/system/podspawn-cleanup-once.service",
        0o644,
    ),
    ("/usr/lib/systemd/system/podspawn-cleanup.timer", 0o644),
    ("/usr/lib/systemd/system/podspawn-metrics.socket", 0o644),
    ("/usr/lib/systemd/system/podspawn-metrics@.service", 0o644),
    ("/usr/lib/sysusers.d/podspawn.conf", 0o644),
    ("/usr/lib/tmpfiles.d/podspawn.conf", 0o644),
    ("/usr/share/man/man1/podspawn.1.gz", 0o644),
    ("/usr/share/man/man1/podspawn-add-user.1.gz", 0o644),
    ("/usr/share/man/man1/podspawn-server-setup.1.gz", 0o644),
    ("/usr/share/bash-completion/completions/podspawn", 0o644),
    ("/usr/share/fish/vendor_completions.d/podspawn.fish", 0o644),
    ("/etc/podspawn/config.yaml", 0o640),
    ("/etc/ssh/sshd_config.d/10-podspawn.conf", 0o644),
];

/// The conffiles / %config(noreplace) files.
pub const CONFIG_FILES: &[&str] = &[
    "/etc/podspawn/config.yaml",
    "/etc/ssh/sshd_config.d/10-podspawn.conf",
];

/// Files of the source tree that the packages must carry unchanged: (installed path, source).
pub fn source_copies() -> Vec<(String, PathBuf)> {
    let m = manifest_dir();
    let mut v = vec![
        (
            "/etc/ssh/sshd_config.d/10-podspawn.conf".to_string(),
            m.join("systemd/sshd/10-podspawn.conf"),
        ),
        (
            "/usr/lib/sysusers.d/podspawn.conf".to_string(),
            m.join("systemd/sysusers.d/podspawn.conf"),
        ),
        (
            "/usr/lib/tmpfiles.d/podspawn.conf".to_string(),
            m.join("systemd/tmpfiles.d/podspawn.conf"),
        ),
    ];
    for (path, _) in COMMON_FILES {
        if let Some(unit) = path.strip_prefix("/usr/lib/systemd/system/") {
            v.push((path.to_string(), m.join("systemd").join(unit)));
        }
    }
    v
}

/// Compares the unpacked package tree `root` with the source tree and the default
/// configuration; the message says to rebuild the packages when they are stale.
pub fn assert_matches_source(root: &Path, bin_path_in_root: &str) {
    for (installed, source) in source_copies() {
        let got = std::fs::read(root.join(installed.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{installed} missing from the package: {e}"));
        let want = std::fs::read(&source).unwrap();
        assert!(
            got == want,
            "{installed} in the package differs from {}: the package is stale, run `make packages`",
            source.display()
        );
    }
    let cfg = std::fs::read_to_string(root.join("etc/podspawn/config.yaml")).unwrap();
    assert_eq!(
        cfg,
        podspawn::core::config::default_config_yaml(),
        "etc/podspawn/config.yaml in the package is not default_config_yaml(): the package is \
         stale, run `make packages`"
    );
    let version = Command::new(root.join(bin_path_in_root.trim_start_matches('/')))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&version).trim(),
        format!("podspawn {}", env!("CARGO_PKG_VERSION")),
        "the packaged binary's version is not this crate's: run `make packages`"
    );
}
