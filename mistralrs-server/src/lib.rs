//! mistralrs-server: the binary's pieces. `main.rs` only calls [`run`].

pub mod app;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod connections;
pub mod device;
mod guarded_body;
#[cfg(feature = "http-mcp-stream")]
pub mod http_mcp;
#[cfg(not(feature = "http-mcp-stream"))]
#[path = "http_mcp_disabled.rs"]
pub mod http_mcp;
pub mod hub;
#[cfg(feature = "tool-forwarding")]
pub mod mcp_sampling;
pub mod metrics;
pub mod model_source;
pub mod openai;
mod serve;
pub mod unread_body;

pub use serve::run;
