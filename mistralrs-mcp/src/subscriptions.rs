//! Resource subscriptions through the gateway (`resources/subscribe`,
//! `resources/unsubscribe`). A session's subscription to a forwarded URI is
//! held here; the upstream owning the URI gets one subscription however many
//! sessions hold one (sent with the first, withdrawn with the last), and its
//! `notifications/resources/updated` go to exactly the sessions subscribed to
//! that URI. Sessions that closed without unsubscribing are dropped when the
//! next update comes.

use std::collections::HashMap;
use std::sync::Arc;

use mistralrs_core::sync::Mutex;
use rmcp::{Peer, RoleServer};

use crate::scope::ClientSession;

#[derive(Debug)]
struct Subscriber {
    session: Arc<ClientSession>,
    peer: Peer<RoleServer>,
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
        peer: Peer<RoleServer>,
    ) -> bool {
        let mut entries = self.0.lock();
        let subscribers = entries
            .entry((server.to_owned(), uri.to_owned()))
            .or_default();
        subscribers.retain(|s| !s.peer.is_transport_closed());
        let first = subscribers.is_empty();
        if !subscribers.iter().any(|s| Arc::ptr_eq(&s.session, session)) {
            subscribers.push(Subscriber {
                session: Arc::clone(session),
                peer,
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
                subscribers
                    .retain(|s| !Arc::ptr_eq(&s.session, session) && !s.peer.is_transport_closed());
                if subscribers.is_empty() {
                    emptied.push(server.clone());
                    return false;
                }
            }
            true
        });
        emptied
    }

    /// The open sessions subscribed to `uri` of `server` (closed ones dropped;
    /// an empty answer means the upstream subscription can go).
    pub(crate) fn subscribers(&self, server: &str, uri: &str) -> Vec<Peer<RoleServer>> {
        let mut entries = self.0.lock();
        let key = (server.to_owned(), uri.to_owned());
        let Some(subscribers) = entries.get_mut(&key) else {
            return Vec::new();
        };
        subscribers.retain(|s| !s.peer.is_transport_closed());
        let peers: Vec<_> = subscribers.iter().map(|s| s.peer.clone()).collect();
        if peers.is_empty() {
            entries.remove(&key);
        }
        peers
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
