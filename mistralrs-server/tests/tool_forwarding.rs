//! Tool forwarding end to end: real upstream MCP servers from npm
//! (`@modelcontextprotocol/server-everything` over stdio and Streamable HTTP,
//! `@modelcontextprotocol/server-filesystem` on a temporary folder) behind the
//! real binary, driven through /mcp/stream by the official Python MCP SDK
//! (tests/python/forwarding_client.py).
#![cfg(feature = "tool-forwarding")]
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::services::wait_until_listening;
use common::{Server, node, node_package, run_python};
use serde_json::Value;

const EVERYTHING: &str = "@modelcontextprotocol/server-everything";
const FILESYSTEM: &str = "@modelcontextprotocol/server-filesystem";

/// `[[mcp_client.servers]]` for server-everything over stdio.
fn everything_stdio(timeout_secs: u64) -> String {
    format!(
        "[[mcp_client.servers]]\nname = \"everything\"\ncommand = {:?}\nargs = [{:?}]\ntimeout_secs = {timeout_secs}\n",
        node(),
        node_package(EVERYTHING, "dist/index.js"),
    )
}

/// `[[mcp_client.servers]]` for server-filesystem serving `dir`.
fn filesystem_stdio(dir: &Path) -> String {
    format!(
        "[[mcp_client.servers]]\nname = \"filesystem\"\ncommand = {:?}\nargs = [{:?}, {:?}]\n",
        node(),
        node_package(FILESYSTEM, "dist/index.js"),
        dir.display().to_string(),
    )
}

fn start(config: &str) -> Server {
    let toml = format!("[mcp_client]\nenabled = true\n{config}");
    Server::start_with_config(&["--http-mcp-port", "0"], Some(&toml))
}

fn forwarding(server: &Server, args: &[&str]) -> String {
    let mcp = server.mcp.clone().unwrap();
    let mut all = vec![args[0], mcp.as_str(), server.base.as_str()];
    all.extend(&args[1..]);
    run_python("forwarding_client.py", &all)
}

/// A temporary folder, canonical (server-filesystem compares real paths).
fn shared_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().canonicalize().unwrap().display().to_string();
    (dir, real)
}

