//! One cleanup pass, planned from one look at the engine (pure): the session rows, one labelled
//! list of the installation's containers and one of its networks go in; what to act on comes
//! out, grouped by user, because each user's work runs under that user's lock while different
//! users' work runs concurrently. Nothing here is final: every action is decided again under the
//! user's lock (see [`trusted_state`]), since a login may change a session between the list and
//! the lock.

use crate::core::session::{decide_cleanup, CleanupAction, ContainerState, SessionRow};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A container of this installation, as the engine listed it (its owner labels already checked).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub user: String,
    pub project: String,
    pub running: bool,
    /// The networks it is attached to.
    pub networks: Vec<String>,
    /// A user's network-namespace holder (not a session: kept while the user has sessions or
    /// connection leases).
    pub holder: bool,
}

/// A network of this installation, as the engine listed it (its owner labels already checked).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedNetwork {
    pub name: String,
    pub user: String,
}

/// What a pass looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Session rows: expiry, ttl and max lifetime, stopped and vanished containers.
    pub sessions: bool,
    /// Containers without a row and networks nothing uses.
    pub orphans: bool,
}

/// What a plan asks of the world besides the rows and the lists.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    /// `leased(user, project)`: the session has live connections.
    pub leased: &'a dyn Fn(&str, &str) -> bool,
    /// `registered(user)`: the user still has a key file (asked once per user).
    pub registered: &'a dyn Fn(&str) -> bool,
    /// A session's network, from its container name.
    pub network_of: &'a dyn Fn(&str) -> String,
    /// `held(user)`: an SSH connection holds the user's network namespace (pam_podspawn.so).
    pub held: &'a dyn Fn(&str) -> bool,
    pub now: i64,
}

/// The work on one user in a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserWork {
    /// Rows whose decision was not [`CleanupAction::Keep`], with the container's state in the list.
    pub rows: Vec<(SessionRow, ContainerState)>,
    /// Containers no row names: orphans, or a login's new container whose row came after the
    /// rows were read (the rows are read again under the lock).
    pub untracked: Vec<Listed>,
    /// Networks no row names and no listed container is attached to.
    pub networks: Vec<String>,
    /// Network-namespace holders of a user with no session row and no connection lease.
    pub holders: Vec<Listed>,
}

impl UserWork {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.untracked.is_empty()
            && self.networks.is_empty()
            && self.holders.is_empty()
    }
}

/// Plans a pass. The rows must have been read *before* the containers were listed: a row's
/// container is created before its row, so a container missing from a later list is really gone,
/// and a container created after the rows were read shows up as untracked (and is checked again
/// under the lock) rather than being missed.
///
pub fn plan(
    rows: &[SessionRow],
    containers: &[Listed],
    networks: &[ListedNetwork],
    scope: Scope,
    facts: &Facts<'_>,
) -> BTreeMap<String, UserWork> {
    let Facts {
        leased,
        registered,
        network_of,
        held,
        now,
    } = *facts;
    let mut work: BTreeMap<String, UserWork> = BTreeMap::new();
    // A holder outlives its user's sessions only while a connection holds it.
    let with_rows: HashSet<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    for c in containers.iter().filter(|c| c.holder) {
        if !with_rows.contains(c.user.as_str()) && !held(&c.user) {
            work.entry(c.user.clone())
                .or_default()
                .holders
                .push(c.clone());
        }
    }
    if scope.sessions {
        let by_id: HashMap<&str, &Listed> = containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut known: HashMap<&str, bool> = HashMap::new();
        for r in rows {
            let state = match by_id.get(r.container_id.as_str()) {
                Some(c) if c.running => ContainerState::Running,
                Some(_) => ContainerState::Stopped,
                None => ContainerState::Missing,
            };
            let reg = *known
                .entry(r.user.as_str())
                .or_insert_with(|| registered(&r.user));
            let lease = leased(&r.user, &r.project);
            if decide_cleanup(r, state, lease, reg, now) != CleanupAction::Keep {
                work.entry(r.user.clone())
                    .or_default()
                    .rows
                    .push((r.clone(), state));
            }
        }
    }
    if scope.orphans {
        let tracked: HashSet<&str> = rows.iter().map(|r| r.container_id.as_str()).collect();
        for c in containers
            .iter()
            .filter(|c| !c.holder && !tracked.contains(c.id.as_str()))
        {
            work.entry(c.user.clone())
                .or_default()
                .untracked
                .push(c.clone());
        }
        let mut in_use: HashSet<String> =
            rows.iter().map(|r| network_of(&r.container_name)).collect();
        in_use.extend(containers.iter().flat_map(|c| c.networks.iter().cloned()));
        for n in networks.iter().filter(|n| !in_use.contains(&n.name)) {
            work.entry(n.user.clone())
                .or_default()
                .networks
                .push(n.name.clone());
        }
    }
    work
}

