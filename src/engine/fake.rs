//! An in-memory engine for tests of the broker's and lifecycle's decisions (no Docker, no root).
//!
//! It keeps containers, networks, images and execs in maps, records every call, and has knobs
//! for the failures the code must handle: the engine down, an image that cannot be pulled, an
//! exhausted address pool, a start command that fails.
use super::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: Labels,
    pub running: bool,
    pub network: Option<String>,
    pub binds: Vec<Bind>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeExec {
    pub container: String,
    pub user: String,
    pub tag: Option<String>,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub signals: Vec<String>,
    /// The exec's environment and argv, as the broker asked for them.
    pub env: Vec<String>,
    pub argv: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    containers: Vec<FakeContainer>,
    networks: HashMap<String, (String, Labels)>,
    images: HashSet<String>,
    execs: HashMap<String, FakeExec>,
    calls: Vec<String>,
    /// The far ends of exec streams, so a test can play the process.
    streams: HashMap<String, UnixStream>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Fake {
    state: Mutex<State>,
    next: AtomicU64,
    /// Every call fails with [`Error::EngineDown`].
    pub down: AtomicBool,
    /// `create_and_start` leaves containers whose start command fails.
    pub broken_start: AtomicBool,
    /// `ensure_network` finds no address space.
    pub pool_exhausted: AtomicBool,
    /// The engine runs elsewhere: no bind source exists for it.
    pub remote: AtomicBool,
    /// How long each `remove` takes (zero: at once).
    pub remove_delay: Mutex<Duration>,
    /// How many removals overlapped (only counted when `remove_delay` is set).
    pub overlap: Mutex<Overlap>,
    /// What `version` answers ("" = a current engine, 26.1.4).
    pub engine_version: Mutex<String>,
}

/// Removals in flight: now, at most, and at most for one user.
#[derive(Debug, Default, Clone)]
pub struct Overlap {
    pub now: usize,
    pub max: usize,
    pub per_user: HashMap<String, usize>,
    pub max_per_user: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fake {
    /// Puts an image on the fake host (a project image built by update-project, say).
    pub fn add_image(&self, image: &str) {
        self.st().images.insert(image.to_string());
    }

    /// An engine with these images on the host.
    pub fn with_images(images: &[&str]) -> Fake {
        let f = Fake::default();
        f.st().images = images.iter().map(|s| s.to_string()).collect();
        f
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        // Exec IDs look like the engine's (64 hex digits); containers likewise.
        format!("{prefix}{n:0>63x}")
            .chars()
            .rev()
            .take(64)
            .collect::<String>()
            .chars()
            .rev()
            .collect()
    }

    fn call(&self, what: String) -> Result<()> {
        self.st().calls.push(what);
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::EngineDown {
                detail: "fake engine down".into(),
            });
        }
        Ok(())
    }

    /// The calls made so far (`create podspawn-alice`, `remove <id>`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.st().containers.clone()
    }

    pub fn container(&self, id_or_name: &str) -> Option<FakeContainer> {
        self.st()
            .containers
            .iter()
            .find(|c| c.id == id_or_name || c.name == id_or_name)
            .cloned()
    }

    pub fn networks(&self) -> Vec<(String, Labels)> {
        self.st()
            .networks
            .iter()
            .map(|(n, (_, l))| (n.clone(), l.clone()))
            .collect()
    }

    pub fn exec(&self, id: &str) -> Option<FakeExec> {
        self.st().execs.get(id).cloned()
    }

    /// Adds a container as if someone else had made it (another user, installation, or tool).
    pub fn add_container(&self, name: &str, labels: Labels, running: bool) -> String {
        let id = self.id("c");
        self.st().containers.push(FakeContainer {
            id: id.clone(),
            name: name.to_string(),
            image: "other:1".into(),
            labels,
            running,
            network: None,
            binds: Vec::new(),
        });
        id
    }

    /// Adds a network as if someone else had made it.
    pub fn add_network(&self, name: &str, labels: Labels) {
        let id = self.id("n");
        self.st().networks.insert(name.to_string(), (id, labels));
    }

    /// Stops a container (as a Docker or host restart would).
    pub fn stop(&self, id: &str) {
        if let Some(c) = self.st().containers.iter_mut().find(|c| c.id == id) {
            c.running = false;
        }
    }

    /// Ends an exec's process with `code`.
    pub fn finish_exec(&self, id: &str, code: i64) {
        if let Some(e) = self.st().execs.get_mut(id) {
            e.running = false;
            e.exit_code = Some(code);
        }
    }

    /// The containers whose labels pass `keep`, as the engine lists them.
    fn listed(&self, keep: impl Fn(&Labels) -> bool) -> Vec<ManagedContainer> {
        self.st()
            .containers
            .iter()
            .filter(|c| keep(&c.labels))
            .map(|c| ManagedContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                running: c.running,
                labels: c.labels.clone(),
                networks: c.network.iter().cloned().collect(),
            })
            .collect()
    }

    fn find_mut<'a>(st: &'a mut State, id_or_name: &str) -> Option<&'a mut FakeContainer> {
        st.containers
            .iter_mut()
            .find(|c| c.id == id_or_name || c.name == id_or_name)
    }
}

