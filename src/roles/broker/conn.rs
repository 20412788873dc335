//! A broker connection: newline-delimited JSON on a non-blocking socket, with fd passing.
use super::*;

/// A message longer than [`protocol::MAX_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("message too long")
    }
}

/// A broker connection: line reads and writes on a non-blocking socket, with fd passing.
pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) buf: Vec<u8>,
}

impl Conn {
    pub(super) async fn read_line(&mut self) -> Option<Result<Vec<u8>, LineTooLong>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                return Some(Ok(line));
            }
            if self.buf.len() > protocol::MAX_LINE {
                return Some(Err(LineTooLong));
            }
            if self.stream.readable().await.is_err() {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return None,
            }
        }
    }

    pub(super) async fn send(&mut self, resp: &Response) -> bool {
        let data = protocol::encode(resp);
        let mut off = 0;
        while off < data.len() {
            if self.stream.writable().await.is_err() {
                return false;
            }
            match self.stream.try_write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return false,
            }
        }
        true
    }

    pub(super) async fn send_with_fd(&mut self, resp: &Response, fd: i32) -> bool {
        let data = protocol::encode(resp);
        let raw = self.stream.as_raw_fd();
        let sent = loop {
            if self.stream.writable().await.is_err() {
                return false;
            }
            match self.stream.try_io(Interest::WRITABLE, || {
                protocol::send_with_fd(raw, &data, fd)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return false,
            }
        };
        let mut off = sent;
        while off < data.len() {
            if self.stream.writable().await.is_err() {
                return false;
            }
            match self.stream.try_write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return false,
            }
        }
        true
    }
}
