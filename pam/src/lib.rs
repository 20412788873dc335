//! pam_podspawn.so, podspawn's PAM session module (see Cargo.toml and DESIGN.md, "Confinement").
//!
//! In sshd's privileged process, right before the user's child is forked, `pam_sm_open_session`
//! asks the broker for the network namespace of a podspawn-users member's containers, joins it with
//! setns(CLONE_NEWNET) — so every -L/-R/-D forward of that connection opens inside it — and keeps
//! the broker connection open as a lease until `pam_sm_close_session`. Everyone else: PAM_IGNORE.
//!
//! - `args`: the module arguments of the PAM line.
//! - `decide`: whom to act for, from plain facts.
//! - `broker`: the bounded Netns exchange.
//! - `session`: the open/close flow over a `Pam` trait.
//! - `ffi`: the libpam glue and the exported pam_sm_* symbols (never panic, never print).

pub mod args;
pub mod broker;
pub mod decide;
mod ffi;
pub mod session;
