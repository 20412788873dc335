//! The .rpm built by `make packages`: rpmlint, the file list with modes, owners and config
//! flags, the scriptlets, an install into an empty scratch root without scriptlets, and an
//! install, erase included, into a Debian rootfs (debootstrap) with the scriptlets running
//! chrooted there (systemd's tools present, systemd not running).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod common;
#[path = "support/packages.rs"]
mod packages;

use packages::{artifact, check, need, out, stdout, tempdir};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Where the rpm installs the PAM session module: %{_libdir}/security (/usr/lib64 on x86_64).
fn pam_module_path() -> String {
    let o = check(Command::new("rpm").args(["--eval", "%{_libdir}"]));
    format!("{}/security/pam_podspawn.so", stdout(&o).trim())
}

const PAM_SSHD: &str = "/etc/pam.d/sshd";
const FORWARDING_DROPIN: &str = "/etc/ssh/sshd_config.d/09-podspawn-forwarding.conf";

fn rpm_q(pkg: &Path, args: &[&str]) -> String {
    need("rpm", "rpm");
    stdout(&check(Command::new("rpm").arg("-qp").args(args).arg(pkg)))
}

#[test]
fn rpmlint_reports_no_errors() {
    need("rpmlint", "rpmlint");
    let pkg = artifact("rpm");
    let o = common::run(
        Command::new("rpmlint")
            .arg("-c")
            .arg(packages::manifest_dir().join("rpm/rpmlint.toml"))
            .arg(&pkg),
    );
    let text = stdout(&o);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(": E: ")).collect();
    assert!(
        errors.is_empty(),
        "rpmlint errors:\n{}\n{}",
        errors.join("\n"),
        out(&o)
    );
    assert!(o.status.success(), "rpmlint failed\n{}", out(&o));
    assert!(text.contains(" 0 errors"), "{}", out(&o));
    eprintln!("rpmlint:\n{text}");
}

/// path → (mode, user, group, flags) from the rpm header.
fn rpm_files(pkg: &Path) -> BTreeMap<String, (u32, String, String, String)> {
    rpm_q(
        pkg,
        &[
            "--qf",
            "[%{FILEMODES:octal} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}. %{FILENAMES}\n]",
        ],
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.splitn(5, ' ').collect();
        let mode = u32::from_str_radix(f[0], 8).unwrap() & 0o7777;
        (
            f[4].to_string(),
            (mode, f[1].to_string(), f[2].to_string(), f[3].to_string()),
        )
    })
    .collect()
}

