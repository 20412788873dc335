//! The static build (scripts/build-helper.sh) runs in a container image holding nothing but the
//! binary and a passwd/group file: no libc, no shell, no NSS. OpenSSH's sftp client drives it
//! through `docker run -i` (as the broker's exec will).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn static_helper() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/build-helper.sh"))
        .current_dir(&root)
        .output()
        .expect("run scripts/build-helper.sh");
    assert!(
        out.status.success(),
        "build-helper.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rel = stdout.lines().last().expect("path on the last line");
    root.join(rel.trim())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn static_helper_serves_sftp_in_an_image_of_nothing_but_itself() {
    require("docker", "Docker engine (docker.io)");
    require("file", "Debian package file");
    let helper = static_helper();
    let desc = run(Command::new("file").arg("-b").arg(&helper));
    assert!(desc.contains("static"), "not static: {desc}");

    let t = TempDir::new("image");
    let rootfs = t.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("home/captain")).unwrap();
    fs::copy(&helper, rootfs.join("podspawn-helper")).unwrap();
    // Names no host or NSS would give uid/gid 0: seen in ls -l only if the helper reads these files.
    fs::write(
        rootfs.join("etc/passwd"),
        "captain:x:0:0:Captain:/home/captain:/podspawn-helper\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/group"), "crew:x:0:\n").unwrap();
    let tar = t.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let image = Image(format!(
        "podspawn-helper-test-{}:latest",
        std::process::id()
    ));
    run(Command::new("docker")
        .args(["import", "--change", "LABEL podspawn-test=1"])
        .arg(&tar)
        .arg(&image.0));

    // HOME empty: the helper falls back to the passwd file's entry for its uid.
    let server = script(
        &t.path().join("docker-sftp-server"),
        &format!(
            "exec docker run --rm -i --network none --label podspawn-test=1 -e HOME= {} /podspawn-helper sftp-server",
            image.0
        ),
    );
    let local = t.path().join("local");
    fs::create_dir_all(&local).unwrap();
    write_pseudo_random(&local.join("data.bin"), 3 * 1024 * 1024 + 17, 42);
    let out = sftp_ok(
        &server,
        t.path(),
        &local,
        "pwd\nput data.bin data.bin\nmkdir sub\nrename data.bin sub/data.bin\nget sub/data.bin back.bin\nls -l /etc\ndf /\n",
    );
    assert!(
        out.contains("Remote working directory: /home/captain\n"),
        "home from /etc/passwd:\n{out}"
    );
    assert_eq!(
        sha256(&local.join("back.bin")),
        sha256(&local.join("data.bin"))
    );
    let passwd_line = out
        .lines()
        .find(|l| !l.starts_with("sftp>") && l.ends_with(" passwd"))
        .unwrap_or_else(|| panic!("no ls line for /etc/passwd:\n{out}"));
    let cols: Vec<&str> = passwd_line.split_whitespace().collect();
    assert_eq!((cols[2], cols[3]), ("captain", "crew"), "{passwd_line}");
}
