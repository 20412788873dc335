//! `podspawn serve`: the broker. The only process that talks to Docker and owns `state.db`.
//!
//! Each spawn connection is a lease on its session: the session's connection count is the number of
//! open connections, so a spawn that is killed, or an sshd that dies, still ends its lease. The
//! session's bytes never pass through here: the upgraded Docker exec connection is handed to spawn.

use crate::core::config::{Config, UserOverrides};
use crate::core::protocol::{self, ErrorKind, OpenRequest, Request, Response, SessionInfo};
use crate::core::session::{self, CloseDecision, ContainerState, EndReason, OpenDecision, Route};
use crate::engine::{self, ContainerRuntime, Docker, ExecSpec};
use crate::host::accounts::{self, Account};
use crate::roles::lifecycle::Lifecycle;
use crate::store::audit::Event;
use crate::store::state::{SessionRow, Status};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

mod admin_ops;
mod conn;
mod sessions;

use conn::Conn;

/// How long the broker keeps sessions that were live when it (re)started, waiting for their spawn
/// processes to resume their leases.
const RESUME_WINDOW_SECS: i64 = 60;
/// How often the broker removes expired sessions.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

type Key = (String, String);
type Notifiers = HashMap<Key, Vec<(u64, tokio::sync::mpsc::UnboundedSender<String>)>>;

/// `R`: the container engine (Docker in production, [`engine::fake::Fake`] in tests).
pub struct Broker<R: ContainerRuntime = Docker> {
    lc: Lifecycle<R>,
    leases: Mutex<HashMap<Key, u32>>,
    /// Execs that a connection holds (an exec is leased at most once: a Resume cannot double it).
    live_execs: Mutex<HashSet<String>>,
    /// Open connections per uid (`broker.max_connections_per_user`).
    conns: Arc<ConnLimiter>,
    /// Live session connections that can be sent a notice, by session.
    notifiers: Mutex<Notifiers>,
    next_notifier: std::sync::atomic::AtomicU64,
    /// Sessions (key, created_at) already told about their upcoming removal.
    warned: Mutex<HashSet<(Key, i64)>>,
    /// Labels of containers sessions were opened in, by ID (see `labels_of`).
    labels: Mutex<HashMap<String, engine::Labels>>,
}

pub use crate::roles::lifecycle::now;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn run(cfg: Config, listen: Option<PathBuf>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg, listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("podspawn serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bind_listener(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; remove it",
                path.display()
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another broker is already listening on {}",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let gid = uzers::get_group_by_name(accounts::USERS_GROUP).map(|g| g.gid());
    match gid {
        Some(gid) => {
            let _ = std::os::unix::fs::chown(path, Some(0), Some(gid));
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
        }
        None => {
            tracing::warn!(
                "group {} does not exist; only root can use {} (podspawn add-user creates it)",
                accounts::USERS_GROUP,
                path.display()
            );
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(l)
}

fn activated_listener() -> Result<Option<UnixListener>, String> {
    let fds = crate::host::systemd::listen_fds();
    let Some(&fd) = fds.first() else {
        return Ok(None);
    };
    // SAFETY: systemd passed this listening socket to us (LISTEN_PID matched) and nothing else in
    // this process owns fd 3.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("socket from systemd: {e}"))?;
    UnixListener::from_std(std_listener)
        .map(Some)
        .map_err(|e| format!("socket from systemd: {e}"))
}

async fn serve(cfg: Config, listen: Option<PathBuf>) -> Result<(), String> {
    let listener = match listen {
        Some(p) => bind_listener(&p)?,
        None => activated_listener()?.ok_or_else(|| {
            "no socket to serve: run under systemd (podspawn.socket) or pass --listen PATH"
                .to_string()
        })?,
    };
    let lc = Lifecycle::open_lazy(cfg)?;
    let broker = Arc::new(Broker::new(lc));
    broker.open_resume_window()?;
    crate::host::systemd::notify_ready("serving");
    tracing::info!("broker ready");

    let sweeper = broker.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            sweeper.sweep().await;
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("signal handler: {e}"))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("signal handler: {e}"))?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    // The caller and its connection slot are settled here, in arrival order,
                    // before any task runs: a client's n-th connection is the one refused.
                    let uid = match stream.peer_cred() {
                        Ok(c) => c.uid(),
                        Err(e) => {
                            tracing::warn!("peer credentials: {e}");
                            continue;
                        }
                    };
                    let slot = broker.conns.try_acquire(uid);
                    let b = broker.clone();
                    tokio::spawn(async move { b.handle(stream, uid, slot).await });
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Live sessions keep running: their streams belong to the spawn processes, which resume their
    // leases with the next broker.
    crate::host::systemd::notify_stopping();
    tracing::info!("broker stopping");
    Ok(())
}

fn cfg_limit(cfg: &Config) -> u32 {
    cfg.broker.max_connections_per_user
}

/// Counts open connections per uid. Root (admin commands) is not limited.
pub struct ConnLimiter {
    limit: u32,
    open: Mutex<HashMap<u32, u32>>,
}

/// One counted connection; dropping it frees the slot.
pub struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    uid: u32,
}

