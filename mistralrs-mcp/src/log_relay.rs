//! Upstream log messages (`notifications/message`) relayed to the client
//! sessions that asked for logs (`logging/setLevel`), each at its own level,
//! with the upstream named in `logger` (`<server>` or `<server>/<logger>`),
//! and only to sessions whose caller may use that upstream. Upstreams are
//! asked for the most verbose level any session wants. A session that never
//! set a level gets none. A client's own upstream session (`per_client` mode)
//! logs to that client alone ([`crate::per_client`]).
// Logging is deprecated by SEP-2577 (2026-07-28) but clients still use it.
#![allow(deprecated)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mistralrs_core::sync::Mutex;
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};
use rmcp::{Peer, RoleClient, RoleServer};

use crate::scope::CallerScope;

/// MCP's levels, least severe first: a level's rank is its index.
const LEVELS: [LoggingLevel; 8] = [
    LoggingLevel::Debug,
    LoggingLevel::Info,
    LoggingLevel::Notice,
    LoggingLevel::Warning,
    LoggingLevel::Error,
    LoggingLevel::Critical,
    LoggingLevel::Alert,
    LoggingLevel::Emergency,
];

/// Rank of `level`: its index in [`LEVELS`], and its discriminant, as the
/// MCP handler stores a session's level.
fn rank(level: LoggingLevel) -> u8 {
    level as u8
}

/// The level of a stored rank; `None` while the session has not asked.
pub(crate) fn level_of(rank: u8) -> Option<LoggingLevel> {
    LEVELS.get(usize::from(rank)).copied()
}

/// Whether a message at `level` is at or above `wanted`.
pub(crate) fn at_least(level: LoggingLevel, wanted: LoggingLevel) -> bool {
    rank(level) >= rank(wanted)
}

/// Whether a session whose level rank is `wanted` takes a message at `level`.
pub(crate) fn admits(wanted: &AtomicU8, level: LoggingLevel) -> bool {
    rank(level) >= wanted.load(Ordering::Relaxed)
}

/// `message` as relayed from upstream `server`: named in `logger`
/// (`<server>` or `<server>/<logger>`).
pub(crate) fn from_upstream(
    server: &str,
    mut message: LoggingMessageNotificationParam,
) -> LoggingMessageNotificationParam {
    message.logger = Some(match message.logger.take() {
        Some(logger) => format!("{server}/{logger}"),
        None => server.to_owned(),
    });
    message
}

/// A session that asked for logs.
#[derive(Debug)]
struct Sink {
    peer: Peer<RoleServer>,
    /// The session's level rank (`u8::MAX`: none asked), shared with its handler.
    level: Arc<AtomicU8>,
    caller: Arc<CallerScope>,
}

/// `logging/setLevel` to upstream session `peer` of `server`, if it offers
/// logging; a failure is only logged (the upstream keeps its own level).
pub(crate) async fn ask_for_logs(
    server: &str,
    peer: &Peer<RoleClient>,
    level: LoggingLevel,
    timeout: Duration,
) {
    let offers_logs = peer
        .peer_info()
        .is_some_and(|info| info.capabilities.logging.is_some());
    if !offers_logs {
        return;
    }
    let asked = tokio::time::timeout(timeout, peer.set_level(SetLevelRequestParams::new(level)));
    match asked.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(server, "logging/setLevel upstream: {e}"),
        Err(_) => tracing::debug!(server, "logging/setLevel upstream: no answer in time"),
    }
}

/// The sessions log messages go to.
#[derive(Debug)]
pub(crate) struct LogRelay {
    sinks: Mutex<Vec<Sink>>,
}

impl LogRelay {
    pub(crate) fn new() -> Self {
        Self {
            sinks: Mutex::new("mcp_log_sinks", Vec::new()),
        }
    }

    /// Adds the session whose level lives in `level` (once); the most verbose
    /// level any open session wants now.
    pub(crate) fn follow(
        &self,
        peer: Peer<RoleServer>,
        level: Arc<AtomicU8>,
        caller: Arc<CallerScope>,
    ) -> Option<LoggingLevel> {
        let mut sinks = self.sinks.lock();
        sinks.retain(|s| !s.peer.is_transport_closed());
        if !sinks.iter().any(|s| Arc::ptr_eq(&s.level, &level)) {
            sinks.push(Sink {
                peer,
                level,
                caller,
            });
        }
        Self::most_verbose(&sinks)
    }

    /// The most verbose level an open session wants, if any asked.
    pub(crate) fn wanted(&self) -> Option<LoggingLevel> {
        let mut sinks = self.sinks.lock();
        sinks.retain(|s| !s.peer.is_transport_closed());
        Self::most_verbose(&sinks)
    }

    fn most_verbose(sinks: &[Sink]) -> Option<LoggingLevel> {
        let lowest = sinks
            .iter()
            .map(|s| s.level.load(Ordering::Relaxed))
            .min()?;
        level_of(lowest)
    }

    /// Sends `message` from upstream `server` to every session at or below its
    /// level that `allowed` lets use the upstream.
    pub(crate) async fn relay(
        &self,
        server: &str,
        message: LoggingMessageNotificationParam,
        allowed: impl Fn(&CallerScope) -> bool,
    ) {
        let message = from_upstream(server, message);
        let peers: Vec<Peer<RoleServer>> = self
            .sinks
            .lock()
            .iter()
            .filter(|s| admits(&s.level, message.level) && allowed(&s.caller))
            .map(|s| s.peer.clone())
            .collect();
        for peer in peers {
            // A session that went away just misses the message.
            let _ = peer.notify_logging_message(message.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_severity() {
        for (i, level) in LEVELS.iter().enumerate() {
            assert_eq!(usize::from(rank(*level)), i, "{level:?}");
        }
    }
}
