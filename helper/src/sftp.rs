//! `podspawn-helper sftp-server`: an SFTP version 3 server on stdin/stdout, like OpenSSH's
//! sftp-server, for images that have none. It runs as the session's user (no privilege handling);
//! the kernel applies the umask to every file and directory it creates.
//!
//! Memory is bounded: packets above [`wire::MAX_PACKET`] end the session before anything is
//! allocated for them, at most [`MAX_HANDLES`] handles are open, and replies are flushed once
//! [`OUT_FLUSH`] bytes are pending. Input and output are buffered: the output is written when no
//! further complete request is waiting, so a pipelined transfer costs one write per reply batch.

use crate::names::{self, LongInfo, Names};
use crate::wire::{self, Attrs, Malformed, NameEntry, Put, Request};
use nix::errno::Errno;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, FileTimes, Metadata, OpenOptions, ReadDir};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Open file and directory handles at most (announced in limits@openssh.com).
pub const MAX_HANDLES: usize = 256;
/// Entries per READDIR reply (as OpenSSH); about 60 KiB at most, well inside a packet.
const READDIR_BATCH: usize = 100;
/// Pending reply bytes that trigger a write even while more requests are waiting.
const OUT_FLUSH: usize = 256 * 1024;
/// Input buffer: two full packets, so a pipelined upload is read in large chunks.
const IN_BUF: usize = 2 * wire::MAX_PACKET + 8;

/// Why a session ended other than by the client closing its end.
#[derive(Debug)]
pub enum SessionError {
    Io(io::Error),
    Frame(wire::FrameError),
    Protocol(&'static str),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "i/o error: {e}"),
            SessionError::Frame(e) => write!(f, "{e}"),
            SessionError::Protocol(m) => write!(f, "{m}"),
        }
    }
}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> Self {
        SessionError::Io(e)
    }
}

enum Handle {
    File(File),
    Dir(DirHandle),
}

struct DirHandle {
    path: PathBuf,
    iter: ReadDir,
    /// "." and ".." are sent first, as readdir(3) returns them and OpenSSH's server passes them on.
    dots_sent: bool,
}

struct Slot {
    generation: u32,
    handle: Handle,
}

pub struct Server {
    slots: Vec<Option<Slot>>,
    generation: u32,
    names: Option<Names>,
    /// Where etc/passwd and etc/group are read from ("/" outside tests).
    etc_root: PathBuf,
    /// The home directory, for `~` in expand-path@openssh.com.
    home: PathBuf,
    initialized: bool,
    out: Vec<u8>,
}

fn path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// The SFTP status code for an OS error (OpenSSH's errno_to_portable).
fn code_of_errno(errno: i32) -> u32 {
    match Errno::from_raw(errno) {
        Errno::ENOENT | Errno::ENOTDIR | Errno::EBADF | Errno::ELOOP => wire::FX_NO_SUCH_FILE,
        Errno::EPERM | Errno::EACCES | Errno::EFAULT => wire::FX_PERMISSION_DENIED,
        Errno::ENAMETOOLONG | Errno::EINVAL => wire::FX_BAD_MESSAGE,
        Errno::ENOSYS => wire::FX_OP_UNSUPPORTED,
        _ => wire::FX_FAILURE,
    }
}

fn code(e: io::Error) -> u32 {
    match e.raw_os_error() {
        Some(errno) => code_of_errno(errno),
        // Not from the kernel: a path with a NUL byte, or open flags std refuses to combine.
        None if e.kind() == io::ErrorKind::InvalidInput => wire::FX_BAD_MESSAGE,
        None => wire::FX_FAILURE,
    }
}

fn ncode(e: Errno) -> u32 {
    code_of_errno(e as i32)
}

fn attrs_of(m: &Metadata) -> Attrs {
    Attrs {
        size: Some(m.size()),
        uid_gid: Some((m.uid(), m.gid())),
        perm: Some(m.mode()),
        // The v3 wire format has 32-bit times; OpenSSH truncates the same way.
        times: Some((m.atime() as u32, m.mtime() as u32)),
    }
}

fn long_info(m: &Metadata) -> LongInfo {
    LongInfo {
        mode: m.mode(),
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: m.mtime(),
    }
}

