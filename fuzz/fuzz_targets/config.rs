#![no_main]
//! See `podspawn::fuzzing::config`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podspawn::fuzzing::config(data) {
        panic!("invariant broken: {e}");
    }
});
