//! The cost of constrained decoding, llguidance (used) against outlines-core
//! (considered), on SmolLM2's 49,152-token vocabulary (the demo's small one
//! when `scripts/get-model smollm2` has not run):
//!
//! - `compile`: turning one JSON schema into a grammar for a request;
//! - `mask_per_token`: each token's allowed set applied to the logits and the
//!   grammar moved past the token, along a fixed valid answer.
//!
//! `cargo bench -p mistralrs-core --bench constrained_decoding`
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mistralrs_core::constraint::{Grammars, OutputConstraint};
use mistralrs_core::model::{LoadOptions, LoadedModel};
use outlines_core::prelude::{Index, Vocabulary};
use serde_json::{Value, json};
use toktrie_hf_tokenizers::ByteTokenizer;

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "population": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
            "capital": {"type": "boolean"}
        },
        "required": ["city", "population", "tags", "capital"],
        "additionalProperties": false
    })
}

/// A valid answer, as the compact form both engines accept.
const ANSWER: &str =
    r#"{"city":"Paris","population":2102650,"tags":["river","museums","cafes"],"capital":true}"#;

fn model() -> (String, LoadedModel, tempfile::TempDir) {
    let gguf = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let demo = tempfile::tempdir().unwrap();
    let (name, path) = if gguf.exists() {
        ("smollm2", gguf)
    } else {
        mistralrs_core::demo::write_demo_model(demo.path()).unwrap();
        ("demo", demo.path().to_path_buf())
    };
    let loaded = mistralrs_core::model::load(&path, &LoadOptions::default()).unwrap();
    (name.to_owned(), loaded, demo)
}

/// outlines-core's vocabulary: every non-special token's bytes.
fn outlines_vocabulary(loaded: &LoadedModel) -> Vocabulary {
    let bytes = ByteTokenizer::from_tokenizer(loaded.tokenizer.hf().clone()).unwrap();
    let eos = loaded.eos_token_ids[0];
    let mut vocabulary = Vocabulary::new(eos);
    for (id, token) in bytes.token_bytes().into_iter().enumerate() {
        let special = token.first() == Some(&0xff);
        if id as u32 != eos && !special && !token.is_empty() {
            vocabulary.try_insert(token, id as u32).unwrap();
        }
    }
    vocabulary
}

fn constrained_decoding(c: &mut Criterion) {
    let (name, loaded, _demo) = model();
    let vocab_size = loaded.tokenizer.vocab_size();
    let grammars = Grammars::new(&loaded.tokenizer, vocab_size, &loaded.eos_token_ids).unwrap();
    let vocabulary = outlines_vocabulary(&loaded);
    let regex = outlines_core::json_schema::regex_from_value(&schema(), Some(""), None).unwrap();
    let answer = loaded.tokenizer.encode(ANSWER, false).unwrap();
    let constraint = OutputConstraint::JsonSchema(schema());

    let mut group = c.benchmark_group(format!("compile/{name}"));
    group.sample_size(10);
    group.bench_function("llguidance", |b| {
        b.iter(|| grammars.compile(&constraint).unwrap())
    });
    group.bench_function("outlines-core", |b| {
        b.iter(|| Index::new(&regex, &vocabulary).unwrap())
    });
    group.finish();

    let index = Index::new(&regex, &vocabulary).unwrap();
    let mut group = c.benchmark_group(format!("mask_per_token/{name}"));
    group.throughput(Throughput::Elements(answer.len() as u64));
    let mut logits = vec![0.0f32; vocab_size];
    group.bench_function("llguidance", |b| {
        b.iter_batched(
            || grammars.compile(&constraint).unwrap(),
            |mut output| {
                for &token in &answer {
                    output.mask(&mut logits).unwrap();
                    output.accept(token).unwrap();
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("outlines-core", |b| {
        b.iter(|| {
            let mut state = index.initial_state();
            for &token in &answer {
                logits.fill(f32::NEG_INFINITY);
                for &allowed in index.allowed_tokens_iter(&state).unwrap() {
                    logits[allowed as usize] = 0.0;
                }
                state = index.next_state(&state, &token).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, constrained_decoding);
criterion_main!(benches);
