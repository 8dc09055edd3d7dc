//! `soak-faults`: mixed load for a while under injected faults, then checks
//! that nothing was lost or leaked.
//!
//! During `--seconds`, at once:
//! - streaming OpenAI chat clients, every fourth request dropped after its first
//!   event (a client that hangs up mid-stream);
//! - MCP sessions calling `chat` and, with `--forwarded-tool`, a forwarded tool,
//!   every tenth call abandoned after 50 ms (the client gives up mid-call);
//! - a prober sending malformed requests (bad JSON, wrong types, unknown model,
//!   an oversized body, an unknown MCP session) that must get their exact status;
//! - every `--kill-every` seconds, the upstream MCP servers' processes (pids from
//!   `/health`) are killed with SIGKILL; the server must reconnect them itself.
//!
//! Then it checks that every request not dropped on purpose got an answer (a
//! result or a clear error), `/health` is ok with every upstream back up, every
//! KV block is free and no MCP session is left open. The summary holds the
//! counts, a per-second timeline and the checks; a failed check exits non-zero.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use rmcp::model::JsonObject;
use serde::Serialize;
use serde_json::{Value, json};

use crate::chart::{Chart, Series};
use crate::mcp_client::{self, Outcome};
use crate::stats::Percentiles;

/// Options of the scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server base URL (OpenAI API, /health, /metrics); loopback only.
    #[arg(long, default_value = "http://127.0.0.1:1234")]
    url: String,
    /// The MCP endpoint; loopback only.
    #[arg(long, default_value = "http://127.0.0.1:4322/mcp/stream")]
    mcp: String,
    /// Seconds of load (at most 3600).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Streaming chat clients (at most 64).
    #[arg(long, default_value_t = 4)]
    chat_clients: usize,
    /// MCP sessions (at most 64).
    #[arg(long, default_value_t = 4)]
    mcp_clients: usize,
    /// A forwarded tool the MCP sessions also call, with `{"message": ...}`.
    #[arg(long)]
    forwarded_tool: Option<String>,
    /// Seconds between kills of the upstream MCP servers (0: never).
    #[arg(long, default_value_t = 15)]
    kill_every: u64,
    /// Write the JSON summary here too.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// One second of the run.
#[derive(Debug, Default, Serialize)]
struct Second {
    answered: usize,
    errors: usize,
    #[serde(skip)]
    latencies: Vec<f64>,
    p95_ms: f64,
}

/// What happened, shared by every task.
#[derive(Debug, Default, Serialize)]
struct Tally {
    /// Results (chat completions, tool results).
    ok: usize,
    /// Clear errors: an HTTP error status with a body, a tool error, a JSON-RPC error.
    clear_errors: BTreeMap<String, usize>,
    /// Requests that got no answer (a transport failure we did not cause).
    unanswered: BTreeMap<String, usize>,
    /// Requests this scenario hung up on by design.
    dropped_on_purpose: usize,
    /// Malformed requests answered with the expected status.
    malformed_ok: usize,
    /// Malformed requests answered otherwise: `<what>: <status>`.
    malformed_wrong: BTreeMap<String, usize>,
    /// Upstream processes killed.
    kills: usize,
    #[serde(skip)]
    timeline: Vec<Second>,
}

#[derive(Clone)]
struct Shared {
    tally: Arc<Mutex<Tally>>,
    started: Instant,
    deadline: Instant,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut Tally)) {
        if let Ok(mut tally) = self.tally.lock() {
            f(&mut tally);
        }
    }

    /// An answer (result or clear error) at this second, with its latency.
    fn answered(&self, error: Option<&str>, latency: f64) {
        let second = self.started.elapsed().as_secs() as usize;
        self.record(|t| {
            match error {
                None => t.ok += 1,
                Some(kind) => *t.clear_errors.entry(kind.to_owned()).or_default() += 1,
            }
            if t.timeline.len() <= second {
                t.timeline.resize_with(second + 1, Second::default);
            }
            let slot = &mut t.timeline[second];
            slot.answered += 1;
            slot.errors += usize::from(error.is_some());
            slot.latencies.push(latency);
        });
    }

    fn unanswered(&self, what: &str) {
        self.record(|t| *t.unanswered.entry(what.to_owned()).or_default() += 1);
    }
}

