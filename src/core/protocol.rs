//! The broker protocol, shared by `spawn`, admin commands and `serve`: newline-delimited JSON over the
//! unix socket `/run/podspawn/podspawn.sock`. The response to `Open` carries the session's stream (the
//! upgraded Docker exec connection) as an SCM_RIGHTS file descriptor.
//!
//! The broker never trusts a user name from a message: the caller is the socket's peer uid.

use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Longest message line accepted either way.
pub const MAX_LINE: usize = 256 * 1024;
/// Longest SSH_ORIGINAL_COMMAND accepted.
pub const MAX_COMMAND: usize = 128 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Attach a new connection to the caller's (user, project) session, creating it if needed.
    Open(OpenRequest),
    /// Re-register a live stream after a broker restart; the lease continues.
    Resume {
        project: String,
        exec_id: String,
        /// The connection's agent relay socket (see `OpenRequest::agent`), removed with the lease.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// The client's window changed.
    Resize { rows: u16, cols: u16 },
    /// The stream ended: report the exit code of the command.
    Wait {},
    /// List sessions (root: all or `user`; others: their own).
    List { user: Option<String> },
    /// End sessions: one project, or all of the user's when `project` is None. Root only.
    /// `purge` also deletes a named session's persistent home.
    Stop {
        user: String,
        project: Option<String>,
        #[serde(default)]
        purge: bool,
    },
    /// Aggregate numbers for `podspawn status` and the metrics endpoint (no names).
    Status {},
    /// The caller's session directory (created if needed), where spawn puts the socket that
    /// relays a forwarded agent (`ssh -A`) before it sends `Open` with that socket's name.
    SessionDir {},
    /// From pam_podspawn.so in sshd's privileged process (root only): the user's network
    /// namespace, created if needed. The reply carries it as an fd; the connection then stays open
    /// as a connection-level lease on all of the user's sessions until the PAM session closes.
    Netns { user: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// "" for the user's default container.
    pub project: String,
    /// SSH_ORIGINAL_COMMAND; None for an interactive shell.
    pub command: Option<String>,
    /// Whether the client asked for a PTY (spawn's stdin is a terminal).
    pub tty: bool,
    pub term: Option<String>,
    pub rows: u16,
    pub cols: u16,
    /// Variables the client passed (SendEnv/SetEnv, through sshd's AcceptEnv) and the connection
    /// facts (SSH_CONNECTION, SSH_CLIENT). The broker keeps those `session.accept_env` allows.
    pub env: Vec<(String, String)>,
    /// The forwarded agent's relay socket in the caller's agent directory (from `SessionDir`), when
    /// the client forwarded its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The stream fd accompanies this message.
    Attached {
        container: String,
        exec_id: String,
        created: bool,
    },
    Ok,
    Exited {
        code: i32,
        /// The signal that killed the command, when the container could tell (see
        /// `podspawn-helper run`); `code` is then 128 + signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    Sessions {
        sessions: Vec<SessionInfo>,
    },
    Stopped {
        containers: Vec<String>,
        /// Persistent homes deleted (`stop --purge`).
        #[serde(default)]
        homes: Vec<String>,
    },
    Status {
        snapshot: crate::core::metrics::Snapshot,
    },
    /// The caller's agent directory on the host (answer to `SessionDir`).
    SessionDir {
        path: String,
    },
    /// The user's network namespace: an fd to `setns(CLONE_NEWNET)` accompanies this message
    /// (answer to `Netns`). `holder`: the container that keeps it.
    Netns {
        holder: String,
    },
    /// Unprompted, on a session connection: one line for the user (e.g. an upcoming removal).
    Notice {
        message: String,
    },
    Error {
        /// What kind of refusal, for callers that branch on it (older brokers sent none).
        #[serde(default)]
        kind: ErrorKind,
        /// For the person who asked.
        message: String,
    },
}

/// Why the broker refused a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// No such session.
    NoSession,
    /// The caller may not do this (not root, not a registered user, not their session).
    Forbidden,
    /// A limit (connections per user, containers per user) is reached.
    LimitReached,
    /// The request itself is malformed or not allowed in this state.
    Invalid,
    /// Anything else (the engine, the state database, ...): the message says what.
    #[default]
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionInfo {
    pub user: String,
    pub project: String,
    pub container: String,
    pub container_id: String,
    pub image: String,
    pub mode: String,
    pub status: String,
    pub connections: u32,
    pub created_at: i64,
    pub grace_expiry: Option<i64>,
    pub expires_at: Option<i64>,
}

/// The connection facts sshd sets for the session (`client-ip client-port server-ip server-port`
/// and `client-ip client-port server-port`), passed on so the container sees them as in a normal
/// SSH session.
pub const CONNECTION_VARS: [&str; 2] = ["SSH_CONNECTION", "SSH_CLIENT"];

fn valid_connection_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b' ' | b'%'))
}

