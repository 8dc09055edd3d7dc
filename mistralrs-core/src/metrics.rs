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

use std::marker::PhantomData;
use std::sync::LazyLock;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
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
/// 25 us to 100 ms: a Redis round trip on loopback is tens of microseconds.
const BACKEND_BUCKETS: &[f64] = &[
    0.000025, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// A set of label values, one field per label: a metric family takes only its
/// own set, so a missing, extra or misordered label does not compile
/// (prometheus-client's `EncodeLabelSet`, for the `prometheus` crate).
pub trait LabelSet {
    /// The label names, in the order of [`LabelSet::values`].
    const NAMES: &'static [&'static str];
    /// The same set with values borrowed for `'a` (a family is declared with
    /// `'static` and asked with any lifetime).
    type At<'a>;
    /// Calls `f` with the values, in the order of [`LabelSet::NAMES`] (a
    /// borrowed array: no allocation on request paths).
    fn with_values<R>(labels: &Self::At<'_>, f: impl FnOnce(&[&str]) -> R) -> R;
}

/// Declares label sets: `Name { label, ... }` becomes a struct of `&str` fields.
macro_rules! label_sets {
    ($($(#[$doc:meta])* $name:ident { $($label:ident),+ })+) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<'a> {
            $(
                #[doc = concat!("The `", stringify!($label), "` label.")]
                pub $label: &'a str,
            )+
        }

        impl LabelSet for $name<'static> {
            const NAMES: &'static [&'static str] = &[$(stringify!($label)),+];
            type At<'a> = $name<'a>;
            fn with_values<R>(labels: &Self::At<'_>, f: impl FnOnce(&[&str]) -> R) -> R {
                f(&[$(labels.$label),+])
            }
        }
    )+};
}

label_sets! {
    /// A served model.
    ModelLabel { model }
    /// An HTTP request of the OpenAI port.
    RequestLabels { model, endpoint, status }
    /// An MCP request: HTTP method and status.
    McpRequestLabels { method, status }
    /// An MCP request's HTTP method.
    MethodLabel { method }
    /// Why something was refused.
    ReasonLabel { reason }
    /// The limit that refused a request.
    ScopeLabel { scope }
    /// What decided a check while a backend was down.
    PolicyLabel { policy }
    /// Who answered a request.
    SourceLabel { source }
    /// A kind of refusal or failure.
    KindLabel { kind }
    /// An instrumented lock.
    LockLabel { lock }
    /// A forwarded tool call's outcome.
    ToolCallLabels { namespace, tool, outcome }
    /// An upstream's namespace.
    NamespaceLabel { namespace }
    /// A failed forwarded call.
    ToolErrorLabels { namespace, kind }
    /// An upstream MCP server.
    ServerLabel { server }
    /// A request an upstream MCP server sent the gateway, and who answered it.
    UpstreamRequestLabels { server, method, answered_by }
    /// A served model's tool-call format.
    ToolParserLabels { model, parser }
}

/// A metric family whose labels are the fields of `L`.
///
/// # Examples
///
/// ```
/// use mistralrs_core::metrics::{NamespaceLabel, metrics};
/// metrics().tool_cache_hits.get(&NamespaceLabel { namespace: "fs" }).inc();
/// ```
///
/// Another family's label set does not compile:
///
/// ```compile_fail
/// use mistralrs_core::metrics::{ScopeLabel, metrics};
/// metrics().tool_cache_hits.get(&ScopeLabel { scope: "ip" }).inc();
/// ```
#[derive(Debug, Clone)]
pub struct Family<L, V> {
    vec: V,
    _labels: PhantomData<fn(L)>,
}

impl<L: LabelSet, B: MetricVecBuilder> Family<L, MetricVec<B>> {
    /// The series with these label values.
    pub fn get(&self, labels: &L::At<'_>) -> B::M {
        L::with_values(labels, |values| self.vec.with_label_values(values))
    }
}

