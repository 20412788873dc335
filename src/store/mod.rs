//! What podspawn keeps: state.db, per-user locks, the audit log, the key store.

pub mod audit;
pub mod keys;
pub mod locks;
pub mod projects;
pub mod state;
