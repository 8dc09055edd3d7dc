//! What an adversarial probe of /mcp/stream found (issue 12), each as a test
//! against the real binary: authentication from every key source, limits taken
//! atomically, refusals that keep connections usable, key guessing slowed,
//! sessions bound to their key, slow and idle connections closed, bad JSON-RPC
//! answered with the right codes, and what stays out of the logs.
#![cfg(feature = "http-mcp-stream")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::{Duration, Instant};

use common::{Server, authority};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}})
}

/// The MCP URL of a server started with `--http-mcp-port 0` and `extra`.
fn mcp(extra: &[&str], toml: Option<&str>, env: &[(&str, &str)]) -> (Server, String) {
    let mut args = vec!["--http-mcp-port", "0"];
    args.extend_from_slice(extra);
    let server = Server::start_with_env(&args, toml, env);
    let url = server.mcp.clone().unwrap();
    (server, url)
}

/// POSTs `body` with `auth` (an Authorization value) and, when given, a session.
async fn post(
    url: &str,
    auth: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .json(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    request.send().await.unwrap()
}

/// The first JSON-RPC message of a JSON or SSE answer.
async fn message(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| {
        common::sse_data(&text)
            .iter()
            .find_map(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null)
    })
}

/// Opens a session at 2025-06-18 (with `auth`); its id.
async fn open_session(url: &str, auth: Option<&str>) -> String {
    common::open_session_at(url, "2025-06-18", auth).await.0
}

