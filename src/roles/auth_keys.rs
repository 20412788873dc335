//! `podspawn auth-keys %u %t %k`: sshd's AuthorizedKeysCommand. Synchronous, no runtime, no Docker.
//!
//! Runs as the `podspawn` system user on sshd's hot path. One config read, one key-file read.
//! It always exits 0 and never writes anything but key lines to stdout: any problem means "no
//! keys" plus one log line, so that sshd falls back to its other methods and nothing odd reaches
//! sshd's parser.
use crate::core::config::{Config, DEFAULT_SOCKET};
use crate::core::keys::PublicKey;
use crate::store::keys::{self, KeyFileError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the binary is expected when `current_exe()` cannot tell.
pub const FALLBACK_EXE: &str = "/usr/bin/podspawn";

pub fn run(config_path: &Path, user: &str, key_type: Option<&str>, key: Option<&str>) -> ExitCode {
    // A panic must neither print to stdout nor change the exit status: log it instead of the
    // default hook's stderr message, and catch it.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("auth-keys: internal error: {info}");
    }));
    let out = std::panic::catch_unwind(|| output(config_path, user, key_type, key));
    if let Ok(text) = out {
        write_stdout(&text);
    }
    ExitCode::SUCCESS
}

/// Everything auth-keys prints for this request (possibly nothing).
fn output(config_path: &Path, user: &str, key_type: Option<&str>, key: Option<&str>) -> String {
    let cfg = match Config::load(config_path) {
        Ok(c) => {
            crate::host::logging::init_quiet("auth-keys", Some(&c));
            c
        }
        Err(e) => {
            crate::host::logging::init_quiet("auth-keys", None);
            tracing::error!("auth-keys: {e}; printing no keys");
            return String::new();
        }
    };
    output_for(&cfg, user, key_type, key)
}

/// [`output`] once the config is loaded.
fn output_for(cfg: &Config, user: &str, key_type: Option<&str>, key: Option<&str>) -> String {
    if let Err(e) = crate::core::names::validate_user(user) {
        tracing::debug!("auth-keys: {e}; printing no keys");
        return String::new();
    }
    let path = keys::key_file(&cfg.auth.key_dir, user);
    let all = match keys::load_key_file(&path) {
        Ok(kf) => {
            for (line, e) in &kf.invalid {
                tracing::warn!(
                    "auth-keys: {}: line {line}: {e}; line skipped",
                    path.display()
                );
            }
            kf.keys
        }
        Err(KeyFileError::NotFound) => {
            tracing::debug!(
                "auth-keys: {user} is not a podspawn user (no {})",
                path.display()
            );
            return String::new();
        }
        Err(KeyFileError::Refused(m)) => {
            tracing::error!("auth-keys: {user}: {m}; printing no keys");
            return String::new();
        }
    };
    let chosen = select_keys(&all, key_type, key);
    if chosen.is_empty() {
        tracing::debug!("auth-keys: {user}: no registered key matches the offered one");
        return String::new();
    }
    let exe = current_exe();
    let socket = socket_arg(cfg);
    // sshd forwards a key's ports only where podspawn's Match block allows TCP forwarding, which
    // server-setup does only where pam_podspawn.so puts the connection in the user's namespace.
    let forwarding = cfg.security.port_forwarding != crate::core::config::PortForwarding::Off;
    match render_lines(&exe, socket, user, &chosen, forwarding) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!("auth-keys: {user}: {e}; printing no keys");
            String::new()
        }
    }
}

/// The `--socket` argument for spawn: only when the config moves the broker socket.
fn socket_arg(cfg: &Config) -> Option<&Path> {
    (cfg.broker.socket != Path::new(DEFAULT_SOCKET)).then_some(cfg.broker.socket.as_path())
}

/// With both `%t` and `%k`, only the key that equals them exactly; otherwise every key.
pub fn select_keys<'a>(
    keys: &'a [PublicKey],
    key_type: Option<&str>,
    key: Option<&str>,
) -> Vec<&'a PublicKey> {
    match (key_type, key) {
        (Some(t), Some(k)) => keys
            .iter()
            .filter(|p| p.algorithm == t && p.data == k)
            .take(1)
            .collect(),
        _ => keys.iter().collect(),
    }
}

/// This binary's path (`current_exe()`, or [`FALLBACK_EXE`]).
fn current_exe() -> PathBuf {
    match std::env::current_exe() {
        Ok(p) => {
            // After a package upgrade replaced the binary under a running process.
            match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
                Some(s) => PathBuf::from(s),
                None => p,
            }
        }
        Err(_) => PathBuf::from(FALLBACK_EXE),
    }
}

fn render_lines(
    exe: &Path,
    socket: Option<&Path>,
    user: &str,
    keys: &[&PublicKey],
    forwarding: bool,
) -> Result<String, String> {
    let mut out = String::new();
    for k in keys {
        out.push_str(&render_line_with(exe, socket, user, k, forwarding)?);
        out.push('\n');
    }
    Ok(out)
}

