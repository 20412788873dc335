//! podspawn-helper's sftp-server driven by OpenSSH's own sftp client (`sftp -b -D`): no sshd, the
//! client talks to the helper over a pipe exactly as it would through ssh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn openssh_sftp_batch_core_operations() {
    let t = TempDir::new("core");
    let (home, local) = (t.path().join("home"), t.path().join("local"));
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&local).unwrap();
    fs::write(local.join("a.txt"), b"first file\n").unwrap();
    fs::set_permissions(local.join("a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(local.join("x.txt"), b"second file\n").unwrap();
    let server = helper_wrapper(t.path(), "027");

    let out = sftp_ok(
        &server,
        &home,
        &local,
        "pwd\n\
         put a.txt a.txt\n\
         get a.txt a.back\n\
         rename a.txt b.txt\n\
         put x.txt x.txt\n\
         -rename -l x.txt b.txt\n\
         rename -l x.txt y.txt\n\
         mkdir d\n\
         mkdir kept\n\
         put a.txt d/inner.txt\n\
         ln -s b.txt link.txt\n\
         ln b.txt hard.txt\n\
         chmod 600 b.txt\n\
         cp y.txt copy.txt\n\
         ls -l\n\
         df\n\
         rm d/inner.txt\n\
         rmdir d\n",
    );
    let canonical_home = fs::canonicalize(&home).unwrap();
    assert!(
        out.contains(&format!(
            "Remote working directory: {}\n",
            canonical_home.display()
        )),
        "relative paths resolve against $HOME:\n{out}"
    );
    assert_eq!(fs::read(local.join("a.back")).unwrap(), b"first file\n");
    assert!(!home.join("a.txt").exists(), "renamed away");
    assert_eq!(fs::read(home.join("b.txt")).unwrap(), b"first file\n");
    // The legacy rename (SSH_FXP_RENAME) must not replace an existing file.
    assert!(!home.join("x.txt").exists());
    assert_eq!(fs::read(home.join("y.txt")).unwrap(), b"second file\n");
    assert_eq!(fs::read(home.join("copy.txt")).unwrap(), b"second file\n");
    // chmod (SETSTAT) and the umask (027 in the server's wrapper) on created files and dirs.
    assert_eq!(mode(&home.join("b.txt")), 0o600);
    assert_eq!(
        mode(&home.join("y.txt")),
        0o640,
        "0644 from the client, umask 027"
    );
    assert_eq!(
        mode(&home.join("kept")),
        0o750,
        "0777 from the client, umask 027"
    );
    assert_eq!(
        fs::read_link(home.join("link.txt")).unwrap(),
        Path::new("b.txt"),
        "symlink target and link path in OpenSSH's order"
    );
    let (b, hard) = (
        fs::metadata(home.join("b.txt")).unwrap(),
        fs::metadata(home.join("hard.txt")).unwrap(),
    );
    assert_eq!(
        (b.ino(), b.nlink()),
        (hard.ino(), 2),
        "hardlink@openssh.com"
    );
    assert!(!home.join("d").exists());

    // ls -l prints the server's longname: names from /etc/passwd and /etc/group.
    let owner = passwd_name(b.uid());
    // (Batch mode echoes each command: "sftp> ..." lines are not listing lines.)
    let listing: Vec<&str> = out.lines().filter(|l| !l.starts_with("sftp>")).collect();
    let line = listing
        .iter()
        .find(|l| l.ends_with(" b.txt"))
        .unwrap_or_else(|| panic!("no ls line for b.txt:\n{out}"));
    assert!(line.starts_with("-rw-------"), "{line}");
    assert_eq!(
        line.split_whitespace().nth(2),
        Some(owner.as_str()),
        "{line}"
    );
    assert!(listing
        .iter()
        .any(|l| l.starts_with("drwxr-x---") && l.ends_with(" kept")));
    assert!(listing
        .iter()
        .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with(" link.txt")));

    // df (statvfs@openssh.com): a header and a line of numbers.
    let df = out
        .lines()
        .skip_while(|l| !l.contains("Size") || !l.contains("Avail"))
        .nth(1)
        .unwrap_or_else(|| panic!("no df output:\n{out}"));
    let numbers: Vec<u64> = df
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 4, "{df}");
    assert!(numbers[0] > 0, "{df}");
}

#[test]
fn openssh_sftp_errors_are_reported_not_fatal() {
    let t = TempDir::new("errors");
    let home = t.path().join("home");
    fs::create_dir_all(home.join("full")).unwrap();
    fs::write(home.join("full/f"), b"x").unwrap();
    let server = helper_wrapper(t.path(), "022");
    let out = sftp_batch(
        &server,
        &home,
        t.path(),
        "-get missing.txt\n-rmdir full\n-rm nothere\npwd\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not found") || stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Failure") || stderr.contains("rmdir"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Remote working directory"));
    assert!(home.join("full/f").exists());
}

