//! /mcp/stream of the real binary with the official MCP SDKs as clients.
#![cfg(feature = "http-mcp-stream")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::Server;
use serde_json::{Value, json};

/// The server with its MCP endpoint on a free port (and a config file when
/// given), and the endpoint's URL.
fn mcp_server(config: Option<&str>) -> (Server, String) {
    let server = Server::start_with_config(&["--http-mcp-port", "0"], config);
    let url = server.mcp.clone().expect("MCP endpoint line");
    (server, url)
}

/// A client that opens a fresh connection per request, so dropping a response
/// closes its connection at once (what a vanished client looks like).
fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// The Accept header every MCP POST carries.
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// An `initialize` request at 2025-06-18.
fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

/// A stateless (2026-07-28) `tools/call` of `chat` for `max_tokens` tokens, with
/// a progress token.
fn stateless_chat(max_tokens: usize) -> Value {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}, "progressToken": "p"});
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": meta, "name": "chat",
        "arguments": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens, "ignore_eos": true}}})
}

/// POSTs `body` at 2025-06-18, in `session` when given.
async fn post_at_2025(
    url: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::Result<reqwest::Response> {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    req.send().await
}

/// POSTs a stateless `tools/call` of `chat` with the headers that must match it.
async fn post_stateless(url: &str, call: &Value) -> reqwest::Response {
    unpooled_client()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "chat")
        .json(call)
        .send()
        .await
        .unwrap()
}

#[test]
fn python_sdk_lists_and_calls_chat_with_progress() {
    let server = Server::start(&["--http-mcp-port", "0"]);
    let url = server.mcp.clone().expect("MCP endpoint line");
    assert!(url.ends_with("/mcp/stream"), "{url}");
    let stdout = common::run_python("mcp_client.py", &[&url, &server.base]);
    assert!(stdout.contains("mcp client: ok"), "{stdout}");
}

