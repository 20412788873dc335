//! The container runtime (Docker through bollard). All Docker access in podspawn goes through here,
//! and only the broker (root) calls it.
//!
//! The session stream is special: `start_exec_stream` speaks HTTP itself on a fresh connection to the
//! engine socket, upgrades it (`Upgrade: tcp`, answered `101 UPGRADED`), and returns that connected
//! socket. After the upgrade the engine treats every byte as the process's stdin, so handing that
//! descriptor to the unprivileged spawn process gives it the session and nothing else.

use crate::core::config::{Config, UserOverrides};
use crate::core::names::Holder;
use crate::core::session::ContainerState;
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, ResizeExecOptionsBuilder,
    StartContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const LABEL_MANAGED: &str = "managed-by";
pub const LABEL_USER: &str = "podspawn-user";
pub const LABEL_PROJECT: &str = "podspawn-project";
/// Which podspawn installation (state database) owns an object; reconciliation only ever touches
/// objects of its own instance, so two installations (or test runs) on one engine leave each other alone.
pub const LABEL_INSTANCE: &str = "podspawn-instance";

/// A new installation's instance id: 16 random hex digits (kept in state.db).
pub fn new_instance_id() -> io::Result<String> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The instance id that installations before state.db kept one used: FNV-1a 64 of the state
/// database path, in hex. Databases created before then keep it, so their containers stay theirs.
pub fn instance_id(db_path: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in db_path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The per-session bridge network: isolates one user's containers from everyone else's.
pub fn network_name(container: &str) -> String {
    format!("{container}-net")
}

pub struct Docker {
    socket: PathBuf,
    /// The client, once connected and agreed on the API version with the engine. Until then (the
    /// engine was down when the broker started) every request tries again, so the broker serves
    /// as soon as the engine is back, without a restart.
    client: std::sync::Mutex<Option<bollard::Docker>>,
}

/// What an SSH user is told when the engine cannot be reached (the broker logs the details).
pub const ENGINE_DOWN: &str = "the container engine is not running on this host; ask the \
                               administrator to start it (systemctl start docker)";

/// What an SSH user is told when the session's image is neither on the host nor pullable (the
/// broker logs the registry's answer).
pub fn image_missing(image: &str) -> String {
    format!(
        "the image {image} is not on this host and could not be pulled; ask the administrator to \
         pull it (docker pull {image}) or to set defaults.image to an image on this host \
         (check it with podspawn verify-image)"
    )
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

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub hostname: String,
    pub labels: HashMap<String, String>,
    pub nano_cpus: i64,
    pub memory: i64,
    pub pids_limit: i64,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub readonly_rootfs: bool,
    pub tmpfs: HashMap<String, String>,
    pub runtime: Option<String>,
    /// Bind mounts (host path, container path), given to the engine as structured mounts so
    /// that no character of a path can change their meaning.
    pub binds: Vec<(PathBuf, String)>,
    /// Network to attach to (created by the caller); None = Docker's default bridge.
    pub network: Option<String>,
    /// The start command and the user it runs as.
    pub cmd: Vec<String>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    /// "uid:gid"
    pub user: String,
    pub env: Vec<String>,
    pub workdir: String,
    pub tty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecStatus {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: Option<i64>,
    pub container_id: Option<String>,
    /// The user the exec runs as ("uid:gid").
    pub user: Option<String>,
    /// The session tag of a session exec (see [`wait_ready_argv`]).
    pub session_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

/// The engine socket from DOCKER_HOST (unix:// only) or the default.
fn engine_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

fn derr(what: &str, e: bollard::errors::Error) -> String {
    if is_unreachable(&e) {
        tracing::warn!("docker: {what}: {e}");
        return ENGINE_DOWN.to_string();
    }
    format!("docker: {what}: {e}")
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The container for (user, project), from the config and the user's overrides. Pure.
pub fn container_spec(
    cfg: &Config,
    ov: &UserOverrides,
    instance: &str,
    user: &str,
    project: &str,
) -> ContainerSpec {
    let labels = labels(instance, user, project);
    let cpus = ov.cpus.unwrap_or(cfg.defaults.cpus);
    let memory = ov.memory.unwrap_or(cfg.defaults.memory);
    ContainerSpec {
        name: crate::core::names::container_name(user, project),
        image: ov
            .image
            .clone()
            .unwrap_or_else(|| cfg.defaults.image.clone()),
        hostname: if project.is_empty() {
            user.to_string()
        } else {
            project.to_string()
        },
        labels,
        nano_cpus: (cpus * 1e9) as i64,
        memory: i64::try_from(memory).unwrap_or(i64::MAX),
        pids_limit: cfg.security.pids_limit,
        cap_drop: cfg.security.cap_drop.clone(),
        cap_add: cfg.security.cap_add.clone(),
        no_new_privileges: cfg.security.no_new_privileges,
        readonly_rootfs: cfg.security.readonly_rootfs,
        tmpfs: cfg
            .security
            .tmpfs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        runtime: cfg.security.runtime.clone(),
        binds: Vec::new(),
        network: None,
        cmd: vec!["sleep".into(), "infinity".into()],
        user: None,
    }
}

/// The labels every podspawn object of (user, project) in installation `instance` carries.
pub fn labels(instance: &str, user: &str, project: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), "podspawn".to_string());
    labels.insert(LABEL_USER.to_string(), user.to_string());
    labels.insert(LABEL_PROJECT.to_string(), project.to_string());
    labels.insert(LABEL_INSTANCE.to_string(), instance.to_string());
    labels
}

/// The labels that say who owns an object: podspawn, the user, the project, the installation.
const OWNER_LABELS: [&str; 4] = [LABEL_MANAGED, LABEL_USER, LABEL_PROJECT, LABEL_INSTANCE];

/// Does an object with `have` belong to the owner described by `want` (see [`labels`])? All four
/// owner labels must be equal: a name alone never makes an object ours.
pub fn same_owner(have: &HashMap<String, String>, want: &HashMap<String, String>) -> bool {
    OWNER_LABELS
        .iter()
        .all(|k| have.get(*k).is_some_and(|v| Some(v) == want.get(*k)))
}

/// Who holds a name, given the labels of the object that has it (`None`: no such object).
pub fn holder(found: Option<&HashMap<String, String>>, want: &HashMap<String, String>) -> Holder {
    match found {
        None => Holder::Free,
        Some(l) if same_owner(l, want) => Holder::Ours,
        Some(_) => Holder::Other,
    }
}

/// Written by the container's start command once the user's account and home exist.
pub const READY_MARKER: &str = "/run/.podspawn-ready";
/// The line the start command prints (to the container's log) when the container is ready.
pub const READY_LINE: &str = "podspawn-ready";

/// The container's start command (run as root, under docker-init): creates an account with the
/// host uid/gid and its home, marks the container ready, then sleeps. Doing this in the start
/// command rather than in a separate exec saves an exec round trip on every cold login.
/// Values are positional parameters, never interpolated into the script.
const INIT: &str = r#"set -e
rm -f /run/.podspawn-ready
u="$1"; uid="$2"; gid="$3"; home="$4"; shell="$5"
[ -x "$shell" ] || shell=/bin/sh
if ! grep -q "^[^:]*:[^:]*:$gid:" /etc/group 2>/dev/null; then
  grep -v "^$u:" /etc/group > /etc/group.podspawn 2>/dev/null || true
  echo "$u:x:$gid:" >> /etc/group.podspawn
  cat /etc/group.podspawn > /etc/group; rm -f /etc/group.podspawn
fi
grep -v "^$u:" /etc/passwd > /etc/passwd.podspawn || true
echo "$u:x:$uid:$gid:$u:$home:$shell" >> /etc/passwd.podspawn
cat /etc/passwd.podspawn > /etc/passwd; rm -f /etc/passwd.podspawn
if [ -f /etc/shadow ] && ! grep -q "^$u:" /etc/shadow; then echo "$u:*:19000:0:99999:7:::" >> /etc/shadow; fi
mkdir -p "$home"
chown "$uid:$gid" "$home"
chmod 0750 "$home"
mkdir -p /run
: > /run/.podspawn-ready
echo podspawn-ready
exec sleep infinity
"#;

/// Marks a session exec: `$0` of its wrapper is `podspawn-session:<tag>` (recoverable from the
/// engine's exec inspect after a broker restart) and its environment holds
/// `PODSPAWN_SESSION=<tag>` (inherited by everything the session starts).
pub const SESSION_TAG_PREFIX: &str = "podspawn-session:";
/// The environment variable that carries a session's tag.
pub const SESSION_TAG_ENV: &str = "PODSPAWN_SESSION";

/// A fresh random session tag (16 hex digits).
pub fn new_session_tag() -> io::Result<String> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn valid_tag(tag: &str) -> bool {
    tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The session tag in an exec's arguments (as the engine reports them).
pub fn session_tag_of(args: &[String]) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(SESSION_TAG_PREFIX))
        .filter(|t| valid_tag(t))
        .map(str::to_string)
}

/// Signals every process of a session inside its container: those whose environment carries
/// the session's tag, and their process groups. It runs inside the container (as the session's
/// user), so it can never reach a host process, whatever PIDs were reused meanwhile.
const SIGNAL_SESSION: &str = r#"t="$1"; s="$2"
for d in /proc/[0-9]*; do
  if tr '\000' '\n' < "$d/environ" 2>/dev/null | grep -qx "PODSPAWN_SESSION=$t"; then
    p="${d#/proc/}"
    kill -"$s" -- -"$p" 2>/dev/null
    kill -"$s" "$p" 2>/dev/null
  fi
done
exit 0
"#;

/// Every session exec waits (at most 30 s) for the start command to finish the
/// account, then runs in the user's home.
const WAIT_READY: &str = r#"i=0
while [ ! -e /run/.podspawn-ready ]; do
  i=$((i+1))
  if [ "$i" -gt 3000 ]; then echo "podspawn: the container did not finish setting up your account" >&2; exit 1; fi
  sleep 0.01 2>/dev/null || sleep 1
done
cd "$HOME" 2>/dev/null || cd /
exec "$@"
"#;

/// Wraps a session argv so it waits for the container's setup; `tag` marks the session (see
/// [`SESSION_TAG_PREFIX`]).
pub fn wait_ready_argv(inner: Vec<String>, tag: &str) -> Vec<String> {
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        WAIT_READY.to_string(),
        format!("{SESSION_TAG_PREFIX}{tag}"),
    ];
    v.extend(inner);
    v
}