fn system_time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

fn timeval(secs: u32) -> nix::sys::time::TimeVal {
    nix::sys::time::TimeVal::new(i64::from(secs), 0)
}

/// realpath for SFTP: like realpath(3), but a missing last component is allowed (clients ask for
/// the canonical name of a file they are about to create).
fn resolve(p: &Path) -> io::Result<PathBuf> {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    match fs::canonicalize(p) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                return Err(e);
            };
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(fs::canonicalize(parent)?.join(name))
        }
        Err(e) => Err(e),
    }
}

impl Server {
    /// A server that reads user and group names from `<etc_root>/etc/{passwd,group}` and expands
    /// `~` to `home`.
    pub fn new(etc_root: PathBuf, home: PathBuf) -> Server {
        Server {
            slots: Vec::new(),
            generation: 0,
            names: None,
            etc_root,
            home,
            initialized: false,
            out: Vec::with_capacity(OUT_FLUSH + wire::MAX_PACKET),
        }
    }

    /// Serves requests from `input` until the client closes it. Errors end the session: I/O
    /// errors, a packet above the size limit, a packet too short to carry a request id.
    pub fn serve<R: Read, W: Write>(
        &mut self,
        input: R,
        mut output: W,
    ) -> Result<(), SessionError> {
        let mut rd = BufReader::with_capacity(IN_BUF, input);
        let mut payload: Vec<u8> = Vec::new();
        loop {
            if wire::complete_packet_len(rd.buffer()).is_none() {
                // Nothing more to do without blocking: send what is pending first.
                self.flush(&mut output)?;
            }
            let mut header = [0u8; 4];
            if !read_header(&mut rd, &mut header)? {
                self.flush(&mut output)?;
                return Ok(());
            }
            let len = wire::frame_length(header).map_err(SessionError::Frame)?;
            payload.resize(len, 0);
            rd.read_exact(&mut payload)?;
            self.handle_packet(&payload)?;
            if self.out.len() >= OUT_FLUSH {
                self.flush(&mut output)?;
            }
        }
    }

    fn flush<W: Write>(&mut self, output: &mut W) -> io::Result<()> {
        if !self.out.is_empty() {
            output.write_all(&self.out)?;
            output.flush()?;
            self.out.clear();
        }
        Ok(())
    }

    fn status(&mut self, id: u32, code: u32) {
        wire::put_status(&mut self.out, id, code);
    }

    /// Handles one request; replies go to the output buffer.
    pub fn handle_packet(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let (id, req) = match wire::decode(payload) {
            Ok(r) => r,
            Err(Malformed { id: Some(id) }) if self.initialized => {
                self.status(id, wire::FX_BAD_MESSAGE);
                return Ok(());
            }
            Err(_) => return Err(SessionError::Protocol("malformed packet")),
        };
        if let Request::Init { .. } = req {
            if self.initialized {
                return Err(SessionError::Protocol("second SSH_FXP_INIT"));
            }
            self.initialized = true;
            wire::put_version(&mut self.out);
            return Ok(());
        }
        if !self.initialized {
            return Err(SessionError::Protocol("request before SSH_FXP_INIT"));
        }
        if let Err(code) = self.dispatch(id, req) {
            self.status(id, code);
        }
        Ok(())
    }

