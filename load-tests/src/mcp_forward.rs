//! `mcp-forward`: the same tool call through several MCP endpoints, in one run.
//!
//! Each `--target NAME=URL@TOOL` is an MCP Streamable HTTP endpoint and the name
//! the tool has there (`direct=http://127.0.0.1:3001/mcp@echo`,
//! `mistralrs=http://127.0.0.1:4322/mcp/stream@everything__echo`). For each
//! concurrency level, every target gets the same number of clients for the same
//! time, each client one MCP session (rmcp's client, opened before timing
//! starts) calling the tool. Targets are measured in rounds, alternating, so
//! that a noisy machine hurts them alike. The summary has p50/p95/p99 and
//! calls/s per target and level, and the overhead of each target over the first
//! one.
//!
//! Two ways to call, since they answer different questions:
//! - back to back (the default): each client sends its next call as soon as the
//!   last one is answered, so the load is whatever the slowest part can take.
//!   Latency then measures capacity: once the machine is saturated it is queueing
//!   (Little's law), and a target that uses more CPU shows more of it.
//! - paced (`--rate`, one level of clients, a list of rates): the clients
//!   together send that many calls per second on a fixed schedule (client `i` of
//!   `n` at `t0 + (k·n + i) / rate`). A call that is late because its client still
//!   waited for the last answer counts from when it was due, so slow answers are
//!   charged in full (no coordinated omission); a call on time counts from when
//!   it was sent, since the timer's own lateness is the load generator's. Below
//!   saturation this measures what each call costs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rmcp::model::JsonObject;
use serde::Serialize;

use crate::chart::{Chart, Series};
use crate::mcp_client::{self, Outcome, Session};
use crate::proc_stat;
use crate::stats::Percentiles;

/// Options of the scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `NAME=URL@TOOL`, repeated; the first is the baseline. Loopback URLs only.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Concurrency levels, comma-separated (each at most 256).
    #[arg(long, default_value = "1,32", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Seconds per target and level (at most 600).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds the time is split into, alternating targets.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Calls per second over all clients, on a fixed schedule, comma-separated
    /// (with one level of `--clients`); back to back when not given.
    #[arg(long = "rate", value_delimiter = ',')]
    rates: Vec<f64>,
    /// The server's process id, to report its CPU time per call on each target
    /// (the through-server targets' cost; ~0 on the others).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the JSON summary here too.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
struct Target {
    name: String,
    url: String,
    tool: String,
}

fn parse_target(spec: &str) -> anyhow::Result<Target> {
    let (name, rest) = spec
        .split_once('=')
        .with_context(|| format!("--target {spec}: expected NAME=URL@TOOL"))?;
    let (url, tool) = rest
        .rsplit_once('@')
        .with_context(|| format!("--target {spec}: expected NAME=URL@TOOL"))?;
    crate::require_loopback(url)?;
    Ok(Target {
        name: name.to_owned(),
        url: url.to_owned(),
        tool: tool.to_owned(),
    })
}

/// One target at one concurrency level.
#[derive(Debug, Serialize)]
struct Measurement {
    target: String,
    clients: usize,
    /// Calls per second over all clients, or `None` for back to back.
    rate: Option<f64>,
    calls: usize,
    errors: usize,
    calls_per_second: f64,
    latency: Percentiles,
    /// This target's p50/p95/p99 minus the baseline's, in ms.
    overhead_p50_ms: f64,
    overhead_p95_ms: f64,
    overhead_p99_ms: f64,
    /// The server's CPU time (user + system) per answered call, in µs.
    server_cpu_us_per_call: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    seconds_per_target: u64,
    rounds: u32,
    /// Whether calls were paced (`--rate`) or back to back.
    paced: bool,
    measurements: Vec<Measurement>,
}

#[derive(Default)]
struct Log {
    latencies: Vec<f64>,
    errors: usize,
    busy: Duration,
    /// The server's CPU seconds while this target was measured.
    server_cpu: Option<f64>,
}

