//! Whom the module acts for, decided from plain facts (no libpam, no broker): testable as is.

use crate::args::Parsed;
use std::ffi::OsStr;
use uzers::os::unix::GroupExt;

/// PAM return codes (Linux-PAM, security/_pam_types.h).
pub const PAM_SUCCESS: i32 = 0;
pub const PAM_SERVICE_ERR: i32 = 3;
pub const PAM_SYSTEM_ERR: i32 = 4;
pub const PAM_SESSION_ERR: i32 = 14;
pub const PAM_NO_MODULE_DATA: i32 = 18;
pub const PAM_IGNORE: i32 = 25;

/// What the host's account database says about the session's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFacts {
    /// libpam could not tell who the user is (pam_get_user failed): the reason.
    Unavailable(String),
    /// No such account.
    Unknown,
    /// uid 0, whatever the name.
    Root,
    /// The group does not exist: nobody is a member.
    NoGroup,
    NotMember,
    Member,
}

/// What `pam_sm_open_session` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// PAM_IGNORE. `note`: something the admin should read in the log, if any.
    Ignore {
        why: &'static str,
        note: Option<String>,
    },
    /// Ask the broker for the user's network namespace and join it.
    Act,
    /// PAM_SESSION_ERR without asking the broker: the reason, for the log.
    Refuse(String),
}

/// Whether the session's PAM service is one the module acts for. Unknown services (the argument
/// was malformed) count as listed: members fail closed rather than open.
pub fn service_listed(parsed: &Parsed, service: Option<&str>) -> bool {
    if !parsed.services_known {
        return true;
    }
    match service {
        Some(s) => parsed.args.services.iter().any(|l| l == s),
        None => false,
    }
}

/// The open-session decision. `user` is only consulted when the service is listed.
pub fn decide(parsed: &Parsed, service: Option<&str>, user: &UserFacts) -> Decision {
    let bad_args = (!parsed.ok()).then(|| parsed.errors.join("; "));
    if !service_listed(parsed, service) {
        return Decision::Ignore {
            why: "service not listed",
            note: bad_args.map(|e| format!("bad module arguments: {e}")),
        };
    }
    let ignore = |why| Decision::Ignore {
        why,
        note: bad_args
            .clone()
            .map(|e| format!("bad module arguments (ignored for this user): {e}")),
    };
    match user {
        UserFacts::Unavailable(e) => Decision::Refuse(format!("cannot tell the user: {e}")),
        UserFacts::Root => ignore("root"),
        UserFacts::Unknown => ignore("no such user"),
        UserFacts::NotMember => ignore("not a member of the group"),
        UserFacts::NoGroup => Decision::Ignore {
            why: "no such group",
            note: Some(match &bad_args {
                Some(e) => format!(
                    "group {:?} does not exist; bad module arguments: {e}",
                    parsed.args.group
                ),
                None => format!("group {:?} does not exist", parsed.args.group),
            }),
        },
        UserFacts::Member => match bad_args {
            Some(e) => Decision::Refuse(format!(
                "bad module arguments, refusing the session of a {} member: {e}",
                parsed.args.group
            )),
            None => Decision::Act,
        },
    }
}