    /// Runs a request; a successful one has written its reply, a failed one returns the status
    /// code to send.
    fn dispatch(&mut self, id: u32, req: Request<'_>) -> Result<(), u32> {
        match req {
            Request::Init { .. } => Err(wire::FX_BAD_MESSAGE),
            Request::Open {
                path: p,
                pflags,
                attrs,
            } => self.open(id, path(p), pflags, &attrs),
            Request::Close { handle } => {
                self.take_handle(handle).ok_or(wire::FX_FAILURE)?;
                self.ok(id)
            }
            Request::Read {
                handle,
                offset,
                len,
            } => self.read(id, handle, offset, len),
            Request::Write {
                handle,
                offset,
                data,
            } => {
                let f = self.file(handle)?;
                f.write_all_at(data, offset).map_err(code)?;
                self.ok(id)
            }
            Request::Lstat { path: p } => {
                let m = fs::symlink_metadata(path(p)).map_err(code)?;
                self.attrs_reply(id, &attrs_of(&m))
            }
            Request::Stat { path: p } => {
                let m = fs::metadata(path(p)).map_err(code)?;
                self.attrs_reply(id, &attrs_of(&m))
            }
            Request::Fstat { handle } => {
                let m = match self.handle(handle)? {
                    Handle::File(f) => f.metadata(),
                    Handle::Dir(d) => fs::metadata(&d.path),
                }
                .map_err(code)?;
                self.attrs_reply(id, &attrs_of(&m))
            }
            Request::Setstat { path: p, attrs } => {
                setstat(path(p), &attrs)?;
                self.ok(id)
            }
            Request::Lsetstat { path: p, attrs } => {
                lsetstat(path(p), &attrs)?;
                self.ok(id)
            }
            Request::Fsetstat { handle, attrs } => {
                match self.handle(handle)? {
                    Handle::File(f) => fsetstat(f, &attrs)?,
                    Handle::Dir(d) => setstat(&d.path, &attrs)?,
                }
                self.ok(id)
            }
            Request::Opendir { path: p } => {
                let iter = fs::read_dir(path(p)).map_err(code)?;
                let h = Handle::Dir(DirHandle {
                    path: path(p).to_path_buf(),
                    iter,
                    dots_sent: false,
                });
                self.handle_reply(id, h)
            }
            Request::Readdir { handle } => self.readdir(id, handle),
            Request::Remove { path: p } => {
                fs::remove_file(path(p)).map_err(code)?;
                self.ok(id)
            }
            Request::Mkdir { path: p, attrs } => {
                DirBuilder::new()
                    .mode(attrs.perm.map_or(0o777, |m| m & 0o7777))
                    .create(path(p))
                    .map_err(code)?;
                self.ok(id)
            }
            Request::Rmdir { path: p } => {
                fs::remove_dir(path(p)).map_err(code)?;
                self.ok(id)
            }
            Request::Realpath { path: p } => {
                let r = resolve(path(p)).map_err(code)?;
                self.single_name(id, r.as_os_str().as_bytes())
            }
            Request::Rename { from, to } => {
                rename_no_replace(path(from), path(to))?;
                self.ok(id)
            }
            Request::PosixRename { from, to } => {
                fs::rename(path(from), path(to)).map_err(code)?;
                self.ok(id)
            }
            Request::Readlink { path: p } => {
                let target = fs::read_link(path(p)).map_err(code)?;
                self.single_name(id, target.as_os_str().as_bytes())
            }
            Request::Symlink { target, link } => {
                std::os::unix::fs::symlink(path(target), path(link)).map_err(code)?;
                self.ok(id)
            }
            Request::Hardlink { from, to } => {
                fs::hard_link(path(from), path(to)).map_err(code)?;
                self.ok(id)
            }
            Request::Fsync { handle } => {
                self.file(handle)?.sync_all().map_err(code)?;
                self.ok(id)
            }
            Request::Statvfs { path: p } => {
                let st = nix::sys::statvfs::statvfs(path(p)).map_err(ncode)?;
                self.statvfs_reply(id, &st)
            }
            Request::Fstatvfs { handle } => {
                let st = match self.handle(handle)? {
                    Handle::File(f) => nix::sys::statvfs::fstatvfs(&*f),
                    Handle::Dir(d) => nix::sys::statvfs::statvfs(&d.path),
                }
                .map_err(ncode)?;
                self.statvfs_reply(id, &st)
            }
            Request::Limits => {
                let start = wire::begin(&mut self.out, wire::FXP_EXTENDED_REPLY);
                self.out.put_u32(id);
                self.out.put_u64(wire::MAX_PACKET as u64);
                self.out.put_u64(u64::from(wire::MAX_READ));
                self.out.put_u64(u64::from(wire::MAX_READ));
                self.out.put_u64(MAX_HANDLES as u64);
                wire::finish(&mut self.out, start);
                Ok(())
            }
            Request::ExpandPath { path: p } => {
                let expanded = self.expand_tilde(p)?;
                let r = resolve(&expanded).map_err(code)?;
                self.single_name(id, r.as_os_str().as_bytes())
            }
            Request::HomeDirectory { user } => {
                let home = if user.is_empty() {
                    self.home.as_os_str().as_bytes().to_vec()
                } else {
                    let user = std::str::from_utf8(user).map_err(|_| wire::FX_NO_SUCH_FILE)?;
                    self.names()
                        .home_of(user)
                        .ok_or(wire::FX_NO_SUCH_FILE)?
                        .to_vec()
                };
                self.single_name(id, &home)
            }
            Request::CopyData {
                from,
                from_offset,
                len,
                to,
                to_offset,
            } => {
                self.copy_data(from, from_offset, len, to, to_offset)?;
                self.ok(id)
            }
            Request::UnknownExtended { .. } | Request::Unknown { .. } => {
                Err(wire::FX_OP_UNSUPPORTED)
            }
        }
    }

