//! `podspawn serve`: the broker. The only process that talks to Docker and owns `state.db`.
//!
//! Each spawn connection is a lease on its session: the session's connection count is the number of
//! open connections, so a spawn that is killed, or an sshd that dies, still ends its lease. The
//! session's bytes never pass through here: the upgraded Docker exec connection is handed to spawn.

use crate::core::config::{Config, UserOverrides};
use crate::core::protocol::{self, OpenRequest, Request, Response, SessionInfo};
use crate::core::session::{self, CloseDecision, ContainerState, EndReason, OpenDecision, Route};
use crate::engine::{self, ExecSpec};
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

/// How long the broker keeps sessions that were live when it (re)started, waiting for their spawn
/// processes to resume their leases.
const RESUME_WINDOW_SECS: i64 = 60;
/// How often the broker removes expired sessions.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

type Key = (String, String);
type Notifiers = HashMap<Key, Vec<(u64, tokio::sync::mpsc::UnboundedSender<String>)>>;

pub struct Broker {
    lc: Lifecycle,
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
    let broker = Arc::new(Broker {
        conns: Arc::new(ConnLimiter::new(cfg_limit(&lc.cfg))),
        lc,
        leases: Mutex::new(HashMap::new()),
        live_execs: Mutex::new(HashSet::new()),
        notifiers: Mutex::new(HashMap::new()),
        next_notifier: std::sync::atomic::AtomicU64::new(1),
        warned: Mutex::new(HashSet::new()),
    });
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
                    let b = broker.clone();
                    tokio::spawn(async move { b.handle(stream).await });
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
) -> Result<(), String> {
    if !valid_exec_id(exec_id) {
        return Err("invalid exec id".into());
    }
    let Some(st) = exec else {
        return Err("that exec no longer exists".into());
    };
    if st.container_id.as_deref() != Some(session_container) {
        return Err("that exec does not belong to your session".into());
    }
    if !st.running {
        return Err("that session's command has ended".into());
    }
    if already_held {
        return Err("that session is already attached".into());
    }
    Ok(())
}

