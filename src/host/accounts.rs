//! Host accounts and groups: the system user `podspawn`, the group `podspawn-users`, and the
//! per-user host accounts sshd needs before it consults AuthorizedKeysCommand.
//!
//! Changes go through the shadow-utils tools (`groupadd`, `useradd`, `usermod`, `gpasswd`,
//! `userdel`), never by editing /etc/passwd or /etc/group directly; /etc/shadow is only read.
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use crate::core::account_policy::*;
use crate::core::names::InvalidName;

/// Reading or changing the host's accounts failed.
#[derive(Debug)]
pub enum Error {
    Name(InvalidName),
    /// root, nobody and podspawn's own identities are never podspawn users.
    Reserved(String),
    /// A shadow-utils tool is not installed.
    ToolNotFound(String),
    /// A tool could not be started; `command` as shown to a person.
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// A tool ran and failed: its exit status and what it said.
    ToolFailed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    /// A user or group is still missing after the tool that creates it succeeded.
    StillMissing {
        what: &'static str,
        name: String,
        after: &'static str,
    },
    NoUsableHome {
        name: String,
        home: PathBuf,
    },
    HomeNotADirectory {
        name: String,
        home: PathBuf,
    },
    Fs(crate::host::fs::Error),
    Shadow(std::io::Error),
    /// `group` is the user's primary group, which `gpasswd -d` cannot remove.
    PrimaryGroup {
        user: String,
        group: String,
    },
    /// Deleting an account with uid 0 is refused.
    Uid0(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Name(e) => e.fmt(f),
            Error::Reserved(name) => write!(
                f,
                "{name} is reserved and cannot be a podspawn user: pick another name"
            ),
            Error::ToolNotFound(name) => write!(
                f,
                "{name} not found in {}: install the shadow utilities (Debian/Ubuntu: passwd, \
                 Fedora/RHEL: shadow-utils, Alpine: shadow)",
                TOOL_DIRS.join(", ")
            ),
            Error::Spawn { command, source } => write!(f, "cannot run `{command}`: {source}"),
            Error::ToolFailed {
                command,
                status,
                output,
            } => write!(f, "`{command}` failed ({status}): {output}"),
            Error::StillMissing { what, name, after } => {
                write!(f, "{what} {name} still does not exist after {after}")
            }
            Error::NoUsableHome { name, home } => write!(
                f,
                "{name} has no usable home directory ({home:?}): set one with `usermod -d /home/{name} -m {name}`"
            ),
            Error::HomeNotADirectory { name, home } => write!(
                f,
                "{name}'s home {} exists but is not a directory: move it away",
                home.display()
            ),
            Error::Fs(e) => e.fmt(f),
            Error::Shadow(e) => write!(f, "cannot read /etc/shadow: {e} (run it with sudo)"),
            Error::PrimaryGroup { user, group } => write!(
                f,
                "{group} is {user}'s primary group: change it with `usermod -g GROUP {user}`"
            ),
            Error::Uid0(name) => write!(f, "{name} has uid 0: refusing to delete it"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Name(e) => Some(e),
            Error::Spawn { source, .. } | Error::Shadow(source) => Some(source),
            Error::Fs(e) => Some(e),
            Error::Reserved(_)
            | Error::ToolNotFound(_)
            | Error::ToolFailed { .. }
            | Error::StillMissing { .. }
            | Error::NoUsableHome { .. }
            | Error::HomeNotADirectory { .. }
            | Error::PrimaryGroup { .. }
            | Error::Uid0(_) => None,
        }
    }
}

impl From<InvalidName> for Error {
    fn from(e: InvalidName) -> Self {
        Error::Name(e)
    }
}

impl From<crate::host::fs::Error> for Error {
    fn from(e: crate::host::fs::Error) -> Self {
        Error::Fs(e)
    }
}

/// For callers that print the error (`?` where the error type is `String`).
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

pub fn lookup(name: &str) -> Option<Account> {
    let u = uzers::get_user_by_name(name)?;
    use uzers::os::unix::UserExt;
    Some(Account {
        name: name.to_string(),
        uid: u.uid(),
        gid: u.primary_group_id(),
        home: u.home_dir().to_path_buf(),
        shell: u.shell().to_path_buf(),
    })
}

