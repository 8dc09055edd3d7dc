//! `mistralrs.toml`: every setting of the server, its default and why.
//!
//! Unknown keys are errors (serde's `deny_unknown_fields` on every table), and
//! every error names the file and the key, so a typo never silently falls back to a
//! default. Command-line flags override the file (see `cli`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mistralrs_core::KvDtype;
use mistralrs_core::model::{FloatType, Quantization};
use mistralrs_mcp::config::{McpClientConfig, ToolForwardingConfig};
use serde::Deserialize;

use crate::client_ip::TrustedProxies;
use crate::connections::ConnectionLimits;
use crate::device::DeviceSpec;
use crate::openai::tools::ToolParser;

/// Longest connection timeout: a day (timers past that overflow the clock).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Slowest rate a limit may have: one request a day.
pub const MIN_RATE: f64 = 1.0 / 86_400.0;
/// Fastest: a billion a second (the limiter counts in nanoseconds).
pub const MAX_RATE: f64 = 1e9;
/// Most threads `threads` may ask for.
pub const MAX_THREADS: usize = 1024;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to bind. Default 127.0.0.1: nothing is exposed unless asked.
    pub serve_ip: Option<IpAddr>,
    /// Port of the OpenAI API and /metrics. Default 1234, as mistralrs-server.
    pub port: Option<u16>,
    /// Sequences running at once per model. Default 32.
    pub max_seqs: Option<usize>,
    /// KV cache blocks (16 tokens each) per model. Default 512.
    pub kv_cache_blocks: Option<usize>,
    /// KV cache size per model as memory (`512MiB`, `2GiB`), turned into
    /// blocks for each model's shape; instead of `kv_cache_blocks`.
    pub kv_cache_mem: Option<bytesize::ByteSize>,
    /// Type of the KV cache's keys and values: f32, f16, bf16 or q8_0.
    /// Default f16 on the CPU (half of f32's memory, as llama.cpp), bf16 on a
    /// GPU (the activations' dtype there); q8_0 about halves
    /// f16's. Attention still computes in f32.
    pub kv_cache_dtype: Option<KvDtype>,
    /// Tool-call format of the served models (`hermes`, `llama3_json`,
    /// `mistral`). Default: the one each chat template shows, else `hermes`.
    pub tool_parser: Option<ToolParser>,
    /// Threads for the model's matrix work. Default: the machine's physical
    /// cores (or `RAYON_NUM_THREADS`).
    pub threads: Option<usize>,
    /// Where the models run: `cpu`, `cuda` or `cuda:N`. Default `cpu`.
    pub device: Option<DeviceSpec>,
    /// On a GPU, the share of its memory the server may fill (weights, KV
    /// cache and what other processes hold), as vLLM's; the KV cache gets what
    /// the share leaves after the weights unless `kv_cache_blocks` or
    /// `kv_cache_mem` size it. Default 0.9: the rest is room for activations.
    pub gpu_memory_utilization: Option<f64>,
    /// Tokens per engine step (decode plus prefill chunks). Default 512.
    pub max_batch_tokens: Option<usize>,
    /// Requests allowed to wait per model before 503. Default 256.
    pub max_waiting: Option<usize>,
    /// Largest request body in bytes. Default 4 MiB: room for long prompts, no room
    /// for a memory attack.
    pub max_body_bytes: Option<usize>,
    /// Seconds a client has to send a request's headers, on both ports. Default 60
    /// (nginx's `client_header_timeout`): a client trickling headers is closed.
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may sit with no request in flight and no
    /// bytes moving before it is closed. Default 60.
    pub idle_connection_timeout_secs: Option<u64>,
    /// Open connections per client IP address, on each port; more are closed on
    /// accept. Default 512. Trusted proxies are exempt.
    pub max_connections_per_ip: Option<usize>,
    /// Load balancers in front of the server (addresses or networks, e.g.
    /// `["127.0.0.1", "10.0.0.0/8"]`): their connections are not held to
    /// `max_connections_per_ip`, and on the MCP port the client's address (for
    /// per-IP and auth-failure limits) comes from their `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
    /// Seconds in-flight requests get to finish at shutdown. Default 10.
    pub shutdown_timeout_secs: Option<u64>,
    /// `error`, `warn`, `info`, `debug` or `trace`. Default `info`.
    pub log_level: Option<String>,
    /// Log prompts, tool arguments and results (at `debug`). Default false: they
    /// are user data; logs carry sizes and ids instead.
    pub log_payloads: bool,
    /// Lock instrumentation and the metrics endpoint.
    pub prometheus_locks: PrometheusLocksConfig,
    /// The MCP endpoint over Streamable HTTP.
    pub http_mcp: HttpMcpConfig,
    /// Connections to upstream MCP servers.
    pub mcp_client: McpClientConfig,
    /// Re-exporting upstream tools through the MCP endpoint.
    pub tool_forwarding: ToolForwardingConfig,
    /// Models to serve; `run -m` adds one more.
    pub models: Vec<ModelEntry>,
}