#[test]
fn openssh_sftp_large_file_round_trip_sha256() {
    let t = TempDir::new("large");
    let (home, local) = (t.path().join("home"), t.path().join("local"));
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&local).unwrap();
    // 64 MiB plus an odd tail, so the last read and write are partial.
    write_pseudo_random(&local.join("big.bin"), 64 * 1024 * 1024 + 12345, 0x5eed);
    let server = helper_wrapper(t.path(), "022");
    sftp_ok(
        &server,
        &home,
        &local,
        "put big.bin big.bin\nget big.bin back.bin\n",
    );
    let want = sha256(&local.join("big.bin"));
    assert_eq!(sha256(&home.join("big.bin")), want, "uploaded copy");
    assert_eq!(sha256(&local.join("back.bin")), want, "downloaded copy");
}

/// Every file and directory under `root`, relative, with (is_dir, contents, mode, mtime).
fn tree(root: &Path) -> Vec<(String, bool, Vec<u8>, u32, i64)> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if m.is_dir() {
                stack.push(p.clone());
                v.push((rel, true, Vec::new(), m.mode() & 0o777, 0));
            } else {
                v.push((
                    rel,
                    false,
                    fs::read(&p).unwrap(),
                    m.mode() & 0o777,
                    m.mtime(),
                ));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn openssh_sftp_recursive_put_and_get_preserve_tree() {
    let t = TempDir::new("recursive");
    let (home, local) = (t.path().join("home"), t.path().join("local"));
    let src = local.join("tree");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::create_dir_all(&home).unwrap();
    fs::write(src.join("a.txt"), b"top\n").unwrap();
    write_pseudo_random(&src.join("sub/b.bin"), 700 * 1024 + 3, 7);
    fs::write(src.join("sub/deeper/c.txt"), b"deep\n").unwrap();
    fs::set_permissions(
        src.join("sub/deeper/c.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    for f in ["a.txt", "sub/b.bin", "sub/deeper/c.txt"] {
        let file = fs::File::options().write(true).open(src.join(f)).unwrap();
        file.set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
            .unwrap();
    }
    let server = helper_wrapper(t.path(), "022");
    sftp_ok(&server, &home, &local, "put -rp tree\nget -rp tree back\n");
    let want = tree(&src);
    let files = want.iter().filter(|e| !e.1).count();
    assert_eq!(files, 3);
    let strip_dir_modes = |v: Vec<(String, bool, Vec<u8>, u32, i64)>| -> Vec<_> {
        v.into_iter()
            .map(|(p, d, c, m, t)| (p, d, c, if d { 0 } else { m }, t))
            .collect()
    };
    assert_eq!(
        strip_dir_modes(tree(&home.join("tree"))),
        strip_dir_modes(want.clone()),
        "put -rp"
    );
    assert_eq!(
        strip_dir_modes(tree(&local.join("back"))),
        strip_dir_modes(want),
        "get -rp"
    );
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn hostile_client_gets_bad_message_then_a_clean_exit_on_an_oversized_length() {
    let mut child = Command::new(HELPER)
        .arg("sftp-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let mut input = framed(&[1, 0, 0, 0, 3]); // INIT v3
                                              // STAT id 9 whose path claims 4 GiB.
    input.extend(framed(&[17, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, b'/']));
    // A 4 GiB packet length: must be refused, not allocated.
    input.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "ends with status 1, no crash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exceeds the limit"), "{stderr}");
    // VERSION, then STATUS(id 9, SSH_FX_BAD_MESSAGE = 5).
    assert_eq!(stdout[4], 2, "VERSION first");
    let first = 4 + u32::from_be_bytes(stdout[..4].try_into().unwrap()) as usize;
    let status = &stdout[first..];
    assert_eq!(status[4], 101);
    assert_eq!(&status[5..9], &9u32.to_be_bytes());
    assert_eq!(&status[9..13], &5u32.to_be_bytes());
}

#[test]
fn dispatcher_version_and_usage() {
    let v = Command::new(HELPER).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout),
        format!("podspawn-helper {}\n", env!("CARGO_PKG_VERSION"))
    );
    let u = Command::new(HELPER).arg("frobnicate").output().unwrap();
    assert_eq!(u.status.code(), Some(2));
    let err = String::from_utf8_lossy(&u.stderr);
    assert!(
        err.contains("unknown subcommand \"frobnicate\"") && err.contains("usage:"),
        "{err}"
    );
    assert!(u.stdout.is_empty());
    let none = Command::new(HELPER).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
}
