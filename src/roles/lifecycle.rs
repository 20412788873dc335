//! The lifecycle operations shared by the broker and the cleanup pass: creating a session's
//! container, destroying it (with its network, state row, audit record and counters), expiring
//! sessions and reconciling orphans. Both processes take the same per-user locks, so a cleanup pass
//! never removes a container that a login is reattaching to.

use crate::core::config::{Config, NetworkMode, SessionMode, UserOverrides};
use crate::core::metrics::Snapshot;
use crate::core::session::{self, CleanupAction, ContainerState, EndReason};
use crate::engine::{self, Docker, LABEL_INSTANCE, LABEL_MANAGED, LABEL_USER};
use crate::host::accounts::Account;
use crate::store::audit::{Audit, Event};
use crate::store::locks::UserLock;
use crate::store::state::{Db, SessionRow, Status};
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

/// What one cleanup pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub removed: Vec<(String, EndReason)>,
    pub restarted: Vec<String>,
    pub forgotten_rows: usize,
    pub removed_networks: Vec<String>,
    pub errors: Vec<String>,
}

pub struct Lifecycle {
    pub cfg: Config,
    pub docker: Docker,
    db: Mutex<Db>,
    audit: Option<Audit>,
    pub instance: String,
    user_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Lifecycle {
    /// Opens state and audit log; fails when the Docker engine cannot be reached.
    pub async fn open(cfg: Config) -> Result<Lifecycle, String> {
        let docker = Docker::connect().await?;
        Self::with_docker(cfg, docker)
    }

    /// Like [`Lifecycle::open`], but connects to the engine on first use: the broker starts and
    /// serves while the engine is down (users get [`runtime::ENGINE_DOWN`]) and recovers without
    /// a restart when it comes back.
    pub fn open_lazy(cfg: Config) -> Result<Lifecycle, String> {
        Self::with_docker(cfg, Docker::lazy())
    }

    fn with_docker(cfg: Config, docker: Docker) -> Result<Lifecycle, String> {
        let db = Db::open(&cfg.state.db_path)?;
        let audit = Audit::open(&cfg)?;
        Ok(Lifecycle {
            instance: db.instance()?,
            cfg,
            docker,
            db: Mutex::new(db),
            audit,
            user_locks: Mutex::new(HashMap::new()),
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
    pub async fn lock_user(&self, user: &str) -> Result<UserGuard, String> {
        let m = lock(&self.user_locks)
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let g = m.lock_owned().await;
        let dir = self.cfg.state.lock_dir.clone();
        let u = user.to_string();
        let file = tokio::task::spawn_blocking(move || crate::store::locks::lock_user(&dir, &u))
            .await
            .map_err(|e| format!("lock task: {e}"))?
            .map_err(|e| format!("cannot lock {}: {e}", self.cfg.state.lock_dir.display()))?;
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
    pub async fn allocate_name(&self, user: &str, project: &str) -> Result<String, String> {
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
            self.docker
                .remove_owned_network(&engine::network_name(&name), &owner)
                .await?;
        }
        Ok(name)
    }

    /// Creates the container `name` (from [`Lifecycle::allocate_name`]) for (user, project) and its
    /// state row. The caller holds the user's lock and has checked `resources.max_per_user`.
    pub async fn create(
        &self,
        account: &Account,
        project: &str,
        name: &str,
        t: i64,
    ) -> Result<SessionRow, String> {
        let user = account.name.as_str();
        let ov = UserOverrides::load(&self.cfg.users_dir, user).map_err(|e| e.to_string())?;
        let mode = ov.mode.unwrap_or(self.cfg.session.mode);
        let mut spec = engine::container_spec(&self.cfg, &ov, &self.instance, user, project);
        spec.name = name.to_string();
        let home = format!("/home/{user}");
        if mode == SessionMode::Named {
            let dir = self.prepare_home(account)?;
            spec.binds.push((dir, home.clone()));
        }
        self.docker.ensure_image(&spec.image).await?;
        let labels = engine::labels(&self.instance, user, project);
        if self.cfg.security.network == NetworkMode::Isolated {
            let net = engine::network_name(&spec.name);
            let t0 = std::time::Instant::now();
            let made = self.docker.ensure_network(&net, &labels).await.map_err(|e| {
                if e.contains("address pool") {
                    format!(
                        "{e}; Docker has no address space left for another network: raise \
                         default-address-pools in /etc/docker/daemon.json or set security.network: shared"
                    )
                } else {
                    e
                }
            });
            tracing::debug!(
                podspawn_user = user,
                ms = t0.elapsed().as_millis() as u64,
                "network"
            );
            made?;
            spec.network = Some(net);
        }
        let shell = ov
            .shell
            .clone()
            .unwrap_or_else(|| self.cfg.defaults.shell.clone());
        spec.cmd = engine::init_argv(user, account.uid, account.gid, &home, &shell);
        spec.user = Some("0:0".into());
        let started = std::time::Instant::now();
        let id = match self.docker.create_and_start(&spec).await {
            Ok(id) => id,
            Err(e) => {
                if let Some(n) = &spec.network {
                    let _ = self.docker.remove_owned_network(n, &labels).await;
                }
                return Err(e);
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
            if let Some(n) = &spec.network {
                let _ = self.docker.remove_owned_network(n, &labels).await;
            }
            return Err(format!(
                "the container for {user} (image {}) did not start: {e}; check the image with: \
                 podspawn verify-image {}",
                spec.image, spec.image
            ));
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
            if let Some(n) = &spec.network {
                let _ = self.docker.remove_owned_network(n, &labels).await;
            }
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
    fn prepare_home(&self, account: &Account) -> Result<PathBuf, String> {
        let homes = &self.cfg.state.homes_dir;
        std::fs::create_dir_all(homes)
            .map_err(|e| format!("cannot create {}: {e}", homes.display()))?;
        let _ = std::fs::set_permissions(homes, std::fs::Permissions::from_mode(0o711));
        let dir = self.home_dir(&account.name);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(format!("{} is not a directory; remove it", dir.display()))
            }
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                std::os::unix::fs::chown(&dir, Some(account.uid), Some(account.gid))
                    .map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750));
            }
        }
        Ok(dir)
    }

    /// Removes a session's container and network, forgets its row, audits and counts the removal.
    /// The caller holds the user's lock.
    pub async fn destroy(&self, row: &SessionRow, reason: EndReason) -> Result<(), String> {
        self.docker.remove(&row.container_id).await?;
        self.docker
            .remove_owned_network(
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
    pub fn purge_home(&self, user: &str) -> Result<bool, String> {
        let dir = self.home_dir(user);
        match std::fs::symlink_metadata(&dir) {
            Err(_) => Ok(false),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dir)
                .map(|_| true)
                .map_err(|e| format!("cannot remove {}: {e}", dir.display())),
            Ok(_) => Err(format!("{} is not a directory", dir.display())),
        }
    }

    async fn container_state(&self, row: &SessionRow) -> Result<ContainerState, String> {
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
        let rows = match self.db().list(None) {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(e.into());
                return;
            }
        };
        for r in rows {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let guard = match self.lock_user(&r.user).await {
                Ok(g) => g,
                Err(e) => {
                    report.errors.push(e);
                    continue;
                }
            };
            // Re-read under the lock: a login may have reattached meanwhile.
            let cur = match self.db().get(&r.user, &r.project) {
                Ok(Some(c)) => c,
                _ => continue,
            };
            let state = match self.container_state(&cur).await {
                Ok(s) => s,
                Err(e) => {
                    report.errors.push(e);
                    continue;
                }
            };
            let is_leased = leased(&cur.user, &cur.project);
            let registered = crate::store::keys::is_registered(&self.cfg.auth.key_dir, &cur.user);
            match session::decide_cleanup(&cur, state, is_leased, registered, now()) {
                CleanupAction::Keep => {}
                CleanupAction::Destroy(reason) => match self.destroy(&cur, reason).await {
                    Ok(()) => report.removed.push((cur.container_name.clone(), reason)),
                    Err(e) => report.errors.push(e),
                },
                CleanupAction::Restart => match self.docker.start(&cur.container_id).await {
                    Ok(()) => {
                        tracing::info!(podspawn_user = %cur.user, podspawn_container = %cur.container_name,
                            "restarted a container stopped by a Docker or host restart");
                        report.restarted.push(cur.container_name.clone());
                    }
                    Err(e) => report.errors.push(e),
                },
                CleanupAction::ForgetRow => {
                    let _ = self
                        .docker
                        .remove_owned_network(
                            &engine::network_name(&cur.container_name),
                            &self.owner(&cur.user, &cur.project),
                        )
                        .await;
                    if self.db().delete(&cur.user, &cur.project).is_ok() {
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
            drop(guard);
        }
    }

    /// Removes this instance's labelled containers that have no state row, and its networks that
    /// nothing uses. Containers of other instances and containers podspawn does not own are never
    /// touched.
    pub async fn reconcile(&self, stop: &AtomicBool, report: &mut Report) {
        let containers = match self.docker.list_managed().await {
            Ok(c) => c,
            Err(e) => {
                report.errors.push(e);
                return;
            }
        };
        for c in containers {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if c.labels.get(LABEL_INSTANCE) != Some(&self.instance)
                || c.labels.get(LABEL_MANAGED).map(String::as_str) != Some("podspawn")
            {
                continue;
            }
            let Some(user) = c
                .labels
                .get(LABEL_USER)
                .filter(|u| crate::core::names::validate_user(u).is_ok())
            else {
                continue;
            };
            let guard = match self.lock_user(user).await {
                Ok(g) => g,
                Err(e) => {
                    report.errors.push(e);
                    continue;
                }
            };
            let tracked = match self.db().list(Some(user)) {
                Ok(rows) => rows.iter().any(|r| r.container_id == c.id),
                Err(e) => {
                    report.errors.push(e.into());
                    continue;
                }
            };
            if !tracked {
                let reason = if crate::store::keys::is_registered(&self.cfg.auth.key_dir, user) {
                    EndReason::Orphan
                } else {
                    EndReason::UserRemoved
                };
                match self.docker.remove(&c.id).await {
                    Ok(()) => {
                        let _ = self
                            .docker
                            .remove_owned_network(&engine::network_name(&c.name), &c.labels)
                            .await;
                        let _ = self.db().bump(&format!("removals.{}", reason.as_str()));
                        tracing::info!(podspawn_user = %user, podspawn_container = %c.name,
                            reason = reason.as_str(), "container removed");
                        self.audit(Event::ContainerDestroy {
                            user: user.clone(),
                            project: c
                                .labels
                                .get(engine::LABEL_PROJECT)
                                .cloned()
                                .unwrap_or_default(),
                            container: c.name.clone(),
                            reason,
                        });
                        report.removed.push((c.name.clone(), reason));
                    }
                    Err(e) => report.errors.push(e),
                }
            }
            drop(guard);
        }
        let networks = match self.docker.list_managed_networks(&self.instance).await {
            Ok(n) => n,
            Err(e) => {
                report.errors.push(e);
                return;
            }
        };
        for (name, labels, attached) in networks {
            if attached > 0 || labels.get(LABEL_MANAGED).map(String::as_str) != Some("podspawn") {
                continue;
            }
            let Some(user) = labels
                .get(LABEL_USER)
                .filter(|u| crate::core::names::validate_user(u).is_ok())
            else {
                continue;
            };
            let Ok(guard) = self.lock_user(user).await else {
                continue;
            };
            let in_use = self
                .db()
                .list(Some(user))
                .map(|rows| {
                    rows.iter()
                        .any(|r| engine::network_name(&r.container_name) == name)
                })
                .unwrap_or(true);
            if !in_use {
                match self.docker.remove_network(&name).await {
                    Ok(()) => report.removed_networks.push(name),
                    Err(e) => report.errors.push(e),
                }
            }
            drop(guard);
        }
    }

    /// One full cleanup pass: expire, restart or remove per mode, reconcile orphans; counted.
    pub async fn cleanup_pass(
        &self,
        leased: &(dyn Fn(&str, &str) -> bool + Sync),
        stop: &AtomicBool,
    ) -> Report {
        let mut report = Report::default();
        self.expire(leased, stop, &mut report).await;
        if !stop.load(Ordering::Relaxed) {
            self.reconcile(stop, &mut report).await;
            let _ = self.db().bump("cleanup.passes");
        }
        report
    }

    /// Numbers for `status` and the metrics endpoint.
    pub async fn snapshot(
        &self,
        connections: &(dyn Fn(&str, &str) -> u32 + Sync),
    ) -> Result<Snapshot, String> {
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
            .filter(|c| c.labels.get(LABEL_INSTANCE) == Some(&self.instance))
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
