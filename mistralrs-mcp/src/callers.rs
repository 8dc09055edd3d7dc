//! Which client made each forwarded call in flight on one upstream, so that a
//! request the upstream sends during the call (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) goes back to that client.
//!
//! Over Streamable HTTP, rmcp tells which of our requests' response streams an
//! upstream request arrived on ([`InboundStreamOrigin`]): that ties it to one
//! call however many are in flight. Over stdio nothing on the wire ties them,
//! so a request is tied only when exactly one call is in flight on the
//! connection; otherwise nobody is asked (the request is answered as if the
//! client had not declared the capability). A call counts as in flight from
//! before it is sent ([`Callers::sending`]): the upstream may ask before the
//! call's id is known. Requests that arrive outside any call (on the
//! standalone stream) are never tied, except on an upstream session opened for
//! one client (`session_mode = "per_client"`), whose every request is that
//! client's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use mistralrs_core::sync::Mutex;
use rmcp::model::{ClientCapabilities, RequestId};
use rmcp::service::InboundStreamOrigin;
use rmcp::{Peer, RoleServer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::input_rounds::InputRounds;

/// How long a request waits for calls being sent to be registered (they are
/// registered as soon as they are sent, so this only covers an upstream that
/// asks before the registration ran).
const REGISTRATION_WAIT: Duration = Duration::from_secs(1);

/// The client session a forwarded call came from.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) peer: Peer<RoleServer>,
    /// The client's request (its `tools/call`), on whose stream requests go;
    /// `None`: the session's standalone stream.
    pub(crate) request: Option<RequestId>,
    /// Cancelled when the client's call ends.
    pub(crate) cancel: CancellationToken,
    /// Cancelled when the client's session ends.
    pub(crate) session_closed: CancellationToken,
    /// The rank of the client's `logging/setLevel` (`u8::MAX` until it asks),
    /// for what its own upstream sessions log.
    pub(crate) log_level: Arc<AtomicU8>,
    /// What a client without a session declared in its request's `_meta`.
    pub(crate) declared: Option<ClientCapabilities>,
    /// Set when such a client answers the upstream's requests in rounds.
    pub(crate) rounds: Option<InputRounds>,
}

impl Caller {
    /// What the client declared: at `initialize`, or in a stateless request.
    pub(crate) fn capabilities(&self) -> Option<ClientCapabilities> {
        self.declared
            .clone()
            .or_else(|| self.peer.peer_info().map(|info| info.capabilities.clone()))
    }
}

/// The calls in flight on one upstream connection, by our request id; `None`
/// for a call the served model made (no client to ask).
#[derive(Debug)]
pub(crate) struct Callers {
    calls: Mutex<HashMap<RequestId, Option<Caller>>>,
    /// Calls being sent, not yet registered.
    sending: AtomicUsize,
    registered: Notify,
    /// The one client of an upstream session opened for it (`per_client`):
    /// asked whenever no call says otherwise.
    owner: Option<Caller>,
}

impl Callers {
    /// The callers of a shared upstream session.
    pub(crate) fn new() -> Self {
        Self::with_owner(None)
    }

    /// The callers of an upstream session that `owner`'s session has to itself.
    pub(crate) fn with_owner(owner: Option<Caller>) -> Self {
        Self {
            calls: Mutex::new("mcp_upstream_callers", HashMap::new()),
            sending: AtomicUsize::new(0),
            registered: Notify::new(),
            owner,
        }
    }

    /// A call about to be sent: in flight from now, registered by
    /// [`Sending::register`] once its id is known.
    pub(crate) fn sending(self: &Arc<Self>) -> Sending {
        self.sending.fetch_add(1, Ordering::SeqCst);
        Sending {
            callers: Arc::clone(self),
        }
    }

    /// The client to ask for an upstream request that arrived from `origin`
    /// (`None`: a transport that can't tell, i.e. stdio).
    pub(crate) async fn caller_of(&self, origin: Option<&InboundStreamOrigin>) -> Option<Caller> {
        self.tied_caller(origin)
            .await
            .or_else(|| self.owner.clone())
    }

    async fn tied_caller(&self, origin: Option<&InboundStreamOrigin>) -> Option<Caller> {
        match origin {
            Some(InboundStreamOrigin::OutboundRequest(id)) => {
                let wait = tokio::time::timeout(REGISTRATION_WAIT, async {
                    loop {
                        let registered = self.registered.notified();
                        if let Some(caller) = self.calls.lock().get(id) {
                            return caller.clone();
                        }
                        registered.await;
                    }
                });
                wait.await.ok().flatten()
            }
            Some(InboundStreamOrigin::Unassociated) => None,
            None => {
                let settled = tokio::time::timeout(REGISTRATION_WAIT, async {
                    loop {
                        let registered = self.registered.notified();
                        if self.sending.load(Ordering::SeqCst) == 0 {
                            return;
                        }
                        registered.await;
                    }
                });
                let _ = settled.await;
                let calls = self.calls.lock();
                match (calls.len(), self.sending.load(Ordering::SeqCst)) {
                    (1, 0) => calls.values().next().cloned().flatten(),
                    _ => None,
                }
            }
        }
    }
}

/// A call being sent ([`Callers::sending`]); dropped unregistered when the
/// send failed.
#[derive(Debug)]
pub(crate) struct Sending {
    callers: Arc<Callers>,
}

impl Sending {
    /// Records that our request `id` was made for `caller` until the guard drops.
    pub(crate) fn register(self, id: RequestId, caller: Option<Caller>) -> CallGuard {
        self.callers.calls.lock().insert(id.clone(), caller);
        CallGuard {
            callers: Arc::clone(&self.callers),
            id,
        }
        // `self` drops here: no longer being sent, and waiters are told.
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.callers.sending.fetch_sub(1, Ordering::SeqCst);
        self.callers.registered.notify_waiters();
    }
}

/// Removes a call when it ends.
#[derive(Debug)]
pub(crate) struct CallGuard {
    callers: Arc<Callers>,
    id: RequestId,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.callers.calls.lock().remove(&self.id);
    }
}