impl<L, V> Family<L, V> {
    fn new(vec: prometheus::Result<V>, name: &str) -> Self {
        Self {
            vec: vec.unwrap_or_else(|e| panic!("metric {name}: {e}")),
            _labels: PhantomData,
        }
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("mistralrs")
}

impl<L: LabelSet> Family<L, IntCounterVec> {
    fn counter(name: &str, help: &str) -> Self {
        Self::new(IntCounterVec::new(opts(name, help), L::NAMES), name)
    }
}

impl<L: LabelSet> Family<L, IntGaugeVec> {
    fn gauge(name: &str, help: &str) -> Self {
        Self::new(IntGaugeVec::new(opts(name, help), L::NAMES), name)
    }
}

impl<L: LabelSet> Family<L, GaugeVec> {
    fn float_gauge(name: &str, help: &str) -> Self {
        Self::new(GaugeVec::new(opts(name, help), L::NAMES), name)
    }
}

impl<L: LabelSet> Family<L, HistogramVec> {
    fn histogram(name: &str, help: &str, buckets: &[f64]) -> Self {
        let opts = HistogramOpts::new(name, help)
            .namespace("mistralrs")
            .buckets(buckets.to_vec());
        Self::new(HistogramVec::new(opts, L::NAMES), name)
    }
}

/// A counter family labelled by `L`.
pub type CounterFamily<L> = Family<L, IntCounterVec>;
/// An integer gauge family labelled by `L`.
pub type GaugeFamily<L> = Family<L, IntGaugeVec>;
/// A float gauge family labelled by `L`.
pub type FloatGaugeFamily<L> = Family<L, GaugeVec>;
/// A histogram family labelled by `L`.
pub type HistogramFamily<L> = Family<L, HistogramVec>;

/// What the registry takes from a field of [`Metrics`].
trait Registrable {
    fn collector(&self) -> Box<dyn Collector>;
}

impl<L, B: MetricVecBuilder + 'static> Registrable for Family<L, MetricVec<B>> {
    fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.vec.clone())
    }
}