pub fn lookup_uid(uid: u32) -> Option<Account> {
    let u = uzers::get_user_by_uid(uid)?;
    lookup(u.name().to_str()?)
}

/// The gid of a group, if it exists.
pub fn group_gid(name: &str) -> Option<u32> {
    uzers::get_group_by_name(name).map(|g| g.gid())
}

/// Ids of podspawn's system identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemIds {
    pub podspawn_uid: u32,
    pub podspawn_gid: u32,
    pub users_gid: u32,
}

const TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Absolute path of a shadow-utils tool.
fn tool(name: &str) -> Result<PathBuf, Error> {
    TOOL_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ToolNotFound(name.to_string()))
}

/// A command line for messages, quoting what a shell would mangle.
fn display_command(name: &str, args: &[&str]) -> String {
    let mut s = name.to_string();
    for a in args {
        s.push(' ');
        if !a.is_empty()
            && a.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.' | b',' | b':')
            })
        {
            s.push_str(a);
        } else {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        }
    }
    s
}

/// Runs a shadow-utils tool; retries while another process holds the passwd/group lock.
fn run_tool(name: &str, args: &[&str]) -> Result<(), Error> {
    let path = tool(name)?;
    let shown = display_command(name, args);
    let mut attempt = 0;
    loop {
        let out = Command::new(&path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                command: shown.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        attempt += 1;
        let locked = stderr.contains("cannot lock") || stderr.contains("try again later");
        if locked && attempt < 20 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            continue;
        }
        let why = if stderr.is_empty() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            stderr
        };
        return Err(Error::ToolFailed {
            command: shown,
            status: out.status,
            output: why,
        });
    }
}

/// `/usr/sbin/nologin` or the distribution's equivalent.
fn nologin_shell() -> &'static str {
    ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("/bin/false")
}

/// Creates (if missing) the system group `podspawn`, the system user `podspawn` (sshd's
/// AuthorizedKeysCommandUser) and the group `podspawn-users`; returns their ids.
pub fn ensure_system_identities() -> Result<SystemIds, Error> {
    if group_gid(SYSTEM_USER).is_none() {
        run_tool("groupadd", &["--system", SYSTEM_USER])?;
    }
    if lookup(SYSTEM_USER).is_none() {
        run_tool(
            "useradd",
            &[
                "--system",
                "--gid",
                SYSTEM_USER,
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                nologin_shell(),
                "--comment",
                "podspawn system user",
                SYSTEM_USER,
            ],
        )?;
    }
    if group_gid(USERS_GROUP).is_none() {
        run_tool("groupadd", &["--system", USERS_GROUP])?;
    }
    let missing = |what, name: &str, after| Error::StillMissing {
        what,
        name: name.to_string(),
        after,
    };
    let user = lookup(SYSTEM_USER).ok_or_else(|| missing("user", SYSTEM_USER, "useradd"))?;
    let podspawn_gid =
        group_gid(SYSTEM_USER).ok_or_else(|| missing("group", SYSTEM_USER, "groupadd"))?;
    let users_gid =
        group_gid(USERS_GROUP).ok_or_else(|| missing("group", USERS_GROUP, "groupadd"))?;
    Ok(SystemIds {
        podspawn_uid: user.uid,
        podspawn_gid,
        users_gid,
    })
}

fn sys<T>(r: Result<T, Error>) -> Result<T, AccountError> {
    r.map_err(|e| AccountError::System(e.to_string()))
}

/// Reads what [`plan_existing`] needs about `name` (`None`: no such account).
pub fn account_facts(name: &str) -> Result<Option<AccountFacts>, AccountError> {
    if lookup(name).is_none() {
        return Ok(None);
    }
    let shadow = sys(shadow_password(name))?;
    Ok(visible_facts(name, shadow))
}

