//! Upstream MCP servers' `sampling/createMessage` answered by a served model
//! (`[[mcp_client.servers]] sampling = "local"`): the request's messages and
//! system prompt become a chat for the model `modelPreferences.hints` names (a
//! hint matching part of a served model's name, else the default model), with
//! its `maxTokens` (clamped to the model's context, and said so in the
//! result's `_meta`), `temperature` and `stopSequences`. Counted in
//! `tool_sampling_total{source="local"}`.
// Sampling is deprecated by SEP-2577 (2026-07-28); upstreams still ask for it.
#![allow(deprecated)]

use std::sync::Arc;

use mistralrs_core::metrics::{SourceLabel, metrics};
use mistralrs_core::request::FinishReason;
use mistralrs_core::{EngineHandle, Router};
use mistralrs_mcp::sampling::{LocalSampler, SamplingFuture};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CreateMessageRequestParams, CreateMessageResult, ModelPreferences, Role, SamplingContent,
    SamplingMessage, SamplingMessageContentBlock,
};
use serde_json::{Value, json};

use crate::openai::ChatCompletionRequest;

/// Runs sampling requests on the router's models.
#[derive(Debug)]
pub struct EngineSampler {
    router: Arc<Router>,
}

impl EngineSampler {
    /// A sampler over `router`'s models.
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }
}

impl LocalSampler for EngineSampler {
    fn create_message(&self, server: &str, request: CreateMessageRequestParams) -> SamplingFuture {
        let router = Arc::clone(&self.router);
        let server = server.to_owned();
        Box::pin(async move { sample(&router, &server, request).await })
    }
}

/// The served model the preferences' hints name, else the default one.
fn choose(
    router: &Router,
    preferences: Option<&ModelPreferences>,
) -> Result<EngineHandle, McpError> {
    let hints = preferences
        .and_then(|p| p.hints.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|h| h.name.as_deref());
    let names = router.names();
    let named = hints
        .flat_map(|hint| {
            let hint = hint.to_lowercase();
            names
                .iter()
                .filter(move |name| name.to_lowercase().contains(&hint))
        })
        .next();
    router
        .get(named.map(String::as_str))
        .map_err(|e| McpError::internal_error(e.to_string(), None))
}

/// A sampling message as a chat message: text only (a local model reads no
/// images, audio or tool blocks).
fn chat_message(message: &SamplingMessage) -> Result<Value, McpError> {
    let blocks: Vec<&SamplingMessageContentBlock> = match &message.content {
        SamplingContent::Single(block) => vec![block],
        SamplingContent::Multiple(blocks) => blocks.iter().collect(),
    };
    let mut text = String::new();
    for block in blocks {
        match block {
            SamplingMessageContentBlock::Text(t) => text.push_str(&t.text),
            _ => {
                return Err(McpError::invalid_params(
                    "a local model samples text only; this message holds another kind of content",
                    None,
                ));
            }
        }
    }
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    Ok(json!({"role": role, "content": text}))
}

async fn sample(
    router: &Router,
    server: &str,
    request: CreateMessageRequestParams,
) -> Result<CreateMessageResult, McpError> {
    let engine = choose(router, request.model_preferences.as_ref())?;
    let info = engine.info();
    let mut messages = Vec::new();
    if let Some(system) = &request.system_prompt {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        messages.push(chat_message(message)?);
    }
    let asked = request.max_tokens as usize;
    let max_tokens = asked.min(info.max_model_len);
    if max_tokens < asked {
        tracing::warn!(
            server,
            asked,
            max_tokens,
            "sampling maxTokens clamped to the model's context"
        );
    }
    let body = json!({
        "model": info.name,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": request.temperature,
        "stop": request.stop_sequences,
    });
    let body: ChatCompletionRequest = serde_json::from_value(body)
        .map_err(|e| McpError::invalid_params(format!("sampling request: {e}"), None))?;
    let (engine_request, _) = body
        .engine_request(info, None, None)
        .map_err(|e| McpError::invalid_params(e.message().to_owned(), None))?;
    let output = engine
        .generate(engine_request)
        .await
        .map_err(|e| McpError::internal_error(format!("sampling on `{}`: {e}", info.name), None))?;
    metrics()
        .tool_sampling
        .get(&SourceLabel { source: "local" })
        .inc();
    let stop_reason = match output.completion.map(|c| c.finish_reason) {
        Some(FinishReason::Length) => "maxTokens",
        _ => "endTurn",
    };
    let mut message = SamplingMessage::assistant_text(output.text);
    if max_tokens < asked {
        let mut meta = serde_json::Map::new();
        meta.insert(
            "mistralrs/maxTokensClamped".into(),
            json!({"asked": asked, "used": max_tokens}),
        );
        message.meta = Some(rmcp::model::MetaObject(meta));
    }
    let mut result = CreateMessageResult::new(message, info.name.clone());
    result.stop_reason = Some(stop_reason.to_owned());
    Ok(result)
}
