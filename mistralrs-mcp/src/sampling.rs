//! Answering an upstream's `sampling/createMessage` with a served model
//! (`[[mcp_client.servers]] sampling = "local"`). The server crate, which runs
//! the models, provides the [`LocalSampler`]; this crate only routes to it.
// Sampling is deprecated by SEP-2577 (2026-07-28); upstreams still ask for it.
#![allow(deprecated)]

use std::future::Future;
use std::pin::Pin;

use rmcp::ErrorData as McpError;
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult};

/// A sampling answer on its way.
pub type SamplingFuture =
    Pin<Box<dyn Future<Output = Result<CreateMessageResult, McpError>> + Send>>;

/// Runs an upstream's sampling request on a served model.
pub trait LocalSampler: Send + Sync + std::fmt::Debug {
    /// The model's answer to `request` from upstream `server`.
    fn create_message(&self, server: &str, request: CreateMessageRequestParams) -> SamplingFuture;
}
