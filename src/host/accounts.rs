//! Host accounts and groups: the system user `podspawn`, the group `podspawn-users`, and the
//! per-user host accounts sshd needs before it consults AuthorizedKeysCommand.
//!
//! Changes go through the shadow-utils tools (`groupadd`, `useradd`, `usermod`, `gpasswd`,
//! `userdel`), never by editing /etc/passwd or /etc/group directly; /etc/shadow is only read.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const SYSTEM_USER: &str = "podspawn";
pub const USERS_GROUP: &str = "podspawn-users";
/// The GECOS field of the host accounts podspawn creates; only those are ever deleted.
pub const CREATED_MARKER: &str = "podspawn";
/// Shell of the host accounts podspawn creates (sshd runs the forced command through it).
pub const DEFAULT_SHELL: &str = "/bin/sh";

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
fn tool(name: &str) -> Result<PathBuf, String> {
    TOOL_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{name} not found in {}: install the shadow utilities (Debian/Ubuntu: passwd, \
                 Fedora/RHEL: shadow-utils, Alpine: shadow)",
                TOOL_DIRS.join(", ")
            )
        })
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
fn run_tool(name: &str, args: &[&str]) -> Result<(), String> {
    let path = tool(name)?;
    let shown = display_command(name, args);
    let mut attempt = 0;
    loop {
        let out = Command::new(&path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
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
        return Err(format!("`{shown}` failed ({}): {why}", out.status));
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
pub fn ensure_system_identities() -> Result<SystemIds, String> {
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
    let user = lookup(SYSTEM_USER)
        .ok_or_else(|| format!("user {SYSTEM_USER} still does not exist after useradd"))?;
    let podspawn_gid = group_gid(SYSTEM_USER)
        .ok_or_else(|| format!("group {SYSTEM_USER} still does not exist after groupadd"))?;
    let users_gid = group_gid(USERS_GROUP)
        .ok_or_else(|| format!("group {USERS_GROUP} still does not exist after groupadd"))?;
    Ok(SystemIds {
        podspawn_uid: user.uid,
        podspawn_gid,
        users_gid,
    })
}

// ---------------------------------------------------------------------------------------------
// Which accounts podspawn may take over, and what it changes (pure).

/// Groups whose members are (or can easily become) root, or can read what root guards: sudo and
/// wheel run anything as root; adm, systemd-journal read every log; shadow reads password
/// hashes; disk and kvm reach raw devices; docker, lxd, incus-admin and libvirt start privileged
/// containers or VMs; root, admin and staff are the traditional administrator groups. A podspawn
/// user is confined to a container and needs none of them, so an account in one of them is
/// "used for something else": podspawn only removes it from them with `--convert`.
pub const PRIVILEGED_GROUPS: &[&str] = &[
    "sudo",
    "wheel",
    "adm",
    "admin",
    "root",
    "docker",
    "lxd",
    "incus-admin",
    "libvirt",
    "kvm",
    "disk",
    "shadow",
    "systemd-journal",
    "staff",
];

/// What an account's /etc/shadow password field means for podspawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordState {
    /// No password and not locked (`*`, or another field no crypt(3) result starts with): key
    /// login only. What podspawn wants.
    NoPassword,
    /// Locked by a tool, never set (`!`, `!!`, `!*`, `*LK*`, no hash): sshd refuses the account
    /// before podspawn is asked. podspawn sets it to `*` without asking.
    NeverSet,
    /// A password hash: someone logs in with it.
    Usable,
    /// A lock set by an admin in front of a real hash (`!$6$…`, `usermod -L`).
    AdminLocked,
    /// Empty: anyone may log in where password login is on.
    Empty,
}

/// Classifies a shadow(5) password field (pure).
pub fn password_state(field: &str) -> PasswordState {
    if field.is_empty() {
        return PasswordState::Empty;
    }
    let locked_rest = if let Some(rest) = field.strip_prefix("*LK*") {
        Some(rest)
    } else {
        field.strip_prefix('!')
    };
    match locked_rest {
        Some(rest) => {
            let rest = rest.trim_start_matches('!');
            if rest.is_empty() || rest == "*LK*" || rest.chars().all(|c| c == '*') {
                PasswordState::NeverSet
            } else {
                PasswordState::AdminLocked
            }
        }
        None if field.starts_with('*') => PasswordState::NoPassword,
        None => PasswordState::Usable,
    }
}

/// What podspawn reads about an existing account (from passwd, shadow and group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
    /// The home exists (as a directory).
    pub home_exists: bool,
    pub shell: PathBuf,
    /// The /etc/shadow password field; `None`: no entry (e.g. a network account).
    pub shadow: Option<String>,
    /// Name of the primary group (the gid as text when it has no name).
    pub primary_group: String,
    /// Names of the supplementary groups.
    pub groups: Vec<String>,
}

/// Why podspawn never takes over an account, whatever the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Root,
    /// uid below UID_MIN (or `nobody`'s 65534).
    SystemAccount {
        uid: u32,
        uid_min: u32,
    },
    /// Home empty, relative or `/nonexistent`.
    NoUsableHome {
        home: PathBuf,
    },
    /// The primary group is privileged; `gpasswd -d` cannot remove it.
    PrivilegedPrimaryGroup {
        group: String,
    },
}