impl ConnLimiter {
    pub fn new(limit: u32) -> ConnLimiter {
        ConnLimiter {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `uid`, or `None` when it already holds `limit` connections.
    pub fn try_acquire(self: &Arc<Self>, uid: u32) -> Option<ConnSlot> {
        if uid != 0 {
            let mut open = lock(&self.open);
            let n = open.entry(uid).or_insert(0);
            if *n >= self.limit {
                return None;
            }
            *n += 1;
        }
        Some(ConnSlot {
            limiter: self.clone(),
            uid,
        })
    }

    pub fn open_of(&self, uid: u32) -> u32 {
        lock(&self.open).get(&uid).copied().unwrap_or(0)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if self.uid == 0 {
            return;
        }
        let mut open = lock(&self.limiter.open);
        if let Some(n) = open.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// An exec ID as the engine makes them: 64 lowercase hex digits.
pub fn valid_exec_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// May a spawn resume its lease on `exec_id`? Only for a running exec of its own session's
/// container that no connection holds: a lease always stands for a live session stream.
pub fn check_resume(
    exec_id: &str,
    exec: Option<&engine::ExecStatus>,
    session_container: &str,
    already_held: bool,
) -> Result<(), ResumeRefused> {
    if !valid_exec_id(exec_id) {
        return Err(ResumeRefused::InvalidId);
    }
    let Some(st) = exec else {
        return Err(ResumeRefused::Gone);
    };
    if st.container_id.as_deref() != Some(session_container) {
        return Err(ResumeRefused::NotYours);
    }
    if !st.running {
        return Err(ResumeRefused::Ended);
    }
    if already_held {
        return Err(ResumeRefused::AlreadyHeld);
    }
    Ok(())
}

/// Why a Resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    InvalidId,
    Gone,
    NotYours,
    Ended,
    AlreadyHeld,
}

impl std::fmt::Display for ResumeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResumeRefused::InvalidId => "invalid exec id",
            ResumeRefused::Gone => "that exec no longer exists",
            ResumeRefused::NotYours => "that exec does not belong to your session",
            ResumeRefused::Ended => "that session's command has ended",
            ResumeRefused::AlreadyHeld => "that session is already attached",
        })
    }
}

/// An internal error (the engine, the state database, ...) as a reply.
fn err(message: impl Into<String>) -> Response {
    fail(ErrorKind::Internal, message)
}

/// A refusal of `kind` as a reply.
fn fail(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

/// Why a session could not be opened: the kind travels to spawn, the message to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal {
            kind: ErrorKind::Internal,
            message,
        }
    }
}

impl From<crate::roles::lifecycle::Error> for Refusal {
    fn from(e: crate::roles::lifecycle::Error) -> Refusal {
        Refusal::from(e.to_string())
    }
}

impl From<crate::store::state::Error> for Refusal {
    fn from(e: crate::store::state::Error) -> Refusal {
        Refusal::from(e.to_string())
    }
}

impl From<engine::Error> for Refusal {
    fn from(e: engine::Error) -> Refusal {
        Refusal::from(e.to_string())
    }
}

impl Refusal {
    fn reply(self) -> Response {
        fail(self.kind, self.message)
    }
}

impl<R: ContainerRuntime> Broker<R> {
    pub fn new(lc: Lifecycle<R>) -> Broker<R> {
        Broker {
            conns: Arc::new(ConnLimiter::new(cfg_limit(&lc.cfg))),
            lc,
            leases: Mutex::new(HashMap::new()),
            live_execs: Mutex::new(HashSet::new()),
            labels: Mutex::new(HashMap::new()),
            notifiers: Mutex::new(HashMap::new()),
            next_notifier: std::sync::atomic::AtomicU64::new(1),
            warned: Mutex::new(HashSet::new()),
        }
    }

    fn cfg(&self) -> &Config {
        &self.lc.cfg
    }

    fn leases_of(&self, key: &Key) -> u32 {
        lock(&self.leases).get(key).copied().unwrap_or(0)
    }

    fn add_lease(&self, key: &Key) -> u32 {
        let mut l = lock(&self.leases);
        let n = l.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    }

    /// Returns the remaining count.
    fn drop_lease(&self, key: &Key) -> u32 {
        let mut l = lock(&self.leases);
        let n = l.get(key).copied().unwrap_or(0).saturating_sub(1);
        if n == 0 {
            l.remove(key);
        } else {
            l.insert(key.clone(), n);
        }
        n
    }

    /// After a (re)start nobody holds a lease yet: sessions that were live get a window in which
    /// their spawn processes resume them.
    fn open_resume_window(&self) -> Result<(), crate::store::state::Error> {
        let db = self.lc.db();
        // Connection leases belonged to connections to the broker that ended.
        let t = now();
        db.clear_netns_leases(t)?;
        for row in db.list(None)? {
            if row.status != Status::Running {
                continue;
            }
            let grace = self.cfg().session.grace_period.as_secs();
            let (status, until) = match session::decide_last_close(row.mode, grace, t) {
                CloseDecision::Keep => (Status::Idle, None),
                CloseDecision::Destroy => (Status::Grace, Some(t + RESUME_WINDOW_SECS)),
                CloseDecision::Grace { until } => {
                    (Status::Grace, Some(until.max(t + RESUME_WINDOW_SECS)))
                }
            };
            db.set_status(&row.user, &row.project, status, until, t)?;
        }
        Ok(())
    }

