//! The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02) and the OpenSSH extensions
//! (OpenSSH's PROTOCOL file, section 4): decoding requests and encoding replies.
//!
//! Pure: no I/O, no allocation driven by a length the client sent (every length is checked against
//! the bytes actually present before it is used). A malformed request decodes to [`Malformed`],
//! carrying the request id when it could be read, so the server can answer it with
//! `SSH_FX_BAD_MESSAGE`. This module is the natural fuzz target.

/// Largest packet accepted or sent, as OpenSSH's sftp-server (`SFTP_MAX_MSG_LENGTH`).
pub const MAX_PACKET: usize = 256 * 1024;
/// Largest READ answered in full and WRITE accepted (OpenSSH: the packet limit less 1 KiB of headers).
pub const MAX_READ: u32 = (MAX_PACKET - 1024) as u32;
/// Protocol version spoken.
pub const VERSION: u32 = 3;

// Packet types.
pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

// Status codes.
pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;
pub const FX_BAD_MESSAGE: u32 = 5;
pub const FX_OP_UNSUPPORTED: u32 = 8;

// Attribute flags.
pub const ATTR_SIZE: u32 = 0x1;
pub const ATTR_UIDGID: u32 = 0x2;
pub const ATTR_PERMISSIONS: u32 = 0x4;
pub const ATTR_ACMODTIME: u32 = 0x8;
pub const ATTR_EXTENDED: u32 = 0x8000_0000;

// OPEN pflags.
pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_APPEND: u32 = 0x04;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

/// The extensions announced in VERSION, with their version strings, as OpenSSH announces them.
pub const EXTENSIONS: &[(&str, &str)] = &[
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
    ("copy-data", "1"),
    ("home-directory", "1"),
];

/// Human-readable text sent with a status code (the same words as OpenSSH's sftp-server).
pub fn status_message(code: u32) -> &'static str {
    match code {
        FX_OK => "Success",
        FX_EOF => "End of file",
        FX_NO_SUCH_FILE => "No such file",
        FX_PERMISSION_DENIED => "Permission denied",
        FX_FAILURE => "Failure",
        FX_BAD_MESSAGE => "Bad message",
        FX_OP_UNSUPPORTED => "Operation unsupported",
        _ => "Unknown error",
    }
}

/// File attributes; `None` for a field whose flag is not set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub perm: Option<u32>,
    /// (atime, mtime), seconds since the epoch.
    pub times: Option<(u32, u32)>,
}

/// A request that could not be decoded. `id` is its request id when that much was readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    pub id: Option<u32>,
}

/// A framing error: the connection cannot continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A packet without even a type byte.
    Empty,
    /// A length above [`MAX_PACKET`]; rejected before anything is allocated.
    TooLong(u32),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Empty => write!(f, "empty packet"),
            FrameError::TooLong(n) => {
                write!(f, "packet of {n} bytes exceeds the limit of {MAX_PACKET}")
            }
        }
    }
}

/// The payload length announced by a packet's 4-byte header, checked against the limits.
pub fn frame_length(header: [u8; 4]) -> Result<usize, FrameError> {
    let n = u32::from_be_bytes(header);
    if n == 0 {
        Err(FrameError::Empty)
    } else if n as usize > MAX_PACKET {
        Err(FrameError::TooLong(n))
    } else {
        Ok(n as usize)
    }
}

/// The length of the first complete packet (header included) at the start of `buf`, if all of it is there.
pub fn complete_packet_len(buf: &[u8]) -> Option<usize> {
    let header: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let n = u32::from_be_bytes(header) as usize;
    (buf.len() - 4 >= n).then_some(n + 4)
}

