//! The one Prometheus registry and every metric the project exports.
//!
//! All series are defined here, prefixed `mistralrs_`, with labels from fixed sets
//! (model names come from the server's configuration, never from requests). The
//! registry is process-wide because locks are created in places that have no
//! context to pass it to, the same trade the prometheus crate's default registry
//! makes; everything else reaches its series through [`metrics()`].
//!
//! Buckets: request latency, time to first token and inter-token latency follow
//! vLLM's (inter-token extended down to 1 ms for small models on CPUs); lock
//! durations go from 1 µs to about 1 s by factors of 4.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const INTER_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `requests_total{model,endpoint,status}`: HTTP requests by outcome.
    pub requests_total: IntCounterVec,
    request_duration: HistogramVec,
    time_to_first_token: HistogramVec,
    inter_token_latency: HistogramVec,
    prompt_tokens: IntCounterVec,
    generation_tokens: IntCounterVec,
    running: IntGaugeVec,
    waiting: IntGaugeVec,
    kv_usage: GaugeVec,
    kv_free: IntGaugeVec,
    prefix_hits: IntCounterVec,
    prefix_queries: IntCounterVec,
    preemptions: IntCounterVec,
    /// `http_mcp_requests_total{method,status}`: MCP endpoint requests by HTTP
    /// method and status.
    pub http_mcp_requests: IntCounterVec,
    /// `http_mcp_request_duration_seconds{method}`: time to the response head
    /// (an SSE stream's life is not included).
    pub http_mcp_request_duration: HistogramVec,
    /// `http_mcp_auth_failures_total{reason}`: `missing`, `malformed` or `invalid`.
    pub http_mcp_auth_failures: IntCounterVec,
    /// `http_mcp_rate_limited_total{scope}`: `global`, `key` or `ip`.
    pub http_mcp_rate_limited: IntCounterVec,
    /// `http_mcp_active_connections`: MCP requests in flight, open SSE streams included.
    pub http_mcp_active_connections: IntGauge,
    /// `http_mcp_active_sessions`: open MCP sessions.
    pub http_mcp_active_sessions: IntGauge,
    /// `http_mcp_errors_total{kind}`: MCP requests refused by the server's own
    /// limits or checks (`too_many_sessions`, `body_too_large`, `parse_error`).
    pub http_mcp_errors: IntCounterVec,
    /// `connections_refused_total{reason}`: connections closed on accept, on
    /// either port (`per_ip`: the address already holds its maximum).
    pub connections_refused: IntCounterVec,
    /// `lock_wait_seconds{lock}`: time spent waiting for contended locks.
    pub lock_wait: HistogramVec,
    /// `lock_hold_seconds{lock}`: time locks are held (sampled).
    pub lock_hold: HistogramVec,
    /// `lock_contended_total{lock}`: acquisitions that had to wait.
    pub lock_contended: IntCounterVec,
    /// `tool_calls_total{namespace,tool,outcome}`: forwarded tool calls that
    /// reached the upstream or the cache, by `ok`, `tool_error` (the upstream's
    /// error result), `error` or `cached`. Only tools an upstream listed become
    /// labels; calls refused before count only in `tool_errors`.
    pub tool_calls: IntCounterVec,
    /// `tool_forwarded_duration_seconds{namespace}`: time of a call forwarded
    /// upstream, from sending to the answer (cache hits excluded).
    pub tool_forwarded_duration: HistogramVec,
    /// `tool_cache_hits_total{namespace}`: calls answered from the cache.
    pub tool_cache_hits: IntCounterVec,
    /// `tool_cache_misses_total{namespace}`: cacheable calls not in the cache.
    pub tool_cache_misses: IntCounterVec,
    /// `tool_errors_total{namespace,kind}`: failed forwarded calls by kind
    /// (`unknown_tool`, `denied`, `invalid_arguments`, `upstream_down`,
    /// `timeout`, `transport`, `upstream_error`, `cancelled`).
    pub tool_errors: IntCounterVec,
    /// `mcp_upstream_up{server}`: 1 while the upstream MCP server is connected.
    pub mcp_upstream_up: IntGaugeVec,
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help)
        .namespace("mistralrs")
        .buckets(buckets.to_vec());
    HistogramVec::new(opts, labels).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help).namespace("mistralrs"), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help).namespace("mistralrs"), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

