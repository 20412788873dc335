//! `podspawn doctor [--json]`: checks everything `seed/troubleshooting.txt` makes an admin fix by
//! hand, and names the command that fixes each failure.
//!
//! Every check is a function of its inputs (paths, command outputs, parsed facts), so it can be
//! tested with constructed inputs; [`gather`] collects the real inputs.
use crate::core::config::Config;
use crate::core::sshd_config;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

mod docker;
mod files;
mod forwarding;
mod gather;
mod services;
mod sshd;
mod users;

pub use docker::{
    available_bytes, check_default_image, check_disk, check_docker, check_orphans, check_runc,
    parse_containers, parse_runc_version, runc_vulnerabilities, ContainerFacts, RuncVersion,
};
pub use files::{
    check_config_file, check_key_dir, check_key_files, check_lock_dir, check_state_db,
};
pub use forwarding::{check_forwarding, check_pam_module, check_pam_stack, check_use_pam};
pub use gather::{find_listener, gather};
pub use services::{check_broker, check_cleanup, is_cleanup_daemon, socket_facts, SocketFacts};
pub use sshd::{
    check_accept_env, check_binary, check_max_startups, check_sshd, check_sshd_reloaded,
    check_sshd_with, parse_btime, parse_stat_ppid, parse_stat_starttime, with_disabled_dropin,
    Listener,
};
pub use users::{check_users, UserFacts};

const GIB: u64 = 1024 * 1024 * 1024;
/// Below this much free space a check fails.
pub const DISK_FAIL: u64 = GIB;
/// Below this much free space a check warns.
pub const DISK_WARN: u64 = 5 * GIB;
/// Containers younger than this are not called orphans (the broker inserts the row after create).
pub const ORPHAN_MIN_AGE: i64 = 120;

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Print the checks as a JSON array of {name, status, detail, fix}.
    #[arg(long)]
    pub json: bool,
    /// The main sshd configuration file.
    #[arg(long, value_name = "PATH", default_value = sshd_config::SSHD_CONFIG)]
    pub sshd_config: PathBuf,
    /// Check sshd's effective settings for this account (default: a member of podspawn-users).
    #[arg(long, value_name = "USER")]
    pub probe_user: Option<String>,
    /// The PAM configuration directory (tests).
    #[arg(long, value_name = "DIR", default_value = crate::host::pam::PAM_DIR, hide = true)]
    pub pam_dir: PathBuf,
}

impl Default for DoctorArgs {
    fn default() -> Self {
        DoctorArgs {
            probe_user: None,
            json: false,
            sshd_config: PathBuf::from(sshd_config::SSHD_CONFIG),
            pam_dir: PathBuf::from(crate::host::pam::PAM_DIR),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's result. `fix` is the command that repairs a failure (or a warning, when there is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn warn(name: &str, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix,
        }
    }
    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub const SSHD_CHECK: &str = "sshd configuration";
pub const BINARY_CHECK: &str = "AuthorizedKeysCommand binary";
pub const DOCKER_CHECK: &str = "Docker connectivity";
pub const IMAGE_CHECK: &str = "default image";
pub const RUNC_CHECK: &str = "runc version";
pub const CONFIG_CHECK: &str = "configuration file";
pub const KEY_DIR_CHECK: &str = "key directory";
pub const KEY_FILES_CHECK: &str = "key files";
pub const USERS_CHECK: &str = "user accounts";
pub const STATE_CHECK: &str = "state database";
pub const LOCK_CHECK: &str = "lock directory";
pub const BROKER_CHECK: &str = "broker socket";
pub const CLEANUP_CHECK: &str = "cleanup daemon";
pub const RELOAD_CHECK: &str = "sshd running configuration";
pub const ORPHAN_CHECK: &str = "orphaned containers";
pub const MAXSTARTUPS_CHECK: &str = "sshd MaxStartups";
pub const ACCEPT_ENV_CHECK: &str = "sshd AcceptEnv";
pub const USEPAM_CHECK: &str = "sshd UsePAM";
pub const PAM_STACK_CHECK: &str = "PAM session stack (pam_podspawn.so)";
pub const PAM_MODULE_CHECK: &str = "pam_podspawn.so module file";
pub const FORWARDING_CHECK: &str = "TCP forwarding";

fn mode_of(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

// ---------------------------------------------------------------------------------------------
// Output.

pub fn render_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        match c.status {
            Status::Pass => s.push_str(&format!("  [pass] {}\n", c.name)),
            Status::Warn => {
                s.push_str(&format!("  [warn] {}: {}", c.name, c.detail));
                if let Some(f) = &c.fix {
                    s.push_str(&format!(" (fix: {f})"));
                }
                s.push('\n');
            }
            Status::Fail => {
                s.push_str(&format!("  [FAIL] {}: {}\n", c.name, c.detail));
                if let Some(f) = &c.fix {
                    s.push_str(&format!("         fix: {f}\n"));
                }
            }
        }
    }
    let n = |st: Status| checks.iter().filter(|c| c.status == st).count();
    s.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        n(Status::Pass),
        n(Status::Warn),
        n(Status::Fail)
    ));
    s
}

pub fn render_json(checks: &[Check]) -> String {
    serde_json::to_string_pretty(checks).unwrap_or_else(|_| "[]".into())
}

pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

/// `podspawn doctor`.
pub fn doctor(cfg: &Config, args: &DoctorArgs) -> ExitCode {
    let checks = gather(cfg, args);
    let mut out = std::io::stdout();
    let text = if args.json {
        format!("{}\n", render_json(&checks))
    } else {
        render_text(&checks)
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if any_failed(&checks) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
