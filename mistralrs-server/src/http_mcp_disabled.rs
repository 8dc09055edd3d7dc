//! Stand-in for the MCP endpoint in builds without `http-mcp-stream`: asking for
//! an MCP port is an error that says why.

use std::sync::Arc;

use mistralrs_core::Router;
use mistralrs_mcp::Forwarder;
use tokio_util::sync::CancellationToken;

use crate::app::HealthSection;
use crate::config::Config;

/// The path the endpoint would have.
pub const MCP_PATH: &str = "/mcp/stream";

/// What the endpoint would be.
pub struct McpEndpoint {
    /// The MCP port's routes.
    pub app: axum::Router,
    /// The shared rate limiter's `/health` entry.
    pub rate_limit_health: Option<HealthSection>,
}

/// Refuses: this build has no MCP endpoint.
pub async fn app(
    _router: Arc<Router>,
    _forwarder: Option<Arc<Forwarder>>,
    _config: &Config,
    _shutdown: CancellationToken,
) -> anyhow::Result<McpEndpoint> {
    anyhow::bail!(
        "an MCP port was given, but this build has no MCP endpoint (feature `http-mcp-stream`)"
    )
}