impl Metrics {
    #[track_caller]
    fn new() -> Self {
        let lock_buckets = prometheus::exponential_buckets(1e-6, 4.0, 11)
            .unwrap_or_else(|e| panic!("lock buckets: {e}"));
        // 100 us (a cached or local call) to ~150 s (a long upstream operation).
        let tool_buckets = prometheus::exponential_buckets(1e-4, 2.5, 14)
            .unwrap_or_else(|e| panic!("tool buckets: {e}"));
        let m = Self {
            registry: Registry::new(),
            requests_total: counter(
                "requests_total",
                "HTTP requests by model, endpoint and status code.",
                &["model", "endpoint", "status"],
            ),
            request_duration: histogram(
                "request_duration_seconds",
                "Time from submission to the last token, per finished request.",
                REQUEST_BUCKETS,
                &["model"],
            ),
            time_to_first_token: histogram(
                "time_to_first_token_seconds",
                "Time from submission to the first generated token.",
                TTFT_BUCKETS,
                &["model"],
            ),
            inter_token_latency: histogram(
                "inter_token_latency_seconds",
                "Time between consecutive generated tokens of a request.",
                INTER_TOKEN_BUCKETS,
                &["model"],
            ),
            prompt_tokens: counter(
                "prompt_tokens_total",
                "Prompt tokens of requests whose prefill finished.",
                &["model"],
            ),
            generation_tokens: counter("generation_tokens_total", "Tokens generated.", &["model"]),
            running: gauge(
                "num_requests_running",
                "Requests admitted to the running batch.",
                &["model"],
            ),
            waiting: gauge(
                "num_requests_waiting",
                "Requests waiting for admission.",
                &["model"],
            ),
            kv_usage: GaugeVec::new(
                Opts::new(
                    "kv_cache_usage_ratio",
                    "Fraction of KV cache blocks in use (0-1).",
                )
                .namespace("mistralrs"),
                &["model"],
            )
            .unwrap_or_else(|e| panic!("metric kv_cache_usage_ratio: {e}")),
            kv_free: gauge(
                "kv_cache_blocks_free",
                "KV cache blocks free (including unreferenced cached ones).",
                &["model"],
            ),
            prefix_hits: counter(
                "prefix_cache_hits_total",
                "Full prompt blocks found in the prefix cache.",
                &["model"],
            ),
            prefix_queries: counter(
                "prefix_cache_queries_total",
                "Full prompt blocks looked up in the prefix cache.",
                &["model"],
            ),
            preemptions: counter(
                "preemptions_total",
                "Sequences preempted for lack of KV blocks.",
                &["model"],
            ),
            http_mcp_requests: counter(
                "http_mcp_requests_total",
                "MCP endpoint requests by HTTP method and status code.",
                &["method", "status"],
            ),
            http_mcp_request_duration: histogram(
                "http_mcp_request_duration_seconds",
                "Time from an MCP request to its response head.",
                TTFT_BUCKETS,
                &["method"],
            ),
            http_mcp_auth_failures: counter(
                "http_mcp_auth_failures_total",
                "MCP requests refused for a missing, malformed or unknown API key.",
                &["reason"],
            ),
            http_mcp_rate_limited: counter(
                "http_mcp_rate_limited_total",
                "MCP requests refused with 429, by the limit that refused them.",
                &["scope"],
            ),
            http_mcp_active_connections: IntGauge::with_opts(
                Opts::new(
                    "http_mcp_active_connections",
                    "MCP requests in flight, open SSE streams included.",
                )
                .namespace("mistralrs"),
            )
            .unwrap_or_else(|e| panic!("metric http_mcp_active_connections: {e}")),
            http_mcp_active_sessions: IntGauge::with_opts(
                Opts::new("http_mcp_active_sessions", "Open MCP sessions.").namespace("mistralrs"),
            )
            .unwrap_or_else(|e| panic!("metric http_mcp_active_sessions: {e}")),
            http_mcp_errors: counter(
                "http_mcp_errors_total",
                "MCP requests refused by the server's limits, by kind.",
                &["kind"],
            ),
            connections_refused: counter(
                "connections_refused_total",
                "Connections closed on accept, by reason.",
                &["reason"],
            ),
            lock_wait: histogram(
                "lock_wait_seconds",
                "Time waiting to acquire a lock, recorded only when it was contended.",
                &lock_buckets,
                &["lock"],
            ),
            lock_hold: histogram(
                "lock_hold_seconds",
                "Time a lock was held, sampled (1 in 64 acquisitions).",
                &lock_buckets,
                &["lock"],
            ),
            lock_contended: counter(
                "lock_contended_total",
                "Lock acquisitions that found the lock taken.",
                &["lock"],
            ),
            tool_calls: counter(
                "tool_calls_total",
                "Forwarded tool calls by namespace, tool and outcome.",
                &["namespace", "tool", "outcome"],
            ),
            tool_forwarded_duration: histogram(
                "tool_forwarded_duration_seconds",
                "Time of a tool call forwarded to its upstream server.",
                &tool_buckets,
                &["namespace"],
            ),
            tool_cache_hits: counter(
                "tool_cache_hits_total",
                "Forwarded tool calls answered from the cache.",
                &["namespace"],
            ),
            tool_cache_misses: counter(
                "tool_cache_misses_total",
                "Cacheable forwarded tool calls not found in the cache.",
                &["namespace"],
            ),
            tool_errors: counter(
                "tool_errors_total",
                "Failed forwarded tool calls by namespace and kind.",
                &["namespace", "kind"],
            ),
            mcp_upstream_up: gauge(
                "mcp_upstream_up",
                "1 while the upstream MCP server is connected, else 0.",
                &["server"],
            ),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests_total.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.time_to_first_token.clone()),
            Box::new(m.inter_token_latency.clone()),
            Box::new(m.prompt_tokens.clone()),
            Box::new(m.generation_tokens.clone()),
            Box::new(m.running.clone()),
            Box::new(m.waiting.clone()),
            Box::new(m.kv_usage.clone()),
            Box::new(m.kv_free.clone()),
            Box::new(m.prefix_hits.clone()),
            Box::new(m.prefix_queries.clone()),
            Box::new(m.preemptions.clone()),
            Box::new(m.http_mcp_requests.clone()),
            Box::new(m.http_mcp_request_duration.clone()),
            Box::new(m.http_mcp_auth_failures.clone()),
            Box::new(m.http_mcp_rate_limited.clone()),
            Box::new(m.http_mcp_active_sessions.clone()),
            Box::new(m.http_mcp_active_connections.clone()),
            Box::new(m.http_mcp_errors.clone()),
            Box::new(m.connections_refused.clone()),
            Box::new(m.tool_calls.clone()),
            Box::new(m.tool_forwarded_duration.clone()),
            Box::new(m.tool_cache_hits.clone()),
            Box::new(m.tool_cache_misses.clone()),
            Box::new(m.tool_errors.clone()),
            Box::new(m.mcp_upstream_up.clone()),
        ];
        for c in collectors {
            m.registry
                .register(c)
                .unwrap_or_else(|e| panic!("registering a metric: {e}"));
        }
        if cfg!(feature = "prometheus-locks") {
            for c in [
                Box::new(m.lock_wait.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(m.lock_hold.clone()),
                Box::new(m.lock_contended.clone()),
            ] {
                m.registry
                    .register(c)
                    .unwrap_or_else(|e| panic!("registering a metric: {e}"));
            }
        }
        m
    }

