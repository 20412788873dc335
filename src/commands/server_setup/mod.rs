//! `podspawn server-setup`: the install-time setup of the packages, for tarball installs (and the
//! package scripts). Idempotent; `--dry-run` prints the plan and changes nothing.
//!
//! 1. Must run as root; `sshd -t -f <config>` must pass before anything is touched.
//! 2. System identities (`podspawn`, `podspawn-users`), podspawn's directories with the modes of
//!    `systemd/tmpfiles.d/podspawn.conf`, the default configuration (root:podspawn 0640) if
//!    missing, and the owner and mode of existing key files (root:podspawn 0640) and state files.
//! 3. sshd: `sshd_config.d/10-podspawn.conf` when the main file has a top-level `Include` that
//!    covers it, otherwise a marked block before the first `Match` of the main file. TCP
//!    forwarding (see [`forwarding`]): `sshd_config.d/09-podspawn-forwarding.conf` (or its lines
//!    at the top of the marked block) only where pam_podspawn.so is in place, removed elsewhere.
//! 4. `sshd -t` again, and the effective settings of a member of podspawn-users with
//!    `sshd -T -C user=…`; any failure restores every sshd file byte for byte.
//! 5. `systemctl reload` only when something changed.
//!
//! sshd semantics this relies on (checked with OpenSSH 9.2): for most keywords sshd keeps the
//! first value it reads, and the values of matching `Match` blocks replace global ones. So a
//! global `AuthorizedKeysCommand` (anywhere, even before the Include, or on the command line with
//! `-o`) does not affect podspawn users, while an earlier `Match` block that matches them
//! (e.g. `Match all` in a `05-…` drop-in) does. The text analysis below mirrors that, and
//! `sshd -T -C user=<member>` is the final word.
use crate::core::config::Config;
use crate::core::sshd_config::*;
use crate::host::accounts;
use crate::host::fs_policy::{check_chain, path_chain};
use crate::host::sshd::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

mod files;
pub mod forwarding;
mod sshd_files;

pub use files::wanted_dirs;
use files::*;
use sshd_files::*;

/// Where units go on tarball installs (packages put them in /usr/lib/systemd/system).
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where the packages install the units.
pub const PACKAGE_UNIT_DIRS: &[&str] = &["/usr/lib/systemd/system", "/lib/systemd/system"];

/// The unit files shared by all packages, embedded for tarball installs.
pub const UNITS: &[(&str, &str)] = &[
    (
        "podspawn.socket",
        include_str!("../../../systemd/podspawn.socket"),
    ),
    (
        "podspawn.service",
        include_str!("../../../systemd/podspawn.service"),
    ),
    (
        "podspawn-cleanup.service",
        include_str!("../../../systemd/podspawn-cleanup.service"),
    ),
    (
        "podspawn-cleanup-once.service",
        include_str!("../../../systemd/podspawn-cleanup-once.service"),
    ),
    (
        "podspawn-cleanup.timer",
        include_str!("../../../systemd/podspawn-cleanup.timer"),
    ),
    (
        "podspawn-metrics.socket",
        include_str!("../../../systemd/podspawn-metrics.socket"),
    ),
    (
        "podspawn-metrics@.service",
        include_str!("../../../systemd/podspawn-metrics@.service"),
    ),
];

/// Units `server-setup` enables (the packages' presets do the same).
pub const ENABLED_UNITS: &[&str] = &["podspawn.socket", "podspawn-cleanup.service"];

