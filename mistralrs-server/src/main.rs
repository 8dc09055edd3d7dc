//! The `mistralrs-server` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mistralrs_server::cli::Cli::parse();
    match mistralrs_server::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
