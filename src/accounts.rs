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

/// What to do about an existing account's /etc/shadow password field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAction {
    /// Fine for sshd (e.g. `*` or a password hash).
    Keep,
    /// Locked without a password (`!`, `!!`, `!*`, `*LK*`): set it to `*`.
    SetStar,
    /// Locked with a real password hash behind the `!`: the admin decides.
    RefuseLockedHash,
    /// Empty: passwordless login; the admin must fix it.
    RefuseEmpty,
}

/// Decides what to do for a shadow password field (pure).
pub fn password_action(field: &str) -> PasswordAction {
    if field.is_empty() {
        return PasswordAction::RefuseEmpty;
    }
    if field == "*LK*" {
        return PasswordAction::SetStar;
    }
    match field.strip_prefix('!') {
        Some(rest) if rest == "*LK*" || rest.chars().all(|c| c == '!' || c == '*') => {
            PasswordAction::SetStar
        }
        Some(_) => PasswordAction::RefuseLockedHash,
        None => PasswordAction::Keep,
    }
}

/// The message for a refused password field (`None` when it is not refused).
pub fn password_refusal(name: &str, action: PasswordAction) -> Option<String> {
    match action {
        PasswordAction::RefuseLockedHash => Some(format!(
            "the account {name} is locked but has a password (its /etc/shadow entry is '!' and a \
             hash), and sshd refuses locked accounts before podspawn is asked. Either run \
             `usermod -p '*' {name}` (discards the password: key-only login) or `usermod -U \
             {name}` (unlocks it and keeps the password), then run add-user again"
        )),
        PasswordAction::RefuseEmpty => Some(format!(
            "the account {name} has an empty password, so anyone could log in as {name} where \
             password authentication is on. Run `usermod -p '*' {name}` (disables password \
             login), then run add-user again"
        )),
        PasswordAction::Keep | PasswordAction::SetStar => None,
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

fn uid_min() -> u32 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|t| parse_uid_min(&t))
        .unwrap_or(1000)
}

/// Names podspawn never turns into (or deletes as) a podspawn user.
pub fn check_name_allowed(name: &str) -> Result<(), String> {
    crate::names::validate_user(name)?;
    if matches!(name, "root" | "nobody" | SYSTEM_USER | USERS_GROUP) {
        return Err(format!(
            "{name} is reserved and cannot be a podspawn user: pick another name"
        ));
    }
    Ok(())
}

/// Can an existing account with this uid and shell become a podspawn user? (pure)
pub fn check_existing(name: &str, uid: u32, shell: &Path, uid_min: u32) -> Result<(), String> {
    if uid == 0 {
        return Err(format!(
            "{name} has uid 0 (root): podspawn will not take over a root account"
        ));
    }
    if uid < uid_min || uid == 65534 {
        return Err(format!(
            "{name} is a system account (uid {uid}, below UID_MIN {uid_min}): podspawn only takes \
             over regular accounts; pick another name"
        ));
    }
    let base = shell.file_name().and_then(|s| s.to_str()).unwrap_or("");
    if shell.as_os_str().is_empty() || matches!(base, "nologin" | "false" | "true") {
        return Err(format!(
            "{name}'s login shell is {:?}, and sshd runs podspawn through the login shell: \
             give {name} a real shell with `usermod -s /bin/sh {name}`, then run add-user again",
            shell
        ));
    }
    Ok(())
}

/// Everything [`setup_host_account`] would refuse, checked without changing anything.
pub fn check_host_account(name: &str) -> Result<(), String> {
    check_name_allowed(name)?;
    match lookup(name) {
        None => {
            if group_gid(name).is_some() {
                return Err(format!(
                    "there is no user {name} but a group {name} exists, so `useradd --user-group` \
                     cannot create the account: remove the group, pick another name, or create \
                     the account yourself (e.g. `useradd -m -g {name} -s /bin/sh -p '*' {name}`) \
                     and run add-user again"
                ));
            }
            Ok(())
        }
        Some(acct) => {
            check_existing(name, acct.uid, &acct.shell, uid_min())?;
            if !acct.shell.is_file() {
                return Err(format!(
                    "{name}'s login shell {} does not exist: fix it with `usermod -s /bin/sh \
                     {name}`, then run add-user again",
                    acct.shell.display()
                ));
            }
            if let Some(field) = shadow_password(name)? {
                if let Some(msg) = password_refusal(name, password_action(&field)) {
                    return Err(msg);
                }
            }
            if acct.home.as_os_str().is_empty()
                || !acct.home.is_absolute()
                || acct.home == Path::new("/nonexistent")
            {
                return Err(format!(
                    "{name} has no usable home directory ({:?}): set one with `usermod -d \
                     /home/{name} -m {name}`, then run add-user again",
                    acct.home
                ));
            }
            Ok(())
        }
    }
}

