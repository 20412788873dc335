//! The processes sshd and systemd start: auth-keys, spawn, the broker, cleanup, the metrics endpoint.

pub mod auth_keys;
pub mod broker;
pub mod cleanup;
pub mod lifecycle;
pub mod metrics_http;
pub mod project_images;
pub mod project_services;
pub mod project_session;
pub mod spawn;
