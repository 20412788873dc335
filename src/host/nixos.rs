//! NixOS: podspawn users are declared in the system configuration (`services.podspawn.users`),
//! and `nixos-rebuild` writes their accounts and key files. `add-user` and `remove-user` would
//! change what the next rebuild puts back, so they refuse and say where users are declared.
use std::path::Path;

/// The file NixOS creates on every system it manages.
pub const NIXOS_MARKER: &str = "/etc/NIXOS";

/// This host is NixOS: `command` (add-user, remove-user) leaves users to its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedByNixos {
    pub command: String,
}

impl std::fmt::Display for ManagedByNixos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&message(&self.command))
    }
}

impl std::error::Error for ManagedByNixos {}

/// For callers that print the error (`?` where the error type is `String`).
impl From<ManagedByNixos> for String {
    fn from(e: ManagedByNixos) -> Self {
        e.to_string()
    }
}

/// `Err` with the explanation when this host is NixOS; `command` is the refusing command's name.
pub fn refuse_user_changes(command: &str) -> Result<(), ManagedByNixos> {
    refuse_user_changes_if(command, Path::new(NIXOS_MARKER))
}

fn refuse_user_changes_if(command: &str, marker: &Path) -> Result<(), ManagedByNixos> {
    if marker.exists() {
        Err(ManagedByNixos {
            command: command.to_string(),
        })
    } else {
        Ok(())
    }
}

fn message(command: &str) -> String {
    format!(
        "{command} does not change users on NixOS ({NIXOS_MARKER} exists): podspawn users are \
         declared in the configuration, e.g. services.podspawn.users.alice.keys = \
         [ \"ssh-ed25519 AAAA... alice@laptop\" ]; (remove the entry to remove the user), \
         then run nixos-rebuild switch"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_where_users_are_declared() {
        let m = message("add-user");
        assert!(
            m.starts_with("add-user does not change users on NixOS"),
            "{m}"
        );
        assert!(m.contains("services.podspawn.users.alice.keys"), "{m}");
        assert!(m.contains("nixos-rebuild switch"), "{m}");
        assert!(message("remove-user").starts_with("remove-user "));
    }

    #[test]
    fn refuses_only_where_the_marker_exists() {
        let dir = std::env::temp_dir().join(format!("podspawn-nixos-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("NIXOS");
        let _ = std::fs::remove_file(&marker);
        assert_eq!(refuse_user_changes_if("add-user", &marker), Ok(()));
        std::fs::write(&marker, "").unwrap();
        let e = refuse_user_changes_if("add-user", &marker).unwrap_err();
        assert_eq!(e.command, "add-user");
        assert_eq!(e.to_string(), message("add-user"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
