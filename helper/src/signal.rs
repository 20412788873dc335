//! `podspawn-helper signal TAG SIGNAL`: sends SIGNAL (HUP, TERM, KILL, ...) to every process of
//! the session tagged TAG — those whose environment holds `PODSPAWN_SESSION=TAG` — and to their
//! process groups. The broker runs it (as the session's user) when a connection ends, to hang up
//! what the session left running. It replaces a shell loop over /proc that needed `tr` and `grep`,
//! which minimal images do not have.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::ExitCode;
use std::str::FromStr;

/// The environment entry that marks a session's processes.
pub fn marker(tag: &str) -> Vec<u8> {
    format!("PODSPAWN_SESSION={tag}").into_bytes()
}

/// Whether an `environ` file's contents (NUL-separated) hold exactly `marker`.
pub fn has_marker(environ: &[u8], marker: &[u8]) -> bool {
    environ.split(|&b| b == 0).any(|e| e == marker)
}

/// A session tag: 16 hex digits.
pub fn valid_tag(tag: &str) -> bool {
    tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `HUP` or `SIGHUP` → the signal.
pub fn parse_signal(name: &str) -> Option<Signal> {
    let full = if name.starts_with("SIG") {
        name.to_string()
    } else {
        format!("SIG{name}")
    };
    Signal::from_str(&full).ok()
}

pub fn run(args: &[String]) -> ExitCode {
    let (tag, sig) = match args {
        [t, s] if valid_tag(t) => match parse_signal(s) {
            Some(sig) => (t.as_str(), sig),
            None => {
                eprintln!("podspawn-helper signal: unknown signal {s:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: podspawn-helper signal TAG SIGNAL   (TAG: 16 hex digits)");
            return ExitCode::from(2);
        }
    };
    let marker = marker(tag);
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return ExitCode::SUCCESS;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        // Unreadable (another user's process, or gone): not ours to signal.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if has_marker(&environ, &marker) {
            let _ = kill(Pid::from_raw(-pid), sig);
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_match_whole_entries() {
        let m = marker("0123456789abcdef");
        assert!(has_marker(
            b"A=1\0PODSPAWN_SESSION=0123456789abcdef\0B=2\0",
            &m
        ));
        assert!(has_marker(b"PODSPAWN_SESSION=0123456789abcdef", &m));
        assert!(!has_marker(b"PODSPAWN_SESSION=0123456789abcdef0\0", &m));
        assert!(!has_marker(b"X_PODSPAWN_SESSION=0123456789abcdef\0", &m));
        assert!(!has_marker(b"", &m));
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("HUP"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGKILL"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("NOPE"), None);
        assert!(valid_tag("0123456789abcdef"));
        assert!(!valid_tag("0123456789abcde"));
        assert!(!valid_tag("../../../../etc"));
    }
}
