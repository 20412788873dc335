//! Replays the fuzz targets' seeds and every crash input found by fuzzing (`fuzz/seeds/<target>/`,
//! crash inputs named `crash-*`) through the same entry points the fuzz targets use, so that a
//! regression shows up in `cargo test` on stable. The SFTP target is replayed by the helper's
//! own test (`helper/tests/fuzz_seeds.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

type Entry = fn(&[u8]) -> Result<(), String>;

const TARGETS: &[(&str, Entry)] = &[
    ("keys", podspawn::fuzzing::keys),
    ("config", podspawn::fuzzing::config),
    ("protocol_message", podspawn::fuzzing::protocol_message),
    ("protocol_stream", podspawn::fuzzing::protocol_stream),
    ("sshd_config", podspawn::fuzzing::sshd),
    ("podfile", podspawn::fuzzing::podfile),
];

/// One test, run sequentially: protocol_stream counts the process's open descriptors.
#[test]
fn fuzz_seeds_and_crash_inputs_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut failures = Vec::new();
    for (target, entry) in TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            match std::panic::catch_unwind(|| entry(&data)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{}: {e}", f.display())),
                Err(_) => failures.push(format!("{}: panicked", f.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
