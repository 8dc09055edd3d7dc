//! Upstream sessions of one client each (`session_mode = "per_client"`).
//!
//! A client session's calls to such an upstream go through an upstream session
//! opened for it at its first call (a child process of its own for a
//! `command`, as supergateway's stateful mode does), closed when the client's
//! session ends, or dropped when the upstream ends it (the next call opens a
//! new one). Every request that upstream session sends (sampling, elicitation,
//! roots, also outside a call) is that client's, and so is every log message
//! it sends (relayed to that client at the level it asked for, which the
//! upstream session is told). Listing still comes from the shared session, and
//! so do resource subscriptions and their updates. Stateless requests and the
//! served model's calls have no session: they use the shared one.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use mistralrs_core::metrics::{ServerLabel, metrics};
use mistralrs_core::sync::Mutex;
use rmcp::{Peer, RoleClient};
use tokio::sync::{Notify, OnceCell, mpsc};

use crate::call_notices::CallNoticeRoutes;
use crate::callers::{Caller, Callers};
use crate::client::{OrderedNotices, Upstream, UpstreamEvent, UpstreamNotice};
use crate::log_relay;
use crate::scope::SessionLife;
use crate::upstream_requests::UpstreamRequests;
use crate::{Error, Result};

/// How many upstream sessions `per_client` mode holds at once unless
/// `max_upstream_sessions` says otherwise.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 64;

/// Log messages of one client's upstream session waiting to be relayed; more
/// are dropped.
const LOG_QUEUE: usize = 256;

/// One client's own upstream session.
#[derive(Debug)]
pub(crate) struct ClientUpstream {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) call_notices: Arc<CallNoticeRoutes>,
    pub(crate) callers: Arc<Callers>,
}

/// A client session's upstream session: filled by its first call, which the
/// others wait for.
type Slot = Arc<OnceCell<Arc<ClientUpstream>>>;

/// The upstream sessions held for client sessions, by `Mcp-Session-Id`.
#[derive(Debug)]
pub(crate) struct ClientUpstreams {
    open: Mutex<HashMap<Arc<str>, Slot>>,
    max: usize,
}

impl ClientUpstreams {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            open: Mutex::new("mcp_client_upstreams", HashMap::new()),
            max,
        }
    }
}

impl Upstream {
    /// The upstream session of client session `session` (whose client
    /// `owner` is), opened now if it has none. Errors: the limit of
    /// sessions, or the upstream failing to start.
    pub(crate) async fn session_for(
        self: &Arc<Self>,
        session: &SessionLife,
        owner: &Caller,
    ) -> Result<Arc<ClientUpstream>> {
        let cell = {
            let mut open = self.client_upstreams.open.lock();
            if !open.contains_key(&session.id) && open.len() >= self.client_upstreams.max {
                return Err(Error::Policy(format!(
                    "upstream MCP server `{}` holds its limit of {} client sessions (max_upstream_sessions)",
                    self.name, self.client_upstreams.max
                )));
            }
            let cell = Arc::clone(open.entry(Arc::clone(&session.id)).or_default());
            self.publish_client_upstreams(open.len());
            cell
        };
        let opened = cell
            .get_or_try_init(|| self.open_client_session(session, owner))
            .await
            .cloned();
        match opened {
            Ok(client) if !client.peer.is_transport_closed() => Ok(client),
            Ok(_) => {
                self.forget_client_session(&session.id, &cell);
                Err(Error::Transport(format!(
                    "upstream MCP server `{}`: this client's session with it ended; the next call opens a new one",
                    self.name
                )))
            }
            Err(e) => {
                self.forget_client_session(&session.id, &cell);
                Err(e)
            }
        }
    }

    async fn open_client_session(
        self: &Arc<Self>,
        session: &SessionLife,
        owner: &Caller,
    ) -> Result<Arc<ClientUpstream>> {
        let owner = Caller {
            request: None,
            cancel: session.closed.clone(),
            ..owner.clone()
        };
        let callers = Arc::new(Callers::with_owner(Some(owner.clone())));
        let requests = Arc::new(UpstreamRequests {
            callers: Arc::clone(&callers),
            ..self.requests.as_ref().clone()
        });
        let call_notices = Arc::new(CallNoticeRoutes::new());
        let (notices, logged) = mpsc::channel(LOG_QUEUE);
        tokio::spawn(relay_own_logs(self.name.clone(), owner.clone(), logged));
        let ordered = OrderedNotices {
            notices,
            call_notices: Arc::clone(&call_notices),
        };
        let opening = self.open_session(requests, ordered, Arc::new(Notify::new()));
        let (running, _pid) =
            tokio::time::timeout(self.timeout, opening)
                .await
                .map_err(|_| Error::Timeout {
                    what: "opening the client's upstream session",
                    after: self.timeout,
                })??;
        if let Some(level) = log_relay::level_of(owner.log_level.load(Ordering::Relaxed)) {
            log_relay::ask_for_logs(&self.name, running.peer(), level, self.timeout).await;
        }
        let client = Arc::new(ClientUpstream {
            peer: running.peer().clone(),
            call_notices,
            callers,
        });
        let upstream = Arc::clone(self);
        let (id, closed) = (Arc::clone(&session.id), session.closed.clone());
        tokio::spawn(async move {
            let stop = running.cancellation_token();
            let ended = running.waiting();
            tokio::pin!(ended);
            tokio::select! {
                () = closed.cancelled() => {
                    // Closing the transport ends a child process; wait for it.
                    stop.cancel();
                    let _ = ended.await;
                }
                _ = &mut ended => {}
            }
            let mut open = upstream.client_upstreams.open.lock();
            open.remove(&id);
            upstream.publish_client_upstreams(open.len());
        });
        Ok(client)
    }

    /// The upstream session client session `id` has open, if any.
    pub(crate) fn opened_session_of(&self, id: &str) -> Option<Arc<ClientUpstream>> {
        let open = self.client_upstreams.open.lock();
        open.get(id).and_then(|cell| cell.get().cloned())
    }

    /// Drops `id`'s entry if it is still `cell`.
    fn forget_client_session(&self, id: &str, cell: &Slot) {
        let mut open = self.client_upstreams.open.lock();
        if open.get(id).is_some_and(|held| Arc::ptr_eq(held, cell)) {
            open.remove(id);
        }
        self.publish_client_upstreams(open.len());
    }

    fn publish_client_upstreams(&self, count: usize) {
        metrics()
            .mcp_upstream_sessions
            .get(&ServerLabel {
                server: self.name.as_str(),
            })
            .set(count as i64);
    }
}

/// Relays what a client's own upstream session logs to that client, at the
/// level it asked for (nothing until it asks); ends with the session.
#[allow(deprecated)] // logging: deprecated by SEP-2577, still used by clients
async fn relay_own_logs(
    server: String,
    owner: Caller,
    mut notices: mpsc::Receiver<UpstreamNotice>,
) {
    while let Some((_, event)) = notices.recv().await {
        // Resource updates: subscriptions go through the shared session.
        let UpstreamEvent::Log(message) = event else {
            continue;
        };
        if log_relay::admits(&owner.log_level, message.level) {
            let message = log_relay::from_upstream(&server, message);
            // A client that went away just misses the message.
            let _ = owner.peer.notify_logging_message(message).await;
        }
    }
}