/// Item 1: a key from any one source turns authentication on.
#[tokio::test]
async fn every_key_source_alone_requires_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, "the-key\n").unwrap();
    let file_toml = format!(
        "[http_mcp]\napi_keys_file = {:?}\n",
        key_file.display().to_string()
    );
    let env_key = [("MISTRALRS_MCP_API_KEYS", "the-key")];
    let sources = [
        ("environment", None, &env_key[..]),
        (
            "api_keys",
            Some("[http_mcp]\napi_keys = [\"the-key\"]\n".to_owned()),
            &[][..],
        ),
        ("api_keys_file", Some(file_toml), &[][..]),
        (
            "auth_key",
            Some("[http_mcp]\nauth_key = \"the-key\"\n".to_owned()),
            &[][..],
        ),
    ];
    for (source, toml, env) in sources {
        let (_server, url) = mcp(&[], toml.as_deref(), env);
        for (auth, want) in [
            (None, 401),
            (Some("Bearer wrong"), 401),
            (Some("Bearer the-key"), 200),
            (Some("bearer the-key"), 200),
        ] {
            let status = post(&url, auth, None, &initialize()).await.status();
            assert_eq!(status, want, "{source}: {auth:?}");
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args([
            "--port",
            "0",
            "--http-mcp-port",
            "0",
            "--http-mcp-auth-key",
            "k",
        ])
        .args(["--config", "/dev/stdin", "run", "-m", "demo"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"[http_mcp]\nauth_method = \"none\"\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("contradicts"),
        "{err}"
    );
}

/// Items 2 and 3: simultaneous handshakes never overshoot the session limit,
/// and stateless requests pass at the limit.
#[tokio::test]
async fn the_session_limit_holds_under_simultaneous_initializes() {
    let (server, url) = mcp(&[], Some("[http_mcp]\nmax_sessions = 10\n"), &[]);
    let client = reqwest::Client::new();
    let attempts = (0..200).map(|_| {
        client
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .json(&initialize())
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!((ok, refused), (10, 190), "{statuses:?}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("mistralrs_http_mcp_active_sessions 10"),
        "{metrics}"
    );

    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let stateless = client
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(
            &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": meta}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        stateless.status(),
        200,
        "a stateless request opens no session"
    );
    assert!(message(stateless).await["result"]["tools"].is_array());
}

/// Sends `request` on `stream` and reads one response (head and a
/// Content-Length body); `None` when the connection was closed or reset.
async fn exchange(stream: &mut TcpStream, request: &str) -> Option<String> {
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(text);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Item 4: after a 401 or 429 with the body unread, a keep-alive client either
/// is told the connection closes or can send its next request on it. The body
/// follows its headers a moment later, as from a client that writes them apart
/// (httpx lost 7 of 100 requests this way).
#[tokio::test]
async fn refusals_never_cost_a_keep_alive_client_its_next_request() {
    let toml = "[http_mcp]\nauth_method = \"api_key\"\napi_keys = [\"good\"]\n[http_mcp.rate_limit]\nper_key = 0.01\nburst = 1\n";
    let (_server, url) = mcp(&[], Some(toml), &[]);
    assert_eq!(
        post(&url, Some("Bearer good"), None, &initialize())
            .await
            .status(),
        200,
        "spends the key's budget"
    );
    let host = authority(&url);
    let body = initialize().to_string();
    let head = |key: &str| {
        format!(
            "POST /mcp/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
    };
    let next = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut lost = Vec::new();
    for (round, (key, want)) in [
        ("wrong", "401"),
        ("good", "429"),
        ("wrong", "401"),
        ("good", "429"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        stream.write_all(head(key).as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = exchange(&mut stream, &body).await.unwrap_or_default();
        assert_eq!(
            first.split(' ').nth(1),
            Some(want),
            "round {round}: {first}"
        );
        if first.to_ascii_lowercase().contains("connection: close") {
            continue;
        }
        if exchange(&mut stream, &next).await.is_none() {
            lost.push(format!(
                "round {round}: {want} kept the connection open, then lost the next request"
            ));
        }
    }
    assert!(lost.is_empty(), "{lost:?}");
}

/// Item 5: failed keys spend the address's own budget; then even the right key waits.
#[tokio::test]
async fn key_guessing_is_rate_limited_per_address() {
    // The default failure budget: 10 at once, then one per 10 s.
    let toml = "[http_mcp]\nauth_method = \"api_key\"\napi_keys = [\"right\"]\n[http_mcp.rate_limit]\nper_ip = 1\n";
    let (server, url) = mcp(&[], Some(toml), &[]);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..50 {
        let response = post(&url, Some("Bearer guess"), None, &initialize()).await;
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").cloned();
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        40,
        "{statuses:?}"
    );
    let wait: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    let right = post(&url, Some("Bearer right"), None, &initialize()).await;
    assert_eq!(
        right.status(),
        429,
        "a guesser gains nothing by guessing right now"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"mistralrs_http_mcp_rate_limited_total{scope="auth_failures"} 41"#),
        "{metrics}"
    );
}

/// Item 6: a session answers only the key that opened it; DELETE says 200 once
/// and 404 after; session ids stay out of `info` logs.
#[tokio::test]
async fn sessions_are_bound_to_their_key() {
    let (server, logs) = Server::start_capturing_logs(
        &[
            "--http-mcp-port",
            "0",
            "--http-mcp-auth-key",
            "key-a",
            "--http-mcp-auth-key",
            "key-b",
            "--log-level",
            "info",
        ],
        None,
    );
    let url = server.mcp.clone().unwrap();
    let (a, b) = (Some("Bearer key-a"), Some("Bearer key-b"));
    let session = open_session(&url, a).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        post(&url, b, Some(&session), &list).await.status(),
        404,
        "another key"
    );
    assert_eq!(
        post(&url, a, Some(&session), &list).await.status(),
        200,
        "its key"
    );
    let delete = |auth: &'static str| {
        reqwest::Client::new()
            .delete(&url)
            .header("authorization", auth)
            .header("mcp-session-id", session.as_str())
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    assert_eq!(
        delete("Bearer key-b").await.unwrap().status(),
        404,
        "another key cannot delete"
    );
    assert_eq!(
        delete("Bearer key-a").await.unwrap().status(),
        200,
        "the Python SDK wants 200 or 204"
    );
    assert_eq!(
        delete("Bearer key-a").await.unwrap().status(),
        404,
        "already deleted"
    );
    assert_eq!(post(&url, a, Some(&session), &list).await.status(), 404);
    let logs = logs.lock().unwrap().clone();
    assert!(!logs.contains(&session), "a session id was logged:\n{logs}");
}

/// Item 7: one address cannot hold more connections than its cap; the rest are
/// closed on accept, and a freed slot serves again.
#[tokio::test]
async fn an_address_holds_at_most_its_connection_cap() {
    let (server, url) = mcp(&[], Some("max_connections_per_ip = 20\n"), &[]);
    let host = authority(&url);
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(TcpStream::connect(&host).await.unwrap());
    }
    let closed = futures_util::future::join_all(held.iter_mut().map(|stream| async move {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        10,
        "30 against a cap of 20"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(post(&url, None, None, &initialize()).await.status(), 200);
    let metrics = server.metrics().await;
    let refused = r#"mistralrs_connections_refused_total{reason="per_ip"} 10"#;
    assert!(metrics.contains(refused), "{metrics}");
}

/// Item 7: slow headers and idle keep-alive connections are closed while
/// others are served.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let toml = "header_read_timeout_secs = 1\nidle_connection_timeout_secs = 1\n";
    let (_server, url) = mcp(&[], Some(toml), &[]);
    let host = authority(&url);
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        stream
            .write_all(b"POST /mcp/stream HTTP/1.1\r\nHo")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Others keep being served while the slow ones trickle.
    for stream in &mut slow {
        let _ = stream.write_all(b"s").await;
    }
    let served = post(&url, None, None, &initialize()).await.status();
    assert_eq!(served, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut still_open = 0;
    for stream in &mut slow {
        let mut byte = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(_)) => {
                // A 408 or similar before closing is fine; it must close next.
                if !matches!(stream.read(&mut byte).await, Ok(0) | Err(_)) {
                    still_open += 1;
                }
            }
            Err(_) => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "slow-header connections still open after the timeout"
    );
    // An idle kept-alive connection closes too.
    let mut idle = TcpStream::connect(&host).await.unwrap();
    let health = format!("GET /mcp/stream HTTP/1.1\r\nHost: {host}\r\n\r\n");
    assert!(exchange(&mut idle, &health).await.is_some());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut byte = [0u8; 1];
    let closed = matches!(
        tokio::time::timeout(Duration::from_millis(500), idle.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    );
    assert!(closed, "an idle connection stayed open");
}

/// Item 8: rates a limiter cannot count are start-up errors naming the key.
#[test]
fn tiny_rates_are_config_errors_not_panics() {
    for (key, value) in [("global", "1e-30"), ("per_key", "1e-12")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates.toml");
        std::fs::write(&path, format!("[http_mcp.rate_limit]\n{key} = {value}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
            .args([
                "--port",
                "0",
                "--http-mcp-port",
                "0",
                "--config",
                path.to_str().unwrap(),
            ])
            .args(["run", "-m", "demo"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(key) && !err.contains("panicked"), "{err}");
    }
}

/// Items 10-12: bad JSON-RPC gets 400 with -32600/-32700, bad parameters -32602,
/// bad `chat` arguments a tool error.
#[tokio::test]
async fn bad_json_rpc_gets_the_codes_the_specs_name() {
    let (_server, url) = mcp(&[], None, &[]);
    let client = reqwest::Client::new();
    let raw = |body: Vec<u8>| {
        client
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for (body, code) in [
        (
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_vec(),
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#.to_vec(),
            -32600,
        ),
        (
            br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_vec(),
            -32600,
        ),
        (br#"{"id":1,"method":"ping"}"#.to_vec(), -32600),
        (
            br#"{"jsonrpc":"2.1","id":1,"method":"ping"}"#.to_vec(),
            -32600,
        ),
        (b"42".to_vec(), -32600),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#.to_vec(),
            -32600,
        ),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffng\"}".to_vec(),
            -32700,
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"\ud800"}"#.to_vec(),
            -32700,
        ),
        (deep.into_bytes(), -32700),
    ] {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let response = raw(body).await.unwrap();
        assert_eq!(response.status(), 400, "{shown}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{shown}: {answer}");
    }
    // A body that breaks off before its Content-Length is a 400, not a 413.
    let host = authority(&url);
    let mut stream = TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /mcp/stream HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: {ACCEPT_BOTH}\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("body_unreadable"), "{answer}");

    let session = open_session(&url, None).await;
    for call in [
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "chat", "arguments": "str"}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": "loud"}}),
    ] {
        let answer = message(post(&url, None, Some(&session), &call).await).await;
        assert_eq!(answer["error"]["code"], -32602, "{call}: {answer}");
        assert_eq!(answer["id"], call["id"]);
    }
    for arguments in [
        json!({"messages": "x"}),
        json!({"messages": []}),
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}),
    ] {
        let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "chat", "arguments": arguments}});
        let answer = message(post(&url, None, Some(&session), &call).await).await;
        assert_eq!(answer["result"]["isError"], true, "{arguments}: {answer}");
    }
}

/// Item 13: the session gauge drops when a session expires, with no request
/// to notice; a session whose GET stream is open does not expire.
#[tokio::test]
async fn idle_sessions_leave_the_gauge_and_open_streams_keep_theirs() {
    let (server, url) = mcp(
        &[],
        Some("[http_mcp]\nsession_idle_timeout_secs = 1\n"),
        &[],
    );
    let idle = open_session(&url, None).await;
    let streaming = open_session(&url, None).await;
    let stream = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &streaming)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        server
            .metrics()
            .await
            .contains("mistralrs_http_mcp_active_sessions 2")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server
        .metrics()
        .await
        .contains("mistralrs_http_mcp_active_sessions 1")
    {
        assert!(
            Instant::now() < deadline,
            "the idle session did not leave the gauge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        post(&url, None, Some(&streaming), &list).await.status(),
        200,
        "kept alive by its stream"
    );
    assert_eq!(
        post(&url, None, Some(&idle), &list).await.status(),
        404,
        "expired"
    );
    drop(stream);
}

/// Item 15: the one-line curl from the docs works: no session, no protocol
/// version, `Accept: */*` or none at all; an answer in JSON.
#[tokio::test]
async fn a_one_line_curl_is_answered_with_json() {
    let (_server, url) = mcp(&["--http-mcp-auth-key", "K"], None, &[]);
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", &url, "-H", "Authorization: Bearer K"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", r#"{"jsonrpc":"2.0","method":"tools/list","id":"1"}"#])
        .output()
        .expect("curl");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(answer["id"], "1");
    assert_eq!(answer["result"]["tools"][0]["name"], "chat", "{answer}");
    let no_accept = reqwest::Client::new()
        .post(&url)
        .header("authorization", "Bearer K")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","method":"ping","id":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_accept.status(), 200);
    assert!(
        no_accept.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

/// Item 25: prompts stay out of the logs, even at `debug`, unless asked for.
#[tokio::test]
async fn prompts_stay_out_of_debug_logs_unless_asked() {
    for (toml, want) in [("", false), ("log_payloads = true\n", true)] {
        let (server, logs) = Server::start_capturing_logs(
            &["--http-mcp-port", "0", "--log-level", "debug"],
            Some(toml),
        );
        let url = server.mcp.clone().unwrap();
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "chat",
            "arguments": {"messages": [{"role": "user", "content": "SECRET-PROMPT-MARKER"}], "max_tokens": 2}}});
        let session = open_session(&url, None).await;
        let answer = message(post(&url, None, Some(&session), &call).await).await;
        assert!(answer["result"].is_object(), "{answer}");
        let chat = json!({"messages": [{"role": "user", "content": "SECRET-PROMPT-MARKER"}], "max_tokens": 2});
        assert_eq!(
            common::post(&server, "/v1/chat/completions", &chat).await.0,
            200
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let logs = logs.lock().unwrap().clone();
        assert_eq!(
            logs.contains("SECRET-PROMPT-MARKER"),
            want,
            "{toml:?}:\n{logs}"
        );
    }
}
