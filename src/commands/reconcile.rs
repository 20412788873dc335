//! `podspawn server-setup --users`: brings every registered user (a key file in the key
//! directory) to the state `add-user` leaves it in, as the packages' install and upgrade scripts
//! and plain `server-setup` do:
//!
//! - the key directory root:podspawn 0750 and each key file root:podspawn 0640 (a symlink is
//!   reported and never followed);
//! - a missing host account is created the way `add-user` creates it;
//! - an existing one gets what [`accounts::plan_existing`] repairs without asking (a never-set
//!   password field becomes `*`, a missing home is created, the account joins podspawn-users);
//! - an account `add-user` would refuse or only change with `--convert` is left exactly as it is
//!   and listed with the reason and the command that converts it.
//!
//! One line per change; with `dry_run` the same lines say "would" and nothing changes. Nothing
//! stops the run: what could not be applied is listed and makes the report's `problems`.
use crate::core::config::Config;
use crate::host::accounts::{self, AccountError, HostPlan};
use crate::store::keys;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Owner group and modes podspawn wants for the key directory and files.
pub const KEY_DIR_MODE: u32 = 0o750;
pub const KEY_FILE_MODE: u32 = 0o640;

#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub dry_run: bool,
    /// Put in front of every line (`podspawn: ` alone, two spaces inside `server-setup`).
    pub prefix: &'a str,
    /// Create podspawn's system user and groups if missing (`server-setup` does it itself).
    pub identities: bool,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per change.
    pub changes: Vec<String>,
    /// Users and files left unchanged on purpose, with the reason and the fix.
    pub left: Vec<String>,
    /// What could not be applied.
    pub problems: Vec<String>,
}

struct Out<'a, 'b> {
    out: &'a mut dyn Write,
    opts: Options<'b>,
    report: Report,
}

impl Out<'_, '_> {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}{text}", self.opts.prefix);
    }
    fn change(&mut self, what: String) {
        let would = if self.opts.dry_run { "would " } else { "" };
        self.line(&format!("{would}{what}"));
        self.report.changes.push(what);
    }
    fn left(&mut self, what: String, details: &[String]) {
        self.line(&what);
        for d in details {
            self.line(&format!("  - {d}"));
        }
        let mut all = what;
        for d in details {
            all.push_str(&format!("\n  - {d}"));
        }
        self.report.left.push(all);
    }
    fn problem(&mut self, what: String) {
        self.line(&format!("cannot {what}"));
        self.report.problems.push(what);
    }
}

/// Reconciles every registered user; see the module documentation.
pub fn reconcile(cfg: &Config, opts: Options, out: &mut dyn Write) -> Report {
    let mut o = Out {
        out,
        opts,
        report: Report::default(),
    };
    run(cfg, &mut o);
    o.report
}

fn run(cfg: &Config, o: &mut Out) {
    let dry = o.opts.dry_run;
    if o.opts.identities {
        let missing = accounts::missing_identities();
        if !missing.is_empty() {
            if !dry {
                if let Err(e) = accounts::ensure_system_identities() {
                    o.problem(format!("create {}: {e}", missing.join(", ")));
                    return;
                }
            }
            o.change(format!("create {}", missing.join(", ")));
        }
    }
    let gid = accounts::group_gid(accounts::SYSTEM_USER);
    if gid.is_none() && !dry {
        o.problem(format!(
            "set up registered users: the group {} does not exist (run `podspawn server-setup`)",
            accounts::SYSTEM_USER
        ));
        return;
    }

    let dir = &cfg.auth.key_dir;
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            o.problem(format!("read the key directory {}: {e}", dir.display()));
            return;
        }
        Ok(m) if m.file_type().is_symlink() => {
            o.left(
                format!(
                    "not touching registered users: the key directory {} is a symlink, which \
                     podspawn never follows; replace it with a real directory (root:{} 0750)",
                    dir.display(),
                    accounts::SYSTEM_USER
                ),
                &[],
            );
            return;
        }
        Ok(m) if !m.is_dir() => {
            o.problem(format!(
                "use the key directory {}: it is not a directory",
                dir.display()
            ));
            return;
        }
        Ok(m) => {
            if !(m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == KEY_DIR_MODE) {
                let what = format!(
                    "change the key directory {} from {} {:04o} to root:{} {KEY_DIR_MODE:04o}",
                    dir.display(),
                    accounts::owner_text(m.uid(), m.gid()),
                    m.mode() & 0o7777,
                    accounts::SYSTEM_USER
                );
                match gid.filter(|_| !dry).map(|g| keys::ensure_key_dir(dir, g)) {
                    Some(Err(e)) => o.problem(format!("{what}: {e}")),
                    _ => o.change(what),
                }
            }
        }
    }

    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            o.problem(format!("read the key directory {}: {e}", dir.display()));
            return;
        }
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let Some(name) = n
            .to_str()
            .filter(|s| crate::core::names::validate_user(s).is_ok())
        else {
            o.left(
                format!(
                    "ignoring {}: not a valid user name (rename or remove it)",
                    path.display()
                ),
                &[],
            );
            continue;
        };
        if key_file(o, &path, name, gid) {
            account(o, name);
        }
    }
}

