//! pam_podspawn.so: see Cargo.toml. (Being written: the hooks return PAM_IGNORE.)
#![allow(clippy::missing_safety_doc)]

pub mod args;
pub mod broker;
pub mod decide;

const PAM_IGNORE: libc::c_int = 25;

/// PAM's session hook (being written).
#[no_mangle]
pub extern "C" fn pam_sm_open_session(
    _pamh: *mut libc::c_void,
    _flags: libc::c_int,
    _argc: libc::c_int,
    _argv: *const *const libc::c_char,
) -> libc::c_int {
    PAM_IGNORE
}

/// PAM's session hook (being written).
#[no_mangle]
pub extern "C" fn pam_sm_close_session(
    _pamh: *mut libc::c_void,
    _flags: libc::c_int,
    _argc: libc::c_int,
    _argv: *const *const libc::c_char,
) -> libc::c_int {
    PAM_IGNORE
}
