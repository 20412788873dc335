//! The host system: accounts, logging, systemd integration.

pub mod accounts;
pub mod fs;
pub mod fs_policy;
pub mod logging;
pub mod netns;
pub mod nixos;
pub mod pam;
pub mod repo;
pub mod session_dir;
pub mod sshd;
pub mod systemd;