#[derive(Debug, Clone, clap::Args)]
pub struct ServerSetupArgs {
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The main sshd configuration file.
    #[arg(long, value_name = "PATH", default_value = SSHD_CONFIG)]
    pub sshd_config: PathBuf,
    /// systemd unit of sshd to reload (default: ssh or sshd, whichever is active).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// The podspawn binary sshd runs as AuthorizedKeysCommand (default: this executable). Its
    /// path must be root-owned and not group- or world-writable all the way up, or sshd refuses it.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Do not reload sshd (or start units); print how to do it instead.
    #[arg(long)]
    pub no_reload: bool,
    /// Check sshd's effective settings for this account (default: a member of podspawn-users).
    #[arg(long, value_name = "USER")]
    pub probe_user: Option<String>,
    /// Do not install systemd units (by default they are written to /etc/systemd/system and
    /// podspawn.socket and podspawn-cleanup.service enabled, unless a package installed them).
    #[arg(long)]
    pub no_units: bool,
    /// Only bring the registered users (key files) to the state add-user leaves them in:
    /// accounts, podspawn-users, homes, key file owners and modes (see src/reconcile.rs).
    #[arg(long)]
    pub users: bool,
    /// Only turn TCP forwarding (ssh -L/-R/-D) for podspawn users on or off, from
    /// security.port_forwarding and whether pam_podspawn.so is in sshd's PAM session stack
    /// (writes or removes sshd_config.d/09-podspawn-forwarding.conf); prints one line.
    #[arg(long, conflicts_with = "users")]
    pub forwarding: bool,
    /// The PAM configuration directory (tests).
    #[arg(long, value_name = "DIR", default_value = crate::host::pam::PAM_DIR, hide = true)]
    pub pam_dir: PathBuf,
}

impl Default for ServerSetupArgs {
    fn default() -> Self {
        ServerSetupArgs {
            dry_run: false,
            sshd_config: PathBuf::from(SSHD_CONFIG),
            service_name: None,
            binary: None,
            no_reload: false,
            probe_user: None,
            no_units: false,
            users: false,
            forwarding: false,
            pam_dir: PathBuf::from(crate::host::pam::PAM_DIR),
        }
    }
}

// Entry points.

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// Every change made (or, with --dry-run, planned), in order.
    pub changes: Vec<String>,
    pub notes: Vec<String>,
    /// An sshd file was written.
    pub sshd_changed: bool,
    /// How sshd's settings reach podspawn users: the drop-in path or the main file.
    pub sshd_target: PathBuf,
    /// The account whose effective settings were checked with `sshd -T -C`.
    pub probed_user: Option<String>,
    pub reloaded: bool,
}

/// `podspawn server-setup`.
pub fn server_setup(cfg: &Config, args: &ServerSetupArgs) -> Result<(), String> {
    let mut out = std::io::stdout();
    if args.users {
        return users_only(cfg, args.dry_run, &mut out);
    }
    if args.forwarding {
        return forwarding_only(cfg, args, &mut out).map(|_| ());
    }
    run(cfg, args, &mut out).map(|_| ())
}

/// `server-setup --users`: only the registered users.
pub fn users_only(cfg: &Config, dry_run: bool, out: &mut dyn Write) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "server-setup --users changes accounts and /etc/podspawn: run it with sudo".into(),
        );
    }
    let opts = crate::commands::reconcile::Options {
        dry_run,
        prefix: "podspawn: ",
        identities: true,
    };
    let report = crate::commands::reconcile::reconcile(cfg, opts, out);
    users_result(&report)
}

fn users_result(report: &crate::commands::reconcile::Report) -> Result<(), String> {
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} change(s) to registered users could not be applied (listed above); the rest was \
             done",
            report.problems.len()
        ))
    }
}

/// What `server-setup --forwarding` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingReport {
    /// Forwarding is on (effective for the probed member, when there is one).
    pub on: bool,
    /// The line printed.
    pub line: String,
    /// An sshd file was written or removed.
    pub changed: bool,
    pub reloaded: bool,
}

