//! The libpam glue: the exported `pam_sm_*` hooks and `Pam` over a real `pam_handle_t`.
//!
//! Rules: no panic or unwind crosses into C (every hook body runs under `catch_unwind`); nothing
//! is printed (sshd's client could see it): pam_syslog only; no threads, no global state.

use crate::args::{self, Parsed};
use crate::decide::{PAM_IGNORE, PAM_SESSION_ERR, PAM_SUCCESS};
use crate::session::{self, Lease, Pam, LOG_ERR};
use libc::{c_char, c_int, c_void};
use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `pam_handle_t` is opaque.
type PamHandle = c_void;
type Cleanup = unsafe extern "C" fn(pamh: *mut PamHandle, data: *mut c_void, error_status: c_int);

/// PAM item types (security/_pam_types.h).
const PAM_SERVICE: c_int = 1;

/// The pam_set_data key of the lease.
const LEASE_KEY: &CStr = c"podspawn-lease";

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
        -> c_int;
    fn pam_set_data(
        pamh: *mut PamHandle,
        module_data_name: *const c_char,
        data: *mut c_void,
        cleanup: Option<Cleanup>,
    ) -> c_int;
    fn pam_get_data(
        pamh: *const PamHandle,
        module_data_name: *const c_char,
        data: *mut *const c_void,
    ) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

/// A live handle from libpam, valid for the duration of one hook call.
struct Handle(*mut PamHandle);

impl Handle {
    fn has_lease(&self) -> bool {
        let mut data: *const c_void = std::ptr::null();
        // SAFETY: self.0 is the handle libpam passed to this hook; LEASE_KEY is NUL-terminated;
        // `data` is a valid out-pointer.
        let rc = unsafe { pam_get_data(self.0, LEASE_KEY.as_ptr(), &mut data) };
        rc == PAM_SUCCESS && !data.is_null()
    }
}

/// libpam's cleanup of the stored lease (at pam_set_data replacing it, or pam_end): closes the
/// broker connection.
unsafe extern "C" fn drop_lease(_pamh: *mut PamHandle, data: *mut c_void, _error_status: c_int) {
    let _ = catch_unwind(|| {
        if !data.is_null() {
            // SAFETY: the only data ever stored under LEASE_KEY is a Box<Lease> leaked by
            // store_lease, and libpam calls this cleanup exactly once per stored pointer.
            drop(unsafe { Box::from_raw(data.cast::<Lease>()) });
        }
    });
}

impl Pam for Handle {
    fn service(&self) -> Option<String> {
        let mut item: *const c_void = std::ptr::null();
        // SAFETY: valid handle (see Handle) and out-pointer.
        let rc = unsafe { pam_get_item(self.0, PAM_SERVICE, &mut item) };
        if rc != PAM_SUCCESS || item.is_null() {
            return None;
        }
        // SAFETY: PAM_SERVICE is a NUL-terminated string owned by libpam, alive while the handle is.
        let s = unsafe { CStr::from_ptr(item.cast::<c_char>()) };
        Some(s.to_string_lossy().into_owned())
    }

    fn user(&self) -> Result<Vec<u8>, String> {
        let mut user: *const c_char = std::ptr::null();
        // SAFETY: valid handle and out-pointer; a NULL prompt means libpam's default.
        let rc = unsafe { pam_get_user(self.0, &mut user, std::ptr::null()) };
        if rc != PAM_SUCCESS {
            return Err(format!("pam_get_user failed (PAM error {rc})"));
        }
        if user.is_null() {
            return Err("pam_get_user gave no user".into());
        }
        // SAFETY: on success `user` is a NUL-terminated string owned by libpam.
        let name = unsafe { CStr::from_ptr(user) }.to_bytes().to_vec();
        if name.is_empty() {
            return Err("empty user name".into());
        }
        Ok(name)
    }

    fn log(&self, priority: i32, msg: &str) {
        let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: valid handle; the format is a constant "%s" consuming exactly one C string.
        unsafe { pam_syslog(self.0, priority, c"%s".as_ptr(), msg.as_ptr()) };
    }

    fn join(&self, netns: &OwnedFd) -> Result<(), String> {
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
    }

