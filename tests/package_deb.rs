//! The .deb built by `make packages`: lintian, its file list and modes, and a real install on a
//! fresh Debian (debootstrap) container followed by an SSH login into a podspawn container, a
//! reinstall that changes nothing, removal, purge, and the maintainer scripts' fallbacks (no
//! systemd tools; an sshd that rejects the drop-in).
//!
//! The test container talks to the host's Docker engine through its socket, so the user's
//! container (podspawn-<user>) is a sibling on the host, made from the host's image
//! podspawn-test:latest (tests/support/build-test-image.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod common;
#[path = "support/debian_container.rs"]
mod debian_container;
#[path = "support/packages.rs"]
mod packages;

use debian_container::{
    assert_forwarding_agrees, assert_pam_enabled, assert_pam_gone, has_forwarding_flag, modes,
    pam_module_path, ssh, wait_until, TestContainer, FORWARDING_DROPIN,
};
use packages::{artifact, check, need, out, stdout, tempdir};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const AKC: &str = "authorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k";
const DROPIN: &str = "/etc/ssh/sshd_config.d/10-podspawn.conf";

#[test]
fn lintian_reports_no_errors() {
    need("lintian", "lintian");
    let deb = artifact("deb");
    let o = common::run(
        Command::new("lintian")
            .args(["--display-level", ">=info", "--no-tag-display-limit"])
            .arg(&deb),
    );
    let text = stdout(&o);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        errors.is_empty(),
        "lintian errors on {}:\n{}\n{}",
        deb.display(),
        errors.join("\n"),
        out(&o)
    );
    // lintian exits non-zero on errors (--fail-on error) and on its own failures.
    assert!(o.status.success(), "lintian failed\n{}", out(&o));
    // The overrides are in the package and all of them are used.
    assert!(
        !text.contains("unused-override") && !text.contains("mismatched-override"),
        "stale lintian overrides (debian/podspawn.lintian-overrides):\n{text}"
    );
    eprintln!("lintian (warnings and notes):\n{text}");
}

/// `dpkg-deb -c` lines: path → (mode string, owner/group).
fn deb_listing(deb: &Path) -> BTreeMap<String, (String, String)> {
    let o = check(Command::new("dpkg-deb").arg("-c").arg(deb));
    stdout(&o)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // perms owner size date time path [-> target]
            (f.len() >= 6).then(|| {
                let path = f[5]
                    .trim_start_matches('.')
                    .trim_end_matches('/')
                    .to_string();
                (path, (f[0].to_string(), f[1].to_string()))
            })
        })
        .collect()
}

