//! The Docker checks: the engine answers, the default image, runc, orphaned containers, disk space.
use super::{
    Check, DISK_FAIL, DISK_WARN, DOCKER_CHECK, GIB, IMAGE_CHECK, ORPHAN_CHECK, ORPHAN_MIN_AGE,
    RUNC_CHECK,
};
use std::path::Path;

/// `GET /_ping` answered `OK`.
pub fn check_docker(socket: &Path, ping: &Result<(u16, Vec<u8>), String>) -> Check {
    match ping {
        Ok((200, body)) if body.trim_ascii() == b"OK" => {
            Check::pass(DOCKER_CHECK, format!("{} answers", socket.display()))
        }
        Ok((status, body)) => Check::fail(
            DOCKER_CHECK,
            format!(
                "{} answered /_ping with HTTP {status}: {}",
                socket.display(),
                String::from_utf8_lossy(body).trim()
            ),
            "sudo systemctl restart docker",
        ),
        Err(e) => Check::fail(
            DOCKER_CHECK,
            format!("cannot reach the Docker engine: {e}"),
            "sudo systemctl enable --now docker",
        ),
    }
}

/// `GET /images/<image>/json`: 200 present, 404 not pulled yet.
pub fn check_default_image(image: &str, res: &Result<(u16, Vec<u8>), String>) -> Check {
    match res {
        Ok((200, _)) => Check::pass(IMAGE_CHECK, format!("{image} is present")),
        Ok((404, _)) => Check::warn(
            IMAGE_CHECK,
            format!(
                "{image} is not present: the first login pulls it (slow, and it fails where no \
                 registry is reachable); or set defaults.image to an image on this host (check \
                 one with podspawn verify-image IMAGE)"
            ),
            Some(format!("sudo docker pull {image}")),
        ),
        Ok((status, body)) => Check::warn(
            IMAGE_CHECK,
            format!(
                "Docker answered HTTP {status} for {image}: {}",
                String::from_utf8_lossy(body).trim()
            ),
            None,
        ),
        Err(e) => Check::warn(IMAGE_CHECK, format!("skipped: {e}"), None),
    }
}

/// A parsed `runc --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `-rcN` / `-rc.N` pre-release.
    pub rc: Option<u32>,
    /// The version as printed.
    pub text: String,
    /// A distribution build (they backport fixes without changing the upstream version).
    pub distro: bool,
}

impl RuncVersion {
    fn key(&self) -> (u32, u32, u32, u32) {
        (
            self.major,
            self.minor,
            self.patch,
            self.rc.unwrap_or(u32::MAX),
        )
    }
}

fn ver(major: u32, minor: u32, patch: u32, rc: Option<u32>) -> (u32, u32, u32, u32) {
    (major, minor, patch, rc.unwrap_or(u32::MAX))
}

/// Parses `runc --version` output ("runc version 1.1.12", "commit: v1.1.12-0-g51d5e94", …).
pub fn parse_runc_version(out: &str) -> Option<RuncVersion> {
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("runc version "))?;
    let text = line.trim().to_string();
    let mut nums = Vec::new();
    let mut rest = text.as_str();
    for i in 0..3 {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        nums.push(rest[..end].parse::<u32>().ok()?);
        rest = &rest[end..];
        if i < 2 {
            rest = rest.strip_prefix('.')?;
        }
    }
    let mut rc = None;
    if let Some(r) = rest.strip_prefix("-rc") {
        let r = r.strip_prefix('.').unwrap_or(r);
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        rc = r[..end].parse().ok();
        rest = &r[end..];
    }
    let commit = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("commit:"))
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let distro = !rest.is_empty()
        || ["deb", "ubuntu", ".el", ".fc", "+", "suse", "alpine"]
            .iter()
            .any(|m| commit.contains(m));
    Some(RuncVersion {
        major: nums[0],
        minor: nums[1],
        patch: nums[2],
        rc,
        text,
        distro,
    })
}

/// Container escapes fixed upstream after this version: (CVE ids, first fixed versions).
pub fn runc_vulnerabilities(v: &RuncVersion) -> Vec<(&'static str, &'static str)> {
    let k = v.key();
    let mut out = Vec::new();
    if k < ver(1, 0, 0, Some(6)) {
        out.push(("CVE-2019-5736", "1.0.0-rc6"));
    }
    if k < ver(1, 1, 12, None) {
        out.push(("CVE-2024-21626", "1.1.12"));
    }
    let in_13 = k >= ver(1, 3, 0, Some(0)) && k < ver(1, 3, 3, None);
    let in_14rc = k >= ver(1, 4, 0, Some(0)) && k < ver(1, 4, 0, Some(3));
    if k < ver(1, 2, 8, None) || in_13 || in_14rc {
        out.push((
            "CVE-2025-31133, CVE-2025-52565, CVE-2025-52881",
            "1.2.8, 1.3.3 or 1.4.0-rc.3",
        ));
    }
    out
}

