//! A response body that carries a guard until it is dropped (finished, or the
//! client went away): how "in flight until the last byte" is counted without
//! knowing what the body is (a JSON answer, an SSE stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};

/// `inner` with `guard` riding along. Size hint and end of stream pass through,
/// so a JSON answer keeps its `Content-Length` instead of becoming chunked
/// (`http_body_util`'s `map_frame` would drop the size hint).
pub(crate) struct GuardedBody<G> {
    inner: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> GuardedBody<G> {
    /// `body` holding `guard` until it is dropped, as an axum body.
    pub(crate) fn wrap(inner: Body, guard: G) -> Body {
        Body::new(Self {
            inner,
            _guard: guard,
        })
    }
}

impl<G> HttpBody for GuardedBody<G>
where
    G: Unpin,
{
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
