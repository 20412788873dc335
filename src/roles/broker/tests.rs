//! Unit tests of the broker: its pure checks, and its decisions on the fake engine.
use super::*;
use crate::core::config::SessionMode;

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
    use ResumeRefused::*;
    let e = |r: Result<(), ResumeRefused>| r.unwrap_err();
    let live = exec("c1", true);
    assert_eq!(e(check_resume("../x", Some(&live), "c1", false)), InvalidId);
    assert_eq!(
        e(check_resume(&"A".repeat(64), None, "c1", false)),
        InvalidId
    );
    assert_eq!(e(check_resume(&id, None, "c1", false)), Gone);
    assert_eq!(
        e(check_resume(&id, Some(&exec("c2", true)), "c1", false)),
        NotYours
    );
    assert_eq!(
        e(check_resume(&id, Some(&exec("c1", false)), "c1", false)),
        Ended
    );
    assert_eq!(e(check_resume(&id, Some(&live), "c1", true)), AlreadyHeld);
    assert!(NotYours.to_string().contains("does not belong"));
    assert!(AlreadyHeld.to_string().contains("already attached"));
}

// ---------------------------------------------------------------------------------------------
// The broker's decisions on the fake engine: no Docker, no sshd, no root needed (except homes).

use crate::engine::fake::Fake;
use crate::roles::lifecycle::tests::{account, config, rt, IMAGE};
use crate::test_support::TempDir;

fn broker(dir: &TempDir, mode: SessionMode, max_per_user: u32) -> Broker<Fake> {
    let mut cfg = config(dir, mode);
    cfg.resources.max_per_user = max_per_user;
    cfg.session.grace_period = Duration::from_secs(60);
    Broker::new(Lifecycle::with_runtime(cfg, Fake::with_images(&[IMAGE])).unwrap())
}

fn key(u: &str, p: &str) -> Key {
    (u.to_string(), p.to_string())
}

#[test]
fn open_creates_then_reattaches_and_counts_leases() {
    let dir = TempDir::new("b-open");
    let b = broker(&dir, SessionMode::GracePeriod, 3);
    let rt = rt();
    let alice = account("alice", 2001);
    let (id, name, created) = rt.block_on(b.acquire(&alice, "")).unwrap();
    assert!(created);
    assert_eq!(name, "podspawn-alice");
    let (id2, _, created2) = rt.block_on(b.acquire(&alice, "")).unwrap();
    assert_eq!((id2.as_str(), created2), (id.as_str(), false));
    assert_eq!(b.leases_of(&key("alice", "")), 2);
    // A project is a session of its own.
    let (pid, pname, _) = rt.block_on(b.acquire(&alice, "web")).unwrap();
    assert_ne!(pid, id);
    assert_eq!(pname, "podspawn-alice-web");
}

#[test]
fn open_restarts_a_stopped_container_and_replaces_a_gone_or_expired_one() {
    let dir = TempDir::new("b-reopen");
    let b = broker(&dir, SessionMode::GracePeriod, 3);
    let rt = rt();
    let alice = account("alice", 2001);
    let (id, _, _) = rt.block_on(b.acquire(&alice, "")).unwrap();
    // Stopped by a Docker restart: started again, same container.
    b.lc.docker.stop(&id);
    let (again, _, created) = rt.block_on(b.acquire(&alice, "")).unwrap();
    assert_eq!((again.as_str(), created), (id.as_str(), false));
    assert!(b.lc.docker.container(&id).unwrap().running);
    // Removed behind podspawn's back: a new one, the old row forgotten.
    rt.block_on(b.lc.docker.remove(&id)).unwrap();
    let (fresh, _, created) = rt.block_on(b.acquire(&alice, "")).unwrap();
    assert!(created && fresh != id);
    // A grace period that ran out while nobody held it: removed and made anew.
    let t = now();
    b.lc.db()
        .set_status("alice", "", Status::Grace, Some(t - 1), t)
        .unwrap();
    let (newer, _, created) = rt.block_on(b.acquire(&alice, "")).unwrap();
    assert!(created && newer != fresh);
    assert!(b.lc.docker.container(&fresh).is_none());
}