/// Fixes a key file's owner and mode; false when it is not a regular file (the user is skipped).
fn key_file(o: &mut Out, path: &Path, name: &str, gid: Option<u32>) -> bool {
    let sys = accounts::SYSTEM_USER;
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            o.problem(format!("stat {}: {e}", path.display()));
            return false;
        }
    };
    if m.file_type().is_symlink() {
        o.left(
            format!(
                "not touching {name}: the key file {p} is a symlink, which podspawn never \
                 follows (auth-keys refuses it too); replace it with a regular file: sudo cp \
                 --remove-destination \"$(readlink -f {p})\" {p} && sudo chown root:{sys} {p} \
                 && sudo chmod 0640 {p}",
                p = path.display()
            ),
            &[],
        );
        return false;
    }
    if !m.is_file() {
        o.left(
            format!(
                "not touching {name}: {} is not a regular file (remove it)",
                path.display()
            ),
            &[],
        );
        return false;
    }
    if m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == KEY_FILE_MODE {
        return true;
    }
    let what = format!(
        "change the key file {} from {} {:04o} to root:{sys} {KEY_FILE_MODE:04o}",
        path.display(),
        accounts::owner_text(m.uid(), m.gid()),
        m.mode() & 0o7777
    );
    match gid.filter(|_| !o.opts.dry_run) {
        Some(g) => match fix_file(path, &m, g) {
            Ok(()) => o.change(what),
            Err(e) => o.problem(format!("{what}: {e}")),
        },
        None => o.change(what),
    }
    true
}

/// chown root:`gid` and chmod 0640 through an fd opened without following symlinks, after
/// checking it is still the file that was examined.
fn fix_file(path: &Path, seen: &std::fs::Metadata, gid: u32) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let m = f.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
    if m.ino() != seen.ino() || m.dev() != seen.dev() || !m.is_file() {
        return Err("it changed while podspawn looked at it; run it again".into());
    }
    std::os::unix::fs::fchown(&f, Some(0), Some(gid)).map_err(|e| format!("chown: {e}"))?;
    f.set_permissions(std::fs::Permissions::from_mode(KEY_FILE_MODE))
        .map_err(|e| format!("chmod: {e}"))
}

/// Creates or repairs `name`'s host account, or says why it is left alone.
fn account(o: &mut Out, name: &str) {
    let plan = match accounts::plan_host_account(name) {
        Ok(p) => p,
        Err(AccountError::System(e)) => {
            o.problem(format!("check {name}'s account: {e}"));
            return;
        }
        Err(e) => {
            o.left(format!("not touching {name}: {e}"), &[]);
            return;
        }
    };
    match plan.check(name, false) {
        Ok(()) => {}
        Err(AccountError::NeedsConvert { conversions, .. }) => {
            let details: Vec<String> = conversions.iter().map(|c| c.describe(name)).collect();
            o.left(
                format!(
                    "not touching {name}: the account is used for something else; `podspawn \
                     add-user {name} --convert` makes it a podspawn user with these changes:"
                ),
                &details,
            );
            return;
        }
        Err(e) => {
            o.left(format!("not touching {name}: {e}"), &[]);
            return;
        }
    }
    let lines: Vec<String> = match &plan {
        HostPlan::Create => vec![accounts::create_description(name, accounts::USERS_GROUP)],
        HostPlan::Existing { facts, plan } => {
            if plan.no_shadow_entry {
                o.line(&format!(
                    "note: {name} has no entry in /etc/shadow (a network account?): make sure it \
                     is not locked, or sshd refuses it"
                ));
            }
            plan.repairs
                .iter()
                .map(|r| r.describe(facts, accounts::USERS_GROUP))
                .collect()
        }
    };
    if lines.is_empty() {
        return;
    }
    if !o.opts.dry_run {
        if let Err(e) = accounts::apply_host_plan(name, &plan) {
            o.problem(format!("{}: {e}", lines.join(", ")));
            return;
        }
    }
    for l in lines {
        o.change(l);
    }
}
