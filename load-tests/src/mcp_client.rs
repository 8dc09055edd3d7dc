//! MCP client sessions for the scenarios: rmcp's client over Streamable HTTP,
//! all sessions of a run sharing one HTTP connection pool.

use std::time::{Duration, Instant};

use anyhow::Context;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, JsonObject,
};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceError};

/// One open MCP session.
pub(crate) type Session = RunningService<RoleClient, ClientConfig>;

/// How long opening one session may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);

/// Initializes a session on `url` (with `key` as bearer token when given).
pub(crate) async fn open(
    http: reqwest::Client,
    url: &str,
    key: Option<&str>,
) -> anyhow::Result<Session> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(key) = key {
        config = config.auth_header(key.to_owned());
    }
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mistralrs-load", env!("CARGO_PKG_VERSION")),
    );
    let opening = info.serve(StreamableHttpClientTransport::with_client(http, config));
    tokio::time::timeout(OPEN_TIMEOUT, opening)
        .await
        .with_context(|| format!("initializing {url}: no answer within 120 s"))?
        .with_context(|| format!("initializing {url}"))
}

/// What one tool call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A result, in this many seconds.
    Ok,
    /// A result with `isError` (the tool failed).
    ToolError,
    /// A JSON-RPC error (refused, unknown tool, bad arguments).
    Refused,
    /// The transport failed or the session ended.
    Transport,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::Refused => "refused",
            Self::Transport => "transport",
        }
    }
}

/// Calls `tool` once; the outcome and its latency in seconds.
pub(crate) async fn call(
    peer: &Peer<RoleClient>,
    tool: &str,
    arguments: &JsonObject,
) -> (Outcome, f64) {
    let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments.clone());
    let started = Instant::now();
    let outcome = match peer.call_tool(request).await {
        Ok(result) if result.is_error == Some(true) => Outcome::ToolError,
        Ok(_) => Outcome::Ok,
        Err(ServiceError::McpError(_)) => Outcome::Refused,
        Err(_) => Outcome::Transport,
    };
    (outcome, started.elapsed().as_secs_f64())
}

/// A JSON object argument from text.
pub(crate) fn arguments(json: &str) -> anyhow::Result<JsonObject> {
    match serde_json::from_str(json).context("--arguments")? {
        serde_json::Value::Object(map) => Ok(map),
        _ => anyhow::bail!("--arguments must be a JSON object"),
    }
}
