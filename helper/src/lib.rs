//! podspawn-helper: the binary podspawn puts into every container (read-only bind mount), built
//! statically so it runs on any image and any libc. Subcommands are in `main.rs`; this library
//! holds their logic so tests (and a future fuzz target for [`wire`]) can use it.
// One `unsafe` block in the whole helper: the child's signal mask in run.rs.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod fuzzing;
pub mod names;
pub mod run;
pub mod sftp;
pub mod signal;
pub mod wire;