/// Looks the user up in the host's account database (NSS: passwd, group).
pub fn user_facts(name: &OsStr, group: &str) -> UserFacts {
    let Some(user) = uzers::get_user_by_name(name) else {
        return UserFacts::Unknown;
    };
    if user.uid() == 0 {
        return UserFacts::Root;
    }
    let Some(g) = uzers::get_group_by_name(group) else {
        return UserFacts::NoGroup;
    };
    if user.primary_group_id() == g.gid() {
        return UserFacts::Member;
    }
    // getgrouplist: the primary group and every group that lists the user.
    match uzers::get_user_groups(name, user.primary_group_id()) {
        Some(groups) if groups.iter().any(|x| x.gid() == g.gid()) => UserFacts::Member,
        Some(_) => UserFacts::NotMember,
        // getgrouplist failed: fall back on the group's own member list.
        None => {
            if g.members().iter().any(|m| m.as_os_str() == name) {
                UserFacts::Member
            } else {
                UserFacts::NotMember
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse;

    fn p(argv: &[&str]) -> Parsed {
        parse(argv.iter().map(|a| Some(*a)))
    }

    fn ignored(d: &Decision) -> bool {
        matches!(d, Decision::Ignore { .. })
    }

    #[test]
    fn service_not_listed_is_ignored_for_everyone() {
        let ok = p(&[]);
        for u in [UserFacts::Member, UserFacts::Root, UserFacts::NotMember] {
            assert!(ignored(&decide(&ok, Some("login"), &u)), "{u:?}");
            assert!(ignored(&decide(&ok, None, &u)), "{u:?}");
        }
        let listed = p(&["service=a,b"]);
        assert_eq!(
            decide(&listed, Some("b"), &UserFacts::Member),
            Decision::Act
        );
        assert!(ignored(&decide(&listed, Some("sshd"), &UserFacts::Member)));
    }

    #[test]
    fn users() {
        let ok = p(&[]);
        let s = Some("sshd");
        assert_eq!(decide(&ok, s, &UserFacts::Member), Decision::Act);
        for (u, why) in [
            (UserFacts::Root, "root"),
            (UserFacts::Unknown, "no such user"),
            (UserFacts::NotMember, "not a member of the group"),
        ] {
            assert_eq!(decide(&ok, s, &u), Decision::Ignore { why, note: None });
        }
        match decide(&ok, s, &UserFacts::NoGroup) {
            Decision::Ignore { note: Some(n), .. } => assert!(n.contains("podspawn-users"), "{n}"),
            d => panic!("{d:?}"),
        }
        match decide(&ok, s, &UserFacts::Unavailable("PAM_USER unset".into())) {
            Decision::Refuse(r) => assert!(r.contains("PAM_USER unset"), "{r}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn bad_arguments_fail_closed_for_members_only() {
        let bad = p(&["grop=devs"]);
        let s = Some("sshd");
        match decide(&bad, s, &UserFacts::Member) {
            Decision::Refuse(r) => assert!(r.contains("grop=devs"), "{r}"),
            d => panic!("{d:?}"),
        }
        for u in [UserFacts::Root, UserFacts::NotMember, UserFacts::Unknown] {
            match decide(&bad, s, &u) {
                Decision::Ignore { note: Some(n), .. } => assert!(n.contains("grop"), "{n}"),
                d => panic!("{u:?}: {d:?}"),
            }
        }
        // A service list that is known is still honoured when another argument is bad...
        assert!(ignored(&decide(&bad, Some("login"), &UserFacts::Member)));
        // ...but a malformed one acts for every service (members fail closed, not open).
        let bad_service = p(&["service=sshd,,x"]);
        assert!(matches!(
            decide(&bad_service, Some("sshd-other"), &UserFacts::Member),
            Decision::Refuse(_)
        ));
        assert!(ignored(&decide(
            &bad_service,
            Some("sshd-other"),
            &UserFacts::NotMember
        )));
    }

    #[test]
    fn facts_from_the_account_database() {
        let g = "podspawn-test-no-such-group";
        assert_eq!(
            user_facts(OsStr::new("podspawn-test-no-such-user"), g),
            UserFacts::Unknown
        );
        // root by uid, before the group is even looked up.
        assert_eq!(user_facts(OsStr::new("root"), g), UserFacts::Root);
        // Any non-root account with a primary group (Debian: daemon, nobody; others: the first
        // non-root account found) is a member of that group and not of another one.
        let Some(u) = ["daemon", "nobody", "bin"]
            .into_iter()
            .filter_map(uzers::get_user_by_name)
            .find(|u| u.uid() != 0)
        else {
            return;
        };
        let Some(pg) = uzers::get_group_by_gid(u.primary_group_id()) else {
            return;
        };
        let pg = pg.name().to_string_lossy().into_owned();
        assert_eq!(user_facts(u.name(), &pg), UserFacts::Member);
        assert_eq!(user_facts(u.name(), g), UserFacts::NoGroup);
        if let Some(other) = ["root", "sys", "adm"]
            .into_iter()
            .filter_map(uzers::get_group_by_name)
            .find(|x| x.gid() != u.primary_group_id() && !x.members().iter().any(|m| m == u.name()))
        {
            let other = other.name().to_string_lossy().into_owned();
            assert_eq!(
                user_facts(u.name(), &other),
                UserFacts::NotMember,
                "{other}"
            );
        }
    }
}
