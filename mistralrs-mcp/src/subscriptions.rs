//! Resource subscriptions through the gateway: a session's
//! (`resources/subscribe`, `resources/unsubscribe`) or a 2026-07-28
//! `subscriptions/listen` stream's. A subscription to a forwarded URI is held
//! here; the upstream owning the URI gets one subscription however many hold
//! one (sent with the first, withdrawn with the last), and its
//! `notifications/resources/updated` go to exactly the subscribers of that
//! URI. Subscribers that closed without unsubscribing are dropped when the
//! next update comes.

use std::collections::HashMap;
use std::sync::Arc;

use mistralrs_core::sync::Mutex;
use rmcp::model::{
    PromptListChangedNotification, ResourceListChangedNotification, ResourceUpdatedNotification,
    ResourceUpdatedNotificationParam, ServerNotification, ToolListChangedNotification,
};
use rmcp::service::{SubscriptionContext, SubscriptionSink};
use rmcp::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::scope::ClientSession;

/// A client watching for changes: a session (told of list changes, and of
/// updates to the resources it subscribed to) or a 2026-07-28
/// `subscriptions/listen` stream (told of what it listens for).
#[derive(Debug, Clone)]
pub(crate) enum Watcher {
    Session(Peer<RoleServer>),
    Listen {
        sink: SubscriptionSink,
        /// Cancelled when the stream ends.
        ended: CancellationToken,
    },
}

impl Watcher {
    /// The stream of `subscription`.
    pub(crate) fn listening(subscription: &SubscriptionContext) -> Self {
        Self::Listen {
            sink: subscription.sink().clone(),
            ended: subscription.request_context().ct.clone(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Session(peer) => peer.is_transport_closed(),
            Self::Listen { ended, .. } => ended.is_cancelled(),
        }
    }

    /// Tells the watcher that the forwarded tool, prompt and resource lists
    /// changed (a stream: those of the three it listens for).
    pub(crate) async fn lists_changed(&self) {
        // A watcher that went away just misses the notification.
        match self {
            Self::Session(peer) => {
                let _ = peer.notify_tool_list_changed().await;
                let _ = peer.notify_prompt_list_changed().await;
                let _ = peer.notify_resource_list_changed().await;
            }
            Self::Listen { sink, .. } => {
                let accepted = sink.accepted();
                let changes = [
                    (
                        accepted.tools_list_changed,
                        ServerNotification::ToolListChangedNotification(
                            ToolListChangedNotification::default(),
                        ),
                    ),
                    (
                        accepted.prompts_list_changed,
                        ServerNotification::PromptListChangedNotification(
                            PromptListChangedNotification::default(),
                        ),
                    ),
                    (
                        accepted.resources_list_changed,
                        ServerNotification::ResourceListChangedNotification(
                            ResourceListChangedNotification::default(),
                        ),
                    ),
                ];
                for (listened, change) in changes {
                    if listened == Some(true) {
                        let _ = sink.send(change).await;
                    }
                }
            }
        }
    }

    /// Tells the watcher that resource `uri` changed.
    pub(crate) async fn resource_updated(&self, uri: String) {
        let update = ResourceUpdatedNotificationParam::new(uri);
        match self {
            Self::Session(peer) => {
                let _ = peer.notify_resource_updated(update).await;
            }
            Self::Listen { sink, .. } => {
                let update = ResourceUpdatedNotification::new(update);
                let _ = sink
                    .send(ServerNotification::ResourceUpdatedNotification(update))
                    .await;
            }
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    /// The subscription's holder: a session, or one listen stream.
    session: Arc<ClientSession>,
    watcher: Watcher,
}

/// Subscribers by (upstream, URI).
#[derive(Debug)]
pub(crate) struct Subscriptions(Mutex<HashMap<(String, String), Vec<Subscriber>>>);

impl Subscriptions {
    pub(crate) fn new() -> Self {
        Self(Mutex::new("mcp_resource_subscriptions", HashMap::new()))
    }

    /// Subscribes `session` to `uri` of `server`; whether it is the URI's
    /// first subscriber (so the upstream must be asked).
    pub(crate) fn add(
        &self,
        server: &str,
        uri: &str,
        session: &Arc<ClientSession>,
        watcher: Watcher,
    ) -> bool {
        let mut entries = self.0.lock();
        let subscribers = entries
            .entry((server.to_owned(), uri.to_owned()))
            .or_default();
        subscribers.retain(|s| !s.watcher.is_closed());
        let first = subscribers.is_empty();
        if !subscribers.iter().any(|s| Arc::ptr_eq(&s.session, session)) {
            subscribers.push(Subscriber {
                session: Arc::clone(session),
                watcher,
            });
        }
        first
    }

    /// Ends `session`'s subscription to `uri` wherever it is held; the
    /// upstreams whose last subscriber to it that was.
    pub(crate) fn remove(&self, uri: &str, session: &Arc<ClientSession>) -> Vec<String> {
        let mut entries = self.0.lock();
        let mut emptied = Vec::new();
        entries.retain(|(server, held), subscribers| {
            if held == uri {
                subscribers.retain(|s| !Arc::ptr_eq(&s.session, session) && !s.watcher.is_closed());
                if subscribers.is_empty() {
                    emptied.push(server.clone());
                    return false;
                }
            }
            true
        });
        emptied
    }

    /// The open subscribers of `uri` of `server` (closed ones dropped; an
    /// empty answer means the upstream subscription can go).
    pub(crate) fn subscribers(&self, server: &str, uri: &str) -> Vec<Watcher> {
        let mut entries = self.0.lock();
        let key = (server.to_owned(), uri.to_owned());
        let Some(subscribers) = entries.get_mut(&key) else {
            return Vec::new();
        };
        subscribers.retain(|s| !s.watcher.is_closed());
        let watchers: Vec<_> = subscribers.iter().map(|s| s.watcher.clone()).collect();
        if watchers.is_empty() {
            entries.remove(&key);
        }
        watchers
    }

    /// The URIs of `server` some session holds (to subscribe again after a reconnect).
    pub(crate) fn held(&self, server: &str) -> Vec<String> {
        self.0
            .lock()
            .keys()
            .filter(|(s, _)| s == server)
            .map(|(_, uri)| uri.clone())
            .collect()
    }
}
