//! The OpenAI-compatible API: chat completions, text completions and models.

mod error;
mod respond;
pub mod tool_loop;
pub mod tools;
mod types;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use error::ApiError;
use respond::{Endpoint, respond};
use types::{ApiJson, CompletionRequest};
pub use types::{ChatCompletionRequest, McpSelection};

use crate::app::AppState;
use mistralrs_mcp::CallerScope;
use tool_loop::{McpToolset, ToolLoop};

/// The served model that answered a request, for the `model` label of
/// `requests_total` (set on the response; absent when no served model matched).
#[derive(Debug, Clone)]
pub struct ServedModel(pub String);

/// Attaches the model's name to whatever the handler answered.
fn labelled(model: String, result: Result<Response, ApiError>) -> Response {
    let mut response = result.into_response();
    response.extensions_mut().insert(ServedModel(model));
    response
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    ApiJson(mut body): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let engine = state.router.get(body.common.model.as_deref())?;
    let model = engine.info().name.clone();
    let served = model.clone();
    let result = async {
        // The OpenAI port has no API keys: its callers are unscoped, and the
        // global policy of [tool_forwarding] applies.
        let caller = CallerScope::unscoped();
        let selection = state.mcp_tool_defaults.apply(
            &served,
            body.take_mcp_selection()?,
            state.forwarder.as_ref(),
            &caller,
        );
        if !selection.is_empty() {
            let toolset = McpToolset::resolve(
                state.forwarder.as_ref(),
                caller,
                &selection.names,
                &selection.servers,
            )?;
            let (streaming, include_usage) = (body.common.stream, body.common.include_usage());
            let tool_loop = ToolLoop {
                engine,
                body,
                parser: state.tool_parser,
                toolset,
                max_rounds: selection.max_rounds,
            };
            return tool_loop::respond(tool_loop, streaming, include_usage).await;
        }
        let (request, parser) =
            body.engine_request(engine.info(), state.tool_parser, body.logprobs())?;
        let common = &body.common;
        respond(
            engine,
            Endpoint::Chat { tools: parser },
            request,
            common.stream,
            common.include_usage(),
        )
        .await
    };
    Ok(labelled(model, result.await))
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let engine = state.router.get(body.common.model.as_deref())?;
    let model = engine.info().name.clone();
    let result = async {
        let request = body.common.to_request(body.prompt()?, body.logprobs)?;
        let common = &body.common;
        respond(
            engine,
            Endpoint::Completion,
            request,
            common.stream,
            common.include_usage(),
        )
        .await
    };
    Ok(labelled(model, result.await))
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .router
        .names()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": state.started_unix, "owned_by": "mistralrs"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}
