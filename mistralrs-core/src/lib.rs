//! The inference engine: a llama-family model on candle over a paged KV cache,
//! continuous batching, sampling, and a router that serves several models by name.
//!
//! Nothing here knows about HTTP or MCP; the server crate drives engines through
//! [`Router`], [`EngineHandle`] and the types of [`request`].

pub mod chat_template;
pub mod constraint;
pub mod demo;
mod device_memory;
mod engine;
mod error;
pub mod metrics;
pub mod model;
pub mod request;
mod router;
pub mod sampling;
mod scheduler;
mod sequence;
pub mod sync;
pub mod tokenizer;

pub use device_memory::DeviceMemory;
pub use engine::{
    EngineConfig, EngineHandle, MAX_STOP_STRINGS, ModelInfo, Output, RequestStream, start,
};
pub use error::{Error, Result};
pub use mistralrs_paged_attn::KvDtype;
pub use router::Router;
pub use scheduler::{SchedulerConfig, SchedulerStats};
