//! Rate limits shared by replicas through a real redis-server
//! (`[http_mcp.rate_limit] backend = "redis"`): one budget across replicas for
//! keys and failed authentications, the fallback policies while Redis is down
//! or slow, and start-up errors for bad settings.
#![cfg(feature = "http-mcp-stream")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::services::Redis;
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret-redis-pw";

/// A replica of the demo server with the MCP port and `rate_limit` (TOML lines)
/// under `[http_mcp.rate_limit]`, keys `k1` and `k2`.
fn replica(rate_limit: &str) -> Server {
    let toml =
        format!("[http_mcp]\napi_keys = [\"k1\", \"k2\"]\n[http_mcp.rate_limit]\n{rate_limit}\n");
    Server::start_with_config(&["--http-mcp-port", "0"], Some(&toml))
}

fn redis_settings(redis: &Redis, policy: &str, extra: &str) -> String {
    format!(
        "backend = \"redis\"\nredis_url = \"{}\"\non_redis_error = \"{policy}\"\n{extra}",
        redis.url()
    )
}

/// An `initialize` with `Bearer key` to `server`'s MCP port; the status.
async fn initialize(server: &Server, key: &str) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    reqwest::Client::new()
        .post(server.mcp.as_deref().unwrap())
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The statuses of `n` initializes with `key`, sent to `replicas` in turn.
async fn round_robin(replicas: &[&Server], key: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        statuses.push(initialize(replicas[i % replicas.len()], key).await);
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn a_per_key_limit_holds_across_replicas() {
    let redis = Redis::start(PASSWORD);
    // 6 at once, then one per 5 s: refills don't blur the count.
    let settings = redis_settings(&redis, "local", "per_key = 0.2\nburst = 6");
    let (a, b, c) = (replica(&settings), replica(&settings), replica(&settings));
    let statuses = round_robin(&[&a, &b, &c], "k1", 30).await;
    assert_eq!(count(&statuses, 200), 6, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 24, "{statuses:?}");
    assert_eq!(
        initialize(&b, "k2").await,
        200,
        "another key has its own budget"
    );

    // The same three replicas counting alone let each its own burst through.
    let memory = "per_key = 0.2\nburst = 6";
    let (x, y, z) = (replica(memory), replica(memory), replica(memory));
    let statuses = round_robin(&[&x, &y, &z], "k1", 30).await;
    assert_eq!(count(&statuses, 200), 18, "{statuses:?}");

    let health = a.health().await;
    let entry = &health["rate_limit"];
    assert_eq!(entry["backend"], "redis", "{health}");
    assert_eq!(entry["state"], "up", "{health}");
    assert_eq!(entry["redis"], format!("127.0.0.1:{}/0", redis.port));
    assert!(!health.to_string().contains(PASSWORD), "{health}");
    let metrics = a.metrics().await;
    assert_eq!(
        common::series(&metrics, "mistralrs_rate_limit_backend_up"),
        1.0
    );
    assert!(common::series(&metrics, "mistralrs_rate_limit_backend_seconds_count") >= 10.0);
    assert!(!metrics.contains(PASSWORD));
    // The key is stored by fingerprint, never as itself.
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(keys.contains("mistralrs:ratelimit:key:"), "{keys}");
    assert!(!keys.contains("k1") && !keys.contains("k2"), "{keys}");
}

#[tokio::test]
async fn failed_keys_spend_one_budget_across_replicas() {
    let redis = Redis::start(PASSWORD);
    let settings = redis_settings(
        &redis,
        "local",
        "auth_failures_per_ip = 0.01\nauth_failures_burst = 4",
    );
    let (a, b) = (replica(&settings), replica(&settings));
    let statuses = round_robin(&[&a, &b], "guess", 4).await;
    assert_eq!(statuses, [401; 4]);
    assert_eq!(
        initialize(&a, "guess").await,
        429,
        "the fifth failure, wherever"
    );
    assert_eq!(
        initialize(&b, "k1").await,
        429,
        "the address is blocked on every replica, right key or not"
    );
}

#[tokio::test]
async fn when_redis_stops_each_policy_applies_and_the_metric_says_so() {
    let mut redis = Redis::start(PASSWORD);
    let limits = "per_key = 0.2\nburst = 3";
    let local = replica(&redis_settings(&redis, "local", limits));
    let allow = replica(&redis_settings(&redis, "allow", limits));
    let deny = replica(&redis_settings(&redis, "deny", limits));
    // Through Redis the three share one budget of 3 for k1.
    let statuses = round_robin(&[&local, &allow, &deny], "k1", 6).await;
    assert_eq!(count(&statuses, 200), 3, "{statuses:?}");

    redis.kill();
    // local: this replica's own counters, untouched so far: 3 more, then 429.
    let statuses = round_robin(&[&local], "k1", 6).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    // allow: everything passes; deny: 503 with Retry-After.
    assert_eq!(round_robin(&[&allow], "k1", 6).await, [200; 6]);
    let refused = reqwest::Client::new()
        .post(deny.mcp.as_deref().unwrap())
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer k2")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");

    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    ))
    .unwrap();
    for (server, policy) in [(&local, "local"), (&allow, "allow"), (&deny, "deny")] {
        let metrics = server.metrics().await;
        // The dashboard's rate-limit panels query series these replicas export.
        for family in [
            "mistralrs_http_mcp_rate_limited_total",
            "mistralrs_rate_limit_fallback_total",
            "mistralrs_rate_limit_backend_up",
            "mistralrs_rate_limit_backend_seconds",
        ] {
            assert!(dashboard.contains(family), "{family} has no panel");
            assert!(
                metrics.contains(&format!("# TYPE {family} ")),
                "{family} not exported"
            );
        }
        let fallbacks = common::series(
            &metrics,
            &format!("mistralrs_rate_limit_fallback_total{{policy=\"{policy}\"}}"),
        );
        assert!(fallbacks >= 1.0, "{policy}: {fallbacks}");
        assert_eq!(
            common::series(&metrics, "mistralrs_rate_limit_backend_up"),
            0.0
        );
        let health = server.health().await;
        assert_eq!(health["status"], "ok");
        assert_eq!(health["rate_limit"]["state"], "down", "{health}");
        assert_eq!(health["rate_limit"]["on_redis_error"], policy);
        assert!(health["rate_limit"]["error"].is_string(), "{health}");
    }

    // Back: after the second it counts as down, checks go to Redis again.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = initialize(&deny, "k2").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "deny never recovered: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health: Value = deny.health().await;
    assert_eq!(health["rate_limit"]["state"], "up", "{health}");
}