    fn names(&mut self) -> &Names {
        let root = &self.etc_root;
        self.names.get_or_insert_with(|| Names::load(root))
    }

    /// `~` and `~/x` expand to the home directory, `~user` and `~user/x` to that user's home
    /// from the passwd file; anything else is returned as it is.
    fn expand_tilde(&mut self, p: &[u8]) -> Result<PathBuf, u32> {
        let Some(rest) = p.strip_prefix(b"~") else {
            return Ok(path(p).to_path_buf());
        };
        let (user, tail) = match rest.iter().position(|&b| b == b'/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        let home = if user.is_empty() {
            self.home.clone()
        } else {
            let user = std::str::from_utf8(user).map_err(|_| wire::FX_NO_SUCH_FILE)?;
            path(self.names().home_of(user).ok_or(wire::FX_NO_SUCH_FILE)?).to_path_buf()
        };
        Ok(if tail.is_empty() {
            home
        } else {
            home.join(path(tail))
        })
    }

    fn ok(&mut self, id: u32) -> Result<(), u32> {
        self.status(id, wire::FX_OK);
        Ok(())
    }

    fn attrs_reply(&mut self, id: u32, a: &Attrs) -> Result<(), u32> {
        let start = wire::begin(&mut self.out, wire::FXP_ATTRS);
        self.out.put_u32(id);
        self.out.put_attrs(a);
        wire::finish(&mut self.out, start);
        Ok(())
    }

    /// A NAME reply of one entry, as for REALPATH and READLINK: the name in both the filename
    /// and longname fields, no attributes.
    fn single_name(&mut self, id: u32, name: &[u8]) -> Result<(), u32> {
        let attrs = Attrs::default();
        wire::put_names(
            &mut self.out,
            id,
            &[NameEntry {
                filename: name,
                longname: name,
                attrs: &attrs,
            }],
        );
        Ok(())
    }

    fn statvfs_reply(&mut self, id: u32, st: &nix::sys::statvfs::Statvfs) -> Result<(), u32> {
        use nix::sys::statvfs::FsFlags;
        let mut flag = 0u64;
        if st.flags().contains(FsFlags::ST_RDONLY) {
            flag |= 0x1;
        }
        if st.flags().contains(FsFlags::ST_NOSUID) {
            flag |= 0x2;
        }
        let start = wire::begin(&mut self.out, wire::FXP_EXTENDED_REPLY);
        self.out.put_u32(id);
        for v in [
            st.block_size(),
            st.fragment_size(),
            st.blocks(),
            st.blocks_free(),
            st.blocks_available(),
            st.files(),
            st.files_free(),
            st.files_available(),
            st.filesystem_id(),
        ] {
            self.out.put_u64(v);
        }
        self.out.put_u64(flag);
        self.out.put_u64(st.name_max());
        wire::finish(&mut self.out, start);
        Ok(())
    }

    fn handle_reply(&mut self, id: u32, h: Handle) -> Result<(), u32> {
        let token = self.alloc_handle(h).ok_or(wire::FX_FAILURE)?;
        let start = wire::begin(&mut self.out, wire::FXP_HANDLE);
        self.out.put_u32(id);
        self.out.put_string(&token);
        wire::finish(&mut self.out, start);
        Ok(())
    }

