use std::process::ExitCode;

fn main() -> ExitCode {
    egressgen::cli::main()
}
