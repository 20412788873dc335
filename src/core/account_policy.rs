//! Which host accounts podspawn may take over, and what it changes (pure). add-user, the
//! install-time reconciliation (`server-setup --users`) and doctor all decide with these rules.
pub use crate::core::names::{CREATED_MARKER, DEFAULT_SHELL, SYSTEM_USER, USERS_GROUP};
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