#[tokio::test]
async fn raw_requests_get_the_statuses_the_spec_names() {
    let (_server, url) = mcp_server(None);
    let client = reqwest::Client::new();
    let init = initialize();
    let ok = client
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("mcp-session-id"));

    // An unknown session is 404.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let unknown = client
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", "no-such-session")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A foreign Host is refused (DNS-rebinding protection).
    let rebinding = client
        .post(&url)
        .header("host", "evil.example.com")
        .header("accept", ACCEPT_BOTH)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 403);

    // Malformed JSON is a client error, and the server still serves afterwards.
    let malformed = client
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let parse_error: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    let again = client
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn api_keys_are_required_and_failures_counted_by_reason() {
    let server = Server::start(&[
        "--http-mcp-port",
        "0",
        "--http-mcp-auth-key",
        "k-one",
        "--http-mcp-auth-key",
        "k-two",
    ]);
    let url = server.mcp.clone().unwrap();
    let init = initialize();
    let send = |auth: Option<&'static str>| {
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .json(&init);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send()
    };
    for (auth, want) in [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("Basic azE="), 401),
        (Some("Bearer k-two"), 200),
    ] {
        let resp = send(auth).await.unwrap();
        assert_eq!(resp.status(), want, "{auth:?}");
        if want == 401 {
            let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
    }
    let metrics = server.metrics().await;
    for reason in ["missing", "invalid", "malformed"] {
        let series = format!("mistralrs_http_mcp_auth_failures_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&series), "{series} not in /metrics");
    }
    assert!(metrics.contains(r#"mistralrs_http_mcp_requests_total{method="POST",status="401"} 3"#));
    assert!(metrics.contains(r#"mistralrs_http_mcp_requests_total{method="POST",status="200"} 1"#));
    assert!(
        !metrics.contains("k-one") && !metrics.contains("k-two"),
        "keys never show"
    );
}

#[test]
fn python_sdk_with_an_api_key() {
    let server = Server::start(&["--http-mcp-port", "0", "--http-mcp-auth-key", "secret-key"]);
    let url = server.mcp.clone().unwrap();
    let stdout = common::run_python("mcp_client.py", &[&url, &server.base, "secret-key"]);
    assert!(stdout.contains("mcp client: ok"), "{stdout}");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let config = "[http_mcp.rate_limit]\nper_ip = 0.5\nburst = 2\n";
    let (server, url) = mcp_server(Some(config));
    let init = initialize();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let resp = reqwest::Client::new()
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .json(&init)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            retry_after = Some(
                resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let wait = retry_after.unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"mistralrs_http_mcp_rate_limited_total{scope="ip"} 2"#),
        "{metrics}"
    );
    // The OpenAI port is not limited by the MCP limits.
    assert_eq!(
        reqwest::get(server.url("/health")).await.unwrap().status(),
        200
    );
}

#[test]
fn typescript_sdk_calls_cancels_and_ends_the_session() {
    let server = Server::start(&["--http-mcp-port", "0", "--http-mcp-auth-key", "ts-key"]);
    let url = server.mcp.clone().unwrap();
    let stdout = common::run_node("mcp_client.mjs", &[&url, &server.base, "ts-key"]);
    assert!(stdout.contains("ts client: ok"), "{stdout}");
}

/// The official conformance suite: every scenario that applies to a tools-only
/// server passes; tests/node/conformance-baseline.yml lists the others, and the
/// suite fails if one of those starts passing too.
#[test]
fn conformance_suite_passes_every_applicable_scenario() {
    let (_server, url) = mcp_server(None);
    let baseline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/node/conformance-baseline.yml"
    );
    let stdout = common::run_conformance(&url, &["--expected-failures", baseline]);
    for scenario in [
        "server-initialize",
        "logging-set-level",
        "ping",
        "tools-list",
        "prompts-list",
        "resources-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ] {
        assert!(
            stdout.contains(&format!("✓ {scenario}")),
            "{scenario} did not pass:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn session_and_body_limits() {
    let config = "[http_mcp]\nmax_sessions = 2\n";
    let (server, url) = mcp_server(Some(config));
    let init = initialize();
    let post = |body: String| {
        reqwest::Client::new()
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(post(init.to_string()).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 503], "the third session is refused");
    // A 5 MiB body is refused from its Content-Length, before it is sent.
    let status_line = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let head = format!(
            "POST /mcp/stream HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
            5 << 20
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0; 256];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(status_line.contains("413"), "{status_line}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("mistralrs_http_mcp_active_sessions 2"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"mistralrs_http_mcp_errors_total{kind="too_many_sessions"} 1"#));
    assert!(metrics.contains(r#"mistralrs_http_mcp_errors_total{kind="body_too_large"} 1"#));
}

/// 2026-07-28: stateless POSTs with the protocol in `_meta`, `server/discover`,
/// headers checked against the body, and closing the stream cancels the call.
#[tokio::test]
async fn stateless_2026_07_28_requests() {
    let (server, url) = mcp_server(None);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let request = |id: u64,
                   method: &str,
                   header_method: &str,
                   mut params: serde_json::Value,
                   name: Option<&str>| {
        // The protocol fields join any `_meta` the request already has.
        let mut full_meta = meta.clone();
        if let Some(extra) = params["_meta"].as_object() {
            full_meta.as_object_mut().unwrap().extend(extra.clone());
        }
        params["_meta"] = full_meta;
        let mut req = unpooled_client()
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", header_method)
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        if let Some(name) = name {
            req = req.header("mcp-name", name);
        }
        req.send()
    };
    let data = |body: &str| -> Vec<serde_json::Value> {
        common::sse_data(body)
            .iter()
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    };

    let discover = request(1, "server/discover", "server/discover", json!({}), None)
        .await
        .unwrap();
    assert_eq!(discover.status(), 200);
    assert_eq!(
        discover.headers()["x-accel-buffering"],
        "no",
        "proxies must not buffer the stream"
    );
    assert!(
        !discover.headers().contains_key("mcp-session-id"),
        "no sessions at 2026-07-28"
    );
    let result = &data(&discover.text().await.unwrap())[0]["result"];
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{result}"
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mistralrs-server"
    );

    let list = request(2, "tools/list", "tools/list", json!({}), None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tools = &data(&list)[0]["result"];
    assert_eq!(tools["tools"][0]["name"], "chat");
    assert!(
        tools["ttlMs"].is_number() && tools["cacheScope"].is_string(),
        "{tools}"
    );

    let mismatch = request(3, "tools/list", "tools/call", json!({}), None)
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    assert!(mismatch.text().await.unwrap().contains("does not match"));

    // Progress before the result, on the request's own stream.
    let args = json!({"name": "chat", "arguments": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "ignore_eos": true},
        "_meta": {"progressToken": "p1"}});
    let call = request(4, "tools/call", "tools/call", args, Some("chat"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = data(&call);
    let last = events.last().unwrap();
    assert_eq!(
        last["result"]["structuredContent"]["usage"]["completion_tokens"], 8,
        "{last}"
    );
    let progress: String = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .map(|e| e["params"]["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        progress,
        last["result"]["structuredContent"]["text"]
            .as_str()
            .unwrap()
    );

    // Closing the stream of a long call cancels it and frees its blocks.
    let long = json!({"name": "chat", "arguments": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 900, "ignore_eos": true},
        "_meta": {"progressToken": "p2"}});
    let resp = request(5, "tools/call", "tools/call", long, Some("chat"))
        .await
        .unwrap();
    let mut body = futures_util::StreamExt::boxed(resp.bytes_stream());
    futures_util::StreamExt::next(&mut body)
        .await
        .unwrap()
        .unwrap();
    drop(body);
    server.wait_all_blocks_free().await;
    let metrics = server.metrics().await;
    let generated: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"mistralrs_generation_tokens_total{model="demo"} "#))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        generated < 8.0 + 900.0,
        "the closed call stopped early ({generated} tokens in all)"
    );

    let unsupported = reqwest::Client::new()
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "1999-01-01")
        .json(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), 400);
    // Counting the request in flight keeps the JSON answer's length (not chunked).
    assert!(unsupported.content_length().is_some_and(|n| n > 0));
    let error: serde_json::Value = unsupported.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32022, "{error}");
    assert_eq!(error["error"]["data"]["requested"], "1999-01-01");
    assert!(
        error["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
}

#[tokio::test]
async fn origin_content_type_accept_and_method_checks() {
    let config = "[http_mcp]\nallowed_origins = [\"http://localhost:3000\"]\n";
    let (_server, url) = mcp_server(Some(config));
    let init = initialize().to_string();
    let send = |origin: Option<&'static str>, content_type: &'static str, accept: &'static str| {
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("content-type", content_type)
            .header("accept", accept)
            .body(init.clone());
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let both = ACCEPT_BOTH;
    let cases = [
        (Some("http://localhost:3000"), "application/json", both, 200),
        (
            Some("http://evil.example.com"),
            "application/json",
            both,
            403,
        ),
        (None, "application/json", both, 200),
        (None, "text/plain", both, 415),
        (None, "application/json", "text/html", 406),
    ];
    for (origin, content_type, accept, want) in cases {
        let status = send(origin, content_type, accept).await.unwrap().status();
        assert_eq!(
            status, want,
            "origin {origin:?}, content-type {content_type}, accept {accept}"
        );
    }
    let put = reqwest::Client::new().put(&url).send().await.unwrap();
    assert_eq!(put.status(), 405);
}

#[tokio::test]
async fn open_streams_show_as_active_connections() {
    let (server, url) = mcp_server(None);
    let call = stateless_chat(900);
    let gauge = || async {
        let text = server.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix("mistralrs_http_mcp_active_connections "))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let resp = post_stateless(&url, &call).await;
    let mut body = futures_util::StreamExt::boxed(resp.bytes_stream());
    futures_util::StreamExt::next(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gauge().await, 1.0, "the open stream counts");
    drop(body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gauge().await != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream still counts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// SIGTERM while an MCP call streams: the call finishes, then the server exits 0.
#[tokio::test]
async fn shutdown_lets_an_mcp_call_finish() {
    let (mut server, url) = mcp_server(None);
    let call = stateless_chat(300);
    let resp = post_stateless(&url, &call).await;
    server.terminate();
    let body = resp.text().await.unwrap();
    let last: serde_json::Value =
        serde_json::from_str(common::sse_data(&body).last().unwrap()).unwrap();
    assert_eq!(
        last["result"]["structuredContent"]["usage"]["completion_tokens"], 300,
        "{last}"
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

/// Events of an SSE body as (id, data) pairs.
fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|event| {
            let id = event.lines().find_map(|l| l.strip_prefix("id: "))?;
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_default();
            Some((id.to_owned(), data.to_owned()))
        })
        .collect()
}

/// A client that loses a call's stream reconnects with `Last-Event-ID` and gets
/// the rest: no progress lost, the result delivered.
#[tokio::test]
async fn a_lost_stream_resumes_with_last_event_id() {
    use futures_util::StreamExt;
    let (_server, url) = mcp_server(None);
    let client = reqwest::Client::new();
    let init = post_at_2025(&url, None, initialize()).await.unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    post_at_2025(
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"_meta": {"progressToken": "t"},
        "name": "chat", "arguments": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 200,
        "ignore_eos": true, "temperature": 0}}});
    let mut stream = post_at_2025(&url, Some(&session), call)
        .await
        .unwrap()
        .bytes_stream();
    let mut first = String::new();
    while sse_events(&first).len() < 20 {
        first.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream); // the connection is lost mid-call
    let seen = sse_events(&first);
    let last_id = seen.last().unwrap().0.clone();
    let rest = client
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 200);
    let mut body = rest.bytes_stream();
    let mut second = String::new();
    while !second.contains("\"result\"") {
        second.push_str(&String::from_utf8_lossy(
            &body
                .next()
                .await
                .expect("resumed stream ended early")
                .unwrap(),
        ));
    }
    let mut events = seen.clone();
    for event in sse_events(&second) {
        if !events.iter().any(|(id, _)| *id == event.0) {
            events.push(event);
        }
    }
    let messages: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str(d).ok())
        .collect();
    let result = messages.iter().find(|m| m["id"] == 2).expect("the result");
    assert_eq!(
        result["result"]["structuredContent"]["usage"]["completion_tokens"],
        200
    );
    let progress: String = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .filter_map(|m| m["params"]["message"].as_str())
        .collect();
    assert_eq!(
        progress,
        result["result"]["structuredContent"]["text"]
            .as_str()
            .unwrap(),
        "no progress lost"
    );
}

#[tokio::test]
async fn idle_sessions_expire() {
    let config = "[http_mcp]\nsession_idle_timeout_secs = 1\n";
    let (_server, url) = mcp_server(Some(config));
    let init = initialize();
    let resp = post_at_2025(&url, None, init).await.unwrap();
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    post_at_2025(
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    let ping = |id: u64| {
        post_at_2025(
            &url,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": id, "method": "ping"}),
        )
    };
    assert_eq!(
        ping(2).await.unwrap().status(),
        200,
        "a fresh session answers"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        ping(3).await.unwrap().status(),
        404,
        "the idle session is gone"
    );
}

/// Issue 14, item 7: SSE priming events (an empty `data:`) only for sessions at
/// 2025-11-25 or later; older sessions get none, on any stream.
#[tokio::test]
async fn priming_events_only_for_sessions_that_know_them() {
    let (_server, url) = mcp_server(None);
    let client = unpooled_client();
    let priming = |text: &str| {
        text.lines()
            .any(|l| l.trim_end() == "data:" || l == "data: ")
    };
    for (version, expected) in [
        ("2024-11-05", false),
        ("2025-03-26", false),
        ("2025-06-18", false),
        ("2025-11-25", true),
    ] {
        let (session, body) = common::open_session_at(&url, version, None).await;
        assert_eq!(priming(&body), expected, "{version} initialize: {body:?}");
        assert!(
            body.contains(&format!("\"protocolVersion\":\"{version}\"")),
            "{body}"
        );
        let post = |body: Value| {
            client
                .post(&url)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &session)
                .header("mcp-protocol-version", version)
                .json(&body)
                .send()
        };
        let listed = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(listed.contains("\"chat\""), "{listed}");
        assert_eq!(
            priming(&listed),
            expected,
            "{version} tools/list: {listed:?}"
        );
        // The standalone GET stream: what arrives in its first half second.
        let mut stream = client
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", version)
            .send()
            .await
            .unwrap();
        let mut first = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, stream.chunk()).await {
            first.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert_eq!(priming(&first), expected, "{version} GET stream: {first:?}");
    }
}
