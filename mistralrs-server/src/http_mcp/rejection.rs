//! Every refusal the MCP port makes before rmcp sees a request, as one type
//! (axum's rejection habit): the status per cause, one body shape (a JSON-RPC
//! error object, which MCP clients already parse), the headers a cause needs
//! (`WWW-Authenticate`, `Retry-After`) and the counter that counts it.
//!
//! Whether the connection can be kept after a refusal is decided elsewhere, once
//! for all of them: `crate::unread_body` closes it when a body was left unread.

use std::time::Duration;

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mistralrs_core::metrics::{KindLabel, ReasonLabel, ScopeLabel, metrics};
use rmcp::model::ErrorCode;
use serde_json::{Value, json};

/// JSON-RPC's "server error" range start: refusals of the transport itself,
/// whose HTTP status says the cause.
const TRANSPORT_REFUSAL: i32 = -32000;

/// Why an API key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <key>`.
    Malformed,
    /// A key that is not configured.
    Invalid,
}

impl AuthFailure {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Missing => "missing Authorization: Bearer <key>",
            Self::Malformed => "malformed Authorization header; expected Bearer <key>",
            Self::Invalid => "invalid API key",
        }
    }
}

/// A request refused by the MCP port's own checks.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Rejection {
    /// 401 with a `Bearer` challenge.
    Unauthorized(AuthFailure),
    /// 429 with `Retry-After`: `scope` is `global`, `key`, `ip` or
    /// `auth_failures` (too many failed keys from this address).
    RateLimited {
        /// The limit that refused.
        scope: &'static str,
        /// When a retry may pass.
        retry_after: Duration,
    },
    /// 503 with `Retry-After`: the session limit is reached.
    TooManySessions,
    /// 503 with `Retry-After`: the shared rate limiter (Redis) does not answer
    /// and `on_redis_error = "deny"`.
    LimiterUnavailable,
    /// 413: the body is over the limit.
    BodyTooLarge,
    /// 400: the body could not be read to its end.
    BodyUnreadable,
    /// 400 with -32700: not JSON (or invalid UTF-8, or nested too deep).
    ParseError(String),
    /// 400 with -32600: JSON, but not a JSON-RPC message this server takes.
    InvalidRequest(String),
    /// 404: no such session (unknown, expired, deleted, or another key's).
    UnknownSession,
    /// 400 with -32022 and the versions this server speaks.
    UnsupportedProtocolVersion {
        /// What the client asked for.
        requested: String,
        /// What this server speaks.
        supported: Vec<&'static str>,
    },
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManySessions | Self::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownSession => StatusCode::NOT_FOUND,
            Self::BodyUnreadable
            | Self::ParseError(_)
            | Self::InvalidRequest(_)
            | Self::UnsupportedProtocolVersion { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The `http_mcp_errors_total{kind}` label (auth and rate-limit refusals
    /// have series of their own).
    fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManySessions => "too_many_sessions",
            Self::LimiterUnavailable => "rate_limiter_unavailable",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::ParseError(_) => "parse_error",
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownSession => "unknown_session",
            Self::UnsupportedProtocolVersion { .. } => "unsupported_protocol_version",
        }
    }

    fn code_and_message(&self) -> (i32, String) {
        match self {
            Self::Unauthorized(failure) => (TRANSPORT_REFUSAL, failure.message().into()),
            Self::RateLimited { scope, .. } => (
                TRANSPORT_REFUSAL,
                format!(
                    "rate limit ({scope}) exceeded; retry after {} s",
                    self.retry_secs()
                ),
            ),
            Self::TooManySessions => (
                TRANSPORT_REFUSAL,
                "too many open MCP sessions; try again later".into(),
            ),
            Self::LimiterUnavailable => (
                TRANSPORT_REFUSAL,
                "the rate limiter is unavailable; try again later".into(),
            ),
            Self::BodyTooLarge => (TRANSPORT_REFUSAL, "request body is too large".into()),
            Self::BodyUnreadable => (
                TRANSPORT_REFUSAL,
                "request body could not be read to its end".into(),
            ),
            Self::ParseError(detail) => {
                (ErrorCode::PARSE_ERROR.0, format!("Parse error: {detail}"))
            }
            Self::InvalidRequest(detail) => (
                ErrorCode::INVALID_REQUEST.0,
                format!("Invalid Request: {detail}"),
            ),
            Self::UnknownSession => (TRANSPORT_REFUSAL, "session not found".into()),
            Self::UnsupportedProtocolVersion { .. } => (
                ErrorCode::UNSUPPORTED_PROTOCOL_VERSION.0,
                "Unsupported protocol version".into(),
            ),
        }
    }

    /// Whole seconds to wait, at least 1, for the causes that say when to retry.
    fn retry_secs(&self) -> u64 {
        match self {
            Self::RateLimited { retry_after, .. } => {
                retry_after.as_secs_f64().ceil().max(1.0) as u64
            }
            _ => 1,
        }
    }

    fn count(&self) {
        let m = metrics();
        match self {
            Self::Unauthorized(failure) => m
                .http_mcp_auth_failures
                .get(&ReasonLabel {
                    reason: failure.label(),
                })
                .inc(),
            Self::RateLimited { scope, .. } => {
                m.http_mcp_rate_limited.get(&ScopeLabel { scope }).inc();
            }
            other => m
                .http_mcp_errors
                .get(&KindLabel { kind: other.kind() })
                .inc(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.count();
        let (code, message) = self.code_and_message();
        let data = match &self {
            Self::UnsupportedProtocolVersion {
                requested,
                supported,
            } => json!({"requested": requested, "supported": supported}),
            other => json!({"kind": other.kind()}),
        };
        let body = json!({
            "jsonrpc": "2.0",
            "id": Value::Null,
            "error": {"code": code, "message": message, "data": data},
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="mistralrs-mcp""#),
                );
            }
            Self::RateLimited { .. } | Self::TooManySessions | Self::LimiterUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_secs()));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_cause_has_its_status_and_one_body_shape() {
        let cases = [
            (
                Rejection::Unauthorized(AuthFailure::Invalid),
                401,
                TRANSPORT_REFUSAL,
            ),
            (
                Rejection::RateLimited {
                    scope: "ip",
                    retry_after: Duration::from_millis(1500),
                },
                429,
                TRANSPORT_REFUSAL,
            ),
            (Rejection::TooManySessions, 503, TRANSPORT_REFUSAL),
            (Rejection::BodyTooLarge, 413, TRANSPORT_REFUSAL),
            (Rejection::BodyUnreadable, 400, TRANSPORT_REFUSAL),
            (Rejection::ParseError("x".into()), 400, -32700),
            (Rejection::InvalidRequest("x".into()), 400, -32600),
            (Rejection::UnknownSession, 404, TRANSPORT_REFUSAL),
        ];
        for (rejection, status, code) in cases {
            let response = rejection.clone().into_response();
            assert_eq!(response.status().as_u16(), status, "{rejection:?}");
            let retry = response.headers().get(RETRY_AFTER).cloned();
            let body = body_of(response).await;
            assert_eq!(body["jsonrpc"], "2.0");
            assert_eq!(body["id"], Value::Null);
            assert_eq!(body["error"]["code"], code, "{rejection:?}");
            assert!(body["error"]["message"].is_string());
            if status == 429 {
                assert_eq!(retry.unwrap(), "2", "1.5 s rounds up");
            }
        }
    }
}
