//! Decode throughput on the demo model at 1, 4 and 8 concurrent sequences.
//!
//! `cargo bench -p mistralrs-core --bench decode_throughput`. Each iteration runs
//! N greedy requests of 64 generated tokens (short prompts, so decode dominates);
//! criterion reports generated tokens per second.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mistralrs_core::model::LoadOptions;
use mistralrs_core::request::{Prompt, Request};
use mistralrs_core::{EngineConfig, EngineHandle};

const NEW_TOKENS: usize = 64;

fn engine(dir: &std::path::Path) -> EngineHandle {
    let loaded = mistralrs_core::model::load(dir, &LoadOptions::default()).unwrap();
    mistralrs_core::start("demo", loaded, EngineConfig::default()).unwrap()
}

async fn run_batch(engine: &EngineHandle, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut r = Request::new(Prompt::Text(format!("Request number {i} says hello")));
            (r.max_tokens, r.ignore_eos) = (Some(NEW_TOKENS), true);
            let e = engine.clone();
            tokio::spawn(async move { e.generate(r).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().tokens.len(), NEW_TOKENS);
    }
}

fn decode_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    mistralrs_core::demo::write_demo_model(dir.path()).unwrap();
    let engine = engine(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("decode_throughput");
    group.sample_size(10);
    for n in [1, 4, 8] {
        group.throughput(Throughput::Elements((n * NEW_TOKENS) as u64));
        group.bench_function(format!("{n}_seqs"), |b| {
            b.iter(|| rt.block_on(run_batch(&engine, n)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode_throughput);
criterion_main!(benches);
