//! SSE priming events (an event with an empty `data:` that carries an id and a
//! retry hint, SEP-1699) kept from sessions older than 2025-11-25, the version
//! that introduced them: older clients read the empty data as a message and
//! fail (the TypeScript, Python and Go SDKs stopped sending it to them). rmcp
//! sends one at the start of every stream whatever the version, so the front
//! door strips them from the streams of older sessions.

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use rmcp::model::ProtocolVersion;

/// Whether a session that asked for `version` at `initialize` takes priming
/// events: it negotiated 2025-11-25 or later (an unknown version gets the
/// server's latest).
pub(super) fn takes_priming(version: Option<&str>) -> bool {
    match version {
        Some(asked)
            if ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .any(|v| v.as_str() == asked) =>
        {
            asked >= ProtocolVersion::V_2025_11_25.as_str()
        }
        _ => true,
    }
}

/// `body` without its priming events.
pub(super) fn strip(body: Body) -> Body {
    Body::new(body.map_frame(|frame| frame.map_data(strip_events)))
}

/// The events of one SSE chunk, priming events left out. rmcp writes each
/// event as one chunk; a chunk that does not end an event passes unchanged.
fn strip_events(chunk: Bytes) -> Bytes {
    let Ok(text) = std::str::from_utf8(&chunk) else {
        return chunk;
    };
    if !text.ends_with("\n\n") || !text.lines().any(|l| l.starts_with("data:")) {
        return chunk;
    }
    let kept: Vec<&str> = text
        .split_inclusive("\n\n")
        .filter(|event| !is_priming(event))
        .collect();
    Bytes::from(kept.concat())
}

/// An event whose data lines are all empty.
fn is_priming(event: &str) -> bool {
    let mut data = event.lines().filter_map(|l| l.strip_prefix("data:"));
    let mut any = false;
    let all_empty = data.all(|d| {
        any = true;
        d.trim().is_empty()
    });
    any && all_empty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priming_events_go_and_everything_else_stays() {
        let chunk = Bytes::from_static(b"id: 0\nretry: 3000\ndata:\n\n");
        assert_eq!(strip_events(chunk), Bytes::new());
        let message = Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\"}\nid: 1\n\n");
        assert_eq!(strip_events(message.clone()), message);
        let both = Bytes::from_static(b"data: \nid: 0\n\ndata: {}\n\n");
        assert_eq!(strip_events(both), Bytes::from_static(b"data: {}\n\n"));
        let keep_alive = Bytes::from_static(b":\n\n");
        assert_eq!(strip_events(keep_alive.clone()), keep_alive);
        let partial = Bytes::from_static(b"data:\n");
        assert_eq!(strip_events(partial.clone()), partial);
    }

    #[test]
    fn only_sessions_older_than_2025_11_25_lose_them() {
        assert!(!takes_priming(Some("2024-11-05")));
        assert!(!takes_priming(Some("2025-03-26")));
        assert!(!takes_priming(Some("2025-06-18")));
        assert!(takes_priming(Some("2025-11-25")));
        assert!(
            takes_priming(Some("2099-01-01")),
            "unknown: the server's latest"
        );
        assert!(takes_priming(None));
    }
}