/// `clients` MCP sessions on `target`, opened at once before any timing (a
/// gateway that starts a process per session pays for it here, not in the
/// latencies).
async fn open_sessions(
    http: &reqwest::Client,
    target: &Target,
    clients: usize,
) -> anyhow::Result<Vec<Session>> {
    let opening: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url) = (http.clone(), target.url.clone());
            tokio::spawn(async move { mcp_client::open(http, &url, None).await })
        })
        .collect();
    let mut sessions = Vec::with_capacity(clients);
    for task in opening {
        sessions.push(task.await??);
    }
    Ok(sessions)
}

/// Every session calls `tool` for `duration`: back to back, or together `rate`
/// calls per second on a fixed schedule.
async fn measure(
    sessions: &[Session],
    tool: &str,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Log> {
    let started = Instant::now();
    let deadline = started + duration;
    let clients = sessions.len();
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, session)| {
            let peer = session.peer().clone();
            let tool = tool.to_owned();
            let schedule = rate.map(|rate| Schedule::new(started, rate, clients, i));
            tokio::spawn(async move {
                let mut arguments = JsonObject::new();
                arguments.insert("message".into(), format!("load {i}").into());
                let mut log = Log::default();
                for call in 0.. {
                    let due = schedule
                        .as_ref()
                        .map_or_else(Instant::now, |schedule| schedule.due(call));
                    // Checked before waiting, so no client sleeps past the end.
                    if due >= deadline {
                        break;
                    }
                    // Behind schedule, the wait for the last answer is charged;
                    // ahead, the timer's lateness (up to a millisecond) is the
                    // load generator's, not charged.
                    let sent = if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    } else {
                        due
                    };
                    match mcp_client::call(&peer, &tool, &arguments).await {
                        (Outcome::Ok, _) => log.latencies.push(sent.elapsed().as_secs_f64()),
                        _ => log.errors += 1,
                    }
                }
                log.busy = started.elapsed();
                log
            })
        })
        .collect();
    let mut total = Log::default();
    for task in tasks {
        let log = task.await?;
        total.latencies.extend(log.latencies);
        total.errors += log.errors;
        total.busy = total.busy.max(log.busy);
    }
    Ok(total)
}

/// When one client's calls are due under `--rate`.
struct Schedule {
    start: Instant,
    /// Between two calls of this client.
    interval: Duration,
}

impl Schedule {
    /// Client `index` of `clients`, staggered so that the calls of all clients
    /// together come evenly, `rate` per second.
    fn new(start: Instant, rate: f64, clients: usize, index: usize) -> Self {
        let spacing = Duration::from_secs_f64(1.0 / rate);
        Self {
            start: start + spacing * index as u32,
            interval: spacing * clients as u32,
        }
    }