    /// The series of one served model, resolved once so the engine's hot path
    /// does no label lookups.
    pub fn model(&self, model: &str) -> ModelMetrics {
        let l = &[model];
        ModelMetrics {
            request_duration: self.request_duration.with_label_values(l),
            time_to_first_token: self.time_to_first_token.with_label_values(l),
            inter_token_latency: self.inter_token_latency.with_label_values(l),
            prompt_tokens: self.prompt_tokens.with_label_values(l),
            generation_tokens: self.generation_tokens.with_label_values(l),
            running: self.running.with_label_values(l),
            waiting: self.waiting.with_label_values(l),
            kv_usage: self.kv_usage.with_label_values(l),
            kv_free: self.kv_free.with_label_values(l),
            prefix_hits: self.prefix_hits.with_label_values(l),
            prefix_queries: self.prefix_queries.with_label_values(l),
            preemptions: self.preemptions.with_label_values(l),
        }
    }

    /// Every series in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The engine series of one model.
#[derive(Debug, Clone)]
pub struct ModelMetrics {
    pub(crate) request_duration: Histogram,
    pub(crate) time_to_first_token: Histogram,
    pub(crate) inter_token_latency: Histogram,
    pub(crate) prompt_tokens: IntCounter,
    pub(crate) generation_tokens: IntCounter,
    pub(crate) running: IntGauge,
    pub(crate) waiting: IntGauge,
    pub(crate) kv_usage: Gauge,
    pub(crate) kv_free: IntGauge,
    pub(crate) prefix_hits: IntCounter,
    pub(crate) prefix_queries: IntCounter,
    pub(crate) preemptions: IntCounter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
