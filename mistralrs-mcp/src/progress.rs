//! Upstream progress relayed to the client that made the call, in the order
//! the upstream sent it, and all of it before the call's result.
//!
//! Each forwarded call that asked for progress registers its upstream token
//! and gets a queue. The upstream's transport ([`crate::in_order::InOrder`])
//! puts each progress notification on its call's queue as it reads it, before
//! it reads the result that follows; the call relays its queue while it waits
//! and drains it once the result is in. A slow client only holds up its own
//! call's progress.

use std::collections::HashMap;
use std::sync::Arc;

use mistralrs_core::sync::Mutex;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc;

/// Progress notifications of one call waiting to be relayed; more are
/// dropped (progress values still rise, the client sees fewer steps).
const CALL_QUEUE: usize = 256;

/// Where a call's progress goes: the calling client's peer and the token it chose.
#[derive(Debug, Clone)]
pub(crate) struct ProgressRoute {
    pub(crate) peer: Peer<RoleServer>,
    pub(crate) token: ProgressToken,
}

/// The queues of one upstream's calls in flight, by the token sent upstream.
#[derive(Debug)]
pub(crate) struct ProgressRoutes(
    Mutex<HashMap<ProgressToken, mpsc::Sender<ProgressNotificationParam>>>,
);

impl ProgressRoutes {
    pub(crate) fn new() -> Self {
        Self(Mutex::new("mcp_progress_routes", HashMap::new()))
    }

    /// Queues `progress` for the call in flight it belongs to, if any.
    pub(crate) fn route(&self, progress: ProgressNotificationParam) {
        if let Some(queue) = self.0.lock().get(&progress.progress_token) {
            let _ = queue.try_send(progress);
        }
    }

    /// Starts relaying the progress of the call sent with `upstream` to `client`.
    pub(crate) fn register(
        self: &Arc<Self>,
        upstream: ProgressToken,
        client: ProgressRoute,
    ) -> CallProgress {
        let (queue, received) = mpsc::channel(CALL_QUEUE);
        self.0.lock().insert(upstream.clone(), queue);
        CallProgress {
            routes: Arc::clone(self),
            upstream,
            received,
            client,
        }
    }
}

/// One call's progress; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct CallProgress {
    routes: Arc<ProgressRoutes>,
    upstream: ProgressToken,
    received: mpsc::Receiver<ProgressNotificationParam>,
    client: ProgressRoute,
}

impl CallProgress {
    /// The next progress the upstream sent for this call (waits for it).
    pub(crate) async fn next(&mut self) -> Option<ProgressNotificationParam> {
        self.received.recv().await
    }

    /// Sends `progress` to the client under its own token.
    pub(crate) async fn relay(&self, mut progress: ProgressNotificationParam) {
        progress.progress_token = self.client.token.clone();
        // A client that went away just misses the notification.
        let _ = self.client.peer.notify_progress(progress).await;
    }

    /// Relays what is still queued: called once the result is in, since
    /// everything the upstream sent before it is queued by then.
    pub(crate) async fn drain(&mut self) {
        while let Ok(progress) = self.received.try_recv() {
            self.relay(progress).await;
        }
    }
}

impl Drop for CallProgress {
    fn drop(&mut self) {
        self.routes.0.lock().remove(&self.upstream);
    }
}
