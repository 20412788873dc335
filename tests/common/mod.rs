//! Test harness: a private sshd on a loopback port wired to this build, a real broker, real host
//! accounts and real Docker. Everything it creates is uniquely named and removed on drop; Docker
//! objects carry `podspawn-user=<test user>` labels so a failed run can be cleaned with
//! `docker rm -f $(docker ps -aq --filter label=podspawn-user)` for names starting `pst`.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "podspawn-test:latest";
/// Client options for every test login: no prompts, no host-key bookkeeping, only the given key.
pub const SSH_OPTIONS: &[&str] = &[
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "IdentitiesOnly=yes",
];
static IMAGE_ONCE: Once = Once::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podspawn"))
}

fn rand_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect::<String>()[..n].to_string()
}

/// A fresh scratch directory (mode 0755), removed when dropped, also when the test panics.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Under target/tmp: a root-owned, not group/world-writable chain when the tests run as root,
    /// so sshd's path rules accept what is put there.
    pub fn new(tag: &str) -> TempDir {
        TempDir::under(Path::new(env!("CARGO_TARGET_TMPDIR")), tag)
    }

    /// Under `base`, named `<tag>-<pid>-<n>`.
    pub fn under(base: &Path, tag: &str) -> TempDir {
        let d = base.join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(d)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the static podspawn-helper (scripts/build-helper.sh) and installs it into a root-owned
/// directory under /var/tmp; returns the directory's guard and the helper's path (for the
/// config's `helper.path`).
pub fn installed_helper() -> (TempDir, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = run(Command::new("bash")
        .arg(repo.join("scripts/build-helper.sh"))
        .current_dir(repo));
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(o.status.success(), "build-helper: {}", text(&o));
    let built = repo.join(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    );
    let dir = TempDir::under(Path::new("/var/tmp"), "pst-helper");
    let helper = dir.join("podspawn-helper");
    let o = run(Command::new("install")
        .arg("-m")
        .arg("0755")
        .arg(&built)
        .arg(&helper));
    assert!(o.status.success(), "install: {}", text(&o));
    (dir, helper)
}

/// A locally made image, removed on drop (also when the test fails).
pub struct ImageGuard(pub String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The test image without `paths` (e.g. sftp-server, or tr and grep), tagged `tag`; it keeps the
/// base image's podspawn-test=1 label.
pub fn image_without(tag: &str, paths: &[&str]) -> ImageGuard {
    ensure_image();
    let builder = format!("podspawn-strip-{}-{}", std::process::id(), rand_hex(4));
    let mut argv = vec!["run", "--name", &builder, IMAGE, "/bin/rm", "-f"];
    argv.extend(paths);
    let o = run(Command::new("docker").args(&argv));
    let guard = ImageGuard(tag.to_string());
    let committed = o
        .status
        .success()
        .then(|| run(Command::new("docker").args(["commit", &builder, tag])));
    let _ = run(Command::new("docker").args(["rm", "-f", &builder]));
    assert!(
        o.status.success(),
        "docker run rm: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let c = committed.unwrap();
    assert!(
        c.status.success(),
        "docker commit: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    guard
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn ensure_image() {
    IMAGE_ONCE.call_once(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/build-test-image.sh");
        let out = run(Command::new("sh").arg(script).arg(IMAGE));
        assert!(
            out.status.success(),
            "building the test image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub struct Opts {
    pub mode: &'static str,
    pub grace: &'static str,
    pub ttl: &'static str,
    pub max_lifetime: &'static str,
    pub max_per_user: u32,
    /// Write the audit log to <root>/audit.jsonl.
    pub audit: bool,
    pub extra: String,
    /// sshd's global settings as Debian ships them (password and keyboard-interactive logins
    /// on), instead of keys only: podspawn's Match block alone must confine its users.
    pub stock_auth: bool,
    /// Extra environment of the broker (e.g. DOCKER_HOST).
    pub broker_env: Vec<(String, String)>,
    /// TCP forwarding through pam_podspawn.so: sshd runs as a copy named after this test
    /// (its own PAM service, /etc/pam.d/sshd-pst<id>, with the module of this build) and the
    /// forwarding drop-in comes first, as server-setup writes it where the module is in place.
    pub forwarding: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            mode: "grace-period",
            grace: "60s",
            ttl: "1h",
            max_lifetime: "8h",
            max_per_user: 3,
            audit: false,
            extra: String::new(),
            stock_auth: false,
            broker_env: Vec::new(),
            forwarding: false,
        }
    }
}

pub struct User {
    pub name: String,
    pub key: PathBuf,
    pub pubkey: String,
}

pub struct Env {
    pub id: String,
    pub root: PathBuf,
    pub bin_dir: PathBuf,
    pub bin: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    sshd: Option<Child>,
    broker: Option<Child>,
    pub users: Vec<String>,
    stock_auth: bool,
    broker_env: Vec<(String, String)>,
    /// With `Opts::forwarding`: the PAM service file of this test's sshd.
    pam_service: Option<PathBuf>,
}

/// The PAM module of this build (target/<profile>/libpam_podspawn.so), built if needed.
pub fn pam_module() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = run(Command::new(cargo)
            .args(["build", "--locked", "-p", "pam_podspawn"])
            .current_dir(env!("CARGO_MANIFEST_DIR")));
        assert!(
            out.status.success(),
            "building pam_podspawn: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    // The test binary is target/<profile>/deps/<name>: the module is two levels up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let so = dir.join("libpam_podspawn.so");
    assert!(so.exists(), "{} was not built", so.display());
    so
}

impl Env {
    pub fn start() -> Env {
        Env::with(Opts::default())
    }

    pub fn with(opts: Opts) -> Env {
        ensure_image();
        let id = format!("{}{}", rand_hex(4), COUNTER.fetch_add(1, Ordering::SeqCst));
        let root = PathBuf::from(format!("/var/tmp/podspawn-test-{id}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        // sshd requires the AuthorizedKeysCommand and every parent to be root-owned, not writable by others.
        let bin_dir = PathBuf::from(format!("/usr/local/libexec/podspawn-test-{id}"));
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let b = bin_dir.join("podspawn");
        // Copied by a separate process: if this (multi-threaded) test process held a write fd to the
        // new binary, a fork in another test thread could inherit it and exec would fail with
        // ETXTBSY ("Text file busy"), for us or for sshd.
        let out = run(Command::new("install")
            .arg("-m")
            .arg("0755")
            .arg(bin())
            .arg(&b));
        assert!(
            out.status.success(),
            "install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = root.join("run/podspawn.sock");
        let config = root.join("config.yaml");
        let cfg = format!(
            "auth:\n  key_dir: {r}/keys\ndefaults:\n  image: {IMAGE}\n  shell: /bin/bash\n  cpus: 1\n  memory: 512m\n\
             session:\n  grace_period: {grace}\n  network_linger: 0s\n  mode: {mode}\n  ttl: {ttl}\n  max_lifetime: {maxl}\nlog:\n  audit_log: \"{audit}\"\nstate:\n  db_path: {r}/state/state.db\n  lock_dir: {r}/state/locks\n  homes_dir: {r}/state/homes\n\
             resources:\n  max_per_user: {max}\nusers_dir: {r}/users\nprojects_file: {r}/projects.yaml\nbroker:\n  socket: {s}\n  session_dir: {r}/run/sessions\n{extra}",
            r = root.display(),
            grace = opts.grace,
            mode = opts.mode,
            ttl = opts.ttl,
            maxl = opts.max_lifetime,
            audit = if opts.audit { format!("{}/audit.jsonl", root.display()) } else { String::new() },
            max = opts.max_per_user,
            s = socket.display(),
            extra = opts.extra,
        );
        std::fs::write(&config, cfg).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut env = Env {
            id,
            root,
            bin_dir,
            bin: b,
            config,
            socket,
            port: 0,
            sshd: None,
            broker: None,
            users: Vec::new(),
            stock_auth: opts.stock_auth,
            broker_env: opts.broker_env,
            pam_service: None,
        };
        if opts.forwarding {
            env.install_pam_service();
        }
        // The groups the sshd config matches on must exist before sshd starts.
        env.ensure_groups();
        env.start_broker();
        env.start_sshd();
        env
    }

    /// This test's sshd name, which is also its PAM service name.
    fn sshd_name(&self) -> String {
        format!("sshd-pst{}", self.id)
    }

    /// A copy of sshd under this test's name (sshd uses its program name as PAM service) with
    /// the module of this build in that service's session stack. Never touches /etc/pam.d/sshd.
    fn install_pam_service(&mut self) {
        let so = self.bin_dir.join("pam_podspawn.so");
        let sshd = self.bin_dir.join(self.sshd_name());
        for (from, to, mode) in [
            (pam_module(), &so, "0644"),
            (PathBuf::from("/usr/sbin/sshd"), &sshd, "0755"),
        ] {
            let out = run(Command::new("install")
                .arg("-m")
                .arg(mode)
                .arg(from)
                .arg(to));
            assert!(
                out.status.success(),
                "install: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let service = PathBuf::from(format!("/etc/pam.d/{}", self.sshd_name()));
        std::fs::write(
            &service,
            format!(
                "# podspawn test {id}: removed when the test ends
@include common-auth
                 @include common-account
@include common-session
                 session required {so} service={name} socket={sock} timeout=20
",
                id = self.id,
                so = so.display(),
                name = self.sshd_name(),
                sock = self.socket.display(),
            ),
        )
        .unwrap();
        self.pam_service = Some(service);
    }

    fn ensure_groups(&self) {
        for g in ["podspawn", "podspawn-users"] {
            let _ = Command::new("groupadd")
                .args(["--system", "-f", g])
                .status();
        }
        if !uzers_exists("podspawn") {
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--gid",
                    "podspawn",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "podspawn",
                ])
                .status();
        }
    }

    pub fn podspawn(&self, args: &[&str]) -> Output {
        run(Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(args))
    }

    pub fn start_broker(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("broker.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["serve", "--listen"])
            .arg(&self.socket)
            .env("PODSPAWN_LOG", "debug")
            .env_remove("JOURNAL_STREAM")
            .envs(self.broker_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.broker = Some(child);
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "broker did not start: {}",
                self.broker_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's pid (while it runs).
    pub fn broker_pid(&self) -> Option<u32> {
        self.broker.as_ref().map(|c| c.id())
    }

    /// uid and gid of a host account.
    pub fn ids(name: &str) -> (u32, u32) {
        let id = |flag: &str| -> u32 {
            let o = run(Command::new("id").arg(flag).arg(name));
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        (id("-u"), id("-g"))
    }

    /// A command run as `user` (its uid, gid and supplementary groups), like sshd would.
    pub fn as_user(user: &str, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .arg("--init-groups")
            .arg("--")
            .arg(program);
        c
    }

    /// SIGTERM (or SIGKILL) the broker and wait for it.
    pub fn stop_broker(&mut self, kill: bool) {
        if let Some(mut c) = self.broker.take() {
            let sig = if kill { "-KILL" } else { "-TERM" };
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn audit_path(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }

    pub fn broker_log(&self) -> String {
        std::fs::read_to_string(self.root.join("broker.log")).unwrap_or_default()
    }

    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.root.join("sshd.log")).unwrap_or_default()
    }

    fn start_sshd(&mut self) {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let hostkey = self.root.join("ssh_host_ed25519_key");
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey));
        assert!(out.status.success());
        for attempt in 0..5 {
            self.port = free_port();
            let auth = if self.stock_auth {
                "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n"
            } else {
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            };
            // podspawn's own Match block, as server-setup writes it, with this build, this
            // test's config (for auth-keys) and broker socket (for spawn).
            let binary = format!("{} --config {}", self.bin.display(), self.config.display());
            let socket = self.socket.display().to_string();
            let mut dropin =
                podspawn::core::sshd_config::render_dropin_with(&binary, Some(&socket));
            if self.pam_service.is_some() {
                dropin = format!(
                    "{}\n{dropin}",
                    podspawn::core::sshd_config::render_forwarding_dropin()
                );
            }
            let conf = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {r}/sshd.pid\nUsePAM yes\n\
                 {auth}PubkeyAuthentication yes\n\
                 PrintMotd no\nLogLevel VERBOSE\nSubsystem sftp /usr/lib/openssh/sftp-server\nMaxStartups 100:30:200\nMaxSessions 50\n\
                 {dropin}",
                port = self.port,
                hk = hostkey.display(),
                r = self.root.display(),
            );
            let path = self.root.join("sshd_config");
            std::fs::write(&path, conf).unwrap();
            let t = run(Command::new("/usr/sbin/sshd")
                .arg("-t")
                .arg("-f")
                .arg(&path));
            assert!(
                t.status.success(),
                "sshd -t: {}",
                String::from_utf8_lossy(&t.stderr)
            );
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.root.join("sshd.log"))
                .unwrap();
            let program = match &self.pam_service {
                Some(_) => self.bin_dir.join(self.sshd_name()),
                None => PathBuf::from("/usr/sbin/sshd"),
            };
            let child = Command::new(program)
                .args(["-D", "-e", "-f"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            self.sshd = Some(child);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(mut c) = self.sshd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            eprintln!("sshd attempt {attempt} failed: {}", self.sshd_log());
        }
        panic!("sshd did not start");
    }

    /// Registers a fresh user with a fresh key through `podspawn add-user`.
    pub fn add_user(&mut self) -> User {
        let n = self.users.len();
        let name = format!("pst{}u{n}", self.id);
        self.add_named_user(&name)
    }

    /// Registers `name` (which should start with `pst` and this env's id) with a fresh key.
    pub fn add_named_user(&mut self, name: &str) -> User {
        let name = name.to_string();
        let kdir = self.root.join("client");
        std::fs::create_dir_all(&kdir).unwrap();
        let key = kdir.join(&name);
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key));
        assert!(out.status.success());
        let pubkey = std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        self.users.push(name.clone());
        let out = self.podspawn(&["add-user", &name, "--key", &pubkey]);
        assert!(
            out.status.success(),
            "add-user: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        User { name, key, pubkey }
    }

    pub fn ssh_cmd(&self, user: &User) -> Command {
        let mut c = Command::new("ssh");
        c.args(SSH_OPTIONS)
            .args(["-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=5"])
            .arg("-i")
            .arg(&user.key)
            .arg("-p")
            .arg(self.port.to_string());
        c
    }

    /// `ssh user@127.0.0.1 <cmd>`
    pub fn ssh(&self, user: &User, cmd: &str) -> Output {
        let mut c = self.ssh_cmd(user);
        c.arg(format!("{}@127.0.0.1", user.name))
            .arg(cmd)
            .stdin(Stdio::null());
        run(&mut c)
    }

    /// Options usable by scp/sftp/rsync -e.
    pub fn ssh_opts(&self, user: &User) -> Vec<String> {
        let mut v: Vec<String> = SSH_OPTIONS.iter().map(|s| s.to_string()).collect();
        v.push("-i".into());
        v.push(user.key.display().to_string());
        v
    }

    pub fn sessions(&self) -> serde_json::Value {
        let out = self.podspawn(&["list", "--json"]);
        assert!(
            out.status.success(),
            "list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn session_of<'a>(
        list: &'a serde_json::Value,
        user: &str,
    ) -> Option<&'a serde_json::Value> {
        list.as_array()?.iter().find(|s| s["user"] == user)
    }

    /// Containers (by id) with the podspawn-user label of `user`.
    pub fn networks_of(&self, user: &str) -> Vec<String> {
        let out = run(Command::new("docker")
            .args(["network", "ls", "-q", "--filter"])
            .arg(format!("label=podspawn-user={user}")));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The user's session containers (by id): not the network-namespace holder.
    pub fn containers_of(&self, user: &str) -> Vec<String> {
        self.labelled_containers(user, false)
    }

    /// The user's network-namespace holder (by id), if there is one.
    pub fn holders_of(&self, user: &str) -> Vec<String> {
        self.labelled_containers(user, true)
    }

    fn labelled_containers(&self, user: &str, holders: bool) -> Vec<String> {
        let out = run(Command::new("docker")
            .args(["ps", "-a", "--no-trunc", "--format"])
            .arg("{{.ID}} {{.Label \"podspawn-role\"}}")
            .arg("--filter")
            .arg(format!("label=podspawn-user={user}")));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (id, role) = l.split_once(' ').unwrap_or((l, ""));
                ((role.trim() == "netns") == holders).then(|| id.to_string())
            })
            .collect()
    }

    /// Writes `user`'s overrides file (`users_dir/<user>.yaml`: image, shell, mode, ...).
    pub fn set_overrides(&self, user: &User, yaml: &str) {
        std::fs::create_dir_all(self.root.join("users")).unwrap();
        std::fs::write(self.root.join(format!("users/{}.yaml", user.name)), yaml).unwrap();
    }

    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}\n--- broker log ---\n{}\n--- sshd log ---\n{}",
                self.broker_log(),
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn uzers_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_broker(true);
        for u in &self.users {
            for id in self.containers_of(u).into_iter().chain(self.holders_of(u)) {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &id])
                    .stdout(Stdio::null())
                    .status();
            }
            for id in self.networks_of(u) {
                let _ = Command::new("docker")
                    .args(["network", "rm", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = Command::new("pkill")
                .args(["-KILL", "-u", u])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("userdel")
                .args(["-r", "-f", u])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("groupdel")
                .arg(u)
                .stderr(Stdio::null())
                .status();
        }
        if let Some(p) = &self.pam_service {
            let _ = std::fs::remove_file(p);
        }
        if std::env::var_os("PODSPAWN_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        let _ = std::fs::remove_dir_all(&self.bin_dir);
    }
}

pub fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

pub fn random_file(path: &Path, mib: usize) {
    let out = run(Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", path.display()))
        .arg("bs=1M")
        .arg(format!("count={mib}"))
        .arg("status=none"));
    assert!(out.status.success());
}