/// Checks a path that goes into the forced command. sshd hands `command="…"` to the user's login
/// shell, so besides what would break the option's quoting (`"`, `\`, control characters,
/// non-UTF-8) anything the shell would interpret (blanks, `$`, `;`, quotes, globs…) is refused.
fn check_command_path(what: &str, p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("the {what} path {p:?} is not valid UTF-8"))?;
    if !s.starts_with('/') {
        return Err(format!("the {what} path {s:?} is not absolute"));
    }
    if let Some(c) = s.chars().find(|&c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | ':' | '@'))
    }) {
        return Err(format!(
            "the {what} path {s:?} contains {c:?}, which cannot go into an authorized_keys \
             command= option: install podspawn under a plain path such as /usr/bin/podspawn"
        ));
    }
    Ok(s.to_string())
}

/// One authorized_keys line for sshd:
/// `command="<exe> spawn --user <user>[ --socket <path>]",restrict,pty,agent-forwarding <alg> <data>`.
/// The comment is not printed.
pub fn render_line(
    exe: &Path,
    socket: Option<&Path>,
    user: &str,
    key: &PublicKey,
) -> Result<String, String> {
    render_line_with(exe, socket, user, key, false)
}

/// [`render_line`], with `port-forwarding` after `agent-forwarding` when `forwarding`: sshd then
/// forwards the key's TCP ports as far as its own settings allow (podspawn's Match block keeps
/// unix-socket forwarding off, and TCP forwarding off unless pam_podspawn.so is in place).
pub fn render_line_with(
    exe: &Path,
    socket: Option<&Path>,
    user: &str,
    key: &PublicKey,
    forwarding: bool,
) -> Result<String, String> {
    let exe = check_command_path("podspawn binary", exe)?;
    crate::core::names::validate_user(user)?;
    let mut command = format!("{exe} spawn --user {user}");
    if let Some(sock) = socket {
        let sock = check_command_path("broker socket", sock)?;
        command.push_str(" --socket ");
        command.push_str(&sock);
    }
    if !crate::core::keys::is_known_algorithm(&key.algorithm) {
        return Err(format!("unknown key type {:?}", key.algorithm));
    }
    if key.data.is_empty()
        || !key
            .data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err("key data is not base64".into());
    }
    let extra = if forwarding { ",port-forwarding" } else { "" };
    Ok(format!(
        "command=\"{command}\",restrict,pty,agent-forwarding{extra} {} {}",
        key.algorithm, key.data
    ))
}