#[test]
fn rpm_file_list_modes_config_and_scripts() {
    let pkg = artifact("rpm");
    let list = rpm_q(&pkg, &["-l"]);
    let files = rpm_files(&pkg);
    let module = pam_module_path();
    let mut wanted: Vec<(&str, u32)> = packages::COMMON_FILES.to_vec();
    wanted.extend([
        (module.as_str(), 0o755),
        ("/usr/share/zsh/site-functions/_podspawn", 0o644),
        ("/usr/lib/systemd/system-preset/80-podspawn.preset", 0o644),
        ("/etc/podspawn/keys", 0o750),
        ("/var/lib/podspawn", 0o700),
    ]);
    for (path, mode) in wanted {
        assert!(
            list.lines().any(|l| l == path),
            "{path} not in rpm -qpl:\n{list}"
        );
        let (m, user, group, _) = &files[path];
        assert_eq!(*m, mode, "mode of {path}: {m:o}");
        assert_eq!(user, "root", "owner of {path}");
        let want_group = if path == "/etc/podspawn/config.yaml" || path == "/etc/podspawn/keys" {
            "podspawn"
        } else {
            "root"
        };
        assert_eq!(group, want_group, "group of {path}");
    }
    // %config(noreplace): flags c and n; nothing else is a config file.
    let configs_text = rpm_q(&pkg, &["-c"]);
    let mut configs: Vec<&str> = configs_text.lines().collect();
    configs.sort();
    assert_eq!(configs, packages::CONFIG_FILES, "rpm -qpc");
    for c in packages::CONFIG_FILES {
        let flags = &files[*c].3;
        assert!(
            flags.contains('c') && flags.contains('n'),
            "{c} is not %config(noreplace): flags {flags:?}"
        );
    }
    let noreplace = rpm_q(&pkg, &["--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"]);
    for c in packages::CONFIG_FILES {
        assert!(
            noreplace
                .lines()
                .any(|l| l.starts_with("cn") && l.ends_with(c)),
            "{c}: {noreplace}"
        );
    }

    let requires = rpm_q(&pkg, &["-R"]);
    for r in [
        "openssh-server >= 8.2",
        "libc.so.6()(64bit)",
        "/usr/sbin/useradd",
        "pam",
    ] {
        assert!(
            requires.lines().any(|l| l.trim() == r),
            "Requires lacks {r}:\n{requires}"
        );
    }
    let recommends = rpm_q(&pkg, &["--recommends"]);
    assert!(recommends.contains("docker"), "Recommends: {recommends}");
    let version = rpm_q(&pkg, &["--qf", "%{VERSION}"]);
    assert_eq!(
        version,
        env!("CARGO_PKG_VERSION"),
        "the rpm is not of this version: run `make packages`"
    );

    // Scriptlets: the shell of %sysusers_create_compat, %systemd_post, %systemd_preun and
    // %systemd_postun_with_restart, plus the sshd check.
    let scripts = rpm_q(&pkg, &["--scripts"]);
    for needle in [
        "preinstall scriptlet",
        "systemd-sysusers --replace=/usr/lib/sysusers.d/podspawn.conf -",
        "u podspawn       -:podspawn",
        "groupadd -r podspawn-users",
        "systemd-tmpfiles --create podspawn.conf",
        "systemctl --no-reload preset podspawn.socket podspawn-cleanup.service",
        "systemctl --no-reload disable podspawn.socket podspawn.service",
        "systemctl try-restart podspawn.service podspawn-cleanup.service",
        "sshd -t",
        "10-podspawn.conf.disabled",
        "try-reload-or-restart",
        "/usr/bin/podspawn server-setup --users",
    ] {
        assert!(
            scripts.contains(needle),
            "scriptlets lack {needle:?}:\n{scripts}"
        );
    }
    // pam_podspawn.so: %post adds a marked block to /etc/pam.d/sshd and decides forwarding
    // (before the sshd check); %preun (erase) removes the forwarding drop-in, then the block.
    let post = scriptlet(&scripts, "postinstall");
    for needle in [
        "session    required     pam_podspawn.so",
        "# BEGIN podspawn",
        "# END podspawn",
        PAM_SSHD,
        "/usr/bin/podspawn server-setup --forwarding",
    ] {
        assert!(post.contains(needle), "%post lacks {needle:?}:\n{post}");
    }
    assert!(
        post.find("server-setup --forwarding").unwrap() < post.rfind("sshd_test").unwrap(),
        "%post: server-setup --forwarding must come before the sshd check"
    );
    let preun = scriptlet(&scripts, "preuninstall");
    for needle in [
        "sed -i '/^# BEGIN podspawn/,/^# END podspawn/d' /etc/pam.d/sshd",
        FORWARDING_DROPIN,
    ] {
        assert!(preun.contains(needle), "%preun lacks {needle:?}:\n{preun}");
    }
    assert!(
        preun.find(FORWARDING_DROPIN).unwrap() < preun.find("sed -i").unwrap(),
        "%preun: forwarding off before the PAM block goes"
    );
    // The socket is never restarted (a running broker keeps the listening fd).
    assert!(
        !scripts.lines().any(|l| !l.trim_start().starts_with('#')
            && l.contains("restart")
            && l.contains("podspawn.socket")),
        "{scripts}"
    );
    for name in ["preinstall", "postinstall", "preuninstall", "postuninstall"] {
        let body = scriptlet(&scripts, name);
        let dir = tempdir("rpmscript");
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        let o = common::run(Command::new("sh").arg("-n").arg(&f));
        assert!(o.status.success(), "{name} scriptlet: {}", out(&o));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The body of one scriptlet of `rpm -qp --scripts` output.
fn scriptlet(all: &str, name: &str) -> String {
    let mut body = String::new();
    let mut on = false;
    for l in all.lines() {
        if l.ends_with("scriptlet (using /bin/sh):") {
            on = l.starts_with(&format!("{name} scriptlet"));
            continue;
        }
        if on {
            body.push_str(l);
            body.push('\n');
        }
    }
    assert!(!body.is_empty(), "no {name} scriptlet");
    body
}

fn meta(root: &Path, path: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{path} not installed under {}: {e}", root.display()))
}

#[test]
fn rpm_installs_into_a_scratch_root_without_scriptlets() {
    let pkg = artifact("rpm");
    let root = tempdir("rpmroot");
    // The group podspawn exists in this root, so %attr(…, podspawn) is applied.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\npodspawn:x:990:990::/nonexistent:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\npodspawn:x:990:\n").unwrap();
    check(Command::new("rpm").arg("--root").arg(&root).arg("--initdb"));
    check(
        Command::new("rpm")
            .args(["-i", "--nodeps", "--noscripts", "--root"])
            .arg(&root)
            .arg(&pkg),
    );
    let module = pam_module_path();
    let m = meta(&root, &module);
    assert!(
        m.is_file() && m.mode() & 0o7777 == 0o755,
        "{module}: {:o}",
        m.mode()
    );
    for (path, mode) in packages::COMMON_FILES {
        let m = meta(&root, path);
        assert!(m.is_file(), "{path} is not a regular file");
        assert_eq!(m.mode() & 0o7777, *mode, "mode of {path}: {:o}", m.mode());
        assert_eq!(m.uid(), 0, "owner of {path}");
        let gid = if *path == "/etc/podspawn/config.yaml" {
            990
        } else {
            0
        };
        assert_eq!(m.gid(), gid, "group of {path}");
    }
    let keys = meta(&root, "/etc/podspawn/keys");
    assert!(keys.is_dir());
    assert_eq!((keys.mode() & 0o7777, keys.gid()), (0o750, 990));
    assert_eq!(meta(&root, "/var/lib/podspawn").mode() & 0o7777, 0o700);
    packages::assert_matches_source(&root, "/usr/bin/podspawn");
    let q = check(
        Command::new("rpm")
            .args(["-q", "--root"])
            .arg(&root)
            .arg("podspawn"),
    );
    assert!(stdout(&q).starts_with("podspawn-"), "{}", out(&q));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn rpm_scriptlets_set_up_and_erase_in_a_debian_root() {
    let pkg = artifact("rpm");
    let root = tempdir("rpmdeb");
    packages::unpack_rootfs(&root);
    check(Command::new("rpm").arg("--root").arg(&root).arg("--initdb"));
    let in_root =
        |script: &str| check(Command::new("chroot").arg(&root).args(["sh", "-c", script]));
    let pam_sshd_before = std::fs::read(root.join(PAM_SSHD.trim_start_matches('/'))).unwrap();
    let pam_blocks = |root: &Path| {
        let text = std::fs::read_to_string(root.join(PAM_SSHD.trim_start_matches('/'))).unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("pam_podspawn.so"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        (text.matches("# BEGIN podspawn").count(), lines)
    };

    // First with an sshd that rejects the drop-in: %post moves it aside and sshd stays valid;
    // the erase removes the disabled copy.
    let dropin = "/etc/ssh/sshd_config.d/10-podspawn.conf";
    in_root(&format!(
        "mv /usr/sbin/sshd /usr/sbin/sshd.real && printf '%s\\n' '#!/bin/sh' \
           'if [ \"$1\" = -t ] && [ -e {dropin} ]; then echo \"{dropin} line 9: Bad configuration option: Test\" >&2; exit 255; fi' \
           'exec /usr/sbin/sshd.real \"$@\"' >/usr/sbin/sshd && chmod 0755 /usr/sbin/sshd"
    ));
    let o = check(
        Command::new("rpm")
            .args(["-i", "--nodeps", "--root"])
            .arg(&root)
            .arg(&pkg),
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("REJECTED"),
        "%post did not report sshd's rejection\n{}",
        out(&o)
    );
    in_root(&format!(
        "! test -e {dropin} && test -f {dropin}.disabled && mv /usr/sbin/sshd.real /usr/sbin/sshd && \
         mkdir -p /run/sshd && sshd -t"
    ));
    check(
        Command::new("rpm")
            .args(["-e", "--nodeps", "--root"])
            .arg(&root)
            .arg("podspawn"),
    );
    in_root(&format!(
        "! test -e {dropin}.disabled && ! test -e {dropin} && ! test -e {FORWARDING_DROPIN} && sshd -t"
    ));
    assert_eq!(
        std::fs::read(root.join(PAM_SSHD.trim_start_matches('/'))).unwrap(),
        pam_sshd_before,
        "{PAM_SSHD} after rpm -e is not what it was before the install"
    );

    // --nodeps: the Debian root's packages are in dpkg's database, not rpm's.
    let o = check(
        Command::new("rpm")
            .args(["-i", "--nodeps", "--root"])
            .arg(&root)
            .arg(&pkg),
    );
    let log = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(
        !log.contains("REJECTED") && !log.contains("INVALID"),
        "{log}"
    );
    // %pre: the identities, before config.yaml was laid down with group podspawn.
    let ids = stdout(&in_root(
        "getent passwd podspawn; getent group podspawn; getent group podspawn-users",
    ));
    assert_eq!(ids.lines().count(), 3, "{ids}");
    assert!(ids.contains(":/nonexistent:/usr/sbin/nologin"), "{ids}");
    let modes = stdout(&in_root(
        "stat -c '%n %a %U:%G' /etc/podspawn/config.yaml /etc/podspawn/keys \
         /var/lib/podspawn /var/lib/podspawn/locks /var/lib/podspawn/homes /var/log/podspawn",
    ));
    for want in [
        "/etc/podspawn/config.yaml 640 root:podspawn",
        "/etc/podspawn/keys 750 root:podspawn",
        "/var/lib/podspawn 700 root:root",
        "/var/lib/podspawn/locks 700 root:root",
        "/var/lib/podspawn/homes 711 root:root",
        "/var/log/podspawn 750 root:root",
    ] {
        assert!(modes.lines().any(|l| l == want), "{want} not in\n{modes}");
    }
    // %post: presets applied offline (enabled units), sshd valid with the drop-in.
    for link in [
        "etc/systemd/system/sockets.target.wants/podspawn.socket",
        "etc/systemd/system/multi-user.target.wants/podspawn-cleanup.service",
    ] {
        assert!(
            root.join(link).symlink_metadata().is_ok(),
            "{link} missing: the preset did not enable it"
        );
    }
    assert!(!root
        .join("etc/systemd/system/timers.target.wants/podspawn-cleanup.timer")
        .exists());
    in_root("test -f /etc/ssh/sshd_config.d/10-podspawn.conf && mkdir -p /run/sshd && sshd -t");
    // %post: pam_podspawn.so in sshd's session stack, once, also after a reinstall.
    assert_eq!(
        pam_blocks(&root),
        (1, vec!["session required pam_podspawn.so".to_string()]),
        "{PAM_SSHD} after rpm -i"
    );
    check(
        Command::new("rpm")
            .args(["-U", "--replacepkgs", "--nodeps", "--root"])
            .arg(&root)
            .arg(&pkg),
    );
    assert_eq!(
        pam_blocks(&root),
        (1, vec!["session required pam_podspawn.so".to_string()]),
        "{PAM_SSHD} after a reinstall (rpm -U --replacepkgs)"
    );
    // sshd's effective settings for a member of podspawn-users (an account of this root only).
    let effective = stdout(&in_root(
        "useradd -M -G podspawn-users pstrpm && sshd -T -C user=pstrpm,host=x,addr=127.0.0.1",
    ));
    let forwarding = root
        .join(FORWARDING_DROPIN.trim_start_matches('/'))
        .exists();
    let tcp = format!(
        "allowtcpforwarding {}",
        if forwarding { "yes" } else { "no" }
    );
    for want in [
        "authorizedkeyscommand /usr/bin/podspawn auth-keys %u %t %k",
        "authorizedkeyscommanduser podspawn",
        "authorizedkeysfile none",
        tcp.as_str(),
        "allowstreamlocalforwarding no",
        "x11forwarding no",
        "permittunnel no",
    ] {
        assert!(
            effective.lines().any(|l| l == want),
            "{want:?} not in ({FORWARDING_DROPIN} exists: {forwarding})\n{effective}"
        );
    }

    // Erase: %preun disables the units, files go, sshd stays valid.
    check(
        Command::new("rpm")
            .args(["-e", "--nodeps", "--root"])
            .arg(&root)
            .arg("podspawn"),
    );
    assert_eq!(
        std::fs::read(root.join(PAM_SSHD.trim_start_matches('/'))).unwrap(),
        pam_sshd_before,
        "{PAM_SSHD} after rpm -e is not what it was before the install"
    );
    for gone in [
        "usr/bin/podspawn",
        "etc/ssh/sshd_config.d/10-podspawn.conf",
        "etc/ssh/sshd_config.d/09-podspawn-forwarding.conf",
        "etc/systemd/system/sockets.target.wants/podspawn.socket",
        "etc/systemd/system/multi-user.target.wants/podspawn-cleanup.service",
    ] {
        assert!(
            root.join(gone).symlink_metadata().is_err(),
            "{gone} is still there after rpm -e"
        );
    }
    in_root("mkdir -p /run/sshd && sshd -t");

    // %postun's safety net (what a downgrade to a version without the module relies on: the
    // replaced package's %postun runs after its files are gone): without %preun, the block of a
    // module that is gone still leaves /etc/pam.d/sshd.
    check(
        Command::new("rpm")
            .args(["-i", "--nodeps", "--root"])
            .arg(&root)
            .arg(&pkg),
    );
    assert_eq!(pam_blocks(&root).0, 1, "{PAM_SSHD} after rpm -i");
    check(
        Command::new("rpm")
            .args(["-e", "--nodeps", "--nopreun", "--root"])
            .arg(&root)
            .arg("podspawn"),
    );
    assert_eq!(
        std::fs::read(root.join(PAM_SSHD.trim_start_matches('/'))).unwrap(),
        pam_sshd_before,
        "{PAM_SSHD} after rpm -e --nopreun: %postun left the block of a missing module"
    );
    in_root(&format!("! test -e {FORWARDING_DROPIN}"));
    let _ = std::fs::remove_dir_all(&root);
}
