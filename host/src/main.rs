//! The `stephost` binary. All logic lives in the library.

fn main() -> std::process::ExitCode {
    stephost::cli::main()
}
