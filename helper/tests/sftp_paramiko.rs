//! A second client implementation: paramiko (PyPI) drives podspawn-helper's sftp-server over a
//! pair of pipes (tests/paramiko_client.py). paramiko is installed into a venv under target/tmp
//! on first use (.ci/run installs it beforehand).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PARAMIKO: &str = "paramiko==3.5.1";

fn paramiko_python() -> PathBuf {
    require("python3", "Debian packages python3 and python3-venv");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("paramiko-venv");
    let python = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import paramiko"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has(&python) {
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", PARAMIKO])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && has(&python),
            "this test needs {PARAMIKO} from PyPI in {} (python3 -m venv, then pip install)",
            venv.display()
        );
    }
    python
}

#[test]
fn paramiko_client_core_operations() {
    let python = paramiko_python();
    let t = TempDir::new("paramiko");
    let owner = passwd_name(nix_uid());
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/paramiko_client.py"
        ))
        .arg(HELPER)
        .arg(t.path().join("run"))
        .arg(owner)
        .output()
        .expect("run paramiko_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "paramiko client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test process's uid (the owner of what the helper creates).
fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .expect("stat /proc/self")
        .uid()
}