#[tokio::test]
async fn a_slow_redis_costs_a_request_no_more_than_the_timeout() {
    let redis = Redis::start(PASSWORD);
    let server = replica(&redis_settings(
        &redis,
        "local",
        "per_key = 100\nredis_timeout_ms = 50",
    ));
    assert_eq!(initialize(&server, "k1").await, 200);
    // Redis holds every client's commands for 3 s.
    assert!(
        redis
            .cli(&["CLIENT", "PAUSE", "3000", "ALL"])
            .contains("OK")
    );
    let started = Instant::now();
    assert_eq!(initialize(&server, "k1").await, 200);
    let first = started.elapsed();
    let started = Instant::now();
    assert_eq!(initialize(&server, "k1").await, 200);
    let second = started.elapsed();
    // Generous bounds (a 2-core machine under a test suite); Redis alone would take 3 s.
    assert!(first < Duration::from_millis(1500), "{first:?}");
    assert!(second < Duration::from_millis(1500), "{second:?}");
    let metrics = server.metrics().await;
    assert!(
        common::series(
            &metrics,
            "mistralrs_rate_limit_fallback_total{policy=\"local\"}"
        ) >= 1.0
    );
    let health = server.health().await;
    assert!(
        health["rate_limit"]["error"]
            .as_str()
            .unwrap()
            .contains("50 ms"),
        "{health}"
    );
}

/// `mistralrs-server` with `[http_mcp.rate_limit]` holding `rate_limit`: its
/// exit code and stderr when it stops, or `None` while it serves (killed).
fn start_up(rate_limit: &str) -> Option<(Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    std::fs::write(
        &path,
        format!("[http_mcp]\napi_keys = [\"k1\"]\n[http_mcp.rate_limit]\n{rate_limit}\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args(["--port", "0", "--http-mcp-port", "0", "--config"])
        .arg(&path)
        .args(["run", "-m", "demo"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Some((
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn bad_redis_settings_are_start_up_errors() {
    let closed = common::services::free_port();
    let unreachable = format!("redis_url = \"redis://127.0.0.1:{closed}\"");
    for (settings, expect) in [
        (
            "backend = \"redis\"\nredis_url = \"http://user:hunter2@localhost/\"".to_owned(),
            "redis_url is not a Redis URL",
        ),
        ("backend = \"redis\"".to_owned(), "needs `redis_url`"),
        (format!("{unreachable}\n"), "`backend` is not \"redis\""),
        (
            format!("backend = \"redis\"\n{unreachable}\nredis_timeout_ms = 0"),
            "redis_timeout_ms",
        ),
        (
            format!("backend = \"redis\"\n{unreachable}\non_redis_error = \"deny\""),
            "on_redis_error = \"deny\" needs it at start-up",
        ),
        ("backend = \"valkey\"".to_owned(), "backend"),
    ] {
        let (code, stderr) = start_up(&settings).expect("the server must not start");
        assert_eq!(code, Some(1), "{settings}: {stderr}");
        assert!(stderr.contains(expect), "{settings}: {stderr}");
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // With the default policy an unreachable Redis does not stop the server.
    assert!(
        start_up(&format!("backend = \"redis\"\n{unreachable}")).is_none(),
        "on_redis_error = \"local\" starts without Redis"
    );
}