/// What [`setup_host_account`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSetup {
    pub account: Account,
    pub created: bool,
    /// The password field was set to `*` (the account was locked without a password).
    pub unlocked: bool,
    pub home_created: bool,
    pub added_to_group: bool,
    /// Things the admin should know (e.g. no /etc/shadow entry).
    pub notes: Vec<String>,
}

/// Creates or repairs a podspawn user's host account (see [`setup_host_account`]).
pub fn ensure_host_account(name: &str) -> Result<Account, String> {
    setup_host_account(name).map(|s| s.account)
}

/// Creates the host account if missing (`useradd --create-home --shell /bin/sh --password '*'
/// --comment podspawn --groups podspawn-users --user-group`); for an existing one unlocks a
/// password-less lock (`usermod -p '*'`), refuses a locked password or an empty one, creates a
/// missing home (0750) and adds it to `podspawn-users`.
pub fn setup_host_account(name: &str) -> Result<AccountSetup, String> {
    setup_host_account_in(name, USERS_GROUP)
}

fn setup_host_account_in(name: &str, group: &str) -> Result<AccountSetup, String> {
    check_host_account(name)?;
    let mut setup = AccountSetup {
        account: Account {
            name: name.to_string(),
            uid: 0,
            gid: 0,
            home: PathBuf::new(),
            shell: PathBuf::new(),
        },
        created: false,
        unlocked: false,
        home_created: false,
        added_to_group: false,
        notes: Vec::new(),
    };
    if lookup(name).is_none() {
        run_tool(
            "useradd",
            &[
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
            ],
        )?;
        setup.created = true;
        setup.added_to_group = true;
    } else {
        match shadow_password(name)? {
            Some(field) => match password_action(&field) {
                PasswordAction::Keep => {}
                PasswordAction::SetStar => {
                    run_tool("usermod", &["-p", "*", name])?;
                    setup.unlocked = true;
                }
                action => {
                    return Err(password_refusal(name, action)
                        .unwrap_or_else(|| format!("{name}: unusable password field")))
                }
            },
            None => setup.notes.push(format!(
                "{name} has no entry in /etc/shadow (a network account?): make sure it is not \
                 locked, or sshd will refuse it"
            )),
        }
    }
    let account =
        lookup(name).ok_or_else(|| format!("the account {name} does not exist after useradd"))?;
    setup.home_created = ensure_home(&account)?;
    if !is_member(name, group) {
        run_tool("usermod", &["-aG", group, name])?;
        setup.added_to_group = true;
    }
    setup.account = account;
    Ok(setup)
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
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::keys::create_parent_dirs(home)?;
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
    crate::names::validate_user(user)?;
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
    fn password_actions() {
        use PasswordAction::*;
        for (field, want) in [
            ("", RefuseEmpty),
            ("!", SetStar),
            ("!!", SetStar),
            ("!*", SetStar),
            ("*LK*", SetStar),
            ("!*LK*", SetStar),
            ("!!!", SetStar),
            ("*", Keep),
            ("x", Keep),
            ("$6$salt$hash", Keep),
            ("$y$j9T$abc$def", Keep),
            ("!$6$salt$hash", RefuseLockedHash),
            ("!!$y$j9T$abc$def", RefuseLockedHash),
        ] {
            assert_eq!(password_action(field), want, "{field:?}");
        }
        let m = password_refusal("alice", RefuseLockedHash).unwrap();
        assert!(
            m.contains("usermod -p '*' alice") && m.contains("usermod -U alice"),
            "{m}"
        );
        let m = password_refusal("alice", RefuseEmpty).unwrap();
        assert!(m.contains("usermod -p '*' alice"), "{m}");
        assert!(!m.contains("-p ''"), "{m}");
        assert_eq!(password_refusal("alice", Keep), None);
        assert_eq!(password_refusal("alice", SetStar), None);
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

    #[test]
    fn existing_account_rules() {
        let sh = Path::new("/bin/bash");
        assert!(check_existing("alice", 1001, sh, 1000).is_ok());
        assert!(check_existing("x", 0, sh, 1000)
            .unwrap_err()
            .contains("uid 0"));
        assert!(check_existing("www", 33, sh, 1000)
            .unwrap_err()
            .contains("system account"));
        assert!(check_existing("n", 65534, sh, 1000).is_err());
        let e = check_existing("alice", 1001, Path::new("/usr/sbin/nologin"), 1000).unwrap_err();
        assert!(e.contains("usermod -s /bin/sh alice"), "{e}");
        assert!(check_existing("alice", 1001, Path::new("/bin/false"), 1000).is_err());
        assert!(check_existing("alice", 1001, Path::new(""), 1000).is_err());
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
        let group = format!("pstg{tag}");
        let created = format!("pstk{tag}a");
        let locked = format!("pstk{tag}b");
        let haspw = format!("pstk{tag}c");
        struct Guard(Vec<String>, String);
        impl Drop for Guard {
            fn drop(&mut self) {
                for u in &self.0 {
                    let _ = run_tool("userdel", &["--remove", u]);
                    let _ = std::fs::remove_dir_all(format!("/home/{u}"));
                }
                let _ = run_tool("groupdel", &[&self.1]);
            }
        }
        let _guard = Guard(
            vec![created.clone(), locked.clone(), haspw.clone()],
            group.clone(),
        );
        run_tool("groupadd", &[&group]).unwrap();

        // A new account: created with '*', /bin/sh, home, in the group, marked as ours.
        let s = setup_host_account_in(&created, &group).unwrap();
        assert!(s.created && s.added_to_group && !s.unlocked);
        assert_eq!(shadow_password(&created).unwrap().as_deref(), Some("*"));
        assert_eq!(s.account.shell, Path::new("/bin/sh"));
        assert!(s.account.home.is_dir());
        assert!(is_member(&created, &group));
        assert_eq!(gecos(&created).unwrap().as_deref(), Some("podspawn"));
        // Idempotent.
        let s2 = setup_host_account_in(&created, &group).unwrap();
        assert!(!s2.created && !s2.added_to_group && !s2.unlocked && !s2.home_created);

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
        let s = setup_host_account_in(&locked, &group).unwrap();
        assert!(!s.created && s.unlocked && s.home_created && s.added_to_group);
        assert_eq!(shadow_password(&locked).unwrap().as_deref(), Some("*"));
        let m = std::fs::metadata(&acct.home).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (acct.uid, acct.gid, 0o750)
        );
        // Group removal.
        remove_from_group(&locked, &group).unwrap();
        assert!(!is_member(&locked, &group));
        remove_from_group(&locked, &group).unwrap();
        // Not created by podspawn: never deleted.
        assert_eq!(delete_host_account(&locked), Ok(false));
        assert!(lookup(&locked).is_some());

        // Locked with a real hash: refused, nothing changed.
        run_tool("useradd", &["--create-home", "--shell", "/bin/sh", &haspw]).unwrap();
        run_tool("usermod", &["-p", "!$6$abcdefgh$ijklmnop", &haspw]).unwrap();
        let e = setup_host_account_in(&haspw, &group).unwrap_err();
        assert!(e.contains("usermod -U"), "{e}");
        assert!(!is_member(&haspw, &group));
        assert_eq!(
            shadow_password(&haspw).unwrap().as_deref(),
            Some("!$6$abcdefgh$ijklmnop")
        );

        // Created by podspawn: deleted with its home.
        let home = lookup(&created).unwrap().home;
        assert_eq!(delete_host_account(&created), Ok(true));
        assert!(lookup(&created).is_none());
        assert!(!home.exists());
        assert_eq!(delete_host_account(&created), Ok(false));
    }
}
