//! The OpenAI-compatible API: chat completions, text completions and models.

mod error;
mod respond;
mod types;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

pub use error::ApiError;
use respond::{Endpoint, respond};
use types::{ApiJson, ChatCompletionRequest, CompletionRequest};

use crate::app::AppState;

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let engine = state.router.get(body.common.model.as_deref())?;
    let request = body.common.to_request(body.prompt()?, body.logprobs())?;
    respond(
        engine,
        Endpoint::Chat,
        request,
        body.common.stream,
        body.common.include_usage(),
    )
    .await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let engine = state.router.get(body.common.model.as_deref())?;
    let request = body.common.to_request(body.prompt()?, body.logprobs)?;
    respond(
        engine,
        Endpoint::Completion,
        request,
        body.common.stream,
        body.common.include_usage(),
    )
    .await
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