pub fn init_argv(user: &str, uid: u32, gid: u32, home: &str, shell: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        INIT.into(),
        "podspawn-init".into(),
        user.into(),
        uid.to_string(),
        gid.to_string(),
        home.into(),
        shell.into(),
    ]
}

impl Docker {
    /// Connects and agrees on the API version; fails when the engine cannot be reached (for
    /// one-shot admin commands, which should say so at once).
    pub async fn connect() -> Result<Docker, String> {
        let d = Docker::lazy();
        match d.dial().await {
            Ok(_) => Ok(d),
            Err(e) if is_unreachable(&e) => Err(format!(
                "cannot reach the Docker engine at {}: {e}; start it with: systemctl start docker",
                d.socket.display()
            )),
            Err(e) => Err(derr("version", e)),
        }
    }

    /// A client that connects on first use (for the broker: it serves while the engine is down,
    /// answering [`ENGINE_DOWN`], and recovers by itself when the engine comes back).
    pub fn lazy() -> Docker {
        Docker::at(engine_socket())
    }

    /// A client of the engine at `socket` that connects on first use.
    pub fn at(socket: PathBuf) -> Docker {
        Docker {
            socket,
            client: std::sync::Mutex::new(None),
        }
    }

    /// The connected client (connecting and agreeing on the API version first if need be).
    async fn ready(&self) -> Result<bollard::Docker, String> {
        match self.connected() {
            Some(c) => Ok(c),
            None => self.dial().await.map_err(|e| derr("connect", e)),
        }
    }