#[test]
fn max_per_user_refuses_a_new_container_with_the_limit_and_the_fix() {
    let dir = TempDir::new("b-limit");
    let b = broker(&dir, SessionMode::GracePeriod, 2);
    let rt = rt();
    let alice = account("alice", 2001);
    rt.block_on(b.acquire(&alice, "")).unwrap();
    rt.block_on(b.acquire(&alice, "a")).unwrap();
    let e = rt.block_on(b.acquire(&alice, "b")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LimitReached);
    assert!(
        e.message.contains("max 2") && e.message.contains("podspawn stop alice"),
        "{}",
        e.message
    );
    // Reattaching to an existing one is not a new container.
    assert!(rt.block_on(b.acquire(&alice, "a")).is_ok());
    // A session whose container is gone does not count.
    let rows = b.lc.db().list(Some("alice")).unwrap();
    let a = rows.iter().find(|r| r.project == "a").unwrap();
    rt.block_on(b.lc.docker.remove(&a.container_id)).unwrap();
    assert!(rt.block_on(b.acquire(&alice, "b")).is_ok());
}

#[test]
fn the_last_lease_starts_grace_or_destroys_or_keeps_by_mode() {
    let rt = rt();
    for (mode, want) in [
        (SessionMode::GracePeriod, Some(Status::Grace)),
        (SessionMode::DestroyOnDisconnect, None),
        (SessionMode::Ttl, Some(Status::Idle)),
    ] {
        let dir = TempDir::new("b-release");
        let b = broker(&dir, mode, 3);
        let alice = account("alice", 2001);
        let (id, name, _) = rt.block_on(b.acquire(&alice, "")).unwrap();
        rt.block_on(b.acquire(&alice, "")).unwrap();
        // One of two connections ends: still running.
        rt.block_on(b.release(&key("alice", ""), &name, None));
        let row = b.lc.db().get("alice", "").unwrap().unwrap();
        assert_eq!(row.status, Status::Running, "{mode:?}");
        // The last one ends.
        let t = now();
        rt.block_on(b.release(&key("alice", ""), &name, None));
        let row = b.lc.db().get("alice", "").unwrap();
        assert_eq!(row.as_ref().map(|r| r.status), want, "{mode:?}");
        match want {
            None => assert!(b.lc.docker.container(&id).is_none(), "{mode:?}"),
            Some(Status::Grace) => {
                let until = row.unwrap().grace_expiry.unwrap();
                assert!((t + 60..=t + 61).contains(&until), "{until} vs {t}");
            }
            Some(_) => assert!(b.lc.docker.container(&id).is_some()),
        }
        assert_eq!(b.leases_of(&key("alice", "")), 0);
    }
}

#[test]
fn a_vanished_clients_command_is_hung_up_through_the_engine() {
    let dir = TempDir::new("b-hangup");
    let b = broker(&dir, SessionMode::GracePeriod, 3);
    let rt = rt();
    let alice = account("alice", 2001);
    let (id, name, _) = rt.block_on(b.acquire(&alice, "")).unwrap();
    let spec = ExecSpec {
        argv: engine::wait_ready_argv(vec!["sleep".into(), "100".into()], "0123456789abcdef"),
        user: "2001:2001".into(),
        env: vec![],
        workdir: "/".into(),
        tty: false,
    };
    let exec = rt.block_on(b.lc.docker.create_exec(&id, &spec)).unwrap();
    let _stream = b.lc.docker.start_exec_stream(&exec, false).unwrap();
    rt.block_on(b.release(&key("alice", ""), &name, Some(&exec)));
    let e = b.lc.docker.exec(&exec).unwrap();
    assert_eq!(e.signals, vec!["HUP".to_string()]);
    assert!(!e.running);
    assert!(b
        .lc
        .docker
        .calls()
        .iter()
        .any(|c| c == &format!("signal 0123456789abcdef HUP as 2001:2001 in {id}")));
    // An exec that already ended is not signalled.
    let done = rt.block_on(b.lc.docker.create_exec(&id, &spec)).unwrap();
    let before = b.lc.docker.calls().len();
    rt.block_on(b.end_exec(&done));
    assert!(!b.lc.docker.calls()[before..]
        .iter()
        .any(|c| c.starts_with("signal")));
}

