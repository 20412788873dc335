//! The host system: accounts, logging, systemd integration.

pub mod accounts;
pub mod logging;
pub mod nixos;
pub mod systemd;
