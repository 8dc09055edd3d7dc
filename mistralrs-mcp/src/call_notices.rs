//! What an upstream sends about one forwarded call, relayed to the client that
//! made it in the order the upstream sent it, all of it before the call's
//! result: progress, and log messages for a 2026-07-28 request that opted in
//! to them (`io.modelcontextprotocol/logLevel` in its `_meta`).
//!
//! Each forwarded call is counted while in flight; one whose client asked for
//! progress or logs registers its upstream progress token and gets a queue.
//! The upstream's transport ([`crate::in_order::InOrder`]) puts each progress
//! notification on its call's queue as it reads it, before it reads the
//! result that follows; the call relays its queue while it waits and drains
//! it once the result is in. Log messages carry nothing that names a call, so
//! one is a call's only while that call is the only one in flight on the
//! upstream session. A slow client only holds up its own call.
// Logging is deprecated by SEP-2577 (2026-07-28) but clients still use it.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::Arc;

use mistralrs_core::sync::Mutex;
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
};
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc;

use crate::log_relay;

/// Notifications of one call waiting to be relayed; more are dropped
/// (progress values still rise, the client sees fewer steps).
const CALL_QUEUE: usize = 256;

/// What an upstream sent about a call.
#[derive(Debug)]
pub(crate) enum CallNotice {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
}

/// Where a call's notices go: the calling client, the progress token it
/// chose (if it asked for progress) and the level it asked logs at (if its
/// request opted in).
#[derive(Debug, Clone)]
pub(crate) struct NoticeRoute {
    pub(crate) peer: Peer<RoleServer>,
    pub(crate) progress_token: Option<ProgressToken>,
    pub(crate) log_level: Option<LoggingLevel>,
}

#[derive(Debug)]
struct CallEntry {
    queue: mpsc::Sender<CallNotice>,
    /// The level the call's request opted in to logs at.
    log_level: Option<LoggingLevel>,
}

#[derive(Debug, Default)]
struct Routes {
    /// Queues of the calls that relay something, by the token sent upstream.
    queues: HashMap<ProgressToken, CallEntry>,
    /// Every call in flight, with a queue or not.
    in_flight: usize,
}

/// The calls in flight on one upstream session and their queues.
#[derive(Debug)]
pub(crate) struct CallNoticeRoutes(Mutex<Routes>);

impl CallNoticeRoutes {
    pub(crate) fn new() -> Self {
        Self(Mutex::new("mcp_call_notice_routes", Routes::default()))
    }

    /// Queues `progress` for the call in flight it belongs to, if any.
    pub(crate) fn route_progress(&self, progress: ProgressNotificationParam) {
        if let Some(call) = self.0.lock().queues.get(&progress.progress_token) {
            let _ = call.queue.try_send(CallNotice::Progress(progress));
        }
    }

    /// Queues `log` for the call in flight, if it is the only one and opted
    /// in to logs at or below the message's level.
    pub(crate) fn route_log(&self, log: &LoggingMessageNotificationParam) {
        let routes = self.0.lock();
        if routes.in_flight != 1 {
            return;
        }
        if let Some(call) = routes.queues.values().next()
            && call
                .log_level
                .is_some_and(|wanted| log_relay::at_least(log.level, wanted))
        {
            let _ = call.queue.try_send(CallNotice::Log(log.clone()));
        }
    }

    /// Counts the call sent with `upstream` as in flight, and starts relaying
    /// what the upstream sends about it to `to` if its client asked for
    /// progress or logs (`to` is `None` for the served model's calls).
    pub(crate) fn register(
        self: &Arc<Self>,
        upstream: ProgressToken,
        to: Option<NoticeRoute>,
    ) -> CallNotices {
        let wants_notices = to
            .as_ref()
            .is_some_and(|route| route.progress_token.is_some() || route.log_level.is_some());
        let mut routes = self.0.lock();
        routes.in_flight += 1;
        let received = wants_notices.then(|| {
            let (queue, received) = mpsc::channel(CALL_QUEUE);
            let log_level = to.as_ref().and_then(|route| route.log_level);
            routes
                .queues
                .insert(upstream.clone(), CallEntry { queue, log_level });
            received
        });
        drop(routes);
        CallNotices {
            routes: Arc::clone(self),
            upstream,
            received,
            to,
        }
    }
}

/// One call in flight and its notices; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct CallNotices {
    routes: Arc<CallNoticeRoutes>,
    upstream: ProgressToken,
    /// `None`: its client asked for nothing.
    received: Option<mpsc::Receiver<CallNotice>>,
    to: Option<NoticeRoute>,
}

impl CallNotices {
    /// The next notice the upstream sent about this call (waits for it;
    /// never comes for a call that relays nothing).
    pub(crate) async fn next(&mut self) -> Option<CallNotice> {
        match &mut self.received {
            Some(received) => received.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Sends `notice` from upstream `server` to the client: progress under
    /// the client's own token, a log message named after the upstream.
    pub(crate) async fn relay(&self, server: &str, notice: CallNotice) {
        let Some(to) = &self.to else {
            return;
        };
        // A client that went away just misses the notification.
        match notice {
            CallNotice::Progress(mut progress) => {
                if let Some(token) = &to.progress_token {
                    progress.progress_token = token.clone();
                    let _ = to.peer.notify_progress(progress).await;
                }
            }
            CallNotice::Log(log) => {
                let log = log_relay::from_upstream(server, log);
                let _ = to.peer.notify_logging_message(log).await;
            }
        }
    }

    /// Relays what is still queued: called once the result is in, since
    /// everything the upstream sent before it is queued by then.
    pub(crate) async fn drain(&mut self, server: &str) {
        while let Some(notice) = self.received.as_mut().and_then(|r| r.try_recv().ok()) {
            self.relay(server, notice).await;
        }
    }
}

impl Drop for CallNotices {
    fn drop(&mut self) {
        let mut routes = self.routes.0.lock();
        routes.in_flight -= 1;
        if self.received.is_some() {
            routes.queues.remove(&self.upstream);
        }
    }
}