/// A decoded request. Paths and handles borrow from the packet; paths are raw bytes (Unix file
/// names need not be UTF-8).
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Init {
        version: u32,
    },
    Open {
        path: &'a [u8],
        pflags: u32,
        attrs: Attrs,
    },
    Close {
        handle: &'a [u8],
    },
    Read {
        handle: &'a [u8],
        offset: u64,
        len: u32,
    },
    Write {
        handle: &'a [u8],
        offset: u64,
        data: &'a [u8],
    },
    Lstat {
        path: &'a [u8],
    },
    Fstat {
        handle: &'a [u8],
    },
    Setstat {
        path: &'a [u8],
        attrs: Attrs,
    },
    Fsetstat {
        handle: &'a [u8],
        attrs: Attrs,
    },
    Opendir {
        path: &'a [u8],
    },
    Readdir {
        handle: &'a [u8],
    },
    Remove {
        path: &'a [u8],
    },
    Mkdir {
        path: &'a [u8],
        attrs: Attrs,
    },
    Rmdir {
        path: &'a [u8],
    },
    Realpath {
        path: &'a [u8],
    },
    Stat {
        path: &'a [u8],
    },
    Rename {
        from: &'a [u8],
        to: &'a [u8],
    },
    Readlink {
        path: &'a [u8],
    },
    /// OpenSSH's argument order: the link's target first, then the link to create (the draft has
    /// them the other way round; every common client follows OpenSSH).
    Symlink {
        target: &'a [u8],
        link: &'a [u8],
    },
    PosixRename {
        from: &'a [u8],
        to: &'a [u8],
    },
    Statvfs {
        path: &'a [u8],
    },
    Fstatvfs {
        handle: &'a [u8],
    },
    Hardlink {
        from: &'a [u8],
        to: &'a [u8],
    },
    Fsync {
        handle: &'a [u8],
    },
    Lsetstat {
        path: &'a [u8],
        attrs: Attrs,
    },
    Limits,
    ExpandPath {
        path: &'a [u8],
    },
    HomeDirectory {
        user: &'a [u8],
    },
    /// copy-data: `len` bytes (0: up to end of file) from one open file to another, server-side.
    CopyData {
        from: &'a [u8],
        from_offset: u64,
        len: u64,
        to: &'a [u8],
        to_offset: u64,
    },
    /// An SSH_FXP_EXTENDED request this server does not know.
    UnknownExtended {
        name: &'a [u8],
    },
    /// A packet type this server does not know.
    Unknown {
        kind: u8,
    },
}

/// Reads big-endian integers and length-prefixed strings out of a packet.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }

    /// A string: a u32 length, then that many bytes (checked against what is left).
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn attrs(&mut self) -> Option<Attrs> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perm = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            // Extended attribute pairs are read and ignored; each takes at least 8 bytes, so the
            // loop is bounded by the packet's length whatever the count says.
            let count = self.u32()?;
            for _ in 0..count {
                self.string()?;
                self.string()?;
            }
        }
        Some(a)
    }
}

/// Decodes one packet's payload (type byte onwards). Bytes after the last field are ignored, as
/// OpenSSH's sftp-server does.
pub fn decode(payload: &[u8]) -> Result<(u32, Request<'_>), Malformed> {
    let mut r = Reader::new(payload);
    let kind = r.u8().ok_or(Malformed { id: None })?;
    if kind == FXP_INIT {
        let version = r.u32().ok_or(Malformed { id: None })?;
        return Ok((0, Request::Init { version }));
    }
    let id = r.u32().ok_or(Malformed { id: None })?;
    decode_body(kind, &mut r)
        .map(|req| (id, req))
        .ok_or(Malformed { id: Some(id) })
}

