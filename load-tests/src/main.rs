//! `mistralrs-load`: load scenarios against a running server on 127.0.0.1.
//!
//! Every scenario runs a bounded number of clients for a bounded time and prints a
//! JSON summary on stdout (and writes it with `--out`).

mod openai_stream;
mod stats;

use clap::{Parser, Subcommand};

/// Load scenarios for mistralrs-server.
#[derive(Debug, Parser)]
#[command(name = "mistralrs-load")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N concurrent streaming chat clients; TTFT and inter-token latency are timed
    /// per SSE event.
    OpenaiStream(openai_stream::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::OpenaiStream(args) => openai_stream::run(args).await,
    }
}