/// One write of everything; a closed pipe (sshd gave up) is not an error worth reporting.
fn write_stdout(text: &str) {
    if text.is_empty() {
        return;
    }
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = lock.write_all(text.as_bytes());
    let _ = lock.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4Zou test-ed25519@podspawn";
    const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4ZouAAAABHNzaDo= test-sked@podspawn";

    fn key(line: &str) -> PublicKey {
        PublicKey::parse(line).unwrap()
    }

    #[test]
    fn forwarding_adds_only_port_forwarding_after_restrict() {
        let k = key(ED25519);
        let l = render_line(Path::new("/usr/bin/podspawn"), None, "alice", &k).unwrap();
        let f = render_line_with(Path::new("/usr/bin/podspawn"), None, "alice", &k, true).unwrap();
        assert!(
            f.starts_with(
                "command=\"/usr/bin/podspawn spawn --user alice\",restrict,pty,agent-forwarding,port-forwarding ssh-ed25519 "
            ),
            "{f}"
        );
        assert_eq!(f.replace(",port-forwarding", ""), l);
        let both =
            render_lines(Path::new("/usr/bin/podspawn"), None, "alice", &[&k], true).unwrap();
        assert_eq!(both, format!("{f}\n"));
        let neither =
            render_lines(Path::new("/usr/bin/podspawn"), None, "alice", &[&k], false).unwrap();
        assert_eq!(neither, format!("{l}\n"));
    }

    #[test]
    fn renders_lines() {
        let k = key(ED25519);
        assert_eq!(
            render_line(Path::new("/usr/bin/podspawn"), None, "alice", &k).unwrap(),
            "command=\"/usr/bin/podspawn spawn --user alice\",restrict,pty,agent-forwarding \
             ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyfanRgBSMcr5cnfAZgyATDO4A6keNrgYpmMF9I4Zou"
        );
        let k = key(SK_ED25519);
        let l = render_line(
            Path::new("/usr/local/bin/podspawn"),
            Some(Path::new("/run/ps-test/broker.sock")),
            "bob_2",
            &k,
        )
        .unwrap();
        assert_eq!(
            l,
            format!(
                "command=\"/usr/local/bin/podspawn spawn --user bob_2 --socket \
                 /run/ps-test/broker.sock\",restrict,pty,agent-forwarding {}",
                &SK_ED25519[..SK_ED25519.rfind(' ').unwrap()]
            )
        );
        assert!(!l.contains("test-sked"));
    }

    #[test]
    fn refuses_unsafe_paths_and_names() {
        let k = key(ED25519);
        let sock = Path::new("/run/x.sock");
        for bad in [
            "/usr/bin/pod\"spawn",
            "/usr/bin/pod\\spawn",
            "/usr/bin/pod\nspawn",
            "/usr/bin/pod\x7fspawn",
            "/opt/my tools/podspawn",
            "/opt/$HOME/podspawn",
            "/opt/a;b/podspawn",
            "/opt/`id`/podspawn",
            "/opt/é/podspawn",
            "podspawn",
        ] {
            assert!(
                render_line(Path::new(bad), None, "alice", &k).is_err(),
                "{bad:?}"
            );
            assert!(
                render_line(
                    Path::new("/usr/bin/podspawn"),
                    Some(Path::new(bad)),
                    "alice",
                    &k
                )
                .is_err(),
                "{bad:?}"
            );
        }
        use std::os::unix::ffi::OsStrExt;
        let non_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"/usr/bin/\xffpodspawn"));
        let e = render_line(non_utf8, None, "alice", &k).unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
        assert!(render_line(Path::new("/usr/bin/podspawn"), Some(sock), "Alice", &k).is_err());
        assert!(render_line(Path::new("/usr/bin/podspawn"), Some(sock), "a b", &k).is_err());
        let mut bad = k.clone();
        bad.data.push('"');
        assert!(render_line(Path::new("/usr/bin/podspawn"), None, "alice", &bad).is_err());
        let mut bad = k.clone();
        bad.algorithm = "x\" y".into();
        assert!(render_line(Path::new("/usr/bin/podspawn"), None, "alice", &bad).is_err());
    }

    #[test]
    fn selects_keys() {
        let a = key(ED25519);
        let b = key(SK_ED25519);
        let all = vec![a.clone(), b.clone()];
        assert_eq!(select_keys(&all, None, None).len(), 2);
        assert_eq!(select_keys(&all, Some("ssh-ed25519"), None).len(), 2);
        assert_eq!(
            select_keys(&all, Some(&b.algorithm), Some(&b.data)),
            vec![&b]
        );
        assert!(select_keys(&all, Some("ssh-rsa"), Some(&a.data)).is_empty());
        assert!(select_keys(&all, Some(&a.algorithm), Some(&b.data)).is_empty());
        let mut truncated = a.data.clone();
        truncated.pop();
        assert!(select_keys(&all, Some(&a.algorithm), Some(&truncated)).is_empty());
    }

    #[test]
    fn socket_only_when_not_default() {
        let mut cfg = Config::default();
        assert_eq!(socket_arg(&cfg), None);
        cfg.broker.socket = "/run/other.sock".into();
        assert_eq!(socket_arg(&cfg), Some(Path::new("/run/other.sock")));
    }

    #[test]
    fn missing_config_prints_nothing() {
        let out = output(
            Path::new("/nonexistent/podspawn-test/config.yaml"),
            "alice",
            None,
            None,
        );
        assert_eq!(out, "");
    }

    #[test]
    fn prints_registered_keys_only() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (it creates root-owned key files); run the tests as root"
        );
        let dir = PathBuf::from(format!(
            "/tmp/podspawn-authkeys-test-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = Cleanup(dir.clone());
        let mut cfg = Config::default();
        cfg.auth.key_dir = dir.clone();
        let f = dir.join("alice");
        std::fs::write(&f, format!("{ED25519}\nnot a key\n{SK_ED25519}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();

        let all = output_for(&cfg, "alice", None, None);
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 2, "{all}");
        for l in &lines {
            assert!(l.starts_with("command=\""), "{l}");
            // security.port_forwarding: auto (the default) lets sshd's settings decide.
            assert!(
                l.contains(" spawn --user alice\",restrict,pty,agent-forwarding,port-forwarding ")
            );
            assert!(!l.contains("--socket"));
        }
        let mut off = cfg.clone();
        off.security.port_forwarding = crate::core::config::PortForwarding::Off;
        assert!(output_for(&off, "alice", None, None)
            .lines()
            .all(|l| l.contains(",restrict,pty,agent-forwarding ssh-")
                || l.contains(",restrict,pty,agent-forwarding sk-")));
        let b = key(SK_ED25519);
        let one = output_for(&cfg, "alice", Some(&b.algorithm), Some(&b.data));
        assert_eq!(one.lines().count(), 1);
        assert!(one.ends_with(&format!("{} {}\n", b.algorithm, b.data)));
        assert_eq!(
            output_for(&cfg, "alice", Some("ssh-rsa"), Some(&b.data)),
            ""
        );
        // Unregistered or invalid user names: nothing.
        assert_eq!(output_for(&cfg, "bob", None, None), "");
        assert_eq!(output_for(&cfg, "../alice", None, None), "");
        // Non-default socket goes into the command.
        cfg.broker.socket = "/run/podspawn-test/b.sock".into();
        assert!(output_for(&cfg, "alice", None, None)
            .contains(" --socket /run/podspawn-test/b.sock\","));
        // A refused (group-writable) key file: nothing.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o660)).unwrap();
        assert_eq!(output_for(&cfg, "alice", None, None), "");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A socket path that would break the command: nothing.
        cfg.broker.socket = "/run/a b.sock".into();
        assert_eq!(output_for(&cfg, "alice", None, None), "");
    }
}
