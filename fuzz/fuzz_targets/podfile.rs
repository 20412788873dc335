#![no_main]
//! See `podspawn::fuzzing::podfile`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podspawn::fuzzing::podfile(data) {
        panic!("invariant broken: {e}");
    }
});
