#![no_main]
//! See `podspawn::fuzzing::protocol_stream`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = podspawn::fuzzing::protocol_stream(data) {
        panic!("invariant broken: {e}");
    }
});
