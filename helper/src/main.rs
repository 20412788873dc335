//! `podspawn-helper SUBCOMMAND`: a small dispatcher. Subcommands:
//!   sftp-server   SFTP v3 on stdin/stdout (OpenSSH extensions included), for images without one
//!   run           runs a session's command and records the signal that killed it (see run.rs)
#![deny(unsafe_code)]

use podspawn_helper::names::Names;
use podspawn_helper::sftp::{self, Server};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: podspawn-helper sftp-server | run STATUS_FILE -- PROGRAM [ARGS...] | --version | --help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sftp-server") => sftp_server(&args[1..]),
        Some("run") => podspawn_helper::run::run(&args[1..]),
        Some("--version" | "-V") => {
            println!("podspawn-helper {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("podspawn-helper: unknown subcommand {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("podspawn-helper: missing subcommand\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn sftp_server(args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        eprintln!("podspawn-helper sftp-server: unexpected argument {a:?}\n{USAGE}");
        return ExitCode::from(2);
    }
    // Our own descriptors for stdin and stdout, so that no std buffering sits in between:
    // the server buffers both itself.
    let (input, output) = match (
        std::io::stdin().as_fd().try_clone_to_owned(),
        std::io::stdout().as_fd().try_clone_to_owned(),
    ) {
        (Ok(i), Ok(o)) => (File::from(i), File::from(o)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("podspawn-helper sftp-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let etc_root = PathBuf::from("/");
    let home = sftp::home_dir(&Names::load(&etc_root));
    // Relative paths resolve against the home directory, as under sshd (which starts the
    // subsystem there); if it is missing, the current directory stays.
    let _ = std::env::set_current_dir(&home);
    let mut server = Server::new(etc_root, home);
    match server.serve(input, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podspawn-helper sftp-server: {e}");
            ExitCode::FAILURE
        }
    }
}
