//! SFTP on any image (issue 11): through a real sshd and the real broker, an image without
//! sftp-server gets SFTP from the podspawn-helper the broker mounts read-only (helper.path),
//! while an image with its own sftp-server keeps using that. Run as root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{random_file, run, sha256, Env, Opts, User};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NO_SFTP_IMAGE: &str = "podspawn-test-nosftp:latest";

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Builds the static helper with scripts/build-helper.sh and returns its path.
fn build_helper() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = run(Command::new("bash")
        .arg(repo.join("scripts/build-helper.sh"))
        .current_dir(repo));
    assert!(o.status.success(), "build-helper: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    repo.join(out.lines().last().unwrap().trim())
}

/// podspawn-test:latest without any sftp-server; removed when dropped.
struct NoSftpImage;

impl NoSftpImage {
    fn build() -> NoSftpImage {
        common::ensure_image();
        let name = format!("podspawn-nosftp-build-{}", std::process::id());
        let _ = run(Command::new("docker").args(["rm", "-f", &name]));
        let mut rm = vec!["run", "--name", &name, common::IMAGE, "/bin/rm", "-f"];
        rm.extend(podspawn::core::session::SFTP_SERVER_PATHS);
        let o = run(Command::new("docker").args(&rm));
        assert!(o.status.success(), "docker run rm: {}", text(&o));
        // The label (podspawn-test=1) comes with the base image.
        let o = run(Command::new("docker").args(["commit", &name, NO_SFTP_IMAGE]));
        let _ = run(Command::new("docker").args(["rm", "-f", &name]));
        assert!(o.status.success(), "docker commit: {}", text(&o));
        NoSftpImage
    }
}

impl Drop for NoSftpImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", NO_SFTP_IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The command lines of the processes in `user`'s container while an sftp session is open.
fn processes_during_sftp(env: &Env, u: &User) -> String {
    let mut child = Command::new("sftp")
        .args(env.ssh_opts(u))
        .arg("-P")
        .arg(env.port.to_string())
        .arg("-b")
        .arg("-")
        .arg(format!("{}@127.0.0.1", u.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "pwd").unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Remote working directory") => break,
            Some(Ok(_)) => {}
            other => panic!("sftp ended before answering pwd: {other:?}"),
        }
    }
    let ids = env.containers_of(&u.name);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let o = run(Command::new("docker").args(["exec", &ids[0], "ps", "-eo", "args"]));
    assert!(o.status.success(), "ps: {}", text(&o));
    drop(stdin);
    assert!(child.wait().unwrap().success());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn sftp_and_scp_work_on_an_image_without_sftp_server() {
    let helper_src = build_helper();
    let helper_dir = common::TempDir::under(Path::new("/var/tmp"), "pst-helper");
    let helper = helper_dir.join("podspawn-helper");
    let o = run(Command::new("install")
        .arg("-m")
        .arg("0755")
        .arg(&helper_src)
        .arg(&helper));
    assert!(o.status.success(), "install: {}", text(&o));
    let _image = NoSftpImage::build();
    let mut env = Env::with(Opts {
        extra: format!("helper:\n  path: {}\n", helper.display()),
        ..Opts::default()
    });
    let bare = env.add_user();
    let own = env.add_user();
    std::fs::create_dir_all(env.root.join("users")).unwrap();
    std::fs::write(
        env.root.join(format!("users/{}.yaml", bare.name)),
        format!("image: {NO_SFTP_IMAGE}\n"),
    )
    .unwrap();

    // verify-image says the helper covers sftp.
    let o = env.podspawn(&["verify-image", NO_SFTP_IMAGE]);
    assert!(
        text(&o).contains("sftp provided by podspawn (podspawn-helper)"),
        "{}",
        text(&o)
    );

    let dir = env.root.join("xfer");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("big.bin");
    random_file(&src, 8);
    let want = sha256(&src);
    let opts = env.ssh_opts(&bare);
    let target = format!("{}@127.0.0.1", bare.name);
    let o = env.ssh(&bare, "test -e /usr/lib/openssh/sftp-server || echo none");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "none",
        "{}",
        text(&o)
    );

    // sftp batch put + get.
    let batch = dir.join("batch");
    let back = dir.join("sftp-back.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} up.bin\nget up.bin {}\n",
            src.display(),
            back.display()
        ),
    )
    .unwrap();
    let o = run(Command::new("sftp")
        .args(&opts)
        .arg("-P")
        .arg(env.port.to_string())
        .arg("-b")
        .arg(&batch)
        .arg(&target));
    assert!(
        o.status.success(),
        "sftp: {}\n{}",
        text(&o),
        env.broker_log()
    );
    assert_eq!(sha256(&back), want);
    let o = env.ssh(&bare, "sha256sum up.bin");
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&want),
        "{}",
        text(&o)
    );

    // scp both ways (OpenSSH >= 9 speaks SFTP underneath).
    let o = run(Command::new("scp")
        .args(&opts)
        .arg("-P")
        .arg(env.port.to_string())
        .arg(&src)
        .arg(format!("{target}:scp.bin")));
    assert!(o.status.success(), "scp up: {}", text(&o));
    let scp_back = dir.join("scp-back.bin");
    let o = run(Command::new("scp")
        .args(&opts)
        .arg("-P")
        .arg(env.port.to_string())
        .arg(format!("{target}:scp.bin"))
        .arg(&scp_back));
    assert!(o.status.success(), "scp down: {}", text(&o));
    assert_eq!(sha256(&scp_back), want);

    // The helper serves the image without sftp-server, and it is read-only in there.
    let ps = processes_during_sftp(&env, &bare);
    assert!(
        ps.contains("/.podspawn/podspawn-helper sftp-server"),
        "{ps}"
    );
    let id = env.containers_of(&bare.name).remove(0);
    let o = run(Command::new("docker").args([
        "exec",
        &id,
        "sh",
        "-c",
        "echo x >> /.podspawn/podspawn-helper",
    ]));
    assert!(
        !o.status.success() && text(&o).contains("Read-only"),
        "the container's root wrote to the helper: {}",
        text(&o)
    );

    // The image's own sftp-server is still preferred where it exists.
    let ps = processes_during_sftp(&env, &own);
    assert!(ps.contains("/usr/lib/openssh/sftp-server"), "{ps}");
    assert!(!ps.contains("podspawn-helper"), "{ps}");
}
