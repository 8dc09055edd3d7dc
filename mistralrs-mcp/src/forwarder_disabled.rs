//! The forwarder when the `tool-forwarding` feature is off: nothing is
//! forwarded, and configured upstreams are reported once as ignored.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Prompt, ReadResourceRequestParams,
    ReadResourceResponse, Resource, ResourceTemplate, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer};
use serde::Serialize;

use crate::Result;
use crate::config::{McpClientConfig, ToolForwardingConfig};
use crate::scope::{CallerScope, SessionLife};

/// How one upstream stands; never produced in this build.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamHealth {
    /// The server's configured name.
    pub name: String,
}

/// Who a forwarded call answers to; nothing is forwarded in this build.
#[derive(Debug)]
pub struct CallOrigin;

impl CallOrigin {
    /// An MCP client's call.
    pub fn client(
        _context: &RequestContext<RoleServer>,
        _log_level: &Arc<std::sync::atomic::AtomicU8>,
    ) -> Self {
        Self
    }

    /// A call the served model makes.
    pub fn model(_cancel: tokio_util::sync::CancellationToken) -> Self {
        Self
    }
}

/// Uninhabited: [`Forwarder::start`] always returns `None`.
#[derive(Debug)]
pub enum Forwarder {}

impl Forwarder {
    /// Warns when upstreams are configured; forwards nothing.
    pub async fn start(
        client: &McpClientConfig,
        forwarding: &ToolForwardingConfig,
        _sampler: Option<Arc<dyn crate::sampling::LocalSampler>>,
    ) -> Result<Option<Arc<Self>>> {
        if forwarding.enabled && !client.active_servers().is_empty() {
            tracing::warn!(
                "[mcp_client] servers are configured but this build has no `tool-forwarding` feature: they are ignored"
            );
        }
        Ok(None)
    }

    /// Never called.
    pub async fn shutdown(&self) {
        match *self {}
    }

    /// Never called.
    pub fn health(&self) -> Vec<UpstreamHealth> {
        match *self {}
    }

    /// Never called.
    pub fn owns(&self, _name: &str) -> bool {
        match *self {}
    }

    /// Never called.
    pub fn namespace_of(&self, _name: &str) -> Option<String> {
        match *self {}
    }

    /// Never called.
    pub async fn call_for_model(
        &self,
        _caller: &CallerScope,
        _name: &str,
        _arguments: serde_json::Map<String, serde_json::Value>,
        _cancel: tokio_util::sync::CancellationToken,
    ) -> (String, bool) {
        match *self {}
    }

    /// Never called.
    pub fn subscribe(&self, _peer: Peer<RoleServer>) {
        match *self {}
    }

    /// Never called.
    pub fn list_tools(&self, _caller: &CallerScope) -> Vec<Tool> {
        match *self {}
    }

    /// Never called.
    pub fn get_tool(&self, _name: &str) -> Option<Tool> {
        match *self {}
    }

    /// Never called.
    pub async fn call_tool(
        self: &Arc<Self>,
        _caller: &CallerScope,
        _request: CallToolRequestParams,
        _origin: CallOrigin,
    ) -> std::result::Result<CallToolResponse, McpError> {
        match **self {}
    }

    /// Never called.
    pub fn list_prompts(&self, _caller: &CallerScope) -> Vec<Prompt> {
        match *self {}
    }

    /// Never called.
    pub async fn get_prompt(
        &self,
        _caller: &CallerScope,
        _request: GetPromptRequestParams,
    ) -> std::result::Result<GetPromptResponse, McpError> {
        match *self {}
    }

    /// Never called.
    pub async fn follow_logs(
        &self,
        _peer: Peer<RoleServer>,
        _level: Arc<std::sync::atomic::AtomicU8>,
        _caller: Arc<CallerScope>,
        _session: Option<&SessionLife>,
    ) {
        match *self {}
    }

    /// Never called.
    pub async fn listen(
        self: &Arc<Self>,
        _caller: &CallerScope,
        _subscription: rmcp::service::SubscriptionContext,
    ) -> std::result::Result<(), McpError> {
        match **self {}
    }

    /// Never called.
    pub async fn subscribe_resource(
        &self,
        _caller: &CallerScope,
        _session: &Arc<crate::ClientSession>,
        _peer: Peer<RoleServer>,
        _uri: String,
    ) -> std::result::Result<(), McpError> {
        match *self {}
    }

    /// Never called.
    pub async fn unsubscribe_resource(&self, _session: &Arc<crate::ClientSession>, _uri: &str) {
        match *self {}
    }

    /// Never called.
    pub async fn complete(
        &self,
        _caller: &CallerScope,
        _request: CompleteRequestParams,
    ) -> std::result::Result<CompleteResult, McpError> {
        match *self {}
    }

    /// Never called.
    pub fn list_resources(&self, _caller: &CallerScope) -> Vec<Resource> {
        match *self {}
    }

    /// Never called.
    pub fn list_resource_templates(&self, _caller: &CallerScope) -> Vec<ResourceTemplate> {
        match *self {}
    }

    /// Never called.
    pub async fn read_resource(
        &self,
        _caller: &CallerScope,
        _request: ReadResourceRequestParams,
    ) -> std::result::Result<ReadResourceResponse, McpError> {
        match *self {}
    }
}
