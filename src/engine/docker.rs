//! The Docker engine through bollard: the production [`ContainerRuntime`]. Only the broker, the
//! cleanup pass and admin commands (root) use it.

use super::*;
use crate::core::session::ContainerState;
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, ResizeExecOptionsBuilder,
    StartContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub struct Docker {
    socket: PathBuf,
    /// The client, once connected and agreed on the API version with the engine. Until then (the
    /// engine was down when the broker started) every request tries again, so the broker serves
    /// as soon as the engine is back, without a restart.
    client: std::sync::Mutex<Option<bollard::Docker>>,
}

/// True when `e` means nothing answers on the engine socket (no socket, connection refused or
/// cut): the engine is not running, as opposed to an engine that refused a request.
pub fn is_unreachable(e: &bollard::errors::Error) -> bool {
    if matches!(e, bollard::errors::Error::SocketNotFoundError(_)) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            );
        }
        cur = err.source();
    }
    false
}

/// The typed error for a bollard error while doing `what`.
pub(super) fn derr(what: &str, e: bollard::errors::Error) -> Error {
    if is_unreachable(&e) {
        tracing::warn!("docker: {what}: {e}");
        return Error::EngineDown {
            detail: format!("{what}: {e}"),
        };
    }
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => {
            const NO_BIND_SOURCE: &str = "bind source path does not exist: ";
            if let Some(i) = message.find(NO_BIND_SOURCE) {
                Error::BindSourceMissing {
                    path: message[i + NO_BIND_SOURCE.len()..].trim().to_string(),
                    message: format!("docker: {what}: {message}"),
                }
            } else if status_code == 404 {
                Error::NotFound {
                    what: what.to_string(),
                }
            } else if message.contains("address pool") {
                Error::AddressPoolExhausted {
                    message: format!("docker: {what}: {message}"),
                }
            } else if status_code == 409 {
                Error::Conflict {
                    what: what.to_string(),
                    message: format!("docker: {what}: {message}"),
                }
            } else {
                Error::Api {
                    what: what.to_string(),
                    status: status_code,
                    message: format!(
                        "{}",
                        bollard::errors::Error::DockerResponseServerError {
                            status_code,
                            message,
                        }
                    ),
                }
            }
        }
        other => Error::Io {
            what: what.to_string(),
            message: other.to_string(),
        },
    }
}

/// The label filter for the objects of installation `instance`.
fn instance_filter(instance: &str) -> Vec<String> {
    vec![
        format!("{LABEL_MANAGED}=podspawn"),
        format!("{LABEL_INSTANCE}={instance}"),
    ]
}

/// One entry of the container list. Running means what `inspect`'s State.Running means: paused
/// and restarting containers are running too.
fn managed_container(c: bollard::models::ContainerSummary) -> ManagedContainer {
    use bollard::models::ContainerSummaryStateEnum as S;
    ManagedContainer {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        running: matches!(c.state, Some(S::RUNNING | S::PAUSED | S::RESTARTING)),
        labels: c.labels.unwrap_or_default(),
        networks: c
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default(),
    }
}