    async fn dial(&self) -> Result<bollard::Docker, bollard::errors::Error> {
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

    pub async fn container_state(
        &self,
        name: &str,
    ) -> Result<(ContainerState, Option<String>), String> {
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
    pub async fn container_labels(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, String> {
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

    /// Pulls the image if it is not present. Progress goes to the log, never to a session.
    pub async fn ensure_image(&self, image: &str) -> Result<(), String> {
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
                    return Err(image_missing(image));
                }
            }
        }
        Ok(())
    }

    pub async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String, String> {
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
            mounts: (!spec.binds.is_empty()).then(|| {
                spec.binds
                    .iter()
                    .map(|(src, dst)| bollard::models::Mount {
                        source: Some(src.to_string_lossy().into_owned()),
                        target: Some(dst.clone()),
                        typ: Some(bollard::models::MountTypeEnum::BIND),
                        read_only: Some(false),
                        ..Default::default()
                    })
                    .collect()
            }),
            network_mode: spec.network.clone(),
            init: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: Some(spec.hostname.clone()),
            labels: Some(spec.labels.clone()),
            // podspawn's start command replaces the image's ENTRYPOINT as well as its CMD: an
            // entrypoint would otherwise receive the start command as arguments (and swallow it).
            entrypoint: Some(spec.cmd.clone()),
            cmd: Some(Vec::new()),
            user: spec.user.clone(),
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

    pub async fn start(&self, name: &str) -> Result<(), String> {
        self.ready()
            .await?
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| derr(&format!("start container {name}"), e))
    }

    /// Force-removes a container; a missing one is not an error.
    pub async fn remove(&self, name_or_id: &str) -> Result<(), String> {
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
            Err(e) => Err(derr(&format!("remove container {name_or_id}"), e)),
        }
    }