impl Refusal {
    /// What is wrong and how to fix it, for a person.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Refusal::Root => format!(
                "{name} has uid 0 (root): podspawn never takes over a root account; pick another \
                 name"
            ),
            Refusal::SystemAccount { uid, uid_min } => format!(
                "{name} is a system account (uid {uid}, below UID_MIN {uid_min}): podspawn only \
                 takes over regular accounts; pick another name"
            ),
            Refusal::NoUsableHome { home } => format!(
                "{name} has no usable home directory ({:?}): set one with `usermod -d \
                 /home/{name} -m {name}`",
                home
            ),
            Refusal::PrivilegedPrimaryGroup { group } => format!(
                "{name}'s primary group is {group}, a privileged group: give {name} a group of \
                 its own (`groupadd {name} && usermod -g {name} {name}`)"
            ),
        }
    }
}

/// A change to an account that is used for something else; made only with `--convert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversion {
    /// Set the password field to `*`; the field's state was Usable, AdminLocked or Empty.
    Password(PasswordState),
    /// Set the login shell to [`DEFAULT_SHELL`].
    Shell { from: PathBuf },
    /// Remove the account from these supplementary groups (of [`PRIVILEGED_GROUPS`]).
    Groups(Vec<String>),
}

impl Conversion {
    /// One line: what the change does, e.g. "change the login shell from /bin/bash to /bin/sh".
    pub fn describe(&self, name: &str) -> String {
        match self {
            Conversion::Password(PasswordState::Empty) => "set the password field to '*' (it is \
                 empty, so anyone may log in where password login is on: key login only)"
                .to_string(),
            Conversion::Password(PasswordState::AdminLocked) => "set the password field to '*' \
                 (replaces the admin's lock and the password behind it: key login only)"
                .to_string(),
            Conversion::Password(_) => {
                "set the password field to '*' (removes the password: key login only)".to_string()
            }
            Conversion::Shell { from } => {
                let from = if from.as_os_str().is_empty() {
                    "(empty)".to_string()
                } else {
                    from.display().to_string()
                };
                format!("change the login shell from {from} to {DEFAULT_SHELL}")
            }
            Conversion::Groups(groups) => format!(
                "remove {name} from the group{} {}",
                if groups.len() == 1 { "" } else { "s" },
                groups.join(", ")
            ),
        }
    }
}

/// A change podspawn makes to any account it may take over, without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The password field was never set (`!`…): set it to `*`.
    Unlock,
    /// The home directory does not exist: create it (owned by the account, 0750).
    CreateHome,
    /// Add the account to [`USERS_GROUP`].
    JoinUsersGroup,
}

