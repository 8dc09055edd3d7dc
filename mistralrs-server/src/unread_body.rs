//! A 413 leaves the rest of the request body unread on the connection. Two
//! things go wrong unless the server takes care:
//!
//! - the server cannot read the next request from that connection and drops it,
//!   so the response says `Connection: close`; without it, a pooling client
//!   (reqwest, the OpenAI SDKs) may send its next request on a connection that is
//!   about to be closed and lose it;
//! - a socket closed with unread data in its receive buffer sends a reset, not a
//!   FIN, and a client still sending its body then sees "connection reset" and
//!   never reads the 413. So the rest of the body is read and thrown away in the
//!   background after the response is sent (bounded in bytes and time), and the
//!   connection closes once it is read: nginx's "lingering close".
//!
//! The 413 itself goes out at once, so a client that waits for an early answer
//! before sending a large body is still refused before it sends.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// At most this much of a refused body is read before closing.
const DRAIN_BYTES: u64 = 64 << 20;
/// For at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Middleware, with the app's body limit as state: a request whose declared
/// length fits passes untouched; any other that gets a 413 has `Connection:
/// close` added and the rest of its body drained after the response.
pub async fn close_after_unread_body(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = declared_length(&request);
    if declared.is_some_and(|n| n <= limit as u64) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = SharedBody(Arc::new(Mutex::new(body)));
    let kept = SharedBody(Arc::clone(&body.0));
    let mut response = next.run(Request::from_parts(parts, Body::new(body))).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        if declared.is_none_or(|n| n <= DRAIN_BYTES) {
            tokio::spawn(drain(kept.take()));
        }
    }
    response
}

/// The body length a request declares in `Content-Length`, if it does.
pub fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads and discards `body` until it ends, [`DRAIN_BYTES`] or [`DRAIN_TIME`].
async fn drain(mut body: Body) {
    let mut read = 0u64;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |data| data.len() as u64);
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIME, reading).await.is_err() {
        tracing::debug!("stopped draining a refused request body after {DRAIN_TIME:?}");
    }
}

/// The request body, shared between the handler and this middleware, so that
/// what the handler left unread can be drained after it answered.
struct SharedBody(Arc<Mutex<Body>>);

impl SharedBody {
    fn take(&self) -> Body {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut body = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size_hint()
    }
}
