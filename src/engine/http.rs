//! The few engine calls podspawn makes in plain HTTP over the unix socket instead of through
//! bollard: starting a session's exec on a connection of its own (handed to spawn), and doctor's
//! synchronous probes.
//!
//! The session stream is special: `start_exec_stream` speaks HTTP itself on a fresh connection to
//! the engine socket, upgrades it (`Upgrade: tcp`, answered `101 UPGRADED`), and returns that
//! connected socket. After the upgrade the engine treats every byte as the process's stdin, so
//! handing that descriptor to the unprivileged spawn process gives it the session and nothing else.
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `POST /exec/{id}/start` with `Upgrade: tcp`; returns the connection once the engine answered
/// `101` (or `200` from engines that do not upgrade), positioned at the first byte of the stream.
pub fn start_exec_stream(
    socket: &Path,
    api: &str,
    exec_id: &str,
    tty: bool,
) -> io::Result<UnixStream> {
    if !exec_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad exec id"));
    }
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = format!("{{\"Detach\":false,\"Tty\":{tty}}}");
    let req = format!(
        "POST /{api}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nUser-Agent: podspawn\r\n\
         Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    // Read the response head byte by byte so that no stream byte is consumed here.
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "engine response head too long",
            ));
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "engine closed the connection",
            ));
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "101" && status != "200" {
        return Err(io::Error::other(format!(
            "engine refused to start exec: {}",
            text.lines().next().unwrap_or("")
        )));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

/// Read and write timeout of [`get`].
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The Docker engine's unix socket (DOCKER_HOST=unix://… or /var/run/docker.sock).
pub fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Parses an HTTP/1.x response: (status, body), decoding a chunked body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("HTTP/") {
        return Err(format!("not an HTTP response: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad HTTP status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunked body")?;
            let size_text = String::from_utf8_lossy(&rest[..nl]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            rest = &rest[nl + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            if rest.len() < size {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
    }
    match length {
        Some(n) if body.len() >= n => Ok((status, body[..n].to_vec())),
        Some(_) => Err("truncated HTTP body".into()),
        None => Ok((status, body.to_vec())),
    }
}

/// GET `path` from the Docker engine over its unix socket (HTTP/1.0, std only, synchronous: for
/// doctor, which runs without an async runtime).
pub fn get(socket: &Path, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: podspawn\r\n\r\n"
    )
    .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut buf = Vec::new();
    s.take(64 * 1024 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    parse_response(&buf)
}
