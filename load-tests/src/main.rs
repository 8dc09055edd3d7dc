//! `mistralrs-load`: load scenarios against a running server on 127.0.0.1.
//!
//! Every scenario runs a bounded number of clients for a bounded time and prints a
//! JSON summary on stdout (and writes it with `--out`).

mod chart;
mod echo_server;
mod mcp_client;
mod mcp_forward;
mod mcp_sessions;
mod openai_stream;
mod proc_stat;
mod soak_faults;
mod stats;

use std::path::Path;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

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
    /// The same MCP tool call through several endpoints (an upstream directly,
    /// this server's /mcp/stream, peer gateways), alternating, in one run.
    McpForward(mcp_forward::Args),
    /// Many MCP sessions at once (ramped), each initializing, listing tools and
    /// calling a tool in a loop; server memory per stage.
    McpSessions(mcp_sessions::Args),
    /// Mixed load while upstreams are killed, clients hang up and malformed
    /// requests arrive; then checks nothing was lost or leaked.
    SoakFaults(soak_faults::Args),
    /// Not a load: an MCP server with one `echo` tool at 127.0.0.1:PORT/mcp, a
    /// steady upstream for `mcp-forward`.
    EchoServer(echo_server::Args),
}

/// Refuses any URL whose host is not a loopback address: load stays on this machine.
fn require_loopback(url: &str) -> anyhow::Result<()> {
    let host = reqwest::Url::parse(url)
        .with_context(|| format!("URL {url}"))?
        .host_str()
        .unwrap_or_default()
        .to_owned();
    if !["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()) {
        bail!("load is only sent to loopback, not {host}");
    }
    Ok(())
}

/// Prints the summary as JSON; with `out`, writes it there and the chart
/// beside it (same name, `.png`). Without the chart's font the PNG is skipped
/// with a warning: the numbers are what the run was for.
fn emit(
    summary: &impl Serialize,
    out: Option<&Path>,
    chart: &chart::Chart<'_>,
) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(summary)?;
    println!("{text}");
    if let Some(out) = out {
        std::fs::write(out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
        match chart::register_font() {
            Ok(()) => chart::draw(&out.with_extension("png"), chart)?,
            Err(e) => eprintln!("warning: no chart drawn: {e:#}"),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::OpenaiStream(args) => openai_stream::run(args).await,
        Scenario::McpForward(args) => mcp_forward::run(args).await,
        Scenario::McpSessions(args) => mcp_sessions::run(args).await,
        Scenario::SoakFaults(args) => soak_faults::run(args).await,
        Scenario::EchoServer(args) => echo_server::run(args).await,
    }
}
