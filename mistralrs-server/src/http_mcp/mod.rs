//! The MCP endpoint: `/mcp/stream` over Streamable HTTP on its own port.
//!
//! Built on rmcp's `StreamableHttpService`, a tower service mounted in axum. rmcp
//! speaks both protocol generations: sessions (`Mcp-Session-Id`, GET stream,
//! DELETE, resumption) up to 2025-11-25 and stateless POST at 2026-07-28; and it
//! checks `Host` against loopback names by default (DNS-rebinding protection).
//! What the endpoint offers lives in [`handler`].

mod auth;
mod handler;
mod parse_errors;
mod rate_limit;
mod sessions;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use mistralrs_core::metrics::metrics;
use rmcp::model::{ErrorCode, ProtocolVersion};

use mistralrs_core::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::config::{AuthMethod, Config};
use handler::McpHandler;
use mistralrs_mcp::Forwarder;

/// The path of the endpoint on its port.
pub const MCP_PATH: &str = "/mcp/stream";

/// SSE keep-alive: frequent enough that proxies keep the stream open and a
/// vanished client is noticed within seconds.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Sessions open at once unless `[http_mcp] max_sessions` says otherwise.
const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Seconds before an idle session closes unless `session_idle_timeout_secs` says otherwise.
const DEFAULT_IDLE_SECS: u64 = 600;

/// The MCP port's routes: the served models' chat tool and, with a
/// forwarder, the upstream servers' tools. `shutdown` ends every session and
/// stream when cancelled.
pub fn app(
    router: Arc<Router>,
    forwarder: Option<Arc<Forwarder>>,
    full_config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<axum::Router> {
    let config = &full_config.http_mcp;
    let key_scopes = &full_config.tool_forwarding.security.key_scopes;
    if config.auth_method != AuthMethod::ApiKey && !key_scopes.is_empty() {
        tracing::warn!(
            "[[tool_forwarding.security.key_scopes]] apply only with [http_mcp] auth_method = \"api_key\"; they are ignored"
        );
    }
    let mut server_config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
        .with_cancellation_token(shutdown);
    if !config.allowed_origins.is_empty() {
        server_config.allowed_origins = config.allowed_origins.clone();
    }
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(Duration::from_secs(
        config
            .session_idle_timeout_secs
            .unwrap_or(DEFAULT_IDLE_SECS),
    ));
    let manager = Arc::new(manager);
    let service: StreamableHttpService<McpHandler, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(McpHandler::new(Arc::clone(&router), forwarder.clone())),
            Arc::clone(&manager),
            server_config,
        );
    let limits = Arc::new(sessions::SessionLimits {
        manager,
        max_sessions: config.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
    });
    // Layers run outermost first: count, authenticate, rate-limit, session limits,
    // protocol version, JSON parse check, serve.
    let mut app = axum::Router::new()
        .nest_service(MCP_PATH, service)
        .layer(middleware::from_fn(parse_errors::reject_malformed_json))
        .layer(middleware::from_fn(check_protocol_version))
        .layer(middleware::from_fn_with_state(
            limits,
            sessions::limit_sessions,
        ));
    if let Some(limits) = rate_limit::RateLimits::new(&config.rate_limit)? {
        app = app.layer(middleware::from_fn_with_state(
            Arc::new(limits),
            rate_limit::limit,
        ));
    }
    if config.auth_method == AuthMethod::ApiKey {
        let keys = Arc::new(auth::ApiKeys::load(config, key_scopes, |var| {
            std::env::var(var).ok()
        })?);
        app = app.layer(middleware::from_fn_with_state(keys, auth::require_key));
    }
    // Outermost, so refused requests are counted too.
    Ok(app
        .layer(middleware::from_fn_with_state(
            sessions::MAX_BODY_BYTES,
            crate::unread_body::close_after_unread_body,
        ))
        .layer(middleware::from_fn(count_requests)))
}

/// 400 with the JSON-RPC error the 2026-07-28 revision names
/// (UnsupportedProtocolVersion, -32022, with the requested and supported
/// versions) for an `MCP-Protocol-Version` header this server does not speak,
/// so a client can retry with one it does. rmcp alone answers such requests
/// with a plain-text 400.
async fn check_protocol_version(request: Request, next: Next) -> Response {
    let requested = request
        .headers()
        .get("mcp-protocol-version")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    match requested {
        Some(version)
            if !ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .any(|known| known.as_str() == version) =>
        {
            let supported: Vec<&str> = ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .map(ProtocolVersion::as_str)
                .collect();
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {
                    "code": ErrorCode::UNSUPPORTED_PROTOCOL_VERSION.0,
                    "message": "Unsupported protocol version",
                    "data": {"requested": version, "supported": supported},
                },
            });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        _ => next.run(request).await,
    }
}

/// Decrements `http_mcp_active_connections` when the response body it rides
/// with is dropped (finished, or the client went away).
struct ActiveConnection;

impl ActiveConnection {
    fn open() -> Self {
        metrics().http_mcp_active_connections.inc();
        Self
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        metrics().http_mcp_active_connections.dec();
    }
}

/// A response body carrying its [`ActiveConnection`]. Size hint and end of
/// stream pass through, so a JSON answer keeps its `Content-Length` instead of
/// becoming chunked (`http_body_util`'s `map_frame` would drop the size hint).
struct CountedBody {
    inner: Body,
    _active: ActiveConnection,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `http_mcp_requests_total{method,status}`, the time to the response head, and
/// the requests in flight until their body (an SSE stream, maybe) ends.
async fn count_requests(request: Request, next: Next) -> Response {
    let method = match *request.method() {
        Method::POST => "POST",
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    let active = ActiveConnection::open();
    let started = Instant::now();
    let response = next.run(request).await;
    let m = metrics();
    m.http_mcp_request_duration
        .with_label_values(&[method])
        .observe(started.elapsed().as_secs_f64());
    m.http_mcp_requests
        .with_label_values(&[method, response.status().as_str()])
        .inc();
    response.map(|inner| {
        Body::new(CountedBody {
            inner,
            _active: active,
        })
    })
}
