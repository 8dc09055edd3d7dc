//! The `demo` model: a small llama with seeded random weights and a byte-level BPE
//! tokenizer trained on a paragraph of text, written out as an ordinary Hugging Face
//! folder so that it loads through exactly the code path of a real checkpoint.
//!
//! Everything is deterministic: the tokenizer's training is, and the weights come
//! from ChaCha8 (a portable generator) with a fixed seed, so the same version of
//! this code writes byte-identical files on every machine.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, TokenizerBuilder};

use crate::{Error, Result};

/// Bumped whenever the generator's output changes, so cached copies are renewed.
const DEMO_VERSION: u32 = 1;
/// The weights' seed.
pub const DEMO_SEED: u64 = 0x6d69_7374_7261_6c72;

const CORPUS: &str = include_str!("corpus.txt");
const BOS: &str = "<|begin_of_text|>";
const EOS: &str = "<|end_of_text|>";
const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
const TARGET_VOCAB: usize = 512;

/// Sizes of the demo decoder: about 0.9 M parameters.
const HIDDEN: usize = 128;
const INTERMEDIATE: usize = 352;
const LAYERS: usize = 4;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const MAX_POSITIONS: usize = 1024;

/// ChatML with tools in a system turn; `tojson` exercises the Python-compatible
/// filter, `bos_token` the template variables.
const CHAT_TEMPLATE: &str = "{{ bos_token }}\
{%- if tools %}<|im_start|>system\nYou can call these tools:\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}<|im_end|>\n{% endif %}\
{%- for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}<|im_end|>\n{% endfor %}\
{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Where [`ensure_demo_model`] keeps the folder: `$MISTRALRS_DEMO_DIR`, else
/// `$XDG_CACHE_HOME/mistralrs/demo-vN`, else `~/.cache/mistralrs/demo-vN`.
pub fn demo_model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MISTRALRS_DEMO_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache
        .join("mistralrs")
        .join(format!("demo-v{DEMO_VERSION}"))
}

/// The demo model's folder, written first if it is not there yet. Safe to call
/// from several processes at once: each writes a private folder and renames it.
pub fn ensure_demo_model() -> Result<PathBuf> {
    let dir = demo_model_dir();
    if dir.join("config.json").exists() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = parent.join(format!(".demo-staging-{}", std::process::id()));
    write_demo_model(&staging)?;
    if let Err(e) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !dir.join("config.json").exists() {
            return Err(Error::io(&dir, e));
        }
    }
    Ok(dir)
}

/// Writes the demo model's files into `dir` (created if missing).
pub fn write_demo_model(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let vocab = write_tokenizer(dir)?;
    write_json(&dir.join("config.json"), &config_json(vocab))?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": IM_END,
            "model_max_length": MAX_POSITIONS,
            "chat_template": CHAT_TEMPLATE,
        }),
    )?;
    let id = |t: &str| special_id(t);
    write_json(
        &dir.join("generation_config.json"),
        &serde_json::json!({ "bos_token_id": id(BOS), "eos_token_id": [id(IM_END), id(EOS)] }),
    )?;
    write_weights(&dir.join("model.safetensors"), vocab)
}

/// Special tokens take the first ids, in this order.
fn special_id(token: &str) -> u32 {
    [BOS, EOS, IM_START, IM_END]
        .iter()
        .position(|t| *t == token)
        .unwrap_or(0) as u32
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::files(path, e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

fn config_json(vocab: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "bos_token_id": special_id(BOS),
        "eos_token_id": special_id(IM_END),
        "torch_dtype": "float32",
    })
}

/// Trains a byte-level BPE on the corpus and saves `tokenizer.json`; returns the
/// vocabulary size including special tokens.
fn write_tokenizer(dir: &Path) -> Result<usize> {
    let tok_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer(e.to_string());
    let specials: Vec<AddedToken> = [BOS, EOS, IM_START, IM_END]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(TARGET_VOCAB)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .special_tokens(vec![(BOS.to_string(), special_id(BOS))])
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        ByteLevel,
        TemplateProcessing,
        ByteLevelDecoder,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
    .with_post_processor(Some(post))
    .with_decoder(Some(ByteLevelDecoder::default()))
    .build()
    .map_err(tok_err)?;
    tokenizer
        .train(&mut trainer, CORPUS.lines())
        .map_err(tok_err)?;
    let path = dir.join("tokenizer.json");
    tokenizer.save(&path, false).map_err(tok_err)?;
    Ok(tokenizer.get_vocab_size(true))
}

/// Uniform values in `[-scale, scale)`, or around `1` for norm weights, in a fixed
/// order of tensor names from one seeded stream.
fn write_weights(path: &Path, vocab: usize) -> Result<()> {
    let head_dim = HIDDEN / HEADS;
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, HIDDEN]),
        ("model.norm.weight".into(), vec![HIDDEN]),
        ("lm_head.weight".into(), vec![vocab, HIDDEN]),
    ];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        shapes.extend([
            (format!("{p}.input_layernorm.weight"), vec![HIDDEN]),
            (format!("{p}.post_attention_layernorm.weight"), vec![HIDDEN]),
            (
                format!("{p}.self_attn.q_proj.weight"),
                vec![HEADS * head_dim, HIDDEN],
            ),
            (
                format!("{p}.self_attn.k_proj.weight"),
                vec![KV_HEADS * head_dim, HIDDEN],
            ),
            (
                format!("{p}.self_attn.v_proj.weight"),
                vec![KV_HEADS * head_dim, HIDDEN],
            ),
            (
                format!("{p}.self_attn.o_proj.weight"),
                vec![HIDDEN, HEADS * head_dim],
            ),
            (
                format!("{p}.mlp.gate_proj.weight"),
                vec![INTERMEDIATE, HIDDEN],
            ),
            (
                format!("{p}.mlp.up_proj.weight"),
                vec![INTERMEDIATE, HIDDEN],
            ),
            (
                format!("{p}.mlp.down_proj.weight"),
                vec![HIDDEN, INTERMEDIATE],
            ),
        ]);
    }
    shapes.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(DEMO_SEED);
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let mut uniform = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + 0.1 * uniform()).collect()
        } else {
            // Unit-variance embeddings; projections scaled by fan-in so activations
            // stay near unit size and the logits are peaked enough for stable argmax.
            let scale = if name.contains("embed_tokens") {
                1.7
            } else {
                2.0 / (shape[1] as f32).sqrt()
            };
            (0..n).map(|_| scale * uniform()).collect()
        };
        tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}
