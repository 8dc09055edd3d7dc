//! `mcp-sessions`: many MCP sessions held at once, each calling a tool in a loop.
//!
//! Stages ramp the session count (`--sessions 100,1000,10000`). In each stage
//! every session initializes and lists the tools (opened in waves so that the
//! handshakes do not all time out together), then all of them call the tool back
//! to back for `--seconds`; then every session is closed (DELETE) before the
//! next stage. Calls in flight are capped (`--max-in-flight`), so that large
//! stages measure sessions held rather than file descriptors. Per stage the summary holds the sessions held, calls/s,
//! p50/p95/p99, errors by kind and the server's peak RSS (from `/proc`, with
//! `--server-pid`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rmcp::model::JsonObject;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::chart::{Chart, Series};
use crate::mcp_client::{self, Outcome, Session};
use crate::stats::Percentiles;

/// Sessions initializing at once.
const OPEN_CONCURRENCY: usize = 64;

/// Options of the scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The MCP endpoint (`http://127.0.0.1:4322/mcp/stream`); loopback only.
    #[arg(long)]
    url: String,
    /// Bearer key for the endpoint.
    #[arg(long)]
    key: Option<String>,
    /// Session counts of the stages, comma-separated (each at most 20,000).
    #[arg(long, default_value = "100,1000,10000", value_delimiter = ',')]
    sessions: Vec<usize>,
    /// Seconds of calls per stage (at most 600).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The tool each session calls.
    #[arg(long, default_value = "chat")]
    tool: String,
    /// Its arguments, a JSON object.
    #[arg(
        long,
        default_value = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}"#
    )]
    arguments: String,
    /// Calls in flight at once across all sessions: each session holds an open
    /// stream, and every call needs one more connection on both sides.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// The server's process id, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the JSON summary here too.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// One stage.
#[derive(Debug, Serialize)]
struct Stage {
    sessions: usize,
    /// Sessions that initialized and listed tools.
    sessions_held: usize,
    open_seconds: f64,
    calls: usize,
    calls_per_second: f64,
    latency: Percentiles,
    /// Failed session opens (`open`) and calls by outcome.
    errors: BTreeMap<&'static str, usize>,
    /// Peak resident memory of the server during the stage, MiB.
    server_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    tool: String,
    seconds_per_stage: u64,
    stages: Vec<Stage>,
}

/// Opens `count` sessions, at most [`OPEN_CONCURRENCY`] at a time, each also
/// listing the tools; the ones that failed are counted.
async fn open_all(args: &Args, http: &reqwest::Client, count: usize) -> (Vec<Session>, usize) {
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (gate, http) = (Arc::clone(&gate), http.clone());
            let (url, key) = (args.url.clone(), args.key.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                let session = mcp_client::open(http, &url, key.as_deref()).await.ok()?;
                session.list_all_tools().await.ok()?;
                Some(session)
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(count);
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Some(session)) => sessions.push(session),
            _ => failed += 1,
        }
    }
    (sessions, failed)
}

/// Every session calls the tool until `deadline`, at most `max_in_flight` at once.
async fn call_all(
    sessions: &[Session],
    tool: &str,
    arguments: &JsonObject,
    deadline: Instant,
    max_in_flight: usize,
) -> (Vec<f64>, BTreeMap<&'static str, usize>) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let tasks: Vec<_> = sessions
        .iter()
        .map(|session| {
            let peer = session.peer().clone();
            let (tool, arguments) = (tool.to_owned(), arguments.clone());
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors: BTreeMap<&'static str, usize> = BTreeMap::new();
                while Instant::now() < deadline {
                    let Ok(_permit) = in_flight.acquire().await else {
                        break;
                    };
                    match mcp_client::call(&peer, &tool, &arguments).await {
                        (Outcome::Ok, seconds) => latencies.push(seconds),
                        (outcome, _) => *errors.entry(outcome.label()).or_default() += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<&'static str, usize> = BTreeMap::new();
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            for (kind, n) in e {
                *errors.entry(kind).or_default() += n;
            }
        }
    }
    (latencies, errors)
}

async fn stage(args: &Args, http: &reqwest::Client, count: usize) -> anyhow::Result<Stage> {
    let arguments = mcp_client::arguments(&args.arguments)?;
    let peak = Arc::new(std::sync::Mutex::new(None::<f64>));
    let sampler = args.server_pid.map(|pid| {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                if let (Some(rss), Ok(mut peak)) = (crate::proc_stat::rss_mib(pid), peak.lock()) {
                    *peak = Some(peak.map_or(rss, |p: f64| p.max(rss)));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let opened = Instant::now();
    let (sessions, failed_opens) = open_all(args, http, count).await;
    let open_seconds = opened.elapsed().as_secs_f64();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let (latencies, mut errors) = call_all(
        &sessions,
        &args.tool,
        &arguments,
        deadline,
        args.max_in_flight,
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    if failed_opens > 0 {
        errors.insert("open", failed_opens);
    }
    let held = sessions.len();
    for session in sessions {
        let _ = session.cancel().await;
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let calls = latencies.len();
    let server_rss_mib = peak.lock().ok().and_then(|p| *p);
    Ok(Stage {
        sessions: count,
        sessions_held: held,
        open_seconds,
        calls,
        calls_per_second: calls as f64 / elapsed.max(1e-9),
        latency: Percentiles::of(latencies),
        errors,
        server_rss_mib,
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    crate::require_loopback(&args.url)?;
    if args.seconds == 0 || args.seconds > 600 {
        bail!("--seconds must be 1-600");
    }
    if args.sessions.iter().any(|&n| n == 0 || n > 20_000) || args.max_in_flight == 0 {
        bail!("--sessions stages must be 1-20000 and --max-in-flight at least 1");
    }
    mcp_client::arguments(&args.arguments)?;
    let http = reqwest::Client::new();
    let mut stages = Vec::new();
    for &count in &args.sessions {
        stages.push(stage(&args, &http, count).await?);
    }
    let summary = Summary {
        scenario: "mcp-sessions",
        tool: args.tool.clone(),
        seconds_per_stage: args.seconds,
        stages,
    };
    let line = |name: &str, pick: fn(&Percentiles) -> f64| Series {
        name: name.into(),
        points: summary
            .stages
            .iter()
            .map(|s| (s.sessions as f64, pick(&s.latency)))
            .collect(),
    };
    let chart = Chart {
        title: &format!(
            "mcp-sessions: `{}` calls while sessions are held",
            summary.tool
        ),
        x_label: "sessions",
        y_label: "ms",
        log_x: true,
        series: vec![
            line("p50", |p| p.p50_ms),
            line("p95", |p| p.p95_ms),
            line("p99", |p| p.p99_ms),
        ],
    };
    crate::emit(&summary, args.out.as_deref(), &chart)
}
