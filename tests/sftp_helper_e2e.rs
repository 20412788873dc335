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
    let (_helper_dir, helper) = common::installed_helper();
    let _image = common::image_without(NO_SFTP_IMAGE, &podspawn::core::session::SFTP_SERVER_PATHS);
    let mut env = Env::with(Opts {
        extra: format!("helper:\n  path: {}\n", helper.display()),
        ..Opts::default()
    });
    let bare = env.add_user();
    let own = env.add_user();
    env.set_overrides(&bare, &format!("image: {NO_SFTP_IMAGE}\n"));

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

const BUSYBOX_IMAGE: &str = "podspawn-test-busybox:latest";

/// An image like Alpine's or a distroless one: a static busybox and nothing else (no glibc, no
/// bash, no sftp-server, no rsync). Built from the host's busybox-static; removed when dropped.
fn busybox_image() -> common::ImageGuard {
    let bb = Path::new("/bin/busybox");
    let o = run(Command::new("file").arg("-L").arg(bb));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("statically linked"),
        "/bin/busybox must be static: install the Debian package busybox-static ({})",
        text(&o)
    );
    let root = common::TempDir::new("busybox-root");
    for d in [
        "bin", "etc", "tmp", "home", "root", "proc", "sys", "dev", "run",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(bb, root.join("bin/busybox")).unwrap();
    let o = run(Command::new(root.join("bin/busybox"))
        .arg("--install")
        .arg("-s")
        .arg(root.join("bin")));
    assert!(o.status.success(), "busybox --install: {}", text(&o));
    // --install links to the absolute path it was run from: point them at /bin/busybox.
    for e in std::fs::read_dir(root.join("bin")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "busybox" {
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink("/bin/busybox", &p).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let o = run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} -c . | docker import --change 'LABEL podspawn-test=1' - {BUSYBOX_IMAGE}",
        root.path("").display()
    )));
    assert!(o.status.success(), "docker import: {}", text(&o));
    common::ImageGuard(BUSYBOX_IMAGE.into())
}

/// paramiko's Python, from the venv scripts/test-deps.sh makes (or made here when missing).
fn paramiko_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("paramiko-venv");
    let python = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", "import paramiko"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&python) {
        let o = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        assert!(
            o.status.success(),
            "venv (Debian package python3-venv): {}",
            text(&o)
        );
        let o =
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "paramiko==3.5.1"]));
        assert!(o.status.success(), "pip install paramiko: {}", text(&o));
    }
    python
}

/// Through sshd and the broker, on an image with no libc and no sftp-server: OpenSSH's sftp
/// (every common operation, a large file with checksums), recursive scp both ways, and paramiko's
/// SSH + SFTP client; and rsync.
#[test]
fn sftp_scp_and_paramiko_on_a_libc_free_image() {
    let (_helper_dir, helper) = common::installed_helper();
    let _bb = busybox_image();
    let mut env = Env::with(Opts {
        extra: format!("helper:\n  path: {}\n", helper.display()),
        ..Opts::default()
    });
    let u = env.add_user();
    let r = env.add_user();
    env.set_overrides(&u, &format!("image: {BUSYBOX_IMAGE}\nshell: /bin/sh\n"));
    let o = env.ssh(&u, "ls /lib /usr/lib 2>&1 | grep -c libc; echo shell=$0");
    let out = text(&o);
    assert!(
        out.contains("shell=/bin/sh") && out.starts_with('0'),
        "{out}\n{}",
        env.broker_log()
    );

    let dir = env.root.join("xfer");
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    let big = dir.join("big.bin");
    random_file(&big, 16);
    let want = sha256(&big);
    std::fs::write(dir.join("tree/a.txt"), "a\n").unwrap();
    std::fs::write(dir.join("tree/sub/b.txt"), "b\n").unwrap();
    let opts = env.ssh_opts(&u);
    let target = format!("{}@127.0.0.1", u.name);
    let back = dir.join("back.bin");
    let batch = dir.join("batch");
    std::fs::write(
        &batch,
        format!(
            "mkdir d\nput {big} d/up.bin\nrename d/up.bin d/moved.bin\nsymlink moved.bin d/link\n\
             chmod 600 d/moved.bin\nls -l d\nget d/link {back}\nrm d/moved.bin\nrm d/link\nrmdir d\n",
            big = big.display(),
            back = back.display()
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
    let out = text(&o);
    assert!(o.status.success(), "sftp: {out}\n{}", env.broker_log());
    assert!(
        out.contains("-rw-------"),
        "chmod 600 shows in ls -l: {out}"
    );
    assert_eq!(sha256(&back), want);
    let o = env.ssh(&u, "ls -A; echo end");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "end",
        "{}",
        text(&o)
    );

    // scp -r both ways.
    let o = run(Command::new("scp")
        .args(&opts)
        .arg("-P")
        .arg(env.port.to_string())
        .arg("-r")
        .arg(dir.join("tree"))
        .arg(format!("{target}:")));
    assert!(o.status.success(), "scp -r up: {}", text(&o));
    let down = dir.join("down");
    let o = run(Command::new("scp")
        .args(&opts)
        .arg("-P")
        .arg(env.port.to_string())
        .arg("-r")
        .arg(format!("{target}:tree"))
        .arg(&down));
    assert!(o.status.success(), "scp -r down: {}", text(&o));
    assert_eq!(
        std::fs::read_to_string(down.join("sub/b.txt")).unwrap(),
        "b\n"
    );

    // paramiko: its own SSH transport and SFTP client, against the same session.
    let script = r#"
import hashlib, sys, paramiko
port, user, key, big = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.1", port=port, username=user, key_filename=key, look_for_keys=False, allow_agent=False)
_, out, _ = c.exec_command("echo hello-from-$(id -un)")
assert out.read().decode().strip() == "hello-from-" + user
assert out.channel.recv_exit_status() == 0
s = c.open_sftp()
s.put(big, "p.bin")
s.rename("p.bin", "q.bin")
assert s.stat("q.bin").st_size == 16 * 1024 * 1024
s.mkdir("pd")
assert "pd" in s.listdir(".")
s.rmdir("pd")
with s.open("q.bin", "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
s.remove("q.bin")
s.close()
c.close()
print("OK", digest)
"#;
    let o = run(Command::new(paramiko_python())
        .arg("-c")
        .arg(script)
        .arg(env.port.to_string())
        .arg(&u.name)
        .arg(&u.key)
        .arg(&big));
    let out = text(&o);
    assert!(o.status.success(), "paramiko: {out}\n{}", env.broker_log());
    assert!(out.contains(&format!("OK {want}")), "{out}");

    // rsync needs rsync in the container (the test image has it), not sftp-server.
    let ropts = env.ssh_opts(&r).join(" ");
    let o = run(Command::new("rsync")
        .arg("-a")
        .arg("-e")
        .arg(format!("ssh {ropts} -p {}", env.port))
        .arg(dir.join("tree/"))
        .arg(format!("{}@127.0.0.1:synced/", r.name)));
    assert!(o.status.success(), "rsync: {}", text(&o));
    let o = env.ssh(&r, "cat synced/sub/b.txt");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "b\n", "{}", text(&o));
}
