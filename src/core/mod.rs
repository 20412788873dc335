//! Pure logic, no I/O: session decisions, names, the broker protocol, configuration, metrics text.

pub mod account_policy;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod names;
pub mod pass;
pub mod podfile;
pub mod projects;
pub mod protocol;
pub mod session;
pub mod sshd_config;