impl Repair {
    pub fn describe(&self, facts: &AccountFacts, group: &str) -> String {
        let name = &facts.name;
        match self {
            Repair::Unlock => format!(
                "set {name}'s password field from '{}' to '*' (unlocks it; no password login)",
                facts.shadow.as_deref().unwrap_or("")
            ),
            Repair::CreateHome => format!(
                "create {name}'s home directory {} (0750)",
                facts.home.display()
            ),
            Repair::JoinUsersGroup => format!("add {name} to {group}"),
        }
    }
}

/// What podspawn would do to make an existing account a podspawn user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountPlan {
    /// Hard refusals: no flag overrides them.
    pub refusals: Vec<Refusal>,
    /// Changes that need `--convert`.
    pub conversions: Vec<Conversion>,
    /// Changes made without asking.
    pub repairs: Vec<Repair>,
    /// No /etc/shadow entry: podspawn cannot tell whether it is locked.
    pub no_shadow_entry: bool,
}

impl AccountPlan {
    /// Nothing to change, nothing refused.
    pub fn is_ready(&self) -> bool {
        self.refusals.is_empty() && self.conversions.is_empty() && self.repairs.is_empty()
    }
}

/// Classifies an existing account (pure): what podspawn refuses, what needs `--convert` and what
/// it repairs without asking.
pub fn plan_existing(facts: &AccountFacts, uid_min: u32) -> AccountPlan {
    let mut plan = AccountPlan::default();
    if facts.uid == 0 {
        plan.refusals.push(Refusal::Root);
    } else if facts.uid < uid_min || facts.uid == 65534 {
        plan.refusals.push(Refusal::SystemAccount {
            uid: facts.uid,
            uid_min,
        });
    }
    let home = &facts.home;
    if home.as_os_str().is_empty() || !home.is_absolute() || home == Path::new("/nonexistent") {
        plan.refusals
            .push(Refusal::NoUsableHome { home: home.clone() });
    }
    if PRIVILEGED_GROUPS.contains(&facts.primary_group.as_str()) {
        plan.refusals.push(Refusal::PrivilegedPrimaryGroup {
            group: facts.primary_group.clone(),
        });
    }

    match facts.shadow.as_deref().map(password_state) {
        None => plan.no_shadow_entry = true,
        Some(PasswordState::NoPassword) => {}
        Some(PasswordState::NeverSet) => plan.repairs.push(Repair::Unlock),
        Some(s) => plan.conversions.push(Conversion::Password(s)),
    }
    if facts.shell != Path::new(DEFAULT_SHELL) {
        plan.conversions.push(Conversion::Shell {
            from: facts.shell.clone(),
        });
    }
    let mut privileged: Vec<String> = facts
        .groups
        .iter()
        .filter(|g| PRIVILEGED_GROUPS.contains(&g.as_str()) && **g != facts.primary_group)
        .cloned()
        .collect();
    privileged.sort();
    privileged.dedup();
    if !privileged.is_empty() {
        plan.conversions.push(Conversion::Groups(privileged));
    }

    if !facts.home_exists
        && !plan
            .refusals
            .iter()
            .any(|r| matches!(r, Refusal::NoUsableHome { .. }))
    {
        plan.repairs.push(Repair::CreateHome);
    }
    if facts.primary_group != USERS_GROUP && !facts.groups.iter().any(|g| g == USERS_GROUP) {
        plan.repairs.push(Repair::JoinUsersGroup);
    }
    plan
}

