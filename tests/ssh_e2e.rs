//! End to end through a real OpenSSH sshd on a loopback port, real host accounts, the real broker
//! and real Docker (a locally built image; no registry needed). Run as root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{random_file, run, sha256, Env, Opts};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn command_output_and_exit_code() {
    let mut env = Env::start();
    let u = env.add_user();
    let o = env.ssh(&u, "echo hello; echo oops >&2; exit 42");
    assert_eq!(
        o.status.code(),
        Some(42),
        "stderr: {}\nbroker: {}\nsshd: {}",
        stderr(&o),
        env.broker_log(),
        env.sshd_log()
    );
    // Nothing but the command's own output: no log lines, no banners.
    assert_eq!(stdout(&o), "hello\n");
    assert_eq!(stderr(&o), "oops\n");
    // The connection facts of a normal SSH session reach the container.
    let o = env.ssh(&u, r#"echo "$SSH_CONNECTION|$SSH_CLIENT""#);
    let out = stdout(&o);
    let (conn, client) = out.trim().split_once('|').unwrap();
    assert!(
        conn.starts_with("127.0.0.1 ") && conn.ends_with(&format!(" 127.0.0.1 {}", env.port)),
        "SSH_CONNECTION={conn:?}"
    );
    assert!(
        client.starts_with("127.0.0.1 ") && client.ends_with(&format!(" {}", env.port)),
        "SSH_CLIENT={client:?}"
    );
    // Runs as the host account's uid/gid, in its home, with quoting intact and no host shell involved.
    let o = env.ssh(&u, r#"id -u; id -g; pwd; printf '%s|' "a b" 'c"d' '$(x)'"#);
    let (uid, gid) = {
        let a = run(Command::new("id").arg("-u").arg(&u.name));
        let g = run(Command::new("id").arg("-g").arg(&u.name));
        (stdout(&a).trim().to_string(), stdout(&g).trim().to_string())
    };
    assert_eq!(
        stdout(&o),
        format!("{uid}\n{gid}\n/home/{}\na b|c\"d|$(x)|", u.name),
        "{}",
        stderr(&o)
    );
    // stdin reaches the command and EOF propagates.
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("wc -c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![b'x'; 300_000])
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o).trim(), "300000");
    // The container is labelled and limited as configured.
    let ids = env.containers_of(&u.name);
    assert_eq!(ids.len(), 1);
    let o = run(Command::new("docker").args(["inspect", "-f", "{{index .Config.Labels \"managed-by\"}} {{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Init}} {{.Name}}", &ids[0]]));
    assert_eq!(
        stdout(&o).trim(),
        format!(
            "podspawn 1000000000 536870912 256 [ALL] [no-new-privileges:true] true /podspawn-{}",
            u.name
        )
    );
}

