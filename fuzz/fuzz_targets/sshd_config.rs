#![no_main]
//! See `podspawn::fuzzing::sshd`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podspawn::fuzzing::sshd(data) {
        panic!("invariant broken: {e}");
    }
});