fn mode_string(mode: u32) -> String {
    let mut s = String::from("-");
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[test]
fn deb_contents_modes_and_control() {
    let deb = artifact("deb");
    let files = deb_listing(&deb);
    let module = pam_module_path();
    let mut wanted: Vec<(&str, u32)> = packages::COMMON_FILES.to_vec();
    wanted.extend([
        // The PAM session module in the multiarch PAM directory, and its pam-auth-update profile.
        (module.as_str(), 0o644),
        ("/usr/share/pam-configs/podspawn", 0o644),
        ("/usr/share/zsh/vendor-completions/_podspawn", 0o644),
        ("/usr/share/doc/podspawn/copyright", 0o644),
        ("/usr/share/doc/podspawn/changelog.Debian.gz", 0o644),
        ("/usr/share/doc/podspawn/README.Debian", 0o644),
        ("/usr/share/lintian/overrides/podspawn", 0o644),
    ]);
    for (path, mode) in wanted {
        let (perms, owner) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in {}: {files:#?}", deb.display()));
        assert_eq!(perms, &mode_string(mode), "mode of {path}");
        // dpkg cannot give a file to a group that does not exist yet: postinst sets
        // root:podspawn on config.yaml.
        assert_eq!(owner, "root/root", "owner of {path}");
    }
    // Every man page is gzipped; nothing is group/world-writable or setuid.
    for (path, (perms, _)) in &files {
        if path.starts_with("/usr/share/man/") && perms.starts_with('-') {
            assert!(path.ends_with(".1.gz"), "{path} is not a gzipped man page");
        }
        assert!(
            !perms[4..].contains('w') && !perms.contains('s'),
            "{path} has mode {perms}"
        );
    }
    let man_pages = files
        .keys()
        .filter(|p| p.starts_with("/usr/share/man/man1/podspawn"))
        .count();
    assert!(man_pages >= 10, "only {man_pages} man pages");

    // Control: conffiles, dependencies, scripts.
    let tmp = tempdir("debctl");
    check(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&tmp));
    let conffiles = std::fs::read_to_string(tmp.join("conffiles")).unwrap();
    let mut c: Vec<&str> = conffiles.lines().collect();
    c.sort();
    assert_eq!(c, packages::CONFIG_FILES, "conffiles");
    let control = std::fs::read_to_string(tmp.join("control")).unwrap();
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in control:\n{control}"))
            .to_string()
    };
    let depends = field("Depends");
    for d in [
        "libc6 (>= ",
        "openssh-server (>= 1:8.2)",
        "passwd",
        "libpam0g",
        "libpam-runtime",
    ] {
        assert!(depends.contains(d), "Depends lacks {d}: {depends}");
    }
    assert_eq!(field("Recommends"), "docker.io | docker-ce | docker-engine");
    assert_eq!(field("Package"), "podspawn");
    assert!(
        field("Version").starts_with(&format!("{}-", env!("CARGO_PKG_VERSION"))),
        "Version {} is not this crate's: run `make packages`",
        field("Version")
    );
    for s in ["postinst", "prerm", "postrm"] {
        let p = tmp.join(s);
        let meta = std::fs::metadata(&p).unwrap_or_else(|_| panic!("no {s}"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "mode of {s}");
        let o = common::run(Command::new("sh").arg("-n").arg(&p));
        assert!(o.status.success(), "{s}: {}", out(&o));
    }
    let postinst = std::fs::read_to_string(tmp.join("postinst")).unwrap();
    for needle in [
        "systemd-sysusers podspawn.conf",
        "systemd-tmpfiles --create podspawn.conf",
        "deb-systemd-helper enable",
        "deb-systemd-invoke try-restart podspawn.service",
        "10-podspawn.conf.disabled",
        "podspawn server-setup --users",
        "pam-auth-update --package",
        "podspawn server-setup --forwarding",
    ] {
        assert!(postinst.contains(needle), "postinst lacks {needle}");
    }
    // pam-auth-update, then server-setup --forwarding, before the sshd check and reload.
    let at = |needle: &str| {
        postinst
            .rfind(needle)
            .unwrap_or_else(|| panic!("postinst lacks {needle}"))
    };
    assert!(
        at("\tsetup_pam\n") < at("\tsetup_forwarding\n")
            && at("\tsetup_forwarding\n") < at("\tconfigure_sshd\n"),
        "postinst's order: setup_pam, setup_forwarding, configure_sshd"
    );
    let prerm = std::fs::read_to_string(tmp.join("prerm")).unwrap();
    assert!(
        prerm.contains("pam-auth-update --package --remove podspawn")
            && prerm.contains(FORWARDING_DROPIN),
        "prerm must take pam_podspawn.so out of common-session and remove {FORWARDING_DROPIN}"
    );
    let postrm = std::fs::read_to_string(tmp.join("postrm")).unwrap();
    assert!(
        postrm.contains("pam-auth-update --package --remove podspawn"),
        "postrm lacks the pam-auth-update --remove safety net"
    );

    // The payload matches the source tree (else the package is stale).
    let root = tempdir("debroot");
    check(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    packages::assert_matches_source(&root, "/usr/bin/podspawn");
    for m in ["podspawn.1.gz", "podspawn-serve.1.gz"] {
        let bytes = std::fs::read(root.join("usr/share/man/man1").join(m)).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{m} is not gzip");
    }
    // The profile and the module are the source tree's and this build's.
    assert_eq!(
        std::fs::read(root.join("usr/share/pam-configs/podspawn")).unwrap(),
        std::fs::read(packages::manifest_dir().join("debian/pam-config")).unwrap(),
        "the pam-auth-update profile is not debian/pam-config: run `make packages`"
    );
    let profile = std::fs::read_to_string(root.join("usr/share/pam-configs/podspawn")).unwrap();
    for field in [
        "Default: yes",
        "Session-Type: Additional",
        "Session-Interactive-Only: yes",
    ] {
        assert!(
            profile.lines().any(|l| l == field),
            "the profile lacks {field}:\n{profile}"
        );
    }
    assert!(
        profile
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["required", "pam_podspawn.so"]),
        "the profile's Session: line is not `required pam_podspawn.so`:\n{profile}"
    );
    let so = root.join(module.trim_start_matches('/'));
    let symbols = stdout(&check(
        Command::new("nm").args(["-D", "--defined-only"]).arg(&so),
    ));
    for sym in ["pam_sm_open_session", "pam_sm_close_session"] {
        assert!(
            symbols.split_whitespace().any(|w| w == sym),
            "{} does not export {sym}",
            so.display()
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&root);
}

/// What a failed assertion shows of the container.
const LOGS: &str = "echo '--- sshd.log'; tail -n 40 /var/log/sshd.log 2>&1; \
     echo '--- broker.log'; tail -n 40 /var/log/broker.log 2>&1";

/// Owner, mode, type and content hash of everything the package touches (state.db aside,
/// which the broker writes), and the system identities.
fn snapshot(c: &TestContainer) -> String {
    c.ok(
        r#"find /etc/podspawn /etc/ssh /etc/pam.d /usr/share/pam-configs /usr/lib/*/security/pam_podspawn.so \
              /usr/lib/systemd/system /etc/systemd/system \
              /usr/lib/sysusers.d /usr/lib/tmpfiles.d /var/lib/podspawn /usr/share/doc/podspawn \
              /usr/bin/podspawn -xdev \( -path '/var/lib/podspawn/state.db*' -prune -o -print \) \
           | LC_ALL=C sort | while read -r p; do
             if [ -L "$p" ]; then t="-> $(readlink "$p")"
             elif [ -f "$p" ]; then t=$(sha256sum < "$p" | cut -c1-16)
             else t=; fi
             echo "$(stat -c '%F %a %U:%G' "$p") $p $t"
           done
           getent passwd podspawn; getent group podspawn podspawn-users"#,
    )
}

fn assert_setup(c: &TestContainer) {
    let ids = c.ok("getent passwd podspawn; getent group podspawn; getent group podspawn-users");
    let lines: Vec<&str> = ids.lines().collect();
    assert_eq!(lines.len(), 3, "system identities: {ids}");
    let pw: Vec<&str> = lines[0].split(':').collect();
    assert_eq!(pw[5], "/nonexistent", "{ids}");
    assert_eq!(pw[6], "/usr/sbin/nologin", "{ids}");
    assert!(
        pw[2].parse::<u32>().unwrap() < 1000,
        "not a system user: {ids}"
    );
    let m = modes(
        c,
        &[
            "/etc/podspawn",
            "/etc/podspawn/keys",
            "/etc/podspawn/users",
            "/etc/podspawn/config.yaml",
            "/var/lib/podspawn",
            "/var/lib/podspawn/locks",
            "/var/lib/podspawn/homes",
            "/var/log/podspawn",
            "/run/podspawn",
            "/usr/bin/podspawn",
        ],
    );
    let want = [
        ("/etc/podspawn", "755 root:root"),
        ("/etc/podspawn/keys", "750 root:podspawn"),
        ("/etc/podspawn/users", "755 root:root"),
        ("/etc/podspawn/config.yaml", "640 root:podspawn"),
        ("/var/lib/podspawn", "700 root:root"),
        ("/var/lib/podspawn/locks", "700 root:root"),
        ("/var/lib/podspawn/homes", "711 root:root"),
        ("/var/log/podspawn", "750 root:root"),
        ("/run/podspawn", "755 root:root"),
        ("/usr/bin/podspawn", "755 root:root"),
    ];
    for (p, w) in want {
        assert_eq!(m.get(p).map(String::as_str), Some(w), "{p}: {m:#?}");
    }
}

/// `sshd -t` (with sshd's privilege separation directory, which ssh.service would create).
fn assert_sshd_valid(c: &TestContainer, when: &str) {
    let o = c.sh("mkdir -p /run/sshd && /usr/sbin/sshd -t");
    assert!(o.status.success(), "sshd -t {when}\n{}", out(&o));
}

#[test]
fn deb_installs_on_fresh_debian_and_ssh_login_works() {
    need("docker", "docker.io");
    need("ssh", "openssh-client");
    let deb = artifact("deb");
    let deb_name = deb.file_name().unwrap().to_str().unwrap().to_string();
    let image = packages::debian_image();
    common::ensure_image();

    let id = packages::rand_hex(8);
    let user = format!("pst{id}");
    let c = TestContainer {
        name: format!("podspawn-debtest-{id}"),
        users: vec![user.clone()],
        logs_script: LOGS,
    };
    check(
        Command::new("docker")
            .args(["run", "-d", "--name", &c.name, "--hostname", "debtest"])
            .args(["--label", "podspawn-test=1"])
            // pam_podspawn.so joins the network namespace of the user's container, a sibling on
            // the host's engine: the broker opens it as /proc/<host pid>/ns/net (the host's pid
            // namespace) and sshd's setns needs CAP_SYS_ADMIN. With the host's pids visible,
            // nothing here may signal processes by name: the broker is stopped by its pid file.
            .args(["--pid", "host", "--cap-add", "SYS_ADMIN"])
            .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
            .arg("-v")
            .arg(format!("{}:/pkg:ro", deb.parent().unwrap().display()))
            .args(["-p", "127.0.0.1::22"])
            .arg(&image)
            .args(["sleep", "infinity"])
            .stdout(Stdio::null()),
    );
    let port = c.ssh_port();

    // --- First install.
    let o = c.sh(&format!("dpkg -i /pkg/{deb_name}"));
    assert!(o.status.success(), "dpkg -i\n{}", out(&o));
    let install_log = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(
        !install_log.contains("*****"),
        "postinst complained on a clean install:\n{install_log}"
    );
    assert!(
        c.sh("dpkg-query -W -f '${Status}' podspawn")
            .stdout
            .starts_with(b"install ok installed"),
        "not configured"
    );
    assert_setup(&c);
    assert_sshd_valid(&c, "after the install");
    // pam_podspawn.so: in place and in common-session; su (a non-member's session) works.
    assert_pam_enabled(&c);
    // Why prerm takes the line out before dpkg removes the file: a `required` module that
    // cannot be loaded fails every session of every service including common-session.
    let module = pam_module_path();
    c.ok(&format!(
        "mv {module} {module}.hidden && ! su -s /bin/sh nobody -c true 2>/dev/null; \
         r=$?; mv {module}.hidden {module}; exit $r"
    ));
    c.ok("su -s /bin/sh nobody -c true");
    // Enabled the debhelper way (the symlinks exist even without systemd as PID 1).
    c.ok(
        "test -L /etc/systemd/system/sockets.target.wants/podspawn.socket && \
          test -L /etc/systemd/system/multi-user.target.wants/podspawn-cleanup.service && \
          ! test -e /etc/systemd/system/timers.target.wants/podspawn-cleanup.timer",
    );
    assert_eq!(
        c.ok(&format!("stat -c '%a %U:%G' {DROPIN}")).trim(),
        "644 root:root"
    );

    // --- The admin points the image at the host's test image (a conffile edit).
    c.ok(&format!(
        "sed -i 's|^  image: .*|  image: {}|' /etc/podspawn/config.yaml && \
         grep -q '^  image: {0}$' /etc/podspawn/config.yaml && podspawn config validate",
        common::IMAGE
    ));

    // --- sshd and the broker, started the way the units would (no systemd as PID 1 here).
    c.ok("mkdir -p /run/sshd && /usr/sbin/sshd -E /var/log/sshd.log");
    let o = common::run(Command::new("docker").args([
        "exec",
        "-d",
        &c.name,
        "sh",
        "-c",
        "echo $$ >/run/test-broker.pid; \
         exec podspawn serve --listen /run/podspawn/podspawn.sock >>/var/log/broker.log 2>&1",
    ]));
    assert!(o.status.success(), "starting the broker\n{}", out(&o));
    wait_until("the broker socket", 30, || {
        c.sh("test -S /run/podspawn/podspawn.sock").status.success()
    });
    assert_eq!(
        c.ok("stat -c '%a %U:%G' /run/podspawn/podspawn.sock")
            .trim(),
        "660 root:podspawn-users"
    );

    // --- One add-user with a key made on the host.
    let keydir = tempdir("debkey");
    let (key, pubkey) = debian_container::keygen(&keydir, "debtest");
    c.ok(&format!("podspawn add-user {user} --key '{pubkey}'"));
    assert_eq!(
        c.ok(&format!("stat -c '%a %U:%G' /etc/podspawn/keys/{user}"))
            .trim(),
        "640 root:podspawn"
    );
    let effective = c.ok(&format!(
        "/usr/sbin/sshd -T -C user={user},host=x,addr=127.0.0.1"
    ));
    for want in [
        AKC,
        "authorizedkeyscommanduser podspawn",
        "authorizedkeysfile none",
    ] {
        assert!(
            effective.lines().any(|l| l == want),
            "sshd -T for {user} lacks {want:?}:\n{effective}"
        );
    }
    let uid = c.ok(&format!("id -u {user}")).trim().to_string();
    // Forwarding: what sshd gives the member agrees with the forwarding drop-in; with
    // `server-setup --forwarding` (security.port_forwarding: auto, UsePAM yes, the module in
    // common-session) it is on.
    let forwarding = assert_forwarding_agrees(&c, &user);
    if has_forwarding_flag(&c) {
        assert!(
            forwarding,
            "auto with UsePAM yes and pam_podspawn.so in common-session, but no {FORWARDING_DROPIN}\n{install_log}"
        );
    }

    // --- ssh from the host into the published port lands in the user's container.
    let mut login = ssh(&key, port, &user, "echo hi; id -u");
    for _ in 0..50 {
        // sshd may still be starting (docker-proxy accepts before sshd listens).
        if login.status.success() || !String::from_utf8_lossy(&login.stderr).contains("closed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        login = ssh(&key, port, &user, "echo hi; id -u");
    }
    assert!(
        login.status.success(),
        "ssh {user}@127.0.0.1:{port}\n{}\n{}",
        out(&login),
        c.logs()
    );
    assert_eq!(stdout(&login), format!("hi\n{uid}\n"), "{}", c.logs());
    let names = check(
        Command::new("docker")
            .args(["ps", "--format", "{{.Names}} {{.Image}}", "--filter"])
            .arg(format!("label=podspawn-user={user}")),
    );
    // The session's container, and the holder of the user's network namespace that
    // pam_podspawn.so joined (podspawn-<user>.netns).
    let mut running: Vec<String> = stdout(&names).lines().map(str::to_string).collect();
    running.sort();
    assert_eq!(
        running,
        [
            format!("podspawn-{user} {}", common::IMAGE),
            format!("podspawn-{user}.netns {}", common::IMAGE)
        ],
        "the user's containers on the host"
    );
    assert_eq!(
        c.ok("stat -c '%a %U:%G' /var/lib/podspawn/state.db").trim(),
        "600 root:root"
    );

    // --- Reinstalling changes nothing.
    let before = snapshot(&c);
    let o = c.sh(&format!("dpkg -i /pkg/{deb_name}"));
    assert!(o.status.success(), "dpkg -i (reinstall)\n{}", out(&o));
    let after = snapshot(&c);
    if before != after {
        let b: Vec<&str> = before.lines().collect();
        let a: Vec<&str> = after.lines().collect();
        let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
        let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
        panic!("the reinstall changed files:\n  before: {gone:#?}\n  after: {new:#?}");
    }
    let again = ssh(&key, port, &user, "echo again");
    assert!(
        again.status.success() && stdout(&again) == "again\n",
        "login after the reinstall\n{}\n{}",
        out(&again),
        c.logs()
    );

    // --- Upgrade to a newer version (the same payload repacked as <version>-99) under a live
    // session: the session goes on, the edited conffile is kept, wrong modes are repaired.
    let up_dir = tempdir("debupgrade");
    let new_version = format!("{}-99", env!("CARGO_PKG_VERSION"));
    let up_deb = debian_container::repack_deb(&deb, &new_version, &up_dir);
    c.copy_in(&up_deb, "/tmp/podspawn-upgrade.deb");
    let mut live = Command::new("ssh");
    live.args(common::SSH_OPTIONS)
        .arg("-i")
        .arg(&key)
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("{user}@127.0.0.1"))
        .arg("echo started; sleep 4; echo survived")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut session = live.spawn().unwrap();
    let mut session_out = std::io::BufReader::new(session.stdout.take().unwrap());
    let mut first = String::new();
    session_out.read_line(&mut first).unwrap();
    assert_eq!(
        first,
        "started\n",
        "the live session did not start\n{}",
        c.logs()
    );
    // After the login (auth-keys refuses such a key file): postinst must repair it.
    c.ok(&format!(
        "chmod 0755 /etc/podspawn/keys && chown root:root /etc/podspawn/keys/{user} && \
         chmod 0666 /etc/podspawn/keys/{user}"
    ));
    let o = c.sh("dpkg -i /tmp/podspawn-upgrade.deb");
    assert!(o.status.success(), "dpkg -i (upgrade)\n{}", out(&o));
    // postinst checked sshd's effective settings for the existing member: no complaint.
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("*****"),
        "postinst complained on the upgrade\n{}",
        out(&o)
    );
    let mut rest = String::new();
    session_out.read_to_string(&mut rest).unwrap();
    let session = session.wait_with_output().unwrap();
    assert!(
        session.status.success() && rest == "survived\n",
        "the live session across the upgrade: stdout after \"started\": {rest:?}\n{}\n{}",
        out(&session),
        c.logs()
    );
    assert_eq!(c.ok("dpkg-query -W -f '${Version}' podspawn"), new_version);
    c.ok(&format!(
        "grep -q '^  image: {}$' /etc/podspawn/config.yaml && \
         ! test -e /etc/podspawn/config.yaml.dpkg-dist",
        common::IMAGE
    ));
    let m = modes(
        &c,
        &[
            "/etc/podspawn/keys",
            &format!("/etc/podspawn/keys/{user}"),
            "/etc/podspawn/config.yaml",
        ],
    );
    assert_eq!(m["/etc/podspawn/keys"], "750 root:podspawn");
    assert_eq!(
        m[&format!("/etc/podspawn/keys/{user}")],
        "640 root:podspawn"
    );
    assert_eq!(m["/etc/podspawn/config.yaml"], "640 root:podspawn");
    assert_pam_enabled(&c);
    assert_forwarding_agrees(&c, &user);
    let _ = std::fs::remove_dir_all(&up_dir);

    // --- Remove: the drop-in stays (conffile) and locks podspawn users out; sshd stays valid.
    // Under systemd, prerm stops podspawn.service; this container has no systemd, so stop the
    // hand-started broker here (a broker left running could recreate its lock directory after
    // the purge below).
    c.ok("p=$(cat /run/test-broker.pid) && kill \"$p\"; \
          for i in $(seq 50); do kill -0 \"$p\" 2>/dev/null || exit 0; sleep 0.1; done; exit 1");
    // With a forwarding drop-in (server-setup's, or a stand-in where it has no --forwarding),
    // the member gets TCP forwarding; prerm must take it away with the module's line.
    debian_container::ensure_forwarding_dropin(&c);
    assert!(assert_forwarding_agrees(&c, &user));
    let o = c.sh("dpkg -r podspawn");
    assert!(o.status.success(), "dpkg -r\n{}", out(&o));
    c.ok(&format!("test -f {DROPIN} && ! test -e /usr/bin/podspawn"));
    assert_sshd_valid(&c, "after dpkg -r");
    // The module's line left common-session before the file went; sessions still work.
    assert_pam_gone(&c);
    assert_forwarding_agrees(&c, &user);
    // sshd re-executes itself on SIGHUP (same pid) and writes its pid file again once it has read
    // the configuration and bound its listeners: wait for that, not for a fixed time.
    c.ok("p=$(cat /run/sshd.pid) && rm /run/sshd.pid && kill -HUP \"$p\"");
    wait_until("sshd to reload (its pid file written again)", 30, || {
        c.sh("test -s /run/sshd.pid").status.success()
    });
    let denied = ssh(&key, port, &user, "echo should-not-run");
    assert!(
        !denied.status.success() && !stdout(&denied).contains("should-not-run"),
        "a podspawn user logged in without podspawn\n{}",
        out(&denied)
    );

    // --- Purge: configuration, keys, state and the drop-in are gone; sshd is valid.
    let o = c.sh("dpkg --purge podspawn");
    assert!(o.status.success(), "dpkg --purge\n{}", out(&o));
    c.ok(&format!(
        "! test -e /etc/podspawn && ! test -e /var/lib/podspawn && ! test -e /var/log/podspawn && \
         ! test -e {DROPIN} && ! ls /etc/systemd/system/*.wants/podspawn* 2>/dev/null"
    ));
    assert_sshd_valid(&c, "after the purge");
    // Debian keeps system users on purge (README.Debian).
    c.ok("getent passwd podspawn >/dev/null");

    // --- The fallbacks: no systemd-sysusers/-tmpfiles, no identities, and an sshd that rejects
    // the drop-in: postinst creates everything with groupadd/useradd and mkdir/chmod, moves the
    // drop-in aside and leaves sshd valid.
    c.ok(&format!(
        "gpasswd -d {user} podspawn-users >/dev/null && userdel podspawn && \
         (groupdel podspawn 2>/dev/null || true) && groupdel podspawn-users && \
         ! getent group podspawn && ! getent group podspawn-users && \
         mv /usr/bin/systemd-sysusers /usr/bin/systemd-sysusers.hidden && \
         mv /usr/bin/systemd-tmpfiles /usr/bin/systemd-tmpfiles.hidden && \
         printf '%s\\n' '#!/bin/sh' \
           'if [ \"$1\" = -t ] && [ -e {DROPIN} ]; then echo \"{DROPIN} line 9: Bad configuration option: Test\" >&2; exit 255; fi' \
           'exec /usr/sbin/sshd \"$@\"' >/usr/local/sbin/sshd && chmod 0755 /usr/local/sbin/sshd"
    ));
    let o = c.sh(&format!("dpkg -i /pkg/{deb_name}"));
    assert!(o.status.success(), "dpkg -i (fallbacks)\n{}", out(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("REJECTED") && log.contains("Bad configuration option: Test"),
        "postinst did not report sshd's rejection\n{}",
        out(&o)
    );
    c.ok(&format!("! test -e {DROPIN} && test -f {DROPIN}.disabled"));
    // No forwarding without the Match block that confines members.
    c.ok(&format!("! test -e {FORWARDING_DROPIN}"));
    c.ok("rm /usr/local/sbin/sshd");
    assert_sshd_valid(&c, "after the drop-in was rejected");
    assert_setup(&c);
    c.ok(
        "mv /usr/bin/systemd-sysusers.hidden /usr/bin/systemd-sysusers && \
          mv /usr/bin/systemd-tmpfiles.hidden /usr/bin/systemd-tmpfiles",
    );
    let o = c.sh("dpkg --purge podspawn");
    assert!(o.status.success(), "dpkg --purge (2)\n{}", out(&o));
    c.ok(&format!(
        "! test -e {DROPIN}.disabled && ! test -e {DROPIN} && ! test -e /etc/podspawn"
    ));
    assert_sshd_valid(&c, "after the second purge");
    assert_pam_gone(&c);

    drop(c);
    let _ = std::fs::remove_dir_all(&keydir);
}