/// `[prometheus_locks]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusLocksConfig {
    /// Record lock wait and hold times (with the `prometheus-locks` feature).
    /// Default true: the cost is measured in docs/perf.md.
    pub enabled: bool,
    /// Path of the metrics endpoint on the main port. Default `/metrics`.
    pub metrics_endpoint: String,
}

impl Default for PrometheusLocksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics_endpoint: "/metrics".into(),
        }
    }
}

/// How MCP clients authenticate.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No authentication; only allowed on a loopback address.
    None,
    /// `Authorization: Bearer <key>` with one of the configured keys.
    ApiKey,
}

/// `[http_mcp]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpMcpConfig {
    /// `false` turns the endpoint off even when a port is given; `true` requires
    /// a port (here or `--http-mcp-port`). Default: on exactly when a port is given.
    pub enabled: Option<bool>,
    /// Port of `/mcp/stream`; the endpoint is off when unset.
    pub port: Option<u16>,
    /// Default: `api_key` when any key is configured (here, in the environment,
    /// on the command line or in key scopes), else `none` (refused off loopback).
    /// `none` next to configured keys is a start-up error.
    pub auth_method: Option<AuthMethod>,
    /// One accepted API key, as `--http-mcp-auth-key`.
    pub auth_key: Option<String>,
    /// Accepted API keys. Prefer `api_keys_file` or the environment, so keys stay
    /// out of config files that get shared.
    pub api_keys: Vec<String>,
    /// A file with one key per line.
    pub api_keys_file: Option<PathBuf>,
    /// Origins a browser may call from; a request with another Origin gets 403.
    /// Default: none, only requests without an Origin header.
    pub allowed_origins: Vec<String>,
    /// This replica's name when several run behind a load balancer
    /// (`--replica-id`, `MISTRALRS_REPLICA_ID`): session ids it gives out start
    /// with `<replica_id>.`, so the balancer routes a session to its replica by
    /// the id's prefix (deploy/nginx/nginx.conf), and a session id with another
    /// prefix is unknown here (404). Letters, digits, `-` and `_`, at most 32.
    pub replica_id: Option<String>,
    /// Host names (or `host:port`) the endpoint answers to; another `Host` gets
    /// 403 (DNS-rebinding protection). Default: `localhost`, `127.0.0.1`, `::1`.
    /// Behind a load balancer, list the names clients use (or the upstream name
    /// the balancer sends); `["*"]` turns the check off.
    pub allowed_hosts: Option<Vec<String>>,
    /// Most open sessions. Default 1000.
    pub max_sessions: Option<usize>,
    /// Seconds before an idle session is closed. Default 600.
    pub session_idle_timeout_secs: Option<u64>,
    /// `[http_mcp.rate_limit]`.
    pub rate_limit: RateLimitConfig,
}