/// Polls `/health` (bounded) until upstream `name` satisfies `ready`.
async fn wait_upstream(server: &Server, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.health().await;
        let upstream = health["mcp_upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap();
        if ready(&upstream) {
            return upstream;
        }
        assert!(Instant::now() < deadline, "upstream {name}: {upstream}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forwards_tools_prompts_and_resources_of_real_upstreams() {
    let (_dir, path) = shared_dir();
    let file = format!("{path}/notes.txt");
    std::fs::write(&file, "forwarded through mistralrs").unwrap();
    let server = start(&format!(
        "{}{}",
        everything_stdio(30),
        filesystem_stdio(Path::new(&path))
    ));
    let health = server.health().await;
    assert_eq!(health["status"], "ok");
    for upstream in health["mcp_upstreams"].as_array().unwrap() {
        assert_eq!(upstream["status"], "up", "{health}");
        assert!(upstream["tools"].as_u64().unwrap() > 5, "{health}");
    }
    let out = forwarding(&server, &["suite", &file, "forwarded through mistralrs"]);
    assert!(out.contains("suite ok"), "{out}");
    let metrics = server.metrics().await;
    assert!(
        metrics
            .contains("mistralrs_tool_forwarded_duration_seconds_count{namespace=\"filesystem\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("mistralrs_mcp_upstream_up{server=\"everything\"} 1"));
    common::assert_promtool_accepts(&metrics);
    // The dashboard's tool panels query series this server exports.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    ))
    .unwrap();
    for family in [
        "mistralrs_tool_calls_total",
        "mistralrs_tool_forwarded_duration_seconds",
        "mistralrs_tool_errors_total",
        "mistralrs_mcp_upstream_up",
    ] {
        assert!(dashboard.contains(family), "{family} has no panel");
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} not exported"
        );
    }
}

#[tokio::test]
async fn the_policy_hides_and_refuses_blocked_tools_under_any_spelling() {
    let (_dir, path) = shared_dir();
    let server = start(&format!(
        "{}{}[tool_forwarding.security]\nallowed_namespaces = [\"everything\"]\nblocked_tools = [\"everything__get-env\"]\nmax_argument_bytes = 2000\n",
        everything_stdio(30),
        filesystem_stdio(Path::new(&path))
    ));
    let out = forwarding(&server, &["policy"]);
    assert!(out.contains("policy ok"), "{out}");
}

#[tokio::test]
async fn a_keys_scope_limits_what_it_sees_and_calls_and_keys_stay_out_of_upstreams() {
    let (_dir, path) = shared_dir();
    let toml = format!(
        "[http_mcp]\nauth_method = \"api_key\"\n\
         [mcp_client]\nenabled = true\n{}{}\
         [[tool_forwarding.security.key_scopes]]\nkey_env = \"TEST_SCOPED_KEY\"\n\
         namespaces = [\"everything\"]\ntools = [\"everything__echo\", \"everything__get-env\"]\n",
        everything_stdio(30),
        filesystem_stdio(Path::new(&path))
    );
    let server = Server::start_with_env(
        &["--http-mcp-port", "0"],
        Some(&toml),
        &[
            ("TEST_SCOPED_KEY", "scoped-key-123"),
            ("MISTRALRS_MCP_API_KEYS", "full-access"),
        ],
    );
    let out = forwarding(&server, &["scoped", "scoped-key-123"]);
    assert!(out.contains("scoped ok"), "{out}");
}

#[tokio::test]
async fn cacheable_results_are_replayed_until_the_ttl_and_errors_never() {
    let (_dir, path) = shared_dir();
    let server = start(&format!(
        "{}[tool_forwarding.cache]\nenabled = true\nttl_seconds = 1\nmax_size = 100\ncacheable_tools = [\"filesystem__read_text_file\"]\n",
        filesystem_stdio(Path::new(&path))
    ));
    let out = forwarding(&server, &["cache", &format!("{path}/cached.txt")]);
    assert!(out.contains("cache ok"), "{out}");
}

#[tokio::test]
async fn an_upstream_killed_mid_call_gives_an_error_and_is_back_after_reconnect() {
    let server = start(&everything_stdio(30));
    let out = forwarding(&server, &["kill"]);
    assert!(out.contains("kill ok"), "{out}");
    let metrics = server.metrics().await;
    for series in [
        "mistralrs_tool_calls_total{namespace=\"everything\",outcome=\"tool_error\",tool=\"trigger-long-running-operation\"} 1",
        "mistralrs_tool_errors_total{kind=\"transport\",namespace=\"everything\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("cancelled");
    let python = std::env::var("MISTRALRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = format!(
        "{}/tests/python/cancel_probe_server.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = start(&format!(
        "[[mcp_client.servers]]\nname = \"probe\"\ncommand = {python:?}\nargs = [{probe:?}, {:?}]\n",
        marker.display().to_string()
    ));
    wait_upstream(&server, "probe", |u| u["status"] == "up").await;
    let out = forwarding(&server, &["cancel", &marker.display().to_string()]);
    assert!(out.contains("cancel ok"), "{out}");
}

#[tokio::test]
async fn shutdown_ends_upstream_child_processes() {
    let mut server = start(&everything_stdio(30));
    let up = wait_upstream(&server, "everything", |u| u["status"] == "up").await;
    let pid = up["pid"].as_u64().unwrap();
    let proc_dir = format!("/proc/{pid}");
    assert!(Path::new(&proc_dir).exists());
    server.terminate();
    assert!(server.child.wait().unwrap().success(), "clean exit");
    // The server ends its children before it exits; init may take a moment to
    // reap one that was reparented, but not the second a child takes to notice.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Path::new(&proc_dir).exists() {
        assert!(
            Instant::now() < deadline,
            "upstream {pid} outlived the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// server-everything in Streamable HTTP mode on `port`, killed on drop.
struct HttpUpstream(Child);

impl HttpUpstream {
    fn start(port: u16) -> Self {
        let child = Command::new(node())
            .arg(node_package(EVERYTHING, "dist/index.js"))
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self::listening(child, port)
    }

    /// `child`, once it listens on `port` (bounded wait).
    fn listening(child: Child, port: u16) -> Self {
        let mut upstream = Self(child);
        let within = Duration::from_secs(30);
        if let Err(why) = wait_until_listening(&mut upstream.0, port, within) {
            panic!("the upstream {why}");
        }
        upstream
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python SDK server of tests/python serving Streamable HTTP on `port`
/// (its first argument; `args` follow), once it listens.
fn python_http_upstream(script: &str, port: u16, args: &[&str]) -> HttpUpstream {
    let python = std::env::var("MISTRALRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let child = Command::new(python)
        .arg(path)
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    HttpUpstream::listening(child, port)
}

/// The conformance fixture (tests/python/conformance_server.py, the official
/// Python SDK) over Streamable HTTP on a free port; its /mcp URL.
fn conformance_fixture() -> (HttpUpstream, String) {
    let port = free_port();
    let upstream = python_http_upstream("conformance_server.py", port, &[]);
    (upstream, format!("http://127.0.0.1:{port}/mcp"))
}

/// Runs every server scenario of the conformance suite, active and pending,
/// with no expected failures, against `url`; each must pass.
fn assert_whole_conformance_suite_passes(url: &str, through: &str) {
    let report = common::run_conformance(url, &["--suite", "all"]);
    let scenarios = common::conformance_server_scenarios();
    assert!(scenarios.len() >= 30, "{scenarios:?}");
    for scenario in &scenarios {
        assert!(
            report.contains(&format!("✓ {scenario}:")),
            "{scenario} did not pass {through}:\n{report}"
        );
    }
    assert!(!report.contains('✗'), "{through}:\n{report}");
}

fn call(server: &Server, tool: &str, arguments: &str) -> Value {
    let out = forwarding(server, &["call", tool, arguments]);
    serde_json::from_str(out.trim()).unwrap()
}

#[tokio::test]
async fn an_http_upstream_that_goes_away_fails_fast_and_is_back_when_it_returns() {
    let port = free_port();
    let upstream = HttpUpstream::start(port);
    let server = start(&format!(
        "[[mcp_client.servers]]\nname = \"remote\"\nurl = \"http://127.0.0.1:{port}/mcp\"\ntimeout_secs = 5\n"
    ));
    wait_upstream(&server, "remote", |u| u["status"] == "up").await;
    let echoed = call(&server, "remote__echo", r#"{"message": "over http"}"#);
    assert_eq!(echoed["is_error"], false, "{echoed}");
    assert!(echoed["text"].as_str().unwrap().contains("over http"));

    drop(upstream);
    let failed = call(&server, "remote__echo", r#"{"message": "anyone?"}"#);
    assert_eq!(failed["is_error"], true, "{failed}");
    assert!(
        failed["text"].as_str().unwrap().contains("remote"),
        "{failed}"
    );
    let down = wait_upstream(&server, "remote", |u| u["status"] == "down").await;
    assert!(down["error"].is_string(), "{down}");
    let started = Instant::now();
    let fast = call(&server, "remote__echo", r#"{"message": "still there?"}"#);
    assert_eq!(fast["is_error"], true, "{fast}");
    assert!(
        fast["text"].as_str().unwrap().contains("unavailable"),
        "{fast}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a down upstream fails fast"
    );

    let _back = HttpUpstream::start(port);
    wait_upstream(&server, "remote", |u| u["status"] == "up").await;
    let echoed = call(&server, "remote__echo", r#"{"message": "again"}"#);
    assert_eq!(echoed["is_error"], false, "{echoed}");
}

/// An https upstream (the Python SDK under uvicorn, with a certificate from a
/// throwaway CA): trusted through `ca_file`, refused with a certificate error
/// without it.
#[tokio::test]
async fn an_https_upstream_is_trusted_through_its_ca_file_and_refused_without() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let upstream = python_http_upstream(
        "tls_upstream_server.py",
        port,
        &[dir.path().to_str().unwrap()],
    );
    let ca = dir.path().join("ca.pem");
    let server = start(&format!(
        "[[mcp_client.servers]]\nname = \"secure\"\nurl = \"https://127.0.0.1:{port}/mcp\"\n\
         ca_file = {:?}\ntimeout_secs = 10\n\
         [[mcp_client.servers]]\nname = \"untrusted\"\nurl = \"https://127.0.0.1:{port}/mcp\"\n\
         timeout_secs = 10\n",
        ca.display().to_string()
    ));
    wait_upstream(&server, "secure", |u| u["status"] == "up").await;
    let reply = call(&server, "secure__shout", r#"{"text": "over tls"}"#);
    assert_eq!(reply["is_error"], false, "{reply}");
    assert_eq!(reply["text"], "OVER TLS", "{reply}");

    let refused = wait_upstream(&server, "untrusted", |u| u["status"] == "down").await;
    let error = refused["error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("certificate"), "{refused}");
    drop(upstream);
}

/// The upstream is another mistralrs-server whose MCP endpoint wants an API key.
#[tokio::test]
async fn an_http_upstream_gets_its_bearer_token_from_the_environment() {
    let upstream = Server::start(&[
        "--http-mcp-port",
        "0",
        "--http-mcp-auth-key",
        "upstream-key",
    ]);
    let config = format!(
        "[mcp_client]\nenabled = true\n[[mcp_client.servers]]\nname = \"inner\"\nurl = \"{}\"\n\
         bearer_token_env = \"INNER_TOKEN\"\nheaders = {{ \"X-Client\" = \"gateway\" }}\ntimeout_secs = 10\n",
        upstream.mcp.clone().unwrap()
    );
    let start = |token: &str| {
        Server::start_with_env(
            &["--http-mcp-port", "0"],
            Some(&config),
            &[("INNER_TOKEN", token)],
        )
    };
    let gateway = start("upstream-key");
    wait_upstream(&gateway, "inner", |u| u["status"] == "up").await;
    let reply = call(
        &gateway,
        "inner__chat",
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}"#,
    );
    assert_eq!(reply["is_error"], false, "{reply}");
    // The demo model samples, and about 1 answer in 100 decodes to no text:
    // the upstream's engine having read the prompt is what proves the call got through.
    assert!(reply["text"].is_string(), "{reply}");
    let metrics = upstream.metrics().await;
    let prompt_tokens = common::series(&metrics, "mistralrs_prompt_tokens_total{model=\"demo\"}");
    assert!(prompt_tokens > 0.0, "the upstream's engine saw no prompt");

    let refused = start("wrong-key");
    let down = wait_upstream(&refused, "inner", |u| u["status"] == "down").await;
    let error = down["error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("auth") || error.contains("401"), "{down}");
    let metrics = upstream.metrics().await;
    assert!(
        metrics.contains("mistralrs_http_mcp_auth_failures_total{reason=\"invalid\"}"),
        "the upstream saw the wrong key"
    );
}

#[tokio::test]
async fn upstreams_that_fail_or_hang_do_not_stop_the_server_or_the_others() {
    let server = start(&format!(
        "[[mcp_client.servers]]\nname = \"missing\"\ncommand = \"/nonexistent/mcp-server\"\n\
         [[mcp_client.servers]]\nname = \"silent\"\ncommand = \"sleep\"\nargs = [\"60\"]\ntimeout_secs = 1\n{}",
        everything_stdio(30)
    ));
    let missing = wait_upstream(&server, "missing", |u| u["status"] == "down").await;
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/mcp-server"),
        "{missing}"
    );
    let silent = wait_upstream(&server, "silent", |u| u["status"] == "down").await;
    assert!(
        silent["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1 s"),
        "{silent}"
    );
    wait_upstream(&server, "everything", |u| u["status"] == "up").await;
    let echoed = call(&server, "everything__echo", r#"{"message": "fine"}"#);
    assert_eq!(echoed["is_error"], false, "{echoed}");
    let refused = call(&server, "silent__anything", "{}");
    assert_eq!(refused["is_error"], true, "{refused}");
    assert!(refused["text"].as_str().unwrap().contains("unavailable"));
    let metrics = server.metrics().await;
    assert!(metrics.contains("mistralrs_mcp_upstream_up{server=\"silent\"} 0"));
    assert!(metrics.contains("mistralrs_mcp_upstream_up{server=\"everything\"} 1"));
    // The model is still served.
    let (status, _) = common::post(
        &server,
        "/v1/chat/completions",
        &serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_call_without_an_answer_within_the_timeout_is_a_tool_error() {
    let server = start(&everything_stdio(3));
    wait_upstream(&server, "everything", |u| u["status"] == "up").await;
    let started = Instant::now();
    let slow = call(
        &server,
        "everything__trigger-long-running-operation",
        r#"{"duration": 8, "steps": 1}"#,
    );
    assert_eq!(slow["is_error"], true, "{slow}");
    assert!(
        slow["text"]
            .as_str()
            .unwrap()
            .contains("did not answer within 3 s"),
        "{slow}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    // The upstream is still up and answers the next call.
    let echoed = call(&server, "everything__echo", r#"{"message": "after"}"#);
    assert_eq!(echoed["is_error"], false, "{echoed}");
}

#[test]
fn a_server_name_holding_the_separator_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mistralrs.toml");
    std::fs::write(
        &config,
        "[mcp_client]\nenabled = true\n[[mcp_client.servers]]\nname = \"my__fs\"\ncommand = \"true\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args(["--port", "0", "--config"])
        .arg(&config)
        .args(["run", "-m", "demo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("my__fs") && stderr.contains("separator"),
        "{stderr}"
    );
}

/// A sessionless `tools/call` (or any method) with `key`; the JSON answer.
async fn call_raw(url: &str, key: &str, method: &str, params: Value) -> (u16, Value) {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let response = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Issue 12, item 17: the feature's own templates load. A minimal file turns
/// the endpoint on with one key and forwarding off.
#[tokio::test]
async fn a_minimal_template_serves_with_its_key() {
    let toml = "[http_mcp]\nenabled = true\nport = 0\nauth_key = \"sk-minimal\"\n\
                [tool_forwarding]\nenabled = false\n";
    let server = Server::start_with_config(&[], Some(toml));
    let url = server
        .mcp
        .clone()
        .expect("enabled with a port from the file");
    let (status, _) = call_raw(&url, "wrong", "tools/list", serde_json::json!({})).await;
    assert_eq!(status, 401, "auth_key turns key auth on");
    let (status, list) = call_raw(&url, "sk-minimal", "tools/list", serde_json::json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        1,
        "chat only: {list}"
    );
    let off = Server::start_with_config(
        &["--http-mcp-port", "0"],
        Some("[http_mcp]\nenabled = false\n"),
    );
    assert!(off.mcp.is_none(), "enabled = false wins over a port");
}

/// Issue 12, item 17: a file with every section starts, serves and enforces
/// what it says, `server::tool` names included, and a typo in a deny list is
/// named in a warning.
#[tokio::test]
async fn a_full_template_enforces_every_section() {
    let toml = format!(
        "[prometheus_locks]\nenabled = true\nmetrics_endpoint = \"/prom\"\n\
         [http_mcp]\nenabled = true\nport = 0\nauth_method = \"api_key\"\napi_keys = [\"sk-full\"]\n\
         [http_mcp.rate_limit]\nglobal = 1000\nper_key = 100\nper_ip = 10\n\
         [mcp_client]\nenabled = true\n{}\
         [[mcp_client.servers]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/mcp\"\ntimeout_secs = 2\n\
         [tool_forwarding]\nenabled = true\nnamespace_strategy = \"server_prefix\"\n\
         [tool_forwarding.security]\nallowed_namespaces = [\"everything\", \"gone\"]\n\
         blocked_tools = [\"everything::get-env\", \"everything::no-such-tool\"]\n\
         [tool_forwarding.cache]\nenabled = true\nttl_seconds = 60\nmax_size = 100\n\
         cacheable_tools = [\"everything::get-sum\"]\n",
        everything_stdio(30)
    );
    let (server, logs) = Server::start_capturing_logs(&[], Some(&toml));
    let url = server.mcp.clone().unwrap();
    let health = server.health().await;
    assert_eq!(
        health["mcp_upstreams"].as_array().unwrap().len(),
        2,
        "{health}"
    );
    let (status, _) = call_raw(&url, "wrong", "tools/list", serde_json::json!({})).await;
    assert_eq!(status, 401);
    let (_, list) = call_raw(&url, "sk-full", "tools/list", serde_json::json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"everything__echo"), "{names:?}");
    assert!(
        !names.contains(&"everything__get-env"),
        "blocked with `::`: {names:?}"
    );
    let sum = serde_json::json!({"name": "everything__get-sum", "arguments": {"a": 2, "b": 3}});
    for _ in 0..2 {
        let (_, answer) = call_raw(&url, "sk-full", "tools/call", sum.clone()).await;
        assert!(
            answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .contains('5'),
            "{answer}"
        );
    }
    let blocked = serde_json::json!({"name": "everything__get-env", "arguments": {}});
    let (_, answer) = call_raw(&url, "sk-full", "tools/call", blocked).await;
    assert!(
        answer["error"].is_object() || answer["result"]["isError"] == true,
        "{answer}"
    );
    let metrics = reqwest::get(server.url("/prom"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"mistralrs_tool_cache_hits_total{namespace="everything"} 1"#),
        "{metrics}"
    );
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            call_raw(&url, "sk-full", "ping", serde_json::json!({}))
                .await
                .0,
        );
    }
    assert!(statuses.contains(&429), "per_ip = 10: {statuses:?}");
    let logs = logs.lock().unwrap().clone();
    assert!(
        logs.contains("`everything::get-env` is read as `everything__get-env`"),
        "{logs}"
    );
    assert!(
        logs.contains("everything__no-such-tool"),
        "a typo is named: {logs}"
    );
}

/// `[[mcp_client.servers]]` for server-everything over stdio named `name`.
fn everything_named(name: &str) -> String {
    everything_stdio(30).replace("name = \"everything\"", &format!("name = \"{name}\""))
}

/// The names of what `method` lists (sessionless, JSON).
async fn listed(server: &Server, method: &str, field: &str) -> Vec<String> {
    let (status, answer) = call_raw(server.mcp.as_deref().unwrap(), "-", method, Value::Null).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"][field]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A sessionless `tools/call` of `name`; the text of its result.
async fn call_text(server: &Server, name: &str, arguments: Value) -> String {
    let params = serde_json::json!({"name": name, "arguments": arguments});
    let (status, answer) =
        call_raw(server.mcp.as_deref().unwrap(), "-", "tools/call", params).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"]["isError"] != true, "{answer}");
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

/// Issue 14, item 1: `none` offers the upstreams' own names.
#[tokio::test]
async fn namespace_strategy_none_offers_the_upstreams_own_names() {
    let (_dir, path) = shared_dir();
    std::fs::write(format!("{path}/notes.txt"), "plain names").unwrap();
    let server = start(&format!(
        "[tool_forwarding]\nnamespace_strategy = \"none\"\n{}{}",
        everything_stdio(30),
        filesystem_stdio(Path::new(&path))
    ));
    let tools = listed(&server, "tools/list", "tools").await;
    for name in ["echo", "read_text_file", "chat"] {
        assert!(tools.iter().any(|t| t == name), "{name} in {tools:?}");
    }
    assert!(!tools.iter().any(|t| t.contains("__")), "{tools:?}");
    let echoed = call_text(&server, "echo", serde_json::json!({"message": "plain"})).await;
    assert!(echoed.contains("plain"), "{echoed}");
    let read = call_text(
        &server,
        "read_text_file",
        serde_json::json!({"path": format!("{path}/notes.txt")}),
    )
    .await;
    assert_eq!(read, "plain names");
    let prompts = listed(&server, "prompts/list", "prompts").await;
    assert!(
        !prompts.is_empty() && !prompts.iter().any(|p| p.contains("__")),
        "{prompts:?}"
    );
    let (status, answer) = call_raw(
        server.mcp.as_deref().unwrap(),
        "-",
        "prompts/get",
        serde_json::json!({"name": prompts[0]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer["result"]["messages"].is_array(), "{answer}");
    // The prefixed names are not offered, and do not reach an upstream.
    let (_, answer) = call_raw(
        server.mcp.as_deref().unwrap(),
        "-",
        "tools/call",
        serde_json::json!({"name": "everything__echo", "arguments": {"message": "x"}}),
    )
    .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown tool"),
        "{answer}"
    );
}

/// `none` with two upstreams offering the same names: a start-up error naming them.
#[test]
fn namespace_strategy_none_refuses_colliding_names_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mistralrs.toml");
    std::fs::write(
        &config,
        format!(
            "[mcp_client]\nenabled = true\n[tool_forwarding]\nnamespace_strategy = \"none\"\n{}{}",
            everything_named("a"),
            everything_named("b")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args(["--port", "0", "--http-mcp-port", "0", "--config"])
        .arg(&config)
        .args(["run", "-m", "demo"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tool `echo` of `a` (offered by `a` and `b`)")
            && stderr.contains("conditional"),
        "{stderr}"
    );
}

/// `conditional`: only the names two upstreams share get their prefix.
#[tokio::test]
async fn namespace_strategy_conditional_prefixes_only_shared_names() {
    let (_dir, path) = shared_dir();
    let server = start(&format!(
        "[tool_forwarding]\nnamespace_strategy = \"conditional\"\n{}{}{}",
        everything_named("a"),
        everything_named("b"),
        filesystem_stdio(Path::new(&path))
    ));
    let tools = listed(&server, "tools/list", "tools").await;
    for name in ["a__echo", "b__echo", "read_text_file", "chat"] {
        assert!(tools.iter().any(|t| t == name), "{name} in {tools:?}");
    }
    assert!(!tools.iter().any(|t| t == "echo"), "{tools:?}");
    for name in ["a__echo", "b__echo"] {
        let echoed = call_text(&server, name, serde_json::json!({"message": name})).await;
        assert!(echoed.contains(name), "{echoed}");
    }
    let listing = call_text(&server, "list_allowed_directories", serde_json::json!({})).await;
    assert!(listing.contains(&path), "{listing}");
}

/// `none` at runtime: an upstream that adds a name another upstream has is
/// left out of it, with a warning, a metric and a note on `/health`.
#[tokio::test]
async fn a_name_that_collides_later_is_left_out_and_reported() {
    let python = std::env::var("MISTRALRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let grower = format!(
        "{}/tests/python/growing_server.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = start(&format!(
        "[tool_forwarding]\nnamespace_strategy = \"none\"\n{}[[mcp_client.servers]]\nname = \"grower\"\ncommand = {python:?}\nargs = [{grower:?}]\n",
        everything_stdio(30)
    ));
    wait_upstream(&server, "grower", |u| u["status"] == "up").await;
    let tools = listed(&server, "tools/list", "tools").await;
    assert!(tools.iter().any(|t| t == "only_here") && tools.iter().any(|t| t == "echo"));
    assert_eq!(
        call_text(&server, "grow", serde_json::json!({})).await,
        "grown"
    );
    let grower = wait_upstream(&server, "grower", |u| u["left_out"].is_array()).await;
    assert_eq!(
        grower["left_out"],
        serde_json::json!(["tool `echo`: `everything` has a tool of that name"]),
        "{grower}"
    );
    assert_eq!(
        common::series(
            &server.metrics().await,
            "mistralrs_mcp_forwarded_names_left_out"
        ),
        1.0
    );
    // `echo` stays everything's; the newcomer's is not offered.
    let echoed = call_text(&server, "echo", serde_json::json!({"message": "who"})).await;
    assert!(
        echoed.contains("who") && !echoed.contains("growing"),
        "{echoed}"
    );
    let tools = listed(&server, "tools/list", "tools").await;
    assert_eq!(
        tools.iter().filter(|t| *t == "echo").count(),
        1,
        "{tools:?}"
    );
}

/// Issue 14, item 2: `completion/complete` reaches the upstream owning the
/// prompt (by its forwarded name) or the resource template (by its URI), under
/// either naming.
#[tokio::test]
async fn completions_are_forwarded_to_the_owner() {
    let server = start(&everything_stdio(30));
    let out = forwarding(&server, &["complete", "everything__"]);
    assert!(out.contains("complete ok"), "{out}");
    let plain = start(&format!(
        "[tool_forwarding]\nnamespace_strategy = \"none\"\n{}",
        everything_stdio(30)
    ));
    let out = forwarding(&plain, &["complete", ""]);
    assert!(out.contains("complete ok"), "{out}");
}

/// Issue 14, item 2: upstream `notifications/message` reach the sessions that
/// set a level, at their level, named after the upstream; not the others.
#[tokio::test]
async fn upstream_logs_reach_each_session_at_its_level() {
    let server = start(&log_probe());
    wait_upstream(&server, "logs", |u| u["status"] == "up").await;
    let out = forwarding(&server, &["logs"]);
    assert!(out.contains("logs ok"), "{out}");
}

/// Issue 14, item 2: resource subscriptions through the gateway, delivered to
/// exactly the sessions that subscribed, with one upstream subscription held
/// while any session holds one.
#[tokio::test]
async fn resource_updates_reach_only_the_sessions_that_subscribed() {
    let server = start(&everything_stdio(30));
    let out = forwarding(&server, &["subscribe"]);
    assert!(out.contains("subscribe ok"), "{out}");
}

/// Issue 14, item 4: with `sampling = "local"`, an upstream's
/// `sampling/createMessage` is answered by the served model: server-everything
/// then offers its sampling tool, and the answer comes from the engine.
#[tokio::test]
async fn an_upstreams_sampling_request_is_answered_by_the_served_model() {
    let plain = start(&format!("{}sampling = \"deny\"\n", everything_stdio(30)));
    let tools = listed(&plain, "tools/list", "tools").await;
    assert!(
        !tools
            .iter()
            .any(|t| t.ends_with("trigger-sampling-request")),
        "with sampling = \"deny\" the upstream sees no sampling capability: {tools:?}"
    );
    drop(plain);

    let server = start(&format!("{}sampling = \"local\"\n", everything_stdio(30)));
    let tools = listed(&server, "tools/list", "tools").await;
    assert!(
        tools
            .iter()
            .any(|t| t == "everything__trigger-sampling-request"),
        "{tools:?}"
    );
    let answer = call_text(
        &server,
        "everything__trigger-sampling-request",
        serde_json::json!({"prompt": "Say hello.", "maxTokens": 8}),
    )
    .await;
    let sampled: Value = serde_json::from_str(answer.split_once('\n').unwrap().1).unwrap();
    assert_eq!(sampled["model"], "demo", "{sampled}");
    assert_eq!(sampled["role"], "assistant", "{sampled}");
    assert!(sampled["content"]["text"].is_string(), "{sampled}");
    assert!(["maxTokens", "endTurn"].contains(&sampled["stopReason"].as_str().unwrap()));
    let metrics = server.metrics().await;
    assert_eq!(
        common::series(&metrics, "mistralrs_tool_sampling_total{source=\"local\"}"),
        1.0
    );
    // The engine ran it: server-everything's prompt and system prompt went in.
    assert!(common::series(&metrics, "mistralrs_prompt_tokens_total{model=\"demo\"}") > 5.0);

    // More tokens than the model's context: clamped, and the result says so.
    let answer = call_text(
        &server,
        "everything__trigger-sampling-request",
        serde_json::json!({"prompt": "Go on.", "maxTokens": 1_000_000}),
    )
    .await;
    let sampled: Value = serde_json::from_str(answer.split_once('\n').unwrap().1).unwrap();
    let clamped = &sampled["_meta"]["mistralrs/maxTokensClamped"];
    assert_eq!(clamped["asked"], 1_000_000, "{sampled}");
    assert!(clamped["used"].as_u64().unwrap() < 1_000_000, "{sampled}");
}

/// `[[mcp_client.servers]]` for the Python log probe (it also asks for roots).
fn log_probe() -> String {
    let python = std::env::var("MISTRALRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = format!("{}/tests/python/log_server.py", env!("CARGO_MANIFEST_DIR"));
    format!("[[mcp_client.servers]]\nname = \"logs\"\ncommand = {python:?}\nargs = [{probe:?}]\n")
}

/// `mcp_upstream_requests_total` for one upstream, method and answerer.
fn upstream_requests(metrics: &str, server: &str, method: &str, answered_by: &str) -> f64 {
    common::series(
        metrics,
        &format!(
            "mistralrs_mcp_upstream_requests_total{{answered_by=\"{answered_by}\",method=\"{method}\",server=\"{server}\"}}"
        ),
    )
}

/// Issue 14, item 3: an upstream's `sampling/createMessage`,
/// `elicitation/create` (form and URL) and `roots/list` during a call go to
/// the client whose call it is (Python SDK callbacks) and its answer, or its
/// error, goes back; a client without the capability gets the gateway's
/// answer: a served model samples, elicitation is declined, no roots. A
/// request the upstream withdraws is cancelled at the client.
#[tokio::test]
async fn upstream_requests_reach_the_client_whose_call_it_is() {
    let server = start(&format!("{}{}", everything_stdio(30), log_probe()));
    wait_upstream(&server, "logs", |u| u["status"] == "up").await;
    let out = forwarding(&server, &["relay"]);
    assert!(out.contains("relay ok"), "{out}");
    let metrics = server.metrics().await;
    let expected = [
        ("everything", "sampling/createMessage", "client", 1.0),
        ("everything", "sampling/createMessage", "model", 1.0),
        ("everything", "sampling/createMessage", "error", 1.0),
        ("logs", "sampling/createMessage", "error", 1.0),
        ("everything", "elicitation/create", "client", 2.0),
        ("logs", "elicitation/create", "client", 1.0),
        ("everything", "elicitation/create", "gateway", 1.0),
        ("logs", "roots/list", "client", 1.0),
        ("logs", "roots/list", "gateway", 1.0),
    ];
    for (upstream, method, answered_by, count) in expected {
        assert_eq!(
            upstream_requests(&metrics, upstream, method, answered_by),
            count,
            "{upstream} {method} answered by {answered_by}"
        );
    }
    for (source, count) in [("client", 1.0), ("local", 1.0)] {
        let series = format!("mistralrs_tool_sampling_total{{source=\"{source}\"}}");
        assert_eq!(common::series(&metrics, &series), count, "{series}");
    }
}

/// `mcp_upstream_sessions{server}` reaches `count` within 10 s.
async fn wait_client_upstreams(server: &Server, name: &str, count: f64) {
    let series = format!("mistralrs_mcp_upstream_sessions{{server=\"{name}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = common::series(&server.metrics().await, &series);
        if now == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, {count} expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 14, item 3: `session_mode = "per_client"` gives each client session
/// an upstream session (a child process) of its own, so server-everything's
/// roots, fetched once per upstream session, are each client's own; the
/// upstream sessions close with the clients' sessions.
#[tokio::test]
async fn per_client_sessions_keep_each_clients_roots_apart() {
    let server = start(&format!(
        "{}session_mode = \"per_client\"\n",
        everything_stdio(30)
    ));
    let out = forwarding(&server, &["per-client"]);
    assert!(out.contains("per client ok"), "{out}");
    // The Python SDK deletes its sessions on leaving; their upstream sessions end.
    wait_client_upstreams(&server, "everything", 0.0).await;
}

/// Issue 14, bad input: `max_upstream_sessions` bounds the per-client
/// upstream sessions; a client past it gets a tool error naming the setting
/// until a slot frees.
#[tokio::test]
async fn per_client_sessions_are_bounded() {
    let server = start(&format!(
        "{}session_mode = \"per_client\"\nmax_upstream_sessions = 1\n",
        everything_stdio(30)
    ));
    let out = forwarding(&server, &["per-client-limit"]);
    assert!(out.contains("per client limit ok"), "{out}");
    wait_client_upstreams(&server, "everything", 0.0).await;
}

/// Issue 14, bad input: a client answering a relayed request with garbage
/// gets a JSON-RPC error sent upstream (the call's result names the method);
/// a client that goes away while asked fails the upstream's request when rmcp
/// ends the closed session (it lets handlers drain for up to 5 s), well
/// before the upstream's 30 s timeout.
#[tokio::test]
async fn relayed_requests_fail_cleanly_on_garbage_and_on_a_client_gone() {
    let server = start(&everything_stdio(30));
    let out = forwarding(&server, &["relay-faults"]);
    assert!(out.contains("relay faults ok"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.metrics().await;
        let failed = upstream_requests(&metrics, "everything", "sampling/createMessage", "error");
        if failed == 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{failed} failed relays after 10 s, 2 expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 14, item 3: over Streamable HTTP the upstream's requests come on the
/// stream of the call they belong to, so three clients' calls in flight at
/// once each get their own client's answer.
#[tokio::test]
async fn concurrent_calls_on_an_http_upstream_each_ask_their_own_client() {
    let port = free_port();
    let _upstream = HttpUpstream::start(port);
    let server = start(&format!(
        "[[mcp_client.servers]]\nname = \"everything\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    ));
    wait_upstream(&server, "everything", |u| u["status"] == "up").await;
    let out = forwarding(&server, &["relay-concurrent"]);
    assert!(out.contains("relay concurrent ok"), "{out}");
    let metrics = server.metrics().await;
    assert_eq!(
        upstream_requests(&metrics, "everything", "sampling/createMessage", "client"),
        3.0
    );
}

/// A request in a raw session: the JSON-RPC answer.
async fn raw_request(
    url: &str,
    session: &str,
    version: &str,
    method: &str,
    params: Value,
) -> Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
    let text = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", version)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|m| m["id"] == 2)
        .unwrap_or_else(|| serde_json::from_str(&text).unwrap())
}

/// Issue 14, item 7: a session gets only content its protocol version has:
/// `resource_link` (2025-06-18) reaches older sessions as text naming the URI.
#[tokio::test]
async fn older_sessions_get_forwarded_results_they_can_read() {
    let server = start(&everything_stdio(30));
    let url = server.mcp.clone().unwrap();
    let call =
        serde_json::json!({"name": "everything__get-resource-links", "arguments": {"count": 2}});
    for (version, links) in [
        ("2024-11-05", false),
        ("2025-03-26", false),
        ("2025-06-18", true),
        ("2025-11-25", true),
    ] {
        let (session, _) = common::open_session_at(&url, version, None).await;
        let answer = raw_request(&url, &session, version, "tools/call", call.clone()).await;
        let content = answer["result"]["content"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"));
        let kinds: Vec<&str> = content
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.contains(&"resource_link"),
            links,
            "{version}: {kinds:?}"
        );
        if !links {
            let texts: String = content.iter().filter_map(|c| c["text"].as_str()).collect();
            assert!(
                texts.contains("demo://resource/"),
                "{version}: the URI is named: {texts}"
            );
        }
    }
}

/// Transparency: the conformance fixture passes the whole conformance suite
/// directly, and the same suite, every scenario with no expected failure,
/// passes through /mcp/stream with `namespace_strategy = "none"` and the
/// fixture as the only upstream, in `shared` and in `per_client` session mode
/// (tool results of every content type, logging, progress, sampling and
/// elicitation relayed to the caller, JSON Schema 2020-12 kept, resources,
/// templates, subscriptions, prompts, completions). Stateless 2026-07-28
/// requests (the Python SDK without `initialize`) get the same answers through
/// the gateway as from the fixture itself.
#[test]
fn the_whole_conformance_suite_passes_through_the_gateway() {
    let (_fixture, direct) = conformance_fixture();
    assert_whole_conformance_suite_passes(&direct, "directly against the fixture");
    let stateless = |url: &str| -> Value {
        serde_json::from_str(&run_python("stateless_scenarios.py", &[url])).unwrap()
    };
    let expected = stateless(&direct);
    for mode in ["shared", "per_client"] {
        let server = start(&format!(
            "[tool_forwarding]\nnamespace_strategy = \"none\"\n\
             [[mcp_client.servers]]\nname = \"fixture\"\nurl = \"{direct}\"\nsession_mode = \"{mode}\"\n"
        ));
        let gateway = server.mcp.clone().unwrap();
        assert_whole_conformance_suite_passes(&gateway, &format!("through the gateway ({mode})"));
        let mut answers = stateless(&gateway);
        // The gateway offers its own `chat` tool beside the forwarded ones.
        let tools = answers["tools"].as_object_mut().unwrap();
        assert!(tools.remove("chat").is_some(), "{tools:?}");
        assert_eq!(
            answers, expected,
            "stateless 2026-07-28 through the gateway ({mode})"
        );
    }
}

/// 2026-07-28 `subscriptions/listen` through the gateway (Python SDK, no
/// session): a stream listening to a forwarded resource gets its update and a
/// stream listening to another resource does not; each listened URI is
/// subscribed upstream while a stream holds it and withdrawn once the streams'
/// clients are gone.
#[test]
fn listen_streams_get_the_updates_of_their_resources_through_the_gateway() {
    let (_fixture, direct) = conformance_fixture();
    let server = start(&format!(
        "[tool_forwarding]\nnamespace_strategy = \"none\"\n\
         [[mcp_client.servers]]\nname = \"fixture\"\nurl = \"{direct}\"\n"
    ));
    let out = run_python("listen_client.py", &[server.mcp.as_deref().unwrap()]);
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        report["honored"],
        serde_json::json!(["test://watched-resource"]),
        "{report}"
    );
    assert_eq!(
        report["held while listening"],
        serde_json::json!(["test://static-text", "test://watched-resource"]),
        "{report}"
    );
    assert_eq!(report["touched"], "told 1 session(s)", "{report}");
    assert_eq!(
        report["watching received"], "ResourceUpdated(uri='test://watched-resource')",
        "{report}"
    );
    assert_eq!(report["other received"], Value::Null, "{report}");
    assert_eq!(report["held after"], serde_json::json!([]), "{report}");
}

/// Issue 14, 2026-07-28 multi round-trip requests: a client without a session
/// can't be sent the upstream's `sampling/createMessage` or
/// `elicitation/create`, so its call is parked and it answers in rounds
/// (`InputRequiredResult`, then its retry with `requestState`). The answers
/// come from the client's callbacks, not the gateway (which would sample with
/// the served model and decline the elicitation); a state that is unknown,
/// another tool's or used already is refused; a question left unanswered
/// fails the upstream's request.
#[tokio::test]
async fn stateless_clients_answer_upstream_requests_in_rounds() {
    let (_fixture, direct) = conformance_fixture();
    let server = start(&format!(
        "[tool_forwarding]\nnamespace_strategy = \"none\"\n\
         [[mcp_client.servers]]\nname = \"fixture\"\nurl = \"{direct}\"\n"
    ));
    let url = server.mcp.clone().unwrap();
    let out = tokio::task::spawn_blocking(move || run_python("input_rounds_client.py", &[&url]))
        .await
        .unwrap();
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        report["sampling"], "LLM response: 4, said the client",
        "{report}"
    );
    assert_eq!(
        report["sampling asked"][0],
        serde_json::json!(["What is 2+2?"])
    );
    assert_eq!(
        report["elicitation"], "Elicitation: action=accept, content={\"response\": \"Ada\"}",
        "{report}"
    );
    assert_eq!(
        report["elicitation asked"],
        serde_json::json!(["Your name?"])
    );
    assert_eq!(
        report["first round"],
        serde_json::json!({"result_type": "input_required", "questions": ["sampling/createMessage"], "has state": true})
    );
    for refused in ["unknown state", "state of another tool", "state reused"] {
        let said = report[refused].as_str().unwrap();
        assert!(
            said.contains("requestState names no call"),
            "{refused}: {said}"
        );
    }
    assert_eq!(report["unanswered"]["is_error"], true, "{report}");
    let unanswered = report["unanswered"]["text"].as_str().unwrap();
    assert!(unanswered.contains("left it unanswered"), "{unanswered}");
    let metrics = server.metrics().await;
    let answered = |method: &str, by: &str| {
        common::series(
            &metrics,
            &format!(
                "mistralrs_mcp_upstream_requests_total{{answered_by=\"{by}\",method=\"{method}\",server=\"fixture\"}}"
            ),
        )
    };
    assert_eq!(answered("sampling/createMessage", "client"), 1.0);
    assert_eq!(answered("elicitation/create", "client"), 1.0);
    assert_eq!(answered("sampling/createMessage", "error"), 1.0);
    assert_eq!(
        common::series(&metrics, "mistralrs_tool_sampling_total{source=\"local\"}"),
        0.0,
        "the served model did not answer"
    );
}