    fn due(&self, call: u32) -> Instant {
        self.start + self.interval * call
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if args.seconds == 0 || args.seconds > 600 || args.rounds == 0 {
        bail!("--seconds must be 1-600 and --rounds at least 1");
    }
    if args
        .rates
        .iter()
        .any(|&rate| !(rate > 0.0 && rate <= 1_000_000.0))
    {
        bail!("--rate must be above 0 and at most 1,000,000 calls per second");
    }
    // Each step is a number of clients and, when paced, their rate.
    let steps: Vec<(usize, Option<f64>)> = match (args.rates.as_slice(), args.clients.as_slice()) {
        ([], levels) => levels.iter().map(|&clients| (clients, None)).collect(),
        (rates, &[clients]) => rates.iter().map(|&rate| (clients, Some(rate))).collect(),
        _ => bail!("--rate needs exactly one level of --clients"),
    };
    if args.clients.iter().any(|&c| c == 0 || c > 256) {
        bail!("--clients levels must be 1-256");
    }
    let targets: Vec<Target> = args
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<anyhow::Result<_>>()?;
    let slice = Duration::from_secs_f64(args.seconds as f64 / f64::from(args.rounds));
    let http = reqwest::Client::new();
    let mut measurements = Vec::new();
    for &(clients, rate) in &steps {
        let mut sessions = Vec::with_capacity(targets.len());
        for target in &targets {
            sessions.push(open_sessions(&http, target, clients).await?);
        }
        let mut logs: BTreeMap<usize, Log> = BTreeMap::new();
        for _ in 0..args.rounds {
            for (i, target) in targets.iter().enumerate() {
                let cpu_before = args.server_pid.and_then(proc_stat::cpu_seconds);
                let log = measure(&sessions[i], &target.tool, slice, rate).await?;
                let cpu = args.server_pid.and_then(proc_stat::cpu_seconds);
                let total = logs.entry(i).or_default();
                total.latencies.extend(log.latencies);
                total.errors += log.errors;
                total.busy += log.busy;
                if let (Some(before), Some(after)) = (cpu_before, cpu) {
                    *total.server_cpu.get_or_insert(0.0) += after - before;
                }
            }
        }
        for session in sessions.into_iter().flatten() {
            let _ = session.cancel().await;
        }
        let mut baseline = None;
        for (i, target) in targets.iter().enumerate() {
            let log = logs.remove(&i).unwrap_or_default();
            let calls = log.latencies.len();
            let server_cpu_us_per_call = log
                .server_cpu
                .map(|seconds| seconds * 1e6 / calls.max(1) as f64);
            let latency = Percentiles::of(log.latencies);
            let base: Percentiles = *baseline.get_or_insert(latency);
            measurements.push(Measurement {
                target: target.name.clone(),
                clients,
                rate,
                calls,
                errors: log.errors,
                calls_per_second: calls as f64 / log.busy.as_secs_f64().max(1e-9),
                overhead_p50_ms: latency.p50_ms - base.p50_ms,
                overhead_p95_ms: latency.p95_ms - base.p95_ms,
                overhead_p99_ms: latency.p99_ms - base.p99_ms,
                server_cpu_us_per_call,
                latency,
            });
        }
    }
    let summary = Summary {
        scenario: "mcp-forward",
        seconds_per_target: args.seconds,
        rounds: args.rounds,
        paced: !args.rates.is_empty(),
        measurements,
    };
    let series = targets
        .iter()
        .map(|t| Series {
            name: format!("{} p95", t.name),
            points: summary
                .measurements
                .iter()
                .filter(|m| m.target == t.name)
                .map(|m| (m.rate.unwrap_or(m.clients as f64), m.latency.p95_ms))
                .collect(),
        })
        .collect();
    let chart = Chart {
        title: "mcp-forward: p95 of the same tool call by endpoint",
        x_label: if summary.paced {
            "calls/s over all clients (paced)"
        } else {
            "concurrent clients"
        },
        y_label: "p95 ms",
        log_x: !summary.paced,
        series,
    };
    crate::emit(&summary, args.out.as_deref(), &chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_must_be_loopback() {
        let t = parse_target("direct=http://127.0.0.1:3001/mcp@echo").unwrap();
        assert_eq!(
            (t.name.as_str(), t.url.as_str(), t.tool.as_str()),
            ("direct", "http://127.0.0.1:3001/mcp", "echo")
        );
        assert!(parse_target("x=http://example.com/mcp@echo").is_err());
        assert!(parse_target("no-tool=http://127.0.0.1:1/mcp").is_err());
    }

    #[test]
    fn paced_clients_together_call_evenly_at_the_rate() {
        let start = Instant::now();
        let clients: Vec<Schedule> = (0..4).map(|i| Schedule::new(start, 100.0, 4, i)).collect();
        let mut due: Vec<Duration> = clients
            .iter()
            .flat_map(|c| (0..3).map(|call| c.due(call) - start))
            .collect();
        due.sort();
        let expected: Vec<Duration> = (0..12).map(|k| Duration::from_millis(10) * k).collect();
        for (got, want) in due.iter().zip(&expected) {
            assert!(
                got.abs_diff(*want) < Duration::from_micros(1),
                "{got:?} vs {want:?}"
            );
        }
        assert_eq!(due.len(), expected.len());
    }
}