    fn open(&mut self, id: u32, p: &Path, pflags: u32, attrs: &Attrs) -> Result<(), u32> {
        if self.slots.iter().all(Option::is_some) && self.slots.len() >= MAX_HANDLES {
            return Err(wire::FX_FAILURE);
        }
        let mut o = OpenOptions::new();
        o.read(pflags & wire::FXF_READ != 0)
            .write(pflags & wire::FXF_WRITE != 0)
            .append(pflags & wire::FXF_APPEND != 0)
            .truncate(pflags & wire::FXF_TRUNC != 0)
            .mode(attrs.perm.map_or(0o666, |m| m & 0o7777));
        if pflags & wire::FXF_CREAT != 0 {
            if pflags & wire::FXF_EXCL != 0 {
                o.create_new(true);
            } else {
                o.create(true);
            }
        }
        let f = o.open(p).map_err(code)?;
        self.handle_reply(id, Handle::File(f))
    }

    fn read(&mut self, id: u32, handle: &[u8], offset: u64, len: u32) -> Result<(), u32> {
        let len = len.min(wire::MAX_READ) as usize;
        // Borrow the file and the output buffer separately: the data is read straight into the
        // reply, no intermediate copy.
        let f = match lookup(&mut self.slots, handle) {
            Some(Handle::File(f)) => f,
            _ => return Err(wire::FX_FAILURE),
        };
        let out = &mut self.out;
        let start = wire::begin(out, wire::FXP_DATA);
        out.put_u32(id);
        let len_at = out.len();
        out.put_u32(0);
        let data_at = out.len();
        out.resize(data_at + len, 0);
        match f.read_at(&mut out[data_at..], offset) {
            Ok(0) if len > 0 => {
                out.truncate(start);
                Err(wire::FX_EOF)
            }
            Ok(n) => {
                out.truncate(data_at + n);
                out[len_at..data_at].copy_from_slice(&(n as u32).to_be_bytes());
                wire::finish(out, start);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(code(e))
            }
        }
    }

