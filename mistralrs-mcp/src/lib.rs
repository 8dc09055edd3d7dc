//! MCP on the client side of the server: connections to upstream MCP servers
//! and the forwarder that re-exports their tools, prompts and resources through
//! the server's own MCP endpoint under a namespace (`filesystem__read_file`).
//!
//! The configuration sections ([`config`]), the naming rule ([`names`]) and
//! caller scopes ([`scope`]) are always built, so the plain build reads the
//! same config file. The connections and the forwarder come with the
//! `tool-forwarding` feature; without it, [`Forwarder::start`] warns about
//! configured upstreams and forwards nothing.

pub mod config;
pub mod names;
pub mod sampling;
pub mod scope;

#[cfg(feature = "tool-forwarding")]
mod cache;
#[cfg(feature = "tool-forwarding")]
mod call_notices;
#[cfg(feature = "tool-forwarding")]
mod callers;
#[cfg(feature = "tool-forwarding")]
mod client;
#[cfg(feature = "tool-forwarding")]
mod forwarder;
#[cfg(feature = "tool-forwarding")]
mod in_order;
#[cfg(feature = "tool-forwarding")]
mod input_rounds;
#[cfg(feature = "tool-forwarding")]
mod log_relay;
#[cfg(feature = "tool-forwarding")]
mod name_table;
#[cfg(feature = "tool-forwarding")]
mod per_client;
#[cfg(feature = "tool-forwarding")]
mod policy;
#[cfg(feature = "tool-forwarding")]
mod subscriptions;
#[cfg(feature = "tool-forwarding")]
mod upstream_requests;
#[cfg(feature = "tool-forwarding")]
pub use forwarder::{CallOrigin, Forwarder, UpstreamHealth};

#[cfg(not(feature = "tool-forwarding"))]
mod forwarder_disabled;
#[cfg(not(feature = "tool-forwarding"))]
pub use forwarder_disabled::{CallOrigin, Forwarder, UpstreamHealth};

pub use scope::{CallerScope, ClientSession, SessionLife};

/// What goes wrong in talking to upstreams, by kind, so callers match on the
/// kind rather than the text; each message says what happened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[mcp_client]` or `[tool_forwarding]` section is inconsistent, or
    /// names something unusable (a key file, a header).
    #[error("{0}")]
    Config(String),
    /// An upstream could not be started or reached: the program did not start,
    /// the connection or its certificate was refused, the handshake failed.
    #[error("{0}")]
    Connect(String),
    /// An established connection failed (a list, a ping, a call).
    #[error("{0}")]
    Transport(String),
    /// An upstream did not answer within its timeout.
    #[error("{what}: no answer within {} s", .after.as_secs())]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: std::time::Duration,
    },
    /// The upstream answered with an error.
    #[error("{0}")]
    Upstream(String),
    /// The forwarding policy or the argument checks refused a call.
    #[error("{0}")]
    Policy(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;