    /// Creates the network if it does not exist yet; returns its id.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, String> {
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
                    return Err(format!(
                        "a network named {name} exists and belongs to another user, project or \
                         installation (or is not podspawn's); rename or remove it"
                    ));
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
    pub async fn network_labels(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, String> {
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

    /// Removes the network `name` only if it belongs to `owner` (see [`labels`]); a missing
    /// network, or one of another owner, is left alone.
    pub async fn remove_owned_network(
        &self,
        name: &str,
        owner: &HashMap<String, String>,
    ) -> Result<(), String> {
        match self.network_labels(name).await? {
            Some(l) if same_owner(&l, owner) => self.remove_network(name).await,
            Some(_) => {
                tracing::warn!(
                    network = name,
                    "not removing a network of another owner that has this session's name"
                );
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Removes a network; a missing one is not an error.
    pub async fn remove_network(&self, name: &str) -> Result<(), String> {
        match self.ready().await?.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(derr(&format!("remove network {name}"), e)),
        }
    }

    /// podspawn networks of this instance: (name, labels, number of attached containers).
    pub async fn list_managed_networks(
        &self,
        instance: &str,
    ) -> Result<Vec<(String, HashMap<String, String>, usize)>, String> {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{LABEL_INSTANCE}={instance}")],
        );
        let opts = bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters),
        };
        let nets = self
            .ready()
            .await?
            .list_networks(Some(opts))
            .await
            .map_err(|e| derr("list networks", e))?;
        let mut out = Vec::new();
        for n in nets {
            let Some(name) = n.name else { continue };
            // The list endpoint does not report attached containers; inspect does.
            let attached = match self
                .ready()
                .await?
                .inspect_network(
                    &name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(i) => i.containers.map(|c| c.len()).unwrap_or(0),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(derr("inspect network", e)),
            };
            out.push((name, n.labels.unwrap_or_default(), attached));
        }
        Ok(out)
    }

    pub async fn list_managed(&self) -> Result<Vec<ManagedContainer>, String> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![format!("{LABEL_MANAGED}=podspawn")]);
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
        Ok(list
            .into_iter()
            .map(|c| ManagedContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
                labels: c.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// Runs `sh -c script` as root in the container; true when it exits 0.
    pub async fn run_check(&self, container: &str, script: &str) -> Result<bool, String> {
        let argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
        Ok(self.run_argv(container, "0:0", argv).await? == Some(0))
    }

    /// Sends `signal` (a name such as HUP or KILL) to the processes of the session tagged `tag`
    /// in `container`, from inside the container as `user` ("uid:gid", the session's own).
    pub async fn signal_session(
        &self,
        container: &str,
        user: &str,
        tag: &str,
        signal: &str,
    ) -> Result<(), String> {
        if !valid_tag(tag) || !signal.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("bad session tag {tag:?} or signal {signal:?}"));
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

    /// Runs `argv` in the container as `user` and waits for it; returns its exit code.
    async fn run_argv(
        &self,
        container: &str,
        user: &str,
        argv: Vec<String>,
    ) -> Result<Option<i64>, String> {
        let cfg = ExecConfig {
            cmd: Some(argv),
            user: Some(user.into()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .ready()
            .await?
            .create_exec(container, cfg)
            .await
            .map_err(|e| derr("create exec", e))?;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .ready()
            .await?
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| derr("start exec", e))?
        {
            while output.next().await.is_some() {}
        }
        Ok(self.inspect_exec(&exec.id).await?.exit_code)
    }

    /// Follows a new container's log until its start command prints `READY_LINE`. If the container
    /// exits first (a broken image), returns its output as the error.
    pub async fn wait_ready(&self, id: &str, timeout: Duration) -> Result<(), String> {
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
                    return Err(format!(
                        "the container did not finish setting up within {}s",
                        timeout.as_secs()
                    ))
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
                    return Err(if out.is_empty() {
                        "its start command exited".to_string()
                    } else {
                        out
                    });
                }
            }
        }
    }