    /// copy-data: copies inside the container, in chunks, so `cp` in a client does not move the
    /// data over the connection twice. Overlapping ranges of the same file are refused.
    fn copy_data(
        &mut self,
        from: &[u8],
        from_offset: u64,
        len: u64,
        to: &[u8],
        to_offset: u64,
    ) -> Result<(), u32> {
        if from == to {
            let end = |o: u64| {
                if len == 0 {
                    u64::MAX
                } else {
                    o.saturating_add(len)
                }
            };
            if from_offset < end(to_offset) && to_offset < end(from_offset) {
                return Err(wire::FX_FAILURE);
            }
        }
        let src = self.file(from)?.try_clone().map_err(code)?;
        let dst = self.file(to)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while len == 0 || done < len {
            let want = if len == 0 {
                buf.len()
            } else {
                buf.len()
                    .min(usize::try_from(len - done).unwrap_or(usize::MAX))
            };
            let n = src
                .read_at(&mut buf[..want], from_offset.saturating_add(done))
                .map_err(code)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], to_offset.saturating_add(done))
                .map_err(code)?;
            done += n as u64;
        }
        Ok(())
    }

    fn readdir(&mut self, id: u32, handle: &[u8]) -> Result<(), u32> {
        let names = self
            .names
            .get_or_insert_with(|| Names::load(&self.etc_root));
        let d = match lookup(&mut self.slots, handle) {
            Some(Handle::Dir(d)) => d,
            _ => return Err(wire::FX_FAILURE),
        };
        let now = names::now();
        let entry = |name: &[u8], m: &Metadata| {
            let long = names::longname(names, &long_info(m), name, now);
            (name.to_vec(), long, attrs_of(m))
        };
        let mut entries: Vec<(Vec<u8>, Vec<u8>, Attrs)> = Vec::new();
        if !d.dots_sent {
            d.dots_sent = true;
            for dot in [&b"."[..], b".."] {
                if let Ok(m) = fs::symlink_metadata(d.path.join(path(dot))) {
                    entries.push(entry(dot, &m));
                }
            }
        }
        while entries.len() < READDIR_BATCH {
            match d.iter.next() {
                None => break,
                Some(Ok(e)) => {
                    // An entry removed since the directory was read is skipped, as OpenSSH does.
                    if let Ok(m) = fs::symlink_metadata(e.path()) {
                        entries.push(entry(e.file_name().as_bytes(), &m));
                    }
                }
                Some(Err(e)) if entries.is_empty() => return Err(code(e)),
                Some(Err(_)) => break,
            }
        }
        if entries.is_empty() {
            return Err(wire::FX_EOF);
        }
        let list: Vec<NameEntry<'_>> = entries
            .iter()
            .map(|(f, l, a)| NameEntry {
                filename: f,
                longname: l,
                attrs: a,
            })
            .collect();
        wire::put_names(&mut self.out, id, &list);
        Ok(())
    }

    fn alloc_handle(&mut self, h: Handle) -> Option<[u8; 8]> {
        self.generation = self.generation.wrapping_add(1);
        let slot = Slot {
            generation: self.generation,
            handle: h,
        };
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None if self.slots.len() < MAX_HANDLES => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
            None => return None,
        };
        let mut token = [0u8; 8];
        token[..4].copy_from_slice(&(index as u32).to_be_bytes());
        token[4..].copy_from_slice(&self.generation.to_be_bytes());
        Some(token)
    }

    fn handle(&mut self, token: &[u8]) -> Result<&mut Handle, u32> {
        lookup(&mut self.slots, token).ok_or(wire::FX_FAILURE)
    }

    fn file(&mut self, token: &[u8]) -> Result<&mut File, u32> {
        match self.handle(token)? {
            Handle::File(f) => Ok(f),
            Handle::Dir(_) => Err(wire::FX_FAILURE),
        }
    }

    fn take_handle(&mut self, token: &[u8]) -> Option<Handle> {
        let (index, generation) = parse_token(token)?;
        let slot = self.slots.get_mut(index)?;
        if slot.as_ref()?.generation != generation {
            return None;
        }
        slot.take().map(|s| s.handle)
    }

    /// Open handles (for tests of the handle limit).
    pub fn open_handles(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Takes the replies written so far (for tests driving [`Server::handle_packet`]).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

fn parse_token(token: &[u8]) -> Option<(usize, u32)> {
    let token: [u8; 8] = token.try_into().ok()?;
    let index = u32::from_be_bytes([token[0], token[1], token[2], token[3]]) as usize;
    let generation = u32::from_be_bytes([token[4], token[5], token[6], token[7]]);
    Some((index, generation))
}

fn lookup<'a>(slots: &'a mut [Option<Slot>], token: &[u8]) -> Option<&'a mut Handle> {
    let (index, generation) = parse_token(token)?;
    match slots.get_mut(index)? {
        Some(s) if s.generation == generation => Some(&mut s.handle),
        _ => None,
    }
}

/// Reads a 4-byte header; `false` on a clean end of input before its first byte.
fn read_header<R: Read>(rd: &mut BufReader<R>, header: &mut [u8; 4]) -> io::Result<bool> {
    if rd.fill_buf()?.is_empty() {
        return Ok(false);
    }
    rd.read_exact(header)?;
    Ok(true)
}

/// SETSTAT in OpenSSH's order: size, permissions, times, owner.
fn setstat(p: &Path, a: &Attrs) -> Result<(), u32> {
    if let Some(size) = a.size {
        let size = i64::try_from(size).map_err(|_| wire::FX_BAD_MESSAGE)?;
        nix::unistd::truncate(p, size).map_err(ncode)?;
    }
    if let Some(perm) = a.perm {
        fs::set_permissions(p, fs::Permissions::from_mode(perm & 0o7777)).map_err(code)?;
    }
    if let Some((atime, mtime)) = a.times {
        nix::sys::stat::utimes(p, &timeval(atime), &timeval(mtime)).map_err(ncode)?;
    }
    if let Some((uid, gid)) = a.uid_gid {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(code)?;
    }
    Ok(())
}