#[test]
fn unknown_user_and_bad_key_files_get_no_keys() {
    let mut env = Env::start();
    let u = env.add_user();
    let ak = |user: &str| env.podspawn(&["auth-keys", user, "ssh-ed25519", "AAAA"]);
    // Unknown user: nothing, exit 0 (sshd falls through to its normal sources).
    let o = env.podspawn(&["auth-keys", "nosuchuserxyz"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "");
    // A registered user: one line with the forced command and restrictions.
    let o = env.podspawn(&["auth-keys", &u.name]);
    assert!(o.status.success());
    let line = stdout(&o);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!(
            "command=\"{} spawn --user {} --socket {}\",restrict,pty,agent-forwarding,port-forwarding ",
            env.bin.display(),
            u.name,
            env.socket.display()
        )),
        "{line}"
    );
    let blob = u.pubkey.split_whitespace().nth(1).unwrap();
    assert!(line.trim_end().ends_with(blob));
    // %t %k that do not match: nothing.
    assert_eq!(stdout(&ak(&u.name)), "");
    let o = env.podspawn(&["auth-keys", &u.name, "ssh-ed25519", blob]);
    assert_eq!(stdout(&o).lines().count(), 1);
    // Group-writable key file: no keys.
    let kf = env.root.join("keys").join(&u.name);
    let meta = std::fs::metadata(&kf).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o660)).unwrap();
    let o = env.podspawn(&["auth-keys", &u.name]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    std::fs::set_permissions(&kf, meta.permissions()).unwrap();
    assert_eq!(
        stdout(&env.podspawn(&["auth-keys", &u.name]))
            .lines()
            .count(),
        1
    );
    // Symlinked key file: no keys.
    let real = env.root.join("real-key");
    std::fs::rename(&kf, &real).unwrap();
    std::os::unix::fs::symlink(&real, &kf).unwrap();
    let o = env.podspawn(&["auth-keys", &u.name]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    // And so sshd refuses the login.
    let o = env.ssh(&u, "true");
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
}

#[test]
fn test_users_have_no_docker_access() {
    let mut env = Env::start();
    let u = env.add_user();
    let groups = stdout(&run(Command::new("id").arg("-nG").arg(&u.name)));
    assert!(
        !groups.split_whitespace().any(|g| g == "docker"),
        "{groups}"
    );
    assert!(
        groups.split_whitespace().any(|g| g == "podspawn-users"),
        "{groups}"
    );
    let o = run(Command::new("setpriv").args([
        "--reuid",
        &u.name,
        "--regid",
        &u.name,
        "--init-groups",
        "--",
        "sh",
        "-c",
        "exec 3<>/var/run/docker.sock",
    ]));
    assert!(!o.status.success(), "user can open the docker socket");
    // Yet a session works.
    let o = env.ssh(&u, "echo in-container");
    assert_eq!(stdout(&o), "in-container\n", "{}", stderr(&o));
    // The account is not locked and has a home, so sshd itself prints nothing.
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let field = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{}:", u.name)))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(field, "*");
    assert!(std::path::Path::new(&format!("/home/{}", u.name)).is_dir());
    // Another user's broker request is refused: the broker identifies callers by uid.
    let o = run(Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(&env.bin)
        .args(["spawn", "--user", &u.name, "--socket"])
        .arg(&env.socket)
        .env("SSH_ORIGINAL_COMMAND", "true")
        .stdin(Stdio::null()));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// Runs `ssh -tt` on a pty we own, so window changes reach it as they would from a terminal.
struct PtySsh {
    master: std::fs::File,
    child: std::process::Child,
    buf: String,
}

impl PtySsh {
    fn start(env: &Env, u: &common::User, rows: u16, cols: u16) -> PtySsh {
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let slave_fd = pty.slave.as_raw_fd();
        let mut c = env.ssh_cmd(u);
        c.arg("-tt").arg(format!("{}@127.0.0.1", u.name));
        let s1 = pty.slave.try_clone().unwrap();
        let s2 = pty.slave.try_clone().unwrap();
        let s3 = pty.slave.try_clone().unwrap();
        c.stdin(Stdio::from(s1))
            .stdout(Stdio::from(s2))
            .stderr(Stdio::from(s3));
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; they make the pty ssh's terminal.
        unsafe {
            c.pre_exec(move || {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        let _ = slave_fd;
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        PtySsh {
            master,
            child,
            buf: String::new(),
        }
    }

    fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }

    /// Reads until `needle` appears (after what was consumed before).
    fn expect(&mut self, needle: &str, secs: u64) -> String {
        let t = Instant::now();
        loop {
            if let Some(pos) = self.buf.find(needle) {
                let out = self.buf[..pos + needle.len()].to_string();
                self.buf = self.buf[pos + needle.len()..].to_string();
                return out;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {needle:?}; got {:?}",
                self.buf
            );
            use std::os::fd::AsFd;
            let mut pfd = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(200u16));
            if pfd[0].revents().is_some_and(|r| !r.is_empty()) {
                let mut b = [0u8; 4096];
                match self.master.read(&mut b) {
                    Ok(n) if n > 0 => self.buf.push_str(&String::from_utf8_lossy(&b[..n])),
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our own pty master with a valid winsize.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

#[test]
fn interactive_shell_with_pty_and_resize() {
    let mut env = Env::start();
    let u = env.add_user();
    let mut s = PtySsh::start(&env, &u, 30, 100);
    s.send("echo T$((40+2))T; tty; stty size; echo E$((1+1))E\n");
    let out = s.expect("E2E", 30);
    // Nothing before the shell: no motd, no "Last login", no chdir complaint, no podspawn log line.
    for noise in [
        "Last login",
        "Debian",
        "Could not chdir",
        "podspawn",
        "INFO",
        "WARN",
        "mail",
    ] {
        assert!(!out.contains(noise), "login printed {noise:?}: {out:?}");
    }
    assert!(out.contains("T42T"), "{out}");
    assert!(out.contains("/dev/pts/"), "no pty: {out}");
    assert!(out.contains("30 100"), "initial size not passed: {out}");
    s.resize(41, 123);
    let t = Instant::now();
    loop {
        s.send("stty size; echo R$((2+1))R\n");
        let out = s.expect("R3R", 20);
        if out.contains("41 123") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "resize never arrived: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // TERM is forwarded.
    s.send("echo \"term=$TERM\"; echo Q$((3+1))Q\n");
    let out = s.expect("Q4Q", 20);
    assert!(
        out.contains("term=xterm")
            || out.contains("term=vt")
            || out.contains("term=dumb")
            || out.contains("term=screen")
            || out.contains("term=linux"),
        "{out}"
    );
    s.send("exit 7\n");
    let t = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "ssh did not exit");
        let _ = s.expect("", 1);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(7));
    // `ssh -t host cmd` gets a pty too; `ssh -T` gets none.
    let mut c = env.ssh_cmd(&u);
    c.args(["-tt", &format!("{}@127.0.0.1", u.name), "tty"])
        .stdin(Stdio::null());
    let o = run(&mut c);
    assert!(stdout(&o).contains("/dev/pts/"), "{}", stdout(&o));
    let mut c = env.ssh_cmd(&u);
    c.args(["-T", &format!("{}@127.0.0.1", u.name), "tty"])
        .stdin(Stdio::null());
    let o = run(&mut c);
    assert!(stdout(&o).contains("not a tty"), "{}", stdout(&o));
}

#[test]
fn sftp_scp_and_rsync_transfers() {
    let mut env = Env::start();
    let u = env.add_user();
    let dir = env.root.join("xfer");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("big.bin");
    random_file(&src, 20);
    let want = sha256(&src);
    let opts = env.ssh_opts(&u);
    let target = format!("{}@127.0.0.1", u.name);

    // sftp put + get of 20 MiB.
    let batch = dir.join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} up.bin\nget up.bin {}\n",
            src.display(),
            dir.join("sftp-back.bin").display()
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
        "sftp: {} {}",
        stderr(&o),
        env.broker_log()
    );
    assert_eq!(sha256(&dir.join("sftp-back.bin")), want);
    let o = env.ssh(&u, "sha256sum up.bin");
    assert!(stdout(&o).starts_with(&want), "{}", stdout(&o));

    // scp both ways, with the SFTP protocol (default) and the legacy protocol (-O).
    for (flag, name) in [(None, "scp-sftp"), (Some("-O"), "scp-legacy")] {
        let mut c = Command::new("scp");
        c.args(&opts).arg("-P").arg(env.port.to_string());
        if let Some(f) = flag {
            c.arg(f);
        }
        c.arg(&src).arg(format!("{target}:{name}.bin"));
        let o = run(&mut c);
        assert!(o.status.success(), "scp up {name}: {}", stderr(&o));
        let back = dir.join(format!("{name}-back.bin"));
        let mut c = Command::new("scp");
        c.args(&opts).arg("-P").arg(env.port.to_string());
        if let Some(f) = flag {
            c.arg(f);
        }
        c.arg(format!("{target}:{name}.bin")).arg(&back);
        let o = run(&mut c);
        assert!(o.status.success(), "scp down {name}: {}", stderr(&o));
        assert_eq!(sha256(&back), want, "{name}");
    }

    // rsync both ways.
    let rsh = format!("ssh -p {} {}", env.port, opts.join(" "));
    let o = run(Command::new("rsync")
        .arg("-a")
        .arg("-e")
        .arg(&rsh)
        .arg(&src)
        .arg(format!("{target}:rs.bin")));
    assert!(o.status.success(), "rsync up: {}", stderr(&o));
    let back = dir.join("rsync-back.bin");
    let o = run(Command::new("rsync")
        .arg("-a")
        .arg("-e")
        .arg(&rsh)
        .arg(format!("{target}:rs.bin"))
        .arg(&back));
    assert!(o.status.success(), "rsync down: {}", stderr(&o));
    assert_eq!(sha256(&back), want);
    // Streaming through `cat` in both directions at once (no deadlock on full buffers).
    let mut c = env.ssh_cmd(&u);
    c.arg(&target)
        .arg("cat")
        .stdin(Stdio::from(std::fs::File::open(&src).unwrap()))
        .stdout(Stdio::piped());
    let o = c.output().unwrap();
    assert_eq!(o.stdout.len(), 20 * 1024 * 1024);
    let back = dir.join("cat-back.bin");
    std::fs::write(&back, &o.stdout).unwrap();
    assert_eq!(sha256(&back), want);
}

#[test]
fn grace_period_reattaches_to_the_same_container() {
    let mut env = Env::with(Opts {
        grace: "60s",
        ..Default::default()
    });
    let u = env.add_user();
    let o = env.ssh(
        &u,
        "echo marker > /tmp/m; cat /proc/1/cgroup >/dev/null; hostname",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first = env.containers_of(&u.name);
    assert_eq!(first.len(), 1);
    env.wait_for("grace period to start", 20, || {
        Env::session_of(&env.sessions(), &u.name)
            .is_some_and(|s| s["status"] == "grace_period" && s["connections"] == 0)
    });
    let o = env.ssh(&u, "cat /tmp/m");
    assert_eq!(stdout(&o), "marker\n", "{}", stderr(&o));
    assert_eq!(env.containers_of(&u.name), first);
}

#[test]
fn grace_expiry_removes_and_destroy_on_disconnect() {
    let mut env = Env::with(Opts {
        grace: "2s",
        ..Default::default()
    });
    let u = env.add_user();
    assert!(env.ssh(&u, "true").status.success());
    assert_eq!(env.containers_of(&u.name).len(), 1);
    assert_eq!(
        env.networks_of(&u.name).len(),
        1,
        "one isolated network per session"
    );
    env.wait_for(
        "grace expiry to remove the container, its network and its row",
        30,
        || {
            env.containers_of(&u.name).is_empty()
                && env.networks_of(&u.name).is_empty()
                && Env::session_of(&env.sessions(), &u.name).is_none()
        },
    );

    let mut env2 = Env::with(Opts {
        mode: "destroy-on-disconnect",
        ..Default::default()
    });
    let v = env2.add_user();
    let o = env2.ssh(&v, "echo x");
    assert_eq!(stdout(&o), "x\n");
    env2.wait_for("destroy-on-disconnect to remove the container", 20, || {
        env2.containers_of(&v.name).is_empty()
    });
}

#[test]
fn users_are_isolated_from_each_other() {
    let mut env = Env::start();
    let a = env.add_user();
    let b = env.add_user();
    assert!(env
        .ssh(
            &a,
            "echo secret > /tmp/a-secret; sleep 30 >/dev/null 2>&1 & echo started"
        )
        .status
        .success());
    let o = env.ssh(&b, "ls /tmp; ps -e -o args");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("a-secret"), "{out}");
    assert!(!out.contains("sleep 30"), "{out}");
    let (ca, cb) = (env.containers_of(&a.name), env.containers_of(&b.name));
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert_ne!(ca, cb);
}

#[test]
fn concurrent_logins_share_one_container() {
    let mut env = Env::start();
    let u = env.add_user();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let mut c = env.ssh_cmd(&u);
            c.arg(format!("{}@127.0.0.1", u.name))
                .arg(format!("echo ok{i}"))
                .stdin(Stdio::null());
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(
            stdout(o),
            format!("ok{i}\n"),
            "login {i} failed: {}\n{}",
            stderr(o),
            env.broker_log()
        );
    }
    assert_eq!(env.containers_of(&u.name).len(), 1);
}

#[test]
fn max_per_user_names_the_limit() {
    let mut env = Env::with(Opts {
        max_per_user: 1,
        ..Default::default()
    });
    let u = env.add_user();
    assert!(env.ssh(&u, "true").status.success());
    let mut c = env.ssh_cmd(&u);
    c.args([
        "-o",
        "SetEnv=PODSPAWN_PROJECT=web.pod",
        &format!("{}@127.0.0.1", u.name),
        "true",
    ])
    .stdin(Stdio::null());
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("max 1") && e.contains(&format!("podspawn stop {}", u.name)),
        "{e}"
    );
    // A project name that is not on the allow-list is refused before it reaches Docker.
    let mut c = env.ssh_cmd(&u);
    c.args([
        "-o",
        "SetEnv=PODSPAWN_PROJECT=%n",
        &format!("{}@127.0.0.1", u.name),
        "true",
    ])
    .stdin(Stdio::null());
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid project name"),
        "{}",
        stderr(&o)
    );
}

/// The command lines of the processes in a container (fails the test if Docker cannot tell).
fn container_procs(id: &str) -> String {
    let o = run(Command::new("docker").args(["top", id, "-o", "pid,args"]));
    assert!(o.status.success(), "docker top: {}", stderr(&o));
    stdout(&o)
}

fn spawn_pid_of(user: &str) -> Option<String> {
    // The process itself (named podspawn), not the `sh -c` that sshd may wrap it in.
    let o = run(Command::new("pgrep").args(["-u", user, "-x", "podspawn"]));
    stdout(&o).lines().next().map(str::to_string)
}

#[test]
fn kill_9_of_spawn_ends_the_session_and_starts_grace() {
    let mut env = Env::start();
    let u = env.add_user();
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("echo started; exec sleep 300")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    let pid = spawn_pid_of(&u.name).expect("spawn process");
    assert!(run(Command::new("kill").args(["-9", &pid]))
        .status
        .success());
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "ssh still connected after kill -9 of spawn"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    env.wait_for("grace period after kill -9", 20, || {
        Env::session_of(&env.sessions(), &u.name)
            .is_some_and(|s| s["status"] == "grace_period" && s["connections"] == 0)
    });
    // The command in the container ended with the connection.
    let id = env.containers_of(&u.name).pop().unwrap();
    assert!(container_procs(&id).contains("sleep infinity"));
    env.wait_for("the exec'd process to end", 20, || {
        !container_procs(&id).contains("sleep 300")
    });
}

#[test]
fn client_disconnect_ends_the_command_in_the_container() {
    let mut env = Env::start();
    let u = env.add_user();
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("echo started; sleep 301")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id = env.containers_of(&u.name).pop().unwrap();
    env.wait_for("the command to start", 20, || {
        container_procs(&id).contains("sleep 301")
    });
    child.kill().unwrap();
    let _ = child.wait();
    env.wait_for("the command to end after the client vanished", 30, || {
        !container_procs(&id).contains("sleep 301")
    });
}

#[test]
fn broker_restart_keeps_a_live_session() {
    let mut env = Env::start();
    let u = env.add_user();
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("cat; exit 3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    input.write_all(b"before\n").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "before\n");
    env.stop_broker(false);
    input.write_all(b"during\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "during\n");
    env.start_broker();
    // spawn resumes its lease with the new broker.
    env.wait_for("the lease to be resumed", 20, || {
        Env::session_of(&env.sessions(), &u.name)
            .is_some_and(|s| s["connections"] == 1 && s["status"] == "running")
    });
    input.write_all(b"after\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "after\n");
    drop(input);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(3), "exit code after a broker restart");
    // A hard kill of the broker is survived too.
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    input.write_all(b"y\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "y\n");
    env.stop_broker(true);
    input.write_all(b"x\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "x\n");
    env.start_broker();
    drop(input);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let env_dir = common::TempDir::under(&std::env::temp_dir(), "podspawn-cfg");
    let f = env_dir.join("bad.yaml");
    std::fs::write(&f, "defaults:\n  image: x\nsession:\n  grace_period: 60\n").unwrap();
    let o = run(Command::new(common::bin())
        .args(["config", "validate"])
        .arg(&f));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&f.display().to_string())
            && e.contains("line 4")
            && e.contains("session.grace_period"),
        "{e}"
    );
    std::fs::write(&f, "session:\n  grace: 60s\n").unwrap();
    let o = run(Command::new(common::bin())
        .args(["config", "validate"])
        .arg(&f));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("line 2") && e.contains("grace"), "{e}");
    std::fs::write(&f, "session:\n  grace_period: 30s\n").unwrap();
    let o = run(Command::new(common::bin())
        .args(["config", "validate"])
        .arg(&f));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_session_stream_does_not_reach_the_docker_api() {
    // The stream spawn is handed is the upgraded engine connection: after the upgrade every byte is
    // the process's stdin. An HTTP request written into it must come back from `cat`, not be served.
    let mut env = Env::start();
    let u = env.add_user();
    let req = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\nPOST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\r\n{}";
    let mut c = env.ssh_cmd(&u);
    c.arg(format!("{}@127.0.0.1", u.name))
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(req).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, req.to_vec());
    assert_eq!(
        env.containers_of(&u.name).len(),
        1,
        "a request in the stream created a container"
    );
}
