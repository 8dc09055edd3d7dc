//! Shared helpers: the demo model in a temporary folder and engines over it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use mistralrs_core::request::{Prompt, Request};
use mistralrs_core::{EngineConfig, EngineHandle, SchedulerConfig};

/// The demo model, written once per test binary.
pub fn demo_dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        mistralrs_core::demo::write_demo_model(dir.path()).expect("demo model");
        dir
    })
    .path()
    .to_path_buf()
}

/// An engine on the demo model with `num_blocks` blocks of 16 and `max_seqs`.
pub fn engine(name: &str, num_blocks: usize, max_seqs: usize) -> EngineHandle {
    engine_with(name, num_blocks, max_seqs, 256, DType::F32)
}

/// An engine with every knob the tests turn.
pub fn engine_with(
    name: &str,
    num_blocks: usize,
    max_seqs: usize,
    max_batch_tokens: usize,
    dtype: DType,
) -> EngineHandle {
    let loaded = mistralrs_core::model::load(&demo_dir(), dtype, &Device::Cpu).expect("load demo");
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_seqs,
            max_batch_tokens,
            max_waiting: 64,
        },
        num_blocks,
        dtype,
        ..EngineConfig::default()
    };
    mistralrs_core::start(name, loaded, config).expect("engine")
}

/// A greedy request for `text` with `max_tokens`.
pub fn greedy(text: &str, max_tokens: usize) -> Request {
    let mut r = Request::new(Prompt::Text(text.to_owned()));
    r.max_tokens = Some(max_tokens);
    r.ignore_eos = true;
    r
}

/// Waits (bounded) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub const PROMPTS: [&str; 8] = [
    "The quick brown fox",
    "Once upon a time there was a small town by the sea.",
    "Hello! How are you today?",
    "fn main() { let answer = 42; }",
    "Café 東京 — ñandú",
    "Water boils at one hundred degrees.",
    "The scheduler admits a new request when enough blocks are free",
    "To be, or not to be",
];
