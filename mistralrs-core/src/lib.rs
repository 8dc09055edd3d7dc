//! The inference engine: a llama-family model on candle over a paged KV cache,
//! continuous batching, sampling, and a router that serves several models by name.
//!
//! Nothing here knows about HTTP or MCP; the server crate drives the engine through
//! [`Router`] and the request types of [`request`].

pub mod chat_template;
pub mod demo;
mod error;
pub mod model;
pub mod sync;
pub mod tokenizer;

pub use error::{Error, Result};
