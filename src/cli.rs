//! Command-line interface: clap definitions and dispatch.
use crate::core::config::{Config, DEFAULT_CONFIG_PATH};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "podspawn",
    version,
    about = "Per-user Docker containers behind the host's own OpenSSH"
)]
pub struct Cli {
    /// Server configuration file.
    #[arg(long, global = true, env = "PODSPAWN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// sshd's AuthorizedKeysCommand: print the keys of a registered user (`auth-keys %u %t %k`).
    AuthKeys {
        user: String,
        key_type: Option<String>,
        key: Option<String>,
    },
    /// The forced command sshd runs for a podspawn user; attaches the session to the user's container.
    Spawn {
        /// The SSH user; optional: spawn takes the user from its uid, and a name given here must
        /// match it.
        #[arg(long)]
        user: Option<String>,
        /// Project to use instead of $PODSPAWN_PROJECT.
        #[arg(long)]
        project: Option<String>,
        /// Broker socket.
        #[arg(long, default_value = crate::core::config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// How long to wait for the podspawn service to hand out the session before giving up
        /// with one line (a new container, or an image pull, takes most of it).
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_interval)]
        timeout: std::time::Duration,
    },
    /// The broker: the only process that talks to Docker and owns the state database.
    Serve {
        /// Listen on this unix socket instead of a socket passed by systemd (LISTEN_FDS).
        #[arg(long)]
        listen: Option<PathBuf>,
    },
    /// Set up sshd, accounts, groups, directories and units for a tarball install (idempotent).
    ServerSetup(crate::commands::server_setup::ServerSetupArgs),
    /// Check the installation and print the command that fixes each problem.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Register a user's SSH keys and set up the host account.
    AddUser(crate::commands::user::AddUserArgs),
    /// Unregister a user.
    RemoveUser(crate::commands::user::RemoveUserArgs),
    /// List registered users.
    ListUsers,
    /// List sessions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// End a session and remove its container (and network): `alice` or `alice@project`.
    Stop {
        target: String,
        /// Also delete the user's persistent home (named sessions).
        #[arg(long)]
        purge: bool,
    },
    /// Session counts, connections, containers and cleanup totals.
    Status {
        /// Prometheus text format.
        #[arg(long)]
        prometheus: bool,
    },
    /// Expire grace periods, enforce ttl and max lifetime, reconcile orphans.
    Cleanup {
        /// Keep running, one pass every --interval (sd-notify READY, STATUS, WATCHDOG).
        #[arg(long)]
        daemon: bool,
        /// Time between passes with --daemon, e.g. 60s.
        #[arg(long, default_value = "60s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Check an image for what SSH sessions need (shell, sftp-server, locale, ...).
    VerifyImage { image: String },
    /// Register a project: clone its repository and build the image of its Podfile.
    AddProject {
        /// Project name (lowercase letters, digits, '_', '-'; starts with a letter).
        name: String,
        /// Repository URL: https://, ssh://, git://, user@host:path or file:///absolute/path.
        #[arg(long)]
        repo: String,
        /// Branch to follow (default: the repository's default branch).
        #[arg(long)]
        branch: Option<String>,
    },
    /// Pull a project's repository and rebuild its image if the Podfile or base image changed.
    UpdateProject { name: String },
    /// Unregister a project and delete its checkout.
    RemoveProject {
        name: String,
        /// Also remove the project's images now (otherwise cleanup removes them once unused).
        #[arg(long)]
        purge: bool,
    },
    /// List registered projects.
    ListProjects {
        #[arg(long)]
        json: bool,
    },
    /// Print the ~/.ssh/config blocks a user needs for `ssh <project>.pod`.
    SshConfig {
        /// The SSH user.
        user: String,
        /// The server's name as the client reaches it (default: this host's name).
        #[arg(long)]
        host: Option<String>,
        /// The server's SSH port, if not 22.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Answer one HTTP request with the Prometheus metrics (socket-activated, Accept=yes).
    MetricsHttp {
        /// Serve on this TCP address instead (without systemd).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Write man pages and shell completions generated from these definitions (for packaging).
    #[command(hide = true)]
    GenAssets {
        /// Output directory (man/ and completions/ are created in it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print podspawn's sshd Match block for this build and --config (for private sshd instances:
    /// the try-out, benchmarks).
    #[command(hide = true)]
    SshdBlock {
        /// The podspawn binary sshd should run.
        #[arg(long)]
        binary: PathBuf,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Check a configuration file; exits non-zero and names the file, line and key on errors.
    Validate { file: Option<PathBuf> },
    /// Print the default configuration, with a comment for every key.
    Default,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // auth-keys must never print anything but keys, whatever sshd passes.
            if std::env::args().any(|a| a == "auth-keys") {
                crate::host::logging::init_quiet("auth-keys", None);
                tracing::error!("auth-keys: bad arguments: {e}");
                return ExitCode::SUCCESS;
            }
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::SshdBlock { binary } => {
            let cfg = match load_config(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match sshd_block(&cli.config, &cfg, &binary) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("podspawn: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::AuthKeys {
            user,
            key_type,
            key,
        } => crate::roles::auth_keys::run(&cli.config, &user, key_type.as_deref(), key.as_deref()),
        Command::Spawn {
            user,
            project,
            socket,
            timeout,
        } => crate::roles::spawn::run(user.as_deref(), project, &socket, timeout),
        Command::Serve { listen } => {
            let cfg = match load_config(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::host::logging::init_daemon("podspawn", &cfg);
            crate::roles::broker::run(cfg, listen)
        }
        Command::ServerSetup(args) => admin(&cli.config, |cfg| {
            crate::commands::server_setup::server_setup(cfg, &args)
        }),
        Command::Doctor(args) => {
            crate::host::logging::init_terminal();
            // An unreadable or invalid config is one of the things doctor reports (with its fix),
            // so fall back to the defaults instead of stopping here.
            let cfg = Config::load(&cli.config).unwrap_or_else(|_| Config {
                path: cli.config.clone(),
                ..Config::default()
            });
            crate::commands::doctor::doctor(&cfg, &args)
        }
        Command::AddUser(args) => admin(&cli.config, |cfg| {
            crate::commands::user::add_user(cfg, &args)
        }),
        Command::RemoveUser(args) => admin(&cli.config, |cfg| {
            crate::commands::user::remove_user(cfg, &args)
        }),
        Command::ListUsers => admin(&cli.config, crate::commands::user::list_users),
        Command::List { json } => {
            admin(&cli.config, |cfg| crate::commands::session::list(cfg, json))
        }
        Command::Stop { target, purge } => admin(&cli.config, |cfg| {
            let (user, project) = crate::core::names::parse_target(&target)?;
            crate::commands::session::stop(cfg, &user, &project, purge)
        }),
        Command::AddProject { name, repo, branch } => admin(&cli.config, |cfg| {
            crate::commands::project::add(cfg, &name, &repo, branch.as_deref())
        }),
        Command::UpdateProject { name } => admin(&cli.config, |cfg| {
            crate::commands::project::update(cfg, &name)
        }),
        Command::RemoveProject { name, purge } => admin(&cli.config, |cfg| {
            crate::commands::project::remove(cfg, &name, purge)
        }),
        Command::ListProjects { json } => {
            admin(&cli.config, |cfg| crate::commands::project::list(cfg, json))
        }
        Command::SshConfig { user, host, port } => admin(&cli.config, |cfg| {
            crate::commands::project::ssh_config(cfg, &user, host.as_deref(), port)
        }),
        Command::Status { prometheus } => admin(&cli.config, |cfg| {
            crate::commands::session::status(cfg, prometheus)
        }),
        Command::Cleanup { daemon, interval } => match load_config(&cli.config) {
            Ok(cfg) => crate::roles::cleanup::run(cfg, daemon, interval),
            Err(code) => code,
        },
        Command::VerifyImage { image } => {
            crate::host::logging::init_terminal();
            match config_or_default(&cli.config) {
                Ok(cfg) => crate::commands::verify_image::run(&image, cfg.helper.path.as_deref()),
                Err(code) => code,
            }
        }
        Command::MetricsHttp { listen } => match load_config(&cli.config) {
            Ok(cfg) => crate::roles::metrics_http::run(&cfg, listen),
            Err(code) => code,
        },
        Command::GenAssets { out } => match gen_assets(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("podspawn: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config {
            action: ConfigAction::Default,
        } => {
            print!("{}", crate::core::config::default_config_yaml());
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Validate { file },
        } => {
            let path = file.unwrap_or(cli.config);
            match Config::load(&path) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("podspawn: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// podspawn.1, podspawn-<sub>.1 for every visible subcommand, and bash/zsh/fish completions.
fn gen_assets(out: &Path) -> Result<(), String> {
    use clap::CommandFactory;
    let man = out.join("man");
    let comp = out.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let cmd = Cli::command();
    let write_man = |name: &str, c: clap::Command| -> Result<(), String> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .render(&mut buf)
            .map_err(|e| format!("man page {name}: {e}"))?;
        let path = man.join(format!("{name}.1"));
        std::fs::write(&path, buf).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write_man("podspawn", cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("podspawn-{}", sub.get_name());
        write_man(&name, sub.clone().name(name.clone()))?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "podspawn"),
        (clap_complete::Shell::Zsh, "_podspawn"),
        (clap_complete::Shell::Fish, "podspawn.fish"),
    ] {
        let mut c = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut c, "podspawn", &mut buf);
        let path = comp.join(file);
        std::fs::write(&path, buf).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The Match block for `binary`, with `--config` in its commands when the config is not the default.
fn sshd_block(config: &Path, cfg: &Config, binary: &Path) -> Result<String, String> {
    let mut b = crate::core::sshd_config::validate_binary_path(binary)?;
    if config != Path::new(DEFAULT_CONFIG_PATH) {
        let c = crate::core::sshd_config::validate_binary_path(config)
            .map_err(|e| format!("--config: {e}"))?;
        b = format!("{b} --config {c}");
    }
    let socket = crate::core::sshd_config::socket_arg(cfg)?;
    let dropin = crate::core::sshd_config::with_accept_env(
        &crate::core::sshd_config::render_dropin_with(&b, socket.as_deref()),
        &cfg.session.accept_env,
    );
    Ok(dropin
        .lines()
        .skip_while(|l| !l.starts_with("Match "))
        .map(|l| format!("{l}\n"))
        .collect())
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::core::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("the interval must be more than 0, e.g. 60s".into());
    }
    Ok(d)
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("podspawn: {e}");
        ExitCode::FAILURE
    })
}

/// The config at `path`, or the defaults when there is no file yet.
fn config_or_default(path: &Path) -> Result<Config, ExitCode> {
    if path.exists() {
        load_config(path)
    } else {
        Ok(Config {
            path: path.to_path_buf(),
            ..Config::default()
        })
    }
}

/// Admin commands print to the terminal. `add-user` may run before any config exists.
fn admin(path: &Path, f: impl FnOnce(&Config) -> Result<(), String>) -> ExitCode {
    crate::host::logging::init_terminal();
    let cfg = match config_or_default(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match f(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podspawn: {e}");
            ExitCode::FAILURE
        }
    }
}
