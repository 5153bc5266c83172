//! The `mediafleet` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    mediafleet::cli::main()
}
