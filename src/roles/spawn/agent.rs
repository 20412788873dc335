//! Agent forwarding, spawn's side: a socket in the user's agent directory (which the broker
//! creates and mounts into the user's containers) that relays every connection to the agent
//! socket sshd made for this SSH connection. It runs as the user, lives as long as this process,
//! and is removed when the session ends.
//!
//! Nothing here may fail a login: without a relay the session simply has no `SSH_AUTH_SOCK`.

use crate::core::protocol::{Client, Request, Response};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Agent connections relayed at once (an agent answers in milliseconds; this only bounds threads).
const MAX_CONNECTIONS: usize = 16;

/// The relay's socket path, for removal by the deadline thread before `exit`.
static SOCKET: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A running relay; dropping it removes its socket.
pub struct Relay {
    /// The socket's name in the agent directory (sent to the broker in `Open`).
    pub name: String,
    path: PathBuf,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut s) = SOCKET.lock() {
            *s = None;
        }
    }
}

/// Removes the relay's socket when the process exits without unwinding (the answer deadline).
pub fn remove_on_exit() {
    if let Ok(s) = SOCKET.lock() {
        if let Some(p) = s.as_ref() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Asks the broker for the agent directory and starts relaying to `upstream`; None (and a log
/// line) when agent forwarding is off or anything goes wrong.
pub fn start(broker: &Path, upstream: PathBuf) -> Option<Relay> {
    let dir = match session_dir(broker) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!("no agent forwarding into the container: {e}");
            return None;
        }
    };
    let name = match crate::engine::new_session_tag() {
        Ok(t) => format!("{t}.sock"),
        Err(e) => {
            tracing::warn!("no agent forwarding: cannot make a socket name: {e}");
            return None;
        }
    };
    let path = dir.join(&name);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "no agent forwarding: cannot listen on {}: {e}",
                path.display()
            );
            return None;
        }
    };
    let relay = Relay {
        name,
        path: path.clone(),
    };
    if let Ok(mut s) = SOCKET.lock() {
        *s = Some(path.clone());
    }
    // The directory is already 0700; the socket is the user's alone as well.
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    let spawned = std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || serve(listener, upstream));
    if let Err(e) = spawned {
        tracing::warn!("no agent forwarding: cannot start the relay: {e}");
        return None;
    }
    Some(relay)
}

fn session_dir(broker: &Path) -> Result<PathBuf, String> {
    let mut c = Client::connect(broker).map_err(|e| format!("broker: {e}"))?;
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    match c.call(&Request::SessionDir {}) {
        Ok(Response::SessionDir { path }) => Ok(PathBuf::from(path)),
        Ok(Response::Error { message, .. }) => Err(message),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(format!("broker: {e}")),
    }
}

fn serve(listener: UnixListener, upstream: PathBuf) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue; // dropped: the client sees the agent refuse, and may retry
        }
        let agent = match UnixStream::connect(&upstream) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!("agent socket {}: {e}", upstream.display());
                continue;
            }
        };
        active.fetch_add(1, Ordering::Relaxed);
        let active2 = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("agent-conn".into())
            .spawn(move || {
                relay(client, agent);
                active2.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Copies both ways until each side has finished sending.
fn relay(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let back = std::thread::Builder::new()
        .name("agent-back".into())
        .spawn(move || pipe(b2, a2));
    pipe(a, b);
    if let Ok(h) = back {
        let _ = h.join();
    }
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = from.shutdown(std::net::Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    /// A fake agent that answers each request with its reverse; the relay must carry bytes both
    /// ways and end each connection cleanly.
    #[test]
    fn relays_both_ways() {
        let t = TempDir::new("agent-relay");
        let up = t.path().join("upstream.sock");
        let agent = UnixListener::bind(&up).unwrap();
        std::thread::spawn(move || {
            for c in agent.incoming() {
                let mut c = c.unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                got.reverse();
                c.write_all(&got).unwrap();
            }
        });
        let front = t.path().join("front.sock");
        let l = UnixListener::bind(&front).unwrap();
        let up2 = up.clone();
        std::thread::spawn(move || serve(l, up2));
        for msg in [b"hello agent".to_vec(), vec![7u8; 100_000]] {
            let mut c = UnixStream::connect(&front).unwrap();
            c.write_all(&msg).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            let mut want = msg.clone();
            want.reverse();
            assert_eq!(back, want);
        }
    }

    #[test]
    fn a_missing_agent_drops_the_connection() {
        let t = TempDir::new("agent-none");
        let front = t.path().join("front.sock");
        let l = UnixListener::bind(&front).unwrap();
        let up = t.path().join("nothing.sock");
        std::thread::spawn(move || serve(l, up));
        let mut c = UnixStream::connect(&front).unwrap();
        let mut back = Vec::new();
        // The relay closes the connection instead of hanging.
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(c.read_to_end(&mut back).unwrap(), 0);
    }
}
