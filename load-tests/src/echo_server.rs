//! `echo-server`: an MCP server with one tool, `echo`, over Streamable HTTP at
//! `/mcp` on 127.0.0.1, built on rmcp (the official Rust SDK).
//!
//! An upstream for `mcp-forward` whose own cost is small and steady: Node's
//! server-everything takes ~0.5 ms of CPU per call and pauses for garbage
//! collection, which is noise larger than the forwarding overhead being
//! measured. Same tool shape as server-everything's `echo` (`{"message"}` in,
//! `Echo: <message>` out). Runs in its own process, so its CPU is not the load
//! generator's, and stops by itself after `--lifetime-seconds`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

/// Options of the scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Seconds after which the server stops by itself.
    #[arg(long, default_value_t = 3600)]
    lifetime_seconds: u64,
}

static ECHO_SCHEMA: LazyLock<Arc<JsonObject>> = LazyLock::new(|| {
    Arc::new(rmcp::object!({
        "type": "object",
        "properties": {"message": {"type": "string", "description": "Message to echo"}},
        "required": ["message"],
    }))
});

#[derive(Debug, Clone, Copy)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("mistralrs-load-echo", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let echo = Tool::new("echo", "Echoes back the input", Arc::clone(&ECHO_SCHEMA));
        Ok(ListToolsResult::with_all_items(vec![echo]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != "echo" {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let message = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("message"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| McpError::invalid_params("`message` must be a string", None))?;
        let text = format!("Echo: {message}");
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let service: StreamableHttpService<Echo, LocalSessionManager> = StreamableHttpService::new(
        || Ok(Echo),
        Arc::default(),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    // TCP_NODELAY, as mistralrs-server and Node's HTTP server set it: an SSE
    // answer is small writes, which Nagle's algorithm would hold back until a
    // delayed ACK (40 ms).
    let listener = listener.tap_io(|tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let lifetime = tokio::time::sleep(Duration::from_secs(args.lifetime_seconds));
    axum::serve(listener, app)
        .with_graceful_shutdown(lifetime)
        .await
        .context("serving")
}
