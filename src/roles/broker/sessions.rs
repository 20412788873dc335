//! Sessions: open (create or reattach, then hand over the exec stream), resume after a broker
//! restart, the per-connection loop (resize, wait, notices), and the end of a lease.
use super::*;

impl<R: ContainerRuntime> Broker<R> {
    pub(super) async fn serve_open(
        self: Arc<Self>,
        account: Account,
        req: OpenRequest,
        conn: Conn,
    ) {
        let agent = req.agent.clone();
        let user = account.name.clone();
        self.clone().serve_open_inner(account, req, conn).await;
        // The connection's agent relay goes with it (spawn removes it too, unless killed).
        if let (Some(sock), Some(base)) = (agent, self.cfg().broker.session_dir.as_ref()) {
            crate::host::session_dir::remove_socket(base, &user, &sock);
        }
    }

    async fn serve_open_inner(self: Arc<Self>, account: Account, req: OpenRequest, mut conn: Conn) {
        if let Err(e) = req.validate() {
            conn.send(&fail(ErrorKind::Invalid, e)).await;
            return;
        }
        let key: Key = (account.name.clone(), req.project.clone());
        let (container_id, container, created) = match self.acquire(&account, &req.project).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(podspawn_user = %account.name, podspawn_project = %req.project,
                    "open failed: {}", e.message);
                conn.send(&e.reply()).await;
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
                tracing::error!(podspawn_user = %account.name, podspawn_container = %container,
                    "exec failed: {}", e.message);
                conn.send(&e.reply()).await;
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

    pub(super) async fn serve_resume(
        self: Arc<Self>,
        account: Account,
        project: String,
        exec_id: String,
        mut conn: Conn,
    ) {
        if !project.is_empty() {
            if let Err(e) = crate::core::names::validate_project(&project) {
                conn.send(&fail(ErrorKind::Invalid, e)).await;
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
                .ok_or_else(|| Refusal {
                    kind: ErrorKind::NoSession,
                    message: "the session no longer exists".to_string(),
                })?;
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
            )
            .map_err(|why| Refusal {
                kind: ErrorKind::Forbidden,
                message: why.to_string(),
            })?;
            live.insert(exec_id.clone());
            drop(live);
            self.add_lease(&key);
            self.lc
                .db()
                .set_status(&account.name, &project, Status::Running, None, now())?;
            Ok::<String, Refusal>(row.container_name)
        };
        let container = match check.await {
            Ok(c) => c,
            Err(e) => {
                conn.send(&e.reply()).await;
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
    pub(super) async fn session_loop(
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
                    let resp = match line
                        .map_err(|e| e.to_string())
                        .and_then(|l| protocol::decode::<Request>(&l))
                    {
                        Ok(Request::Resize { rows, cols }) => match self.lc.docker.resize_exec(exec_id, rows, cols).await {
                            Ok(()) => Response::Ok,
                            Err(e) => err(e),
                        },
                        Ok(Request::Wait { .. }) => {
                            let r = self.wait_exec(&key.0, exec_id).await;
                            if let (Response::Exited { code, .. }, Some(c)) = (&r, command) {
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

    pub(super) async fn wait_exec(&self, user: &str, exec_id: &str) -> Response {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.lc.docker.inspect_exec(exec_id).await {
                Ok(st) if !st.running => {
                    let code = i32::try_from(st.exit_code.unwrap_or(255)).unwrap_or(255);
                    // `podspawn-helper run` recorded the signal that killed the command.
                    let signal = match (&self.cfg().broker.session_dir, &st.session_tag) {
                        (Some(base), Some(tag)) => {
                            crate::host::session_dir::take_status(base, user, tag)
                        }
                        _ => None,
                    };
                    return Response::Exited {
                        code: signal.map_or(code, |s| 128 + s),
                        signal,
                    };
                }
                Ok(_) => {}
                // The container is gone (stopped by an admin): the command did not finish normally.
                Err(_) => {
                    return Response::Exited {
                        code: 255,
                        signal: None,
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return err("the command is still running after its output ended");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Finds or creates the container for (user, project) and takes a lease on it. Returns the
    /// container's ID (every exec goes to it), its name, and whether it was created.
    pub(super) async fn acquire(
        &self,
        account: &Account,
        project: &str,
    ) -> Result<(String, String, bool), Refusal> {
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
        let mut decision = session::decide_open(row.as_ref(), state, t);
        let mut row = row;
        if let (OpenDecision::StartAndReattach, Some(r)) = (decision, &row) {
            match self.lc.restart(r).await {
                Ok(()) => {}
                // Its network namespace is gone (a Docker restart after the holder was removed):
                // a new container replaces it.
                Err(crate::roles::lifecycle::Error::NetnsGone { .. }) => {
                    self.lc.destroy(r, EndReason::Orphan).await?;
                    row = None;
                    decision = OpenDecision::Create { remove_old: false };
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (id, name, created) = match (decision, &row) {
            (OpenDecision::Reattach | OpenDecision::StartAndReattach, Some(r)) => {
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
                        let _ = engine::remove_owned_network(
                            &self.lc.docker,
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
    pub(super) async fn check_limit(&self, user: &str, project: &str) -> Result<(), Refusal> {
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
        session::check_limit(user, &live, self.cfg().resources.max_per_user).map_err(|e| Refusal {
            kind: ErrorKind::LimitReached,
            message: e.to_string(),
        })
    }

    pub(super) async fn start_stream(
        &self,
        account: &Account,
        req: &OpenRequest,
        container_id: &str,
        container: &str,
    ) -> Result<(String, std::os::unix::net::UnixStream), Refusal> {
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
        let accept = &self.cfg().session.accept_env;
        for (k, v) in &req.env {
            if protocol::CONNECTION_VARS.contains(&k.as_str()) || protocol::env_allowed(k, accept) {
                env.push(format!("{k}={v}"));
            } else {
                tracing::debug!(podspawn_user = %account.name, "dropped {k}: not in session.accept_env");
            }
        }
        let labels = self.labels_of(container_id).await;
        let session_dir = labels
            .as_ref()
            .and_then(|l| l.get(engine::LABEL_SESSION_DIR))
            .filter(|_| self.cfg().broker.session_dir.is_some());
        if let Some(sock) = &req.agent {
            match session_dir {
                Some(dir) => env.push(format!("SSH_AUTH_SOCK={dir}/{sock}")),
                None => {
                    tracing::info!(podspawn_user = %account.name, podspawn_container = %container,
                    "agent forwarding requested, but the container has no session directory \
                     (created before it was enabled); it applies to the next new container")
                }
            }
        }
        let tty = req.tty && route != Route::Sftp;
        let tag =
            engine::new_session_tag().map_err(|e| format!("cannot make a session tag: {e}"))?;
        env.push(format!("{}={tag}", engine::SESSION_TAG_ENV));
        let mut argv = session::exec_argv(&route, &shell);
        let helper = labels.as_ref().and_then(|l| l.get(engine::LABEL_HELPER));
        if let (Some(h), Some(d), false) = (helper, session_dir, route == Route::Sftp) {
            argv = session::with_status_file(argv, h, d, &tag);
        }
        // Project hooks (roles/project_session.rs): on_create once per container, on_start per
        // interactive login; their output is shown on interactive logins only.
        let argv = if req.project.is_empty() {
            argv
        } else {
            let shown = (self.lc)
                .run_hooks(account, &req.project, container_id, route == Route::Shell)
                .await;
            if route == Route::Shell {
                crate::roles::project_session::interactive_argv(
                    &shown,
                    &crate::roles::project_session::workspace(&req.project),
                    argv,
                )
            } else {
                argv
            }
        };
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
                    return Err(Refusal::from(format!(
                        "the container {container} (image {image}) stopped while setting up {}: {}; \
                         check the image with: podspawn verify-image {image}",
                        account.name,
                        if logs.is_empty() { e.to_string() } else { logs.replace('\n', " ") }
                    )));
                }
                return Err(e.into());
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

    /// A container's labels (which mounts it was created with), cached: they never change.
    async fn labels_of(&self, container_id: &str) -> Option<engine::Labels> {
        if let Some(l) = lock(&self.labels).get(container_id) {
            return Some(l.clone());
        }
        let l = self.lc.docker.container_labels(container_id).await.ok()??;
        let mut cache = lock(&self.labels);
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(container_id.to_string(), l.clone());
        Some(l)
    }

    /// Ends a lease. If the command is still running (the client went away), it is ended too.
    pub(super) async fn release(&self, key: &Key, container: &str, exec_id: Option<&str>) {
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
            CloseDecision::Destroy => match self.lc.destroy(&row, EndReason::Disconnect).await {
                Ok(()) => self.lc.settle_netns(&key.0, false).await.map(|_| ()),
                Err(e) => Err(e),
            },
            CloseDecision::Grace { until } => self
                .lc
                .db()
                .set_status(&key.0, &key.1, Status::Grace, Some(until), t)
                .map_err(crate::roles::lifecycle::Error::from),
            CloseDecision::Keep => self
                .lc
                .db()
                .set_status(&key.0, &key.1, Status::Idle, None, t)
                .map_err(crate::roles::lifecycle::Error::from),
        };
        if let Err(e) = res {
            tracing::error!(podspawn_user = %key.0, podspawn_container = %container, "ending session: {e}");
        }
    }

    /// A session whose container stopped before anyone could use it (a broken image) is removed at
    /// once instead of lingering for a grace period.
    pub(super) async fn remove_if_dead(&self, key: &Key) {
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
    pub(super) async fn end_exec(&self, exec_id: &str) {
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
    pub(super) async fn sweep(&self) {
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
}

impl<R: ContainerRuntime> Broker<R> {
    /// `Netns` from pam_podspawn.so (root, in sshd's privileged process): the user's network
    /// namespace as an fd, then a connection-level lease on all of the user's sessions until the
    /// module closes the connection (close_session, or sshd's end).
    pub(super) async fn serve_netns(&self, uid: u32, user: &str, mut conn: Conn) {
        if uid != 0 {
            tracing::warn!(
                uid,
                "refused a network namespace request from a non-root caller"
            );
            conn.send(&fail(
                ErrorKind::Forbidden,
                "only root (sshd's PAM session module) may ask for a network namespace",
            ))
            .await;
            return;
        }
        let account = match self.netns_account(user) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(podspawn_user = %user, "network namespace refused: {}", e.message);
                conn.send(&e.reply()).await;
                return;
            }
        };
        let opened = async {
            let _g = self.lc.lock_user(user).await?;
            let (id, name) = self.lc.ensure_netns(&account, None).await?;
            let r = self
                .lc
                .docker
                .netns_of(&id)
                .await?
                .ok_or_else(|| Refusal::from(format!("the holder {name} vanished")))?;
            let fd = crate::host::netns::open(r.running, r.sandbox_key.as_deref(), r.pid)
                .map_err(|e| Refusal::from(format!("cannot open the namespace of {name}: {e}")))?;
            let n = self.lc.db().netns_lease_add(user)?;
            Ok::<_, Refusal>((name, fd, n))
        };
        let (holder, fd, n) = match opened.await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(podspawn_user = %user, "network namespace: {}", e.message);
                conn.send(&e.reply()).await;
                return;
            }
        };
        tracing::info!(podspawn_user = %user, podspawn_container = %holder, connections = n,
            "connection joined the network namespace");
        if conn
            .send_with_fd(
                &Response::Netns {
                    holder: holder.clone(),
                },
                fd.as_raw_fd(),
            )
            .await
        {
            drop(fd);
            // The lease lasts as long as the connection; nothing else is asked on it.
            while let Some(line) = conn.read_line().await {
                if line.is_err()
                    || !conn
                        .send(&fail(
                            ErrorKind::Invalid,
                            "a network namespace lease accepts no requests",
                        ))
                        .await
                {
                    break;
                }
            }
        }
        self.end_netns_lease(user).await;
    }

    /// The account a Netns request names: a valid, registered podspawn user with a host account.
    fn netns_account(&self, user: &str) -> Result<Account, Refusal> {
        let forbidden = |message: String| Refusal {
            kind: ErrorKind::Forbidden,
            message,
        };
        crate::core::names::validate_user(user).map_err(|e| Refusal {
            kind: ErrorKind::Invalid,
            message: e.to_string(),
        })?;
        if !crate::store::keys::is_registered(&self.cfg().auth.key_dir, user) {
            return Err(forbidden(format!(
                "{user} is not a registered podspawn user"
            )));
        }
        accounts::lookup(user).ok_or_else(|| forbidden(format!("{user} has no host account")))
    }

    /// A connection lease ended. With the user's last one, the grace periods of sessions nobody
    /// else holds start again from now (a forwarding-only connection kept them), and with no
    /// session left the namespace goes too.
    async fn end_netns_lease(&self, user: &str) {
        let Ok(_g) = self.lc.lock_user(user).await else {
            let _ = self.lc.db().netns_lease_drop(user);
            return;
        };
        let left = match self.lc.db().netns_lease_drop(user) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(podspawn_user = %user, "ending a connection lease: {e}");
                return;
            }
        };
        tracing::info!(podspawn_user = %user, connections = left, "connection left the network namespace");
        if left > 0 {
            return;
        }
        let t = now();
        let grace = self.cfg().session.grace_period.as_secs();
        // Read first: the database guard must not live through the loop's own writes.
        let rows = self.lc.db().list(Some(user)).unwrap_or_default();
        for r in rows {
            if r.status != Status::Grace || self.leases_of(&(r.user.clone(), r.project.clone())) > 0
            {
                continue;
            }
            if let CloseDecision::Grace { until } = session::decide_last_close(r.mode, grace, t) {
                let until = until.max(r.grace_expiry.unwrap_or(0));
                let _ = self
                    .lc
                    .db()
                    .set_status(&r.user, &r.project, Status::Grace, Some(until), t);
            }
        }
        if let Err(e) = self.lc.settle_netns(user, false).await {
            tracing::warn!(podspawn_user = %user, "removing the network namespace: {e}");
        }
    }
}
