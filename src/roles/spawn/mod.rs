//! `podspawn spawn`: the forced command sshd runs as the SSH user. Unprivileged: it cannot open the
//! Docker socket or the state database. It asks the broker for the session, receives the session's
//! stream as a file descriptor, and pumps bytes between its stdio and that stream. The broker
//! connection stays open as the session's lease and carries resizes and the final exit code.
//!
//! It writes nothing to the session except the session itself and, on failure, one line.

use crate::core::protocol::{Client, OpenRequest, Request, Response};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

mod agent;

/// Exit status used when podspawn itself fails before the command ran.
const FAIL: u8 = 1;
/// How long spawn tries to resume its lease with a restarted broker.
const RESUME_PATIENCE: Duration = Duration::from_secs(60);

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    // The one line a user sees when podspawn cannot give them their session.
    let _ = writeln!(io::stderr(), "podspawn: {msg}");
    tracing::error!("{msg}");
    ExitCode::from(FAIL)
}

pub fn run(
    user: Option<&str>,
    project: Option<String>,
    socket: &Path,
    timeout: Duration,
) -> ExitCode {
    crate::host::logging::init_quiet("spawn", None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_inner(user, project, socket, timeout)
    }));
    match r {
        Ok(code) => code,
        Err(_) => fail("internal error; the administrator can find details in the journal"),
    }
}

fn winsize(fd: RawFd) -> (u16, u16) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass; fd is our own stdin.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 {
        (ws.ws_row, ws.ws_col)
    } else {
        (0, 0)
    }
}

/// The project: `--project`, else `$PODSPAWN_PROJECT` with a trailing `.pod` removed.
pub fn project_from(flag: Option<String>, env: Option<String>) -> Result<String, String> {
    let p = match flag {
        Some(p) => p,
        None => env.unwrap_or_default(),
    };
    let p = p.trim();
    let p = p.strip_suffix(".pod").unwrap_or(p);
    if !p.is_empty() {
        crate::core::names::validate_project(p)
            .map_err(|e| format!("{e} (from PODSPAWN_PROJECT or --project)"))?;
    }
    Ok(p.to_string())
}

/// The variables sshd passed that a client may have set (SendEnv/SetEnv through AcceptEnv), and
/// the connection facts (SSH_CONNECTION, SSH_CLIENT). What sshd and PAM set themselves is left
/// out; the broker keeps only what `session.accept_env` allows.
pub fn client_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, String)> {
    use crate::core::protocol::{valid_env_name, MAX_ENV, MAX_ENV_VALUE};
    let mut v: Vec<(String, String)> = vars
        .filter_map(|(k, val)| Some((k.into_string().ok()?, val.into_string().ok()?)))
        .filter(|(k, val)| {
            valid_env_name(k)
                && !k.starts_with("XDG_")
                && k != "MOTD_SHOWN"
                && val.len() <= MAX_ENV_VALUE
                && !val.bytes().any(|b| b.is_ascii_control())
        })
        .collect();
    v.sort();
    v.truncate(MAX_ENV);
    v
}

/// The session's user: the account of our uid. sshd's ForceCommand passes no name; a key's
/// `command=` option passes `--user`, which must then name that same account.
pub fn session_user(claimed: Option<&str>, uid: u32, account: Option<&str>) -> Result<(), String> {
    match (account, claimed) {
        (None, _) => Err(format!("uid {uid} has no account on this host")),
        (Some(a), Some(c)) if a != c => Err(format!(
            "this key is registered for {c}, but the session runs as {a}"
        )),
        (Some(_), _) => Ok(()),
    }
}

/// Gives up with one line when the broker has not handed out the session in time (a stopped or
/// wedged service must not leave logins hanging). Dropping the returned sender disarms it.
fn answer_deadline(timeout: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("deadline".into())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                let msg = format!(
                    "the podspawn service did not answer within {}s; try again in a moment, or ask \
                     the administrator to check podspawn.service (journalctl -u podspawn)",
                    timeout.as_secs()
                );
                let _ = writeln!(io::stderr(), "podspawn: {msg}");
                tracing::error!("{msg}");
                agent::remove_on_exit();
                std::process::exit(i32::from(FAIL));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the deadline thread: {e}");
    }
    tx
}

