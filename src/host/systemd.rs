//! The little of systemd podspawn needs: socket activation (LISTEN_FDS) and sd-notify.
use std::os::fd::RawFd;

/// File descriptors passed by systemd, if they are meant for this process (LISTEN_PID check).
pub fn listen_fds() -> Vec<RawFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !pid_ok {
        return Vec::new();
    }
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    let fds: Vec<RawFd> = (0..n.clamp(0, 64)).map(|i| 3 + i).collect();
    for &fd in &fds {
        // CLOEXEC instead of unsetting the environment (remove_var is unsound once threads
        // exist). At worst EBADF, ignored.
        // SAFETY: fd is 3 or more (never -1), and systemd passed fds 3..3+LISTEN_FDS to this
        // process (LISTEN_PID matched); nothing closes them while this borrow lives (it ends with
        // the call). Should the environment lie, fcntl fails with EBADF.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    fds
}

pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]);
}

pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

pub fn notify_watchdog() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// How often to send WATCHDOG=1: half of WATCHDOG_USEC when the watchdog is on for this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