/// The account problems a caller branches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// An invalid or reserved name.
    Name(String),
    /// Never taken over (root, system account, ...).
    Refused {
        name: String,
        refusals: Vec<Refusal>,
    },
    /// Used for something else: these changes need `--convert`.
    NeedsConvert {
        name: String,
        conversions: Vec<Conversion>,
    },
    /// No user but a group of that name: `useradd --user-group` cannot create the account.
    GroupExists { name: String },
    /// Reading the account databases or running a shadow-utils tool failed.
    System(String),
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountError::Name(m) | AccountError::System(m) => f.write_str(m),
            AccountError::Refused { name, refusals } => {
                let why: Vec<String> = refusals.iter().map(|r| r.describe(name)).collect();
                write!(
                    f,
                    "podspawn will not take over the account {name}: {}",
                    why.join("; ")
                )
            }
            AccountError::NeedsConvert { name, conversions } => {
                write!(
                    f,
                    "the account {name} already exists and is used for something else, so \
                     nothing was changed. Making it a podspawn user would:"
                )?;
                for c in conversions {
                    write!(f, "\n  - {}", c.describe(name))?;
                }
                write!(
                    f,
                    "\nRun the same command with --convert to make exactly these changes"
                )
            }
            AccountError::GroupExists { name } => write!(
                f,
                "there is no user {name} but a group {name} exists, so `useradd --user-group` \
                 cannot create the account: remove the group, pick another name, or create the \
                 account yourself (e.g. `useradd -m -g {name} -s /bin/sh -p '*' {name}`) and run \
                 add-user again"
            ),
        }
    }
}

impl From<AccountError> for String {
    fn from(e: AccountError) -> String {
        e.to_string()
    }
}

fn sys<T>(r: Result<T, String>) -> Result<T, AccountError> {
    r.map_err(AccountError::System)
}

/// What podspawn would do to a (possibly missing) account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPlan {
    /// No such account: `useradd` it.
    Create,
    Existing {
        facts: Box<AccountFacts>,
        plan: AccountPlan,
    },
}

impl HostPlan {
    /// Refuses what no flag allows, and conversions unless `convert`.
    pub fn check(&self, name: &str, convert: bool) -> Result<(), AccountError> {
        let HostPlan::Existing { plan, .. } = self else {
            return Ok(());
        };
        if !plan.refusals.is_empty() {
            return Err(AccountError::Refused {
                name: name.to_string(),
                refusals: plan.refusals.clone(),
            });
        }
        if !plan.conversions.is_empty() && !convert {
            return Err(AccountError::NeedsConvert {
                name: name.to_string(),
                conversions: plan.conversions.clone(),
            });
        }
        Ok(())
    }
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
    check_name_allowed(name).map_err(AccountError::Name)?;
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
fn ensure_home(acct: &Account) -> Result<bool, String> {
    let home = &acct.home;
    if !home.is_absolute() || home == Path::new("/nonexistent") {
        return Err(format!(
            "{} has no usable home directory ({:?}): set one with `usermod -d /home/{0} -m {0}`",
            acct.name, home
        ));
    }
    match std::fs::symlink_metadata(home) {
        Ok(_) if home.is_dir() => Ok(false),
        Ok(_) => Err(format!(
            "{}'s home {} exists but is not a directory: move it away",
            acct.name,
            home.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::host::fs::create_parent_dirs(home)?;
            std::fs::create_dir(home)
                .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
            std::os::unix::fs::chown(home, Some(acct.uid), Some(acct.gid))
                .map_err(|e| format!("cannot chown {}: {e}", home.display()))?;
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o750))
                .map_err(|e| format!("cannot chmod {}: {e}", home.display()))?;
            Ok(true)
        }
        Err(e) => Err(format!("cannot stat {}: {e}", home.display())),
    }
}

/// The password field of `name` in shadow(5) text (pure).
pub fn parse_shadow(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next() == Some(name) {
            Some(fields.next().unwrap_or("").to_string())
        } else {
            None
        }
    })
}

/// The password field of `name` in /etc/shadow (`None`: no entry, e.g. a network account).
pub fn shadow_password(name: &str) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string("/etc/shadow")
        .map_err(|e| format!("cannot read /etc/shadow: {e} (run it with sudo)"))?;
    Ok(parse_shadow(&text, name))
}

