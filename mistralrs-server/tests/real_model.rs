//! The server on a real model: SmolLM2-135M-Instruct as a Q4_1 GGUF
//! (`scripts/get-model smollm2`, run by `scripts/test-all`), served by name.
//!
//! Runs in the default build only: the plain build (`--no-default-features`)
//! differs in its locks, not in model code, and these minutes of numerics
//! would repeat what the default build already checked.
#![cfg(feature = "prometheus-locks")]
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

/// Asks for the capital of France and checks the answer names Paris; the answer.
async fn answers_paris(server: &Server) -> Value {
    let (status, answer) = post(
        server,
        "/v1/chat/completions",
        &chat(PARIS_SYSTEM, "What is the capital of France?"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(text(&answer).contains("Paris"), "{answer}");
    answer
}

#[tokio::test]
async fn smollm2_answers_and_concurrent_streams_match_single_ones() {
    let server = Server::start_model("smollm2", &[]);
    let answer = answers_paris(&server).await;
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
    answers_paris(&server).await;
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

/// A q8_0 KV cache (34 bytes per 32 values) sized as memory: still Paris, and
/// the memory holds as many blocks as 34-byte blocks of values allow.
#[tokio::test]
async fn smollm2_with_a_q8_0_kv_cache() {
    let server = Server::start_model(
        "smollm2",
        &["--kv-cache-dtype", "q8_0", "--kv-cache-mem", "16MiB"],
    );
    answers_paris(&server).await;
    // 30 layers, keys and values, 16 slots a block, 3 * 64 values a slot.
    let block_bytes = 2 * 30 * 16 * (3 * 64 / 32 * 34);
    let health = server.health().await;
    assert_eq!(
        health["models"][0]["kv_cache_blocks_total"],
        (16 << 20) / block_bytes,
        "{health}"
    );
    assert_eq!(
        health["models"][0]["memory"]["kv_cache_bytes"],
        (16 << 20) / block_bytes * block_bytes,
        "{health}"
    );
}

/// After a warm-up that writes every KV block, 20 identical rounds leave the
/// resident memory within 5 % of where the warm-up left it; /health and
/// /metrics account for it by part.
#[tokio::test]
async fn memory_holds_steady_and_is_reported_by_part() {
    // 32 blocks of 16: 512 slots, filled by the warm-up's distinct prompts.
    let server = Server::start_model("smollm2", &["--kv-cache-blocks", "32"]);
    let round = |salt: usize| {
        let server = &server;
        async move {
            let bodies: Vec<Value> = (0..4)
                .map(|i| {
                    json!({"model": "smollm2", "temperature": 0, "max_tokens": 16,
                           "ignore_eos": true, "messages": [{"role": "user",
                           "content": format!("{salt} {i}: count slowly from one to fifty.")}]})
                })
                .collect();
            for (status, answer) in futures_util::future::join_all(
                bodies
                    .iter()
                    .map(|b| post(server, "/v1/chat/completions", b)),
            )
            .await
            {
                assert_eq!(status, 200, "{answer}");
            }
        }
    };
    for salt in 0..12 {
        round(salt).await;
    }
    let health = server.health().await;
    let free = health["models"][0]["kv_cache_blocks_free"]
        .as_u64()
        .unwrap();
    assert_eq!(free, 32, "every block is free again (cached): {health}");
    let after_warm_up = server.memory_bytes("VmRSS");
    let mut highest = after_warm_up;
    for _ in 0..20 {
        round(1000).await;
        highest = highest.max(server.memory_bytes("VmRSS"));
    }
    let growth = highest as f64 / after_warm_up as f64 - 1.0;
    eprintln!(
        "RSS after warm-up {} MiB, highest over 20 rounds {} MiB ({:+.1} %)",
        after_warm_up >> 20,
        highest >> 20,
        growth * 100.0
    );
    assert!(growth < 0.05, "RSS grew {:.1} %", growth * 100.0);

    let health = server.health().await;
    let memory = &health["models"][0]["memory"];
    let weights = memory["weights_bytes"].as_u64().unwrap();
    let kv = memory["kv_cache_bytes"].as_u64().unwrap();
    // SmolLM2-135M as Q4_1: projections 24 bytes per 32 weights in memory
    // (80 MB), the Q8_0 embedding as stored (30 MB), the tied head on the same
    // bytes or, on AVX-512 VNNI, in our Q8_0 tiles (30 MB more). The embedding
    // in f32 would add 83 MB more.
    assert!((100 << 20..150 << 20).contains(&weights), "{health}");
    // 30 layers, 3 KV heads of 64, keys and values, 32 blocks of 16, f16.
    assert_eq!(kv, 2 * 30 * 3 * 64 * 32 * 16 * 2, "{health}");
    let resident = health["memory"]["resident_bytes"].as_u64().unwrap();
    assert!(resident > weights, "{health}");
    let metrics = server.metrics().await;
    for series in [
        format!("mistralrs_model_weight_bytes{{model=\"smollm2\"}} {weights}"),
        format!("mistralrs_kv_cache_bytes{{model=\"smollm2\"}} {kv}"),
    ] {
        assert!(metrics.contains(&series), "{series} missing");
    }
    assert!(metrics.contains("mistralrs_process_resident_memory_bytes "));
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
