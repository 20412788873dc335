//! Where log lines go. spawn and auth-keys run inside an SSH session and must never write a log line
//! to it: they log to journald when it is there, else to `log.file` when it is writable, else nowhere.
use crate::core::config::Config;
use std::io::IsTerminal;
use std::path::Path;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

fn filter(cfg: Option<&Config>, fallback: &str) -> EnvFilter {
    if let Ok(v) = std::env::var("PODSPAWN_LOG") {
        if let Ok(f) = EnvFilter::try_new(v) {
            return f;
        }
    }
    let level = cfg.map(|c| c.log.level.as_str()).unwrap_or(fallback);
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

fn journal_socket() -> &'static Path {
    Path::new(JOURNAL_SOCKET)
}

fn try_journald(ident: &str, f: EnvFilter) -> bool {
    if !journal_socket().exists() && std::env::var_os("JOURNAL_STREAM").is_none() {
        return false;
    }
    match tracing_journald::layer() {
        Ok(layer) => {
            let layer = layer
                .with_syslog_identifier(ident.to_string())
                .with_field_prefix(None);
            tracing_subscriber::registry()
                .with(f)
                .with(layer)
                .try_init()
                .is_ok()
        }
        Err(_) => false,
    }
}

/// `log.file`, opened like the audit log (no symlinks, 0640, owned by whoever writes it).
/// The error is only printed (by `init_daemon`): the file's `LogError` or tracing's own.
fn try_file(path: &Path, f: EnvFilter) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let file = crate::host::fs::open_private_append(path, crate::host::fs::LOG_FILE)?;
    tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init()?;
    Ok(())
}

/// For auth-keys and spawn: journald, else `log.file`, else nothing. Never stderr or stdout.
pub fn init_quiet(component: &str, cfg: Option<&Config>) {
    // One identifier for every component (journalctl -t podspawn); the component is a field.
    let _ = component;
    let ident = "podspawn".to_string();
    if try_journald(&ident, filter(cfg, "info")) {
        return;
    }
    if let Some(path) = cfg.and_then(|c| c.log.file.as_deref()) {
        // Nowhere to say why it failed: this runs inside an SSH session.
        let _ = try_file(path, filter(cfg, "info"));
    }
}

/// For the broker and the cleanup daemon: journald under systemd, else `log.file`, else stderr.
pub fn init_daemon(ident: &str, cfg: &Config) {
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some()
        || (journal_socket().exists() && !std::io::stderr().is_terminal());
    if under_systemd && try_journald(ident, filter(Some(cfg), "info")) {
        return;
    }
    if let Some(path) = cfg.log.file.as_deref() {
        match try_file(path, filter(Some(cfg), "info")) {
            Ok(()) => return,
            Err(e) => eprintln!("podspawn: {e}; logging to stderr instead"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(Some(cfg), "info"))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Admin commands print to the terminal.
pub fn init_terminal() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(None, "warn"))
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .try_init();
}