/// What the user reads when the broker went away before answering (killed, crashed or restarted
/// in the middle of a login).
pub const SERVICE_GONE: &str = "the podspawn service stopped before your session was ready; try \
     again in a moment, or ask the administrator to check podspawn.service (journalctl -u podspawn)";

/// The line for a failure to read the broker's answer to Open.
fn recv_failure(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => SERVICE_GONE.to_string(),
        _ => format!("podspawn service: {e}"),
    }
}

fn run_inner(
    user: Option<&str>,
    project: Option<String>,
    socket: &Path,
    timeout: Duration,
) -> ExitCode {
    let uid = nix::unistd::getuid().as_raw();
    let account = crate::host::accounts::lookup_uid(uid);
    if let Err(e) = session_user(user, uid, account.as_ref().map(|a| a.name.as_str())) {
        return fail(&e);
    }
    let project = match project_from(project, std::env::var("PODSPAWN_PROJECT").ok()) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let command = match std::env::var_os("SSH_ORIGINAL_COMMAND") {
        None => None,
        Some(c) => match c.into_string() {
            Ok(s) => Some(s),
            Err(_) => return fail("the command is not valid UTF-8"),
        },
    };
    let stdin = io::stdin();
    let tty = stdin.is_terminal();
    let (rows, cols) = if tty { winsize(0) } else { (0, 0) };
    let term = if tty {
        std::env::var("TERM").ok()
    } else {
        None
    };
    let mut open = OpenRequest {
        project: project.clone(),
        command,
        tty,
        term,
        rows,
        cols,
        env: client_env(std::env::vars_os()),
        agent: None,
    };
    if let Err(e) = open.validate() {
        return fail(&e);
    }
    let deadline = answer_deadline(timeout);
    // `ssh -A`: sshd made an agent socket for this connection; relay it into the container.
    let relay = match std::env::var_os("SSH_AUTH_SOCK") {
        Some(upstream) if !upstream.is_empty() => agent::start(socket, PathBuf::from(upstream)),
        _ => None,
    };
    open.agent = relay.as_ref().map(|r| r.name.clone());
    let mut broker = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            return fail(&format!(
                "cannot reach the podspawn service at {} ({e}); ask the administrator to start podspawn.socket",
                socket.display()
            ))
        }
    };
    let agent = open.agent.clone();
    if let Err(e) = broker.send(&Request::Open(open)) {
        return fail(&format!("podspawn service: {e}"));
    }
    let (resp, fd) = match broker.recv() {
        Ok(v) => v,
        Err(e) => return fail(&recv_failure(&e)),
    };
    drop(deadline);
    let (exec_id, fd) = match (resp, fd) {
        (Response::Attached { exec_id, .. }, Some(fd)) => (exec_id, fd),
        (Response::Error { message, .. }, _) => return fail(&message),
        (other, _) => {
            return fail(&format!(
                "unexpected answer from the podspawn service: {other:?}"
            ))
        }
    };
    let mut pump = Pump {
        stream: UnixStream::from(fd),
        tty,
        broker: Some(broker),
        socket: socket.to_path_buf(),
        project,
        exec_id,
        agent,
        pending_resize: false,
        lost_at: None,
    };
    let (code, signal) = pump.run();
    drop(pump);
    drop(relay);
    if let Some(sig) = signal {
        // End the way the command did, so sshd reports the signal (exit-signal), as for a
        // command it ran itself. Only when sshd runs spawn directly (`ForceCommand exec ...`):
        // a shell in between would print "Terminated" into the session. Otherwise the exit code
        // says 128+N, as a shell would.
        if parent_is_sshd() {
            die_by(sig);
        }
    }
    ExitCode::from(code)
}

