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
pub mod scope;

#[cfg(feature = "tool-forwarding")]
mod cache;
#[cfg(feature = "tool-forwarding")]
mod client;
#[cfg(feature = "tool-forwarding")]
mod forwarder;
#[cfg(feature = "tool-forwarding")]
mod policy;
#[cfg(feature = "tool-forwarding")]
pub use forwarder::{Forwarder, UpstreamHealth};

#[cfg(not(feature = "tool-forwarding"))]
mod forwarder_disabled;
#[cfg(not(feature = "tool-forwarding"))]
pub use forwarder_disabled::{Forwarder, UpstreamHealth};

pub use scope::CallerScope;

/// Why the forwarder could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `[mcp_client]` or `[tool_forwarding]` section is inconsistent.
    #[error("{0}")]
    Config(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;
