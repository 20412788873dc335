//! Companion services of a project session (Podfile `services:`): one container per service on
//! the session's network, reachable by the service's name, with the session container's
//! hardening and limits; named volumes are engine volumes kept across sessions (removed by
//! `stop --purge`); host bind mounts only when `security.allow_service_binds` is set. Started
//! after the session container is ready, removed with it; a partial start removes what it
//! started. Every object carries the session's owner labels, and services also name their
//! session, so cleanup keeps them exactly as long as the session's row exists.

use crate::core::config::{Config, ConfigError, UserOverrides};
use crate::core::podfile::{Podfile, Service, VolumeSource};
use crate::core::session::EndReason;
use crate::engine::{self, ContainerRuntime, ContainerSpec, Labels, VolumeMount};
use crate::roles::lifecycle::{Error, Lifecycle};
use crate::roles::project_session::ProjectError;
use crate::store::audit::Event;
use crate::store::state::SessionRow;

/// Label of a service container: the service's name.
pub const LABEL_SERVICE: &str = "podspawn-service";
/// Label of a service container: the name of the session container it belongs to.
pub const LABEL_SESSION: &str = "podspawn-session";
/// Label of a named volume: its name in the Podfile.
pub const LABEL_VOLUME: &str = "podspawn-volume";

/// `<session container>-<service>`.
pub fn service_container_name(session: &str, service: &str) -> String {
    format!("{session}-{service}")
}

/// The engine volume of `volume` for (user, project): `podspawn-<user>-<project>-<volume>`,
/// stable across sessions.
pub fn volume_name(user: &str, project: &str, volume: &str) -> String {
    format!(
        "{}-{volume}",
        crate::core::names::container_name(user, project)
    )
}

/// The labels of a named volume of (user, project).
pub fn volume_labels(instance: &str, user: &str, project: &str, volume: &str) -> Labels {
    let mut l = engine::labels(instance, user, project);
    l.insert(LABEL_VOLUME.into(), volume.into());
    l
}

/// Is a container with `labels` a service of a session in `rows` (same owner, same session)?
pub fn belongs_to_session(labels: &Labels, rows: &[SessionRow], instance: &str) -> bool {
    let Some(session) = labels.get(LABEL_SESSION) else {
        return false;
    };
    rows.iter().any(|r| {
        &r.container_name == session
            && engine::same_owner(labels, &engine::labels(instance, &r.user, &r.project))
    })
}

/// The container of `svc` for the session `session` of (user, project): the session's
/// hardening and limits (from the config and the user's overrides), the service's image,
/// environment, volumes and its name as DNS alias on `network`.
#[allow(clippy::too_many_arguments)]
pub fn service_spec(
    cfg: &Config,
    ov: &UserOverrides,
    instance: &str,
    user: &str,
    project: &str,
    session: &str,
    network: &str,
    svc: &Service,
) -> ContainerSpec {
    let mut spec = engine::container_spec(cfg, ov, instance, user, project);
    spec.name = service_container_name(session, &svc.name);
    spec.image = svc.image.clone();
    spec.hostname = svc.name.clone();
    spec.labels.insert(LABEL_SERVICE.into(), svc.name.clone());
    spec.labels.insert(LABEL_SESSION.into(), session.into());
    // The image's own entrypoint, command and user.
    spec.cmd = Vec::new();
    spec.user = None;
    spec.env = svc
        .env_for(user, project)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    spec.network = Some(network.into());
    spec.aliases = vec![svc.name.clone()];
    for v in &svc.volumes {
        match &v.source {
            VolumeSource::Named(n) => spec.volumes.push(VolumeMount {
                name: volume_name(user, project, n),
                target: v.target.clone(),
                read_only: v.read_only,
            }),
            VolumeSource::HostBind(p) => spec.binds.push(engine::Bind {
                source: p.into(),
                target: v.target.clone(),
                read_only: v.read_only,
            }),
        }
    }
    spec
}

/// Refuses what the admin has not allowed: host bind mounts (unless
/// `security.allow_service_binds`), and services without a per-session network.
pub fn check_services(cfg: &Config, pf: &Podfile, project: &str) -> Result<(), ProjectError> {
    if pf.services.is_empty() {
        return Ok(());
    }
    let fail = |message: String| ProjectError::Podfile {
        project: project.to_string(),
        message,
    };
    if cfg.security.network != crate::core::config::NetworkMode::Isolated {
        return Err(fail(
            "companion services need a network per session (security.network: isolated)".into(),
        ));
    }
    if !cfg.security.allow_service_binds {
        if let Some((svc, path)) = pf.host_binds().first() {
            return Err(fail(format!(
                "service {svc}: the host bind mount {path} is refused; use a named volume \
                 (name:/path) or set security.allow_service_binds: true"
            )));
        }
    }
    Ok(())
}

