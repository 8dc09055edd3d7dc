//! Errors as OpenAI's API returns them: `{"error": {"message", "type", "param",
//! "code"}}` with the matching HTTP status. Every handler error goes through here.

use axum::extract::rejection::JsonRejection;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mistralrs_core::request::Failure;
use serde_json::json;

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// An error a client sees.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    /// 400 for an invalid parameter.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param),
            code: None,
        }
    }

    /// 404 for a path that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    /// 405 for a method a path does not take.
    pub fn method_not_allowed() -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "method not allowed on this path".into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body, also used as an SSE error event.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<mistralrs_core::Error> for ApiError {
    fn from(e: mistralrs_core::Error) -> Self {
        use mistralrs_core::Error as E;
        let (status, kind, param, code) = match &e {
            E::InvalidRequest(_) | E::ChatTemplate(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None, None)
            }
            E::PromptTooLong { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            ),
            E::UnknownModel(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            E::QueueFull(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                None,
                Some("overloaded"),
            ),
            E::EngineStopped | E::Failed(Failure::ShuttingDown) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                None,
                Some("shutting_down"),
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {e}");
            "internal error; see the server log".to_owned()
        } else {
            e.to_string()
        };
        Self {
            status,
            message,
            kind,
            param,
            code,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // OpenAI answers 400 for a body of the wrong shape, where axum says 422.
        let status = match rejection.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "expected `Content-Type: application/json`".to_owned()
            }
            _ => rejection.body_text(),
        };
        Self {
            status,
            message,
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    /// The body; a 503 (overloaded, shutting down) also says `Retry-After`.
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mistralrs_core::Error;

    #[test]
    fn engine_failures_are_not_the_callers_fault() {
        let shutting_down = ApiError::from(Error::from(Failure::ShuttingDown));
        assert_eq!(shutting_down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shutting_down.body()["error"]["type"], "server_error");
        assert_eq!(shutting_down.body()["error"]["code"], "shutting_down");
        let response = shutting_down.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");

        let internal = ApiError::from(Error::from(Failure::Internal));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(internal.body()["error"]["type"], "server_error");
        let tensor = ApiError::from(Error::Tensor(candle_core::Error::Msg(
            "shape mismatch in matmul".into(),
        )));
        assert_eq!(tensor.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            tensor.message(),
            "internal error; see the server log",
            "no internals"
        );

        let mistake = ApiError::from(Error::InvalidRequest("top_p must be in (0, 1]".into()));
        assert_eq!(mistake.status(), StatusCode::BAD_REQUEST);
        assert_eq!(mistake.body()["error"]["type"], "invalid_request_error");
    }
}
