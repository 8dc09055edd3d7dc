//! Shared helpers: the demo model in a temporary folder and engines over it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use candle_core::Device;
use mistralrs_core::model::{BatchInput, FloatType, Llama, LoadOptions, SeqChunk};
use mistralrs_core::request::{Prompt, Request};
use mistralrs_core::{EngineConfig, EngineHandle, SchedulerConfig};
use mistralrs_paged_attn::{BlockManager, KvCache, KvDtype};

pub mod qwen2_gguf;
pub mod requantize;

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
    engine_with(name, num_blocks, max_seqs, 256, FloatType::F32)
}

/// An engine with every knob the tests turn.
pub fn engine_with(
    name: &str,
    num_blocks: usize,
    max_seqs: usize,
    max_batch_tokens: usize,
    dtype: FloatType,
) -> EngineHandle {
    let loaded = mistralrs_core::model::load(&demo_dir(), &LoadOptions::with_dtype(dtype))
        .expect("load demo");
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_seqs,
            max_batch_tokens,
            max_waiting: 64,
        },
        num_blocks,
        cache_dtype: dtype.kv_dtype(),
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

/// The index of the largest value.
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// One sequence run through the model over a paged cache, chunk by chunk.
pub struct Runner {
    model: Llama,
    cache: KvCache,
    blocks: BlockManager,
    tokens: Vec<u32>,
}

impl Runner {
    pub fn new(model: Llama) -> Self {
        Self::with_cache_dtype(model, KvDtype::F32)
    }

    /// A runner whose KV cache holds `dtype` values.
    pub fn with_cache_dtype(model: Llama, dtype: KvDtype) -> Self {
        let shape = model.cache_shape(128, 4);
        let cache = KvCache::new(shape, dtype, &Device::Cpu).unwrap();
        let blocks = BlockManager::new(128, 4);
        Self {
            model,
            cache,
            blocks,
            tokens: Vec::new(),
        }
    }

    /// Feeds `new` tokens and returns the logits after the last one.
    pub fn feed(&mut self, new: &[u32]) -> Vec<f32> {
        let first = self.tokens.len();
        self.tokens.extend_from_slice(new);
        if first == 0 {
            self.blocks.allocate(1, &self.tokens).unwrap();
        }
        self.blocks
            .prepare_write(1, first, self.tokens.len())
            .unwrap();
        let slots = self.blocks.slots(1, 0, self.tokens.len()).unwrap();
        let chunk = SeqChunk {
            tokens: new,
            first_pos: first,
            context_slots: &slots,
            wants_logits: true,
        };
        let input = BatchInput::new(&[chunk], &Device::Cpu).unwrap();
        let logits = self.model.forward(&input, &self.cache).unwrap();
        logits.squeeze(0).unwrap().to_vec1().unwrap()
    }
}