/// Whether this process's parent is sshd (its command name, from /proc).
fn parent_is_sshd() -> bool {
    let ppid = nix::unistd::getppid().as_raw();
    std::fs::read_to_string(format!("/proc/{ppid}/comm"))
        .map(|c| is_sshd_comm(c.trim_end()))
        .unwrap_or(false)
}

/// sshd's session process, as `comm` shows it (Debian: `sshd`; OpenSSH ≥ 9.8: `sshd-session`).
fn is_sshd_comm(comm: &str) -> bool {
    comm == "sshd" || comm == "sshd-session"
}

/// Terminates this process with `sig` (default action, no core file). Returns if `sig` would not
/// terminate it (stop, continue and ignored-by-default signals are not re-raised).
fn die_by(sig: i32) {
    use nix::sys::signal::{raise, signal, SigHandler, SigSet, Signal};
    let Ok(s) = Signal::try_from(sig) else {
        return;
    };
    if matches!(
        s,
        Signal::SIGCHLD
            | Signal::SIGCONT
            | Signal::SIGURG
            | Signal::SIGWINCH
            | Signal::SIGSTOP
            | Signal::SIGTSTP
            | Signal::SIGTTIN
            | Signal::SIGTTOU
    ) {
        return;
    }
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; a core file of spawn (in the user's host home)
    // would help nobody. Resetting the handler to the default is sound: nothing of ours runs
    // in a signal context from here on.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        let _ = signal(s, SigHandler::SigDfl);
    }
    let mut set = SigSet::empty();
    set.add(s);
    let _ = set.thread_unblock();
    let _ = raise(s);
}

/// Restores the terminal mode on drop.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter(tty: bool) -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        if !tty {
            return RawMode { saved: None };
        }
        let stdin = io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                s,
            );
        }
    }
}

struct Pump {
    stream: UnixStream,
    tty: bool,
    broker: Option<Client>,
    socket: PathBuf,
    project: String,
    exec_id: String,
    /// The agent relay's socket name, for the broker to remove if this process is killed.
    agent: Option<String>,
    pending_resize: bool,
    lost_at: Option<Instant>,
}

/// Splits Docker's multiplexed (non-TTY) stream into stdout and stderr.
#[derive(Default)]
pub struct Demux {
    header: Vec<u8>,
    remaining: usize,
    target: u8,
}

impl Demux {
    /// Feeds bytes; calls `out(stream, payload)` for each payload piece (1 = stdout, 2 = stderr).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut dyn FnMut(u8, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while !data.is_empty() {
            if self.remaining == 0 {
                let need = 8 - self.header.len();
                let take = need.min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() == 8 {
                    self.target = self.header[0];
                    self.remaining = u32::from_be_bytes([
                        self.header[4],
                        self.header[5],
                        self.header[6],
                        self.header[7],
                    ]) as usize;
                    self.header.clear();
                }
                continue;
            }
            let take = self.remaining.min(data.len());
            out(self.target, &data[..take])?;
            self.remaining -= take;
            data = &data[take..];
        }
        Ok(())
    }
}

fn install_signals() -> Option<OwnedFd> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).ok()?;
    SIGNAL_PIPE.store(w.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(w); // lives as long as the process; the handler writes to it
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [
        Signal::SIGWINCH,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler only does an async-signal-safe write(2) to a pipe.
        unsafe {
            let _ = sigaction(s, &act);
        }
    }
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring SIGPIPE; write errors are handled as EPIPE instead.
    unsafe {
        let _ = sigaction(Signal::SIGPIPE, &ign);
    }
    Some(r)
}

fn write_all_fd(fd: i32, data: &[u8]) -> io::Result<()> {
    // Unbuffered writes to fd 1/2 so nothing sits in a buffer when the session ends.
    // SAFETY: fd is 1 or 2, open for the life of the process, and the File is never dropped
    // (ManuallyDrop), so it does not close them.
    let mut f = std::mem::ManuallyDrop::new(unsafe { unsafe_file(fd) });
    f.write_all(data)
}