/// lsetstat@openssh.com: SETSTAT that does not follow a final symlink. Linux cannot change a
/// symlink's mode and there is no ltruncate, so those are refused as OpenSSH's server does.
fn lsetstat(p: &Path, a: &Attrs) -> Result<(), u32> {
    if a.size.is_some() {
        return Err(wire::FX_OP_UNSUPPORTED);
    }
    if let Some(perm) = a.perm {
        let m = fs::symlink_metadata(p).map_err(code)?;
        if m.file_type().is_symlink() {
            return Err(wire::FX_OP_UNSUPPORTED);
        }
        fs::set_permissions(p, fs::Permissions::from_mode(perm & 0o7777)).map_err(code)?;
    }
    if let Some((atime, mtime)) = a.times {
        nix::sys::stat::lutimes(p, &timeval(atime), &timeval(mtime)).map_err(ncode)?;
    }
    if let Some((uid, gid)) = a.uid_gid {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(code)?;
    }
    Ok(())
}

fn fsetstat(f: &File, a: &Attrs) -> Result<(), u32> {
    if let Some(size) = a.size {
        f.set_len(size).map_err(code)?;
    }
    if let Some(perm) = a.perm {
        f.set_permissions(fs::Permissions::from_mode(perm & 0o7777))
            .map_err(code)?;
    }
    if let Some((atime, mtime)) = a.times {
        let times = FileTimes::new()
            .set_accessed(system_time(atime))
            .set_modified(system_time(mtime));
        f.set_times(times).map_err(code)?;
    }
    if let Some((uid, gid)) = a.uid_gid {
        std::os::unix::fs::fchown(f, Some(uid), Some(gid)).map_err(code)?;
    }
    Ok(())
}

