//! `openai-stream`: concurrent streaming chat clients for a fixed time.
//!
//! Each client sends `stream: true` chat requests back to back. Time to first
//! token is measured to the first SSE event with content, inter-token latency
//! between consecutive content events. The server's `/metrics` is read before and
//! after, so the summary also holds the average contended wait of every lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::chart::{Chart, Series};
use crate::stats::Percentiles;

/// Options of the scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server base URL; only loopback addresses are accepted.
    #[arg(long, default_value = "http://127.0.0.1:1234")]
    url: String,
    /// Concurrent clients (at most 256).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds to run (at most 600).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tokens per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Write the JSON summary here too.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    clients: usize,
    seconds: f64,
    requests: usize,
    errors: usize,
    requests_per_second: f64,
    tokens_per_second: f64,
    request_latency: Percentiles,
    time_to_first_token: Percentiles,
    inter_token_latency: Percentiles,
    /// Average wait of a contended acquisition per lock during the run (µs), and
    /// contentions; empty for a build without `prometheus-locks`.
    lock_wait_us: BTreeMap<String, f64>,
    lock_contentions: BTreeMap<String, f64>,
}

#[derive(Default)]
struct ClientLog {
    requests: usize,
    errors: usize,
    tokens: usize,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    itl: Vec<f64>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    crate::require_loopback(&args.url)?;
    if args.clients == 0 || args.clients > 256 || args.seconds == 0 || args.seconds > 600 {
        bail!("--clients must be 1-256 and --seconds 1-600");
    }
    let client = reqwest::Client::new();
    let before = scrape(&client, &args.url).await?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let (client, url, max_tokens) = (client.clone(), args.url.clone(), args.max_tokens);
            tokio::spawn(async move { client_loop(client, url, i, max_tokens, deadline).await })
        })
        .collect();
    let mut all = ClientLog::default();
    for task in tasks {
        let log = task.await?;
        all.requests += log.requests;
        all.errors += log.errors;
        all.tokens += log.tokens;
        all.latency.extend(log.latency);
        all.ttft.extend(log.ttft);
        all.itl.extend(log.itl);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = scrape(&client, &args.url).await?;
    let (lock_wait_us, lock_contentions) = lock_deltas(&before, &after);
    let summary = Summary {
        scenario: "openai-stream",
        clients: args.clients,
        seconds: elapsed,
        requests: all.requests,
        errors: all.errors,
        requests_per_second: all.requests as f64 / elapsed,
        tokens_per_second: all.tokens as f64 / elapsed,
        request_latency: Percentiles::of(all.latency),
        time_to_first_token: Percentiles::of(all.ttft),
        inter_token_latency: Percentiles::of(all.itl),
        lock_wait_us,
        lock_contentions,
    };
    let percentiles = |p: &Percentiles| vec![(50.0, p.p50_ms), (95.0, p.p95_ms), (99.0, p.p99_ms)];
    let chart = Chart {
        title: &format!("openai-stream, {} clients", args.clients),
        x_label: "percentile",
        y_label: "ms",
        log_x: false,
        series: vec![
            Series {
                name: "time to first token".into(),
                points: percentiles(&summary.time_to_first_token),
            },
            Series {
                name: "inter-token latency".into(),
                points: percentiles(&summary.inter_token_latency),
            },
            Series {
                name: "request".into(),
                points: percentiles(&summary.request_latency),
            },
        ],
    };
    crate::emit(&summary, args.out.as_deref(), &chart)
}

async fn client_loop(
    client: reqwest::Client,
    url: String,
    id: usize,
    max_tokens: usize,
    deadline: Instant,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let body = json!({
            "messages": [{"role": "user", "content": format!("Client {id} asks question {n}")}],
            "max_tokens": max_tokens, "ignore_eos": true, "stream": true, "temperature": 0,
            "stream_options": {"include_usage": true},
        });
        match one_request(&client, &url, &body).await {
            Ok((latency, gaps, tokens)) => {
                log.requests += 1;
                log.tokens += tokens;
                log.latency.push(latency);
                if let Some((first, rest)) = gaps.split_first() {
                    log.ttft.push(*first);
                    log.itl.extend_from_slice(rest);
                }
            }
            Err(_) => log.errors += 1,
        }
    }
    log
}

/// One streaming request: total latency, the time of each content event after
/// the previous one (the first from the start), and the tokens generated (from
/// the usage chunk: some tokens release no text of their own).
async fn one_request(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(f64, Vec<f64>, usize)> {
    let start = Instant::now();
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .json(body)
        .send()
        .await?
        .error_for_status()?;
    let mut stream = resp.bytes_stream();
    let (mut buffer, mut gaps, mut last, mut done) = (String::new(), Vec::new(), start, false);
    let mut tokens = 0;
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let parsed: serde_json::Value = serde_json::from_str(data)?;
            if let Some(n) = parsed["usage"]["completion_tokens"].as_u64() {
                tokens = n as usize;
            }
            if parsed["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
            {
                let now = Instant::now();
                gaps.push((now - last).as_secs_f64());
                last = now;
            }
        }
    }
    if !done {
        bail!("stream ended without [DONE]");
    }
    Ok((start.elapsed().as_secs_f64(), gaps, tokens))
}

async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("mistralrs_lock_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// Per lock: average contended wait (µs) and contentions during the run.
fn lock_deltas(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let delta = |series: &str| {
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
    };
    let (mut wait, mut contended) = (BTreeMap::new(), BTreeMap::new());
    for series in after.keys() {
        let Some(lock) = series
            .strip_prefix("mistralrs_lock_contended_total{lock=\"")
            .and_then(|s| s.strip_suffix("\"}"))
        else {
            continue;
        };
        let count = delta(&format!(
            "mistralrs_lock_wait_seconds_count{{lock=\"{lock}\"}}"
        ));
        let sum = delta(&format!(
            "mistralrs_lock_wait_seconds_sum{{lock=\"{lock}\"}}"
        ));
        wait.insert(
            lock.to_owned(),
            if count > 0.0 { sum / count * 1e6 } else { 0.0 },
        );
        contended.insert(lock.to_owned(), delta(series));
    }
    (wait, contended)
}
