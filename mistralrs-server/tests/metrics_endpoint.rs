//! `/metrics` of the real binary: counters move by exactly what was served, lock
//! series exist only with `prometheus-locks`, and promtool accepts the format.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{Server, post};
use serde_json::json;

/// Samples of the exposition: series (name with labels, as written) to value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(server: &Server) -> (String, HashMap<String, f64>) {
    let resp = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or(&0.0)
}

#[tokio::test]
async fn counters_move_by_what_was_served() {
    let server = Server::start(&[]);
    let (_, before) = scrape(&server).await;
    let (mut prompt_tokens, mut full_blocks) = (0.0, 0.0);
    for i in 0..3 {
        let body = json!({"messages": [{"role": "user", "content": format!("Hello number {i}")}], "max_tokens": 5, "ignore_eos": true});
        let (status, resp) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
        let n = resp["usage"]["prompt_tokens"].as_f64().unwrap();
        prompt_tokens += n;
        full_blocks += (n / 16.0).floor();
    }
    let (status, _) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": []}),
    )
    .await;
    assert_eq!(status, 404);
    // Gauges are published by the engine thread once per step, so the last step's
    // values can trail the last response by a moment.
    let idle = r#"mistralrs_num_requests_running{model="demo"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let (_, samples) = scrape(&server).await;
        if get(&samples, idle) == 0.0 || std::time::Instant::now() > deadline {
            break samples;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let delta = |s: &str| get(&after, s) - get(&before, s);
    let m = r#"{model="demo"}"#;
    assert_eq!(
        delta(r#"mistralrs_requests_total{endpoint="chat_completions",model="demo",status="200"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"mistralrs_requests_total{endpoint="chat_completions",model="",status="404"}"#),
        1.0
    );
    assert_eq!(
        delta(&format!("mistralrs_generation_tokens_total{m}")),
        15.0
    );
    assert_eq!(
        delta(&format!("mistralrs_prompt_tokens_total{m}")),
        prompt_tokens
    );
    assert_eq!(
        delta(&format!("mistralrs_time_to_first_token_seconds_count{m}")),
        3.0
    );
    assert_eq!(
        delta(&format!("mistralrs_inter_token_latency_seconds_count{m}")),
        12.0
    );
    assert_eq!(
        delta(&format!("mistralrs_request_duration_seconds_count{m}")),
        3.0
    );
    assert_eq!(
        get(&after, &format!("mistralrs_num_requests_running{m}")),
        0.0
    );
    assert_eq!(
        get(&after, &format!("mistralrs_num_requests_waiting{m}")),
        0.0
    );
    assert_eq!(
        get(&after, &format!("mistralrs_kv_cache_blocks_free{m}")),
        512.0
    );
    assert_eq!(
        get(&after, &format!("mistralrs_kv_cache_usage_ratio{m}")),
        0.0
    );
    // Every full 16-token block of each prompt was looked up in the prefix cache.
    assert_eq!(
        delta(&format!("mistralrs_prefix_cache_queries_total{m}")),
        full_blocks
    );
    assert!(delta(&format!("mistralrs_prefix_cache_hits_total{m}")) <= full_blocks);
}

#[tokio::test]
async fn lock_series_exist_only_with_the_feature() {
    let server = Server::start(&[]);
    let (text, samples) = scrape(&server).await;
    for lock in ["scheduler", "router"] {
        let series = format!(r#"mistralrs_lock_contended_total{{lock="{lock}"}}"#);
        let hold = format!(r#"mistralrs_lock_hold_seconds_count{{lock="{lock}"}}"#);
        if cfg!(feature = "prometheus-locks") {
            assert!(samples.contains_key(&series), "{series} missing");
            assert!(samples.contains_key(&hold), "{hold} missing");
        } else {
            assert!(
                !text.contains("mistralrs_lock_"),
                "lock series without the feature"
            );
        }
    }
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let server = Server::start(&[]);
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3});
    post(&server, "/v1/chat/completions", &body).await;
    let (text, _) = scrape(&server).await;
    common::assert_promtool_accepts(&text);
}

#[tokio::test]
async fn the_metrics_path_is_configurable() {
    let server = Server::start_with_config(
        &[],
        Some("[prometheus_locks]\nmetrics_endpoint = \"/internal/prom\"\n"),
    );
    let resp = reqwest::get(server.url("/internal/prom")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("mistralrs_kv_cache_blocks_free")
    );
    assert_eq!(
        reqwest::get(server.url("/metrics")).await.unwrap().status(),
        404
    );
}

/// Every query of the Grafana dashboard parses (promtool checks them as recording
/// rules), names only series the server exports, and selects replicas by
/// Prometheus' `instance` label; no series carries a replica-specific label.
#[tokio::test]
async fn the_grafana_dashboard_queries_parse_and_use_real_series() {
    let server = Server::start(&[]);
    post(
        &server,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
    )
    .await;
    let (text, _) = scrape(&server).await;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let labels = line.split_once('{').map_or("", |(_, rest)| rest);
        for pair in labels.split("\",").filter(|p| p.contains('=')) {
            let name = pair.split('=').next().unwrap().trim_start_matches(',');
            assert!(
                !["instance", "job", "replica", "host", "hostname", "pod"].contains(&name),
                "a replica-specific label in `{line}`"
            );
        }
    }
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(exprs.len() >= 12);
    // Replicas are told apart only by Prometheus' own `instance` label: every
    // panel sums or picks over the replicas the selector names.
    for expr in &exprs {
        assert!(
            expr.contains("instance=~\"$instance\""),
            "no replica selector in `{expr}`"
        );
    }
    let template = &dashboard["templating"]["list"];
    assert!(
        template
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "instance" && v["includeAll"] == true),
        "{template}"
    );
    for expr in &exprs {
        for word in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("mistralrs_"))
        {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
            let lock_series = family.starts_with("mistralrs_lock_");
            if lock_series && !cfg!(feature = "prometheus-locks") {
                continue;
            }
            // Present only with upstreams; tests/tool_forwarding.rs checks them.
            if family.starts_with("mistralrs_tool_") || family == "mistralrs_mcp_upstream_up" {
                continue;
            }
            // Present once the MCP port refused or Redis failed a check;
            // tests/shared_rate_limits.rs checks them.
            if [
                "mistralrs_http_mcp_rate_limited_total",
                "mistralrs_rate_limit_fallback_total",
            ]
            .contains(&family)
            {
                continue;
            }
            assert!(
                families.contains(&family),
                "{family} (in `{expr}`) is not exported"
            );
        }
    }
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: dashboard:query{i}\n        expr: {}\n",
                serde_json::to_string(e).unwrap()
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[prometheus_locks] enabled = false` stops recording; the default records.
#[cfg(feature = "prometheus-locks")]
#[tokio::test]
async fn lock_recording_follows_the_config_switch() {
    let series = r#"mistralrs_lock_hold_seconds_count{lock="scheduler"}"#;
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 60, "ignore_eos": true});
    for (config, recording) in [("[prometheus_locks]\nenabled = false\n", false), ("", true)] {
        let server = Server::start_with_config(&[], Some(config));
        // 3 x 60 steps take the scheduler lock well over 64 times on the engine
        // thread, so at least one hold is sampled when recording.
        for _ in 0..3 {
            assert_eq!(post(&server, "/v1/chat/completions", &body).await.0, 200);
        }
        let (_, samples) = scrape(&server).await;
        assert_eq!(
            get(&samples, series) > 0.0,
            recording,
            "config {config:?}: {series} = {}",
            get(&samples, series)
        );
    }
}
