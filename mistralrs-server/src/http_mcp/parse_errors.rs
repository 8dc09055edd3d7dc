//! A POST body that is not JSON gets 400 with the JSON-RPC parse error
//! (-32700), as JSON-RPC and the MCP transport specify. rmcp alone answers such
//! a body with 415, which tells the client to change its Content-Type, not its
//! JSON.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mistralrs_core::metrics::metrics;
use rmcp::model::ErrorCode;

use super::sessions::MAX_BODY_BYTES;

/// Middleware: checks that a POST body parses as JSON before rmcp reads it.
pub(super) async fn reject_malformed_json(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        metrics()
            .http_mcp_errors
            .with_label_values(&["body_too_large"])
            .inc();
        let body = axum::Json(serde_json::json!({"error": "request body is too large"}));
        return (StatusCode::PAYLOAD_TOO_LARGE, body).into_response();
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        metrics()
            .http_mcp_errors
            .with_label_values(&["parse_error"])
            .inc();
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": ErrorCode::PARSE_ERROR.0, "message": format!("Parse error: {e}")},
        });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