fn decode_body<'a>(kind: u8, r: &mut Reader<'a>) -> Option<Request<'a>> {
    Some(match kind {
        FXP_OPEN => Request::Open {
            path: r.string()?,
            pflags: r.u32()?,
            attrs: r.attrs()?,
        },
        FXP_CLOSE => Request::Close {
            handle: r.string()?,
        },
        FXP_READ => Request::Read {
            handle: r.string()?,
            offset: r.u64()?,
            len: r.u32()?,
        },
        FXP_WRITE => Request::Write {
            handle: r.string()?,
            offset: r.u64()?,
            data: r.string()?,
        },
        FXP_LSTAT => Request::Lstat { path: r.string()? },
        FXP_FSTAT => Request::Fstat {
            handle: r.string()?,
        },
        FXP_SETSTAT => Request::Setstat {
            path: r.string()?,
            attrs: r.attrs()?,
        },
        FXP_FSETSTAT => Request::Fsetstat {
            handle: r.string()?,
            attrs: r.attrs()?,
        },
        FXP_OPENDIR => Request::Opendir { path: r.string()? },
        FXP_READDIR => Request::Readdir {
            handle: r.string()?,
        },
        FXP_REMOVE => Request::Remove { path: r.string()? },
        FXP_MKDIR => Request::Mkdir {
            path: r.string()?,
            attrs: r.attrs()?,
        },
        FXP_RMDIR => Request::Rmdir { path: r.string()? },
        FXP_REALPATH => Request::Realpath { path: r.string()? },
        FXP_STAT => Request::Stat { path: r.string()? },
        FXP_RENAME => Request::Rename {
            from: r.string()?,
            to: r.string()?,
        },
        FXP_READLINK => Request::Readlink { path: r.string()? },
        FXP_SYMLINK => Request::Symlink {
            target: r.string()?,
            link: r.string()?,
        },
        FXP_EXTENDED => {
            let name = r.string()?;
            match name {
                b"posix-rename@openssh.com" => Request::PosixRename {
                    from: r.string()?,
                    to: r.string()?,
                },
                b"statvfs@openssh.com" => Request::Statvfs { path: r.string()? },
                b"fstatvfs@openssh.com" => Request::Fstatvfs {
                    handle: r.string()?,
                },
                b"hardlink@openssh.com" => Request::Hardlink {
                    from: r.string()?,
                    to: r.string()?,
                },
                b"fsync@openssh.com" => Request::Fsync {
                    handle: r.string()?,
                },
                b"lsetstat@openssh.com" => Request::Lsetstat {
                    path: r.string()?,
                    attrs: r.attrs()?,
                },
                b"limits@openssh.com" => Request::Limits,
                b"expand-path@openssh.com" => Request::ExpandPath { path: r.string()? },
                b"home-directory" => Request::HomeDirectory { user: r.string()? },
                b"copy-data" => Request::CopyData {
                    from: r.string()?,
                    from_offset: r.u64()?,
                    len: r.u64()?,
                    to: r.string()?,
                    to_offset: r.u64()?,
                },
                _ => Request::UnknownExtended { name },
            }
        }
        _ => Request::Unknown { kind },
    })
}

/// Appends wire-format values to an output buffer. A reply is started with [`begin`] and its
/// length filled in by [`finish`].
pub trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_string(&mut self, s: &[u8]);
    fn put_attrs(&mut self, a: &Attrs);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_string(&mut self, s: &[u8]) {
        // Strings come from file names and link targets (at most PATH_MAX) or from data bounded by
        // MAX_READ, far below u32::MAX; saturate rather than wrap all the same.
        self.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.extend_from_slice(s);
    }
    fn put_attrs(&mut self, a: &Attrs) {
        let mut flags = 0;
        if a.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if a.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if a.perm.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if a.times.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        self.put_u32(flags);
        if let Some(size) = a.size {
            self.put_u64(size);
        }
        if let Some((uid, gid)) = a.uid_gid {
            self.put_u32(uid);
            self.put_u32(gid);
        }
        if let Some(perm) = a.perm {
            self.put_u32(perm);
        }
        if let Some((atime, mtime)) = a.times {
            self.put_u32(atime);
            self.put_u32(mtime);
        }
    }
}

/// Starts a packet of type `kind` at the end of `out`; returns where it starts, for [`finish`].
pub fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(kind);
    start
}

/// Writes the length of the packet started at `start` (everything after its 4-byte header).
pub fn finish(out: &mut [u8], start: usize) {
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// A complete SSH_FXP_STATUS reply.
pub fn put_status(out: &mut Vec<u8>, id: u32, code: u32) {
    let start = begin(out, FXP_STATUS);
    out.put_u32(id);
    out.put_u32(code);
    out.put_string(status_message(code).as_bytes());
    out.put_string(b"");
    finish(out, start);
}

/// A complete SSH_FXP_VERSION reply with [`EXTENSIONS`].
pub fn put_version(out: &mut Vec<u8>) {
    let start = begin(out, FXP_VERSION);
    out.put_u32(VERSION);
    for (name, data) in EXTENSIONS {
        out.put_string(name.as_bytes());
        out.put_string(data.as_bytes());
    }
    finish(out, start);
}

/// One entry of an SSH_FXP_NAME reply.
pub struct NameEntry<'a> {
    pub filename: &'a [u8],
    pub longname: &'a [u8],
    pub attrs: &'a Attrs,
}