impl Registrable for IntGauge {
    fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

impl Registrable for Histogram {
    fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

fn plain_histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help)
        .namespace("mistralrs")
        .buckets(buckets.to_vec());
    Histogram::with_opts(opts).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(opts(name, help)).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

/// Declares [`Metrics`]: each series once, as a field with its doc, type and
/// constructor (name, help, buckets; the labels come from the type), and
/// registered where it is declared unless its `when` says otherwise.
macro_rules! metrics {
    ($($(#[$doc:meta])* $vis:vis $field:ident: $ty:ty = $init:expr $(, when $when:expr)?;)+) => {
        /// Every metric of the process.
        #[derive(Debug)]
        pub struct Metrics {
            registry: Registry,
            $($(#[$doc])* $vis $field: $ty,)+
        }

        impl Metrics {
            #[track_caller]
            fn new() -> Self {
                let m = Self {
                    registry: Registry::new(),
                    $($field: $init,)+
                };
                $(
                    if true $(&& $when)? {
                        m.registry
                            .register(Registrable::collector(&m.$field))
                            .unwrap_or_else(|e| panic!("registering {}: {e}", stringify!($field)));
                    }
                )+
                m
            }
        }
    };
}

/// Lock durations: 1 us to about 1 s by factors of 4.
fn lock_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-6, 4.0, 11).unwrap_or_else(|e| panic!("lock buckets: {e}"))
}

/// Forwarded calls: 100 us (a cached or local call) to ~150 s (a long upstream operation).
fn tool_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-4, 2.5, 14).unwrap_or_else(|e| panic!("tool buckets: {e}"))
}

metrics! {
    /// `requests_total{model,endpoint,status}`: HTTP requests by outcome.
    pub requests_total: CounterFamily<RequestLabels<'static>> =
        Family::counter("requests_total", "HTTP requests by model, endpoint and status code.");
    request_duration: HistogramFamily<ModelLabel<'static>> = Family::histogram(
        "request_duration_seconds",
        "Time from submission to the last token, per finished request.",
        REQUEST_BUCKETS,
    );
    time_to_first_token: HistogramFamily<ModelLabel<'static>> = Family::histogram(
        "time_to_first_token_seconds",
        "Time from submission to the first generated token.",
        TTFT_BUCKETS,
    );
    inter_token_latency: HistogramFamily<ModelLabel<'static>> = Family::histogram(
        "inter_token_latency_seconds",
        "Time between consecutive generated tokens of a request.",
        INTER_TOKEN_BUCKETS,
    );
    prompt_tokens: CounterFamily<ModelLabel<'static>> =
        Family::counter("prompt_tokens_total", "Prompt tokens of requests whose prefill finished.");
    generation_tokens: CounterFamily<ModelLabel<'static>> =
        Family::counter("generation_tokens_total", "Tokens generated.");
    running: GaugeFamily<ModelLabel<'static>> =
        Family::gauge("num_requests_running", "Requests admitted to the running batch.");
    waiting: GaugeFamily<ModelLabel<'static>> =
        Family::gauge("num_requests_waiting", "Requests waiting for admission.");
    kv_usage: FloatGaugeFamily<ModelLabel<'static>> =
        Family::float_gauge("kv_cache_usage_ratio", "Fraction of KV cache blocks in use (0-1).");
    kv_free: GaugeFamily<ModelLabel<'static>> = Family::gauge(
        "kv_cache_blocks_free",
        "KV cache blocks free (including unreferenced cached ones).",
    );
    prefix_hits: CounterFamily<ModelLabel<'static>> =
        Family::counter("prefix_cache_hits_total", "Full prompt blocks found in the prefix cache.");
    prefix_queries: CounterFamily<ModelLabel<'static>> = Family::counter(
        "prefix_cache_queries_total",
        "Full prompt blocks looked up in the prefix cache.",
    );
    preemptions: CounterFamily<ModelLabel<'static>> =
        Family::counter("preemptions_total", "Sequences preempted for lack of KV blocks.");
    weight_bytes: GaugeFamily<ModelLabel<'static>> =
        Family::gauge("model_weight_bytes", "Memory the model's weights take.");
    kv_cache_bytes: GaugeFamily<ModelLabel<'static>> = Family::gauge(
        "kv_cache_bytes",
        "Memory the KV cache takes once every block has been used.",
    );
    /// `process_resident_memory_bytes`: the process's resident memory, read
    /// from `/proc/self/status` at each scrape (0 where there is no /proc).
    pub process_resident: IntGauge = int_gauge(
        "process_resident_memory_bytes",
        "Resident memory of the server process.",
    );
    /// `http_mcp_requests_total{method,status}`: MCP endpoint requests by HTTP
    /// method and status.
    pub http_mcp_requests: CounterFamily<McpRequestLabels<'static>> = Family::counter(
        "http_mcp_requests_total",
        "MCP endpoint requests by HTTP method and status code.",
    );
    /// `http_mcp_request_duration_seconds{method}`: time to the response head
    /// (an SSE stream's life is not included).
    pub http_mcp_request_duration: HistogramFamily<MethodLabel<'static>> = Family::histogram(
        "http_mcp_request_duration_seconds",
        "Time from an MCP request to its response head.",
        TTFT_BUCKETS,
    );
    /// `http_mcp_auth_failures_total{reason}`: `missing`, `malformed` or `invalid`.
    pub http_mcp_auth_failures: CounterFamily<ReasonLabel<'static>> = Family::counter(
        "http_mcp_auth_failures_total",
        "MCP requests refused for a missing, malformed or unknown API key.",
    );
    /// `http_mcp_rate_limited_total{scope}`: `global`, `key`, `ip` or `auth_failures`.
    pub http_mcp_rate_limited: CounterFamily<ScopeLabel<'static>> = Family::counter(
        "http_mcp_rate_limited_total",
        "MCP requests refused with 429, by the limit that refused them.",
    );
    /// `http_mcp_active_sessions`: open MCP sessions.
    pub http_mcp_active_sessions: IntGauge =
        int_gauge("http_mcp_active_sessions", "Open MCP sessions.");
    /// `http_mcp_active_connections`: MCP requests in flight, open SSE streams included.
    pub http_mcp_active_connections: IntGauge = int_gauge(
        "http_mcp_active_connections",
        "MCP requests in flight, open SSE streams included.",
    );
    /// `http_mcp_errors_total{kind}`: MCP requests refused by the server's own
    /// limits or checks (`too_many_sessions`, `body_too_large`, `parse_error`, ...).
    pub http_mcp_errors: CounterFamily<KindLabel<'static>> = Family::counter(
        "http_mcp_errors_total",
        "MCP requests refused by the server's limits, by kind.",
    );
    /// `tool_sampling_total{source}`: upstream `sampling/createMessage`
    /// requests answered, by who answered (`local`: a served model).
    pub tool_sampling: CounterFamily<SourceLabel<'static>> = Family::counter(
        "tool_sampling_total",
        "Upstream MCP sampling requests answered, by who answered them.",
    );
    /// `mcp_upstream_requests_total{server,method,answered_by}`: requests
    /// upstream MCP servers sent the gateway (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`), by who answered: `client` (the
    /// client whose call was in flight), `model` (a served model), `gateway`
    /// (declined, or no roots) or `error`.
    pub mcp_upstream_requests: CounterFamily<UpstreamRequestLabels<'static>> = Family::counter(
        "mcp_upstream_requests_total",
        "Requests upstream MCP servers sent the gateway, by who answered them.",
    );
    /// `mcp_forwarded_names_left_out`: forwarded tools and prompts kept from
    /// clients because their name collides (`namespace_strategy = "none"`).
    pub mcp_forwarded_names_left_out: IntGauge = int_gauge(
        "mcp_forwarded_names_left_out",
        "Forwarded tools and prompts left out because their name collides.",
    );
    /// `rate_limit_backend_up`: 1 while the shared rate-limit backend (Redis)
    /// answers, 0 after a check it failed; 0 without one.
    pub rate_limit_backend_up: IntGauge = int_gauge(
        "rate_limit_backend_up",
        "Whether the shared rate-limit backend (Redis) answered its last check.",
    );
    /// `rate_limit_fallback_total{policy}`: limit checks decided by
    /// `on_redis_error` (`local`, `allow` or `deny`) because Redis did not answer.
    pub rate_limit_fallback: CounterFamily<PolicyLabel<'static>> = Family::counter(
        "rate_limit_fallback_total",
        "Rate-limit checks decided by the fallback policy because Redis did not answer.",
    );
    /// `rate_limit_backend_seconds`: one round trip of a limit check to Redis.
    pub rate_limit_backend_seconds: Histogram = plain_histogram(
        "rate_limit_backend_seconds",
        "Time of one rate-limit check's round trip to Redis.",
        BACKEND_BUCKETS,
    );
    /// `connections_refused_total{reason}`: connections closed on accept, on
    /// either port (`per_ip`: the address already holds its maximum).
    pub connections_refused: CounterFamily<ReasonLabel<'static>> =
        Family::counter("connections_refused_total", "Connections closed on accept, by reason.");
    /// `tool_calls_total{namespace,tool,outcome}`: forwarded tool calls that
    /// reached the upstream or the cache, by `ok`, `tool_error` (the upstream's
    /// error result), `error` or `cached`. Only tools an upstream listed become
    /// labels; calls refused before count only in `tool_errors`.
    pub tool_calls: CounterFamily<ToolCallLabels<'static>> = Family::counter(
        "tool_calls_total",
        "Forwarded tool calls by namespace, tool and outcome.",
    );
    /// `tool_forwarded_duration_seconds{namespace}`: time of a call forwarded
    /// upstream, from sending to the answer (cache hits excluded).
    pub tool_forwarded_duration: HistogramFamily<NamespaceLabel<'static>> = Family::histogram(
        "tool_forwarded_duration_seconds",
        "Time of a tool call forwarded to its upstream server.",
        &tool_buckets(),
    );
    /// `tool_calls_generated_total{model,parser}`: tool calls the served models
    /// wrote (OpenAI API).
    pub tool_calls_generated: CounterFamily<ToolParserLabels<'static>> = Family::counter(
        "tool_calls_generated_total",
        "Tool calls generated by served models, by model and tool-call format.",
    );
    /// `tool_call_parse_failures_total{model,parser}`: begun calls that could
    /// not be read (returned as content).
    pub tool_call_parse_failures: CounterFamily<ToolParserLabels<'static>> = Family::counter(
        "tool_call_parse_failures_total",
        "Generated tool calls that could not be parsed and were returned as text.",
    );
    /// `model_tool_rounds{model}`: rounds of forwarded-tool calls a request's
    /// model made before its answer (0 when it called none).
    pub model_tool_rounds: HistogramFamily<ModelLabel<'static>> = Family::histogram(
        "model_tool_rounds",
        "Rounds of MCP tool calls a served model made per request.",
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 12.0, 20.0],
    );
    /// `model_tool_seconds{model}`: time one round of a model's forwarded-tool
    /// calls took (the calls of a round run at once).
    pub model_tool_seconds: HistogramFamily<ModelLabel<'static>> = Family::histogram(
        "model_tool_seconds",
        "Time a served model's round of MCP tool calls took.",
        &tool_buckets(),
    );
    /// `tool_cache_hits_total{namespace}`: calls answered from the cache.
    pub tool_cache_hits: CounterFamily<NamespaceLabel<'static>> = Family::counter(
        "tool_cache_hits_total",
        "Forwarded tool calls answered from the cache.",
    );
    /// `tool_cache_misses_total{namespace}`: cacheable calls not in the cache.
    pub tool_cache_misses: CounterFamily<NamespaceLabel<'static>> = Family::counter(
        "tool_cache_misses_total",
        "Cacheable forwarded tool calls not found in the cache.",
    );
    /// `tool_errors_total{namespace,kind}`: failed forwarded calls by kind
    /// (`unknown_tool`, `denied`, `invalid_arguments`, `upstream_down`,
    /// `timeout`, `transport`, `upstream_error`, `cancelled`).
    pub tool_errors: CounterFamily<ToolErrorLabels<'static>> = Family::counter(
        "tool_errors_total",
        "Failed forwarded tool calls by namespace and kind.",
    );
    /// `mcp_upstream_up{server}`: 1 while the upstream MCP server is connected.
    pub mcp_upstream_up: GaugeFamily<ServerLabel<'static>> = Family::gauge(
        "mcp_upstream_up",
        "1 while the upstream MCP server is connected, else 0.",
    );
    /// `mcp_upstream_sessions{server}`: upstream sessions opened for one client
    /// session each (`session_mode = "per_client"`).
    pub mcp_upstream_sessions: GaugeFamily<ServerLabel<'static>> = Family::gauge(
        "mcp_upstream_sessions",
        "Upstream MCP sessions held for one client session each (per_client mode).",
    );
    /// `lock_wait_seconds{lock}`: time spent waiting for contended locks.
    pub lock_wait: HistogramFamily<LockLabel<'static>> = Family::histogram(
        "lock_wait_seconds",
        "Time waiting to acquire a lock, recorded only when it was contended.",
        &lock_buckets(),
    ), when cfg!(feature = "prometheus-locks");
    /// `lock_hold_seconds{lock}`: time locks are held (sampled).
    pub lock_hold: HistogramFamily<LockLabel<'static>> = Family::histogram(
        "lock_hold_seconds",
        "Time a lock was held, sampled (1 in 64 acquisitions).",
        &lock_buckets(),
    ), when cfg!(feature = "prometheus-locks");
    /// `lock_contended_total{lock}`: acquisitions that had to wait.
    pub lock_contended: CounterFamily<LockLabel<'static>> = Family::counter(
        "lock_contended_total",
        "Lock acquisitions that found the lock taken.",
    ), when cfg!(feature = "prometheus-locks");
}

