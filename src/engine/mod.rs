//! The container engine behind one trait ([`ContainerRuntime`]), so session logic never depends
//! on Docker itself: `docker` (bollard, plus the few raw HTTP calls the exec stream and doctor
//! need) for production, `fake` (in memory) for tests of the broker's and lifecycle's decisions.
//! A Kubernetes or remote-engine backend would be one more implementation.
use crate::core::session::ContainerState;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

mod docker;
#[cfg(test)]
pub mod fake;
pub mod http;
mod images;
mod spec;

pub use docker::*;
pub use images::BuiltImage;
pub use spec::*;

/// Object labels.
pub type Labels = HashMap<String, String>;

/// What went wrong talking to the engine, in the cases callers branch on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Nothing answers on the engine socket (not running, socket missing).
    EngineDown { detail: String },
    /// The engine has no such object.
    NotFound { what: String },
    /// The name is taken (by another owner, or a race).
    Conflict { what: String, message: String },
    /// No address space left for another bridge network.
    AddressPoolExhausted { message: String },
    /// The image is neither on the host nor pullable.
    ImageMissing { image: String, detail: String },
    /// A bind mount's source does not exist where the engine runs (an engine on another host, or
    /// a file removed since).
    BindSourceMissing { path: String, message: String },
    /// A new container's start command exited (a broken image) or did not finish in time.
    StartFailed { output: String },
    /// Any other answer of the engine's API.
    Api {
        what: String,
        status: u16,
        message: String,
    },
    /// A transport problem other than an unreachable engine.
    Io { what: String, message: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::EngineDown { .. } => f.write_str(ENGINE_DOWN),
            Error::NotFound { what } => write!(f, "docker: {what}: not found"),
            Error::Conflict { message, .. } => f.write_str(message),
            Error::AddressPoolExhausted { message } => write!(
                f,
                "{message}; Docker has no address space left for another network: raise \
                 default-address-pools in /etc/docker/daemon.json or set security.network: shared"
            ),
            Error::ImageMissing { image, .. } => f.write_str(&image_missing(image)),
            Error::StartFailed { output } => f.write_str(output),
            Error::BindSourceMissing { message, .. } => f.write_str(message),
            Error::Api { what, message, .. } | Error::Io { what, message } => {
                write!(f, "docker: {what}: {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Everything podspawn asks of a container engine. Methods return `Send` futures so that the
/// broker's per-connection tasks can run on any worker thread.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Running, stopped or missing, and the full ID.
    fn container_state(
        &self,
        id_or_name: &str,
    ) -> impl Future<Output = Result<(ContainerState, Option<String>)>> + Send;
    /// A container's labels (`None`: no such container).
    fn container_labels(&self, name: &str) -> impl Future<Output = Result<Option<Labels>>> + Send;
    /// Where a container's network namespace is (`None`: no such container).
    fn netns_of(&self, id: &str) -> impl Future<Output = Result<Option<NetnsRef>>> + Send;
    /// Pulls the image unless it is on the host.
    fn ensure_image(&self, image: &str) -> impl Future<Output = Result<()>> + Send;
    /// Creates and starts a container; returns its ID.
    fn create_and_start(&self, spec: &ContainerSpec)
        -> impl Future<Output = Result<String>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Force-removes a container; a missing one is not an error.
    fn remove(&self, id_or_name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Creates the network unless one of the same owner exists; returns its ID.
    fn ensure_network(
        &self,
        name: &str,
        labels: &Labels,
    ) -> impl Future<Output = Result<String>> + Send;
    /// A network's labels (`None`: no such network).
    fn network_labels(&self, name: &str) -> impl Future<Output = Result<Option<Labels>>> + Send;
    /// Removes a network; a missing one is not an error.
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// The installation's networks (managed-by=podspawn and its instance label), in one request.
    fn list_managed_networks(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<ManagedNetwork>>> + Send;
    /// How many endpoints (containers) a network has (`None`: no such network).
    fn network_endpoints(&self, name: &str) -> impl Future<Output = Result<Option<usize>>> + Send;
    /// Every container labelled managed-by=podspawn.
    fn list_managed(&self) -> impl Future<Output = Result<Vec<ManagedContainer>>> + Send;
    /// The engine's version (e.g. `20.10.24+dfsg1`).
    fn version(&self) -> impl Future<Output = Result<String>> + Send;
    /// The containers of installation `instance` (managed-by=podspawn and its instance label),
    /// running or not, with their state and networks, in one request: what a cleanup pass
    /// decides from instead of an inspect per session.
    fn list_instance(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<ManagedContainer>>> + Send;
    /// Signals a session's processes inside its container, as its user.
    fn signal_session(
        &self,
        container: &str,
        user: &str,
        tag: &str,
        signal: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Waits for a new container's start command to report ready.
    fn wait_ready(&self, id: &str, timeout: Duration) -> impl Future<Output = Result<()>> + Send;
    /// The last lines a container printed (to explain a failed start).
    fn logs_tail(&self, id: &str) -> impl Future<Output = String> + Send;
    /// Creates an exec; returns its ID.
    fn create_exec(
        &self,
        container: &str,
        spec: &ExecSpec,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Starts an exec and returns its connected byte stream. Blocking.
    fn start_exec_stream(&self, exec_id: &str, tty: bool) -> io::Result<UnixStream>;
    fn resize_exec(
        &self,
        exec_id: &str,
        rows: u16,
        cols: u16,
    ) -> impl Future<Output = Result<()>> + Send;
    fn inspect_exec(&self, exec_id: &str) -> impl Future<Output = Result<ExecStatus>> + Send;
    /// An image's ID (`sha256:…`), or None when the engine has no such image (project images
    /// are built ahead by `update-project`; a login only checks for them). Engines without
    /// project images report none.
    fn image_id(&self, image: &str) -> impl Future<Output = Result<Option<String>>> + Send {
        let _ = image;
        async { Ok(None) }
    }
    /// Runs `argv` in a container as `user` (`uid:gid`) in `workdir` and returns its exit code
    /// and output (project hooks). Engines without it report an I/O error.
    fn exec_capture(
        &self,
        container: &str,
        user: &str,
        workdir: &str,
        env: Vec<String>,
        argv: Vec<String>,
    ) -> impl Future<Output = Result<(Option<i64>, String)>> + Send {
        let _ = (container, user, workdir, env, argv);
        async { Err(unsupported("exec")) }
    }
    /// Creates an engine volume with `labels` unless one of the same owner exists (a project's
    /// companion service's named volume).
    fn ensure_volume(
        &self,
        name: &str,
        labels: &Labels,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (name, labels);
        async { Err(unsupported("volume")) }
    }
    /// The installation's volumes: (name, labels).
    fn list_volumes(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<(String, Labels)>>> + Send {
        let _ = instance;
        async { Ok(Vec::new()) }
    }
    /// Removes a volume; a missing one is not an error.
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<()>> + Send {
        let _ = name;
        async { Ok(()) }
    }
}

/// What the trait's default methods answer on engines without the feature.
fn unsupported(what: &str) -> Error {
    Error::Io {
        what: what.into(),
        message: "not supported by this engine".into(),
    }
}

/// Removes the network `name` only if it belongs to `owner` (all owner labels equal); a missing
/// network, or one of another owner, is left alone.
pub async fn remove_owned_network<R: ContainerRuntime>(
    rt: &R,
    name: &str,
    owner: &Labels,
) -> Result<()> {
    match rt.network_labels(name).await? {
        Some(l) if same_owner(&l, owner) => rt.remove_network(name).await,
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
