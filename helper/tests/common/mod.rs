//! Shared pieces of the helper's integration tests: scratch directories, tool checks, the
//! OpenSSH sftp client driven in batch mode against a server command (`sftp -D`, no sshd).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const HELPER: &str = env!("CARGO_BIN_EXE_podspawn-helper");

/// A directory under target/tmp, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "helper-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create scratch dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fails the test, naming the package, when a tool it needs is missing.
pub fn require(tool: &str, package: &str) {
    let found = if tool.contains('/') {
        Path::new(tool).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(found, "this test needs `{tool}`: install the {package}");
}

/// An executable shell script at `path` that runs `body`.
pub fn script(path: &Path, body: &str) -> PathBuf {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path.to_path_buf()
}

/// The helper as an sftp server for `sftp -D`, with the given umask.
pub fn helper_wrapper(dir: &Path, umask: &str) -> PathBuf {
    script(
        &dir.join("helper-sftp-server"),
        &format!("umask {umask}\nexec {HELPER} sftp-server"),
    )
}

/// Runs OpenSSH's sftp client in batch mode against `server` (a command without arguments),
/// with `home` as the server's $HOME, from the working directory `cwd`.
pub fn sftp_batch(server: &Path, home: &Path, cwd: &Path, batch: &str) -> Output {
    require("sftp", "Debian package openssh-client");
    let batch_file = cwd.join(".batch");
    fs::write(&batch_file, batch).expect("write batch");
    let out = Command::new("sftp")
        .arg("-b")
        .arg(&batch_file)
        .arg("-D")
        .arg(server)
        .current_dir(cwd)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("run sftp");
    let _ = fs::remove_file(&batch_file);
    out
}

/// Asserts the batch succeeded and returns its stdout.
pub fn sftp_ok(server: &Path, home: &Path, cwd: &Path, batch: &str) -> String {
    let out = sftp_batch(server, home, cwd, batch);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sftp batch failed ({}):\n{batch}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `size` bytes of deterministic pseudo-random data (xorshift64*, from `seed`).
pub fn write_pseudo_random(path: &Path, size: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).expect("create data file"));
    let mut x = seed | 1;
    let mut left = size;
    let mut chunk = Vec::with_capacity(64 * 1024);
    while left > 0 {
        chunk.clear();
        while chunk.len() < 64 * 1024 && chunk.len() < left {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        chunk.truncate(left.min(chunk.len()));
        f.write_all(&chunk).expect("write data");
        left -= chunk.len();
    }
    f.flush().expect("flush data");
}

/// sha256sum(1) of a file (coreutils).
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum (Debian package coreutils)");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The name /etc/passwd gives `uid` (read as a file, as the helper does).
pub fn passwd_name(uid: u32) -> String {
    let text = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("uid {uid} not in /etc/passwd"))
}