/// [`account_facts`] with the shadow field given (e.g. `None` when /etc/shadow is unreadable).
pub fn visible_facts(name: &str, shadow: Option<String>) -> Option<AccountFacts> {
    let acct = lookup(name)?;
    let primary_group = uzers::get_group_by_gid(acct.gid)
        .map(|g| g.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| acct.gid.to_string());
    let groups = uzers::get_user_groups(name, acct.gid)
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.gid() != acct.gid)
        .map(|g| g.name().to_string_lossy().into_owned())
        .collect();
    Some(AccountFacts {
        name: name.to_string(),
        uid: acct.uid,
        home_exists: acct.home.is_dir(),
        home: acct.home,
        shell: acct.shell,
        shadow,
        primary_group,
        groups,
    })
}

/// Plans what podspawn would do to make `name` a podspawn user, changing nothing.
pub fn plan_host_account(name: &str) -> Result<HostPlan, AccountError> {
    check_name_allowed(name).map_err(|e| AccountError::Name(e.to_string()))?;
    match account_facts(name)? {
        None => {
            if group_gid(name).is_some() {
                return Err(AccountError::GroupExists {
                    name: name.to_string(),
                });
            }
            Ok(HostPlan::Create)
        }
        Some(facts) => {
            let plan = plan_existing(&facts, uid_min());
            Ok(HostPlan::Existing {
                facts: Box::new(facts),
                plan,
            })
        }
    }
}

/// What [`setup_host_account`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSetup {
    pub account: Account,
    pub created: bool,
    /// Conversions made (only with `convert`).
    pub converted: Vec<Conversion>,
    /// Repairs made.
    pub repaired: Vec<Repair>,
    /// One line per change, for a person.
    pub changes: Vec<String>,
    /// Things the admin should know (e.g. no /etc/shadow entry).
    pub notes: Vec<String>,
}

/// Creates the host account if missing (`useradd --create-home --shell /bin/sh --password '*'
/// --comment podspawn --groups podspawn-users --user-group`). An existing one is classified by
/// [`plan_existing`]: refusals are errors, conversions are made only with `convert`
/// ([`AccountError::NeedsConvert`] otherwise), repairs always.
pub fn setup_host_account(name: &str, convert: bool) -> Result<AccountSetup, AccountError> {
    let plan = plan_host_account(name)?;
    plan.check(name, convert)?;
    apply_host_plan(name, &plan)
}

/// Carries out a checked [`HostPlan`] (see [`HostPlan::check`]).
pub fn apply_host_plan(name: &str, plan: &HostPlan) -> Result<AccountSetup, AccountError> {
    let group = USERS_GROUP;
    let mut setup = AccountSetup {
        account: Account {
            name: name.to_string(),
            uid: 0,
            gid: 0,
            home: PathBuf::new(),
            shell: PathBuf::new(),
        },
        created: false,
        converted: Vec::new(),
        repaired: Vec::new(),
        changes: Vec::new(),
        notes: Vec::new(),
    };
    match plan {
        HostPlan::Create => {
            sys(run_tool("useradd", &create_args(name, group)))?;
            setup.created = true;
            setup.changes.push(create_description(name, group));
        }
        HostPlan::Existing { facts, plan } => {
            for c in &plan.conversions {
                match c {
                    Conversion::Password(_) => sys(run_tool("usermod", &["-p", "*", name]))?,
                    Conversion::Shell { .. } => {
                        sys(run_tool("usermod", &["-s", DEFAULT_SHELL, name]))?
                    }
                    Conversion::Groups(groups) => {
                        for g in groups {
                            sys(run_tool("gpasswd", &["-d", name, g]))?;
                        }
                    }
                }
                setup.converted.push(c.clone());
                setup.changes.push(c.describe(name));
            }
            for r in &plan.repairs {
                match r {
                    Repair::Unlock => sys(run_tool("usermod", &["-p", "*", name]))?,
                    Repair::CreateHome => {
                        let acct = lookup(name).ok_or_else(|| {
                            AccountError::System(format!("the account {name} disappeared"))
                        })?;
                        sys(ensure_home(&acct))?;
                    }
                    Repair::JoinUsersGroup => sys(run_tool("usermod", &["-aG", group, name]))?,
                }
                setup.repaired.push(*r);
                setup.changes.push(r.describe(facts, group));
            }
            if plan.no_shadow_entry {
                setup.notes.push(format!(
                    "{name} has no entry in /etc/shadow (a network account?): make sure it is \
                     not locked, or sshd will refuse it"
                ));
            }
        }
    }
    setup.account = lookup(name).ok_or_else(|| {
        AccountError::System(format!("the account {name} does not exist after useradd"))
    })?;
    Ok(setup)
}

