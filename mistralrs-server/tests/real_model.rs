//! The server on a real model: SmolLM2-135M-Instruct as a Q4_1 GGUF
//! (`scripts/get-model smollm2`, run by `scripts/test-all`), served by name.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{Server, post};
use serde_json::{Value, json};

/// A system message under which SmolLM2's greedy answer leads clearly at every
/// token (by 0.8 nats or more). Under "You are a helpful assistant." its first
/// token is a coin flip between "La" and "The" (0.007 apart), which rounding
/// alone decides.
const PARIS_SYSTEM: &str = "Answer in one short English sentence.";

fn chat(system: &str, user: &str) -> Value {
    json!({"model": "smollm2", "temperature": 0, "max_tokens": 24, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": user}]})
}

fn text(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn smollm2_answers_and_concurrent_streams_match_single_ones() {
    let server = Server::start_model("smollm2", &[]);
    let (status, answer) = post(
        &server,
        "/v1/chat/completions",
        &chat(PARIS_SYSTEM, "What is the capital of France?"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(text(&answer).contains("Paris"), "{answer}");
    assert_eq!(
        answer["choices"][0]["finish_reason"], "stop",
        "<|im_end|> ends the turn"
    );

    // Eight prompts with no common prefix (each system message differs early),
    // so neither run reuses another prompt's cached blocks: alone on one server,
    // all at once on a fresh one.
    let questions = [
        "What is the capital of France?",
        "Name three colors.",
        "What is 2 + 2?",
        "Write a haiku about the sea.",
        "Who wrote Hamlet?",
        "What is the largest planet?",
        "Say hello in Spanish.",
        "What do bees make?",
    ];
    let bodies: Vec<Value> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| chat(&format!("{i}: be brief."), q))
        .collect();
    let mut alone = Vec::new();
    for body in &bodies {
        let (_, answer) = post(&server, "/v1/chat/completions", body).await;
        alone.push(text(&answer));
    }
    let fresh = Server::start_model("smollm2", &[]);
    let together = futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| post(&fresh, "/v1/chat/completions", body)),
    )
    .await;
    for ((q, single), (status, answer)) in questions.iter().zip(&alone).zip(&together) {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(
            &text(answer),
            single,
            "{q}: 8 at once must give what it gives alone"
        );
    }
}

/// Requantized to q8_0, a bf16 cache sized as memory, one thread: still Paris,
/// and the cache holds as many blocks as the memory allows.
#[tokio::test]
async fn smollm2_requantized_with_a_cache_sized_in_memory() {
    let server = Server::start_model(
        "smollm2",
        &[
            "--quantize",
            "q8_0",
            "--kv-cache-dtype",
            "bf16",
            "--kv-cache-mem",
            "16MiB",
            "--threads",
            "1",
        ],
    );
    let (status, answer) = post(
        &server,
        "/v1/chat/completions",
        &chat(PARIS_SYSTEM, "What is the capital of France?"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(text(&answer).contains("Paris"), "{answer}");
    // SmolLM2-135M: 30 layers, 3 KV heads of 64; keys and values, 16 slots a
    // block, 2 bytes a value.
    let block_bytes = 2 * 30 * 16 * 3 * 64 * 2;
    let health = server.health().await;
    assert_eq!(
        health["models"][0]["kv_cache_blocks_total"],
        (16 << 20) / block_bytes,
        "{health}"
    );
}

#[test]
fn a_known_model_not_yet_downloaded_names_the_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args(["--port", "0", "run", "-m", "smollm2"])
        .env("MISTRALRS_MODELS_DIR", "/nonexistent/models")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("scripts/get-model smollm2"),
        "{err}"
    );
}