impl<R: ContainerRuntime> Lifecycle<R> {
    /// Starts the services of `pf` for the session container `session` on `network`. On any
    /// failure the services already started are removed.
    pub async fn start_services(
        &self,
        user: &str,
        project: &str,
        session: &str,
        network: Option<&str>,
        pf: &Podfile,
    ) -> Result<(), Error> {
        if pf.services.is_empty() {
            return Ok(());
        }
        check_services(&self.cfg, pf, project)?;
        let Some(network) = network else {
            return Err(ProjectError::Podfile {
                project: project.into(),
                message: "companion services need a network per session".into(),
            }
            .into());
        };
        let ov = UserOverrides::load(&self.cfg.users_dir, user)
            .map_err(|e: ConfigError| Error::Config(e))?;
        let mut started: Vec<String> = Vec::new();
        for svc in &pf.services {
            let spec = service_spec(
                &self.cfg,
                &ov,
                &self.instance,
                user,
                project,
                session,
                network,
                svc,
            );
            let mut r = Ok(());
            for v in &svc.volumes {
                if let VolumeSource::Named(n) = &v.source {
                    let labels = volume_labels(&self.instance, user, project, n);
                    r = self
                        .docker
                        .ensure_volume(&volume_name(user, project, n), &labels)
                        .await;
                    if r.is_err() {
                        break;
                    }
                }
            }
            let r = match r {
                Ok(()) => self.start_service(user, project, &spec).await,
                Err(e) => Err(e.into()),
            };
            match r {
                Ok(id) => started.push(id),
                Err(e) => {
                    for id in &started {
                        let _ = self.docker.remove(id).await;
                    }
                    tracing::warn!(podspawn_user = user, podspawn_project = project,
                        service = %svc.name, "companion service did not start: {e}");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn start_service(
        &self,
        user: &str,
        project: &str,
        spec: &ContainerSpec,
    ) -> Result<String, Error> {
        self.docker.ensure_image(&spec.image).await?;
        // What a crash left of this session's service under the same name.
        if let Some(l) = self.docker.container_labels(&spec.name).await? {
            if engine::same_owner(&l, &spec.labels) {
                self.docker.remove(&spec.name).await?;
            }
        }
        let id = self.docker.create_and_start(spec).await?;
        tracing::info!(podspawn_user = user, podspawn_project = project,
            podspawn_container = %spec.name, image = %spec.image, "companion service started");
        self.audit(Event::ContainerCreate {
            user: user.into(),
            project: project.into(),
            container: spec.name.clone(),
            image: spec.image.clone(),
            mode: self.cfg.session.mode,
        });
        Ok(id)
    }

    /// Removes the services of the session container `session` of (user, project).
    pub async fn remove_services(
        &self,
        user: &str,
        project: &str,
        session: &str,
        reason: EndReason,
    ) {
        if project.is_empty() {
            return;
        }
        let owner = self.owner(user, project);
        let Ok(list) = self.docker.list_managed().await else {
            return;
        };
        for c in list {
            if c.labels.get(LABEL_SESSION).map(String::as_str) != Some(session)
                || !engine::same_owner(&c.labels, &owner)
            {
                continue;
            }
            match self.docker.remove(&c.id).await {
                Ok(()) => self.audit(Event::ContainerDestroy {
                    user: user.into(),
                    project: project.into(),
                    container: c.name.clone(),
                    reason,
                }),
                Err(e) => tracing::warn!(podspawn_container = %c.name, "removing a service: {e}"),
            }
        }
    }

    /// Removes the named volumes of (user, project), or of all the user's projects (`stop
    /// --purge`); returns their names.
    pub async fn purge_volumes(&self, user: &str, project: Option<&str>) -> Vec<String> {
        let mut removed = Vec::new();
        let Ok(list) = self.docker.list_volumes(&self.instance).await else {
            return removed;
        };
        for (name, labels) in list {
            let ours = labels.get(engine::LABEL_USER).map(String::as_str) == Some(user)
                && labels.contains_key(LABEL_VOLUME)
                && project.is_none_or(|p| {
                    labels.get(engine::LABEL_PROJECT).map(String::as_str) == Some(p)
                });
            if ours {
                match self.docker.remove_volume(&name).await {
                    Ok(()) => removed.push(name),
                    Err(e) => tracing::warn!(volume = %name, "removing a volume: {e}"),
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::podfile::{load, MemFiles};

    fn pf(text: &str) -> Podfile {
        load(&MemFiles::new([("podfile.yaml", text)]))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_service_gets_the_sessions_hardening_and_its_name_as_alias() {
        let cfg = Config::default();
        let p = pf("base: debian\nservices:\n  - name: db\n    image: postgres:16\n    env:\n      OWNER: \"${PODSPAWN_USER}\"\n    volumes: [\"data:/var/lib/postgresql/data\", \"/srv/x:/x:ro\"]\n");
        let s = service_spec(
            &cfg,
            &UserOverrides::default(),
            "i1",
            "alice",
            "backend",
            "podspawn-alice-backend",
            "podspawn-alice-backend-net",
            &p.services[0],
        );
        let dev = engine::container_spec(&cfg, &UserOverrides::default(), "i1", "alice", "backend");
        assert_eq!(s.name, "podspawn-alice-backend-db");
        assert_eq!(s.image, "postgres:16");
        assert_eq!(s.aliases, vec!["db"]);
        assert_eq!(s.network.as_deref(), Some("podspawn-alice-backend-net"));
        assert_eq!(s.env, vec!["OWNER=alice"]);
        assert!(s.cmd.is_empty() && s.user.is_none());
        for (a, b) in [
            (s.nano_cpus, dev.nano_cpus),
            (s.memory, dev.memory),
            (s.pids_limit, dev.pids_limit),
        ] {
            assert_eq!(a, b);
        }
        assert_eq!(s.cap_drop, dev.cap_drop);
        assert_eq!(s.cap_add, dev.cap_add);
        assert_eq!(s.no_new_privileges, dev.no_new_privileges);
        assert_eq!(s.runtime, dev.runtime);
        assert_eq!(s.labels["podspawn-service"], "db");
        assert_eq!(s.labels["podspawn-session"], "podspawn-alice-backend");
        assert!(engine::same_owner(
            &s.labels,
            &engine::labels("i1", "alice", "backend")
        ));
        assert_eq!(
            s.volumes,
            vec![VolumeMount {
                name: "podspawn-alice-backend-data".into(),
                target: "/var/lib/postgresql/data".into(),
                read_only: false
            }]
        );
        assert_eq!(s.binds.len(), 1);
        assert!(s.binds[0].read_only);
    }

    #[test]
    fn host_binds_and_shared_networks_are_refused_by_default() {
        let mut cfg = Config::default();
        let binds =
            pf("base: debian\nservices:\n  - name: db\n    image: x\n    volumes: [\"/etc:/x\"]\n");
        let e = check_services(&cfg, &binds, "p").unwrap_err().to_string();
        assert!(e.contains("host bind mount /etc is refused"), "{e}");
        let named =
            pf("base: debian\nservices:\n  - name: db\n    image: x\n    volumes: [\"v:/x\"]\n");
        assert!(check_services(&cfg, &named, "p").is_ok());
        cfg.security.allow_service_binds = true;
        assert!(check_services(&cfg, &binds, "p").is_ok());
        cfg.security.network = crate::core::config::NetworkMode::Shared;
        assert!(check_services(&cfg, &named, "p").is_err());
        assert!(check_services(&cfg, &pf("base: debian\n"), "p").is_ok());
    }

    #[test]
    fn services_belong_to_their_sessions_row() {
        let row = |user: &str, project: &str, name: &str| SessionRow {
            user: user.into(),
            project: project.into(),
            container_id: "id".into(),
            container_name: name.into(),
            image: "i".into(),
            mode: crate::core::config::SessionMode::GracePeriod,
            status: crate::core::session::Status::Running,
            created_at: 0,
            last_activity: 0,
            grace_expiry: None,
            expires_at: None,
            uid: 1000,
        };
        let mut l = engine::labels("i1", "alice", "backend");
        l.insert(LABEL_SESSION.into(), "podspawn-alice-backend".into());
        let rows = vec![row("alice", "backend", "podspawn-alice-backend")];
        assert!(belongs_to_session(&l, &rows, "i1"));
        assert!(!belongs_to_session(&l, &rows, "other-instance"));
        assert!(!belongs_to_session(
            &l,
            &[row("alice", "web", "podspawn-alice-backend")],
            "i1"
        ));
        assert!(!belongs_to_session(&l, &[], "i1"));
        assert!(!belongs_to_session(
            &engine::labels("i1", "alice", "backend"),
            &rows,
            "i1"
        ));
    }
}