/// A `File` for a descriptor this process does not own.
///
/// # Safety
/// `fd` must stay open for as long as the returned `File` is used, and the caller must not let it
/// be dropped (wrap it in `ManuallyDrop`), or it would close a descriptor it does not own.
unsafe fn unsafe_file(fd: i32) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller upholds this function's contract.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

impl Pump {
    /// The session's exit code, and the signal that killed its command if the broker knows it.
    fn run(&mut self) -> (u8, Option<i32>) {
        let _raw = RawMode::enter(self.tty);
        let sig = install_signals();
        if self.stream.set_nonblocking(true).is_err() {
            return (FAIL, None);
        }
        let mut demux = Demux::default();
        let mut to_stream: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut stdin_open = true;
        let mut stdin_shut = false;
        let mut buf = vec![0u8; 64 * 1024];
        let hangup_code: Option<u8> = loop {
            if !stdin_open && to_stream.is_empty() && !stdin_shut {
                let _ = self.stream.shutdown(std::net::Shutdown::Write);
                stdin_shut = true;
            }
            let stdin_fd = io::stdin();
            let stdout_fd = io::stdout();
            let mut fds: Vec<nix::poll::PollFd> = Vec::with_capacity(5);
            use nix::poll::{PollFd, PollFlags};
            let mut sflags = PollFlags::POLLIN;
            if !to_stream.is_empty() {
                sflags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(self.stream.as_fd(), sflags));
            let want_stdin = stdin_open && to_stream.len() < 256 * 1024;
            let stdin_idx = if want_stdin {
                fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            } else {
                None
            };
            let sig_idx = sig.as_ref().map(|s| {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let broker_fd = self.broker.as_ref().map(|b| b.raw_fd());
            // SAFETY: the broker client outlives this loop iteration's poll call.
            let broker_borrow = broker_fd.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) });
            let broker_idx = broker_borrow.map(|b| {
                fds.push(PollFd::new(b, PollFlags::POLLIN));
                fds.len() - 1
            });
            // Notice when the client's side of stdout goes away (non-tty sessions).
            let out_idx = if !self.tty {
                fds.push(PollFd::new(stdout_fd.as_fd(), PollFlags::empty()));
                Some(fds.len() - 1)
            } else {
                None
            };
            let timeout = if self.broker.is_none() {
                200u16
            } else {
                5000u16
            };
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(timeout)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break Some(FAIL),
            }
            let rev = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
            let s_rev = rev(0);
            let stdin_rev = stdin_idx.map(rev);
            let sig_rev = sig_idx.map(rev);
            let broker_rev = broker_idx.map(rev);
            let out_rev = out_idx.map(rev);
            drop(fds);