impl ContainerRuntime for Fake {
    async fn container_state(&self, id: &str) -> Result<(ContainerState, Option<String>)> {
        self.call(format!("inspect {id}"))?;
        Ok(match self.container(id) {
            Some(c) if c.running => (ContainerState::Running, Some(c.id)),
            Some(c) => (ContainerState::Stopped, Some(c.id)),
            None => (ContainerState::Missing, None),
        })
    }

    async fn container_labels(&self, name: &str) -> Result<Option<Labels>> {
        self.call(format!("labels {name}"))?;
        Ok(self.container(name).map(|c| c.labels))
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.call(format!("image-id {image}"))?;
        Ok(self
            .st()
            .images
            .contains(image)
            .then(|| format!("sha256:fake-{image}")))
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        self.call(format!("image {image}"))?;
        if self.st().images.contains(image) {
            Ok(())
        } else {
            Err(Error::ImageMissing {
                image: image.to_string(),
                detail: "not in the fake engine".into(),
            })
        }
    }

    async fn netns_of(&self, id: &str) -> Result<Option<NetnsRef>> {
        self.call(format!("netns {id}"))?;
        // The test process's own namespace stands in for a container's.
        Ok(self.container(id).map(|c| NetnsRef {
            running: c.running,
            sandbox_key: c.running.then(|| "/proc/self/ns/net".to_string()),
            pid: None,
        }))
    }

    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        self.call(format!("create {}", spec.name))?;
        if self.container(&spec.name).is_some() {
            return Err(Error::Conflict {
                what: format!("create container {}", spec.name),
                message: format!("the name {} is in use", spec.name),
            });
        }
        if !self.st().images.contains(&spec.image) {
            return Err(Error::NotFound {
                what: format!("image {}", spec.image),
            });
        }
        if self.remote.load(Ordering::SeqCst) {
            if let Some(b) = spec.binds.first() {
                return Err(Error::BindSourceMissing {
                    path: b.source.display().to_string(),
                    message: format!(
                        "docker: create container {}: bind source path does not exist: {}",
                        spec.name,
                        b.source.display()
                    ),
                });
            }
        }
        if let Some(target) = spec
            .network
            .as_deref()
            .and_then(|n| n.strip_prefix("container:"))
        {
            if !self.container(target).is_some_and(|c| c.running) {
                return Err(Error::Io {
                    what: format!("start container {}", spec.name),
                    message: format!("cannot join network of a non running container: {target}"),
                });
            }
        }
        let id = self.id("c");
        // A namespace holder only sleeps: a broken start command is a session's.
        let running = !self.broken_start.load(Ordering::SeqCst) || is_netns_holder(&spec.labels);
        self.st().containers.push(FakeContainer {
            id: id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
            running,
            network: spec.network.clone(),
            binds: spec.binds.clone(),
        });
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.call(format!("start {id}"))?;
        let mut st = self.st();
        match Fake::find_mut(&mut st, id) {
            Some(c) => {
                c.running = true;
                Ok(())
            }
            None => Err(Error::NotFound {
                what: format!("start container {id}"),
            }),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.call(format!("remove {id}"))?;
        let delay = *lock(&self.remove_delay);
        if delay.is_zero() {
            self.st().containers.retain(|c| c.id != id && c.name != id);
            return Ok(());
        }
        // A removal that takes time, as the engine's does: count how many overlap, in all and
        // per user, so tests can check the pass's bound and its one-user-at-a-time rule.
        let user = self
            .container(id)
            .and_then(|c| c.labels.get(LABEL_USER).cloned())
            .unwrap_or_default();
        {
            let mut o = lock(&self.overlap);
            o.now += 1;
            o.max = o.max.max(o.now);
            let n = o.per_user.entry(user.clone()).or_default();
            *n += 1;
            let n = *n;
            o.max_per_user = o.max_per_user.max(n);
        }
        tokio::time::sleep(delay).await;
        self.st().containers.retain(|c| c.id != id && c.name != id);
        let mut o = lock(&self.overlap);
        o.now -= 1;
        if let Some(n) = o.per_user.get_mut(&user) {
            *n -= 1;
        }
        Ok(())
    }

    async fn ensure_network(&self, name: &str, labels: &Labels) -> Result<String> {
        self.call(format!("network {name}"))?;
        let mut st = self.st();
        if let Some((id, l)) = st.networks.get(name) {
            if same_owner(l, labels) {
                return Ok(id.clone());
            }
            return Err(Error::Conflict {
                what: format!("network {name}"),
                message: format!("a network named {name} belongs to another owner"),
            });
        }
        if self.pool_exhausted.load(Ordering::SeqCst) {
            return Err(Error::AddressPoolExhausted {
                message: format!(
                    "docker: create network {name}: could not find an available, \
                     non-overlapping IPv4 address pool"
                ),
            });
        }
        let id = self.id("n");
        st.networks
            .insert(name.to_string(), (id.clone(), labels.clone()));
        Ok(id)
    }