/// A broker connection: line reads and writes on a non-blocking socket, with fd passing.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn read_line(&mut self) -> Option<Result<Vec<u8>, String>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                return Some(Ok(line));
            }
            if self.buf.len() > protocol::MAX_LINE {
                return Some(Err("message too long".into()));
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

    async fn send(&mut self, resp: &Response) -> bool {
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

    async fn send_with_fd(&mut self, resp: &Response, fd: i32) -> bool {
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

fn err(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

impl Broker {
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
    fn open_resume_window(&self) -> Result<(), String> {
        let db = self.lc.db();
        let t = now();
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

    async fn handle(self: Arc<Self>, stream: UnixStream) {
        let uid = match stream.peer_cred() {
            Ok(c) => c.uid(),
            Err(e) => {
                tracing::warn!("peer credentials: {e}");
                return;
            }
        };
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
        };
        let limit = self.cfg().broker.max_connections_per_user;
        let Some(_slot) = self.conns.try_acquire(uid) else {
            tracing::warn!(
                uid,
                limit,
                "refused a connection: too many open connections"
            );
            let msg = format!(
                "too many open podspawn connections for your account (limit {limit}, \
                 broker.max_connections_per_user); close some sessions and try again"
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.send(&err(msg))).await;
            return;
        };
        let wait = self.cfg().broker.first_message_timeout;
        let first = match tokio::time::timeout(wait, conn.read_line()).await {
            Ok(Some(Ok(l))) => l,
            Ok(Some(Err(e))) => {
                conn.send(&err(e)).await;
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
                conn.send(&err(e)).await;
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
            Request::Resume { project, exec_id } => {
                let Some(account) = self.session_caller(uid, caller, &mut conn).await else {
                    return;
                };
                self.serve_resume(account, project, exec_id, conn).await;
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
                    err("only root may stop sessions: run it with sudo")
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
            Request::Resize { .. } | Request::Wait { .. } => {
                conn.send(&err("open a session first")).await;
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
            conn.send(&err(p)).await;
            return None;
        }
        caller
    }

    async fn serve_open(self: Arc<Self>, account: Account, req: OpenRequest, mut conn: Conn) {
        if let Err(e) = req.validate() {
            conn.send(&err(e)).await;
            return;
        }
        let key: Key = (account.name.clone(), req.project.clone());
        let (container_id, container, created) = match self.acquire(&account, &req.project).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(podspawn_user = %account.name, podspawn_project = %req.project, "open failed: {e}");
                conn.send(&err(e)).await;
                return;
            }
        };
        // From here on this connection holds a lease.
        let started = self
            .start_stream(&account, &req, &container_id, &container)
            .await;
        let (exec_id, stream) = match started {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(podspawn_user = %account.name, podspawn_container = %container, "exec failed: {e}");
                conn.send(&err(e)).await;
                self.release(&key, &container, None).await;
                self.remove_if_dead(&key).await;
                return;
            }
        };
        lock(&self.live_execs).insert(exec_id.clone());
        tracing::info!(
            podspawn_user = %account.name,
            podspawn_project = %req.project,
            podspawn_container = %container,
            created,
            "session attached"
        );
        let ok = conn
            .send_with_fd(
                &Response::Attached {
                    container: container.clone(),
                    exec_id: exec_id.clone(),
                    created,
                },
                stream.as_raw_fd(),
            )
            .await;
        drop(stream);
        let command = match session::route(req.command.as_deref()) {
            Route::Shell => None,
            _ => req.command.clone(),
        };
        let mut done = false;
        if ok {
            done = self
                .session_loop(&mut conn, &key, &container, &exec_id, command.as_deref())
                .await;
        }
        if !done {
            if let Some(c) = &command {
                // The client went away before the command finished.
                self.lc.audit(Event::Command {
                    user: key.0.clone(),
                    project: key.1.clone(),
                    container: container.clone(),
                    command: c.clone(),
                    exit_code: None,
                });
            }
        }
        self.release(&key, &container, Some(&exec_id)).await;
    }

    async fn serve_resume(
        self: Arc<Self>,
        account: Account,
        project: String,
        exec_id: String,
        mut conn: Conn,
    ) {
        if !project.is_empty() {
            if let Err(e) = crate::core::names::validate_project(&project) {
                conn.send(&err(e)).await;
                return;
            }
        }
        let key: Key = (account.name.clone(), project.clone());
        let check = async {
            let _g = self.lc.lock_user(&account.name).await?;
            let row = self
                .lc
                .db()
                .get(&account.name, &project)?
                .ok_or_else(|| "the session no longer exists".to_string())?;
            let exec = if valid_exec_id(&exec_id) {
                self.lc.docker.inspect_exec(&exec_id).await.ok()
            } else {
                None
            };
            let mut live = lock(&self.live_execs);
            check_resume(
                &exec_id,
                exec.as_ref(),
                &row.container_id,
                live.contains(&exec_id),
            )?;
            live.insert(exec_id.clone());
            drop(live);
            self.add_lease(&key);
            self.lc
                .db()
                .set_status(&account.name, &project, Status::Running, None, now())?;
            Ok::<String, String>(row.container_name)
        };
        let container = match check.await {
            Ok(c) => c,
            Err(e) => {
                conn.send(&err(e)).await;
                return;
            }
        };
        tracing::info!(podspawn_user = %account.name, podspawn_project = %project, "session resumed");
        if conn.send(&Response::Ok).await {
            self.session_loop(&mut conn, &key, &container, &exec_id, None)
                .await;
        }
        self.release(&key, &container, Some(&exec_id)).await;
    }

    /// Serves Resize and Wait, and forwards notices, until spawn closes the connection. Returns
    /// whether the command's exit was reported.
    async fn session_loop(
        &self,
        conn: &mut Conn,
        key: &Key,
        container: &str,
        exec_id: &str,
        command: Option<&str>,
    ) -> bool {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let id = self
            .next_notifier
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.notifiers)
            .entry(key.clone())
            .or_default()
            .push((id, tx));
        let mut reported = false;
        loop {
            tokio::select! {
                line = conn.read_line() => {
                    let Some(line) = line else { break };
                    let resp = match line.and_then(|l| protocol::decode::<Request>(&l)) {
                        Ok(Request::Resize { rows, cols }) => match self.lc.docker.resize_exec(exec_id, rows, cols).await {
                            Ok(()) => Response::Ok,
                            Err(e) => err(e),
                        },
                        Ok(Request::Wait { .. }) => {
                            let r = self.wait_exec(exec_id).await;
                            if let (Response::Exited { code }, Some(c)) = (&r, command) {
                                if !reported {
                                    self.lc.audit(Event::Command {
                                        user: key.0.clone(),
                                        project: key.1.clone(),
                                        container: container.to_string(),
                                        command: c.to_string(),
                                        exit_code: Some(*code),
                                    });
                                }
                            }
                            reported = true;
                            r
                        }
                        Ok(_) => err("only resize and wait are accepted on a session connection"),
                        Err(e) => err(e),
                    };
                    if !conn.send(&resp).await {
                        break;
                    }
                }
                Some(message) = rx.recv() => {
                    if !conn.send(&Response::Notice { message }).await {
                        break;
                    }
                }
            }
        }
        let mut n = lock(&self.notifiers);
        if let Some(v) = n.get_mut(key) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                n.remove(key);
            }
        }
        reported
    }

    async fn wait_exec(&self, exec_id: &str) -> Response {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.lc.docker.inspect_exec(exec_id).await {
                Ok(st) if !st.running => {
                    let code = st.exit_code.unwrap_or(255);
                    return Response::Exited {
                        code: i32::try_from(code).unwrap_or(255),
                    };
                }
                Ok(_) => {}
                // The container is gone (stopped by an admin): the command did not finish normally.
                Err(_) => return Response::Exited { code: 255 },
            }
            if tokio::time::Instant::now() > deadline {
                return err("the command is still running after its output ended");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Finds or creates the container for (user, project) and takes a lease on it. Returns the
    /// container's ID (every exec goes to it), its name, and whether it was created.
    async fn acquire(
        &self,
        account: &Account,
        project: &str,
    ) -> Result<(String, String, bool), String> {
        let user = account.name.as_str();
        let key: Key = (user.to_string(), project.to_string());
        let _g = self.lc.lock_user(user).await?;
        let t = now();
        let row = self.lc.db().get(user, project)?;
        // Only the stored ID identifies a session's container: a name may be anybody's.
        let state = match &row {
            Some(r) => self.lc.docker.container_state(&r.container_id).await?.0,
            None => ContainerState::Missing,
        };
        let decision = session::decide_open(row.as_ref(), state, t);
        let (id, name, created) = match (decision, &row) {
            (OpenDecision::Reattach, Some(r)) => {
                self.lc
                    .db()
                    .set_status(user, project, Status::Running, None, t)?;
                (r.container_id.clone(), r.container_name.clone(), false)
            }
            (OpenDecision::StartAndReattach, Some(r)) => {
                self.lc.docker.start(&r.container_id).await?;
                self.lc
                    .db()
                    .set_status(user, project, Status::Running, None, t)?;
                (r.container_id.clone(), r.container_name.clone(), false)
            }
            _ => {
                match &row {
                    Some(r) if state == ContainerState::Missing => {
                        // Its container is gone: forget the row.
                        self.lc.db().delete(user, project)?;
                        let _ = self
                            .lc
                            .docker
                            .remove_owned_network(
                                &engine::network_name(&r.container_name),
                                &self.lc.owner(user, project),
                            )
                            .await;
                    }
                    Some(r) => {
                        let reason = session::expiry_reason(r, t).unwrap_or(EndReason::Orphan);
                        self.lc.destroy(r, reason).await?;
                    }
                    None => {}
                }
                self.check_limit(user, project).await?;
                let name = self.lc.allocate_name(user, project).await?;
                let row = self.lc.create(account, project, &name, t).await?;
                (row.container_id, row.container_name, true)
            }
        };
        let n = self.add_lease(&key);
        self.lc.audit(Event::Connect {
            user: user.to_string(),
            project: project.to_string(),
            container: name.clone(),
            connections: n,
        });
        Ok((id, name, created))
    }

    /// `resources.max_per_user`: the user's other sessions whose container still exists.
    async fn check_limit(&self, user: &str, project: &str) -> Result<(), String> {
        let others: Vec<SessionRow> = self
            .lc
            .db()
            .list(Some(user))?
            .into_iter()
            .filter(|r| r.project != project)
            .collect();
        let mut live = Vec::new();
        for r in others {
            if self.lc.docker.container_state(&r.container_id).await?.0 != ContainerState::Missing {
                live.push(r.project);
            }
        }
        Ok(session::check_limit(
            user,
            &live,
            self.cfg().resources.max_per_user,
        )?)
    }

    async fn start_stream(
        &self,
        account: &Account,
        req: &OpenRequest,
        container_id: &str,
        container: &str,
    ) -> Result<(String, std::os::unix::net::UnixStream), String> {
        let ov =
            UserOverrides::load(&self.cfg().users_dir, &account.name).map_err(|e| e.to_string())?;
        let shell = ov
            .shell
            .clone()
            .unwrap_or_else(|| self.cfg().defaults.shell.clone());
        let route = session::route(req.command.as_deref());
        let home = format!("/home/{}", account.name);
        let mut env = vec![
            format!("HOME={home}"),
            format!("USER={}", account.name),
            format!("LOGNAME={}", account.name),
            format!("SHELL={shell}"),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ];
        if let Some(t) = &req.term {
            env.push(format!("TERM={t}"));
        }
        for (k, v) in &ov.env {
            env.push(format!("{k}={v}"));
        }
        for (k, v) in &req.env {
            env.push(format!("{k}={v}"));
        }
        let tty = req.tty && route != Route::Sftp;
        let tag =
            engine::new_session_tag().map_err(|e| format!("cannot make a session tag: {e}"))?;
        env.push(format!("{}={tag}", engine::SESSION_TAG_ENV));
        let argv = session::exec_argv(&route, &shell);
        // The container's start command may still be creating the account and home (a login right
        // after another one created it, or after Docker restarted it): every exec waits for its
        // ready marker, then changes to the home directory. Once ready that costs one `test`.
        let (argv, workdir) = (engine::wait_ready_argv(argv, &tag), "/".to_string());
        let spec = ExecSpec {
            argv,
            user: format!("{}:{}", account.uid, account.gid),
            env,
            workdir,
            tty,
        };
        let exec_id = match self.lc.docker.create_exec(container_id, &spec).await {
            Ok(id) => id,
            Err(e) => {
                // A start command that failed (e.g. an image without /bin/sh) stops the container.
                if let Ok((ContainerState::Stopped, _)) =
                    self.lc.docker.container_state(container_id).await
                {
                    let logs = self.lc.docker.logs_tail(container_id).await;
                    let image = self
                        .lc
                        .db()
                        .get(&account.name, &req.project)
                        .ok()
                        .flatten()
                        .map(|r| r.image)
                        .unwrap_or_default();
                    return Err(format!(
                        "the container {container} (image {image}) stopped while setting up {}: {}; \
                         check the image with: podspawn verify-image {image}",
                        account.name,
                        if logs.is_empty() { e } else { logs.replace('\n', " ") }
                    ));
                }
                return Err(e);
            }
        };
        let d = &self.lc.docker;
        let id2 = exec_id.clone();
        let stream = tokio::task::block_in_place(|| d.start_exec_stream(&id2, tty))
            .map_err(|e| format!("docker: start exec: {e}"))?;
        if tty {
            let _ = self
                .lc
                .docker
                .resize_exec(&exec_id, req.rows, req.cols)
                .await;
        }
        Ok((exec_id, stream))
    }

    /// Ends a lease. If the command is still running (the client went away), it is ended too.
    async fn release(&self, key: &Key, container: &str, exec_id: Option<&str>) {
        if let Some(id) = exec_id {
            self.end_exec(id).await;
            lock(&self.live_execs).remove(id);
        }
        let Ok(_g) = self.lc.lock_user(&key.0).await else {
            self.drop_lease(key);
            return;
        };
        let remaining = self.drop_lease(key);
        self.lc.audit(Event::Disconnect {
            user: key.0.clone(),
            project: key.1.clone(),
            container: container.to_string(),
            remaining,
        });
        if remaining > 0 {
            return;
        }
        let row = match self.lc.db().get(&key.0, &key.1) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let t = now();
        let res = match session::decide_last_close(
            row.mode,
            self.cfg().session.grace_period.as_secs(),
            t,
        ) {
            CloseDecision::Destroy => self.lc.destroy(&row, EndReason::Disconnect).await,
            CloseDecision::Grace { until } => self
                .lc
                .db()
                .set_status(&key.0, &key.1, Status::Grace, Some(until), t)
                .map_err(String::from),
            CloseDecision::Keep => self
                .lc
                .db()
                .set_status(&key.0, &key.1, Status::Idle, None, t)
                .map_err(String::from),
        };
        if let Err(e) = res {
            tracing::error!(podspawn_user = %key.0, podspawn_container = %container, "ending session: {e}");
        }
    }

    /// A session whose container stopped before anyone could use it (a broken image) is removed at
    /// once instead of lingering for a grace period.
    async fn remove_if_dead(&self, key: &Key) {
        let Ok(_g) = self.lc.lock_user(&key.0).await else {
            return;
        };
        if self.leases_of(key) > 0 {
            return;
        }
        let Ok(Some(row)) = self.lc.db().get(&key.0, &key.1) else {
            return;
        };
        if let Ok((ContainerState::Stopped, _)) =
            self.lc.docker.container_state(&row.container_id).await
        {
            if let Err(e) = self.lc.destroy(&row, EndReason::Orphan).await {
                tracing::warn!(podspawn_user = %key.0, "removing a container that did not start: {e}");
            }
        }
    }

    /// Hangs up a still-running exec: SIGHUP to its session's processes, SIGKILL if they linger.
    /// The signals are sent through the engine, inside the session's container and as its user
    /// (see [`engine::Docker::signal_session`]), never to a host PID that may have been reused.
    async fn end_exec(&self, exec_id: &str) {
        let Ok(st) = self.lc.docker.inspect_exec(exec_id).await else {
            return;
        };
        if !st.running {
            return;
        }
        let (Some(container), Some(user), Some(tag)) =
            (&st.container_id, &st.user, &st.session_tag)
        else {
            tracing::warn!(
                exec_id,
                "a running exec without a session tag: not signalled"
            );
            return;
        };
        for sig in ["HUP", "KILL"] {
            if let Err(e) = self
                .lc
                .docker
                .signal_session(container, user, tag, sig)
                .await
            {
                tracing::warn!(exec_id, "signalling the session: {e}");
                return;
            }
            for _ in 0..50 {
                match self.lc.docker.inspect_exec(exec_id).await {
                    Ok(s) if s.running => tokio::time::sleep(Duration::from_millis(40)).await,
                    _ => return,
                }
            }
        }
    }

    /// Tells live sessions about an upcoming ttl / max-lifetime removal, then removes expired
    /// sessions that nobody holds (the same decisions as the cleanup pass).
    async fn sweep(&self) {
        let t = now();
        let rows = self.lc.db().list(None);
        if let Ok(rows) = rows {
            // Forget warnings about sessions that are gone, so this set stays small.
            let live: HashSet<(Key, i64)> = rows
                .iter()
                .map(|r| ((r.user.clone(), r.project.clone()), r.created_at))
                .collect();
            lock(&self.warned).retain(|k| live.contains(k));
            for r in rows.iter().filter(|r| r.status == Status::Running) {
                let (Some(end), Some(before)) = (r.expires_at, session::warn_before(r)) else {
                    continue;
                };
                let key: Key = (r.user.clone(), r.project.clone());
                if t < end - before || !lock(&self.warned).insert((key.clone(), r.created_at)) {
                    continue;
                }
                if let Some(msg) = session::removal_notice(r, t) {
                    for (_, tx) in lock(&self.notifiers)
                        .get(&key)
                        .map(|v| v.as_slice())
                        .unwrap_or(&[])
                    {
                        let _ = tx.send(msg.clone());
                    }
                }
            }
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut report = crate::roles::lifecycle::Report::default();
        self.lc
            .expire(
                &|u, p| self.leases_of(&(u.to_string(), p.to_string())) > 0,
                &stop,
                &mut report,
            )
            .await;
        for e in report.errors {
            tracing::warn!("sweep: {e}");
        }
    }

    fn list(&self, uid: u32, caller: Option<&Account>, user: Option<&str>) -> Response {
        let filter: Option<String> = if uid == 0 {
            user.map(str::to_string)
        } else {
            match caller {
                Some(a) => Some(a.name.clone()),
                None => return err("unknown caller"),
            }
        };
        let rows = self.lc.db().list(filter.as_deref());
        match rows {
            Ok(rows) => Response::Sessions {
                sessions: rows
                    .into_iter()
                    .map(|r| {
                        let key: Key = (r.user.clone(), r.project.clone());
                        SessionInfo {
                            connections: self.leases_of(&key),
                            user: r.user,
                            project: r.project,
                            container: r.container_name,
                            container_id: r.container_id,
                            image: r.image,
                            mode: r.mode.as_str().to_string(),
                            status: r.status.as_str().to_string(),
                            created_at: r.created_at,
                            grace_expiry: r.grace_expiry,
                            expires_at: r.expires_at,
                        }
                    })
                    .collect(),
            },
            Err(e) => err(e),
        }
    }

    async fn stop(&self, user: &str, project: Option<&str>, purge: bool) -> Response {
        if let Err(e) = crate::core::names::validate_user(user) {
            return err(e);
        }
        let Ok(_g) = self.lc.lock_user(user).await else {
            return err("cannot take the user's lock");
        };
        let rows = match self.lc.db().list(Some(user)) {
            Ok(r) => r,
            Err(e) => return err(e),
        };
        let mut stopped = Vec::new();
        for r in rows
            .into_iter()
            .filter(|r| project.is_none_or(|p| p == r.project))
        {
            if let Err(e) = self.lc.destroy(&r, EndReason::Stop).await {
                return err(e);
            }
            stopped.push(r.container_name);
        }
        if purge {
            match self.lc.purge_home(user) {
                Ok(true) => stopped.push(format!(
                    "home {}",
                    self.cfg().state.homes_dir.join(user).display()
                )),
                Ok(false) => {}
                Err(e) => return err(e),
            }
        }
        if stopped.is_empty() {
            let what = match project {
                Some(p) if !p.is_empty() => format!("{user}@{p}"),
                _ => user.to_string(),
            };
            return err(format!("no session for {what}; see podspawn list"));
        }
        Response::Stopped {
            containers: stopped,
        }
    }
}

/// Client side of the admin requests, for commands run by root.
pub mod admin {
    use super::*;
    use crate::core::protocol::Client;

    fn client(cfg: &Config) -> Result<Client, String> {
        Client::connect(&cfg.broker.socket).map_err(|e| {
            format!(
                "cannot reach the broker at {} ({e}); start it with: systemctl start podspawn.socket",
                cfg.broker.socket.display()
            )
        })
    }

    pub fn sessions(cfg: &Config, user: Option<&str>) -> Result<Vec<SessionInfo>, String> {
        let mut c = client(cfg)?;
        match c
            .call(&Request::List {
                user: user.map(str::to_string),
            })
            .map_err(|e| format!("broker: {e}"))?
        {
            Response::Sessions { sessions } => Ok(sessions),
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected broker reply {other:?}")),
        }
    }

    /// (container name, project) of the user's sessions.
    pub fn user_sessions(cfg: &Config, user: &str) -> Result<Vec<(String, String)>, String> {
        Ok(sessions(cfg, Some(user))?
            .into_iter()
            .map(|s| (s.container, s.project))
            .collect())
    }

    fn stop_req(
        cfg: &Config,
        user: &str,
        project: Option<&str>,
        purge: bool,
    ) -> Result<Vec<String>, String> {
        let mut c = client(cfg)?;
        match c
            .call(&Request::Stop {
                user: user.to_string(),
                project: project.map(str::to_string),
                purge,
            })
            .map_err(|e| format!("broker: {e}"))?
        {
            Response::Stopped { containers } => Ok(containers),
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected broker reply {other:?}")),
        }
    }

    /// Stops every session of the user; returns how many.
    pub fn stop_user(cfg: &Config, user: &str) -> Result<usize, String> {
        match stop_req(cfg, user, None, false) {
            Ok(v) => Ok(v.len()),
            Err(e) if e.starts_with("no session") => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// `podspawn stop alice[@project] [--purge]`.
    pub fn stop(cfg: &Config, user: &str, project: &str, purge: bool) -> Result<(), String> {
        for c in stop_req(cfg, user, Some(project), purge)? {
            if c.starts_with("home ") {
                println!("removed {c}");
            } else {
                println!("stopped {c}");
            }
        }
        Ok(())
    }

    /// Aggregate numbers from the broker.
    pub fn snapshot(cfg: &Config) -> Result<crate::core::metrics::Snapshot, String> {
        let mut c = client(cfg)?;
        match c
            .call(&Request::Status {})
            .map_err(|e| format!("broker: {e}"))?
        {
            Response::Status { snapshot } => Ok(snapshot),
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected broker reply {other:?}")),
        }
    }

    /// `podspawn status [--prometheus]`.
    pub fn status(cfg: &Config, prometheus: bool) -> Result<(), String> {
        let s = snapshot(cfg)?;
        if prometheus {
            print!("{}", crate::core::metrics::render_prometheus(&s));
        } else {
            print!("{}", crate::core::metrics::render_human(&s));
        }
        Ok(())
    }

    /// `podspawn list [--json]`.
    pub fn list(cfg: &Config, json: bool) -> Result<(), String> {
        let s = sessions(cfg, None)?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
            );
            return Ok(());
        }
        let t = now();
        println!(
            "{:<16} {:<12} {:<28} {:<13} {:>5} {:>8} {:>14}",
            "USER", "PROJECT", "CONTAINER", "STATUS", "CONNS", "AGE", "LIFETIME-LEFT"
        );
        for x in s {
            let left = match x.expires_at {
                None => "-".to_string(),
                Some(e) if e <= t => "expired".to_string(),
                Some(e) => human(e - t),
            };
            println!(
                "{:<16} {:<12} {:<28} {:<13} {:>5} {:>8} {:>14}",
                x.user,
                if x.project.is_empty() {
                    "(default)"
                } else {
                    &x.project
                },
                x.container,
                x.status,
                x.connections,
                human(t - x.created_at),
                left
            );
        }
        Ok(())
    }

    fn human(secs: i64) -> String {
        let s = secs.max(0);
        if s < 120 {
            format!("{s}s")
        } else if s < 7200 {
            format!("{}m", s / 60)
        } else {
            format!("{}h{}m", s / 3600, (s % 3600) / 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_limited_per_uid_and_freed_on_drop() {
        let l = Arc::new(ConnLimiter::new(2));
        let a = l.try_acquire(1000).unwrap();
        let b = l.try_acquire(1000).unwrap();
        assert!(l.try_acquire(1000).is_none(), "third connection of one uid");
        // Another user is not affected, nor is root.
        let c = l.try_acquire(1001).unwrap();
        let roots: Vec<_> = (0..10).map(|_| l.try_acquire(0).unwrap()).collect();
        assert_eq!(l.open_of(1000), 2);
        drop(a);
        assert_eq!(l.open_of(1000), 1);
        let a2 = l.try_acquire(1000).unwrap();
        drop((a2, b, c, roots));
        assert_eq!(l.open_of(1000), 0);
        assert_eq!(l.open_of(1001), 0);
        assert!(lock(&l.open).is_empty());
    }

    fn exec(container: &str, running: bool) -> engine::ExecStatus {
        engine::ExecStatus {
            running,
            exit_code: None,
            pid: Some(42),
            container_id: Some(container.into()),
            user: Some("1000:1000".into()),
            session_tag: Some("0123456789abcdef".into()),
        }
    }

    #[test]
    fn resume_needs_a_live_unheld_exec_of_the_session() {
        let id = "a".repeat(64);
        assert!(check_resume(&id, Some(&exec("c1", true)), "c1", false).is_ok());
        let e = |r: Result<(), String>| r.unwrap_err();
        assert!(e(check_resume("../x", Some(&exec("c1", true)), "c1", false)).contains("invalid"));
        assert!(e(check_resume(&"A".repeat(64), None, "c1", false)).contains("invalid"));
        assert!(e(check_resume(&id, None, "c1", false)).contains("no longer exists"));
        assert!(
            e(check_resume(&id, Some(&exec("c2", true)), "c1", false)).contains("does not belong")
        );
        assert!(e(check_resume(&id, Some(&exec("c1", false)), "c1", false)).contains("ended"));
        assert!(
            e(check_resume(&id, Some(&exec("c1", true)), "c1", true)).contains("already attached")
        );
    }
}