    async fn handle(self: Arc<Self>, stream: UnixStream, uid: u32, slot: Option<ConnSlot>) {
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
        };
        let limit = self.cfg().broker.max_connections_per_user;
        let Some(_slot) = slot else {
            tracing::warn!(
                uid,
                limit,
                "refused a connection: too many open connections"
            );
            let msg = format!(
                "too many open podspawn connections for your account (limit {limit}, \
                 broker.max_connections_per_user); close some sessions and try again"
            );
            let reply = fail(ErrorKind::LimitReached, msg);
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.send(&reply)).await;
            return;
        };
        let wait = self.cfg().broker.first_message_timeout;
        let first = match tokio::time::timeout(wait, conn.read_line()).await {
            Ok(Some(Ok(l))) => l,
            Ok(Some(Err(e))) => {
                conn.send(&fail(ErrorKind::Invalid, e.to_string())).await;
                return;
            }
            Ok(None) => return,
            Err(_) => {
                tracing::warn!(uid, "closed a connection that sent nothing for {wait:?}");
                return;
            }
        };
        let req: Request = match protocol::decode(&first) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(uid, "bad request: {e}");
                conn.send(&fail(ErrorKind::Invalid, e)).await;
                return;
            }
        };
        let caller = accounts::lookup_uid(uid);
        match req {
            Request::Open(open) => {
                let Some(account) = self.session_caller(uid, caller, &mut conn).await else {
                    return;
                };
                self.serve_open(account, open, conn).await;
            }
            Request::Resume {
                project,
                exec_id,
                agent,
            } => {
                let Some(account) = self.session_caller(uid, caller, &mut conn).await else {
                    return;
                };
                let user = account.name.clone();
                self.clone()
                    .serve_resume(account, project, exec_id, conn)
                    .await;
                // As after an Open: the connection's agent relay goes with its lease.
                if let (Some(sock), Some(base)) = (agent, self.cfg().broker.session_dir.as_ref()) {
                    crate::host::session_dir::remove_socket(base, &user, &sock);
                }
            }
            Request::List { user } => {
                let resp = self.list(uid, caller.as_ref(), user.as_deref());
                conn.send(&resp).await;
            }
            Request::Stop {
                user,
                project,
                purge,
            } => {
                let resp = if uid != 0 {
                    fail(
                        ErrorKind::Forbidden,
                        "only root may stop sessions: run it with sudo",
                    )
                } else {
                    self.stop(&user, project.as_deref(), purge).await
                };
                conn.send(&resp).await;
            }
            Request::Status {} => {
                let resp = match self
                    .lc
                    .snapshot(&|u, p| self.leases_of(&(u.to_string(), p.to_string())))
                    .await
                {
                    Ok(snapshot) => Response::Status { snapshot },
                    Err(e) => err(e),
                };
                conn.send(&resp).await;
            }
            Request::SessionDir {} => {
                let Some(account) = self.session_caller(uid, caller, &mut conn).await else {
                    return;
                };
                let resp = match self.lc.session_dir(&account) {
                    Ok(Some(dir)) => Response::SessionDir {
                        path: dir.to_string_lossy().into_owned(),
                    },
                    Ok(None) => fail(
                        ErrorKind::Invalid,
                        "agent forwarding into containers is off on this host (broker.session_dir is \"\")",
                    ),
                    Err(e) => {
                        tracing::error!(podspawn_user = %account.name, "{e}");
                        fail(ErrorKind::Internal, e.to_string())
                    }
                };
                conn.send(&resp).await;
            }
            Request::Netns { user } => {
                self.serve_netns(uid, &user, conn).await;
            }
            Request::Resize { .. } | Request::Wait { .. } => {
                conn.send(&fail(ErrorKind::Invalid, "open a session first"))
                    .await;
            }
        }
    }

    /// The peer of a session request must be a registered podspawn user (by uid, never by name).
    async fn session_caller(
        &self,
        uid: u32,
        caller: Option<Account>,
        conn: &mut Conn,
    ) -> Option<Account> {
        let problem = match &caller {
            None => Some(format!("uid {uid} has no account on this host")),
            Some(a) if crate::core::names::validate_user(&a.name).is_err() => {
                Some(format!("account name {:?} is not a valid podspawn user name", a.name))
            }
            Some(a) if !crate::store::keys::is_registered(&self.cfg().auth.key_dir, &a.name) => Some(format!(
                "{} is not a registered podspawn user; register with: sudo podspawn add-user {} --key ...",
                a.name, a.name
            )),
            Some(_) => None,
        };
        if let Some(p) = problem {
            tracing::warn!(uid, "refused session: {p}");
            conn.send(&fail(ErrorKind::Forbidden, p)).await;
            return None;
        }
        caller
    }
}

#[cfg(test)]
mod tests;
