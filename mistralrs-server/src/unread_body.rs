//! A 413 leaves the rest of the request body unread on the connection, so the
//! server cannot read the next request from it and will drop it. Saying
//! `Connection: close` on such responses tells the client not to reuse the
//! connection; without it, a pooling client (reqwest, the OpenAI SDKs) may send
//! its next request on a connection that is about to be closed and lose it.

use axum::http::StatusCode;
use axum::http::header::{CONNECTION, HeaderValue};
use axum::response::Response;

/// Response mapper: adds `Connection: close` to 413 responses.
pub async fn close_after_unread_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