#[test]
fn stop_removes_only_what_it_names_and_says_when_there_is_nothing() {
    let dir = TempDir::new("b-stop");
    let b = broker(&dir, SessionMode::GracePeriod, 3);
    let rt = rt();
    let alice = account("alice", 2001);
    let (def, _, _) = rt.block_on(b.acquire(&alice, "")).unwrap();
    let (web, _, _) = rt.block_on(b.acquire(&alice, "web")).unwrap();
    match rt.block_on(b.stop("alice", Some("web"), false)) {
        Response::Stopped { containers, homes } => {
            assert_eq!(containers, vec!["podspawn-alice-web".to_string()]);
            assert!(homes.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(b.lc.docker.container(&web).is_none());
    assert!(b.lc.docker.container(&def).is_some());
    match rt.block_on(b.stop("alice", Some("web"), false)) {
        Response::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::NoSession);
            assert!(message.contains("no session for alice@web"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match rt.block_on(b.stop("../x", None, false)) {
        Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::Invalid),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_broker_gives_live_sessions_a_window_to_resume() {
    let dir = TempDir::new("b-window");
    let b = broker(&dir, SessionMode::DestroyOnDisconnect, 3);
    let rt = rt();
    rt.block_on(b.acquire(&account("alice", 2001), "")).unwrap();
    // The new broker process: nobody holds a lease yet.
    let cfg = b.lc.cfg.clone();
    drop(b);
    let b2 = Broker::new(Lifecycle::with_runtime(cfg, Fake::with_images(&[IMAGE])).unwrap());
    let t = now();
    b2.open_resume_window().unwrap();
    let row = b2.lc.db().get("alice", "").unwrap().unwrap();
    assert_eq!(row.status, Status::Grace);
    assert!(row.grace_expiry.unwrap() >= t + RESUME_WINDOW_SECS);
}

#[test]
fn users_list_only_their_own_sessions_and_root_lists_all() {
    let dir = TempDir::new("b-list");
    let b = broker(&dir, SessionMode::GracePeriod, 3);
    let rt = rt();
    let alice = account("alice", 2001);
    rt.block_on(b.acquire(&alice, "")).unwrap();
    rt.block_on(b.acquire(&account("bob", 2002), "")).unwrap();
    let users = |r: Response| -> Vec<String> {
        match r {
            Response::Sessions { sessions } => sessions.into_iter().map(|s| s.user).collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(users(b.list(2001, Some(&alice), None)), vec!["alice"]);
    // Asking for someone else's is ignored for non-root callers.
    assert_eq!(
        users(b.list(2001, Some(&alice), Some("bob"))),
        vec!["alice"]
    );
    let mut all = users(b.list(0, None, None));
    all.sort();
    assert_eq!(all, vec!["alice", "bob"]);
}

/// What reaches the exec: only the client variables `session.accept_env` allows (sshd's AcceptEnv
/// is one gate, this is the other), SSH_AUTH_SOCK only with a relay socket and a session
/// directory, and the command under `podspawn-helper run` when the helper is mounted.
#[test]
fn the_exec_gets_allowed_variables_the_agent_socket_and_the_status_wrapper() {
    crate::test_support::need_root("giving the session directory to the user");
    let dir = TempDir::new("b-exec-env");
    let mut cfg = config(&dir, SessionMode::GracePeriod);
    cfg.broker.session_dir = Some(dir.path().join("run/sessions"));
    dir.write("helper/podspawn-helper", "#!/bin/true\n");
    let b = Broker::new(Lifecycle::with_runtime(cfg, Fake::with_images(&[IMAGE])).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let alice = account("alice", 2001);
    let (id, name, _) = rt.block_on(b.acquire(&alice, "")).unwrap();
    let mut req = OpenRequest {
        project: String::new(),
        command: Some("env".into()),
        tty: false,
        term: None,
        rows: 0,
        cols: 0,
        env: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("EDITOR".into(), "vim".into()),
            ("SSH_CONNECTION".into(), "127.0.0.1 5 127.0.0.1 22".into()),
        ],
        agent: Some("0123456789abcdef.sock".into()),
    };
    let (exec_id, _stream) = rt
        .block_on(b.start_stream(&alice, &req, &id, &name))
        .unwrap();
    let e = b.lc.docker.exec(&exec_id).unwrap();
    assert!(e.env.contains(&"LANG=C.UTF-8".to_string()), "{:?}", e.env);
    assert!(e.env.iter().any(|v| v.starts_with("SSH_CONNECTION=")));
    assert!(
        !e.env.iter().any(|v| v.starts_with("EDITOR=")),
        "{:?}",
        e.env
    );
    assert!(e
        .env
        .contains(&"SSH_AUTH_SOCK=/.podspawn/session/0123456789abcdef.sock".to_string()));
    let tag = e.tag.clone().unwrap();
    let run_at = e
        .argv
        .iter()
        .position(|a| a == "/.podspawn/podspawn-helper")
        .unwrap();
    assert_eq!(
        e.argv[run_at + 1..run_at + 4],
        [
            "run".to_string(),
            format!("/.podspawn/session/{tag}.status"),
            "--".to_string()
        ]
    );
    // Without a relay socket: no SSH_AUTH_SOCK.
    req.agent = None;
    let (exec_id, _stream) = rt
        .block_on(b.start_stream(&alice, &req, &id, &name))
        .unwrap();
    let e = b.lc.docker.exec(&exec_id).unwrap();
    assert!(
        !e.env.iter().any(|v| v.starts_with("SSH_AUTH_SOCK=")),
        "{:?}",
        e.env
    );
}

/// A runtime whose tasks run while the test thread blocks on a client socket.
fn mt_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Asks `b` for `user`'s network namespace as `uid`, the way pam_podspawn.so does; returns the
/// reply, its fd, the client (the lease lasts while it is open) and the broker's task.
fn ask_netns(
    rt: &tokio::runtime::Runtime,
    b: &Arc<Broker<Fake>>,
    uid: u32,
    user: &str,
) -> (
    Response,
    Option<std::os::fd::OwnedFd>,
    protocol::Client,
    tokio::task::JoinHandle<()>,
) {
    let (a, c) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let (b2, user) = (b.clone(), user.to_string());
    let task = rt.spawn(async move {
        let conn = Conn {
            stream: UnixStream::from_std(a).unwrap(),
            buf: Vec::new(),
        };
        b2.serve_netns(uid, &user, conn).await;
    });
    // The request line itself was read by `handle` (not called here): only the reply matters.
    let mut client = protocol::Client::from_stream(c);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (resp, fd) = client.recv().unwrap();
    (resp, fd, client, task)
}

#[test]
fn netns_is_for_root_only_about_registered_users() {
    let dir = TempDir::new("b-netns-who");
    let b = Arc::new(broker(&dir, SessionMode::GracePeriod, 3));
    let rt = mt_rt();
    // A user asking (even about themselves) is refused: only sshd's module, as root.
    let (resp, fd, _c, _t) = ask_netns(&rt, &b, 1000, "alice");
    assert!(
        matches!(&resp, Response::Error { kind: ErrorKind::Forbidden, message } if message.contains("only root")),
        "{resp:?}"
    );
    assert!(fd.is_none());
    // Not registered, or not a valid name: refused, nothing created.
    let (resp, fd, _c, _t) = ask_netns(&rt, &b, 0, "nosuchuser9");
    assert!(
        matches!(&resp, Response::Error { kind: ErrorKind::Forbidden, message } if message.contains("not a registered")),
        "{resp:?}"
    );
    assert!(fd.is_none());
    let (resp, _, _c, _t) = ask_netns(&rt, &b, 0, "../x");
    assert!(
        matches!(
            &resp,
            Response::Error {
                kind: ErrorKind::Invalid,
                ..
            }
        ),
        "{resp:?}"
    );
    assert!(b.lc.docker.containers().is_empty());
}

#[test]
fn a_netns_lease_keeps_the_users_sessions_and_namespace_until_the_connection_ends() {
    let dir = TempDir::new("b-netns-lease");
    // The module's user must have a host account: root stands in for one here.
    dir.write("keys/root", "ssh-ed25519 AAAA x\n");
    let b = Arc::new(broker(&dir, SessionMode::GracePeriod, 3));
    let rt = mt_rt();
    let (resp, fd, client, task) = ask_netns(&rt, &b, 0, "root");
    assert_eq!(
        resp,
        Response::Netns {
            holder: "podspawn-root.netns".into()
        }
    );
    assert!(fd.is_some(), "the namespace travels as an fd");
    let holder = b.lc.docker.container("podspawn-root.netns").unwrap();
    assert!(holder.running && engine::is_netns_holder(&holder.labels));
    assert_eq!(b.lc.db().netns_lease_count("root").unwrap(), 1);
    // A session whose grace period ran out while only the connection (ssh -N -L) holds it: kept.
    let me = account("root", 0);
    let t = now();
    let row = rt.block_on(async {
        let _g = b.lc.lock_user("root").await.unwrap();
        b.lc.create(&me, "", "podspawn-root", t).await.unwrap()
    });
    // It joined the namespace the connection is in.
    let c = b.lc.docker.container(&row.container_id).unwrap();
    assert_eq!(c.network, Some(format!("container:{}", holder.id)));
    b.lc.db()
        .set_status("root", "", Status::Grace, Some(t - 1), t)
        .unwrap();
    rt.block_on(b.sweep());
    assert!(b.lc.docker.container(&row.container_id).is_some());
    // Another request on the lease connection is refused; the lease goes on.
    let mut client = client;
    let resp = client.call(&Request::Status {}).unwrap();
    assert!(
        matches!(
            &resp,
            Response::Error {
                kind: ErrorKind::Invalid,
                ..
            }
        ),
        "{resp:?}"
    );
    // The connection ends: the grace period starts again from now.
    drop(client);
    rt.block_on(task).unwrap();
    assert_eq!(b.lc.db().netns_lease_count("root").unwrap(), 0);
    let r = b.lc.db().get("root", "").unwrap().unwrap();
    assert_eq!(r.status, Status::Grace);
    assert!(r.grace_expiry.unwrap() >= t + 60, "{r:?}");
    rt.block_on(b.sweep());
    assert!(b.lc.docker.container(&row.container_id).is_some());
    // When it runs out, the session goes, and with the user's last one, the namespace.
    b.lc.db()
        .set_status("root", "", Status::Grace, Some(t - 1), t)
        .unwrap();
    rt.block_on(b.sweep());
    assert!(
        b.lc.docker.containers().is_empty(),
        "{:?}",
        b.lc.docker.containers()
    );
    assert!(b.lc.docker.networks().is_empty());
}

#[test]
fn a_netns_lease_without_sessions_keeps_only_the_namespace() {
    let dir = TempDir::new("b-netns-alone");
    dir.write("keys/root", "ssh-ed25519 AAAA x\n");
    let b = Arc::new(broker(&dir, SessionMode::GracePeriod, 3));
    let rt = mt_rt();
    let (_, fd, client, task) = ask_netns(&rt, &b, 0, "root");
    assert!(fd.is_some());
    // Two connections share the one namespace.
    let (resp, _, client2, task2) = ask_netns(&rt, &b, 0, "root");
    assert_eq!(
        resp,
        Response::Netns {
            holder: "podspawn-root.netns".into()
        }
    );
    assert_eq!(b.lc.docker.containers().len(), 1);
    assert_eq!(b.lc.db().netns_lease_count("root").unwrap(), 2);
    // A cleanup pass (the separate process reads the leases from state.db) keeps it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = rt.block_on(b.lc.cleanup_pass(&|_, _| false, &stop));
    assert_eq!(report.removed_holders, 0, "{report:?}");
    drop(client);
    rt.block_on(task).unwrap();
    assert_eq!(
        b.lc.docker.containers().len(),
        1,
        "the other connection holds it"
    );
    drop(client2);
    rt.block_on(task2).unwrap();
    assert!(b.lc.docker.containers().is_empty());
    assert!(b.lc.docker.networks().is_empty());
}
