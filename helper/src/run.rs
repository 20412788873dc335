//! `podspawn-helper run STATUS_FILE -- PROGRAM [ARGS...]`: runs a session's command as a child and
//! ends with its exit code. When a signal killed it, `signal N` goes into STATUS_FILE first (in the
//! user's session directory, which the broker reads on the host), so that podspawn can end the SSH
//! session the same way and sshd reports the signal, as for a command it ran itself. The exit code
//! alone cannot tell `kill -9` from `exit 137`.
//!
//! This process only waits: the signals a terminal or the broker sends to the session (interrupt,
//! quit, stop, hang-up, terminate) are for the command, so they are blocked here and unblocked
//! again in the child before it execs (a blocked mask, unlike handlers, survives exec).

use nix::sys::signal::{SigSet, Signal};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode};

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(u8),
    Signaled(i32),
}

impl Ending {
    pub fn from_status(s: std::process::ExitStatus) -> Ending {
        match (s.code(), s.signal()) {
            (Some(c), _) => Ending::Exited((c & 0xff) as u8),
            (None, Some(sig)) => Ending::Signaled(sig),
            (None, None) => Ending::Exited(255),
        }
    }

    /// The exit code of this process: the command's, or 128+N as a shell reports a signal.
    pub fn code(self) -> u8 {
        match self {
            Ending::Exited(c) => c,
            Ending::Signaled(s) => (128 + s.clamp(0, 127)) as u8,
        }
    }
}

/// Parses `STATUS_FILE -- PROGRAM [ARGS...]`.
pub fn parse_args(args: &[String]) -> Result<(&str, &[String]), String> {
    match args {
        [status, dashdash, rest @ ..] if dashdash == "--" && !rest.is_empty() => {
            Ok((status.as_str(), rest))
        }
        _ => Err("usage: podspawn-helper run STATUS_FILE -- PROGRAM [ARGS...]".into()),
    }
}

/// Writes `signal N` to `path`, never through a link and never over an existing file.
pub fn record_signal(path: &Path, sig: i32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    writeln!(f, "signal {sig}")
}

/// Starts `program` with `blocked` unblocked again.
#[allow(unsafe_code)]
fn spawn_unblocked(
    program: &str,
    args: &[String],
    blocked: SigSet,
) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    c.args(args);
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // pthread_sigmask (async-signal-safe); it allocates nothing and touches no lock.
    unsafe {
        c.pre_exec(move || {
            blocked
                .thread_unblock()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    c.spawn()
}

pub fn run(args: &[String]) -> ExitCode {
    let (status_file, argv) = match parse_args(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("podspawn-helper run: {e}");
            return ExitCode::from(2);
        }
    };
    let mut block = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGHUP,
        Signal::SIGTERM,
    ] {
        block.add(s);
    }
    // Blocked (not ignored): an ignored disposition would be inherited across exec.
    let _ = block.thread_block();
    let child = spawn_unblocked(&argv[0], &argv[1..], block);
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podspawn: {}: {e}", argv[0]);
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let ending = match child.wait() {
        Ok(s) => Ending::from_status(s),
        Err(e) => {
            eprintln!("podspawn: waiting for {}: {e}", argv[0]);
            Ending::Exited(255)
        }
    };
    if let Ending::Signaled(sig) = ending {
        // Without the session directory the exit code still says 128+N.
        let _ = record_signal(Path::new(status_file), sig);
    }
    ExitCode::from(ending.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let a = s(&["/.podspawn/session/t.status", "--", "/bin/sh", "-c", "x"]);
        let (f, argv) = parse_args(&a).unwrap();
        assert_eq!(f, "/.podspawn/session/t.status");
        assert_eq!(argv, &a[2..]);
        assert!(parse_args(&s(&["f", "--"])).is_err());
        assert!(parse_args(&s(&["f", "/bin/sh"])).is_err());
        assert!(parse_args(&[]).is_err());
    }

    #[test]
    fn endings() {
        let st = |raw: i32| Ending::from_status(std::process::ExitStatus::from_raw(raw));
        assert_eq!(st(3 << 8), Ending::Exited(3));
        assert_eq!(st(9), Ending::Signaled(9));
        assert_eq!(Ending::Signaled(9).code(), 137);
        assert_eq!(Ending::Exited(137).code(), 137);
    }

    #[test]
    fn a_signal_is_recorded_once_and_never_through_a_link() {
        let dir = std::env::temp_dir().join(format!("helper-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.status");
        record_signal(&f, 15).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "signal 15\n");
        assert!(
            record_signal(&f, 9).is_err(),
            "an existing file is not overwritten"
        );
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("l.status")).unwrap();
        assert!(record_signal(&dir.join("l.status"), 9).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
