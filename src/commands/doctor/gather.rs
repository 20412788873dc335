//! Gathering the real inputs: the processes, files and engine answers the checks judge.
use super::{
    available_bytes, check_accept_env, check_binary, check_broker, check_cleanup,
    check_config_file, check_default_image, check_disk, check_docker, check_forwarding,
    check_key_dir, check_key_files, check_lock_dir, check_max_startups, check_orphans,
    check_pam_module, check_pam_stack, check_runc, check_sshd_reloaded, check_sshd_with,
    check_state_db, check_use_pam, check_users, is_cleanup_daemon, parse_btime, parse_containers,
    parse_stat_ppid, parse_stat_starttime, socket_facts, with_disabled_dropin, Check, DoctorArgs,
    Listener, UserFacts, SSHD_CHECK, USERS_CHECK,
};
use crate::core::config::Config;
use crate::core::sshd_config;
use crate::engine;
use crate::host::accounts;
use crate::host::fs_policy;
use crate::host::sshd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mtime(p: &Path) -> Option<i64> {
    std::fs::metadata(p).ok().map(|m| m.mtime())
}

/// (pid, argv) of every process.
fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The sshd listener serving `config`: the pid file's process, else an sshd whose parent is not
/// sshd and whose `-f` (or the default) is `config`. sshd re-executes itself on SIGHUP (same
/// pid and start time) and then rewrites its pid file, so the pid file's mtime tells when it
/// last read its configuration (checked with OpenSSH 9.2).
pub fn find_listener(config: &Path, pidfile: Option<&str>) -> Option<Listener> {
    let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let ticks = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    };
    let started = |pid: u32| -> Option<i64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(btime + (parse_stat_starttime(&stat)? / ticks) as i64)
    };
    if let Some(pf) = pidfile {
        if let Some(pid) = std::fs::read_to_string(pf)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if comm(pid).starts_with("sshd") {
                let loaded = started(pid)?.max(mtime(Path::new(pf)).unwrap_or(0));
                return Some(Listener {
                    pid,
                    loaded_at: loaded,
                });
            }
        }
    }
    for (pid, argv) in processes() {
        if comm(pid) != "sshd" {
            continue;
        }
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat_ppid(&s))
            .unwrap_or(1);
        if comm(ppid).starts_with("sshd") {
            continue;
        }
        // setproctitle may have joined the arguments into one string.
        let words: Vec<String> = argv
            .iter()
            .flat_map(|a| a.split_whitespace().map(str::to_string))
            .collect();
        let f = words
            .iter()
            .position(|w| w == "-f")
            .and_then(|i| words.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(sshd_config::SSHD_CONFIG));
        if f == config {
            return Some(Listener {
                pid,
                loaded_at: started(pid)?,
            });
        }
    }
    None
}

