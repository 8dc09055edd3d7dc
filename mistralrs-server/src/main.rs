//! The `mistralrs-server` binary.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a forwarded MCP call allocates and frees
/// many small buffers across threads, where glibc spent ~14 % of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