/// Variables podspawn sets itself, which no client value may replace.
pub const RESERVED_ENV: [&str; 7] = ["HOME", "USER", "LOGNAME", "SHELL", "PATH", "TERM", "MAIL"];

/// A variable a client may pass at all: a plain name (letters, digits, `_`, not first a digit, at
/// most 64 bytes) that is not one podspawn sets itself (see [`RESERVED_ENV`], `SSH_*` other than
/// [`CONNECTION_VARS`], `PODSPAWN_*`). Which ones reach the container is the admin's
/// `session.accept_env`.
pub fn valid_env_name(n: &str) -> bool {
    if CONNECTION_VARS.contains(&n) {
        return true;
    }
    !n.is_empty()
        && n.len() <= 64
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !n.as_bytes()[0].is_ascii_digit()
        && !RESERVED_ENV.contains(&n)
        && !n.starts_with("SSH_")
        && !n.starts_with("PODSPAWN_")
}

/// Whether `name` matches one of the `session.accept_env` entries (names, or prefixes ending in `*`).
pub fn env_allowed(name: &str, accept: &[String]) -> bool {
    accept.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// The name spawn gives a forwarded agent's relay socket: 16 lowercase hex digits and `.sock`.
pub fn valid_agent_socket(name: &str) -> bool {
    name.len() == 21
        && name.ends_with(".sock")
        && name[..16]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Most variables one Open may carry.
pub const MAX_ENV: usize = 64;
/// Longest value of one variable.
pub const MAX_ENV_VALUE: usize = 1024;

impl OpenRequest {
    /// Everything a user could put in here is checked before it reaches Docker.
    pub fn validate(&self) -> Result<(), String> {
        if !self.project.is_empty() {
            crate::core::names::validate_project(&self.project)?;
        }
        if let Some(c) = &self.command {
            if c.len() > MAX_COMMAND {
                return Err(format!(
                    "command is {} bytes; the limit is {MAX_COMMAND}",
                    c.len()
                ));
            }
            if c.contains('\0') {
                return Err("command contains a NUL byte".into());
            }
        }
        if let Some(t) = &self.term {
            let ok = !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
            if !ok {
                return Err(format!("unsupported TERM value {t:?}"));
            }
        }
        if self.env.len() > MAX_ENV {
            return Err(format!(
                "too many environment variables ({}; at most {MAX_ENV})",
                self.env.len()
            ));
        }
        for (k, v) in &self.env {
            if !valid_env_name(k) {
                return Err(format!(
                    "environment variable {k:?} cannot be passed: podspawn sets it itself, or it \
                     is not a plain variable name"
                ));
            }
            if CONNECTION_VARS.contains(&k.as_str()) && !valid_connection_value(v) {
                return Err(format!("environment variable {k} has an invalid value"));
            }
            if v.len() > MAX_ENV_VALUE || v.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("environment variable {k} has an invalid value"));
            }
        }
        if let Some(a) = &self.agent {
            if !valid_agent_socket(a) {
                return Err(format!("invalid agent socket name {a:?}"));
            }
        }
        Ok(())
    }
}

/// Serializes a message as one line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

/// Parses one line (without its newline), naming what was wrong.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, String> {
    serde_json::from_slice(line).map_err(|e| format!("malformed broker message: {e}"))
}

/// Blocking client side of a broker connection (used by spawn and admin commands).
pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Notices received while waiting for a reply, for the caller to show.
    pub notices: Vec<String>,
}

