//! The broker side of the admin requests (list, stop): root may act on any user.
use super::*;

impl<R: ContainerRuntime> Broker<R> {
    pub(super) fn list(&self, uid: u32, caller: Option<&Account>, user: Option<&str>) -> Response {
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

    pub(super) async fn stop(&self, user: &str, project: Option<&str>, purge: bool) -> Response {
        if let Err(e) = crate::core::names::validate_user(user) {
            return fail(ErrorKind::Invalid, e);
        }
        let Ok(_g) = self.lc.lock_user(user).await else {
            return err("cannot take the user's lock");
        };
        let rows = match self.lc.db().list(Some(user)) {
            Ok(r) => r,
            Err(e) => return err(e),
        };
        let mut stopped = Vec::new();
        let mut homes = Vec::new();
        for r in rows
            .into_iter()
            .filter(|r| project.is_none_or(|p| p == r.project))
        {
            if let Err(e) = self.lc.destroy(&r, EndReason::Stop).await {
                return err(e);
            }
            stopped.push(r.container_name);
        }
        // With the user's last session, the namespace goes too (unless a connection holds it).
        if let Err(e) = self.lc.settle_netns(user, true).await {
            tracing::warn!(podspawn_user = %user, "removing the network namespace: {e}");
        }
        if purge {
            // A project's companion services' named volumes (roles/project_services.rs).
            let gone = self.lc.purge_volumes(user, project).await;
            homes.extend(gone.into_iter().map(|v| format!("volume {v}")));
            match self.lc.purge_home(user) {
                Ok(true) => homes.push(self.cfg().state.homes_dir.join(user).display().to_string()),
                Ok(false) => {}
                Err(e) => return err(e),
            }
        }
        if stopped.is_empty() && homes.is_empty() {
            let what = match project {
                Some(p) if !p.is_empty() => format!("{user}@{p}"),
                _ => user.to_string(),
            };
            return fail(
                ErrorKind::NoSession,
                format!("no session for {what}; see podspawn list"),
            );
        }
        Response::Stopped {
            containers: stopped,
            homes,
        }
    }
}
