//! podspawn: every registered SSH user gets their own Docker container behind the host's OpenSSH.
//!
//! Process split (see DESIGN.md): `auth-keys` (sshd's AuthorizedKeysCommand, synchronous, no Docker),
//! `spawn` (the forced command, unprivileged, talks only to the broker socket) and `serve` (the broker,
//! the only process with Docker access and the state database).

pub mod accounts;
pub mod audit;
pub mod authkeys;
pub mod broker;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod exporter;
pub mod keys;
pub mod lifecycle;
pub mod locks;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod nixos;
pub mod protocol;
pub mod reconcile;
pub mod runtime;
pub mod session;
pub mod setup;
pub mod spawn;
pub mod state;
pub mod systemd;
pub mod users;
pub mod verify;