/// runc against known container escapes.
pub fn check_runc(out: &Result<String, String>) -> Check {
    let text = match out {
        Ok(t) => t,
        Err(e) => {
            return Check::warn(
                RUNC_CHECK,
                format!("cannot run `runc --version` ({e}); Docker may use another runtime"),
                None,
            )
        }
    };
    let Some(v) = parse_runc_version(text) else {
        return Check::warn(
            RUNC_CHECK,
            format!(
                "cannot parse `runc --version`: {}",
                text.lines().next().unwrap_or("")
            ),
            None,
        );
    };
    let vulns = runc_vulnerabilities(&v);
    if vulns.is_empty() {
        return Check::pass(RUNC_CHECK, format!("runc {}", v.text));
    }
    let list: Vec<String> = vulns
        .iter()
        .map(|(c, f)| format!("{c} (fixed in {f})"))
        .collect();
    let upgrade = "upgrade runc to 1.2.8, 1.3.3 or later (package runc, or containerd.io from \
                   Docker's repository): sudo apt-get install --only-upgrade runc, or sudo dnf \
                   upgrade runc";
    if v.distro {
        Check::warn(
            RUNC_CHECK,
            format!(
                "runc {} is a distribution build older than the upstream fixes for {}: \
                 distributions backport fixes without changing the version, so check your \
                 distribution's security tracker",
                v.text,
                list.join("; ")
            ),
            Some(upgrade.into()),
        )
    } else {
        Check::fail(
            RUNC_CHECK,
            format!(
                "runc {} has known container escapes: {}",
                v.text,
                list.join("; ")
            ),
            upgrade,
        )
    }
}

/// A container labelled managed-by=podspawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFacts {
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// `GET /containers/json` output.
pub fn parse_containers(body: &[u8]) -> Result<Vec<ContainerFacts>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad Docker answer: {e}"))?;
    let arr = v.as_array().ok_or("bad Docker answer: not a list")?;
    Ok(arr
        .iter()
        .map(|c| ContainerFacts {
            name: c["Names"][0]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string(),
            created: c["Created"].as_i64().unwrap_or(0),
        })
        .collect())
}

/// Containers labelled managed-by=podspawn that the broker's state does not know.
pub fn check_orphans(
    containers: &Result<Vec<ContainerFacts>, String>,
    sessions: &Result<Vec<String>, String>,
    now: i64,
) -> Check {
    let containers = match containers {
        Ok(c) => c,
        Err(e) => return Check::warn(ORPHAN_CHECK, format!("skipped: {e}"), None),
    };
    let sessions = match sessions {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                ORPHAN_CHECK,
                format!("skipped: the broker's sessions are unavailable ({e})"),
                None,
            )
        }
    };
    let orphans: Vec<&str> = containers
        .iter()
        .filter(|c| !sessions.contains(&c.name) && now - c.created >= ORPHAN_MIN_AGE)
        .map(|c| c.name.as_str())
        .collect();
    if orphans.is_empty() {
        Check::pass(
            ORPHAN_CHECK,
            format!(
                "{} podspawn container(s), all known to the broker",
                containers.len()
            ),
        )
    } else {
        Check::warn(
            ORPHAN_CHECK,
            format!(
                "{} container(s) labelled managed-by=podspawn are not in the state database: {}",
                orphans.len(),
                orphans.join(", ")
            ),
            Some("sudo podspawn cleanup".into()),
        )
    }
}

/// Free space under `path`.
pub fn check_disk(path: &Path, avail: &Result<u64, String>) -> Check {
    let name = format!("disk space ({})", path.display());
    let fix = if path.starts_with("/var/lib/docker") {
        "sudo docker system prune -f   # removes stopped containers, dangling images, build cache"
            .to_string()
    } else {
        format!("free space on the file system of {}", path.display())
    };
    match avail {
        Err(e) => Check::warn(&name, format!("cannot check: {e}"), None),
        Ok(n) => {
            let gib = *n as f64 / GIB as f64;
            if *n < DISK_FAIL {
                Check::fail(
                    &name,
                    format!("{gib:.1} GiB free: container creation fails on a full disk"),
                    fix,
                )
            } else if *n < DISK_WARN {
                Check::warn(&name, format!("only {gib:.1} GiB free"), Some(fix))
            } else {
                Check::pass(&name, format!("{gib:.1} GiB free"))
            }
        }
    }
}

/// Bytes available to unprivileged users on the file system of `path` (or its nearest
/// existing ancestor).
pub fn available_bytes(path: &Path) -> Result<u64, String> {
    let mut p = path;
    while !p.exists() {
        p = p
            .parent()
            .ok_or_else(|| format!("{} does not exist", path.display()))?;
    }
    let s = nix::sys::statvfs::statvfs(p).map_err(|e| format!("statvfs {}: {e}", p.display()))?;
    #[allow(clippy::unnecessary_cast)]
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}
