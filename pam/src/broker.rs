//! The exchange with the broker: `Netns { user }` out, `Netns { holder }` and the namespace fd back.
//! The connection stays open afterwards as the lease (see `Request::Netns`).
//!
//! Everything is bounded by one deadline: connect (SO_SNDTIMEO also bounds a unix-socket connect
//! whose listener's backlog is full), the write (MSG_NOSIGNAL: a broker that went away must not
//! SIGPIPE sshd), and each read (SO_RCVTIMEO set to what is left, so a broker that trickles bytes
//! cannot stretch it either). The frames are the protocol's own (`encode`, `decode`,
//! `recv_with_fd`); `Client` is not used because it offers no send timeout, no deadline across
//! reads and writes with plain write(2).

use crate::decide::PAM_SESSION_ERR;
use nix::sys::socket::{
    connect, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use nix::sys::time::TimeVal;
use podspawn::core::protocol::{self, ErrorKind, Request, Response};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why there is no namespace to join.
#[derive(Debug)]
pub enum Failure {
    /// The broker could not be reached (not running, no socket, permissions).
    Connect(io::Error),
    /// Sending the request failed.
    Send(io::Error),
    /// Reading the reply failed.
    Recv(io::Error),
    /// No complete reply within the timeout.
    Timeout(Duration),
    /// The broker closed the connection without a reply.
    Eof,
    /// The reply was not a broker message.
    Malformed(String),
    /// The broker refused.
    Refused { kind: ErrorKind, message: String },
    /// A reply other than `Netns`.
    Unexpected(String),
    /// `Netns` came without a descriptor.
    NoFd,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "cannot reach the broker: {e}"),
            Failure::Send(e) => write!(f, "cannot send to the broker: {e}"),
            Failure::Recv(e) => write!(f, "cannot read the broker's reply: {e}"),
            Failure::Timeout(t) => write!(f, "no reply from the broker within {}s", t.as_secs()),
            Failure::Eof => write!(f, "the broker closed the connection without a reply"),
            Failure::Malformed(e) => write!(f, "the broker's reply is unreadable: {e}"),
            Failure::Refused { kind, message } => {
                write!(f, "the broker refused ({kind:?}): {message}")
            }
            Failure::Unexpected(r) => write!(f, "unexpected reply from the broker: {r}"),
            Failure::NoFd => write!(f, "the broker's reply carried no namespace descriptor"),
        }
    }
}

impl Failure {
    /// The code `pam_sm_open_session` returns: every failure refuses the session (fail closed;
    /// sshd then runs no command and opens no forward).
    pub fn pam_code(&self) -> i32 {
        PAM_SESSION_ERR
    }
}

/// What a successful exchange gives.
#[derive(Debug)]
pub struct Granted {
    /// The network namespace to `setns(CLONE_NEWNET)`.
    pub netns: OwnedFd,
    /// The open broker connection: the lease. Close-on-exec.
    pub lease: UnixStream,
    /// The container that holds the namespace.
    pub holder: String,
}

/// Asks the broker at `socket` for `user`'s network namespace, all within `timeout`.
pub fn request_netns(
    socket_path: &Path,
    user: &str,
    timeout: Duration,
) -> Result<Granted, Failure> {
    let deadline = Instant::now() + timeout;
    let stream = connect_within(socket_path, timeout)?;
    let line = protocol::encode(&Request::Netns {
        user: user.to_string(),
    });
    send_all(&stream, &line, deadline, timeout)?;
    let (resp, fd) = recv_reply(&stream, deadline, timeout)?;
    match resp {
        Response::Netns { holder } => match fd {
            Some(netns) => Ok(Granted {
                netns,
                lease: stream,
                holder,
            }),
            None => Err(Failure::NoFd),
        },
        Response::Error { kind, message } => Err(Failure::Refused { kind, message }),
        other => Err(Failure::Unexpected(short(&format!("{other:?}")))),
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

fn timeval(d: Duration) -> TimeVal {
    // A zero timeout means "forever" to the kernel: never ask for less than 1 ms.
    let d = d.max(Duration::from_millis(1));
    TimeVal::new(
        d.as_secs().min(i64::MAX as u64) as _,
        d.subsec_micros() as _,
    )
}

fn connect_within(path: &Path, timeout: Duration) -> Result<UnixStream, Failure> {
    let addr = UnixAddr::new(path).map_err(|e| Failure::Connect(e.into()))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Failure::Connect(e.into()))?;
    setsockopt(&fd, sockopt::SendTimeout, &timeval(timeout))
        .map_err(|e| Failure::Connect(e.into()))?;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Err(Failure::Timeout(timeout)),
            Err(e) => return Err(Failure::Connect(e.into())),
        }
    }
    Ok(UnixStream::from(fd))
}

fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::Timeout(timeout))
    } else {
        Ok(left)
    }
}

fn send_all(
    stream: &UnixStream,
    mut data: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), Failure> {
    while !data.is_empty() {
        let left = remaining(deadline, timeout)?;
        setsockopt(&stream.as_fd(), sockopt::SendTimeout, &timeval(left))
            .map_err(|e| Failure::Send(e.into()))?;
        match send(stream.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(Failure::Eof),
            Ok(n) => data = &data[n.min(data.len())..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Err(Failure::Timeout(timeout)),
            Err(e) => return Err(Failure::Send(e.into())),
        }
    }
    Ok(())
}

/// Reads one reply line (notices before it are skipped) and the descriptor that came with it.
fn recv_reply(
    stream: &UnixStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Response, Option<OwnedFd>), Failure> {
    let mut buf: Vec<u8> = Vec::new();
    let mut fd_out: Option<OwnedFd> = None;
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = &line[..line.len().saturating_sub(1)];
            let resp =
                protocol::decode::<Response>(line).map_err(|e| Failure::Malformed(short(&e)))?;
            if matches!(resp, Response::Notice { .. }) {
                continue;
            }
            return Ok((resp, fd_out));
        }
        if buf.len() > protocol::MAX_LINE {
            return Err(Failure::Malformed("reply too long".into()));
        }
        let left = remaining(deadline, timeout)?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(Failure::Recv)?;
        let mut chunk = [0u8; 8192];
        match protocol::recv_with_fd(stream.as_raw_fd(), &mut chunk) {
            Ok((n, fd)) => {
                if fd.is_some() {
                    fd_out = fd;
                }
                if n == 0 {
                    return Err(Failure::Eof);
                }
                buf.extend_from_slice(&chunk[..n.min(chunk.len())]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Failure::Timeout(timeout))
            }
            Err(e) => return Err(Failure::Recv(e)),
        }
    }
}

#[cfg(test)]
mod tests;
