//! Replays the SFTP fuzz target's seeds and every crash input found by fuzzing
//! (`fuzz/seeds/sftp/`, crash inputs named `crash-*`) through the entry point the fuzz target
//! uses. It serves them in a scratch directory that becomes this test process's working
//! directory, hence a test binary of its own with a single test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn sftp_fuzz_seeds_and_crash_inputs_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/sftp");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let mut failures = Vec::new();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        match std::panic::catch_unwind(|| podspawn_helper::fuzzing::sftp(&data)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{}: {e}", f.display())),
            Err(_) => failures.push(format!("{}: panicked", f.display())),
        }
    }
    // The entry point's scratch directory (see podspawn_helper::fuzzing).
    let scratch = std::env::temp_dir().join(format!("podspawn-fuzz-sftp-{}", std::process::id()));
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
    let _ = std::fs::remove_dir_all(scratch);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
