//! The `cachevault` binary: parse arguments, dispatch to the library, render, exit code.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