/// `server-setup --forwarding`: only writes or removes the forwarding drop-in (or the forwarding
/// lines of the marked block), validates like a full run, reloads sshd when something changed,
/// and prints one line. Idempotent; the packages run it after pam-auth-update.
pub fn forwarding_only(
    cfg: &Config,
    args: &ServerSetupArgs,
    out: &mut dyn Write,
) -> Result<ForwardingReport, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "server-setup --forwarding changes sshd's configuration: run it with sudo".into(),
        );
    }
    let config = &args.sshd_config;
    if !config.is_absolute() {
        return Err(format!(
            "--sshd-config {} must be an absolute path",
            config.display()
        ));
    }
    let sshd = current_sshd_valid(config)?;
    let config_dir = config.parent().unwrap_or(Path::new("/")).to_path_buf();
    let dropin = config_dir.join(DROPIN_DIR).join(DROPIN_NAME);
    let fwd_dropin = config_dir.join(DROPIN_DIR).join(FORWARDING_DROPIN_NAME);
    let main_text = read_main_config(config)?;
    let (without_block, _) =
        remove_block(&main_text).map_err(|e| format!("{}: {e}", config.display()))?;
    let dropin_mode = include_covering(&without_block, &dropin).is_some() && dropin.is_file();
    let block_mode = !dropin_mode && !block_ranges(&main_text).is_empty();
    let mut decision = forwarding_decision(cfg, &sshd, config, args)?;
    if decision.on && !dropin_mode && !block_mode {
        decision = forwarding::Decision {
            on: false,
            reason: format!(
                "podspawn's sshd settings are not installed ({} or a podspawn block in {})",
                dropin.display(),
                config.display()
            ),
            fix: Some("sudo podspawn server-setup".into()),
        };
        if cfg.security.port_forwarding == crate::core::config::PortForwarding::On {
            return Err(format!(
                "{}\n(nothing was changed by this run)",
                decision.required_error()
            ));
        }
    }
    let on = decision.on;
    let mut changes = Vec::new();
    if !(on && dropin_mode) {
        plan_remove(
            &mut changes,
            &fwd_dropin,
            &format!("remove {}", fwd_dropin.display()),
        )?;
    }
    if dropin_mode && on {
        plan_write(
            &mut changes,
            &fwd_dropin,
            render_forwarding_dropin(),
            &config_dir,
            &format!("write {}", fwd_dropin.display()),
        )?;
    }
    if block_mode {
        let new = set_block_forwarding(&main_text, on)
            .map_err(|e| format!("{}: {e}", config.display()))?;
        plan_write(
            &mut changes,
            config,
            new,
            &config_dir,
            &format!(
                "set the forwarding lines of podspawn's block in {}",
                config.display()
            ),
        )?;
    }
    let changed = !changes.is_empty();
    let mut report = ForwardingReport {
        on,
        line: decision.line(),
        changed,
        reloaded: false,
    };
    if args.dry_run {
        let what: Vec<String> = changes.iter().map(|c| c.what.clone()).collect();
        report.line = if what.is_empty() {
            format!("{} (nothing to change)", report.line)
        } else {
            format!("{} (would {})", report.line, what.join(", "))
        };
        let _ = writeln!(out, "{}", report.line);
        return Ok(report);
    }
    let (n, applied) = apply_changes(&changes);
    let undo = |e: String| -> String {
        let msgs = rollback(&changes, n, None);
        if msgs.is_empty() {
            e
        } else {
            format!("{e}\nrolled back:\n  {}", msgs.join("\n  "))
        }
    };
    applied.map_err(undo)?;
    if changed {
        sshd_test(&sshd, config).map_err(|e| {
            undo(format!(
                "sshd rejects the new configuration (`{} -t -f {}`): {e}",
                sshd.display(),
                config.display()
            ))
        })?;
    }
    if let Some(user) = args.probe_user.clone().or_else(podspawn_member) {
        let dump = sshd_dump(&sshd, config, Some(&user))
            .map_err(|e| format!("`sshd -T -C user={user}` failed: {e}"))?;
        if let Err(e) = forwarding_effective(&parse_sshd_t(&dump), &user, on) {
            if !on {
                // Forwarding on without the module: something other than podspawn's lines turns
                // it on. Putting podspawn's forwarding lines back would not make it safer.
                return Err(if changed {
                    format!("{e}\n(podspawn's forwarding lines stay removed)")
                } else {
                    e
                });
            }
            if cfg.security.port_forwarding == crate::core::config::PortForwarding::On {
                return Err(undo(e));
            }
            // Auto: forwarding cannot be on; nothing of ours turns it on.
            let _ = undo(String::new());
            report.on = false;
            report.line = forwarding::Decision {
                on: false,
                reason: e,
                fix: None,
            }
            .line();
        }
    }
    if changed {
        match reload_sshd(&sshd, config, args)? {
            Reload::Done(_) => report.reloaded = true,
            Reload::Note(n) => report.line = format!("{}; {n}", report.line),
        }
    }
    let _ = writeln!(out, "{}", report.line);
    Ok(report)
}