fn create_args<'a>(name: &'a str, group: &'a str) -> [&'a str; 11] {
    [
        "--create-home",
        "--shell",
        DEFAULT_SHELL,
        "--password",
        "*",
        "--comment",
        CREATED_MARKER,
        "--groups",
        group,
        "--user-group",
        name,
    ]
}

/// The line for a created account.
pub fn create_description(name: &str, group: &str) -> String {
    format!(
        "create host account {name} (shell {DEFAULT_SHELL}, password field '*': key login only, \
         home created, in {group})"
    )
}

/// Creates the account's home (owned by it, 0750) if it is missing; true if it did.
fn ensure_home(acct: &Account) -> Result<bool, Error> {
    use crate::host::fs::Error as FsError;
    let home = &acct.home;
    let io = |op| {
        move |source| {
            Error::Fs(FsError::Io {
                op,
                path: home.clone(),
                source,
            })
        }
    };
    if !home.is_absolute() || home == Path::new("/nonexistent") {
        return Err(Error::NoUsableHome {
            name: acct.name.clone(),
            home: home.clone(),
        });
    }
    match std::fs::symlink_metadata(home) {
        Ok(_) if home.is_dir() => Ok(false),
        Ok(_) => Err(Error::HomeNotADirectory {
            name: acct.name.clone(),
            home: home.clone(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::host::fs::create_parent_dirs(home)?;
            std::fs::create_dir(home).map_err(io("create"))?;
            std::os::unix::fs::chown(home, Some(acct.uid), Some(acct.gid)).map_err(io("chown"))?;
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o750))
                .map_err(io("chmod"))?;
            Ok(true)
        }
        Err(e) => Err(io("stat")(e)),
    }
}

/// The password field of `name` in /etc/shadow (`None`: no entry, e.g. a network account).
pub fn shadow_password(name: &str) -> Result<Option<String>, Error> {
    let text = std::fs::read_to_string("/etc/shadow").map_err(Error::Shadow)?;
    Ok(parse_shadow(&text, name))
}

/// `UID_MIN` of /etc/login.defs (1000 when it does not say).
pub fn uid_min() -> u32 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|t| parse_uid_min(&t))
        .unwrap_or(1000)
}

/// Names podspawn never turns into (or deletes as) a podspawn user.
pub fn check_name_allowed(name: &str) -> Result<(), Error> {
    crate::core::names::validate_user(name)?;
    if matches!(name, "root" | "nobody" | SYSTEM_USER | USERS_GROUP) {
        return Err(Error::Reserved(name.to_string()));
    }
    Ok(())
}

/// Is `user` in `group`, as a supplementary member or through its primary group?
pub fn is_member(user: &str, group: &str) -> bool {
    let Some(g) = uzers::get_group_by_name(group) else {
        return false;
    };
    use uzers::os::unix::GroupExt;
    if g.members().iter().any(|m| m == user) {
        return true;
    }
    lookup(user).is_some_and(|a| a.gid == g.gid())
}

/// Removes `user` from the supplementary members of `group` (`gpasswd -d`). Not being a member
/// (or the group or user not existing) is not an error; the primary group cannot be removed.
pub fn remove_from_group(user: &str, group: &str) -> Result<(), Error> {
    crate::core::names::validate_user(user)?;
    let Some(g) = uzers::get_group_by_name(group) else {
        return Ok(());
    };
    use uzers::os::unix::GroupExt;
    if g.members().iter().any(|m| m == user) {
        run_tool("gpasswd", &["-d", user, group])?;
    }
    if lookup(user).is_some_and(|a| a.gid == g.gid()) {
        return Err(Error::PrimaryGroup {
            user: user.to_string(),
            group: group.to_string(),
        });
    }
    Ok(())
}

