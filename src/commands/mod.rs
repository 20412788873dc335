//! Admin commands: users, doctor, server-setup, verify-image.

pub mod doctor;
pub mod project;
pub mod reconcile;
pub mod server_setup;
pub mod session;
pub mod user;
pub mod verify_image;
