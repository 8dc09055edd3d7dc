//! Upstream log messages (`notifications/message`) relayed to the client
//! sessions that asked for logs (`logging/setLevel`), each at its own level,
//! with the upstream named in `logger` (`<server>` or `<server>/<logger>`),
//! and only to sessions whose caller may use that upstream. Upstreams are
//! asked for the most verbose level any session wants. A session that never
//! set a level gets none.
// Logging is deprecated by SEP-2577 (2026-07-28) but clients still use it.
#![allow(deprecated)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use mistralrs_core::sync::Mutex;
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::{Peer, RoleServer};

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

/// A session that asked for logs.
#[derive(Debug)]
struct Sink {
    peer: Peer<RoleServer>,
    /// The session's level rank (`u8::MAX`: none asked), shared with its handler.
    level: Arc<AtomicU8>,
    caller: Arc<CallerScope>,
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
        LEVELS.get(usize::from(lowest)).copied()
    }

    /// Sends `message` from upstream `server` to every session at or below its
    /// level that `allowed` lets use the upstream.
    pub(crate) async fn relay(
        &self,
        server: &str,
        mut message: LoggingMessageNotificationParam,
        allowed: impl Fn(&CallerScope) -> bool,
    ) {
        message.logger = Some(match message.logger.take() {
            Some(logger) => format!("{server}/{logger}"),
            None => server.to_owned(),
        });
        let severity = rank(message.level);
        let peers: Vec<Peer<RoleServer>> = self
            .sinks
            .lock()
            .iter()
            .filter(|s| severity >= s.level.load(Ordering::Relaxed) && allowed(&s.caller))
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