/// podspawn's own identities that do not exist yet: "group podspawn", "system user podspawn",
/// "group podspawn-users".
pub fn missing_identities() -> Vec<String> {
    let mut missing = Vec::new();
    if group_gid(SYSTEM_USER).is_none() {
        missing.push(format!("group {SYSTEM_USER}"));
    }
    if lookup(SYSTEM_USER).is_none() {
        missing.push(format!("system user {SYSTEM_USER}"));
    }
    if group_gid(USERS_GROUP).is_none() {
        missing.push(format!("group {USERS_GROUP}"));
    }
    missing
}

/// GECOS field of an account.
fn gecos(name: &str) -> Result<Option<String>, Error> {
    use uzers::os::unix::UserExt;
    Ok(uzers::get_user_by_name(name).map(|u| u.gecos().to_string_lossy().into_owned()))
}

/// Deletes the host account with `userdel --remove`, but only if podspawn created it (its
/// GECOS/comment field is exactly `podspawn`). Returns whether it deleted it.
pub fn delete_host_account(name: &str) -> Result<bool, Error> {
    check_name_allowed(name)?;
    let Some(acct) = lookup(name) else {
        return Ok(false);
    };
    if acct.uid == 0 {
        return Err(Error::Uid0(name.to_string()));
    }
    if gecos(name)?.as_deref() != Some(CREATED_MARKER) {
        return Ok(false);
    }
    match run_tool("userdel", &["--remove", name]) {
        Ok(()) => Ok(true),
        // userdel exits non-zero when e.g. the mail spool or home could not be removed after the
        // account itself was deleted.
        Err(e) if lookup(name).is_none() => {
            tracing::warn!("{e}");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// `user:group` for messages, falling back to the numbers.
pub fn owner_text(uid: u32, gid: u32) -> String {
    let u = uzers::get_user_by_uid(uid)
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| uid.to_string());
    let g = uzers::get_group_by_gid(gid)
        .map(|g| g.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| gid.to_string());
    format!("{u}:{g}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn errors_are_typed_and_read_as_before() {
        let e = check_name_allowed("nobody").unwrap_err();
        assert!(matches!(&e, Error::Reserved(n) if n == "nobody"), "{e:?}");
        assert_eq!(
            e.to_string(),
            "nobody is reserved and cannot be a podspawn user: pick another name"
        );
        let e = check_name_allowed("Bad").unwrap_err();
        assert!(
            matches!(&e, Error::Name(InvalidName::User(n)) if n == "Bad"),
            "{e:?}"
        );
        assert!(String::from(e).starts_with("invalid user name \"Bad\""));

        let acct = |home: &str| Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: home.into(),
            shell: "/bin/sh".into(),
        };
        let e = ensure_home(&acct("/nonexistent")).unwrap_err();
        assert!(matches!(e, Error::NoUsableHome { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "alice has no usable home directory (\"/nonexistent\"): set one with \
             `usermod -d /home/alice -m alice`"
        );
        let e = ensure_home(&acct("/dev/null")).unwrap_err();
        assert!(matches!(e, Error::HomeNotADirectory { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "alice's home /dev/null exists but is not a directory: move it away"
        );

        let e = tool("no-such-shadow-tool").unwrap_err();
        assert!(matches!(&e, Error::ToolNotFound(n) if n == "no-such-shadow-tool"));
        assert!(e
            .to_string()
            .starts_with("no-such-shadow-tool not found in /usr/sbin, /sbin, /usr/bin, /bin: "));
        let e = Error::StillMissing {
            what: "group",
            name: USERS_GROUP.into(),
            after: "groupadd",
        };
        assert_eq!(
            e.to_string(),
            "group podspawn-users still does not exist after groupadd"
        );
    }

    #[test]
    fn names() {
        for bad in [
            "root",
            "podspawn",
            "podspawn-users",
            "nobody",
            "Bad",
            "../x",
        ] {
            assert!(check_name_allowed(bad).is_err(), "{bad}");
        }
        assert!(check_name_allowed("alice").is_ok());
        assert_eq!(
            display_command("usermod", &["-p", "*", "alice"]),
            "usermod -p '*' alice"
        );
    }

    /// Creates and removes real accounts and groups (unique names, cleaned up by a guard).
    #[test]
    fn host_account_lifecycle() {
        assert!(
            nix::unistd::geteuid().is_root() && tool("useradd").is_ok(),
            "this test needs root and shadow-utils (useradd); run the tests as root"
        );
        let tag = format!(
            "{:x}{:x}",
            std::process::id() & 0xffff,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
                & 0xffff
        );
        let created = format!("pstk{tag}a");
        let locked = format!("pstk{tag}b");
        let haspw = format!("pstk{tag}c");
        struct Guard(Vec<String>);
        impl Drop for Guard {
            fn drop(&mut self) {
                for u in &self.0 {
                    let _ = run_tool("userdel", &["--remove", u]);
                    let _ = std::fs::remove_dir_all(format!("/home/{u}"));
                }
            }
        }
        let _guard = Guard(vec![created.clone(), locked.clone(), haspw.clone()]);
        ensure_system_identities().unwrap();
        let group = USERS_GROUP;
        let setup = |name: &str, convert: bool| {
            let p = plan_host_account(name)?;
            p.check(name, convert)?;
            apply_host_plan(name, &p)
        };

        // A new account: created with '*', /bin/sh, home, in the group, marked as ours.
        let s = setup(&created, false).unwrap();
        assert!(s.created && s.converted.is_empty() && s.repaired.is_empty());
        assert_eq!(shadow_password(&created).unwrap().as_deref(), Some("*"));
        assert_eq!(s.account.shell, Path::new("/bin/sh"));
        assert!(s.account.home.is_dir());
        assert!(is_member(&created, group));
        assert_eq!(gecos(&created).unwrap().as_deref(), Some("podspawn"));
        // Idempotent.
        let s2 = setup(&created, false).unwrap();
        assert!(!s2.created && s2.changes.is_empty(), "{s2:?}");

        // An existing locked account ('!' from plain useradd) without a home: unlocked,
        // home created 0750, added to the group.
        run_tool(
            "useradd",
            &["--shell", "/bin/sh", "--comment", "someone", &locked],
        )
        .unwrap();
        run_tool("usermod", &["-p", "!", &locked]).unwrap();
        let acct = lookup(&locked).unwrap();
        let _ = std::fs::remove_dir_all(&acct.home);
        let s = setup(&locked, false).unwrap();
        assert!(!s.created && s.converted.is_empty());
        assert_eq!(
            s.repaired,
            vec![Repair::Unlock, Repair::CreateHome, Repair::JoinUsersGroup]
        );
        assert_eq!(shadow_password(&locked).unwrap().as_deref(), Some("*"));
        let m = std::fs::metadata(&acct.home).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (acct.uid, acct.gid, 0o750)
        );
        // Group removal.
        remove_from_group(&locked, group).unwrap();
        assert!(!is_member(&locked, group));
        remove_from_group(&locked, group).unwrap();
        // Not created by podspawn: never deleted.
        assert!(matches!(delete_host_account(&locked), Ok(false)));
        assert!(lookup(&locked).is_some());

        // Locked with a real hash: needs --convert, nothing changed without it.
        run_tool("useradd", &["--create-home", "--shell", "/bin/sh", &haspw]).unwrap();
        run_tool("usermod", &["-p", "!$6$abcdefgh$ijklmnop", &haspw]).unwrap();
        let e = setup(&haspw, false).unwrap_err();
        assert_eq!(
            e,
            AccountError::NeedsConvert {
                name: haspw.clone(),
                conversions: vec![Conversion::Password(PasswordState::AdminLocked)]
            }
        );
        assert!(!is_member(&haspw, group));
        assert_eq!(
            shadow_password(&haspw).unwrap().as_deref(),
            Some("!$6$abcdefgh$ijklmnop")
        );
        let s = setup(&haspw, true).unwrap();
        assert_eq!(
            s.converted,
            vec![Conversion::Password(PasswordState::AdminLocked)]
        );
        assert_eq!(shadow_password(&haspw).unwrap().as_deref(), Some("*"));
        assert!(is_member(&haspw, group));

        // Created by podspawn: deleted with its home.
        let home = lookup(&created).unwrap().home;
        assert!(matches!(delete_host_account(&created), Ok(true)));
        assert!(lookup(&created).is_none());
        assert!(!home.exists());
        assert!(matches!(delete_host_account(&created), Ok(false)));
    }
}