/// SSH_FXP_RENAME never replaces an existing target (draft-02; OpenSSH's posix-rename is the
/// replacing one). As OpenSSH: a regular file is hard-linked to the new name and then unlinked,
/// which fails atomically if the target exists; where links are not supported, and for other
/// file types, the target is checked first.
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), u32> {
    let m = fs::symlink_metadata(from).map_err(code)?;
    if m.file_type().is_file() {
        match fs::hard_link(from, to) {
            Ok(()) => {
                if let Err(e) = fs::remove_file(from) {
                    let _ = fs::remove_file(to);
                    return Err(code(e));
                }
                return Ok(());
            }
            Err(e)
                if !matches!(
                    e.raw_os_error().map(Errno::from_raw),
                    Some(Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EXDEV | Errno::EPERM)
                ) =>
            {
                return Err(code(e));
            }
            Err(_) => {}
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(wire::FX_FAILURE);
    }
    fs::rename(from, to).map_err(code)
}

/// The directory relative paths resolve against: `$HOME`, else the passwd file's entry for the
/// current uid, else the current directory.
pub fn home_dir(names: &Names) -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(h) = names.home_of_uid(nix::unistd::getuid().as_raw()) {
        return path(h).to_path_buf();
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut p = vec![kind];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn init() -> Vec<u8> {
        vec![wire::FXP_INIT, 0, 0, 0, 3]
    }

    /// Splits a reply stream into (type, id) pairs.
    fn replies(mut out: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(n) = wire::complete_packet_len(out) {
            let p = &out[4..n];
            let id = if p[0] == wire::FXP_VERSION {
                0
            } else {
                u32::from_be_bytes([p[1], p[2], p[3], p[4]])
            };
            v.push((p[0], id, p[5..].to_vec()));
            out = &out[n..];
        }
        assert!(out.is_empty(), "trailing partial reply");
        v
    }

    fn server() -> Server {
        Server::new(PathBuf::from("/nonexistent"), PathBuf::from("/"))
    }

    #[test]
    fn malformed_request_gets_bad_message_and_the_session_goes_on() {
        let mut s = server();
        let mut input = framed(&init());
        input.extend(framed(&pkt(
            wire::FXP_STAT,
            7,
            &[0xff, 0xff, 0xff, 0xff, b'x'],
        )));
        let mut body = Vec::new();
        body.put_string(b"/");
        input.extend(framed(&pkt(wire::FXP_STAT, 8, &body)));
        let mut out = Vec::new();
        s.serve(&input[..], &mut out).expect("clean end");
        let r = replies(&out);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].0, wire::FXP_VERSION);
        assert_eq!((r[1].0, r[1].1), (wire::FXP_STATUS, 7));
        assert_eq!(&r[1].2[..4], &wire::FX_BAD_MESSAGE.to_be_bytes());
        assert_eq!((r[2].0, r[2].1), (wire::FXP_ATTRS, 8));
    }

    #[test]
    fn oversized_packet_ends_the_session_without_reading_it() {
        let mut s = server();
        let mut input = framed(&init());
        input.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut out = Vec::new();
        let e = s.serve(&input[..], &mut out).expect_err("must end");
        assert!(
            matches!(e, SessionError::Frame(wire::FrameError::TooLong(_))),
            "{e}"
        );
        // The VERSION reply was still sent before the session ended.
        assert_eq!(replies(&out).len(), 1);
    }

    #[test]
    fn requests_before_init_end_the_session() {
        let mut s = server();
        let mut body = Vec::new();
        body.put_string(b"/");
        let input = framed(&pkt(wire::FXP_STAT, 1, &body));
        let e = s.serve(&input[..], Vec::new()).expect_err("must end");
        assert!(matches!(e, SessionError::Protocol(_)));
    }

    #[test]
    fn unknown_requests_are_unsupported_and_bad_handles_fail() {
        let mut s = server();
        s.handle_packet(&init()).expect("init");
        s.handle_packet(&pkt(77, 1, &[])).expect("unknown type");
        let mut body = Vec::new();
        body.put_string(b"frobnicate@example.com");
        s.handle_packet(&pkt(wire::FXP_EXTENDED, 2, &body))
            .expect("unknown extension");
        let mut body = Vec::new();
        body.put_string(b"not-a-handle");
        body.put_u64(0);
        body.put_u32(10);
        s.handle_packet(&pkt(wire::FXP_READ, 3, &body))
            .expect("read");
        let r = replies(&s.take_output());
        let codes: Vec<(u32, [u8; 4])> = r[1..]
            .iter()
            .map(|(_, id, b)| (*id, [b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            codes,
            vec![
                (1, wire::FX_OP_UNSUPPORTED.to_be_bytes()),
                (2, wire::FX_OP_UNSUPPORTED.to_be_bytes()),
                (3, wire::FX_FAILURE.to_be_bytes()),
            ]
        );
    }

    #[test]
    fn handle_limit_is_enforced_and_closed_handles_are_stale() {
        let mut s = server();
        s.handle_packet(&init()).expect("init");
        let mut body = Vec::new();
        body.put_string(b"/");
        for id in 0..(MAX_HANDLES as u32 + 3) {
            s.handle_packet(&pkt(wire::FXP_OPENDIR, id, &body))
                .expect("opendir");
        }
        assert_eq!(s.open_handles(), MAX_HANDLES);
        let r = replies(&s.take_output());
        let failures = r.iter().filter(|(t, _, _)| *t == wire::FXP_STATUS).count();
        assert_eq!(failures, 3);
        // Close the first handle, then try to use it again.
        let (_, _, first) = &r[1];
        let token = &first[4..12];
        let mut body = Vec::new();
        body.put_string(token);
        s.handle_packet(&pkt(wire::FXP_CLOSE, 900, &body))
            .expect("close");
        s.handle_packet(&pkt(wire::FXP_READDIR, 901, &body))
            .expect("readdir");
        let r = replies(&s.take_output());
        assert_eq!(&r[0].2[..4], &wire::FX_OK.to_be_bytes());
        assert_eq!(&r[1].2[..4], &wire::FX_FAILURE.to_be_bytes());
        assert_eq!(s.open_handles(), MAX_HANDLES - 1);
    }

    #[test]
    fn tilde_expansion_uses_home_and_the_passwd_file() {
        let mut s = server();
        s.names = Some(Names::parse(b"bob:x:1:1::/home/bob:/bin/sh\n", b""));
        s.home = PathBuf::from("/home/me");
        assert_eq!(s.expand_tilde(b"~"), Ok(PathBuf::from("/home/me")));
        assert_eq!(s.expand_tilde(b"~/a/b"), Ok(PathBuf::from("/home/me/a/b")));
        assert_eq!(s.expand_tilde(b"~bob/x"), Ok(PathBuf::from("/home/bob/x")));
        assert_eq!(s.expand_tilde(b"~nobody"), Err(wire::FX_NO_SUCH_FILE));
        assert_eq!(s.expand_tilde(b"rel/~x"), Ok(PathBuf::from("rel/~x")));
    }
}