/// Under the user's lock, the container state to decide a row on again without asking the
/// engine, or `None` when the engine must be asked. `seen` is the row as planned with the state
/// `seen_state` from the list, `current` the row read again under the lock. Only a container that
/// was running in the list and is still the row's is trusted: a running container never comes
/// back from stopped or missing by itself, whereas a stopped one may have been restarted by a
/// login since the list (and must not then be removed as stopped), and a row whose container
/// changed names a container the list may not have seen.
pub fn trusted_state(
    seen: &SessionRow,
    current: &SessionRow,
    seen_state: ContainerState,
) -> Option<ContainerState> {
    (seen_state == ContainerState::Running && seen.container_id == current.container_id)
        .then_some(ContainerState::Running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::SessionMode;
    use crate::core::session::{EndReason, Status};

    fn row(
        user: &str,
        id: &str,
        status: Status,
        grace: Option<i64>,
        mode: SessionMode,
    ) -> SessionRow {
        SessionRow {
            user: user.into(),
            project: String::new(),
            container_id: id.into(),
            container_name: format!("podspawn-{user}"),
            image: "img:1".into(),
            mode,
            status,
            created_at: 0,
            last_activity: 0,
            grace_expiry: grace,
            expires_at: None,
            uid: 1000,
        }
    }

    fn listed(user: &str, id: &str, running: bool) -> Listed {
        Listed {
            id: id.into(),
            name: format!("podspawn-{user}"),
            user: user.into(),
            project: String::new(),
            running,
            networks: vec![format!("podspawn-{user}-net")],
            holder: false,
        }
    }

    fn holder(user: &str, id: &str) -> Listed {
        Listed {
            id: id.into(),
            name: format!("podspawn-{user}.netns"),
            user: user.into(),
            project: String::new(),
            running: true,
            networks: vec![format!("podspawn-{user}.netns-net")],
            holder: true,
        }
    }

    const BOTH: Scope = Scope {
        sessions: true,
        orphans: true,
    };

    fn net(n: &str) -> String {
        format!("{n}-net")
    }

    fn pl(
        rows: &[SessionRow],
        cs: &[Listed],
        nets: &[ListedNetwork],
        scope: Scope,
        leased: &dyn Fn(&str, &str) -> bool,
        registered: &dyn Fn(&str) -> bool,
    ) -> BTreeMap<String, UserWork> {
        let facts = Facts {
            leased,
            registered,
            network_of: &net,
            held: &|u| u == "held",
            now: 10,
        };
        plan(rows, cs, nets, scope, &facts)
    }

    #[test]
    fn a_holder_is_kept_while_its_user_has_sessions_or_connections() {
        let rows = vec![row(
            "alice",
            "c1",
            Status::Running,
            None,
            SessionMode::GracePeriod,
        )];
        let cs = vec![
            listed("alice", "c1", true),
            holder("alice", "h1"),
            holder("bob", "h2"),
            holder("held", "h3"),
        ];
        let nets = vec![
            ListedNetwork {
                name: "podspawn-alice.netns-net".into(),
                user: "alice".into(),
            },
            ListedNetwork {
                name: "podspawn-bob.netns-net".into(),
                user: "bob".into(),
            },
        ];
        for scope in [
            BOTH,
            Scope {
                sessions: true,
                orphans: false,
            },
        ] {
            let w = pl(&rows, &cs, &nets, scope, &|_, _| false, &|_| true);
            // alice has a session, "held" a connection: only bob's holder goes; never as an
            // untracked container, and its network is in use until the holder is gone.
            assert_eq!(w.keys().collect::<Vec<_>>(), vec!["bob"], "{w:?}");
            let bob = &w["bob"];
            assert_eq!(bob.holders.len(), 1);
            assert!(
                bob.untracked.is_empty() && bob.networks.is_empty(),
                "{bob:?}"
            );
        }
    }

    #[test]
    fn live_sessions_make_no_work() {
        let rows: Vec<SessionRow> = (0..100)
            .map(|i| {
                row(
                    &format!("u{i}"),
                    &format!("c{i}"),
                    Status::Running,
                    None,
                    SessionMode::GracePeriod,
                )
            })
            .collect();
        let cs: Vec<Listed> = (0..100)
            .map(|i| listed(&format!("u{i}"), &format!("c{i}"), true))
            .collect();
        let nets: Vec<ListedNetwork> = (0..100)
            .map(|i| ListedNetwork {
                name: format!("podspawn-u{i}-net"),
                user: format!("u{i}"),
            })
            .collect();
        let w = pl(&rows, &cs, &nets, BOTH, &|_, _| false, &|_| true);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn work_is_grouped_by_user() {
        let expired = row("a", "c1", Status::Grace, Some(5), SessionMode::GracePeriod);
        let mut expired2 = row("a", "c2", Status::Grace, Some(5), SessionMode::GracePeriod);
        expired2.project = "p".into();
        expired2.container_name = "podspawn-a-p".into();
        let vanished = row("b", "gone", Status::Running, None, SessionMode::GracePeriod);
        let stopped = row("c", "c3", Status::Idle, None, SessionMode::Named);
        let live = row("d", "c4", Status::Running, None, SessionMode::GracePeriod);
        let rows = [
            expired.clone(),
            expired2.clone(),
            vanished.clone(),
            stopped.clone(),
            live,
        ];
        let cs = [
            listed("a", "c1", true),
            listed("a", "c2", true),
            listed("c", "c3", false),
            listed("d", "c4", true),
            listed("e", "orphan", true),
        ];
        let nets = [
            ListedNetwork {
                name: "podspawn-a-net".into(),
                user: "a".into(),
            },
            ListedNetwork {
                name: "podspawn-f-old-net".into(),
                user: "f".into(),
            },
        ];
        let w = pl(&rows, &cs, &nets, BOTH, &|_, _| false, &|_| true);
        assert_eq!(
            w.keys().cloned().collect::<Vec<_>>(),
            ["a", "b", "c", "e", "f"]
        );
        assert_eq!(
            w["a"].rows,
            vec![
                (expired, ContainerState::Running),
                (expired2, ContainerState::Running)
            ]
        );
        assert_eq!(w["b"].rows, vec![(vanished, ContainerState::Missing)]);
        assert_eq!(w["c"].rows, vec![(stopped, ContainerState::Stopped)]);
        assert_eq!(w["e"].untracked, vec![listed("e", "orphan", true)]);
        assert_eq!(w["f"].networks, vec!["podspawn-f-old-net".to_string()]);
        // The orphan's own network is in use by it; the pass removes it with the container.
        assert!(w
            .values()
            .all(|u| !u.networks.contains(&"podspawn-e-net".into())));

        // A lease keeps an expired grace period; an unregistered user loses even that.
        let w = pl(&rows, &cs, &[], BOTH, &|u, _| u == "a", &|_| true);
        assert!(w.get("a").is_none_or(|u| u.rows.is_empty()));
        let w = pl(&rows, &cs, &[], BOTH, &|_, _| true, &|u| u != "d");
        assert_eq!(
            w["d"].rows[0].0.container_id, "c4",
            "unregistered user kept"
        );
    }

    #[test]
    fn scopes() {
        let rows = [row(
            "a",
            "c1",
            Status::Grace,
            Some(5),
            SessionMode::GracePeriod,
        )];
        let cs = [listed("a", "c1", true), listed("e", "orphan", true)];
        let only_sessions = Scope {
            sessions: true,
            orphans: false,
        };
        let w = pl(&rows, &cs, &[], only_sessions, &|_, _| false, &|_| true);
        assert_eq!(w.keys().collect::<Vec<_>>(), ["a"]);
        let only_orphans = Scope {
            sessions: false,
            orphans: true,
        };
        let w = pl(&rows, &cs, &[], only_orphans, &|_, _| false, &|_| true);
        assert_eq!(w.keys().collect::<Vec<_>>(), ["e"]);
    }

    #[test]
    fn only_a_still_running_container_of_the_same_row_is_trusted() {
        use ContainerState::*;
        let seen = row("a", "c1", Status::Grace, Some(5), SessionMode::GracePeriod);
        let mut reattached = seen.clone();
        reattached.status = Status::Running;
        assert_eq!(trusted_state(&seen, &reattached, Running), Some(Running));
        // A login replaced the container: ask the engine about the new one.
        let mut replaced = seen.clone();
        replaced.container_id = "c9".into();
        assert_eq!(trusted_state(&seen, &replaced, Running), None);
        // Stopped or missing in the list: a login may have restarted or replaced it since.
        assert_eq!(trusted_state(&seen, &seen, Stopped), None);
        assert_eq!(trusted_state(&seen, &seen, Missing), None);
        // decide_cleanup on the fresh row keeps the reattached session.
        assert_eq!(
            decide_cleanup(&reattached, Running, true, true, 10),
            CleanupAction::Keep
        );
        assert_eq!(
            decide_cleanup(&seen, Running, false, true, 10),
            CleanupAction::Destroy(EndReason::GraceExpired)
        );
    }
}