impl Client {
    pub fn connect(path: &std::path::Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            notices: Vec::new(),
        })
    }

    /// A client over an already connected stream (the fuzz targets' socket pairs).
    #[doc(hidden)]
    pub fn from_stream(stream: UnixStream) -> Client {
        Client {
            stream,
            buf: Vec::new(),
            notices: Vec::new(),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn set_read_timeout(&self, d: Option<std::time::Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(d)
    }

    pub fn send(&mut self, req: &Request) -> io::Result<()> {
        self.stream.write_all(&encode(req))
    }

    fn pop_line(&mut self) -> Option<Vec<u8>> {
        let pos = self.buf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
        line.pop();
        Some(line)
    }

    /// Moves complete notice lines already received into `notices` (the broker only speaks
    /// unprompted to send notices; anything else is dropped).
    pub fn collect_notices(&mut self) {
        while let Some(line) = self.pop_line() {
            if let Ok(Response::Notice { message }) = decode::<Response>(&line) {
                self.notices.push(message);
            }
        }
    }

    /// Reads one response line, collecting any file descriptor passed with it. Notices that arrive
    /// first are kept in `notices`.
    pub fn recv(&mut self) -> io::Result<(Response, Option<OwnedFd>)> {
        let mut fd_out: Option<OwnedFd> = None;
        loop {
            while let Some(line) = self.pop_line() {
                let resp = decode::<Response>(&line)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if let Response::Notice { message } = resp {
                    self.notices.push(message);
                    continue;
                }
                return Ok((resp, fd_out));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "broker message too long",
                ));
            }
            let mut chunk = [0u8; 8192];
            let (n, fd) = recv_with_fd(self.stream.as_raw_fd(), &mut chunk)?;
            if let Some(fd) = fd {
                fd_out = Some(fd);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "broker closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One request, one response.
    pub fn call(&mut self, req: &Request) -> io::Result<Response> {
        self.send(req)?;
        Ok(self.recv()?.0)
    }

    /// True when the broker has closed the connection (non-blocking check on readable data).
    pub fn read_nonblocking(&mut self) -> io::Result<usize> {
        self.stream.set_nonblocking(true)?;
        let mut chunk = [0u8; 1024];
        let r = self.stream.read(&mut chunk);
        self.stream.set_nonblocking(false)?;
        match r {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }
}

/// recvmsg that accepts at most one SCM_RIGHTS descriptor (any extra ones are closed).
pub fn recv_with_fd(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => break m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    };
    let mut out: Option<OwnedFd> = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor in our table for us; we are
                    // its only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if out.is_none() {
                        out = Some(owned);
                    }
                }
            }
        }
    }
    Ok((msg.bytes, out))
}