impl Metrics {
    /// The series of one served model, resolved once so the engine's hot path
    /// does no label lookups.
    pub fn model(&self, model: &str) -> ModelMetrics {
        let l = &ModelLabel { model };
        ModelMetrics {
            request_duration: self.request_duration.get(l),
            time_to_first_token: self.time_to_first_token.get(l),
            inter_token_latency: self.inter_token_latency.get(l),
            prompt_tokens: self.prompt_tokens.get(l),
            generation_tokens: self.generation_tokens.get(l),
            running: self.running.get(l),
            waiting: self.waiting.get(l),
            kv_usage: self.kv_usage.get(l),
            kv_free: self.kv_free.get(l),
            prefix_hits: self.prefix_hits.get(l),
            prefix_queries: self.prefix_queries.get(l),
            preemptions: self.preemptions.get(l),
            weight_bytes: self.weight_bytes.get(l),
            kv_cache_bytes: self.kv_cache_bytes.get(l),
        }
    }

    /// Every series in the Prometheus text format.
    pub fn render(&self) -> String {
        self.process_resident
            .set(resident_memory_bytes().unwrap_or(0) as i64);
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
    pub(crate) weight_bytes: IntGauge,
    pub(crate) kv_cache_bytes: IntGauge,
}

/// The process's resident memory (`VmRSS` of `/proc/self/status`), where
/// there is a /proc.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
