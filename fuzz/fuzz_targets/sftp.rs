#![no_main]
//! See `podspawn_helper::fuzzing::sftp`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podspawn_helper::fuzzing::sftp(data) {
        panic!("invariant broken: {e}");
    }
});
