#![no_main]
//! See `podspawn::fuzzing::keys`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podspawn::fuzzing::keys(data) {
        panic!("invariant broken: {e}");
    }
});
