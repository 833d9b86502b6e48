//! The `flagbelt` binary: only wires the command line to `flagbelt::cli`.

fn main() -> std::process::ExitCode {
    flagbelt::cli::main()
}