            // Session output first, so nothing is lost at the end.
            if s_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match self.stream.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => {
                        let res = if self.tty {
                            write_all_fd(1, &buf[..n])
                        } else {
                            demux.feed(&buf[..n], &mut |t, d| {
                                write_all_fd(if t == 2 { 2 } else { 1 }, d)
                            })
                        };
                        if res.is_err() {
                            break Some(129);
                        }
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break None,
                }
            }
            if s_rev.contains(PollFlags::POLLOUT) && !to_stream.is_empty() {
                match self.stream.write(&to_stream) {
                    Ok(n) => {
                        to_stream.drain(..n);
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        to_stream.clear();
                        stdin_open = false;
                    }
                }
            }
            if let Some(r) = stdin_rev {
                if r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    let mut chunk = [0u8; 64 * 1024];
                    match io::stdin().lock().read(&mut chunk) {
                        Ok(0) => {
                            stdin_open = false;
                            if self.tty {
                                // The terminal went away.
                                break Some(129);
                            }
                        }
                        Ok(n) => to_stream.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if e.kind() == io::ErrorKind::Interrupted
                                || e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => {
                            stdin_open = false;
                            if self.tty {
                                break Some(129);
                            }
                        }
                    }
                }
            }
            if let Some(r) = out_rev {
                if r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                    break Some(129);
                }
            }
            if let Some(r) = sig_rev {
                if !r.is_empty() {
                    if let Some(code) = self.drain_signals(sig.as_ref()) {
                        break Some(code);
                    }
                }
            }
            if let Some(r) = broker_rev {
                if !r.is_empty() {
                    self.check_broker();
                }
            }
            if self.broker.is_none() {
                self.try_resume();
            }
            if self.pending_resize {
                self.send_resize();
            }
            self.show_notices();
        };
        if let Some(code) = hangup_code {
            // Closing the broker connection ends the lease; the broker hangs up the command.
            return (code, None);
        }
        self.exit_code()
    }

    /// Shows the broker's notices (e.g. an upcoming removal) as one line each on stderr.
    fn show_notices(&mut self) {
        let Some(b) = self.broker.as_mut() else {
            return;
        };
        b.collect_notices();
        for n in b.notices.drain(..) {
            let line = if self.tty {
                format!("\r\n{n}\r\n")
            } else {
                format!("{n}\n")
            };
            let _ = write_all_fd(2, line.as_bytes());
        }
    }

    fn drain_signals(&mut self, sig: Option<&OwnedFd>) -> Option<u8> {
        let fd = sig?;
        let mut b = [0u8; 64];
        let mut ret = None;
        loop {
            let n = match nix::unistd::read(fd, &mut b) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            for &s in &b[..n] {
                match i32::from(s) {
                    libc::SIGWINCH => self.pending_resize = true,
                    other => ret = Some(128 + other as u8),
                }
            }
        }
        ret
    }

    fn send_resize(&mut self) {
        if !self.tty {
            self.pending_resize = false;
            return;
        }
        let (rows, cols) = winsize(0);
        if let Some(b) = self.broker.as_mut() {
            match b.call(&Request::Resize { rows, cols }) {
                Ok(_) => self.pending_resize = false,
                Err(_) => self.lost(),
            }
        }
    }

    fn lost(&mut self) {
        self.broker = None;
        if self.lost_at.is_none() {
            self.lost_at = Some(Instant::now());
        }
        tracing::warn!("lost the broker connection; resuming");
    }

    /// Readable means a notice arrived, or the broker closed (restart).
    fn check_broker(&mut self) {
        if let Some(b) = self.broker.as_mut() {
            match b.read_nonblocking() {
                Ok(0) => self.lost(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.lost(),
            }
        }
    }

    fn try_resume(&mut self) {
        if self.lost_at.is_some_and(|t| t.elapsed() > RESUME_PATIENCE) {
            return;
        }
        let Ok(mut c) = Client::connect(&self.socket) else {
            return;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        let req = Request::Resume {
            project: self.project.clone(),
            exec_id: self.exec_id.clone(),
            agent: self.agent.clone(),
        };
        match c.call(&req) {
            Ok(Response::Ok) => {
                let _ = c.set_read_timeout(None);
                self.broker = Some(c);
                self.lost_at = None;
                tracing::info!("lease resumed with the restarted broker");
            }
            Ok(Response::Error { message, .. }) => {
                tracing::warn!("resume refused: {message}");
                self.lost_at = Some(Instant::now() - RESUME_PATIENCE);
            }
            _ => {}
        }
    }

    fn exit_code(&mut self) -> (u8, Option<i32>) {
        let start = Instant::now();
        loop {
            if self.broker.is_none() {
                self.try_resume();
            }
            if let Some(b) = self.broker.as_mut() {
                match b.call(&Request::Wait {}) {
                    Ok(Response::Exited { code, signal }) => return ((code & 0xff) as u8, signal),
                    Ok(Response::Error { message, .. }) => {
                        tracing::warn!("exit status unavailable: {message}");
                        return (255, None);
                    }
                    Ok(_) => return (255, None),
                    Err(_) => self.lost(),
                }
            }
            if start.elapsed() > RESUME_PATIENCE {
                return (255, None);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_that_vanishes_mid_login_gets_a_clear_line() {
        for kind in [io::ErrorKind::UnexpectedEof, io::ErrorKind::ConnectionReset] {
            let line = recv_failure(&io::Error::new(kind, "broker closed the connection"));
            assert_eq!(line, SERVICE_GONE);
            assert!(!line.contains("broker"), "{line}");
        }
        let other = recv_failure(&io::Error::new(io::ErrorKind::InvalidData, "bad json"));
        assert_eq!(other, "podspawn service: bad json");
    }

    #[test]
    fn demux_splits_frames_across_reads() {
        let mut frames = Vec::new();
        for (t, p) in [(1u8, b"hello ".as_slice()), (2, b"err"), (1, b"world")] {
            frames.push(t);
            frames.extend_from_slice(&[0, 0, 0]);
            frames.extend_from_slice(&(p.len() as u32).to_be_bytes());
            frames.extend_from_slice(p);
        }
        for split in 1..frames.len() {
            let mut d = Demux::default();
            let mut out: Vec<u8> = Vec::new();
            let mut err: Vec<u8> = Vec::new();
            for chunk in frames.chunks(split) {
                d.feed(chunk, &mut |t, data| {
                    if t == 2 {
                        err.extend_from_slice(data)
                    } else {
                        out.extend_from_slice(data)
                    }
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!(out, b"hello world", "split {split}");
            assert_eq!(err, b"err");
        }
    }

    #[test]
    fn session_user_comes_from_the_uid() {
        assert!(session_user(None, 1000, Some("alice")).is_ok());
        assert!(session_user(Some("alice"), 1000, Some("alice")).is_ok());
        let e = session_user(Some("bob"), 1000, Some("alice")).unwrap_err();
        assert!(
            e.contains("registered for bob") && e.contains("runs as alice"),
            "{e}"
        );
        let e = session_user(None, 4242, None).unwrap_err();
        assert!(e.contains("uid 4242 has no account"), "{e}");
    }

    #[test]
    fn client_env_leaves_out_what_sshd_and_pam_set() {
        let vars = [
            ("LANG", "C.UTF-8"),
            ("EDITOR", "vim"),
            ("SSH_CONNECTION", "127.0.0.1 5 127.0.0.1 22"),
            ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
            ("SSH_ORIGINAL_COMMAND", "ls"),
            ("HOME", "/home/a"),
            ("PATH", "/usr/bin"),
            ("XDG_SESSION_ID", "3"),
            ("MOTD_SHOWN", "pam"),
            ("PODSPAWN_PROJECT", "web"),
            ("BAD", "a\x1bb"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let got = client_env(vars.into_iter());
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["EDITOR", "LANG", "SSH_CONNECTION"]);
        let many = (0..200).map(|i| (format!("V{i}").into(), "x".into()));
        assert_eq!(client_env(many).len(), crate::core::protocol::MAX_ENV);
    }

    #[test]
    fn only_sshd_itself_gets_the_signal() {
        assert!(is_sshd_comm("sshd"));
        assert!(is_sshd_comm("sshd-session"));
        assert!(!is_sshd_comm("sh"));
        assert!(!is_sshd_comm("bash"));
    }

    #[test]
    fn project_selection() {
        assert_eq!(project_from(None, None).unwrap(), "");
        assert_eq!(
            project_from(None, Some("backend.pod".into())).unwrap(),
            "backend"
        );
        assert_eq!(
            project_from(Some("web".into()), Some("backend".into())).unwrap(),
            "web"
        );
        assert!(project_from(None, Some("%n".into())).is_err());
        assert!(project_from(None, Some("../etc".into())).is_err());
    }
}
