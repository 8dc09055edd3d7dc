//! The HTTP application on the main port: routes, shared state, limits.

use std::sync::Arc;

use axum::Router as HttpRouter;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, response::IntoResponse};
use mistralrs_core::Router;
use mistralrs_mcp::Forwarder;
use serde_json::{Value, json};

use crate::openai::tool_loop::McpToolDefaults;
use crate::openai::tools::ToolParser;
use crate::openai::{self, ApiError};
use crate::{metrics, unread_body};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Engines by model name.
    pub router: Arc<Router>,
    /// Start time, reported as the models' `created`.
    pub started_unix: u64,
    /// Upstream MCP servers, when tools are forwarded.
    pub forwarder: Option<Arc<Forwarder>>,
    /// The tool-call format set for every model (`--tool-parser`).
    pub tool_parser: Option<ToolParser>,
    /// Forwarded tools each model is offered when a request names none.
    pub mcp_tool_defaults: Arc<McpToolDefaults>,
    /// The MCP port's shared rate limiter (Redis), for `/health`.
    pub rate_limit_health: Option<HealthSection>,
}

/// A part of `/health` that another component reports (read at each request).
pub struct HealthSection(pub Box<dyn Fn() -> Value + Send + Sync>);

impl std::fmt::Debug for HealthSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthSection")
    }
}

/// The main port's routes: the OpenAI API, `/health` and the metrics endpoint
/// (at `metrics_path`), with a body size limit.
pub fn app(state: Arc<AppState>, max_body_bytes: usize, metrics_path: &str) -> HttpRouter {
    HttpRouter::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/health", get(health))
        .fallback(|| async { ApiError::not_found("no such path") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn(metrics::count_requests))
        .route(metrics_path, get(metrics::render))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            unread_body::close_after_unread_body,
        ))
        .with_state(state)
}

/// `GET /health`: liveness plus each engine's queues and KV cache, each
/// upstream MCP server's state and the shared rate limiter's. `status` stays
/// `ok` while an upstream or Redis is down: the server itself serves, and the
/// entry says what is wrong.
async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let models: Vec<Value> = state
        .router
        .engines()
        .iter()
        .map(|engine| {
            let stats = engine.stats();
            json!({
                "name": engine.info().name,
                "running": stats.running,
                "waiting": stats.waiting,
                "kv_cache_blocks_free": stats.blocks.free,
                "kv_cache_blocks_total": stats.blocks.total,
                "prefix_cache_hits": stats.blocks.prefix_hits,
                "preemptions": stats.preemptions,
                "memory": {
                    "weights_bytes": engine.info().weight_bytes,
                    "kv_cache_bytes": engine.info().kv_cache_bytes,
                },
            })
        })
        .collect();
    let upstreams = state
        .forwarder
        .as_ref()
        .map(|forwarder| forwarder.health())
        .unwrap_or_default();
    // What the models do not account for: runtime, tokenizers, buffers, and
    // (until their pages are first written) minus the untouched KV blocks.
    let resident = mistralrs_core::metrics::resident_memory_bytes();
    let accounted: usize = state
        .router
        .engines()
        .iter()
        .map(|e| e.info().weight_bytes + e.info().kv_cache_bytes)
        .sum();
    let memory = json!({
        "resident_bytes": resident,
        "other_bytes": resident.map(|r| (r as i64 - accounted as i64).max(0)),
    });
    let mut health =
        json!({"status": "ok", "models": models, "memory": memory, "mcp_upstreams": upstreams});
    if let Some(section) = &state.rate_limit_health {
        health["rate_limit"] = (section.0)();
    }
    Json(health)
}