/// sendmsg of `data` with one descriptor attached.
pub fn send_with_fd(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [IoSlice::new(data)];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> OpenRequest {
        OpenRequest {
            project: String::new(),
            command: Some("echo hi".into()),
            tty: false,
            term: Some("xterm-256color".into()),
            rows: 24,
            cols: 80,
            env: vec![("LANG".into(), "C.UTF-8".into())],
            agent: None,
        }
    }

    #[test]
    fn roundtrip_and_unknown_fields() {
        let r = Request::Open(open());
        let line = encode(&r);
        assert_eq!(decode::<Request>(&line[..line.len() - 1]).unwrap(), r);
        let err = decode::<Request>(br#"{"op":"wait","extra":1}"#).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
        assert!(decode::<Request>(br#"{"op":"become_root"}"#).is_err());
        assert!(decode::<Request>(b"not json").is_err());
    }

    #[test]
    fn errors_carry_a_kind_and_older_replies_still_parse() {
        let r = Response::Error {
            kind: ErrorKind::LimitReached,
            message: "too many".into(),
        };
        let line = encode(&r);
        assert_eq!(
            String::from_utf8_lossy(&line).trim(),
            r#"{"reply":"error","kind":"limit-reached","message":"too many"}"#
        );
        assert_eq!(decode::<Response>(&line[..line.len() - 1]).unwrap(), r);
        // A broker from before kinds: the kind defaults to internal.
        let old: Response = decode(br#"{"reply":"error","message":"x"}"#).unwrap();
        assert_eq!(
            old,
            Response::Error {
                kind: ErrorKind::Internal,
                message: "x".into()
            }
        );
        let old: Response = decode(br#"{"reply":"stopped","containers":["c"]}"#).unwrap();
        assert_eq!(
            old,
            Response::Stopped {
                containers: vec!["c".into()],
                homes: vec![]
            }
        );
    }

    #[test]
    fn open_validation() {
        assert!(open().validate().is_ok());
        let mut o = open();
        o.project = "%n".into();
        assert!(o.validate().is_err());
        let mut o = open();
        o.env = vec![("PATH".into(), "/evil".into())];
        assert!(o.validate().unwrap_err().contains("PATH"));
        for reserved in [
            "HOME",
            "SSH_AUTH_SOCK",
            "PODSPAWN_SESSION",
            "TERM",
            "1X",
            "A-B",
            "",
        ] {
            let mut o = open();
            o.env = vec![(reserved.into(), "x".into())];
            assert!(o.validate().is_err(), "{reserved}");
        }
        let mut o = open();
        o.env = vec![("LD_PRELOAD".into(), "/x.so".into())];
        assert!(
            o.validate().is_ok(),
            "a plain name: session.accept_env decides"
        );
        let mut o = open();
        o.agent = Some("0123456789abcdef.sock".into());
        assert!(o.validate().is_ok());
        o.agent = Some("../../run/docker.sock".into());
        assert!(o.validate().unwrap_err().contains("agent socket"));
        let mut o = open();
        o.term = Some("xterm\x1b]".into());
        assert!(o.validate().is_err());
        let mut o = open();
        o.command = Some("a\0b".into());
        assert!(o.validate().is_err());
        let mut o = open();
        o.command = Some("x".repeat(MAX_COMMAND + 1));
        assert!(o.validate().is_err());
        let mut o = open();
        o.env = vec![("LC_ALL".into(), "en_US.UTF-8".into())];
        assert!(o.validate().is_ok());
        // sshd's connection facts pass, but only as addresses and ports.
        let mut o = open();
        o.env = vec![
            (
                "SSH_CONNECTION".into(),
                "127.0.0.1 50022 127.0.0.1 22".into(),
            ),
            ("SSH_CLIENT".into(), "fe80::1%eth0 50022 22".into()),
        ];
        assert!(o.validate().is_ok());
        let mut o = open();
        o.env = vec![("SSH_CONNECTION".into(), "$(reboot)".into())];
        assert!(o.validate().unwrap_err().contains("SSH_CONNECTION"));
    }

    #[test]
    fn accept_env_patterns() {
        let accept: Vec<String> = ["LANG", "LC_*", "GIT_*"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(env_allowed("LANG", &accept));
        assert!(env_allowed("LC_ALL", &accept));
        assert!(env_allowed("GIT_AUTHOR_NAME", &accept));
        assert!(!env_allowed("LANGUAGE", &accept), "names match exactly");
        assert!(!env_allowed("LD_PRELOAD", &accept));
    }

    #[test]
    fn older_spawns_send_no_agent_field() {
        let line = br#"{"op":"open","project":"","command":null,"tty":false,"term":null,"rows":0,"cols":0,"env":[]}"#;
        match decode::<Request>(line).unwrap() {
            Request::Open(o) => assert_eq!(o.agent, None),
            other => panic!("{other:?}"),
        }
        // A resume from before agent forwarding, too.
        match decode::<Request>(br#"{"op":"resume","project":"","exec_id":"x"}"#).unwrap() {
            Request::Resume { agent, .. } => assert_eq!(agent, None),
            other => panic!("{other:?}"),
        }
        // Without an agent, nothing new goes on the wire either.
        let line = String::from_utf8(encode(&Request::Open(open()))).unwrap();
        assert!(!line.contains("agent"), "{line}");
    }

    #[test]
    fn passes_a_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        let (p1, mut p2) = UnixStream::pair().unwrap();
        let msg = encode(&Response::Ok);
        send_with_fd(a.as_raw_fd(), &msg, p1.as_raw_fd()).unwrap();
        drop(p1);
        let mut c = Client {
            stream: b,
            buf: Vec::new(),
            notices: Vec::new(),
        };
        let (resp, fd) = c.recv().unwrap();
        assert_eq!(resp, Response::Ok);
        let mut got = UnixStream::from(fd.unwrap());
        got.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        p2.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }
}
