//! The container engine (Docker through bollard).

mod docker;
pub use docker::*;
