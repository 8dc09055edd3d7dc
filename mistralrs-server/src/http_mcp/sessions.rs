//! The open MCP sessions, as this server counts them: each session's owner (the
//! API key that opened it; another key is told the session does not exist), its
//! requests in flight (an open GET stream or a streaming answer keeps it alive)
//! and when it was last used. Idle sessions are closed here, not by rmcp (whose
//! idle timer knows nothing of an open GET stream), and
//! `http_mcp_active_sessions` follows every change at once.
//!
//! The limit `[http_mcp] max_sessions` is kept with reservations: an `initialize`
//! takes a slot under the same lock that counts open sessions, and gives it back
//! if no session comes of it, so simultaneous handshakes can never overshoot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mistralrs_core::metrics::metrics;
use mistralrs_core::sync::Mutex;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::SessionId;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

use super::auth::KeyId;

/// One open session.
#[derive(Debug)]
struct Entry {
    owner: Option<KeyId>,
    /// Whether its streams may carry SSE priming events (2025-11-25 and later).
    takes_priming: bool,
    last_used: Instant,
    in_flight: usize,
    /// Cancelled when the session is forgotten (deleted, or unknown to rmcp).
    closed: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    open: HashMap<Arc<str>, Entry>,
    reserved: usize,
}

/// The registry; shared by the request path and the idle reaper.
#[derive(Debug)]
pub(super) struct Sessions {
    manager: Arc<LocalSessionManager>,
    max: usize,
    idle_timeout: Duration,
    state: Mutex<State>,
}

impl Sessions {
    /// A registry over rmcp's session `manager`.
    pub(super) fn new(
        manager: Arc<LocalSessionManager>,
        max: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            manager,
            max,
            idle_timeout,
            state: Mutex::new("mcp_sessions", State::default()),
        }
    }

    /// A slot for a session about to be opened, or `None` at the limit.
    pub(super) fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        let mut state = self.state.lock();
        if state.open.len() + state.reserved >= self.max {
            return None;
        }
        state.reserved += 1;
        Some(Reservation {
            sessions: Arc::clone(self),
            used: false,
        })
    }

    /// Marks a request of session `id` by `owner` in flight, or `None` when no
    /// such session is open for that key.
    pub(super) fn enter(self: &Arc<Self>, id: &str, owner: Option<KeyId>) -> Option<SessionUse> {
        let mut state = self.state.lock();
        let entry = state.open.get_mut(id).filter(|e| e.owner == owner)?;
        entry.in_flight += 1;
        entry.last_used = Instant::now();
        Some(SessionUse {
            sessions: Arc::clone(self),
            id: Arc::from(id),
            takes_priming: entry.takes_priming,
            closed: entry.closed.clone(),
        })
    }

    /// Forgets session `id` (deleted, or unknown to rmcp).
    pub(super) fn forget(&self, id: &str) {
        let mut state = self.state.lock();
        if let Some(entry) = state.open.remove(id) {
            entry.closed.cancel();
        }
        publish(&state);
    }

    /// Closes sessions idle past the timeout, checking a few times per timeout,
    /// until `shutdown`.
    pub(super) async fn reap_idle(self: Arc<Self>, shutdown: CancellationToken) {
        let every =
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let expired: Vec<Arc<str>> = {
                let mut state = self.state.lock();
                let expired: Vec<Arc<str>> = state
                    .open
                    .iter()
                    .filter(|(_, e)| e.in_flight == 0 && e.last_used.elapsed() >= self.idle_timeout)
                    .map(|(id, _)| Arc::clone(id))
                    .collect();
                for id in &expired {
                    state.open.remove(id);
                }
                publish(&state);
                expired
            };
            for id in expired {
                let id: SessionId = id;
                if let Err(e) = self.manager.close_session(&id).await {
                    tracing::debug!("closing an idle MCP session: {e}");
                }
            }
        }
    }
}

fn publish(state: &State) {
    metrics()
        .http_mcp_active_sessions
        .set(state.open.len() as i64);
}

/// A slot taken for a session being opened; given back on drop unless used.
#[derive(Debug)]
pub(super) struct Reservation {
    sessions: Arc<Sessions>,
    used: bool,
}

impl Reservation {
    /// The session `id` opened by `owner` now holds the slot.
    pub(super) fn open(mut self, id: &str, owner: Option<KeyId>, takes_priming: bool) {
        let mut state = self.sessions.state.lock();
        state.reserved -= 1;
        state.open.insert(
            Arc::from(id),
            Entry {
                owner,
                takes_priming,
                last_used: Instant::now(),
                in_flight: 0,
                closed: CancellationToken::new(),
            },
        );
        publish(&state);
        self.used = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            self.sessions.state.lock().reserved -= 1;
        }
    }
}

/// A request of a session in flight, until its response body is dropped.
#[derive(Debug)]
pub(super) struct SessionUse {
    sessions: Arc<Sessions>,
    id: Arc<str>,
    /// Whether the session's streams may carry SSE priming events.
    pub(super) takes_priming: bool,
    /// Cancelled when the session is forgotten.
    pub(super) closed: CancellationToken,
}

impl Drop for SessionUse {
    fn drop(&mut self) {
        let mut state = self.sessions.state.lock();
        if let Some(entry) = state.open.get_mut(&self.id) {
            entry.in_flight -= 1;
            entry.last_used = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(max: usize) -> Arc<Sessions> {
        Arc::new(Sessions::new(
            Arc::new(LocalSessionManager::default()),
            max,
            Duration::from_millis(100),
        ))
    }

    #[test]
    fn reservations_count_against_the_limit_until_released() {
        let s = sessions(2);
        let a = s.reserve().unwrap();
        let b = s.reserve().unwrap();
        assert!(s.reserve().is_none(), "two reserved of two");
        drop(a);
        let c = s.reserve().unwrap();
        b.open("one", None, true);
        c.open("two", None, true);
        assert!(s.reserve().is_none(), "two open of two");
        s.forget("one");
        assert!(s.reserve().is_some());
    }

    #[test]
    fn a_session_answers_only_its_own_key() {
        let s = sessions(4);
        s.reserve().unwrap().open("id", Some(KeyId(0)), true);
        assert!(s.enter("id", Some(KeyId(0))).is_some());
        assert!(s.enter("id", Some(KeyId(1))).is_none());
        assert!(s.enter("id", None).is_none());
        assert!(s.enter("other", Some(KeyId(0))).is_none());
    }

    #[tokio::test]
    async fn idle_sessions_close_but_busy_ones_stay() {
        let s = sessions(4);
        s.reserve().unwrap().open("idle", None, true);
        s.reserve().unwrap().open("busy", None, true);
        let busy = s.enter("busy", None).unwrap();
        let reaper = tokio::spawn(Arc::clone(&s).reap_idle(CancellationToken::new()));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s.enter("idle", None).is_none(), "idle one closed");
        assert!(s.enter("busy", None).is_some(), "busy one kept");
        drop(busy);
        reaper.abort();
    }
}
