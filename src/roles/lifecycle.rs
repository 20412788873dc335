//! The lifecycle operations shared by the broker and the cleanup pass: creating a session's
//! container, destroying it (with its network, state row, audit record and counters), expiring
//! sessions and reconciling orphans. Both processes take the same per-user locks, so a cleanup pass
//! never removes a container that a login is reattaching to.

use crate::core::config::{
    Config, NetworkMode, SessionMode, UserOverrides, HELPER_CONTAINER_PATH, SESSION_CONTAINER_DIR,
};
use crate::core::metrics::Snapshot;
use crate::core::pass;
use crate::core::session::{self, CleanupAction, ContainerState, EndReason};
use crate::engine::{self, ContainerRuntime, Docker, LABEL_INSTANCE, LABEL_MANAGED, LABEL_USER};
use crate::host::accounts::Account;
use crate::store::audit::{Audit, Event};
use crate::store::locks::UserLock;
use crate::store::state::{Db, SessionRow, Status};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds a user's lock (in this process and across processes) until dropped.
pub struct UserGuard {
    _mutex: tokio::sync::OwnedMutexGuard<()>,
    _file: UserLock,
}

/// Why a lifecycle operation failed, in the cases callers branch on; its `Display` is the line a
/// person reads (the broker sends it to the user, cleanup logs it).
#[derive(Debug)]
pub enum Error {
    /// The container engine.
    Engine(engine::Error),
    /// state.db.
    State(crate::store::state::Error),
    /// The audit log could not be opened.
    Audit(crate::host::fs::LogError),
    /// The configuration (the user's overrides file).
    Config(crate::core::config::ConfigError),
    /// A container name podspawn may use is held by others.
    Names(crate::core::names::NamesTaken),
    /// The per-user lock.
    Lock { dir: PathBuf, message: String },
    /// A persistent home directory.
    Home { path: PathBuf, message: String },
    /// A registered project cannot start a session (roles/project_session.rs).
    Project(crate::roles::project_session::ProjectError),
    /// A new container's start command failed: names the image and how to check it.
    DidNotStart {
        user: String,
        image: String,
        cause: engine::Error,
    },
    /// A stopped container whose user's network-namespace holder is gone cannot start again
    /// (it joined that holder's namespace): it is replaced.
    NetnsGone { container: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Engine(e) => e.fmt(f),
            Error::State(e) => e.fmt(f),
            Error::Audit(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::Names(e) => e.fmt(f),
            Error::Lock { dir, message } => write!(f, "cannot lock {}: {message}", dir.display()),
            Error::Home { message, .. } => f.write_str(message),
            Error::Project(e) => e.fmt(f),
            Error::DidNotStart { user, image, cause } => write!(
                f,
                "the container for {user} (image {image}) did not start: {cause}; check the image \
                 with: podspawn verify-image {image}"
            ),
            Error::NetnsGone { container } => write!(
                f,
                "the container {container} cannot start again: the network namespace it joined \
                 is gone"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Error {
        Error::Engine(e)
    }
}

impl From<crate::store::state::Error> for Error {
    fn from(e: crate::store::state::Error) -> Error {
        Error::State(e)
    }
}

impl From<crate::host::fs::LogError> for Error {
    fn from(e: crate::host::fs::LogError) -> Error {
        Error::Audit(e)
    }
}

impl From<crate::core::config::ConfigError> for Error {
    fn from(e: crate::core::config::ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<crate::core::names::NamesTaken> for Error {
    fn from(e: crate::core::names::NamesTaken) -> Error {
        Error::Names(e)
    }
}

impl From<crate::roles::project_session::ProjectError> for Error {
    fn from(e: crate::roles::project_session::ProjectError) -> Error {
        Error::Project(e)
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

fn home_error(path: &std::path::Path, message: String) -> Error {
    Error::Home {
        path: path.to_path_buf(),
        message,
    }
}

/// What one cleanup pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub removed: Vec<(String, EndReason)>,
    pub restarted: Vec<String>,
    pub forgotten_rows: usize,
    pub removed_networks: Vec<String>,
    /// Network-namespace holders removed (their users have no sessions or connections left).
    pub removed_holders: usize,
    pub errors: Vec<String>,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.removed.extend(other.removed);
        self.restarted.extend(other.restarted);
        self.forgotten_rows += other.forgotten_rows;
        self.removed_networks.extend(other.removed_networks);
        self.removed_holders += other.removed_holders;
        self.errors.extend(other.errors);
    }
}

/// How many users' work a cleanup pass does at once (each user's own work stays serial, under
/// the user's lock). Removing a running container is mostly the engine waiting on the kernel and
/// containerd (the kill, the task's teardown, unmounting its root file system, removing its
/// cgroup), so a few removals in flight overlap those waits; past that the engine's own locks
/// and CPU serialise them and more in flight gains nothing, while a pass after a reboot or a mass
/// removal would crowd out the logins that need the engine at the same time. `benches/run.sh`
/// measures the pass against `docker rm -f` at this same parallelism.
pub const CLEANUP_PARALLELISM: usize = 8;

/// Removals at once on an engine of `version`: one on Docker 20.10 before 20.10.27 (and older
/// engines), whose libnetwork can deadlock under concurrent container removals (moby/moby#46661,
/// fixed in 20.10.27 and 23.0; Debian 12 ships 20.10.24) — a wedged engine stops every login,
/// which no speed-up is worth; [`CLEANUP_PARALLELISM`] otherwise. Pure.
pub fn removal_parallelism(version: &str) -> usize {
    let nums: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    match nums.as_slice() {
        [major, ..] if *major < 20 => 1,
        [20, minor, ..] if *minor < 10 => 1,
        [20, 10, patch] if *patch < 27 => 1,
        [] | [0, ..] => 1,
        _ => CLEANUP_PARALLELISM,
    }
}

/// The user and project of an object of installation `instance`, from its labels; `None` for
/// objects podspawn does not manage, another installation's, and user labels that are not valid
/// user names (never acted on).
fn owner_of(labels: &engine::Labels, instance: &str) -> Option<(String, String)> {
    if labels.get(LABEL_MANAGED).map(String::as_str) != Some("podspawn")
        || labels.get(LABEL_INSTANCE).map(String::as_str) != Some(instance)
    {
        return None;
    }
    let user = labels
        .get(LABEL_USER)
        .filter(|u| crate::core::names::validate_user(u).is_ok())?;
    let project = labels
        .get(engine::LABEL_PROJECT)
        .cloned()
        .unwrap_or_default();
    Some((user.clone(), project))
}

/// `R`: the container engine (Docker in production, [`engine::fake::Fake`] in tests).
pub struct Lifecycle<R: ContainerRuntime = Docker> {
    pub cfg: Config,
    pub docker: R,
    db: Mutex<Db>,
    audit: Option<Audit>,
    pub instance: String,
    user_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Containers whose project `on_create` hook has been run (or that have none), so that a
    /// later command, scp or sftp login neither reads the Podfile nor execs the check again.
    pub(crate) created_hooks_done: Mutex<HashSet<String>>,
}

impl Lifecycle<Docker> {
    /// Opens state and audit log; fails when the Docker engine cannot be reached.
    pub async fn open(cfg: Config) -> Result<Lifecycle, String> {
        let docker = Docker::connect().await?;
        Ok(Self::with_runtime(cfg, docker)?)
    }

    /// Like [`Lifecycle::open`], but connects to the engine on first use: the broker starts and
    /// serves while the engine is down (users get [`runtime::ENGINE_DOWN`]) and recovers without
    /// a restart when it comes back.
    pub fn open_lazy(cfg: Config) -> Result<Lifecycle, Error> {
        Self::with_runtime(cfg, Docker::lazy())
    }
}

impl<R: ContainerRuntime> Lifecycle<R> {
    /// Opens state and audit log with the engine `docker`.
    pub fn with_runtime(cfg: Config, docker: R) -> Result<Lifecycle<R>, Error> {
        let db = Db::open(&cfg.state.db_path)?;
        let audit = Audit::open(&cfg)?;
        Ok(Lifecycle {
            instance: db.instance()?,
            cfg,
            docker,
            db: Mutex::new(db),
            audit,
            user_locks: Mutex::new(HashMap::new()),
            created_hooks_done: Mutex::new(HashSet::new()),
        })
    }

    pub fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    pub fn audit(&self, ev: Event) {
        if let Some(a) = &self.audit {
            a.record(&ev);
        }
    }

    /// Takes the user's lock: an in-process mutex, then the lock file shared with other processes.
    pub async fn lock_user(&self, user: &str) -> Result<UserGuard, Error> {
        let m = lock(&self.user_locks)
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let g = m.lock_owned().await;
        let dir = self.cfg.state.lock_dir.clone();
        let u = user.to_string();
        let file = tokio::task::spawn_blocking(move || crate::store::locks::lock_user(&dir, &u))
            .await
            .map_err(|e| Error::Lock {
                dir: self.cfg.state.lock_dir.clone(),
                message: format!("lock task: {e}"),
            })?
            .map_err(|e| Error::Lock {
                dir: self.cfg.state.lock_dir.clone(),
                message: e.to_string(),
            })?;
        Ok(UserGuard {
            _mutex: g,
            _file: file,
        })
    }

    fn home_dir(&self, user: &str) -> PathBuf {
        self.cfg.state.homes_dir.join(user)
    }

    /// The labels of (user, project) in this installation: what makes an object ours.
    pub fn owner(&self, user: &str, project: &str) -> HashMap<String, String> {
        engine::labels(&self.instance, user, project)
    }

    /// Picks the container (and network) name for a new session of (user, project): the seed
    /// page's `podspawn-<user>[-<project>]` unless another owner holds it, then a deterministic
    /// alternative. Removes what a crash left of our own under that name. Never touches objects of
    /// another user, project or installation. The caller holds the user's lock.
    pub async fn allocate_name(&self, user: &str, project: &str) -> Result<String, Error> {
        let owner = self.owner(user, project);
        let mut seen = Vec::new();
        for name in crate::core::names::name_candidates(user, project, &self.instance) {
            let container = self.docker.container_labels(&name).await?;
            let network = self
                .docker
                .network_labels(&engine::network_name(&name))
                .await?;
            seen.push((
                name,
                engine::holder(container.as_ref(), &owner),
                engine::holder(network.as_ref(), &owner),
            ));
        }
        let (name, leftovers) = crate::core::names::choose_name(&seen)?;
        if leftovers {
            // A container of ours without a state row (a crash between create and insert).
            self.docker.remove(&name).await?;
            engine::remove_owned_network(&self.docker, &engine::network_name(&name), &owner)
                .await?;
        }
        Ok(name)
    }

    /// The read-only mount of `helper.path` at [`HELPER_CONTAINER_PATH`] (it serves SFTP on images
    /// without an sftp-server), or None when it is off or the file is missing: then one warning
    /// per process, and images with their own sftp-server still work.
    fn helper_bind(&self) -> Option<engine::Bind> {
        static WARNED: std::sync::Once = std::sync::Once::new();
        let path = self.cfg.helper.path.as_ref()?;
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                Some(engine::Bind::read_only(path.clone(), HELPER_CONTAINER_PATH))
            }
            other => {
                let why = match other {
                    Ok(_) => "not a regular file".to_string(),
                    Err(e) => e.to_string(),
                };
                WARNED.call_once(|| {
                    tracing::warn!(
                        "helper.path {}: {why}; containers get no podspawn-helper, so SFTP \
                         works only on images with their own sftp-server (install the package's \
                         helper or set helper.path; podspawn verify-image tells what an image lacks)",
                        path.display()
                    )
                });
                None
            }
        }
    }

    /// The user's session directory (created or repaired), or None when `broker.session_dir` is off.
    pub fn session_dir(
        &self,
        account: &Account,
    ) -> Result<Option<PathBuf>, crate::host::session_dir::Error> {
        match &self.cfg.broker.session_dir {
            None => Ok(None),
            Some(base) => crate::host::session_dir::ensure_user_dir(base, account).map(Some),
        }
    }

    /// The read-write mount of the user's session directory at [`SESSION_CONTAINER_DIR`], or None
    /// when it is off or cannot be made (then one warning: the session goes on without agent
    /// forwarding and reports exit codes instead of signals).
    fn session_bind(&self, account: &Account) -> Option<engine::Bind> {
        match self.session_dir(account) {
            Ok(Some(dir)) => Some(engine::Bind::read_write(dir, SESSION_CONTAINER_DIR)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(podspawn_user = %account.name,
                    "{e}; the container gets no session directory (no agent forwarding)");
                None
            }
        }
    }

    /// Starts a stopped container again. Its session directory must exist first, or the engine
    /// refuses the bind mount (after a host reboot, /run is empty); so must the holder of the
    /// network namespace it joined (started first; [`Error::NetnsGone`] when it is gone).
    pub async fn restart(&self, row: &SessionRow) -> Result<(), Error> {
        if self.cfg.broker.session_dir.is_some() {
            if let Some(a) = crate::host::accounts::lookup(&row.user) {
                let _ = self.session_bind(&a);
            }
        }
        let labels = self.docker.container_labels(&row.container_id).await?;
        if let Some(holder) = labels.as_ref().and_then(|l| l.get(engine::LABEL_NETNS)) {
            match self.docker.container_state(holder).await?.0 {
                ContainerState::Running => {}
                ContainerState::Stopped => self.docker.start(holder).await?,
                ContainerState::Missing => {
                    return Err(Error::NetnsGone {
                        container: row.container_name.clone(),
                    })
                }
            }
        }
        Ok(self.docker.start(&row.container_id).await?)
    }

    /// The owner labels of `user`'s network-namespace holder (and of its network).
    fn netns_owner(&self, user: &str) -> HashMap<String, String> {
        let mut owner = self.owner(user, "");
        owner.insert(engine::LABEL_ROLE.into(), engine::ROLE_NETNS.into());
        owner
    }

    /// The user's network-namespace holder as (container ID, name): running, started, or created
    /// (in isolated mode with the user's own bridge network) when there is none. `image`: the
    /// image to run it from (the session's being created; None: the user's default image). Only
    /// objects with this installation's owner labels are used; a name held by another owner
    /// moves to the alternative name. The caller holds the user's lock.
    pub async fn ensure_netns(
        &self,
        account: &Account,
        image: Option<&str>,
    ) -> Result<(String, String), Error> {
        let user = account.name.as_str();
        // In use again: no longer lingering (session.network_linger).
        self.db().netns_clear_idle(user)?;
        let owner = self.netns_owner(user);
        let candidates = engine::holder_name_candidates(user, &self.instance);
        for name in &candidates {
            match self.docker.container_labels(name).await? {
                Some(l) if engine::same_owner(&l, &owner) && engine::is_netns_holder(&l) => {
                    match self.docker.container_state(name).await? {
                        (ContainerState::Running, Some(id)) => return Ok((id, name.clone())),
                        (ContainerState::Stopped, Some(id)) => match self.docker.start(&id).await {
                            Ok(()) => return Ok((id, name.clone())),
                            Err(e) => {
                                tracing::warn!(podspawn_user = user, podspawn_container = %name,
                                        "the network namespace holder does not start again ({e}); replacing it");
                                self.docker.remove(&id).await?;
                            }
                        },
                        _ => {}
                    }
                }
                Some(_) => continue,
                None => {}
            }
            let net = engine::network_name(name);
            if self.cfg.security.network == NetworkMode::Isolated {
                if let Some(l) = self.docker.network_labels(&net).await? {
                    if !engine::same_owner(&l, &owner) {
                        continue;
                    }
                }
            }
            let id = self.create_netns(account, name, image).await?;
            return Ok((id, name.clone()));
        }
        Err(crate::core::names::NamesTaken {
            names: candidates.to_vec(),
        }
        .into())
    }

    async fn create_netns(
        &self,
        account: &Account,
        name: &str,
        image: Option<&str>,
    ) -> Result<String, Error> {
        let user = account.name.as_str();
        let owner = self.netns_owner(user);
        let image = match image {
            Some(i) => i.to_string(),
            None => UserOverrides::load(&self.cfg.users_dir, user)?
                .image
                .unwrap_or_else(|| self.cfg.defaults.image.clone()),
        };
        self.docker.ensure_image(&image).await?;
        let t0 = std::time::Instant::now();
        let network = if self.cfg.security.network == NetworkMode::Isolated {
            let net = engine::network_name(name);
            // An exhausted address pool names its fix in its message (engine::Error).
            self.docker.ensure_network(&net, &owner).await?;
            Some(net)
        } else {
            None
        };
        let spec = engine::holder_spec(&self.cfg, &self.instance, user, name, &image, network);
        let id = match self.docker.create_and_start(&spec).await {
            Ok(id) => id,
            Err(e) => {
                if let Some(n) = &spec.network {
                    let _ = engine::remove_owned_network(&self.docker, n, &owner).await;
                }
                return Err(e.into());
            }
        };
        tracing::info!(
            podspawn_user = user,
            podspawn_container = name,
            ms = t0.elapsed().as_millis() as u64,
            "network namespace created"
        );
        Ok(id)
    }

    /// Removes the user's network-namespace holder and its network once nothing has needed them
    /// for `session.network_linger`: no session row and no connection lease (pam_podspawn.so).
    /// `force`: at once, however recently they were used (the user is gone, an admin stopped the
    /// sessions, or the create that made them failed). Returns whether it removed a holder. The
    /// caller holds the user's lock.
    pub async fn settle_netns(&self, user: &str, force: bool) -> Result<bool, Error> {
        if !self.db().list(Some(user))?.is_empty() || self.db().netns_lease_count(user)? > 0 {
            self.db().netns_clear_idle(user)?;
            return Ok(false);
        }
        let owner = self.netns_owner(user);
        let mut holders = Vec::new();
        for name in engine::holder_name_candidates(user, &self.instance) {
            match self.docker.container_labels(&name).await? {
                Some(l) if engine::same_owner(&l, &owner) && engine::is_netns_holder(&l) => {
                    holders.push((name, true))
                }
                Some(_) => {}
                None => holders.push((name, false)),
            }
        }
        // Nothing to linger for when there is no holder (left networks still go below).
        // (`force` writes nothing first: it also cleans up after a state database that cannot
        // be written.)
        if !force && holders.iter().any(|(_, h)| *h) {
            let t = now();
            let since = self.db().netns_mark_idle(user, t)?;
            let linger =
                i64::try_from(self.cfg.session.network_linger.as_secs()).unwrap_or(i64::MAX);
            if t.saturating_sub(since) < linger {
                return Ok(false);
            }
        }
        let mut removed = false;
        for (name, holder) in holders {
            if holder {
                self.docker.remove(&name).await?;
                removed = true;
                let reason = if force { "forced" } else { "unused" };
                tracing::info!(podspawn_user = user, podspawn_container = %name, reason,
                    "network namespace removed");
                self.audit(Event::NetnsDestroy {
                    user: user.to_string(),
                    container: name.clone(),
                    reason: reason.to_string(),
                });
            }
            let net = engine::network_name(&name);
            if let Some(l) = self.docker.network_labels(&net).await? {
                if engine::same_owner(&l, &owner) {
                    self.docker.remove_network(&net).await?;
                }
            }
        }
        if let Err(e) = self.db().netns_forget(user) {
            // A stale record only makes a later pass look again.
            tracing::warn!(
                podspawn_user = user,
                "forgetting the network namespace: {e}"
            );
        }
        Ok(removed)
    }

    /// Creates the container `name` (from [`Lifecycle::allocate_name`]) for (user, project) and its
    /// state row. The caller holds the user's lock and has checked `resources.max_per_user`. A
    /// failed create leaves nothing behind: not even the network namespace it made for a user
    /// with no other session or connection.
    pub async fn create(
        &self,
        account: &Account,
        project: &str,
        name: &str,
        t: i64,
    ) -> Result<SessionRow, Error> {
        let made = self.create_inner(account, project, name, t).await;
        if made.is_err() {
            if let Err(e) = self.settle_netns(&account.name, true).await {
                tracing::warn!(podspawn_user = %account.name, "removing the network namespace: {e}");
            }
        }
        made
    }

    async fn create_inner(
        &self,
        account: &Account,
        project: &str,
        name: &str,
        t: i64,
    ) -> Result<SessionRow, Error> {
        let user = account.name.as_str();
        let ov = UserOverrides::load(&self.cfg.users_dir, user)?;
        let mode = ov.mode.unwrap_or(self.cfg.session.mode);
        let mut spec = engine::container_spec(&self.cfg, &ov, &self.instance, user, project);
        spec.name = name.to_string();
        // A registered project: its image, environment, resources, mode and shell
        // (roles/project_session.rs).
        let proj = self.project_session(project).await?;
        if let Some(p) = &proj {
            p.apply(&mut spec, user, &ov);
        }
        let mode = proj.as_ref().and_then(|p| p.podfile.mode).unwrap_or(mode);
        let home = format!("/home/{user}");
        if mode == SessionMode::Named {
            let dir = self.prepare_home(account)?;
            spec.binds.push(engine::Bind::read_write(dir, home.clone()));
        }
        if let Some(helper) = self.helper_bind() {
            spec.binds.push(helper);
            spec.labels
                .insert(engine::LABEL_HELPER.into(), HELPER_CONTAINER_PATH.into());
        }
        if let Some(agent) = self.session_bind(account) {
            spec.binds.push(agent);
            spec.labels.insert(
                engine::LABEL_SESSION_DIR.into(),
                SESSION_CONTAINER_DIR.into(),
            );
        }
        self.docker.ensure_image(&spec.image).await?;
        // Every container of the user joins the user's network namespace: one holder per user
        // (created on the user's first login, with the user's own bridge network in isolated
        // mode), so `localhost` is the same in all of them and for the SSH forwards that
        // pam_podspawn.so puts into that namespace. Other users' namespaces stay apart.
        let (holder_id, holder_name) = self.ensure_netns(account, Some(&spec.image)).await?;
        spec.network = Some(engine::joined_network(&holder_id));
        spec.labels
            .insert(engine::LABEL_NETNS.into(), holder_id.clone());
        // A project's companion services join the user's bridge network, where the holder (and
        // so every session of the user) finds them by name.
        let services_net = (self.cfg.security.network == NetworkMode::Isolated)
            .then(|| engine::network_name(&holder_name));
        let shell = ov
            .shell
            .clone()
            .or_else(|| proj.as_ref().and_then(|p| p.podfile.shell.clone()))
            .unwrap_or_else(|| self.cfg.defaults.shell.clone());
        spec.cmd = engine::init_argv(user, account.uid, account.gid, &home, &shell);
        spec.user = Some("0:0".into());
        let started = std::time::Instant::now();
        let mut created = self.docker.create_and_start(&spec).await;
        // The engine does not see a host path podspawn mounts for convenience (it runs on another
        // host, or in another mount namespace): the session goes on without that mount, once per
        // such path. Without podspawn-helper, images with their own sftp-server still serve SFTP;
        // without the session directory, there is no agent forwarding and exit codes stand in for
        // signals. A missing persistent home is not skipped: that would lose the user's files.
        for _ in 0..2 {
            let Err(engine::Error::BindSourceMissing { path, .. }) = &created else {
                break;
            };
            let missing = std::path::PathBuf::from(path);
            let what = if self.cfg.helper.path.as_deref() == Some(missing.as_path()) {
                ("podspawn-helper (helper.path)", engine::LABEL_HELPER)
            } else if spec.binds.iter().any(|b| {
                b.source == missing && b.target == crate::core::config::SESSION_CONTAINER_DIR
            }) {
                (
                    "the session directory (broker.session_dir)",
                    engine::LABEL_SESSION_DIR,
                )
            } else {
                break;
            };
            if !spec.binds.iter().any(|b| b.source == missing) {
                break;
            }
            tracing::warn!(
                path = %missing.display(),
                "the container engine cannot see {}; creating the container without it",
                what.0
            );
            spec.binds.retain(|b| b.source != missing);
            spec.labels.remove(what.1);
            created = self.docker.create_and_start(&spec).await;
        }
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                // The holder runs the image's `sleep`: an image that cannot (no sleep, no libc)
                // stops it, and then the session cannot join it. Say so about the image.
                if let Ok((st, _)) = self.docker.container_state(&holder_id).await {
                    if st != ContainerState::Running {
                        let logs = self.docker.logs_tail(&holder_id).await;
                        return Err(Error::DidNotStart {
                            user: user.to_string(),
                            image: spec.image.clone(),
                            cause: engine::Error::StartFailed {
                                output: if logs.is_empty() {
                                    e.to_string()
                                } else {
                                    logs.replace('\n', " ")
                                },
                            },
                        });
                    }
                }
                return Err(e.into());
            }
        };
        tracing::debug!(
            podspawn_user = user,
            ms = started.elapsed().as_millis() as u64,
            "container create+start"
        );
        // Hand out no session before the start command has made the account: a broken image
        // (no /bin/sh, say) is reported here in one line instead of as an engine error in the
        // user's terminal.
        if let Err(e) = self
            .docker
            .wait_ready(&id, std::time::Duration::from_secs(60))
            .await
        {
            let _ = self.docker.remove(&id).await;
            return Err(Error::DidNotStart {
                user: user.to_string(),
                image: spec.image.clone(),
                cause: e,
            });
        }
        if let Some(p) = &proj {
            self.prepare_workspace(&id, p, account.uid, account.gid)
                .await;
            // Companion services (roles/project_services.rs); a failure ends the session.
            if let Err(e) = self
                .start_services(
                    user,
                    project,
                    &spec.name,
                    services_net.as_deref(),
                    &p.podfile,
                )
                .await
            {
                let _ = self.docker.remove(&id).await;
                return Err(e);
            }
        }
        let row = SessionRow {
            user: user.to_string(),
            project: project.to_string(),
            container_id: id.clone(),
            container_name: spec.name.clone(),
            image: spec.image.clone(),
            mode,
            status: Status::Running,
            created_at: t,
            last_activity: t,
            grace_expiry: None,
            expires_at: session::deadline(
                mode,
                t,
                self.cfg.session.max_lifetime.as_secs(),
                self.cfg.session.ttl.as_secs(),
            ),
            uid: account.uid,
        };
        let fail = self.db().insert(&row).err();
        if let Some(e) = fail {
            let _ = self.docker.remove(&id).await;
            return Err(e.into());
        }
        tracing::info!(podspawn_user = user, podspawn_project = project, podspawn_container = %spec.name,
            image = %spec.image, mode = mode.as_str(), "container created");
        self.audit(Event::ContainerCreate {
            user: user.to_string(),
            project: project.to_string(),
            container: spec.name.clone(),
            image: spec.image.clone(),
            mode,
        });
        Ok(row)
    }

    /// `<homes_dir>/<user>`, owned by the user, for named sessions.
    fn prepare_home(&self, account: &Account) -> Result<PathBuf, Error> {
        let homes = &self.cfg.state.homes_dir;
        std::fs::create_dir_all(homes)
            .map_err(|e| home_error(homes, format!("cannot create {}: {e}", homes.display())))?;
        let _ = std::fs::set_permissions(homes, std::fs::Permissions::from_mode(0o711));
        let dir = self.home_dir(&account.name);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(home_error(
                    &dir,
                    format!("{} is not a directory; remove it", dir.display()),
                ))
            }
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir(&dir).map_err(|e| {
                    home_error(&dir, format!("cannot create {}: {e}", dir.display()))
                })?;
                std::os::unix::fs::chown(&dir, Some(account.uid), Some(account.gid)).map_err(
                    |e| home_error(&dir, format!("cannot chown {}: {e}", dir.display())),
                )?;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750));
            }
        }
        Ok(dir)
    }

    /// Removes a session's container and network, forgets its row, audits and counts the removal.
    /// The caller holds the user's lock.
    pub async fn destroy(&self, row: &SessionRow, reason: EndReason) -> Result<(), Error> {
        self.docker.remove(&row.container_id).await?;
        // A project's companion services (roles/project_services.rs), before their network.
        self.remove_services(&row.user, &row.project, &row.container_name, reason)
            .await;
        engine::remove_owned_network(
            &self.docker,
            &engine::network_name(&row.container_name),
            &self.owner(&row.user, &row.project),
        )
        .await?;
        self.db().delete(&row.user, &row.project)?;
        let _ = self.db().bump(&format!("removals.{}", reason.as_str()));
        tracing::info!(podspawn_user = %row.user, podspawn_project = %row.project,
            podspawn_container = %row.container_name, reason = reason.as_str(), "container removed");
        self.audit(Event::ContainerDestroy {
            user: row.user.clone(),
            project: row.project.clone(),
            container: row.container_name.clone(),
            reason,
        });
        Ok(())
    }

    /// Deletes a named session's persistent home (`stop --purge`).
    pub fn purge_home(&self, user: &str) -> Result<bool, Error> {
        let dir = self.home_dir(user);
        match std::fs::symlink_metadata(&dir) {
            Err(_) => Ok(false),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dir)
                .map(|_| true)
                .map_err(|e| home_error(&dir, format!("cannot remove {}: {e}", dir.display()))),
            Ok(_) => Err(home_error(
                &dir,
                format!("{} is not a directory", dir.display()),
            )),
        }
    }

    async fn container_state(&self, row: &SessionRow) -> Result<ContainerState, Error> {
        Ok(self.docker.container_state(&row.container_id).await?.0)
    }

    /// Applies the cleanup decision to every session row. `leased` tells whether a session has live
    /// connections. Stops early (between sessions) when `stop` is set.
    pub async fn expire(
        &self,
        leased: &(dyn Fn(&str, &str) -> bool + Sync),
        stop: &AtomicBool,
        report: &mut Report,
    ) {
        let scope = pass::Scope {
            sessions: true,
            orphans: false,
        };
        self.pass(scope, leased, stop, report).await;
    }

    /// Removes this instance's labelled containers that have no state row, and its networks that
    /// nothing uses. Containers of other instances and containers podspawn does not own are never
    /// touched.
    pub async fn reconcile(&self, stop: &AtomicBool, report: &mut Report) {
        let scope = pass::Scope {
            sessions: false,
            orphans: true,
        };
        self.pass(scope, &|_, _| false, stop, report).await;
    }

    /// One full cleanup pass: expire, restart or remove per mode, reconcile orphans; counted.
    pub async fn cleanup_pass(
        &self,
        leased: &(dyn Fn(&str, &str) -> bool + Sync),
        stop: &AtomicBool,
    ) -> Report {
        let mut report = Report::default();
        let scope = pass::Scope {
            sessions: true,
            orphans: true,
        };
        self.pass(scope, leased, stop, &mut report).await;
        if !stop.load(Ordering::Relaxed) {
            let _ = self.db().bump("cleanup.passes");
        }
        report
    }

    /// A pass over `scope`: the rows, then one labelled list of this installation's containers
    /// (and one of its networks), planned by [`pass::plan`] without locks or further engine calls
    /// (a pass with nothing to do costs two or three requests, whatever the number of sessions);
    /// then each user with work, under that user's lock, [`CLEANUP_PARALLELISM`] users at a time.
    async fn pass(
        &self,
        scope: pass::Scope,
        leased: &(dyn Fn(&str, &str) -> bool + Sync),
        stop: &AtomicBool,
        report: &mut Report,
    ) {
        // Rows before the list: see pass::plan.
        let rows = match self.db().list(None) {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(e.to_string());
                return;
            }
        };
        // With no sessions, only namespaces may be left to look at (session.network_linger).
        if !scope.orphans && rows.is_empty() && !self.db().netns_any().unwrap_or(true) {
            return;
        }
        // Connection leases (pam_podspawn.so, kept in state.db by the broker) count for all of
        // their user's sessions, in this process too.
        let held = match self.db().netns_leased_users() {
            Ok(h) => h,
            Err(e) => {
                report.errors.push(e.to_string());
                return;
            }
        };
        let leased = &|u: &str, p: &str| leased(u, p) || held.contains(u);
        // The two lists at once: a pass with nothing to do is these two requests.
        let (containers, networks) =
            tokio::join!(self.docker.list_instance(&self.instance), async {
                if scope.orphans {
                    self.docker.list_managed_networks(&self.instance).await
                } else {
                    Ok(Vec::new())
                }
            });
        let containers = match containers {
            Ok(c) => c,
            Err(e) => {
                report.errors.push(e.to_string());
                return;
            }
        };
        let networks = networks.unwrap_or_else(|e| {
            report.errors.push(e.to_string());
            Vec::new()
        });
        let containers: Vec<pass::Listed> = containers
            .into_iter()
            // A project's companion services of a live session are that session's, not orphans
            // (roles/project_services.rs); they go with the session.
            .filter(|c| {
                !crate::roles::project_services::belongs_to_session(
                    &c.labels,
                    &rows,
                    &self.instance,
                )
            })
            .filter_map(|c| {
                let (user, project) = owner_of(&c.labels, &self.instance)?;
                Some(pass::Listed {
                    id: c.id,
                    name: c.name,
                    user,
                    project,
                    running: c.running,
                    holder: engine::is_netns_holder(&c.labels),
                    networks: c.networks,
                })
            })
            .collect();
        let networks: Vec<pass::ListedNetwork> = networks
            .into_iter()
            .filter_map(|n| {
                let (user, _) = owner_of(&n.labels, &self.instance)?;
                Some(pass::ListedNetwork { name: n.name, user })
            })
            .collect();
        let work = {
            let key_dir = &self.cfg.auth.key_dir;
            let facts = pass::Facts {
                leased,
                registered: &|u| crate::store::keys::is_registered(key_dir, u),
                network_of: &engine::network_name,
                held: &|u| held.contains(u),
                now: now(),
            };
            pass::plan(&rows, &containers, &networks, scope, &facts)
        };
        // Only a pass with removals for several users asks the engine's version (one request).
        let busy = work.iter().filter(|(_, w)| !w.is_empty()).count();
        let parallelism = if busy > 1 {
            let v = self.docker.version().await.unwrap_or_default();
            let n = removal_parallelism(&v);
            if n == 1 {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::info!(engine = %v, "cleanup removes one container at a time: concurrent \
                        removals can deadlock this Docker version (moby/moby#46661, fixed in 20.10.27)")
                });
            }
            n
        } else {
            1
        };
        let done: Vec<Report> = futures_util::stream::iter(
            work.into_iter()
                .map(|(user, w)| self.work_on(user, w, leased, stop)),
        )
        .buffer_unordered(parallelism)
        .collect()
        .await;
        for r in done {
            report.merge(r);
        }
    }

    /// One user's part of a pass, under the user's lock; every action is decided again there.
    async fn work_on(
        &self,
        user: String,
        work: pass::UserWork,
        leased: &(dyn Fn(&str, &str) -> bool + Sync),
        stop: &AtomicBool,
    ) -> Report {
        let mut report = Report::default();
        if work.is_empty() || stop.load(Ordering::Relaxed) {
            return report;
        }
        let guard = match self.lock_user(&user).await {
            Ok(g) => g,
            Err(e) => {
                report.errors.push(e.to_string());
                return report;
            }
        };
        for (seen, state) in &work.rows {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.settle_row(seen, *state, leased, &mut report).await;
        }
        for c in &work.untracked {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.remove_untracked(c, &mut report).await;
        }
        for n in &work.networks {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.remove_unused_network(&user, n, &mut report).await;
        }
        // The user's namespace holder, when the user's last session went in this pass (or
        // before) and no connection holds it; decided again here, under the lock.
        if !work.holders.is_empty() || !work.rows.is_empty() {
            let gone = !crate::store::keys::is_registered(&self.cfg.auth.key_dir, &user);
            match self.settle_netns(&user, gone).await {
                Ok(true) => report.removed_holders += 1,
                Ok(false) => {}
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        drop(guard);
        report
    }

    /// Decides a planned row again under its user's lock, on the row as it is now, and acts.
    async fn settle_row(
        &self,
        seen: &SessionRow,
        seen_state: ContainerState,
        leased: &(dyn Fn(&str, &str) -> bool + Sync),
        report: &mut Report,
    ) {
        // Re-read under the lock: a login may have reattached meanwhile.
        let cur = match self.db().get(&seen.user, &seen.project) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                report.errors.push(e.to_string());
                return;
            }
        };
        let state = match pass::trusted_state(seen, &cur, seen_state) {
            Some(s) => s,
            None => match self.container_state(&cur).await {
                Ok(s) => s,
                Err(e) => {
                    report.errors.push(e.to_string());
                    return;
                }
            },
        };
        let is_leased = leased(&cur.user, &cur.project);
        let registered = crate::store::keys::is_registered(&self.cfg.auth.key_dir, &cur.user);
        match session::decide_cleanup(&cur, state, is_leased, registered, now()) {
            CleanupAction::Keep => {}
            CleanupAction::Destroy(reason) => match self.destroy(&cur, reason).await {
                Ok(()) => report.removed.push((cur.container_name.clone(), reason)),
                Err(e) => report.errors.push(e.to_string()),
            },
            CleanupAction::Restart => match self.restart(&cur).await {
                Ok(()) => {
                    tracing::info!(podspawn_user = %cur.user, podspawn_container = %cur.container_name,
                        "restarted a container stopped by a Docker or host restart");
                    report.restarted.push(cur.container_name.clone());
                }
                // Its namespace is gone: it cannot run again (the next login creates a new one).
                Err(Error::NetnsGone { .. }) => match self.destroy(&cur, EndReason::Orphan).await {
                    Ok(()) => report
                        .removed
                        .push((cur.container_name.clone(), EndReason::Orphan)),
                    Err(e) => report.errors.push(e.to_string()),
                },
                Err(e) => report.errors.push(e.to_string()),
            },
            CleanupAction::ForgetRow => {
                let _ = engine::remove_owned_network(
                    &self.docker,
                    &engine::network_name(&cur.container_name),
                    &self.owner(&cur.user, &cur.project),
                )
                .await;
                let forgot = self.db().delete(&cur.user, &cur.project).is_ok();
                if forgot {
                    let _ = self.db().bump("removals.orphan");
                    tracing::info!(podspawn_user = %cur.user, podspawn_container = %cur.container_name,
                        "forgot a session whose container is gone");
                    self.audit(Event::ContainerDestroy {
                        user: cur.user.clone(),
                        project: cur.project.clone(),
                        container: cur.container_name.clone(),
                        reason: EndReason::Orphan,
                    });
                    report.forgotten_rows += 1;
                }
            }
        }
    }

    /// Removes a listed container of this installation that no row names (checked again under
    /// its user's lock: a login may have recorded it since the rows were read).
    async fn remove_untracked(&self, c: &pass::Listed, report: &mut Report) {
        let tracked = match self.db().list(Some(&c.user)) {
            Ok(rows) => rows.iter().any(|r| r.container_id == c.id),
            Err(e) => {
                report.errors.push(e.to_string());
                return;
            }
        };
        if tracked {
            return;
        }
        let reason = if crate::store::keys::is_registered(&self.cfg.auth.key_dir, &c.user) {
            EndReason::Orphan
        } else {
            EndReason::UserRemoved
        };
        match self.docker.remove(&c.id).await {
            Ok(()) => {
                let _ = engine::remove_owned_network(
                    &self.docker,
                    &engine::network_name(&c.name),
                    &self.owner(&c.user, &c.project),
                )
                .await;
                let _ = self.db().bump(&format!("removals.{}", reason.as_str()));
                tracing::info!(podspawn_user = %c.user, podspawn_container = %c.name,
                    reason = reason.as_str(), "container removed");
                self.audit(Event::ContainerDestroy {
                    user: c.user.clone(),
                    project: c.project.clone(),
                    container: c.name.clone(),
                    reason,
                });
                report.removed.push((c.name.clone(), reason));
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }

    /// Removes a listed network of this installation that no row names, if nothing is attached
    /// to it now (under its user's lock).
    async fn remove_unused_network(&self, user: &str, name: &str, report: &mut Report) {
        let in_use = self
            .db()
            .list(Some(user))
            .map(|rows| {
                rows.iter()
                    .any(|r| engine::network_name(&r.container_name) == name)
            })
            .unwrap_or(true);
        if in_use {
            return;
        }
        match self.docker.network_endpoints(name).await {
            Ok(Some(0)) => match self.docker.remove_network(name).await {
                Ok(()) => report.removed_networks.push(name.to_string()),
                Err(e) => report.errors.push(e.to_string()),
            },
            Ok(_) => {}
            Err(e) => report.errors.push(e.to_string()),
        }
    }

    /// Numbers for `status` and the metrics endpoint.
    pub async fn snapshot(
        &self,
        connections: &(dyn Fn(&str, &str) -> u32 + Sync),
    ) -> Result<Snapshot, Error> {
        let rows = self.db().list(None)?;
        let counters = self.db().counters()?;
        let t = now();
        let mut s = Snapshot::default();
        for r in &rows {
            match r.status {
                Status::Running => s.sessions_running += 1,
                Status::Grace => s.sessions_grace += 1,
                Status::Idle => s.sessions_idle += 1,
            }
            s.connections += u64::from(connections(&r.user, &r.project));
        }
        s.oldest_session_seconds = rows
            .iter()
            .map(|r| (t - r.created_at).max(0) as u64)
            .max()
            .unwrap_or(0);
        let ours: HashSet<String> = self
            .docker
            .list_managed()
            .await?
            .into_iter()
            .filter(|c| {
                c.labels.get(LABEL_INSTANCE) == Some(&self.instance)
                    && !engine::is_netns_holder(&c.labels)
            })
            .map(|c| c.id)
            .collect();
        s.containers_docker = ours.len() as u64;
        for (name, value) in counters {
            if name == "cleanup.passes" {
                s.cleanup_passes = value;
            } else if let Some(reason) = name.strip_prefix("removals.") {
                s.removals.insert(reason.to_string(), value);
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::fake::Fake;
    use crate::engine::{same_owner, Labels};
    use crate::test_support::TempDir;

    pub(crate) const IMAGE: &str = "img:1";

    /// A configuration whose every path is under `dir`; `alice` and `bob` are registered.
    pub(crate) fn config(dir: &TempDir, mode: SessionMode) -> Config {
        let mut cfg = Config::default();
        let p = |s: &str| dir.path().join(s);
        cfg.auth.key_dir = p("keys");
        cfg.users_dir = p("users");
        cfg.state.db_path = p("state/state.db");
        cfg.state.lock_dir = p("state/locks");
        cfg.state.homes_dir = p("state/homes");
        cfg.defaults.image = IMAGE.into();
        cfg.session.mode = mode;
        cfg.log.audit_log = None;
        // Absent unless a test writes it, whatever the host has installed.
        cfg.helper.path = Some(p("helper/podspawn-helper"));
        // Off unless a test turns it on (never the host's /run/podspawn).
        cfg.broker.session_dir = None;
        // Namespaces go with their users' last containers (one test looks at lingering).
        cfg.session.network_linger = std::time::Duration::ZERO;
        for u in ["alice", "bob", "alice-dev"] {
            dir.write(&format!("keys/{u}"), "ssh-ed25519 AAAA x\n");
        }
        cfg
    }

    pub(crate) fn account(name: &str, uid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid: uid,
            home: format!("/home/{name}").into(),
            shell: "/bin/sh".into(),
        }
    }

    pub(crate) fn lifecycle(dir: &TempDir, mode: SessionMode) -> Lifecycle<Fake> {
        Lifecycle::with_runtime(config(dir, mode), Fake::with_images(&[IMAGE])).unwrap()
    }

    pub(crate) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn create_labels_names_networks_and_records_the_session() {
        let dir = TempDir::new("lc-create");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let name = rt.block_on(lc.allocate_name("alice", "")).unwrap();
        assert_eq!(name, "podspawn-alice");
        let row = rt
            .block_on(lc.create(&account("alice", 2001), "", &name, 100))
            .unwrap();
        let c = lc.docker.container(&row.container_id).unwrap();
        assert_eq!(c.name, "podspawn-alice");
        assert!(same_owner(&c.labels, &lc.owner("alice", "")));
        // It joined the user's network namespace: a holder on the user's own network.
        let h = lc.docker.container("podspawn-alice.netns").unwrap();
        assert!(h.running && engine::is_netns_holder(&h.labels));
        assert!(same_owner(&h.labels, &lc.owner("alice", "")));
        assert_eq!(h.network.as_deref(), Some("podspawn-alice.netns-net"));
        assert_eq!(c.network, Some(format!("container:{}", h.id)));
        assert_eq!(c.labels.get(engine::LABEL_NETNS), Some(&h.id));
        // A second session of the user joins the same holder.
        let web = rt
            .block_on(lc.create(&account("alice", 2001), "web", "podspawn-alice-web", 100))
            .unwrap();
        let w = lc.docker.container(&web.container_id).unwrap();
        assert_eq!(w.network, c.network);
        assert_eq!(lc.docker.networks().len(), 1);
        assert_eq!(lc.db().get("alice", "").unwrap().unwrap(), row);
        assert_eq!(row.expires_at, Some(100 + 8 * 3600));
        assert_eq!(row.status, Status::Running);
    }

    #[test]
    fn the_helper_is_mounted_read_only_when_it_exists() {
        let dir = TempDir::new("lc-helper");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        // Missing: no mount, and the session is still created.
        let row = rt
            .block_on(lc.create(&account("alice", 2001), "", "podspawn-alice", 1))
            .unwrap();
        assert!(lc
            .docker
            .container(&row.container_id)
            .unwrap()
            .binds
            .is_empty());
        dir.write("helper/podspawn-helper", "#!/bin/true\n");
        let row = rt
            .block_on(lc.create(&account("bob", 2002), "", "podspawn-bob", 1))
            .unwrap();
        assert_eq!(
            lc.docker.container(&row.container_id).unwrap().binds,
            vec![engine::Bind::read_only(
                dir.path().join("helper/podspawn-helper"),
                "/.podspawn/podspawn-helper"
            )]
        );
        // An engine that cannot see the file (it runs on another host, or the broker runs in a
        // container of its own): the session is created without the helper.
        lc.docker.remote.store(true, Ordering::SeqCst);
        let row = rt
            .block_on(lc.create(&account("carol", 2003), "", "podspawn-carol", 1))
            .unwrap();
        assert!(lc
            .docker
            .container(&row.container_id)
            .unwrap()
            .binds
            .is_empty());
    }

    #[test]
    fn names_held_by_another_owner_get_the_alternative_and_are_never_removed() {
        let dir = TempDir::new("lc-names");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        // User alice-dev holds podspawn-alice-dev; alice in project dev must not take or remove it.
        let theirs = lc
            .docker
            .add_container("podspawn-alice-dev", lc.owner("alice-dev", ""), true);
        let name = rt.block_on(lc.allocate_name("alice", "dev")).unwrap();
        assert_ne!(name, "podspawn-alice-dev");
        assert!(name.starts_with("podspawn-alice-dev-"));
        assert!(lc.docker.container(&theirs).is_some());
        // Another installation's container with bob's name: same.
        let mut other = lc.owner("bob", "");
        other.insert(LABEL_INSTANCE.into(), "0000000000000000".into());
        let foreign = lc.docker.add_container("podspawn-bob", other, true);
        assert_ne!(
            rt.block_on(lc.allocate_name("bob", "")).unwrap(),
            "podspawn-bob"
        );
        assert!(lc.docker.container(&foreign).is_some());
        // A network held by another owner also moves the name.
        lc.docker
            .add_network("podspawn-alice-net", lc.owner("alice-dev", ""));
        assert_ne!(
            rt.block_on(lc.allocate_name("alice", "")).unwrap(),
            "podspawn-alice"
        );
        // Both names held: a clear error, nothing removed.
        let [a, b] = crate::core::names::name_candidates("bob", "x", &lc.instance);
        lc.docker.add_container(&a, Labels::new(), false);
        lc.docker.add_container(&b, Labels::new(), false);
        let e = rt.block_on(lc.allocate_name("bob", "x")).unwrap_err();
        assert!(matches!(e, Error::Names(_)), "{e:?}");
        assert!(e.to_string().contains("rename or remove them"), "{e}");
        assert_eq!(lc.docker.containers().len(), 4);
    }

    #[test]
    fn leftovers_of_our_own_crash_are_replaced() {
        let dir = TempDir::new("lc-leftover");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let old = lc
            .docker
            .add_container("podspawn-alice", lc.owner("alice", ""), true);
        lc.docker
            .add_network("podspawn-alice-net", lc.owner("alice", ""));
        assert_eq!(
            rt.block_on(lc.allocate_name("alice", "")).unwrap(),
            "podspawn-alice"
        );
        assert!(lc.docker.container(&old).is_none());
        assert!(lc.docker.networks().is_empty());
    }

    #[test]
    fn failed_creates_leave_nothing_behind() {
        let dir = TempDir::new("lc-fail");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let a = account("alice", 2001);
        // A start command that fails (a broken image): one line naming verify-image.
        lc.docker.broken_start.store(true, Ordering::SeqCst);
        let e = rt
            .block_on(lc.create(&a, "", "podspawn-alice", 1))
            .unwrap_err();
        assert!(matches!(e, Error::DidNotStart { .. }), "{e:?}");
        assert!(e.to_string().contains("podspawn verify-image img:1"), "{e}");
        lc.docker.broken_start.store(false, Ordering::SeqCst);
        assert!(lc.docker.containers().is_empty() && lc.docker.networks().is_empty());
        // No address space for the network: the message names the fix.
        lc.docker.pool_exhausted.store(true, Ordering::SeqCst);
        let e = rt
            .block_on(lc.create(&a, "", "podspawn-alice", 1))
            .unwrap_err();
        assert!(
            matches!(e, Error::Engine(engine::Error::AddressPoolExhausted { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("default-address-pools"), "{e}");
        lc.docker.pool_exhausted.store(false, Ordering::SeqCst);
        // An image that is not there.
        let mut cfg = lc.cfg.clone();
        cfg.defaults.image = "missing:1".into();
        let lc2 = Lifecycle::with_runtime(cfg, Fake::with_images(&[])).unwrap();
        let e = rt
            .block_on(lc2.create(&a, "", "podspawn-alice", 1))
            .unwrap_err();
        assert!(
            matches!(e, Error::Engine(engine::Error::ImageMissing { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("docker pull missing:1"), "{e}");
        // The engine down: the one line users get.
        lc.docker.down.store(true, Ordering::SeqCst);
        let e = rt
            .block_on(lc.create(&a, "", "podspawn-alice", 1))
            .unwrap_err();
        assert!(
            matches!(e, Error::Engine(engine::Error::EngineDown { .. })),
            "{e:?}"
        );
        assert_eq!(e.to_string(), engine::ENGINE_DOWN);
        lc.docker.down.store(false, Ordering::SeqCst);
        assert!(lc.db().list(None).unwrap().is_empty());
        assert!(lc.docker.containers().is_empty() && lc.docker.networks().is_empty());
    }

    #[test]
    fn removals_run_one_at_a_time_on_engines_that_deadlock() {
        assert_eq!(removal_parallelism("20.10.24+dfsg1"), 1);
        assert_eq!(removal_parallelism("20.10.26"), 1);
        assert_eq!(removal_parallelism("19.03.15"), 1);
        assert_eq!(removal_parallelism(""), 1);
        assert_eq!(removal_parallelism("garbage"), 1);
        assert_eq!(removal_parallelism("20.10.27"), CLEANUP_PARALLELISM);
        assert_eq!(removal_parallelism("23.0.1"), CLEANUP_PARALLELISM);
        assert_eq!(removal_parallelism("26.1.4"), CLEANUP_PARALLELISM);
    }

    #[test]
    fn the_session_directory_is_mounted_and_owned_by_the_user() {
        crate::test_support::need_root("giving the session directory to the user");
        let dir = TempDir::new("lc-session-dir");
        let mut cfg = config(&dir, SessionMode::GracePeriod);
        let base = dir.path().join("run/sessions");
        cfg.broker.session_dir = Some(base.clone());
        let lc = Lifecycle::with_runtime(cfg, Fake::with_images(&[IMAGE])).unwrap();
        let rt = rt();
        let row = rt
            .block_on(lc.create(&account("alice", 2001), "", "podspawn-alice", 1))
            .unwrap();
        let c = lc.docker.container(&row.container_id).unwrap();
        assert_eq!(
            c.binds,
            vec![engine::Bind::read_write(
                base.join("alice"),
                "/.podspawn/session"
            )]
        );
        assert_eq!(
            c.labels.get(engine::LABEL_SESSION_DIR).map(String::as_str),
            Some("/.podspawn/session")
        );
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(base.join("alice")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (2001, 0o700));
        // An engine that sees neither the helper nor the session directory (it runs elsewhere,
        // or the broker runs in a container of its own): both mounts and labels are dropped.
        dir.write("helper/podspawn-helper", "#!/bin/true\n");
        lc.docker.remote.store(true, Ordering::SeqCst);
        let row = rt
            .block_on(lc.create(&account("bob", 2002), "", "podspawn-bob", 1))
            .unwrap();
        let c = lc.docker.container(&row.container_id).unwrap();
        assert!(c.binds.is_empty(), "{:?}", c.binds);
        assert!(!c.labels.contains_key(engine::LABEL_SESSION_DIR));
        assert!(!c.labels.contains_key(engine::LABEL_HELPER));
    }

    #[test]
    fn named_sessions_bind_a_home_owned_by_the_user() {
        crate::test_support::need_root("chowning the persistent home");
        let dir = TempDir::new("lc-named");
        let lc = lifecycle(&dir, SessionMode::Named);
        let rt = rt();
        let row = rt
            .block_on(lc.create(&account("alice", 2001), "", "podspawn-alice", 1))
            .unwrap();
        assert_eq!(row.expires_at, None);
        let c = lc.docker.container(&row.container_id).unwrap();
        let home = dir.path().join("state/homes/alice");
        assert_eq!(
            c.binds,
            vec![engine::Bind::read_write(home.clone(), "/home/alice")]
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&home).unwrap().uid(), 2001);
        assert!(lc.purge_home("alice").unwrap());
        assert!(!home.exists());
    }

    fn make(lc: &Lifecycle<Fake>, rt: &tokio::runtime::Runtime, user: &str, t: i64) -> SessionRow {
        let name = rt.block_on(lc.allocate_name(user, "")).unwrap();
        rt.block_on(lc.create(&account(user, 2001), "", &name, t))
            .unwrap()
    }

    #[test]
    fn an_unused_namespace_lingers_for_the_users_return() {
        let dir = TempDir::new("lc-linger");
        let mut cfg = config(&dir, SessionMode::GracePeriod);
        cfg.session.network_linger = std::time::Duration::from_secs(3600);
        let lc = Lifecycle::with_runtime(cfg, Fake::with_images(&[IMAGE])).unwrap();
        let rt = rt();
        let row = make(&lc, &rt, "alice", 1);
        let holder = lc.docker.container("podspawn-alice.netns").unwrap().id;
        rt.block_on(lc.destroy(&row, EndReason::GraceExpired))
            .unwrap();
        // Unused from now: kept within the hour, and the user's next container joins it.
        assert!(!rt.block_on(lc.settle_netns("alice", false)).unwrap());
        let again = make(&lc, &rt, "alice", 2);
        let c = lc.docker.container(&again.container_id).unwrap();
        assert_eq!(c.network, Some(format!("container:{holder}")));
        // In use again: the clock starts over when it is unused again.
        rt.block_on(lc.destroy(&again, EndReason::GraceExpired))
            .unwrap();
        assert!(!rt.block_on(lc.settle_netns("alice", false)).unwrap());
        // An hour after: gone, with its network, by a cleanup pass.
        lc.db().netns_clear_idle("alice").unwrap();
        lc.db().netns_mark_idle("alice", now() - 3601).unwrap();
        let stop = AtomicBool::new(false);
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert_eq!(report.removed_holders, 1, "{report:?}");
        assert!(lc.docker.containers().is_empty() && lc.docker.networks().is_empty());
        // A removed user's namespace goes at once.
        let bob = make(&lc, &rt, "bob", 3);
        rt.block_on(lc.destroy(&bob, EndReason::GraceExpired))
            .unwrap();
        std::fs::remove_file(dir.path().join("keys/bob")).unwrap();
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert_eq!(report.removed_holders, 1, "{report:?}");
        assert!(lc.docker.containers().is_empty());
    }

    #[test]
    fn destroy_removes_container_network_and_row_and_counts_it() {
        let dir = TempDir::new("lc-destroy");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let row = make(&lc, &rt, "alice", 1);
        rt.block_on(lc.destroy(&row, EndReason::Stop)).unwrap();
        // The namespace stays until its user has no session and no connection left: then it
        // goes with its network.
        assert_eq!(lc.docker.containers().len(), 1);
        lc.db().netns_lease_add("alice").unwrap();
        assert!(!rt.block_on(lc.settle_netns("alice", true)).unwrap());
        lc.db().netns_lease_drop("alice").unwrap();
        assert!(rt.block_on(lc.settle_netns("alice", false)).unwrap());
        assert!(lc.docker.containers().is_empty());
        assert!(lc.docker.networks().is_empty());
        assert!(lc.db().get("alice", "").unwrap().is_none());
        assert!(lc
            .db()
            .counters()
            .unwrap()
            .contains(&("removals.stop".to_string(), 1)));
    }

    #[test]
    fn expire_applies_every_cleanup_decision() {
        let dir = TempDir::new("lc-expire");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let t = now();
        let stop = AtomicBool::new(false);
        // A grace period that ran out, one still running, one whose container vanished.
        let gone = make(&lc, &rt, "alice", t);
        lc.db()
            .set_status("alice", "", Status::Grace, Some(t - 1), t)
            .unwrap();
        let keep = make(&lc, &rt, "bob", t);
        let vanished = make(&lc, &rt, "alice-dev", t);
        rt.block_on(lc.docker.remove(&vanished.container_id))
            .unwrap();
        let mut report = Report::default();
        rt.block_on(lc.expire(&|_, _| false, &stop, &mut report));
        assert_eq!(
            report.removed,
            vec![(gone.container_name.clone(), EndReason::GraceExpired)]
        );
        assert_eq!(report.forgotten_rows, 1);
        assert!(lc.docker.container(&keep.container_id).is_some());
        assert!(lc.db().get("bob", "").unwrap().is_some());
        assert!(lc.db().get("alice-dev", "").unwrap().is_none());
        // A lease (someone reattached) keeps an expired grace period.
        make(&lc, &rt, "alice", t);
        lc.db()
            .set_status("alice", "", Status::Grace, Some(t - 1), t)
            .unwrap();
        let mut report = Report::default();
        rt.block_on(lc.expire(&|u, _| u == "alice", &stop, &mut report));
        assert!(report.removed.is_empty(), "{report:?}");
        // A user no longer registered loses the session, leased or not.
        std::fs::remove_file(dir.path().join("keys/bob")).unwrap();
        let mut report = Report::default();
        rt.block_on(lc.expire(&|_, _| true, &stop, &mut report));
        assert_eq!(
            report.removed,
            vec![(keep.container_name.clone(), EndReason::UserRemoved)]
        );
    }

    #[test]
    fn expire_restarts_stopped_named_sessions_and_removes_stopped_others() {
        let dir = TempDir::new("lc-restart");
        let rt = rt();
        crate::test_support::need_root("chowning the persistent home");
        let named = lifecycle(&dir, SessionMode::Named);
        let row = make(&named, &rt, "alice", now());
        named.docker.stop(&row.container_id);
        let stop = AtomicBool::new(false);
        let mut report = Report::default();
        rt.block_on(named.expire(&|_, _| false, &stop, &mut report));
        assert_eq!(report.restarted, vec![row.container_name.clone()]);
        assert!(named.docker.container(&row.container_id).unwrap().running);

        let dir2 = TempDir::new("lc-restart2");
        let grace = lifecycle(&dir2, SessionMode::GracePeriod);
        let row = make(&grace, &rt, "alice", now());
        grace.docker.stop(&row.container_id);
        let mut report = Report::default();
        rt.block_on(grace.expire(&|_, _| false, &stop, &mut report));
        assert_eq!(
            report.removed,
            vec![(row.container_name.clone(), EndReason::Orphan)]
        );
    }

    #[test]
    fn a_pass_with_nothing_to_do_asks_the_engine_once_for_each_list() {
        let dir = TempDir::new("lc-idle-pass");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        for u in ["alice", "bob", "alice-dev"] {
            make(&lc, &rt, u, now());
        }
        let before = lc.docker.calls().len();
        let stop = AtomicBool::new(false);
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert_eq!(report, Report::default());
        assert_eq!(
            lc.docker.calls()[before..].to_vec(),
            vec!["list-instance".to_string(), "list-networks".to_string()]
        );
        // The broker's sweep (sessions only) needs just the container list, and nothing at all
        // when there are no sessions.
        let before = lc.docker.calls().len();
        let mut report = Report::default();
        rt.block_on(lc.expire(&|_, _| false, &stop, &mut report));
        assert_eq!(
            lc.docker.calls()[before..].to_vec(),
            vec!["list-instance".to_string()]
        );
        let empty = TempDir::new("lc-idle-empty");
        let lc = lifecycle(&empty, SessionMode::GracePeriod);
        rt.block_on(lc.expire(&|_, _| false, &stop, &mut report));
        assert!(lc.docker.calls().is_empty());
    }

    #[test]
    fn an_engine_that_can_deadlock_gets_one_removal_at_a_time() {
        let dir = TempDir::new("lc-serial");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let t = now();
        for i in 0..6 {
            let u = format!("u{i}");
            dir.write(&format!("keys/{u}"), "ssh-ed25519 AAAA x\n");
            let name = rt.block_on(lc.allocate_name(&u, "")).unwrap();
            rt.block_on(lc.create(&account(&u, 3000), "", &name, t))
                .unwrap();
            lc.db()
                .set_status(&u, "", Status::Grace, Some(t - 1), t)
                .unwrap();
        }
        *lc.docker.engine_version.lock().unwrap() = "20.10.24+dfsg1".into();
        *lc.docker.remove_delay.lock().unwrap() = std::time::Duration::from_millis(20);
        let stop = AtomicBool::new(false);
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert_eq!(report.removed.len(), 6, "{report:?}");
        assert_eq!(lc.docker.overlap.lock().unwrap().max, 1);
    }

    #[test]
    fn removals_run_concurrently_bounded_and_one_user_at_a_time() {
        let dir = TempDir::new("lc-parallel");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let t = now();
        let users: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
        for u in &users {
            dir.write(&format!("keys/{u}"), "ssh-ed25519 AAAA x\n");
            // Two sessions each: the same user's removals must not overlap.
            for p in ["", "web"] {
                let name = rt.block_on(lc.allocate_name(u, p)).unwrap();
                rt.block_on(lc.create(&account(u, 3000), p, &name, t))
                    .unwrap();
                lc.db()
                    .set_status(u, p, Status::Grace, Some(t - 1), t)
                    .unwrap();
            }
        }
        // One live session stays.
        let keep = make(&lc, &rt, "alice", t);
        *lc.docker.remove_delay.lock().unwrap() = std::time::Duration::from_millis(20);
        let stop = AtomicBool::new(false);
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(report.removed.len(), 40);
        assert!(report
            .removed
            .iter()
            .all(|(_, r)| *r == EndReason::GraceExpired));
        let o = lc.docker.overlap.lock().unwrap().clone();
        assert_eq!(o.max, CLEANUP_PARALLELISM, "{o:?}");
        assert_eq!(o.max_per_user, 1, "{o:?}");
        // With their last sessions, the users' namespaces went too; alice's stays.
        assert_eq!(report.removed_holders, 20);
        let left: Vec<String> = lc.docker.containers().into_iter().map(|c| c.name).collect();
        assert_eq!(
            left,
            vec![
                "podspawn-alice.netns".to_string(),
                keep.container_name.clone()
            ]
        );
        let nets: Vec<String> = lc.docker.networks().into_iter().map(|n| n.0).collect();
        assert_eq!(nets, vec!["podspawn-alice.netns-net".to_string()]);
        assert_eq!(lc.db().list(None).unwrap(), vec![keep]);
        assert!(lc
            .db()
            .counters()
            .unwrap()
            .contains(&("removals.grace-expired".to_string(), 40)));
        // A stop request ends the pass between users: nothing more is started.
        for u in &users[..3] {
            make(&lc, &rt, u, t);
            lc.db()
                .set_status(u, "", Status::Grace, Some(t - 1), t)
                .unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert!(report.removed.is_empty(), "{report:?}");
        assert_eq!(lc.db().list(None).unwrap().len(), 4);
    }

    #[test]
    fn a_stopped_container_is_asked_about_again_under_the_lock() {
        let dir = TempDir::new("lc-stale");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let row = make(&lc, &rt, "alice", now());
        let other = make(&lc, &rt, "bob", now());
        lc.docker.stop(&row.container_id);
        let before = lc.docker.calls().len();
        let stop = AtomicBool::new(false);
        let report = rt.block_on(lc.cleanup_pass(&|_, _| false, &stop));
        assert_eq!(
            report.removed,
            vec![(row.container_name.clone(), EndReason::Orphan)]
        );
        let calls = lc.docker.calls()[before..].to_vec();
        assert!(
            calls.contains(&format!("inspect {}", row.container_id)),
            "{calls:?}"
        );
        assert!(
            !calls.iter().any(|c| c.contains(&other.container_id)),
            "{calls:?}"
        );
    }

    #[test]
    fn reconcile_removes_only_this_installations_orphans() {
        let dir = TempDir::new("lc-reconcile");
        let lc = lifecycle(&dir, SessionMode::GracePeriod);
        let rt = rt();
        let tracked = make(&lc, &rt, "alice", now());
        // Ours without a row (a crash), ours of a removed user, another installation's, and a
        // container podspawn does not manage at all.
        let orphan = lc
            .docker
            .add_container("podspawn-bob", lc.owner("bob", ""), true);
        let removed_user = lc
            .docker
            .add_container("podspawn-carol", lc.owner("carol", ""), true);
        let mut other = lc.owner("bob", "");
        other.insert(LABEL_INSTANCE.into(), "0000000000000000".into());
        let foreign = lc.docker.add_container("podspawn-bob-x", other, true);
        let unmanaged = lc.docker.add_container("db", Labels::new(), true);
        // An unused network of ours, and one of another installation.
        lc.docker
            .add_network("podspawn-old-net", lc.owner("bob", "old"));
        let mut other_net = lc.owner("bob", "old");
        other_net.insert(LABEL_INSTANCE.into(), "0000000000000000".into());
        lc.docker.add_network("podspawn-theirs-net", other_net);
        let stop = AtomicBool::new(false);
        let mut report = Report::default();
        rt.block_on(lc.reconcile(&stop, &mut report));
        let mut removed = report.removed.clone();
        removed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            removed,
            vec![
                ("podspawn-bob".to_string(), EndReason::Orphan),
                ("podspawn-carol".to_string(), EndReason::UserRemoved),
            ]
        );
        assert!(lc.docker.container(&orphan).is_none());
        assert!(lc.docker.container(&removed_user).is_none());
        for id in [&tracked.container_id, &foreign, &unmanaged] {
            assert!(lc.docker.container(id).is_some(), "{id} was removed");
        }
        assert_eq!(
            report.removed_networks,
            vec!["podspawn-old-net".to_string()]
        );
        let nets: Vec<String> = lc.docker.networks().into_iter().map(|n| n.0).collect();
        assert!(nets.contains(&"podspawn-theirs-net".to_string()));
        assert!(nets.contains(&"podspawn-alice.netns-net".to_string()));
        assert!(lc.docker.container("podspawn-alice.netns").is_some());
    }
}