/// `UID_MIN` from login.defs(5) text (pure).
pub fn parse_uid_min(login_defs: &str) -> Option<u32> {
    login_defs.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        match (it.next(), it.next()) {
            (Some("UID_MIN"), Some(v)) => v.parse().ok(),
            _ => None,
        }
    })
}

/// `UID_MIN` of /etc/login.defs (1000 when it does not say).
pub fn uid_min() -> u32 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|t| parse_uid_min(&t))
        .unwrap_or(1000)
}

/// Names podspawn never turns into (or deletes as) a podspawn user.
pub fn check_name_allowed(name: &str) -> Result<(), String> {
    crate::core::names::validate_user(name)?;
    if matches!(name, "root" | "nobody" | SYSTEM_USER | USERS_GROUP) {
        return Err(format!(
            "{name} is reserved and cannot be a podspawn user: pick another name"
        ));
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
pub fn remove_from_group(user: &str, group: &str) -> Result<(), String> {
    crate::core::names::validate_user(user)?;
    let Some(g) = uzers::get_group_by_name(group) else {
        return Ok(());
    };
    use uzers::os::unix::GroupExt;
    if g.members().iter().any(|m| m == user) {
        run_tool("gpasswd", &["-d", user, group])?;
    }
    if lookup(user).is_some_and(|a| a.gid == g.gid()) {
        return Err(format!(
            "{group} is {user}'s primary group: change it with `usermod -g GROUP {user}`"
        ));
    }
    Ok(())
}

/// GECOS field of an account.
fn gecos(name: &str) -> Result<Option<String>, String> {
    nix::unistd::User::from_name(name)
        .map_err(|e| format!("cannot look up {name}: {e}"))
        .map(|u| u.map(|u| u.gecos.to_string_lossy().into_owned()))
}

/// Deletes the host account with `userdel --remove`, but only if podspawn created it (its
/// GECOS/comment field is exactly `podspawn`). Returns whether it deleted it.
pub fn delete_host_account(name: &str) -> Result<bool, String> {
    check_name_allowed(name)?;
    let Some(acct) = lookup(name) else {
        return Ok(false);
    };
    if acct.uid == 0 {
        return Err(format!("{name} has uid 0: refusing to delete it"));
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
    fn password_states() {
        use PasswordState::*;
        for (field, want) in [
            ("", Empty),
            ("!", NeverSet),
            ("!!", NeverSet),
            ("!*", NeverSet),
            ("*LK*", NeverSet),
            ("!*LK*", NeverSet),
            ("!!!", NeverSet),
            ("*", NoPassword),
            ("*x", NoPassword),
            ("x", Usable),
            ("$6$salt$hash", Usable),
            ("$y$j9T$abc$def", Usable),
            ("abcdefghijklm", Usable),
            ("!$6$salt$hash", AdminLocked),
            ("!!$y$j9T$abc$def", AdminLocked),
            ("*LK*$6$salt$hash", AdminLocked),
        ] {
            assert_eq!(password_state(field), want, "{field:?}");
        }
    }

    #[test]
    fn parses_shadow_and_login_defs() {
        let shadow = "root:$6$x$y:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n\
                      alicex:*:1::::::\nbob::19000::::::\ncarol\n";
        assert_eq!(parse_shadow(shadow, "alice").as_deref(), Some("!"));
        assert_eq!(parse_shadow(shadow, "alicex").as_deref(), Some("*"));
        assert_eq!(parse_shadow(shadow, "bob").as_deref(), Some(""));
        assert_eq!(parse_shadow(shadow, "carol").as_deref(), Some(""));
        assert_eq!(parse_shadow(shadow, "ali"), None);
        assert_eq!(parse_shadow(shadow, "dave"), None);

        let defs = "# UID_MIN 5\nMAIL_DIR /var/mail\nUID_MIN\t\t 1000\nUID_MAX 60000\n";
        assert_eq!(parse_uid_min(defs), Some(1000));
        assert_eq!(parse_uid_min("SYS_UID_MIN 100\n"), None);
    }

    /// A regular account podspawn may take over as is.
    fn ready() -> AccountFacts {
        AccountFacts {
            name: "alice".into(),
            uid: 1001,
            home: "/home/alice".into(),
            home_exists: true,
            shell: DEFAULT_SHELL.into(),
            shadow: Some("*".into()),
            primary_group: "alice".into(),
            groups: vec![USERS_GROUP.into()],
        }
    }

    fn plan(f: impl FnOnce(&mut AccountFacts)) -> AccountPlan {
        let mut facts = ready();
        f(&mut facts);
        plan_existing(&facts, 1000)
    }

    #[test]
    fn a_ready_account_needs_nothing() {
        let p = plan(|_| {});
        assert!(p.is_ready(), "{p:?}");
        assert!(!p.no_shadow_entry);
        // Membership through the primary group counts too.
        let p = plan(|f| {
            f.primary_group = USERS_GROUP.into();
            f.groups.clear();
        });
        assert!(p.is_ready(), "{p:?}");
        // Unprivileged groups are none of podspawn's business.
        let p = plan(|f| f.groups.extend(["users".into(), "audio".into()]));
        assert!(p.is_ready(), "{p:?}");
    }

    #[test]
    fn never_set_passwords_missing_homes_and_groups_are_repaired_without_asking() {
        for field in ["!", "!!", "!*", "*LK*"] {
            let p = plan(|f| f.shadow = Some(field.into()));
            assert_eq!(p.repairs, vec![Repair::Unlock], "{field}");
            assert!(p.conversions.is_empty() && p.refusals.is_empty(), "{field}");
        }
        let p = plan(|f| {
            f.home_exists = false;
            f.groups.clear();
        });
        assert_eq!(p.repairs, vec![Repair::CreateHome, Repair::JoinUsersGroup]);
        assert!(p.conversions.is_empty() && p.refusals.is_empty());
        let facts = AccountFacts {
            shadow: Some("!!".into()),
            ..ready()
        };
        assert_eq!(
            Repair::Unlock.describe(&facts, USERS_GROUP),
            "set alice's password field from '!!' to '*' (unlocks it; no password login)"
        );
        assert_eq!(
            Repair::JoinUsersGroup.describe(&facts, USERS_GROUP),
            "add alice to podspawn-users"
        );
        assert_eq!(
            Repair::CreateHome.describe(&facts, USERS_GROUP),
            "create alice's home directory /home/alice (0750)"
        );
        let p = plan(|f| f.shadow = None);
        assert!(p.no_shadow_entry && p.is_ready(), "{p:?}");
    }

    #[test]
    fn accounts_used_for_something_else_need_convert() {
        use PasswordState::*;
        for (field, state, text) in [
            ("$6$salt$hash", Usable, "removes the password"),
            ("!$6$salt$hash", AdminLocked, "replaces the admin's lock"),
            ("", Empty, "it is empty"),
        ] {
            let p = plan(|f| f.shadow = Some(field.into()));
            assert_eq!(p.conversions, vec![Conversion::Password(state)], "{field}");
            assert!(p.repairs.is_empty() && p.refusals.is_empty(), "{field}");
            let d = p.conversions[0].describe("alice");
            assert!(
                d.starts_with("set the password field to '*' (") && d.contains(text),
                "{d}"
            );
        }
        assert_eq!(
            Conversion::Password(Usable).describe("alice"),
            "set the password field to '*' (removes the password: key login only)"
        );
        for shell in [
            "/bin/bash",
            "/usr/sbin/nologin",
            "/bin/false",
            "/usr/bin/sh",
            "",
        ] {
            let p = plan(|f| f.shell = shell.into());
            assert_eq!(
                p.conversions,
                vec![Conversion::Shell { from: shell.into() }],
                "{shell}"
            );
        }
        assert_eq!(
            Conversion::Shell {
                from: "/bin/bash".into()
            }
            .describe("alice"),
            "change the login shell from /bin/bash to /bin/sh"
        );
        for g in PRIVILEGED_GROUPS {
            let p = plan(|f| f.groups.push(g.to_string()));
            assert_eq!(p.conversions, vec![Conversion::Groups(vec![g.to_string()])]);
        }
        let p = plan(|f| {
            f.groups = vec![
                "sudo".into(),
                "audio".into(),
                "docker".into(),
                "sudo".into(),
            ];
            f.shell = "/bin/bash".into();
            f.shadow = Some("$y$j9T$abc$def".into());
        });
        let lines: Vec<String> = p.conversions.iter().map(|c| c.describe("alice")).collect();
        assert_eq!(
            lines,
            vec![
                "set the password field to '*' (removes the password: key login only)",
                "change the login shell from /bin/bash to /bin/sh",
                "remove alice from the groups docker, sudo",
            ]
        );
        // Not in podspawn-users yet: that is still a repair, listed with the conversions.
        assert_eq!(p.repairs, vec![Repair::JoinUsersGroup]);
        let e = AccountError::NeedsConvert {
            name: "alice".into(),
            conversions: p.conversions.clone(),
        }
        .to_string();
        assert!(
            e.contains("\n  - change the login shell from /bin/bash to /bin/sh")
                && e.contains("--convert"),
            "{e}"
        );
    }

    #[test]
    fn root_system_accounts_homeless_and_privileged_primary_groups_are_refused() {
        let p = plan(|f| f.uid = 0);
        assert_eq!(p.refusals, vec![Refusal::Root]);
        let p = plan(|f| f.uid = 33);
        assert_eq!(
            p.refusals,
            vec![Refusal::SystemAccount {
                uid: 33,
                uid_min: 1000
            }]
        );
        assert!(p.refusals[0].describe("www").contains("below UID_MIN 1000"));
        let p = plan(|f| f.uid = 65534);
        assert!(matches!(p.refusals[..], [Refusal::SystemAccount { .. }]));
        assert!(plan(|f| f.uid = 1000).refusals.is_empty());
        for home in ["", "relative", "/nonexistent"] {
            let p = plan(|f| {
                f.home = home.into();
                f.home_exists = false;
            });
            assert_eq!(
                p.refusals,
                vec![Refusal::NoUsableHome { home: home.into() }],
                "{home}"
            );
            assert!(!p.repairs.contains(&Repair::CreateHome));
        }
        let p = plan(|f| f.primary_group = "sudo".into());
        assert_eq!(
            p.refusals,
            vec![Refusal::PrivilegedPrimaryGroup {
                group: "sudo".into()
            }]
        );
        assert!(p.conversions.is_empty(), "{p:?}");
        assert!(p.refusals[0]
            .describe("alice")
            .contains("usermod -g alice alice"));
        // Refusals and conversions are both reported; check() puts refusals first.
        let facts = AccountFacts {
            uid: 0,
            shell: "/bin/bash".into(),
            ..ready()
        };
        let plan = plan_existing(&facts, 1000);
        let hp = HostPlan::Existing {
            facts: Box::new(facts),
            plan: plan.clone(),
        };
        assert!(matches!(
            hp.check("alice", true),
            Err(AccountError::Refused { .. })
        ));
        let facts = AccountFacts {
            shell: "/bin/bash".into(),
            ..ready()
        };
        let hp = HostPlan::Existing {
            plan: plan_existing(&facts, 1000),
            facts: Box::new(facts),
        };
        assert!(matches!(
            hp.check("alice", false),
            Err(AccountError::NeedsConvert { .. })
        ));
        assert_eq!(hp.check("alice", true), Ok(()));
        assert_eq!(HostPlan::Create.check("alice", false), Ok(()));
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
        assert_eq!(delete_host_account(&locked), Ok(false));
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
        assert_eq!(delete_host_account(&created), Ok(true));
        assert!(lookup(&created).is_none());
        assert!(!home.exists());
        assert_eq!(delete_host_account(&created), Ok(false));
    }
}
