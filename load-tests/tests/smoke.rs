//! Each scenario at small scale against the real server: it completes and its
//! summary holds sane numbers.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The server binary next to ours, built first if this test runs alone.
fn server_binary() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mistralrs-load"));
    let path = exe.parent().unwrap().join("mistralrs-server");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "mistralrs-server"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Server {
    let mut child = Command::new(server_binary())
        .args(["--port", "0", "run", "-m", "demo"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("mistralrs-server listening on ")
                .map(str::to_owned)
        })
        .expect("server start line");
    Server(child, url)
}

#[test]
fn openai_stream_smoke() {
    let server = start_server();
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-load"))
        .args([
            "openai-stream",
            "--url",
            &server.1,
            "--clients",
            "2",
            "--seconds",
            "2",
            "--max-tokens",
            "8",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let requests = summary["requests"].as_u64().unwrap();
    assert!(requests > 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let tokens_per_second = summary["tokens_per_second"].as_f64().unwrap();
    let seconds = summary["seconds"].as_f64().unwrap();
    assert!(
        (tokens_per_second * seconds - (requests * 8) as f64).abs() < 1.0,
        "8 tokens per request: {summary}"
    );
    assert_eq!(
        summary["time_to_first_token"]["count"].as_u64().unwrap(),
        requests
    );
    // One gap per content event after the first; a token that releases no text
    // of its own (a special token, half a character) makes no event.
    let gaps = summary["inter_token_latency"]["count"].as_u64().unwrap();
    assert!(
        gaps > 0 && gaps <= requests * 7,
        "{gaps} gaps for {requests} requests"
    );
    let p = &summary["request_latency"];
    assert!(p["p50_ms"].as_f64().unwrap() <= p["p99_ms"].as_f64().unwrap());
}

#[test]
fn load_goes_only_to_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-load"))
        .args([
            "openai-stream",
            "--url",
            "http://192.0.2.1:1234",
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
