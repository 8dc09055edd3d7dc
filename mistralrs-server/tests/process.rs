//! The binary as a process: start-up errors, graceful shutdown, and the official
//! `openai` Python client against it.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, post_raw, sse_data};
use serde_json::json;

fn run_server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn start_up_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typo.toml");
    std::fs::write(&config, "[http_mcp]\nprot = 1\n").unwrap();
    let out = run_server(&["--config", config.to_str().unwrap(), "run", "-m", "demo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("typo.toml") && err.contains("prot"), "{err}");

    let out = run_server(&["--port", "0", "run", "-m", "/no/such/model"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not found"), "{err}");

    #[cfg(feature = "http-mcp-stream")]
    let out = run_server(&[
        "--serve-ip",
        "0.0.0.0",
        "--port",
        "0",
        "--http-mcp-port",
        "0",
        "run",
        "-m",
        "demo",
    ]);
    #[cfg(feature = "http-mcp-stream")]
    {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("loopback"), "{err}");
    }
    let out = run_server(&["--port", "0", "--max-seqs", "0", "run", "-m", "demo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("max_seqs"),
        "flags are validated: {err}"
    );

    let out = run_server(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--kv-cache-blocks"));
}

#[test]
fn bad_model_settings_are_start_up_errors() {
    let refused = |args: &[&str], expected: &[&str]| {
        let out = run_server(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        for part in expected {
            assert!(err.contains(part), "{args:?}: {part:?} missing from {err}");
        }
    };
    refused(
        &["run", "-m", "demo", "--quantize", "q8_1"],
        &["q8_1", "q4_0, q4_1, q5_0, q5_1, q8_0, q2_k"],
    );
    refused(
        &["run", "-m", "demo", "--dtype", "f8"],
        &["f8", "f32, f16 or bf16"],
    );
    refused(
        &["--kv-cache-dtype", "int4", "run", "-m", "demo"],
        &["int4", "f32, f16, bf16 or q8_0"],
    );
    refused(&["--kv-cache-mem", "lots", "run", "-m", "demo"], &["lots"]);
    refused(
        &["--port", "0", "--kv-cache-mem", "1KiB", "run", "-m", "demo"],
        &["less than one KV cache block", "demo"],
    );
    refused(
        &[
            "--kv-cache-mem",
            "1GiB",
            "--kv-cache-blocks",
            "8",
            "run",
            "-m",
            "demo",
        ],
        &["--kv-cache-mem"],
    );
    refused(&["--threads", "0", "run", "-m", "demo"], &["threads"]);
    refused(
        &["--device", "tpu", "run", "-m", "demo"],
        &["tpu", "cpu, cuda or cuda:N"],
    );
    // Issue 16's bad input: a GPU this build can't drive stops start-up before
    // any model loads.
    refused(
        &["--port", "0", "--device", "cuda:1", "run", "-m", "demo"],
        &["cuda:1", "no CUDA support"],
    );
    for share in ["0", "1.5", "-0.2", "NaN"] {
        let flag = format!("--gpu-memory-utilization={share}");
        refused(
            &[flag.as_str(), "run", "-m", "demo"],
            &["gpu_memory_utilization", "above 0 and at most 1"],
        );
    }
    refused(
        &["--gpu-memory-utilization", "most", "run", "-m", "demo"],
        &["most"],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("both.toml");
    std::fs::write(&config, "kv_cache_blocks = 8\nkv_cache_mem = \"1GiB\"\n").unwrap();
    refused(
        &["--config", config.to_str().unwrap(), "run", "-m", "demo"],
        &["kv_cache_blocks", "kv_cache_mem"],
    );
    std::fs::write(&config, "[[models]]\nmodel = \"demo\"\nquantize = \"q3\"\n").unwrap();
    refused(
        &["--config", config.to_str().unwrap(), "run", "-m", "demo"],
        &["both.toml", "q3"],
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let mut server = Server::start(&[]);
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 400, "ignore_eos": true, "stream": true, "temperature": 0});
    let resp = post_raw(&server, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    server.terminate();
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(
        data.last().unwrap(),
        "[DONE]",
        "the stream finished cleanly"
    );
    let finish: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(
        finish["choices"][0]["finish_reason"], "length",
        "it ran to the end: {finish}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn shutdown_past_the_grace_period_cancels_what_is_left() {
    let mut server = Server::start_with_config(&[], Some("shutdown_timeout_secs = 1\n"));
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000, "ignore_eos": true, "stream": true});
    let resp = post_raw(&server, "/v1/chat/completions", &body).await;
    // Make sure it is running, then stop the server while it generates.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.terminate();
    let started = Instant::now();
    let text = resp.text().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let tail = &text[text.len().saturating_sub(300)..];
    assert!(
        text.contains("shutting down"),
        "the client is told why: {tail}"
    );
    let error = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v.get("error").is_some())
        .unwrap_or_default();
    assert_eq!(
        error["error"]["type"], "server_error",
        "not the caller's fault: {tail}"
    );
    assert_eq!(error["error"]["code"], "shutting_down", "{tail}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

/// The official `openai` Python client against the server.
#[test]
fn official_openai_python_client() {
    let server = Server::start(&[]);
    let stdout = common::run_python("openai_client.py", &[&server.url("/v1")]);
    assert!(stdout.contains("openai client: ok"));
}

#[cfg(not(feature = "http-mcp-stream"))]
#[test]
fn asking_for_mcp_without_the_feature_is_a_clear_error() {
    let out = run_server(&["--port", "0", "--http-mcp-port", "0", "run", "-m", "demo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("http-mcp-stream"),
        "{err}"
    );
}
