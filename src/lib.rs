//! podspawn: every registered SSH user gets their own Docker container behind the host's OpenSSH.
//!
//! Process split (see DESIGN.md): `auth-keys` (sshd's AuthorizedKeysCommand, synchronous, no Docker),
//! `spawn` (the forced command, unprivileged, talks only to the broker socket) and `serve` (the broker,
//! the only process with Docker access and the state database).

pub mod cli;
pub mod commands;
pub mod core;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod roles;
pub mod store;
#[cfg(test)]
pub mod test_support;
