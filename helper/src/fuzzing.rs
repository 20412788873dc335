//! Entry point for the SFTP fuzz target in `fuzz/` (cargo-fuzz) and for the test that replays its
//! seeds and past crash inputs (`helper/tests/fuzz_seeds.rs`). Not an API.
//!
//! The input is what a client sends: SFTP packets (4-byte length, payload). They are served by a
//! real [`Server`] in a scratch directory, which becomes the process's working directory. So
//! that arbitrary requests cannot touch anything else on the machine, an input is skipped unless
//! every path in it is relative and has no `..` component (symlink targets included), and sizes
//! and offsets are kept small so that no request makes a huge (sparse) file to copy.

use crate::names::Names;
use crate::sftp::Server;
use crate::wire::{self, Attrs, Request};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Inputs longer than this are ignored.
pub const MAX_INPUT: usize = 1024 * 1024;
/// Largest size or offset an input may use.
const MAX_OFFSET: u64 = 1024 * 1024;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
const GROUP: &str = "root:x:0:\nalice:x:1000:\n";

fn sandboxed(p: &[u8]) -> bool {
    !p.starts_with(b"/") && !p.split(|&b| b == b'/').any(|c| c == b"..")
}

fn small(a: &Attrs) -> bool {
    a.size.is_none_or(|s| s <= MAX_OFFSET)
}

/// Whether a request stays inside the working directory and small.
fn allowed(req: &Request<'_>) -> bool {
    match req {
        Request::Open { path, attrs, .. }
        | Request::Setstat { path, attrs }
        | Request::Lsetstat { path, attrs }
        | Request::Mkdir { path, attrs } => sandboxed(path) && small(attrs),
        Request::Fsetstat { attrs, .. } => small(attrs),
        Request::Lstat { path }
        | Request::Stat { path }
        | Request::Opendir { path }
        | Request::Remove { path }
        | Request::Rmdir { path }
        | Request::Realpath { path }
        | Request::Readlink { path }
        | Request::Statvfs { path }
        | Request::ExpandPath { path } => sandboxed(path),
        Request::Rename { from, to }
        | Request::PosixRename { from, to }
        | Request::Hardlink { from, to } => sandboxed(from) && sandboxed(to),
        Request::Symlink { target, link } => sandboxed(target) && sandboxed(link),
        Request::Write { offset, data, .. } => {
            offset.saturating_add(data.len() as u64) <= 2 * MAX_OFFSET
        }
        Request::CopyData {
            from_offset,
            len,
            to_offset,
            ..
        } => {
            *len != 0
                && *len <= MAX_OFFSET
                && *from_offset <= MAX_OFFSET
                && *to_offset <= MAX_OFFSET
        }
        Request::Init { .. }
        | Request::Close { .. }
        | Request::Read { .. }
        | Request::Fstat { .. }
        | Request::Readdir { .. }
        | Request::Fstatvfs { .. }
        | Request::Fsync { .. }
        | Request::Limits
        | Request::HomeDirectory { .. }
        | Request::UnknownExtended { .. }
        | Request::Unknown { .. } => true,
    }
}

/// Whether every packet of the input (as the server will frame it) is [`allowed`].
fn input_allowed(mut data: &[u8]) -> bool {
    while let Some(n) = wire::complete_packet_len(data) {
        if let Ok((_, req)) = wire::decode(&data[4..n]) {
            if !allowed(&req) {
                return false;
            }
        }
        data = &data[n..];
    }
    true
}

/// The scratch directory (created once, made the working directory).
fn scratch() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("podspawn-fuzz-sftp-{}", std::process::id()));
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        std::env::set_current_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(d)
    });
    dir.as_deref().map_err(Clone::clone)
}

/// Empties the scratch directory and writes the passwd and group files the server reads.
fn reset(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| format!("resetting {}: {e}", dir.display());
    // The last input may have changed the directory's own mode (SETSTAT ".").
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    std::env::set_current_dir(dir).map_err(err)?;
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let p = entry.map_err(err)?.path();
        let m = std::fs::symlink_metadata(&p).map_err(err)?;
        if m.is_dir() {
            std::fs::remove_dir_all(&p).map_err(err)?;
        } else {
            std::fs::remove_file(&p).map_err(err)?;
        }
    }
    std::fs::create_dir(dir.join("etc")).map_err(err)?;
    std::fs::write(dir.join("etc/passwd"), PASSWD).map_err(err)?;
    std::fs::write(dir.join("etc/group"), GROUP).map_err(err)?;
    Ok(())
}

/// Runs one input through a server; replies must be well-framed packets within the size limit.
pub fn sftp(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_INPUT {
        return Ok(());
    }
    // The passwd/group parser, on the raw bytes.
    let names = Names::parse(data, data);
    let _ = names.home_of("root");
    let _ = names.user(0);

    if !input_allowed(data) {
        return Ok(());
    }
    let dir = scratch()?;
    reset(dir)?;
    let mut server = Server::new(dir.to_path_buf(), dir.to_path_buf());
    let mut out = Vec::new();
    let _ = server.serve(data, &mut out);
    drop(server);

    let mut rest = &out[..];
    while !rest.is_empty() {
        let header: [u8; 4] = rest
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("reply stream ends inside a header: {rest:?}"))?;
        let n = wire::frame_length(header).map_err(|e| format!("reply: {e}"))?;
        if rest.len() < 4 + n {
            return Err(format!("reply of {n} bytes cut short"));
        }
        rest = &rest[4 + n..];
    }
    Ok(())
}
