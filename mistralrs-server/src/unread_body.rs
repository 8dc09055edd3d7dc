//! An early refusal (401, 429, 413, 503, ...) leaves the request body unread on
//! the connection. Two things go wrong unless the server takes care:
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
//! This is decided here, once, for every response of a port: whatever answers
//! early, the answer itself goes out at once (a client that waits for an early
//! answer before sending a large body is refused before it sends), and a
//! connection whose request body was read to its end stays open.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// At most this much of a refused body is read before closing.
const DRAIN_BYTES: u64 = 64 << 20;
/// For at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Middleware: a request whose body the handler did not read to its end gets
/// `Connection: close` on its response, and the rest of its body is drained
/// after the response (unless it declares more than [`DRAIN_BYTES`]). The
/// state (the app's body limit) is no longer needed to decide; it is kept so
/// both ports call this the same way.
pub async fn close_after_unread_body(
    State(_limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let declared = declared_length(&request);
    let (parts, body) = request.into_parts();
    let body = SharedBody::new(body);
    let kept = body.share();
    let mut response = next.run(Request::from_parts(parts, Body::new(body))).await;
    if !kept.is_end_stream() {
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
/// what the handler left unread can be drained after it answered. `ended`
/// notes that a reader saw its end (a chunked body never says so by itself).
struct SharedBody {
    body: Arc<Mutex<Body>>,
    ended: Arc<AtomicBool>,
}

impl SharedBody {
    fn new(body: Body) -> Self {
        Self {
            body: Arc::new(Mutex::new(body)),
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A second handle on the same body.
    fn share(&self) -> Self {
        Self {
            body: Arc::clone(&self.body),
            ended: Arc::clone(&self.ended),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Body> {
        self.body.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Body {
        std::mem::take(&mut *self.lock())
    }
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut *self.lock()).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.lock().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint()
    }
}