/// Streaming chat requests; every fourth is dropped after its first event.
async fn chat_client(shared: Shared, http: reqwest::Client, url: String, id: usize) {
    let mut n = 0usize;
    while Instant::now() < shared.deadline {
        n += 1;
        let drop_early = n.is_multiple_of(4);
        let body = json!({
            "messages": [{"role": "user", "content": format!("soak {id} {n}")}],
            "max_tokens": 16, "stream": true,
        });
        let started = Instant::now();
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(_) => {
                shared.unanswered("openai_send");
                continue;
            }
        };
        if !response.status().is_success() {
            let status = response.status().as_u16();
            match response.json::<Value>().await {
                Ok(v) if v["error"]["message"].is_string() => shared.answered(
                    Some(&format!("openai_{status}")),
                    started.elapsed().as_secs_f64(),
                ),
                _ => shared.unanswered(&format!("openai_{status}_without_error_body")),
            }
            continue;
        }
        let mut stream = response.bytes_stream();
        if drop_early {
            let _ = stream.next().await;
            shared.record(|t| t.dropped_on_purpose += 1);
            continue;
        }
        let mut text = String::new();
        let mut failed = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed || !text.contains("data: [DONE]") {
            shared.unanswered("openai_stream_cut");
        } else {
            shared.answered(None, started.elapsed().as_secs_f64());
        }
    }
}

/// One MCP session calling `chat` and the forwarded tool in turn; every tenth
/// call is abandoned after 50 ms.
async fn mcp_client(shared: Shared, http: reqwest::Client, url: String, forwarded: Option<String>) {
    let session = match mcp_client::open(http, &url, None).await {
        Ok(session) => session,
        Err(_) => {
            shared.unanswered("mcp_open");
            return;
        }
    };
    let chat: JsonObject = match json!({"messages": [{"role": "user", "content": "soak"}], "max_tokens": 8})
    {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    let mut echo = JsonObject::new();
    echo.insert("message".into(), "soak".into());
    let mut n = 0usize;
    while Instant::now() < shared.deadline {
        n += 1;
        let (tool, arguments) = match (&forwarded, n % 2) {
            (Some(tool), 0) => (tool.as_str(), &echo),
            _ => ("chat", &chat),
        };
        let call = mcp_client::call(session.peer(), tool, arguments);
        let outcome = if n.is_multiple_of(10) {
            match tokio::time::timeout(Duration::from_millis(50), call).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    shared.record(|t| t.dropped_on_purpose += 1);
                    continue;
                }
            }
        } else {
            call.await
        };
        match outcome {
            (Outcome::Ok, seconds) => shared.answered(None, seconds),
            (Outcome::Transport, _) => shared.unanswered("mcp_transport"),
            (outcome, seconds) => {
                shared.answered(Some(&format!("mcp_{}", outcome.label())), seconds)
            }
        }
    }
    let _ = session.cancel().await;
}

