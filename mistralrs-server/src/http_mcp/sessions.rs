//! Session limits: at most `[http_mcp] max_sessions` open sessions (a new
//! `initialize` past it gets 503 and the client may retry), the open count in
//! `http_mcp_active_sessions`, and a cap on request bodies (413).
//!
//! Idle sessions are closed by rmcp's session manager after
//! `session_idle_timeout_secs` (see `SessionConfig::keep_alive`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mistralrs_core::metrics::metrics;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

/// Largest MCP request body. JSON-RPC messages with chat messages in them stay
/// far below; anything larger is refused before it is read.
pub(super) const MAX_BODY_BYTES: usize = 4 << 20;

/// What the session middleware needs.
#[derive(Debug)]
pub(super) struct SessionLimits {
    pub(super) manager: Arc<LocalSessionManager>,
    pub(super) max_sessions: usize,
}

fn refuse(status: StatusCode, kind: &'static str, message: &str) -> Response {
    metrics().http_mcp_errors.with_label_values(&[kind]).inc();
    (status, axum::Json(serde_json::json!({"error": message}))).into_response()
}

/// Middleware: refuses new sessions past the limit and oversized bodies, and
/// keeps the open-session gauge current.
pub(super) async fn limit_sessions(
    State(limits): State<Arc<SessionLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if crate::unread_body::declared_length(&request).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body is too large",
        );
    }
    let opens_session = request.method() == axum::http::Method::POST
        && !request.headers().contains_key("mcp-session-id");
    if opens_session && limits.manager.sessions.read().await.len() >= limits.max_sessions {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sessions",
            "too many open MCP sessions; try again later",
        );
    }
    let (parts, body) = request.into_parts();
    // Bodies without a declared length are cut off at the same size.
    let body = Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES));
    let response = next.run(Request::from_parts(parts, body)).await;
    metrics()
        .http_mcp_active_sessions
        .set(limits.manager.sessions.read().await.len() as i64);
    response
}
