//! `podspawn verify-image IMAGE`: checks what a container needs for full SSH feature support, in a
//! short-lived container of that image (labelled, removed afterwards).

use crate::core::config::HELPER_CONTAINER_PATH;
use crate::engine::ContainerRuntime;
use crate::engine::Docker;
use std::path::Path;
use std::process::ExitCode;

/// One check: a shell test run in the container, what it means, and how to fix a failure.
pub struct Check {
    pub what: &'static str,
    pub script: &'static str,
    /// Required checks make verify-image fail; the others are reported.
    pub required: bool,
    pub fix: &'static str,
}

pub const CHECKS: &[Check] = &[
    Check {
        what: "/bin/sh",
        script: "test -x /bin/sh",
        required: true,
        fix: "podspawn runs every session through /bin/sh; use an image that has a shell",
    },
    Check {
        what: "account tools (grep, mkdir, chown, chmod, cat, rm)",
        script: "for t in grep mkdir chown chmod cat rm; do command -v $t >/dev/null || exit 1; done",
        required: true,
        fix: "podspawn creates the user's account with them: install coreutils and grep (or busybox)",
    },
    Check {
        what: "sleep infinity",
        script: "sleep infinity & p=$!; sleep 0.2 2>/dev/null || sleep 1; kill -0 $p 2>/dev/null || exit 1; kill $p",
        required: true,
        fix: "the container's main process is `sleep infinity`: install GNU coreutils",
    },
    Check {
        what: "/bin/bash",
        script: "test -x /bin/bash",
        required: false,
        fix: "defaults.shell is /bin/bash by default: install bash, or set defaults.shell: /bin/sh",
    },
    Check {
        what: "sftp-server",
        script: "for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server /usr/sbin/sftp-server; do [ -x $p ] && exit 0; done; exit 1",
        required: false,
        fix: "sftp and scp need it: install openssh-sftp-server (Debian/Ubuntu) or openssh-server (Fedora/Alpine)",
    },
    Check {
        what: "scp",
        script: "command -v scp >/dev/null",
        required: false,
        fix: "legacy `scp -O` needs it: install openssh-client",
    },
    Check {
        what: "rsync",
        script: "command -v rsync >/dev/null",
        required: false,
        fix: "rsync over ssh needs it in the image: install rsync",
    },
    Check {
        what: "locale en_US.UTF-8",
        script: "locale -a 2>/dev/null | grep -qi '^en_US.utf-\\?8$'",
        required: false,
        fix: "install locales and generate en_US.UTF-8 (e.g. locale-gen en_US.UTF-8)",
    },
    Check {
        what: "git",
        script: "command -v git >/dev/null",
        required: false,
        fix: "install git",
    },
];

/// Pure: the report lines and whether every required check passed. `results[i]` is CHECKS[i];
/// `helper` says whether podspawn-helper ran in the image (it then provides SFTP).
pub fn report(results: &[bool], helper: bool) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    for (c, &passed) in CHECKS.iter().zip(results) {
        if passed {
            lines.push(format!(" ✓ {} found", c.what));
        } else if helper && c.what == "sftp-server" {
            lines.push(" ✓ sftp provided by podspawn (podspawn-helper)".to_string());
        } else {
            lines.push(format!(" ✗ {} not found: {}", c.what, c.fix));
            if c.required {
                ok = false;
            }
        }
    }
    (lines, ok)
}

/// `helper`: the host's podspawn-helper (config `helper.path`), mounted as sessions get it.
pub fn run(image: &str, helper: Option<&Path>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podspawn verify-image: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(verify(image, helper)) {
        Ok((lines, ok)) => {
            for l in lines {
                println!("{l}");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                eprintln!("podspawn: {image} lacks something podspawn needs (see ✗ above)");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("podspawn verify-image: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn verify(image: &str, helper: Option<&Path>) -> Result<(Vec<String>, bool), String> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid image reference {image:?}"));
    }
    let docker = Docker::connect().await?;
    docker.ensure_image(image).await?;
    let suffix: String = std::process::id().to_string();
    let name = format!("podspawn-verify-{suffix}");
    let mut labels = std::collections::HashMap::new();
    labels.insert("podspawn-verify".to_string(), "1".to_string());
    let mut spec = crate::engine::ContainerSpec {
        name: name.clone(),
        image: image.to_string(),
        hostname: "verify".into(),
        labels,
        nano_cpus: 0,
        memory: 0,
        pids_limit: 64,
        cap_drop: vec!["ALL".into()],
        cap_add: vec![],
        no_new_privileges: true,
        readonly_rootfs: false,
        tmpfs: Default::default(),
        runtime: None,
        // The same read-only mount sessions get, so the check below sees what they would.
        binds: helper
            .filter(|p| p.is_file())
            .map(|p| crate::engine::Bind::read_only(p.to_path_buf(), HELPER_CONTAINER_PATH))
            .into_iter()
            .collect(),
        network: Some("none".into()),
        // Keeps running without depending on the image's own sleep.
        cmd: vec![
            "/bin/sh".into(),
            "-c".into(),
            "while :; do sleep 3600; done".into(),
        ],
        user: Some("0:0".into()),
        env: Vec::new(),
        aliases: Vec::new(),
        volumes: Vec::new(),
    };
    let mut made = docker.create_and_start(&spec).await;
    if made.is_err() && !spec.binds.is_empty() {
        // The helper's mount, not the image, may be what failed (an engine on another host
        // does not have the file): judge the image without it.
        tracing::warn!(
            "verify-image: starting with podspawn-helper mounted failed; trying without"
        );
        let _ = docker.remove(&name).await;
        spec.binds.clear();
        made = docker.create_and_start(&spec).await;
    }
    let id = match made {
        Ok(id) => id,
        Err(e) => {
            // Without a working /bin/sh the container cannot even start: that is the answer.
            let (lines, _) = report(&vec![false; CHECKS.len()], false);
            return Ok((
                std::iter::once(format!(" ✗ the image does not start a shell: {e}"))
                    .chain(lines)
                    .collect(),
                false,
            ));
        }
    };
    let mut results = Vec::new();
    for c in CHECKS {
        let r = docker.run_check(&id, c.script).await.unwrap_or(false);
        results.push(r);
    }
    let helper_ok = !spec.binds.is_empty()
        && docker
            .run_check(
                &id,
                &format!("{HELPER_CONTAINER_PATH} --version >/dev/null"),
            )
            .await
            .unwrap_or(false);
    let _ = docker.remove(&id).await;
    Ok(report(&results, helper_ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fails_only_on_required_checks() {
        let all = vec![true; CHECKS.len()];
        let (lines, ok) = report(&all, false);
        assert!(ok);
        assert_eq!(lines.len(), CHECKS.len());
        let mut no_sftp = all.clone();
        let i = CHECKS.iter().position(|c| c.what == "sftp-server").unwrap();
        no_sftp[i] = false;
        let (lines, ok) = report(&no_sftp, false);
        assert!(ok, "sftp-server is optional");
        assert!(lines[i].contains("not found") && lines[i].contains("openssh-sftp-server"));
        let (lines, ok) = report(&no_sftp, true);
        assert!(ok);
        assert_eq!(lines[i], " ✓ sftp provided by podspawn (podspawn-helper)");
        // The image's own server is still reported as found when the helper is there too.
        assert!(report(&all, true).0[i].contains("sftp-server found"));
        let mut no_sh = all;
        no_sh[0] = false;
        assert!(!report(&no_sh, true).1);
    }
}