    async fn network_labels(&self, name: &str) -> Result<Option<Labels>> {
        self.call(format!("network-labels {name}"))?;
        Ok(self.st().networks.get(name).map(|(_, l)| l.clone()))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.call(format!("remove-network {name}"))?;
        self.st().networks.remove(name);
        Ok(())
    }

    async fn list_managed_networks(&self, instance: &str) -> Result<Vec<ManagedNetwork>> {
        self.call("list-networks".into())?;
        Ok(self
            .st()
            .networks
            .iter()
            .filter(|(_, (_, l))| {
                l.get(LABEL_INSTANCE).map(String::as_str) == Some(instance)
                    && l.get(LABEL_MANAGED).map(String::as_str) == Some("podspawn")
            })
            .map(|(n, (_, l))| ManagedNetwork {
                name: n.clone(),
                labels: l.clone(),
            })
            .collect())
    }

    async fn network_endpoints(&self, name: &str) -> Result<Option<usize>> {
        self.call(format!("network-endpoints {name}"))?;
        let st = self.st();
        Ok(st.networks.contains_key(name).then(|| {
            st.containers
                .iter()
                .filter(|c| c.network.as_deref() == Some(name))
                .count()
        }))
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>> {
        self.call("list".into())?;
        Ok(self.listed(|l| l.get(LABEL_MANAGED).map(String::as_str) == Some("podspawn")))
    }

    async fn version(&self) -> Result<String> {
        self.call("version".into())?;
        let v = lock(&self.engine_version).clone();
        Ok(if v.is_empty() { "26.1.4".into() } else { v })
    }

    async fn list_instance(&self, instance: &str) -> Result<Vec<ManagedContainer>> {
        self.call("list-instance".into())?;
        Ok(self.listed(|l| {
            l.get(LABEL_MANAGED).map(String::as_str) == Some("podspawn")
                && l.get(LABEL_INSTANCE).map(String::as_str) == Some(instance)
        }))
    }

    async fn signal_session(
        &self,
        container: &str,
        user: &str,
        tag: &str,
        signal: &str,
    ) -> Result<()> {
        self.call(format!("signal {tag} {signal} as {user} in {container}"))?;
        for e in self.st().execs.values_mut() {
            if e.container == container && e.tag.as_deref() == Some(tag) && e.running {
                e.signals.push(signal.to_string());
                e.running = false;
                e.exit_code = Some(if signal == "KILL" { 137 } else { 129 });
            }
        }
        Ok(())
    }

    async fn wait_ready(&self, id: &str, _timeout: Duration) -> Result<()> {
        self.call(format!("wait-ready {id}"))?;
        match self.container(id) {
            Some(c) if c.running => Ok(()),
            _ => Err(Error::StartFailed {
                output: "sh: 1: set: Illegal option".into(),
            }),
        }
    }

    async fn logs_tail(&self, id: &str) -> String {
        let _ = self.call(format!("logs {id}"));
        String::new()
    }

    async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        self.call(format!("exec {container}"))?;
        match self.container(container) {
            Some(c) if c.running => {}
            Some(_) => {
                return Err(Error::Conflict {
                    what: "create exec".into(),
                    message: format!("docker: create exec: container {container} is not running"),
                })
            }
            None => {
                return Err(Error::NotFound {
                    what: format!("container {container}"),
                })
            }
        }
        let id = self.id("e");
        self.st().execs.insert(
            id.clone(),
            FakeExec {
                container: container.to_string(),
                user: spec.user.clone(),
                tag: session_tag_of(&spec.argv),
                running: false,
                exit_code: None,
                signals: Vec::new(),
                env: spec.env.clone(),
                argv: spec.argv.clone(),
            },
        );
        Ok(id)
    }

    fn start_exec_stream(&self, exec_id: &str, _tty: bool) -> io::Result<UnixStream> {
        let mut st = self.st();
        st.calls.push(format!("start-exec {exec_id}"));
        if self.down.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, ENGINE_DOWN));
        }
        let Some(e) = st.execs.get_mut(exec_id) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such exec"));
        };
        e.running = true;
        let (ours, theirs) = UnixStream::pair()?;
        st.streams.insert(exec_id.to_string(), theirs);
        Ok(ours)
    }

    async fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
        self.call(format!("resize {exec_id} {rows}x{cols}"))
    }

    async fn inspect_exec(&self, exec_id: &str) -> Result<ExecStatus> {
        self.call(format!("inspect-exec {exec_id}"))?;
        let st = self.st();
        let Some(e) = st.execs.get(exec_id) else {
            return Err(Error::NotFound {
                what: format!("exec {exec_id}"),
            });
        };
        let container_id = st
            .containers
            .iter()
            .find(|c| c.id == e.container || c.name == e.container)
            .map(|c| c.id.clone())
            .or_else(|| Some(e.container.clone()));
        Ok(ExecStatus {
            running: e.running,
            exit_code: e.exit_code,
            pid: Some(42),
            container_id,
            user: Some(e.user.clone()),
            session_tag: e.tag.clone(),
        })
    }
}
