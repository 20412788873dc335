//! Registered users' host accounts.
use super::{Check, USERS_CHECK};
use crate::host::accounts;

/// What doctor knows about a registered user's host account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub name: String,
    /// `None`: no such account.
    pub account: Option<accounts::AccountFacts>,
}

/// Every registered user (a key file) has a host account in the state `server-setup --users`
/// leaves it in: judged by [`accounts::plan_existing`], the rules add-user and server-setup use.
pub fn check_users(users: &[UserFacts], uid_min: u32) -> Check {
    let mut fails: Vec<String> = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    let mut warns: Vec<String> = Vec::new();
    let mut reconcile = false;
    for u in users {
        let n = &u.name;
        let Some(a) = &u.account else {
            fails.push(format!("{n} has no host account"));
            reconcile = true;
            continue;
        };
        let plan = accounts::plan_existing(a, uid_min);
        if !plan.refusals.is_empty() {
            for r in &plan.refusals {
                fails.push(r.describe(n));
                fixes.push(refusal_fix(n, r));
            }
            continue;
        }
        if !plan.conversions.is_empty() {
            let what: Vec<String> = plan.conversions.iter().map(|c| c.describe(n)).collect();
            fails.push(format!(
                "{n} is used for something else, so podspawn left it unchanged; converting it \
                 would {}",
                what.join(", ")
            ));
            fixes.push(format!("sudo podspawn add-user {n} --convert"));
        } else if !plan.repairs.is_empty() {
            let what: Vec<String> = plan
                .repairs
                .iter()
                .map(|r| r.describe(a, accounts::USERS_GROUP))
                .collect();
            fails.push(format!("{n} needs: {}", what.join(", ")));
            reconcile = true;
        }
        if plan.no_shadow_entry {
            warns.push(format!(
                "{n} has no readable /etc/shadow entry (a network account? run doctor with sudo): \
                 make sure it is not locked"
            ));
        }
    }
    if reconcile {
        fixes.insert(0, "sudo podspawn server-setup --users".to_string());
    }
    if !fails.is_empty() {
        let mut detail = fails.join("; ");
        if !warns.is_empty() {
            detail.push_str(&format!("; also: {}", warns.join("; ")));
        }
        return Check::fail(USERS_CHECK, detail, fixes.join(" && "));
    }
    if !warns.is_empty() {
        return Check::warn(USERS_CHECK, warns.join("; "), None);
    }
    Check::pass(
        USERS_CHECK,
        format!(
            "{} registered user(s) with usable host accounts",
            users.len()
        ),
    )
}

/// The command that gets rid of a refused account's problem.
fn refusal_fix(name: &str, r: &accounts::Refusal) -> String {
    match r {
        accounts::Refusal::NoUsableHome { .. } => {
            format!("sudo usermod -d /home/{name} -m {name}")
        }
        accounts::Refusal::PrivilegedPrimaryGroup { .. } => {
            format!("sudo groupadd {name} && sudo usermod -g {name} {name}")
        }
        accounts::Refusal::Root | accounts::Refusal::SystemAccount { .. } => format!(
            "sudo podspawn remove-user {name}   # and register the keys under a regular account"
        ),
    }
}