/// Malformed requests and the status each must get.
async fn prober(shared: Shared, http: reqwest::Client, url: String, mcp: String) {
    let chat = format!("{url}/v1/chat/completions");
    let oversized = format!("{{\"messages\": [], \"pad\": \"{}\"}}", "x".repeat(5 << 20));
    while Instant::now() < shared.deadline {
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        let cases = [
            (
                "bad_json",
                http.post(&chat)
                    .header("content-type", "application/json")
                    .body("{not json"),
                400,
            ),
            (
                "wrong_types",
                http.post(&chat).json(&json!({"messages": "nope"})),
                400,
            ),
            (
                "unknown_model",
                http.post(&chat).json(
                    &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
                ),
                404,
            ),
            (
                "oversized",
                http.post(&chat)
                    .header("content-type", "application/json")
                    .body(oversized.clone()),
                413,
            ),
            (
                "unknown_session",
                http.post(&mcp)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", "no-such-session")
                    .header("mcp-protocol-version", "2025-06-18")
                    .json(&list),
                404,
            ),
            (
                "mcp_bad_json",
                http.post(&mcp)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .body("{not json"),
                400,
            ),
        ];
        for (what, request, expected) in cases {
            match request.send().await {
                Ok(r) if r.status().as_u16() == expected => shared.record(|t| t.malformed_ok += 1),
                Ok(r) => shared.record(|t| {
                    *t.malformed_wrong
                        .entry(format!("{what}: {}", r.status()))
                        .or_default() += 1
                }),
                Err(_) => shared.unanswered(&format!("malformed_{what}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The upstream processes `/health` reports, by name.
async fn upstream_pids(http: &reqwest::Client, url: &str) -> Vec<u32> {
    let Ok(response) = http.get(format!("{url}/health")).send().await else {
        return Vec::new();
    };
    let health: Value = response.json().await.unwrap_or_default();
    health["mcp_upstreams"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|u| u["pid"].as_u64())
                .map(|p| p as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Kills the upstream processes every `every`.
async fn killer(shared: Shared, http: reqwest::Client, url: String, every: Duration) {
    loop {
        let next = Instant::now() + every;
        if next >= shared.deadline {
            return;
        }
        tokio::time::sleep_until(next.into()).await;
        for pid in upstream_pids(&http, &url).await {
            let killed = tokio::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .await;
            if killed.is_ok_and(|s| s.success()) {
                shared.record(|t| t.kills += 1);
            }
        }
    }
}

/// Polls `check` (bounded) until it holds.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn health(http: &reqwest::Client, url: &str) -> Value {
    match http.get(format!("{url}/health")).send().await {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        _ => Value::Null,
    }
}

#[derive(Debug, Serialize)]
struct Checks {
    every_request_answered: bool,
    malformed_requests_got_their_status: bool,
    healthy_with_upstreams_up: bool,
    kv_blocks_all_free: bool,
    no_session_left: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    seconds: u64,
    tally: Tally,
    latency: Percentiles,
    /// Per second: answers, errors, p95 latency.
    timeline: Vec<Second>,
    checks: Checks,
}

async fn final_checks(http: &reqwest::Client, url: &str, tally: &Tally) -> Checks {
    let healthy = eventually(|| async {
        let h = health(http, url).await;
        h["status"] == "ok"
            && h["mcp_upstreams"]
                .as_array()
                .is_some_and(|l| l.iter().all(|u| u["status"] == "up"))
    })
    .await;
    let blocks_free = eventually(|| async {
        let h = health(http, url).await;
        h["models"].as_array().is_some_and(|models| {
            models.iter().all(|m| {
                m["running"] == 0
                    && m["waiting"] == 0
                    && m["kv_cache_blocks_free"] == m["kv_cache_blocks_total"]
            })
        })
    })
    .await;
    let sessions_closed = eventually(|| async {
        let Ok(r) = http.get(format!("{url}/metrics")).send().await else {
            return false;
        };
        r.text()
            .await
            .unwrap_or_default()
            .lines()
            .any(|l| l == "mistralrs_http_mcp_active_sessions 0")
    })
    .await;
    Checks {
        every_request_answered: tally.unanswered.is_empty(),
        malformed_requests_got_their_status: tally.malformed_wrong.is_empty()
            && tally.malformed_ok > 0,
        healthy_with_upstreams_up: healthy,
        kv_blocks_all_free: blocks_free,
        no_session_left: sessions_closed,
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    crate::require_loopback(&args.url)?;
    crate::require_loopback(&args.mcp)?;
    if args.seconds == 0 || args.seconds > 3600 || args.chat_clients > 64 || args.mcp_clients > 64 {
        bail!("--seconds must be 1-3600 and --chat-clients/--mcp-clients at most 64");
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    let shared = Shared {
        tally: Arc::new(Mutex::new(Tally::default())),
        started,
        deadline: started + Duration::from_secs(args.seconds),
    };
    let mut tasks = Vec::new();
    for i in 0..args.chat_clients {
        tasks.push(tokio::spawn(chat_client(
            shared.clone(),
            http.clone(),
            args.url.clone(),
            i,
        )));
    }
    for _ in 0..args.mcp_clients {
        let forwarded = args.forwarded_tool.clone();
        tasks.push(tokio::spawn(mcp_client(
            shared.clone(),
            http.clone(),
            args.mcp.clone(),
            forwarded,
        )));
    }
    tasks.push(tokio::spawn(prober(
        shared.clone(),
        http.clone(),
        args.url.clone(),
        args.mcp.clone(),
    )));
    if args.kill_every > 0 {
        let every = Duration::from_secs(args.kill_every);
        tasks.push(tokio::spawn(killer(
            shared.clone(),
            http.clone(),
            args.url.clone(),
            every,
        )));
    }
    for task in tasks {
        task.await?;
    }
    let mut tally = std::mem::take(
        &mut *shared
            .tally
            .lock()
            .map_err(|_| anyhow::anyhow!("a task panicked"))?,
    );
    let checks = final_checks(&http, &args.url, &tally).await;
    let mut all = Vec::new();
    let mut timeline = std::mem::take(&mut tally.timeline);
    for second in &mut timeline {
        second.p95_ms = Percentiles::of(second.latencies.clone()).p95_ms;
        all.append(&mut second.latencies);
    }
    let failed = !(checks.every_request_answered
        && checks.malformed_requests_got_their_status
        && checks.healthy_with_upstreams_up
        && checks.kv_blocks_all_free
        && checks.no_session_left);
    let summary = Summary {
        scenario: "soak-faults",
        seconds: args.seconds,
        tally,
        latency: Percentiles::of(all),
        timeline,
        checks,
    };
    let over_time = |pick: fn(&Second) -> f64| {
        summary
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, pick(s)))
            .collect()
    };
    let chart = Chart {
        title: &format!("soak-faults: {} upstream kills", summary.tally.kills),
        x_label: "second",
        y_label: "p95 ms / errors per second",
        log_x: false,
        series: vec![
            Series {
                name: "p95 latency (ms)".into(),
                points: over_time(|s| s.p95_ms),
            },
            Series {
                name: "clear errors per second".into(),
                points: over_time(|s| s.errors as f64),
            },
        ],
    };
    crate::emit(&summary, args.out.as_deref(), &chart)?;
    if failed {
        bail!("a soak check failed: see `checks` in the summary");
    }
    Ok(())
}
