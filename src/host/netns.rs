//! Opening a container's network namespace for pam_podspawn.so: the broker hands the descriptor
//! over the socket (SCM_RIGHTS) and the module joins it with `setns(CLONE_NEWNET)`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// `NS_GET_NSTYPE` (linux/nsfs.h: `_IO(0xb7, 0x3)`): the type of the namespace an fd refers to.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Opens the network namespace of a running container: its engine sandbox file (a bind mount of
/// the namespace, which root opens without ptrace rights over the container's processes), else
/// its main process's `/proc/<pid>/ns/net`. The descriptor is checked to be a network namespace.
/// `running`, `sandbox_key` and `pid` as the engine reports them for the container.
pub fn open(running: bool, sandbox_key: Option<&str>, pid: Option<i64>) -> io::Result<OwnedFd> {
    if !running {
        return Err(io::Error::other(
            "the network namespace holder is not running",
        ));
    }
    let mut paths: Vec<String> = Vec::new();
    if let Some(k) = sandbox_key {
        paths.push(k.to_string());
    }
    if let Some(pid) = pid {
        paths.push(format!("/proc/{pid}/ns/net"));
    }
    let mut last = io::Error::other("the engine named no network namespace for the holder");
    for p in paths {
        match open_checked(&p) {
            Ok(fd) => return Ok(fd),
            Err(e) => last = io::Error::new(e.kind(), format!("{p}: {e}")),
        }
    }
    Err(last)
}

fn open_checked(path: &str) -> io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_cloexec()
        .open(path)?;
    let fd: OwnedFd = f.into();
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor, which is open and
    // owned by `fd` for the duration of the call.
    let t = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if t < 0 {
        return Err(io::Error::last_os_error());
    }
    if t != libc::CLONE_NEWNET {
        return Err(io::Error::other("not a network namespace"));
    }
    Ok(fd)
}

trait CloexecExt {
    fn custom_flags_cloexec(&mut self) -> &mut Self;
}

impl CloexecExt for std::fs::OpenOptions {
    fn custom_flags_cloexec(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_CLOEXEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_network_namespace_and_refuses_other_files() {
        assert!(open(true, Some("/proc/self/ns/net"), None).is_ok());
        // Another namespace type, then the pid fallback.
        let me = Some(i64::from(std::process::id()));
        assert!(open(true, Some("/proc/self/ns/uts"), me).is_ok());
        let e = open(true, Some("/etc/hostname"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/hostname"), "{e}");
        assert!(open(false, Some("/proc/self/ns/net"), None).is_err());
        assert!(open(true, None, None).is_err());
    }
}
