//! `/metrics` on the main port, and the per-request counter every route feeds.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mistralrs_core::metrics::{RequestLabels, metrics};

use crate::openai::ServedModel;

/// Prometheus text exposition of every series of the process.
pub async fn render() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics().render(),
    )
}

/// Counts each request in `requests_total{model,endpoint,status}`. The endpoint
/// label comes from a fixed list, never from the raw path.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let endpoint = endpoint_label(request.uri().path());
    let response = next.run(request).await;
    let model = response
        .extensions()
        .get::<ServedModel>()
        .map_or("", |m| m.0.as_str());
    metrics()
        .requests_total
        .get(&RequestLabels {
            model,
            endpoint,
            status: response.status().as_str(),
        })
        .inc();
    response
}

fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/v1/models" => "models",
        "/health" => "health",
        _ => "other",
    }
}