pub(super) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Docker {
    /// Connects and agrees on the API version; fails when the engine cannot be reached (for
    /// one-shot admin commands, which should say so at once).
    pub async fn connect() -> std::result::Result<Docker, String> {
        let d = Docker::lazy();
        match d.dial().await {
            Ok(_) => Ok(d),
            Err(e) if is_unreachable(&e) => Err(format!(
                "cannot reach the Docker engine at {}: {e}; start it with: systemctl start docker",
                d.socket.display()
            )),
            Err(e) => Err(derr("version", e).to_string()),
        }
    }

    /// A client that connects on first use (for the broker: it serves while the engine is down,
    /// answering [`ENGINE_DOWN`], and recovers by itself when the engine comes back).
    pub fn lazy() -> Docker {
        Docker::at(super::http::engine_socket())
    }

    /// A client of the engine at `socket` that connects on first use.
    pub fn at(socket: PathBuf) -> Docker {
        Docker {
            socket,
            client: std::sync::Mutex::new(None),
        }
    }

    /// The connected client (connecting and agreeing on the API version first if need be).
    pub(super) async fn ready(&self) -> Result<bollard::Docker> {
        match self.connected() {
            Some(c) => Ok(c),
            None => self.dial().await.map_err(|e| derr("connect", e)),
        }
    }

    async fn dial(&self) -> std::result::Result<bollard::Docker, bollard::errors::Error> {
        let c = bollard::Docker::connect_with_unix(
            &self.socket.to_string_lossy(),
            120,
            bollard::API_DEFAULT_VERSION,
        )?
        .negotiate_version()
        .await?;
        tracing::info!(socket = %self.socket.display(), "Docker engine reachable");
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn connected(&self) -> Option<bollard::Docker> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The containers carrying every label of `labels` (the engine ANDs label filters), running
    /// or not, in one request.
    async fn list_labelled(&self, labels: Vec<String>) -> Result<Vec<ManagedContainer>> {
        let mut filters = HashMap::new();
        filters.insert("label", labels);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .ready()
            .await?
            .list_containers(Some(opts))
            .await
            .map_err(|e| derr("list containers", e))?;
        Ok(list.into_iter().map(managed_container).collect())
    }

    /// Runs `sh -c script` as root in the container; true when it exits 0.
    pub async fn run_check(&self, container: &str, script: &str) -> Result<bool> {
        let argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
        Ok(self.run_argv(container, "0:0", argv).await? == Some(0))
    }

    /// Runs `argv` in the container as `user` and waits for it; returns its exit code.
    async fn run_argv(
        &self,
        container: &str,
        user: &str,
        argv: Vec<String>,
    ) -> Result<Option<i64>> {
        self.exec_capture(container, user, "/", Vec::new(), argv)
            .await
            .map(|(code, _)| code)
    }
}

impl ContainerRuntime for Docker {
    async fn container_state(&self, name: &str) -> Result<(ContainerState, Option<String>)> {
        match self
            .ready()
            .await?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => {
                let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                let st = if running {
                    ContainerState::Running
                } else {
                    ContainerState::Stopped
                };
                Ok((st, c.id))
            }
            Err(e) if is_not_found(&e) => Ok((ContainerState::Missing, None)),
            Err(e) => Err(derr("inspect container", e)),
        }
    }

    /// Labels of a container, to check podspawn owns it before removing it.
    async fn container_labels(&self, name: &str) -> Result<Option<HashMap<String, String>>> {
        match self
            .ready()
            .await?
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(c.config.and_then(|c| c.labels).unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(derr("inspect container", e)),
        }
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.image_id_of(image).await
    }

    async fn netns_of(&self, id: &str) -> Result<Option<NetnsRef>> {
        match self
            .ready()
            .await?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(NetnsRef {
                running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
                sandbox_key: c
                    .network_settings
                    .and_then(|n| n.sandbox_key)
                    .filter(|k| !k.is_empty()),
                pid: c.state.and_then(|s| s.pid).filter(|p| *p > 0),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(derr("inspect container", e)),
        }
    }

    async fn exec_capture(
        &self,
        container: &str,
        user: &str,
        workdir: &str,
        env: Vec<String>,
        argv: Vec<String>,
    ) -> Result<(Option<i64>, String)> {
        Docker::exec_capture(self, container, user, workdir, env, argv).await
    }

    async fn ensure_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        self.ensure_volume_of(name, labels).await
    }

    async fn list_volumes(&self, instance: &str) -> Result<Vec<(String, Labels)>> {
        self.list_volumes_of(instance).await
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.remove_volume_named(name).await
    }

    /// Pulls the image if it is not present. Progress goes to the log, never to a session.
    async fn ensure_image(&self, image: &str) -> Result<()> {
        match self.ready().await?.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(derr("inspect image", e)),
        }
        tracing::info!(image, "pulling image");
        let opts = CreateImageOptionsBuilder::new().from_image(image).build();
        let client = self.ready().await?;
        let mut stream = client.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => tracing::debug!(image, status = ?info.status, "pull progress"),
                Err(e) if is_unreachable(&e) => return Err(derr("pull", e)),
                Err(e) => {
                    tracing::warn!(image, "pulling {image}: {e}");
                    return Err(Error::ImageMissing {
                        image: image.to_string(),
                        detail: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        let host = HostConfig {
            nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus),
            memory: (spec.memory > 0).then_some(spec.memory),
            pids_limit: (spec.pids_limit > 0).then_some(spec.pids_limit),
            cap_drop: Some(spec.cap_drop.clone()),
            cap_add: Some(spec.cap_add.clone()),
            security_opt: spec
                .no_new_privileges
                .then(|| vec!["no-new-privileges:true".to_string()]),
            readonly_rootfs: Some(spec.readonly_rootfs),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.clone()),
            runtime: spec.runtime.clone(),
            mounts: (!spec.binds.is_empty() || !spec.volumes.is_empty()).then(|| {
                spec.binds
                    .iter()
                    .map(|b| bollard::models::Mount {
                        source: Some(b.source.to_string_lossy().into_owned()),
                        target: Some(b.target.clone()),
                        typ: Some(bollard::models::MountType::BIND),
                        read_only: Some(b.read_only),
                        ..Default::default()
                    })
                    .chain(spec.volumes.iter().map(|v| bollard::models::Mount {
                        source: Some(v.name.clone()),
                        target: Some(v.target.clone()),
                        typ: Some(bollard::models::MountType::VOLUME),
                        read_only: Some(v.read_only),
                        ..Default::default()
                    }))
                    .collect()
            }),
            network_mode: spec.network.clone(),
            init: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // A container that joins another's namespace has that container's hostname.
            hostname: (!spec.hostname.is_empty() && !joins_container(spec.network.as_deref()))
                .then(|| spec.hostname.clone()),
            labels: Some(spec.labels.clone()),
            // podspawn's start command replaces the image's ENTRYPOINT as well as its CMD: an
            // entrypoint would otherwise receive the start command as arguments (and swallow it).
            // An empty start command (a project's companion service) keeps the image's own.
            entrypoint: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            cmd: (!spec.cmd.is_empty()).then(Vec::new),
            networking_config: (!spec.aliases.is_empty()).then(|| {
                bollard::models::NetworkingConfig {
                    endpoints_config: spec.network.as_ref().map(|n| {
                        HashMap::from([(
                            n.clone(),
                            bollard::models::EndpointSettings {
                                aliases: Some(spec.aliases.clone()),
                                ..Default::default()
                            },
                        )])
                    }),
                }
            }),
            user: spec.user.clone(),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            open_stdin: Some(false),
            host_config: Some(host),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .ready()
            .await?
            .create_container(Some(opts), body)
            .await
            .map_err(|e| derr(&format!("create container {}", spec.name), e))?;
        if let Err(e) = self
            .ready()
            .await?
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            let _ = self.remove(&created.id).await;
            return Err(derr(&format!("start container {}", spec.name), e));
        }
        Ok(created.id)
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.ready()
            .await?
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| derr(&format!("start container {name}"), e))
    }

    /// Force-removes a container; a missing one is not an error.
    async fn remove(&self, name_or_id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .ready()
            .await?
            .remove_container(name_or_id, Some(opts))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Another removal (a cleanup process killed mid-pass, whose request the engine still
            // serves) is under way: done once it is gone.
            Err(e) if e.to_string().contains("already in progress") => {
                for _ in 0..200 {
                    if self.container_state(name_or_id).await?.0 == ContainerState::Missing {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(derr(&format!("remove container {name_or_id}"), e))
            }
            Err(e) => Err(derr(&format!("remove container {name_or_id}"), e)),
        }
    }

    /// Creates the network if it does not exist yet; returns its id.
    async fn ensure_network(&self, name: &str, labels: &HashMap<String, String>) -> Result<String> {
        match self
            .ready()
            .await?
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => {
                let l = n.labels.unwrap_or_default();
                if !same_owner(&l, labels) {
                    return Err(Error::Conflict {
                        what: format!("network {name}"),
                        message: format!(
                            "a network named {name} exists and belongs to another user, project \
                             or installation (or is not podspawn's); rename or remove it"
                        ),
                    });
                }
                return Ok(n.id.unwrap_or_default());
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(derr("inspect network", e)),
        }
        let req = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let r = self
            .ready()
            .await?
            .create_network(req)
            .await
            .map_err(|e| derr(&format!("create network {name}"), e))?;
        Ok(r.id)
    }

    /// Labels of a network (`None`: no network of that name).
    async fn network_labels(&self, name: &str) -> Result<Option<HashMap<String, String>>> {
        match self
            .ready()
            .await?
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => Ok(Some(n.labels.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(derr("inspect network", e)),
        }
    }

    /// Removes a network; a missing one is not an error.
    async fn remove_network(&self, name: &str) -> Result<()> {
        match self.ready().await?.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(derr(&format!("remove network {name}"), e)),
        }
    }

    /// podspawn networks of this instance, in one request.
    async fn list_managed_networks(&self, instance: &str) -> Result<Vec<ManagedNetwork>> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), instance_filter(instance));
        let opts = bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters),
        };
        let nets = self
            .ready()
            .await?
            .list_networks(Some(opts))
            .await
            .map_err(|e| derr("list networks", e))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| {
                Some(ManagedNetwork {
                    name: n.name?,
                    labels: n.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The list endpoint does not report attached containers; inspect does.
    async fn network_endpoints(&self, name: &str) -> Result<Option<usize>> {
        match self
            .ready()
            .await?
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(i) => Ok(Some(i.containers.map(|c| c.len()).unwrap_or(0))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(derr("inspect network", e)),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>> {
        self.list_labelled(vec![format!("{LABEL_MANAGED}=podspawn")])
            .await
    }

    async fn version(&self) -> Result<String> {
        let v = self
            .ready()
            .await?
            .version()
            .await
            .map_err(|e| derr("version", e))?;
        Ok(v.version.unwrap_or_default())
    }

    async fn list_instance(&self, instance: &str) -> Result<Vec<ManagedContainer>> {
        self.list_labelled(instance_filter(instance)).await
    }

    /// Sends `signal` (a name such as HUP or KILL) to the processes of the session tagged `tag`
    /// in `container`, from inside the container as `user` ("uid:gid", the session's own).
    async fn signal_session(
        &self,
        container: &str,
        user: &str,
        tag: &str,
        signal: &str,
    ) -> Result<()> {
        if !valid_tag(tag) || !signal.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::Io {
                what: "signal session".into(),
                message: format!("bad session tag {tag:?} or signal {signal:?}"),
            });
        }
        let argv = vec![
            "/bin/sh".into(),
            "-c".into(),
            SIGNAL_SESSION.into(),
            "podspawn-signal".into(),
            tag.into(),
            signal.into(),
        ];
        self.run_argv(container, user, argv).await.map(|_| ())
    }

    /// Follows a new container's log until its start command prints `READY_LINE`. If the container
    /// exits first (a broken image), returns its output as the error.
    async fn wait_ready(&self, id: &str, timeout: Duration) -> Result<()> {
        let opts = bollard::query_parameters::LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let client = self.ready().await?;
        let mut stream = client.logs(id, Some(opts));
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => {
                    return Err(Error::StartFailed {
                        output: format!(
                            "the container did not finish setting up within {}s",
                            timeout.as_secs()
                        ),
                    })
                }
                Ok(Some(Ok(chunk))) => {
                    if seen.len() < 16 * 1024 {
                        seen.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                    }
                    if seen.lines().any(|l| l.trim() == READY_LINE) {
                        return Ok(());
                    }
                }
                Ok(Some(Err(e))) => return Err(derr("container logs", e)),
                // The log ends when the container exits: its start command failed.
                Ok(None) => {
                    let out = seen.trim().replace('\n', " ");
                    return Err(Error::StartFailed {
                        output: if out.is_empty() {
                            "its start command exited".to_string()
                        } else {
                            out
                        },
                    });
                }
            }
        }
    }

    /// The last lines of a container's output (to explain a failed start command).
    async fn logs_tail(&self, id: &str) -> String {
        let opts = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("20")
            .build();
        let mut out = String::new();
        let Some(client) = self.connected() else {
            return String::new();
        };
        let mut stream = client.logs(id, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out.trim().to_string()
    }

    async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        let cfg = ExecConfig {
            cmd: Some(spec.argv.clone()),
            user: Some(spec.user.clone()),
            env: Some(spec.env.clone()),
            working_dir: Some(spec.workdir.clone()),
            tty: Some(spec.tty),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let r = self
            .ready()
            .await?
            .create_exec(container, cfg)
            .await
            .map_err(|e| derr("create exec", e))?;
        Ok(r.id)
    }

    /// Starts an exec on a new engine connection and returns the upgraded stream. Blocking.
    fn start_exec_stream(&self, exec_id: &str, tty: bool) -> io::Result<UnixStream> {
        let Some(client) = self.connected() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, ENGINE_DOWN));
        };
        let v = client.client_version();
        let api = format!("v{}.{}", v.major_version, v.minor_version);
        super::http::start_exec_stream(&self.socket, &api, exec_id, tty)
    }

    async fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let opts = ResizeExecOptionsBuilder::new()
            .h(i32::from(rows))
            .w(i32::from(cols))
            .build();
        self.ready()
            .await?
            .resize_exec(exec_id, opts)
            .await
            .map_err(|e| derr("resize exec", e))
    }

    async fn inspect_exec(&self, exec_id: &str) -> Result<ExecStatus> {
        let r = self
            .ready()
            .await?
            .inspect_exec(exec_id)
            .await
            .map_err(|e| derr("inspect exec", e))?;
        let pc = r.process_config.unwrap_or_default();
        Ok(ExecStatus {
            running: r.running.unwrap_or(false),
            exit_code: r.exit_code,
            pid: r.pid,
            container_id: r.container_id,
            user: pc.user,
            session_tag: pc.arguments.as_deref().and_then(session_tag_of),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No socket file, and a socket nobody listens on: both are "the engine is not running",
    /// the one line a user gets, and neither is remembered as a connection.
    #[test]
    fn engine_answers_are_typed() {
        let e = |code: u16, msg: &str| {
            derr(
                "create container x",
                bollard::errors::Error::DockerResponseServerError {
                    status_code: code,
                    message: msg.into(),
                },
            )
        };
        assert_eq!(
            e(
                400,
                "invalid mount config for type \"bind\": bind source path does not exist: /usr/lib/p/h"
            ),
            Error::BindSourceMissing {
                path: "/usr/lib/p/h".into(),
                message: "docker: create container x: invalid mount config for type \"bind\": \
                          bind source path does not exist: /usr/lib/p/h"
                    .into()
            }
        );
        assert!(matches!(e(404, "no such image"), Error::NotFound { .. }));
        assert!(matches!(e(409, "name in use"), Error::Conflict { .. }));
        assert!(matches!(
            e(
                500,
                "could not find an available, non-overlapping IPv4 address pool"
            ),
            Error::AddressPoolExhausted { .. }
        ));
        assert!(matches!(e(500, "boom"), Error::Api { status: 500, .. }));
    }

    #[test]
    fn an_unreachable_engine_is_one_clear_line() {
        let dir = std::env::temp_dir().join(format!("podspawn-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let refused = dir.join("refused.sock");
        drop(std::os::unix::net::UnixListener::bind(&refused).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for sock in [dir.join("missing.sock"), refused] {
            let d = Docker::at(sock.clone());
            let e = rt.block_on(d.container_state("x")).unwrap_err();
            assert!(matches!(e, Error::EngineDown { .. }), "{}", sock.display());
            assert_eq!(e.to_string(), ENGINE_DOWN);
            assert!(d.connected().is_none());
            let e = rt.block_on(d.ensure_image("img:1")).unwrap_err();
            assert!(matches!(e, Error::EngineDown { .. }), "{e:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