/// A complete SSH_FXP_NAME reply.
pub fn put_names(out: &mut Vec<u8>, id: u32, entries: &[NameEntry<'_>]) {
    let start = begin(out, FXP_NAME);
    out.put_u32(id);
    out.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
    for e in entries {
        out.put_string(e.filename);
        out.put_string(e.longname);
        out.put_attrs(e.attrs);
    }
    finish(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut p = vec![kind];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn s(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_string(v);
        out
    }

    #[test]
    fn frame_length_rejects_empty_and_oversized_before_allocating() {
        assert_eq!(frame_length(0u32.to_be_bytes()), Err(FrameError::Empty));
        assert_eq!(frame_length(1u32.to_be_bytes()), Ok(1));
        assert_eq!(
            frame_length((MAX_PACKET as u32).to_be_bytes()),
            Ok(MAX_PACKET)
        );
        assert_eq!(
            frame_length((MAX_PACKET as u32 + 1).to_be_bytes()),
            Err(FrameError::TooLong(MAX_PACKET as u32 + 1))
        );
        assert_eq!(
            frame_length(u32::MAX.to_be_bytes()),
            Err(FrameError::TooLong(u32::MAX))
        );
    }

    #[test]
    fn complete_packet_len_needs_the_whole_packet() {
        assert_eq!(complete_packet_len(&[0, 0, 0]), None);
        assert_eq!(complete_packet_len(&[0, 0, 0, 2, 9]), None);
        assert_eq!(complete_packet_len(&[0, 0, 0, 2, 9, 9]), Some(6));
        assert_eq!(complete_packet_len(&[0, 0, 0, 2, 9, 9, 7]), Some(6));
    }

    #[test]
    fn decodes_init_and_open_with_attrs() {
        let init = [FXP_INIT, 0, 0, 0, 3];
        assert_eq!(decode(&init), Ok((0, Request::Init { version: 3 })));

        let mut body = s(b"dir/file");
        body.put_u32(FXF_WRITE | FXF_CREAT | FXF_TRUNC);
        body.put_attrs(&Attrs {
            perm: Some(0o640),
            times: Some((1, 2)),
            ..Attrs::default()
        });
        let p = packet(FXP_OPEN, 7, &body);
        assert_eq!(
            decode(&p),
            Ok((
                7,
                Request::Open {
                    path: b"dir/file",
                    pflags: FXF_WRITE | FXF_CREAT | FXF_TRUNC,
                    attrs: Attrs {
                        perm: Some(0o640),
                        times: Some((1, 2)),
                        ..Attrs::default()
                    },
                }
            ))
        );
    }

    #[test]
    fn decodes_write_and_symlink_in_openssh_order() {
        let mut body = s(b"h1");
        body.put_u64(1 << 40);
        body.put_string(b"data");
        assert_eq!(
            decode(&packet(FXP_WRITE, 1, &body)),
            Ok((
                1,
                Request::Write {
                    handle: b"h1",
                    offset: 1 << 40,
                    data: b"data"
                }
            ))
        );
        let mut body = s(b"target");
        body.put_string(b"linkpath");
        assert_eq!(
            decode(&packet(FXP_SYMLINK, 2, &body)),
            Ok((
                2,
                Request::Symlink {
                    target: b"target",
                    link: b"linkpath"
                }
            ))
        );
    }

    #[test]
    fn decodes_extensions() {
        let mut body = s(b"posix-rename@openssh.com");
        body.put_string(b"a");
        body.put_string(b"b");
        assert_eq!(
            decode(&packet(FXP_EXTENDED, 3, &body)),
            Ok((
                3,
                Request::PosixRename {
                    from: b"a",
                    to: b"b"
                }
            ))
        );
        let body = s(b"limits@openssh.com");
        assert_eq!(
            decode(&packet(FXP_EXTENDED, 4, &body)),
            Ok((4, Request::Limits))
        );
        let body = s(b"nonsense@example.com");
        assert_eq!(
            decode(&packet(FXP_EXTENDED, 5, &body)),
            Ok((
                5,
                Request::UnknownExtended {
                    name: b"nonsense@example.com"
                }
            ))
        );
        assert_eq!(
            decode(&packet(99, 6, &[])),
            Ok((6, Request::Unknown { kind: 99 }))
        );
    }

    #[test]
    fn truncated_or_lying_lengths_are_malformed_with_the_id() {
        assert_eq!(decode(&[]), Err(Malformed { id: None }));
        assert_eq!(decode(&[FXP_OPEN, 0, 0]), Err(Malformed { id: None }));
        // A string claiming 4 GiB in a 20-byte packet.
        let mut body = Vec::new();
        body.put_u32(u32::MAX);
        body.extend_from_slice(b"short");
        assert_eq!(
            decode(&packet(FXP_STAT, 9, &body)),
            Err(Malformed { id: Some(9) })
        );
        // Attributes that announce a size but stop early.
        let mut body = s(b"p");
        body.put_u32(ATTR_SIZE);
        body.put_u32(1);
        assert_eq!(
            decode(&packet(FXP_SETSTAT, 10, &body)),
            Err(Malformed { id: Some(10) })
        );
        // An extended-attribute count far beyond what the packet holds.
        let mut body = s(b"p");
        body.put_u32(ATTR_EXTENDED);
        body.put_u32(u32::MAX);
        assert_eq!(
            decode(&packet(FXP_SETSTAT, 11, &body)),
            Err(Malformed { id: Some(11) })
        );
    }

    #[test]
    fn every_prefix_of_a_valid_packet_decodes_or_is_malformed() {
        let mut body = s(b"file");
        body.put_u32(FXF_READ);
        body.put_attrs(&Attrs {
            size: Some(5),
            uid_gid: Some((1, 2)),
            perm: Some(0o600),
            times: Some((3, 4)),
        });
        let p = packet(FXP_OPEN, 12, &body);
        for n in 0..p.len() {
            assert!(decode(&p[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        assert!(decode(&p).is_ok());
    }

    #[test]
    fn attrs_round_trip() {
        let a = Attrs {
            size: Some(123),
            uid_gid: Some((1000, 100)),
            perm: Some(0o100644),
            times: Some((10, 20)),
        };
        let mut buf = Vec::new();
        buf.put_attrs(&a);
        assert_eq!(buf.len(), 4 + 8 + 8 + 4 + 8);
        assert_eq!(Reader::new(&buf).attrs(), Some(a));
        let mut buf = Vec::new();
        buf.put_attrs(&Attrs::default());
        assert_eq!(buf, [0, 0, 0, 0]);
    }

    #[test]
    fn status_and_version_replies_are_framed() {
        let mut out = Vec::new();
        put_status(&mut out, 42, FX_NO_SUCH_FILE);
        let len = complete_packet_len(&out);
        assert_eq!(len, Some(out.len()));
        let mut r = Reader::new(&out[4..]);
        assert_eq!(r.u8(), Some(FXP_STATUS));
        assert_eq!(r.u32(), Some(42));
        assert_eq!(r.u32(), Some(FX_NO_SUCH_FILE));
        assert_eq!(r.string(), Some(&b"No such file"[..]));
        assert_eq!(r.string(), Some(&b""[..]));

        let mut out = Vec::new();
        put_version(&mut out);
        let mut r = Reader::new(&out[4..]);
        assert_eq!(r.u8(), Some(FXP_VERSION));
        assert_eq!(r.u32(), Some(3));
        let mut names = Vec::new();
        while let Some(name) = r.string() {
            names.push(String::from_utf8_lossy(name).into_owned());
            assert!(r.string().is_some());
        }
        assert!(names.contains(&"posix-rename@openssh.com".to_string()));
        assert!(names.contains(&"limits@openssh.com".to_string()));
    }

    #[test]
    fn names_reply_counts_entries() {
        let a = Attrs::default();
        let mut out = Vec::new();
        put_names(
            &mut out,
            5,
            &[
                NameEntry {
                    filename: b"a",
                    longname: b"la",
                    attrs: &a,
                },
                NameEntry {
                    filename: b"b",
                    longname: b"lb",
                    attrs: &a,
                },
            ],
        );
        let mut r = Reader::new(&out[4..]);
        assert_eq!(r.u8(), Some(FXP_NAME));
        assert_eq!(r.u32(), Some(5));
        assert_eq!(r.u32(), Some(2));
        assert_eq!(r.string(), Some(&b"a"[..]));
        assert_eq!(r.string(), Some(&b"la"[..]));
        assert_eq!(r.attrs(), Some(Attrs::default()));
    }
}