fn broker_sessions(socket: &Path) -> Result<Vec<String>, String> {
    use crate::core::protocol::{Client, Request, Response};
    let mut c = Client::connect(socket).map_err(|e| format!("cannot connect: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    match c
        .call(&Request::List { user: None })
        .map_err(|e| format!("no answer to a list request: {e}"))?
    {
        Response::Sessions { sessions } => Ok(sessions.into_iter().map(|s| s.container).collect()),
        Response::Error { message, .. } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Runs every check against the real system.
pub fn gather(cfg: &Config, args: &DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    if !root {
        checks.push(Check::warn(
            "privileges",
            "not running as root: sshd, key and account checks cannot see everything",
            Some("sudo podspawn doctor".into()),
        ));
    }
    let podspawn_gid = accounts::group_gid(accounts::SYSTEM_USER);
    let users_gid = accounts::group_gid(accounts::USERS_GROUP);

    // sshd.
    let config = &args.sshd_config;
    let mut akc_binary: Option<String> = None;
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    let mut pidfile = None;
    let mut max_startups = None;
    match sshd::find_sshd() {
        None => checks.push(Check::fail(
            SSHD_CHECK,
            "sshd not found: the OpenSSH server is not installed",
            "sudo apt-get install openssh-server   # or: sudo dnf install openssh-server",
        )),
        Some(sshd) => {
            let flat = sshd_config::flatten(config, &sshd::RealFs).unwrap_or_default();
            files = flat
                .files
                .iter()
                .filter_map(|p| Some((p.clone(), mtime(p)?)))
                .collect();
            let managed = |d: &sshd_config::Directive| {
                d.context
                    .as_deref()
                    .is_some_and(sshd_config::is_podspawn_match)
            };
            let report = sshd_config::analyze(&flat.directives, &managed);
            let member = args.probe_user.clone().or_else(sshd::podspawn_member);
            let dump = sshd::sshd_dump(&sshd, config, member.as_deref()).map_err(String::from);
            let global = sshd::sshd_dump(&sshd, config, None)
                .ok()
                .map(|t| sshd_config::parse_sshd_t(&t));
            let first = |k: &str| {
                global
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .and_then(|v| v.first().cloned())
            };
            pidfile = first("pidfile");
            max_startups = first("maxstartups");
            let setting = cfg.security.port_forwarding;
            let facts = crate::host::pam::PamFacts::read(
                &args.pam_dir,
                global.as_ref().map(crate::host::pam::use_pam),
            );
            let in_place =
                crate::commands::server_setup::forwarding::module_in_place(&facts).is_ok();
            let check = match (&dump, root) {
                (Err(e), false) => Check::warn(
                    SSHD_CHECK,
                    format!("`sshd -T` needs root: {e}"),
                    Some("sudo podspawn doctor".into()),
                ),
                _ => check_sshd_with(
                    member.as_deref(),
                    dump.as_deref().map_err(|e| e.as_str()),
                    &report,
                    in_place,
                ),
            };
            let disabled = config
                .parent()
                .map(|d| d.join("sshd_config.d/10-podspawn.conf.disabled"))
                .filter(|p| p.exists());
            checks.push(with_disabled_dropin(check, disabled.as_deref()));
            if let (Ok(d), Some(_)) = (&dump, &member) {
                checks.extend(check_accept_env(d, &cfg.session.accept_env));
            }
            let member_map = dump
                .as_ref()
                .ok()
                .filter(|_| member.is_some())
                .map(|d| sshd_config::parse_sshd_t(d));
            let forwarding = check_forwarding(
                setting,
                &facts,
                report.ours.is_some(),
                member.as_deref(),
                member_map.as_ref(),
            );
            let forwarding_on = member_map
                .as_ref()
                .and_then(|t| t.get("allowtcpforwarding"))
                .and_then(|v| v.first())
                .is_some_and(|v| v != "no");
            checks.extend(forwarding);
            checks.push(check_use_pam(setting, facts.use_pam));
            checks.push(check_pam_stack(setting, &facts, forwarding_on));
            checks.push(check_pam_module(setting, &facts));
            akc_binary = dump
                .ok()
                .filter(|_| member.is_some())
                .and_then(|d| {
                    sshd_config::parse_sshd_t(&d)
                        .get("authorizedkeyscommand")
                        .and_then(|v| v.first().cloned())
                })
                .and_then(|c| sshd_config::podspawn_command(&c))
                .or_else(|| {
                    report
                        .ours
                        .as_ref()
                        .and_then(|d| sshd_config::podspawn_command(&d.args))
                });
        }
    }
    let chain = match &akc_binary {
        Some(b) => fs_policy::path_chain(Path::new(b)),
        None => Err(String::new()),
    };
    checks.push(check_binary(akc_binary.as_deref(), chain));
    let listener = find_listener(config, pidfile.as_deref());
    let service = sshd::detect_ssh_service();
    let reload = sshd::reload_hint(service.as_deref(), pidfile.as_deref());
    checks.push(check_sshd_reloaded(listener.as_ref(), &files, &reload));

    // Files, accounts, state.
    checks.push(check_config_file(&cfg.path, podspawn_gid));
    checks.push(check_key_dir(&cfg.auth.key_dir, podspawn_gid));
    checks.push(check_key_files(&cfg.auth.key_dir, podspawn_gid));
    match crate::commands::user::registered_users(&cfg.auth.key_dir) {
        Ok(names) => {
            let facts: Vec<UserFacts> = names
                .into_iter()
                .map(|n| UserFacts {
                    // Without root /etc/shadow is unreadable: judge what can be seen.
                    account: accounts::visible_facts(
                        &n,
                        accounts::shadow_password(&n).ok().flatten(),
                    ),
                    name: n,
                })
                .collect();
            checks.push(check_max_startups(max_startups.as_deref(), facts.len()));
            checks.push(check_users(&facts, accounts::uid_min()));
        }
        Err(e) => checks.push(Check::warn(USERS_CHECK, format!("skipped: {e}"), None)),
    }
    checks.push(check_state_db(&cfg.state.db_path));
    checks.push(check_lock_dir(&cfg.state.lock_dir));

    // Broker and cleanup.
    let sessions = broker_sessions(&cfg.broker.socket);
    checks.push(check_broker(
        &cfg.broker.socket,
        &socket_facts(&cfg.broker.socket),
        users_gid,
        &sessions.as_ref().map(|s| s.len()).map_err(|e| e.clone()),
    ));
    let systemd = sshd::systemd_running();
    let (svc, timer) = if systemd {
        (
            sshd::unit_state("podspawn-cleanup.service"),
            sshd::unit_state("podspawn-cleanup.timer"),
        )
    } else {
        (None, None)
    };
    let daemons: Vec<u32> = processes()
        .into_iter()
        .filter(|(_, argv)| is_cleanup_daemon(argv))
        .map(|(pid, _)| pid)
        .collect();
    checks.push(check_cleanup(
        systemd,
        svc.as_deref(),
        timer.as_deref(),
        &daemons,
    ));

    // Docker.
    let sock = engine::http::engine_socket();
    let ping = engine::http::get(&sock, "/_ping");
    checks.push(check_docker(&sock, &ping));
    let docker_ok = matches!(ping, Ok((200, _)));
    let image = &cfg.defaults.image;
    let img = if docker_ok {
        engine::http::get(&sock, &format!("/images/{}/json", url_path(image)))
    } else {
        Err("Docker is unreachable".into())
    };
    checks.push(check_default_image(image, &img));
    let runc = Command::new("runc")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    checks.push(check_runc(&runc));
    let containers = if docker_ok {
        engine::http::get(
            &sock,
            "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22managed-by%3Dpodspawn%22%5D%7D",
        )
        .and_then(|(status, body)| {
            if status == 200 {
                parse_containers(&body)
            } else {
                Err(format!("Docker answered HTTP {status}"))
            }
        })
    } else {
        Err("Docker is unreachable".into())
    };
    checks.push(check_orphans(&containers, &sessions, now()));

    // Disk space.
    let docker_root = if docker_ok {
        engine::http::get(&sock, "/info").ok().and_then(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .ok()?
                .get("DockerRootDir")?
                .as_str()
                .map(PathBuf::from)
        })
    } else {
        None
    };
    let docker_root = docker_root.unwrap_or_else(|| PathBuf::from("/var/lib/docker"));
    let state_dir = cfg
        .state
        .db_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/var/lib/podspawn"));
    for p in [docker_root, state_dir] {
        checks.push(check_disk(&p, &available_bytes(&p)));
    }
    checks
}

/// Percent-encodes what may not appear raw in a URL path (image names keep `/` and `:`).
fn url_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/:._-@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_parsing() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOKgarbage";
        assert_eq!(
            engine::http::parse_response(r).unwrap(),
            (200, b"OK".to_vec())
        );
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            engine::http::parse_response(r).unwrap(),
            (200, b"abcde".to_vec())
        );
        let r = b"HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"no\"}";
        assert_eq!(engine::http::parse_response(r).unwrap().0, 404);
        assert!(engine::http::parse_response(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(engine::http::parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(
            engine::http::parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nab")
                .is_err()
        );
        assert_eq!(url_path("ubuntu:24.04"), "ubuntu:24.04");
        assert_eq!(url_path("a b?"), "a%20b%3F");
    }
}