    fn store_lease(&self, lease: Lease) -> Result<(), String> {
        let data = Box::into_raw(Box::new(lease));
        // SAFETY: valid handle, NUL-terminated key; on success libpam owns `data` and hands it back
        // to drop_lease exactly once.
        let rc = unsafe {
            pam_set_data(
                self.0,
                LEASE_KEY.as_ptr(),
                data.cast::<c_void>(),
                Some(drop_lease),
            )
        };
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            // SAFETY: libpam did not take `data`: it is still ours, from Box::into_raw above.
            drop(unsafe { Box::from_raw(data) });
            Err(format!("pam_set_data failed (PAM error {rc})"))
        }
    }

    fn release_lease(&self) -> bool {
        if !self.has_lease() {
            return false;
        }
        // SAFETY: valid handle and key. Replacing the entry makes libpam call the old cleanup
        // (drop_lease), which closes the connection; the new entry holds nothing.
        let rc = unsafe { pam_set_data(self.0, LEASE_KEY.as_ptr(), std::ptr::null_mut(), None) };
        rc == PAM_SUCCESS
    }
}

/// The module arguments; `None` for ones that are not UTF-8.
///
/// # Safety
/// `argv` holds `argc` NUL-terminated strings (or is NULL), as libpam passes them.
unsafe fn parse_argv(argc: c_int, argv: *const *const c_char) -> Parsed {
    let n = if argv.is_null() {
        0
    } else {
        usize::try_from(argc).unwrap_or(0)
    };
    let mut list: Vec<Option<&str>> = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i < argc, and libpam's argv has argc entries.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            list.push(None);
            continue;
        }
        // SAFETY: each entry is a NUL-terminated string alive for this call.
        list.push(unsafe { CStr::from_ptr(p) }.to_str().ok());
    }
    args::parse(list)
}

/// Runs a hook body; a panic is logged and answered with `on_panic`.
fn guarded(pamh: *mut PamHandle, on_panic: c_int, body: impl FnOnce(&Handle) -> c_int) -> c_int {
    if pamh.is_null() {
        return on_panic;
    }
    let h = Handle(pamh);
    match catch_unwind(AssertUnwindSafe(|| body(&h))) {
        Ok(rc) => rc,
        Err(_) => {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                h.log(LOG_ERR, "internal error (panic) in pam_podspawn")
            }));
            on_panic
        }
    }
}

/// PAM's session hook: join the member's network namespace (see the crate docs).
///
/// # Safety
/// Called by libpam with a valid handle and argument vector.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guarded(pamh, PAM_SESSION_ERR, |h| {
        // SAFETY: argc/argv come from libpam as they are.
        let parsed = unsafe { parse_argv(argc, argv) };
        session::open(h, &parsed)
    })
}

/// PAM's session hook: end the lease.
///
/// # Safety
/// Called by libpam with a valid handle and argument vector.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_close_session(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guarded(pamh, PAM_IGNORE, |h| {
        // SAFETY: argc/argv come from libpam as they are.
        let parsed = unsafe { parse_argv(argc, argv) };
        session::close(h, &parsed)
    })
}

/// Not an auth module: PAM_IGNORE, harmless in any stack.
#[no_mangle]
pub extern "C" fn pam_sm_authenticate(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// Not an auth module: PAM_IGNORE.
#[no_mangle]
pub extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

/// Not an account module: PAM_IGNORE.
#[no_mangle]
pub extern "C" fn pam_sm_acct_mgmt(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    PAM_IGNORE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_from_c() {
        let a = c"debug";
        let b = c"timeout=5";
        let bad = c"\xff";
        let v = [a.as_ptr(), b.as_ptr(), bad.as_ptr(), std::ptr::null()];
        // SAFETY: four valid (or NULL) entries.
        let p = unsafe { parse_argv(4, v.as_ptr()) };
        assert!(p.args.debug);
        assert_eq!(p.args.timeout, std::time::Duration::from_secs(5));
        assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
        // SAFETY: NULL argv is accepted whatever argc says.
        let p = unsafe { parse_argv(3, std::ptr::null()) };
        assert!(p.ok());
        // SAFETY: a negative count reads nothing.
        let p = unsafe { parse_argv(-1, v.as_ptr()) };
        assert!(p.ok());
    }

    #[test]
    fn null_handle_is_not_touched() {
        // SAFETY: a NULL handle is refused before anything reads it.
        let rc = unsafe { pam_sm_open_session(std::ptr::null_mut(), 0, 0, std::ptr::null()) };
        assert_eq!(rc, PAM_SESSION_ERR);
        // SAFETY: as above.
        let rc = unsafe { pam_sm_close_session(std::ptr::null_mut(), 0, 0, std::ptr::null()) };
        assert_eq!(rc, PAM_IGNORE);
    }
}