    /// The last lines of a container's output (to explain a failed start command).
    pub async fn logs_tail(&self, id: &str) -> String {
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

    pub async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String, String> {
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
    pub fn start_exec_stream(&self, exec_id: &str, tty: bool) -> io::Result<UnixStream> {
        let Some(client) = self.connected() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, ENGINE_DOWN));
        };
        let v = client.client_version();
        let api = format!("v{}.{}", v.major_version, v.minor_version);
        start_exec_stream(&self.socket, &api, exec_id, tty)
    }

    pub async fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> Result<(), String> {
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

    pub async fn inspect_exec(&self, exec_id: &str) -> Result<ExecStatus, String> {
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

/// `POST /exec/{id}/start` with `Upgrade: tcp`; returns the connection once the engine answered
/// `101` (or `200` from engines that do not upgrade), positioned at the first byte of the stream.
pub fn start_exec_stream(
    socket: &Path,
    api: &str,
    exec_id: &str,
    tty: bool,
) -> io::Result<UnixStream> {
    if !exec_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad exec id"));
    }
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = format!("{{\"Detach\":false,\"Tty\":{tty}}}");
    let req = format!(
        "POST /{api}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nUser-Agent: podspawn\r\n\
         Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    // Read the response head byte by byte so that no stream byte is consumed here.
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "engine response head too long",
            ));
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "engine closed the connection",
            ));
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "101" && status != "200" {
        return Err(io::Error::other(format!(
            "engine refused to start exec: {}",
            text.lines().next().unwrap_or("")
        )));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No socket file, and a socket nobody listens on: both are "the engine is not running",
    /// the one line a user gets, and neither is remembered as a connection.
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
            assert_eq!(e, ENGINE_DOWN, "{}", sock.display());
            assert!(d.connected().is_none());
            let e = rt.block_on(d.ensure_image("img:1")).unwrap_err();
            assert_eq!(e, ENGINE_DOWN);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn spec_from_config_and_overrides() {
        let cfg = Config::default();
        let s = container_spec(&cfg, &UserOverrides::default(), "i1", "alice", "");
        assert_eq!(s.name, "podspawn-alice");
        assert_eq!(s.image, "ubuntu:24.04");
        assert_eq!(s.nano_cpus, 2_000_000_000);
        assert_eq!(s.memory, 2 * 1024 * 1024 * 1024);
        assert_eq!(s.pids_limit, 256);
        assert_eq!(
            s.labels.get("managed-by").map(String::as_str),
            Some("podspawn")
        );
        assert_eq!(
            s.labels.get("podspawn-user").map(String::as_str),
            Some("alice")
        );
        assert_eq!(
            s.labels.get("podspawn-project").map(String::as_str),
            Some("")
        );
        assert_eq!(s.cap_drop, vec!["ALL"]);
        assert!(s.cap_add.contains(&"SETUID".to_string()));
        let ov = UserOverrides {
            image: Some("debian:12".into()),
            cpus: Some(0.5),
            memory: Some(256 * 1024 * 1024),
            ..Default::default()
        };
        let s = container_spec(&cfg, &ov, "i1", "bob", "web");
        assert_eq!(
            (s.name.as_str(), s.hostname.as_str()),
            ("podspawn-bob-web", "web")
        );
        assert_eq!(s.image, "debian:12");
        assert_eq!(s.nano_cpus, 500_000_000);
        assert_eq!(s.memory, 256 * 1024 * 1024);
    }

    #[test]
    fn setup_argv_passes_values_as_parameters() {
        let a = init_argv("alice", 1001, 1002, "/home/alice", "/bin/bash");
        assert_eq!(a[0], "/bin/sh");
        assert!(!a[2].contains("alice"));
        assert_eq!(
            &a[4..],
            ["alice", "1001", "1002", "/home/alice", "/bin/bash"]
        );
    }
}