/// `[http_mcp.rate_limit]`: requests per second; unset means unlimited.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// All clients together.
    pub global: Option<f64>,
    /// Per API key.
    pub per_key: Option<f64>,
    /// Per client IP address.
    pub per_ip: Option<f64>,
    /// Requests allowed at once above the rate. Default: one second's worth.
    pub burst: Option<u32>,
    /// Failed authentications per second per client IP; past the budget every
    /// request from that address gets 429 until it refills. Default 0.1 (one
    /// every ten seconds), always on.
    pub auth_failures_per_ip: Option<f64>,
    /// Failed authentications an address may make at once. Default 10.
    pub auth_failures_burst: Option<u32>,
    /// Where the counters live: `memory` (this process; the default) or `redis`
    /// (shared by every replica pointed at the same Redis, so a limit holds
    /// across all of them).
    pub backend: RateLimitBackend,
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`), for
    /// `backend = "redis"`. Never logged (it may hold a password).
    pub redis_url: Option<String>,
    /// What a check does while Redis does not answer: `local` (this replica's
    /// own counters; the default), `allow` or `deny` (503). With `deny`, a Redis
    /// unreachable at start-up is a start-up error.
    pub on_redis_error: OnRedisError,
    /// How long a check waits for Redis before Redis counts as unreachable
    /// (then for a second, checks don't wait for it). Default 50.
    pub redis_timeout_ms: Option<u64>,
    /// Prefix of the limiter's Redis keys, so deployments can share one Redis.
    /// Default `mistralrs:ratelimit:`.
    pub redis_key_prefix: Option<String>,
}

/// `[http_mcp.rate_limit] backend`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitBackend {
    /// Counters in this process.
    #[default]
    Memory,
    /// Counters in Redis, shared by replicas.
    Redis,
}

/// `[http_mcp.rate_limit] on_redis_error`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Count in this replica's own counters until Redis answers again.
    #[default]
    Local,
    /// Let every request through.
    Allow,
    /// Refuse every request with 503.
    Deny,
}

impl OnRedisError {
    /// The setting's value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl RateLimitConfig {
    /// Default of `auth_failures_per_ip`.
    pub const DEFAULT_AUTH_FAILURES_PER_IP: f64 = 0.1;
    /// Default of `auth_failures_burst`.
    pub const DEFAULT_AUTH_FAILURES_BURST: u32 = 10;
}

impl HttpMcpConfig {
    /// The port of the endpoint, or `None` when it is off (no port, or
    /// `enabled = false`).
    pub fn endpoint_port(&self) -> Option<u16> {
        self.port.filter(|_| self.enabled != Some(false))
    }
}

/// `[[models]]`: one more model to serve.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelEntry {
    /// Name clients use in `model`; default: the last part of `model`.
    pub name: Option<String>,
    /// A local folder or GGUF file, a Hugging Face Hub id (`org/name`: from the
    /// local cache, else downloaded), `smollm2`, or `demo`.
    pub model: String,
    /// Dtype of dense weights and activations: f32 (default), f16 or bf16. For
    /// a GGUF file, dequantizes every tensor to it.
    pub dtype: Option<FloatType>,
    /// Quantize a safetensors checkpoint's projections while loading (q4_0,
    /// q4_k, q8_0, ...).
    pub quantize: Option<Quantization>,
    /// The GGUF file to fetch from a Hub repo holding several.
    pub gguf_file: Option<String>,
    /// Forwarded MCP tools this model is offered (and the server runs) when a
    /// chat request names none (docs/tool-calling.md).
    #[serde(default)]
    pub mcp_tools: Vec<String>,
}

impl ModelEntry {
    /// The name clients use: `name`, else the last part of `model`.
    pub fn served_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| crate::model_source::default_name(&self.model))
    }
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema; the message names the key.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the key and line.
        message: String,
    },
}

impl Config {
    /// The connection limits of both ports.
    pub fn connection_limits(&self) -> ConnectionLimits {
        let defaults = ConnectionLimits::default();
        ConnectionLimits {
            header_read_timeout: self
                .header_read_timeout_secs
                .map_or(defaults.header_read_timeout, Duration::from_secs),
            idle_timeout: self
                .idle_connection_timeout_secs
                .map_or(defaults.idle_timeout, Duration::from_secs),
            max_per_ip: self.max_connections_per_ip.unwrap_or(defaults.max_per_ip),
            // Validated with the rest of the config.
            trusted_proxies: Arc::new(
                TrustedProxies::parse(&self.trusted_proxies).unwrap_or_default(),
            ),
        }
    }

    /// Reads `path`; [`Config::validate`] checks it once flags are merged in.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses TOML text; the error names the key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Checks the settings (the file's with the flags on top); the error names
    /// the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.http_mcp.enabled == Some(true) && self.http_mcp.port.is_none() {
            return Err(
                "`http_mcp.enabled = true` needs a port: `http_mcp.port` or --http-mcp-port".into(),
            );
        }
        let positive = [
            ("max_seqs", self.max_seqs),
            ("kv_cache_blocks", self.kv_cache_blocks),
            ("threads", self.threads),
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections_per_ip", self.max_connections_per_ip),
            (
                "header_read_timeout_secs",
                self.header_read_timeout_secs.map(|s| s as usize),
            ),
            (
                "idle_connection_timeout_secs",
                self.idle_connection_timeout_secs.map(|s| s as usize),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == Some(0)) {
            return Err(format!("`{key}` must be at least 1"));
        }
        for (key, secs) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            (
                "idle_connection_timeout_secs",
                self.idle_connection_timeout_secs,
            ),
        ] {
            if secs.is_some_and(|s| s > MAX_TIMEOUT_SECS) {
                return Err(format!(
                    "`{key}` must be at most {MAX_TIMEOUT_SECS} (a day)"
                ));
            }
        }
        if self.kv_cache_blocks.is_some() && self.kv_cache_mem.is_some() {
            return Err(
                "`kv_cache_blocks` and `kv_cache_mem` both size the KV cache: give one".into(),
            );
        }
        if let Some(share) = self.gpu_memory_utilization
            && !(share > 0.0 && share <= 1.0)
        {
            return Err(format!(
                "`gpu_memory_utilization` must be above 0 and at most 1, not {share}"
            ));
        }
        if self.threads.is_some_and(|n| n > MAX_THREADS) {
            return Err(format!("`threads` must be at most {MAX_THREADS}"));
        }
        if let Some(level) = &self.log_level
            && !["error", "warn", "info", "debug", "trace"].contains(&level.as_str())
        {
            return Err(format!(
                "`log_level` must be error, warn, info, debug or trace, not `{level}`"
            ));
        }
        if !self.prometheus_locks.metrics_endpoint.starts_with('/') {
            return Err("`prometheus_locks.metrics_endpoint` must start with `/`".into());
        }
        TrustedProxies::parse(&self.trusted_proxies)?;
        if let Some(id) = &self.http_mcp.replica_id
            && (id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!(
                "`http_mcp.replica_id` `{id}`: use 1 to 32 letters, digits, `-` or `_`"
            ));
        }
        if let Some(hosts) = &self.http_mcp.allowed_hosts
            && (hosts.is_empty() || (hosts.len() > 1 && hosts.iter().any(|h| h == "*")))
        {
            return Err(
                "`http_mcp.allowed_hosts` needs host names, or just [\"*\"] to allow any Host"
                    .into(),
            );
        }
        let rates = &self.http_mcp.rate_limit;
        for (key, rate) in [
            ("global", rates.global),
            ("per_key", rates.per_key),
            ("per_ip", rates.per_ip),
            ("auth_failures_per_ip", rates.auth_failures_per_ip),
        ] {
            if rate.is_some_and(|r| !(MIN_RATE..=MAX_RATE).contains(&r)) {
                return Err(format!(
                    "`http_mcp.rate_limit.{key}` must be between {MIN_RATE:.3e} (one a day) and {MAX_RATE:e} per second"
                ));
            }
        }
        match (rates.backend, &rates.redis_url) {
            (RateLimitBackend::Redis, None) => {
                return Err("`http_mcp.rate_limit.backend = \"redis\"` needs `redis_url`".into());
            }
            (RateLimitBackend::Memory, Some(_)) => {
                return Err(
                    "`http_mcp.rate_limit.redis_url` is set but `backend` is not \"redis\"".into(),
                );
            }
            _ => {}
        }
        if rates
            .redis_timeout_ms
            .is_some_and(|ms| !(1..=60_000).contains(&ms))
        {
            return Err(
                "`http_mcp.rate_limit.redis_timeout_ms` must be between 1 and 60000".into(),
            );
        }
        mistralrs_mcp::config::validate(&self.mcp_client, &self.tool_forwarding)
            .map_err(|e| e.to_string())?;
        for (i, model) in self.models.iter().enumerate() {
            if model.model.is_empty() {
                return Err(format!("`models[{i}].model` is required"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses_and_sets_every_section() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mistralrs.toml.example");
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.port, Some(1234));
        assert_eq!(config.tool_parser, None);
        let parsed: Config = toml::from_str("tool_parser = \"llama3_json\"").unwrap();
        assert_eq!(parsed.tool_parser, Some(ToolParser::Llama3Json));
        assert_eq!(config.http_mcp.port, Some(4322));
        assert_eq!(config.http_mcp.rate_limit.per_ip, Some(20.0));
        assert_eq!(config.mcp_client.servers.len(), 3);
        assert!(config.mcp_client.servers[2].ca_file.is_some());
        assert_eq!(
            config.tool_forwarding.cache.cacheable_tools,
            ["filesystem__read_file"]
        );
        assert_eq!(config.models[0].model, "demo");
        assert_eq!(config.http_mcp.endpoint_port(), Some(4322));
        assert_eq!(config.http_mcp.rate_limit.auth_failures_burst, Some(10));
        assert_eq!(config.max_connections_per_ip, Some(512));
        assert_eq!(config.validate(), Ok(()));
        assert_ne!(config, Config::default());
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "port = 1\n[http_mcp]\nprot = 4322\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("port = \"x\"", "port"),
            ("max_seqs = 0", "max_seqs"),
            ("log_level = \"loud\"", "log_level"),
            ("[http_mcp.rate_limit]\nper_ip = -1.0", "per_ip"),
            ("tool_parser = \"xml\"", "tool_parser"),
            (
                "header_read_timeout_secs = 100000",
                "header_read_timeout_secs",
            ),
            (
                "idle_connection_timeout_secs = 0",
                "idle_connection_timeout_secs",
            ),
            ("[http_mcp.rate_limit]\nglobal = 1e-30", "global"),
            ("[http_mcp.rate_limit]\nper_key = 1e-12", "per_key"),
            (
                "[http_mcp.rate_limit]\nauth_failures_per_ip = 0.0",
                "auth_failures_per_ip",
            ),
            ("[[mcp_client.servers]]\nname = \"a\"", "command"),
            (
                "[tool_forwarding]\nnamespace_strategy = \"flat\"",
                "namespace_strategy",
            ),
        ] {
            let err = Config::from_toml(text)
                .and_then(|c| c.validate())
                .unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