/// The binary to configure: `--binary` or this executable; checked like sshd checks it.
pub fn choose_binary(arg: Option<&Path>) -> Result<String, String> {
    let path = match arg {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find this executable: {e}; pass --binary PATH"))?;
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.starts_with("podspawn") {
                return Err(format!(
                    "this executable ({}) does not look like podspawn; pass --binary PATH",
                    exe.display()
                ));
            }
            exe
        }
    };
    let s = validate_binary_path(&path)?;
    let chain = path_chain(&path).map_err(|e| format!("cannot use {s} as the binary: {e}"))?;
    check_chain(&chain).map_err(|p| {
        format!(
            "cannot use {s} as sshd's AuthorizedKeysCommand: {}; fix: {} (or install podspawn \
             under /usr/local/bin and pass --binary)",
            p.detail, p.fix
        )
    })?;
    Ok(s)
}

/// Does the work of `server-setup`, printing to `out`.
pub fn run(
    cfg: &Config,
    args: &ServerSetupArgs,
    out: &mut dyn Write,
) -> Result<SetupReport, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "server-setup changes accounts, /etc/podspawn and sshd's configuration: run it with \
             sudo"
                .into(),
        );
    }
    let binary = choose_binary(args.binary.as_deref())?;
    let socket = socket_arg(cfg)?;
    let config = &args.sshd_config;
    if !config.is_absolute() {
        return Err(format!(
            "--sshd-config {} must be an absolute path",
            config.display()
        ));
    }
    if let Some(u) = &args.probe_user {
        if accounts::lookup(u).is_none() {
            return Err(format!("--probe-user {u}: no such account"));
        }
        if !accounts::is_member(u, accounts::USERS_GROUP) {
            return Err(format!(
                "--probe-user {u} is not in {}, so it says nothing about podspawn's settings",
                accounts::USERS_GROUP
            ));
        }
    }
    let sshd = current_sshd_valid(config)?;

    let decision = forwarding_decision(cfg, &sshd, config, args)?;

    let dry = args.dry_run;
    if dry {
        let _ = writeln!(out, "server-setup --dry-run: nothing is changed");
    }
    let mut log = Log {
        out,
        dry,
        changes: Vec::new(),
        notes: Vec::new(),
    };
    let _ = writeln!(log.out, "podspawn files and accounts:");
    filesystem_steps(cfg, &mut log)?;
    let _ = writeln!(log.out, "registered users:");
    let users = crate::commands::reconcile::reconcile(
        cfg,
        crate::commands::reconcile::Options {
            dry_run: dry,
            prefix: "  ",
            identities: false,
        },
        log.out,
    );
    log.changes.extend(users.changes.iter().cloned());
    log.notes.extend(users.left.iter().cloned());
    log.notes.extend(users.problems.iter().cloned());

    // sshd.
    let _ = writeln!(log.out, "sshd ({}):", config.display());
    let config_dir = config.parent().unwrap_or(Path::new("/")).to_path_buf();
    let dropin_dir = config_dir.join(DROPIN_DIR);
    let dropin = dropin_dir.join(DROPIN_NAME);
    let fwd_dropin = dropin_dir.join(FORWARDING_DROPIN_NAME);
    let main_text = read_main_config(config)?;
    let (without_block, _) =
        remove_block(&main_text).map_err(|e| format!("{}: {e}", config.display()))?;
    let covering = include_covering(&without_block, &dropin);
    let mut changes = Vec::new();
    let mut created_dir = None;
    // Forwarding off: the forwarding drop-in goes first (and is never put back by a rollback).
    if !(decision.on && covering.is_some()) {
        plan_remove(
            &mut changes,
            &fwd_dropin,
            &format!("remove {} (TCP forwarding off)", fwd_dropin.display()),
        )?;
    }
    let target = if let Some(line) = covering {
        let _ = writeln!(
            log.out,
            "  {}:{line} includes {}",
            config.display(),
            dropin.display()
        );
        if !dropin_dir.exists() {
            created_dir = Some(dropin_dir.clone());
        }
        plan_write(
            &mut changes,
            &dropin,
            crate::core::sshd_config::with_accept_env(
                &render_dropin_with(&binary, socket.as_deref()),
                &cfg.session.accept_env,
            ),
            &config_dir,
            &format!("write {}", dropin.display()),
        )?;
        plan_write(
            &mut changes,
            config,
            without_block,
            &config_dir,
            &format!(
                "remove the old podspawn block from {} (the drop-in replaces it)",
                config.display()
            ),
        )?;
        if decision.on {
            plan_write(
                &mut changes,
                &fwd_dropin,
                render_forwarding_dropin(),
                &config_dir,
                &format!("write {} (TCP forwarding on)", fwd_dropin.display()),
            )?;
        }
        dropin.clone()
    } else {
        let new = insert_block(
            &main_text,
            &crate::core::sshd_config::with_accept_env(
                &render_block_forwarding(&binary, socket.as_deref(), decision.on),
                &cfg.session.accept_env,
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        plan_write(
            &mut changes,
            config,
            new,
            &config_dir,
            &format!(
                "write podspawn's block into {} (before its first Match; it has no Include for \
                 {})",
                config.display(),
                dropin_dir.display()
            ),
        )?;
        config.clone()
    };
    for c in &changes {
        log.change(c.what.clone());
    }
    let _ = writeln!(log.out, "  {}", decision.line());
    let sshd_changed = !changes.is_empty();

    let mut report = SetupReport {
        sshd_changed,
        sshd_target: target.clone(),
        ..SetupReport::default()
    };

    if dry {
        if let Some(c) = changes.iter().find(|c| c.path == target) {
            let text = String::from_utf8_lossy(&c.new);
            if target == dropin {
                let _ = writeln!(log.out, "  --- {} ---\n{text}  ---", dropin.display());
            } else {
                let _ = writeln!(
                    log.out,
                    "  --- block ---\n{}  ---",
                    crate::core::sshd_config::with_accept_env(
                        &render_block_forwarding(&binary, socket.as_deref(), decision.on),
                        &cfg.session.accept_env,
                    )
                );
            }
        }
        let overlay = Overlay {
            base: &RealFs,
            files: changes
                .iter()
                .map(|c| (c.path.clone(), String::from_utf8_lossy(&c.new).into_owned()))
                .collect(),
        };
        let new_main = overlay.read(config).unwrap_or_default();
        let flat = flatten(config, &overlay)?;
        let managed = managed_predicate(dropin.clone(), config.clone(), block_ranges(&new_main));
        let rep = analyze(&flat.directives, &managed);
        if rep.ours.is_none() {
            log.note("sshd would not read podspawn's settings (check the Include lines)".into());
        }
        for d in rep.definite() {
            log.note(format!(
                "would fail: {} shadows podspawn's AuthorizedKeysCommand",
                d.describe()
            ));
        }
        if sshd_changed {
            log.change(format!(
                "reload sshd ({})",
                args.service_name.as_deref().unwrap_or("ssh or sshd")
            ));
        }
        units_step(&mut log, &binary, args)?;
        report.changes = log.changes;
        report.notes = log.notes;
        return Ok(report);
    }

    // Apply, validate, roll back on any failure.
    if let Some(d) = &created_dir {
        crate::host::fs::ensure_dir(d, 0, 0, 0o755)?;
    }
    let (n, applied) = apply_changes(&changes);
    let verdict = applied.and_then(|()| {
        verify(
            &sshd,
            config,
            &dropin,
            &binary,
            socket.as_deref(),
            (cfg.security.port_forwarding, decision.on),
            args,
            &mut log,
        )
    });
    match verdict {
        Ok(probed) => report.probed_user = probed,
        Err(e) => {
            if n == 0 && created_dir.is_none() {
                return Err(format!("{e}\n(no sshd file was changed by this run)"));
            }
            let msgs = rollback(&changes, n, created_dir.as_deref());
            return Err(format!(
                "{e}\nrolled back every sshd file to what it was before:\n  {}",
                msgs.join("\n  ")
            ));
        }
    }

    // Reload.
    if sshd_changed {
        match reload_sshd(&sshd, config, args)? {
            Reload::Done(svc) => {
                log.change(format!("reload {svc}"));
                report.reloaded = true;
            }
            Reload::Note(n) => log.note(n),
        }
    } else {
        let _ = writeln!(log.out, "  sshd is already configured");
    }

    units_step(&mut log, &binary, args)?;
    users_result(&users)?;
    let _ = writeln!(
        log.out,
        "{}",
        if log.changes.is_empty() {
            "server-setup: nothing to change".to_string()
        } else {
            format!("server-setup: {} change(s)", log.changes.len())
        }
    );
    report.changes = log.changes;
    report.notes = log.notes;
    Ok(report)
}

/// What reloading sshd came to.
enum Reload {
    /// `systemctl reload <unit>` ran.
    Done(String),
    /// Not reloaded: why, and how to do it.
    Note(String),
}

/// Reloads sshd after a change (or says why not and how).
fn reload_sshd(sshd: &Path, config: &Path, args: &ServerSetupArgs) -> Result<Reload, String> {
    let pidfile = sshd_dump(sshd, config, None).ok().and_then(|t| {
        parse_sshd_t(&t)
            .get("pidfile")
            .and_then(|v| v.first().cloned())
    });
    let service = args.service_name.clone().or_else(detect_ssh_service);
    if args.no_reload {
        Ok(Reload::Note(format!(
            "sshd was not reloaded (--no-reload): the changes apply after `{}`",
            reload_hint(service.as_deref(), pidfile.as_deref())
        )))
    } else if !systemd_running() {
        Ok(Reload::Note(format!(
            "systemd is not running, so sshd was not reloaded: run `{}`",
            reload_hint(None, pidfile.as_deref())
        )))
    } else if let Some(svc) = service {
        run_systemctl(&["reload", &svc]).map_err(|e| {
            format!(
                "the sshd configuration is written and valid, but reloading failed: {e}; \
                 reload it yourself: sudo systemctl reload {svc}"
            )
        })?;
        Ok(Reload::Done(svc))
    } else {
        Ok(Reload::Note(
            "neither ssh.service nor sshd.service is active: the settings apply when sshd \
             starts (sudo systemctl start ssh, or sshd)"
                .into(),
        ))
    }
}

/// The forwarding decision for this host (sshd's UsePAM, the sshd PAM service under
/// `--pam-dir`); with `security.port_forwarding: on` an error when it cannot be on.
/// sshd's main configuration file, as text.
fn read_main_config(config: &Path) -> Result<String, String> {
    match read_existing(config)? {
        Some((b, ..)) => {
            String::from_utf8(b).map_err(|_| format!("{} is not valid UTF-8", config.display()))
        }
        None => Err(format!("{} does not exist", config.display())),
    }
}

/// The sshd binary, once the current configuration `config` passes `sshd -t`: nothing is changed
/// on top of a configuration sshd already refuses.
fn current_sshd_valid(config: &Path) -> Result<PathBuf, String> {
    let sshd = sshd_or_err()?;
    sshd_test(&sshd, config).map_err(|e| {
        format!(
            "the current sshd configuration is invalid, so nothing was changed (`{} -t -f {}`): \
             {e}",
            sshd.display(),
            config.display()
        )
    })?;
    Ok(sshd)
}

fn forwarding_decision(
    cfg: &Config,
    sshd: &Path,
    config: &Path,
    args: &ServerSetupArgs,
) -> Result<forwarding::Decision, String> {
    let use_pam = sshd_dump(sshd, config, None)
        .ok()
        .map(|t| crate::host::pam::use_pam(&parse_sshd_t(&t)));
    let facts = crate::host::pam::PamFacts::read(&args.pam_dir, use_pam);
    let d = forwarding::decide(cfg.security.port_forwarding, &facts);
    if cfg.security.port_forwarding == crate::core::config::PortForwarding::On && !d.on {
        return Err(format!(
            "{}\n(nothing was changed by this run)",
            d.required_error()
        ));
    }
    Ok(d)
}

/// The effective AllowTcpForwarding of `t` against the decision: `Err` with the message when
/// sshd does not do what was decided. Forwarding expected off but effective: always an error
/// (forwards would open in the host's network namespace).
fn forwarding_effective(
    t: &std::collections::BTreeMap<String, Vec<String>>,
    user: &str,
    on: bool,
) -> Result<(), String> {
    let got = t
        .get("allowtcpforwarding")
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or("(unset)");
    let want = if on { "yes" } else { "no" };
    if got == want {
        return Ok(());
    }
    if on {
        Err(format!(
            "TCP forwarding was to be on, but sshd's effective AllowTcpForwarding for {user} \
             (`sshd -T -C user={user}`) is {got}: an earlier Match block or drop-in sets it"
        ))
    } else {
        Err(format!(
            "sshd's effective AllowTcpForwarding for {user} (`sshd -T -C user={user}`) is {got}, \
             but pam_podspawn.so is not in place: forwards would open in the host's network \
             namespace; remove the AllowTcpForwarding line that applies to podspawn-users (an \
             earlier Match block or drop-in)"
        ))
    }
}

/// After writing: sshd -t, then the effective settings. Returns the probed account.
/// `forwarding`: security.port_forwarding and whether forwarding was decided on.
#[allow(clippy::too_many_arguments)]
fn verify(
    sshd: &Path,
    config: &Path,
    dropin: &Path,
    binary: &str,
    socket: Option<&str>,
    forwarding: (crate::core::config::PortForwarding, bool),
    args: &ServerSetupArgs,
    log: &mut Log,
) -> Result<Option<String>, String> {
    sshd_test(sshd, config).map_err(|e| {
        format!(
            "sshd rejects the new configuration (`{} -t -f {}`): {e}",
            sshd.display(),
            config.display()
        )
    })?;
    let main_text = RealFs.read(config).unwrap_or_default();
    let flat = flatten(config, &RealFs)?;
    let managed = managed_predicate(
        dropin.to_path_buf(),
        config.to_path_buf(),
        block_ranges(&main_text),
    );
    let rep = analyze(&flat.directives, &managed);
    if rep.ours.is_none() {
        return Err(format!(
            "sshd does not read podspawn's settings from {} (the Include of {} does not reach \
             it)",
            dropin.display(),
            config.display()
        ));
    }
    for d in &rep.global {
        if podspawn_command(&d.args).is_some() {
            log.note(format!(
                "{} is an old global podspawn AuthorizedKeysCommand (upstream's server-setup \
                 adds one): podspawn users get the Match block's settings, so it only runs \
                 podspawn for other users; remove it and its AuthorizedKeysCommandUser line",
                d.describe()
            ));
        } else {
            log.note(format!(
                "{} applies to other users only: podspawn users get the Match block's settings",
                d.describe()
            ));
        }
    }
    let member = args.probe_user.clone().or_else(podspawn_member);
    match &member {
        Some(user) => {
            let dump = sshd_dump(sshd, config, Some(user))
                .map_err(|e| format!("`sshd -T -C user={user}` failed: {e}"))?;
            let t = parse_sshd_t(&dump);
            let mm = effective_mismatches_with(
                &t,
                Some(&spawn_command(binary, socket)),
                Some(binary),
                forwarding.1,
            );
            let (required, optional): (Vec<Mismatch>, Vec<Mismatch>) =
                mm.into_iter().partition(|m| m.required);
            // AllowTcpForwarding is judged on its own below, with its own explanation; the
            // other settings first (a Match block that shadows podspawn's is the root cause).
            let required: Vec<Mismatch> = required
                .into_iter()
                .filter(|m| m.keyword != "allowtcpforwarding")
                .collect();
            if !required.is_empty() {
                return Err(format!(
                    "for podspawn users (checked as {user} with `sshd -T -C user={user}`) sshd \
                     would not use podspawn's settings:{}\nan earlier Match block wins over \
                     podspawn's; change it so that it does not match the group {} (or remove \
                     those settings from it)",
                    explain_mismatches(&required, &rep),
                    accounts::USERS_GROUP
                ));
            }
            if let Err(e) = forwarding_effective(&t, user, forwarding.1) {
                // Forwarding expected on but not effective matters only when it is required.
                if !forwarding.1 || forwarding.0 == crate::core::config::PortForwarding::On {
                    return Err(e);
                }
                log.note(e);
            }
            // AllowTcpForwarding was judged above.
            let optional: Vec<Mismatch> = optional
                .into_iter()
                .filter(|m| m.keyword != "allowtcpforwarding")
                .collect();
            if !optional.is_empty() {
                log.note(format!(
                    "for podspawn users some hardening settings are overridden:{}",
                    explain_mismatches(&optional, &rep)
                ));
            }
            let _ = writeln!(
                log.out,
                "  effective settings checked for {user}: podspawn's AuthorizedKeysCommand"
            );
        }
        None => {
            if let Some(d) = rep.definite().first() {
                return Err(format!(
                    "{} shadows podspawn's settings: a Match block read before podspawn's applies \
                     to every user, and sshd uses its value. Change it so that it does not apply \
                     to the group {}",
                    d.describe(),
                    accounts::USERS_GROUP
                ));
            }
            for d in &rep.earlier_match {
                log.note(format!(
                    "{} is read before podspawn's block and wins for podspawn users it matches",
                    d.describe()
                ));
            }
            log.note(format!(
                "the Match Group {} check with `sshd -T -C` was skipped: the group has no members \
                 yet (sshd needs an existing account); `podspawn doctor` checks it after \
                 `podspawn add-user`",
                accounts::USERS_GROUP
            ));
        }
    }
    Ok(member)
}

/// Installs the shared units into /etc/systemd/system unless a package did (tarball installs).
fn units_step(log: &mut Log, binary: &str, args: &ServerSetupArgs) -> Result<(), String> {
    if args.no_units {
        return Ok(());
    }
    if PACKAGE_UNIT_DIRS
        .iter()
        .any(|d| Path::new(d).join("podspawn.service").exists())
    {
        return Ok(());
    }
    if !systemd_running() {
        log.note(
            "systemd is not running, so no units were installed: run `podspawn serve` (the \
             broker) and `podspawn cleanup --daemon` under your service manager"
                .into(),
        );
        return Ok(());
    }
    let _ = writeln!(log.out, "systemd units ({UNIT_DIR}):");
    let mut wrote = false;
    for (name, text) in UNITS {
        let path = Path::new(UNIT_DIR).join(name);
        let want = text.replace(TEMPLATE_BINARY, binary);
        let old = read_existing(&path)?;
        if old.as_ref().is_some_and(|(b, ..)| b == want.as_bytes()) {
            continue;
        }
        if !log.dry {
            crate::host::fs::write_file_atomic(&path, want.as_bytes(), 0, 0, 0o644)?;
        }
        log.change(format!("write {}", path.display()));
        wrote = true;
    }
    if wrote && !log.dry {
        run_systemctl(&["daemon-reload"])?;
    }
    for unit in ENABLED_UNITS {
        let enabled = Command::new("systemctl")
            .args(["is-enabled", "--quiet", unit])
            .status()
            .is_ok_and(|s| s.success());
        let active = unit_state(unit).as_deref() == Some("active");
        if enabled && active {
            continue;
        }
        if args.no_reload {
            log.note(format!(
                "{unit} is not enabled and started: sudo systemctl enable --now {unit}"
            ));
            continue;
        }
        if !log.dry {
            run_systemctl(&["enable", "--now", unit])?;
        }
        log.change(format!("enable and start {unit}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_dirs_follow_the_config() {
        let cfg = Config::default();
        let dirs: Vec<(String, &str, u32)> = wanted_dirs(&cfg)
            .into_iter()
            .map(|(p, g, m)| (p.display().to_string(), g, m))
            .collect();
        assert_eq!(
            dirs,
            vec![
                ("/etc/podspawn".to_string(), "root", 0o755),
                ("/etc/podspawn/keys".into(), "podspawn", 0o750),
                ("/etc/podspawn/users".into(), "root", 0o755),
                ("/var/lib/podspawn".into(), "root", 0o700),
                ("/var/lib/podspawn/locks".into(), "root", 0o700),
                ("/var/lib/podspawn/homes".into(), "root", 0o711),
                ("/run/podspawn".into(), "root", 0o755),
                ("/var/log/podspawn".into(), "root", 0o750),
            ]
        );
        // A log file directly in /var/log never re-modes /var/log.
        let mut cfg = Config::default();
        cfg.log.file = Some("/var/log/podspawn.log".into());
        assert!(!wanted_dirs(&cfg)
            .iter()
            .any(|(p, _, _)| p == Path::new("/var/log")));
    }

    #[test]
    fn units_are_embedded() {
        for (name, text) in UNITS {
            assert!(text.contains("[Unit]"), "{name}");
        }
        assert!(UNITS
            .iter()
            .any(|(n, t)| *n == "podspawn.service"
                && t.contains("ExecStart=/usr/bin/podspawn serve")));
    }
}
