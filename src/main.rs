//! Thin entry point: all logic lives in the library (`podspawn::cli`).
fn main() -> std::process::ExitCode {
    podspawn::cli::main()
}
