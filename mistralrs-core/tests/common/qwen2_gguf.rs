//! A Qwen2 GGUF file written from the small Qwen2 checkpoint of the fixtures
//! (`tests/fixtures/models/qwen2_tied_bias`: random weights, attention biases,
//! a tied output head), as llama.cpp's `convert_hf_to_gguf.py` lays one out:
//! GGUF tensor names, no q/k row permutation (that is llama's alone), every
//! tensor in f32, and a byte-level vocabulary of the first 127 bytes and one
//! merge. The test serves it and llama.cpp reads the same bytes for its
//! reference (`scripts/make_qwen2_gguf_reference.mjs`, with the file from
//! `cargo run --example write_test_ggufs`, which includes this module).
#![allow(unreachable_pub)] // public to the tests, private in the example

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

/// The checkpoint, relative to the crate's folder.
pub const CHECKPOINT: &str = "tests/fixtures/models/qwen2_tied_bias";

/// Hugging Face names of a layer's tensors and their GGUF names.
const LAYER_TENSORS: [(&str, &str); 12] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// GPT-2's byte-level alphabet: the character byte `b` is written as.
fn byte_char(b: u8) -> char {
    let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable {
        return char::from(b);
    }
    // The others, in order, from U+0100 on.
    let rank = (0..b)
        .filter(|&c| !((b'!'..=b'~').contains(&c) || (0xA1..=0xAC).contains(&c) || c >= 0xAE))
        .count() as u32;
    char::from_u32(0x100 + rank).expect("a valid code point")
}

/// Writes the checkpoint in `crate_dir` as a Qwen2 GGUF file at `dest`.
pub fn write(crate_dir: &Path, dest: &Path) -> candle_core::Result<()> {
    let dir = crate_dir.join(CHECKPOINT);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)
            .map_err(candle_core::Error::msg)?;
    let number = |key: &str| {
        config[key]
            .as_u64()
            .ok_or_else(|| candle_core::Error::msg(format!("config.json: no `{key}`")))
    };
    let (layers, vocab) = (number("num_hidden_layers")?, number("vocab_size")?);
    let float = |value: &serde_json::Value, key: &str| {
        value
            .as_f64()
            .map(|x| Value::F32(x as f32))
            .ok_or_else(|| candle_core::Error::msg(format!("config.json: no `{key}`")))
    };
    let eps = float(&config["rms_norm_eps"], "rms_norm_eps")?;
    let theta = float(&config["rope_parameters"]["rope_theta"], "rope_theta")?;
    let mut weights: HashMap<String, Tensor> = HashMap::new();
    let mut shards: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    for shard in shards {
        weights.extend(candle_core::safetensors::load(shard, &Device::Cpu)?);
    }
    let mut names = vec![
        (
            "model.embed_tokens.weight".to_owned(),
            "token_embd.weight".to_owned(),
        ),
        (
            "model.norm.weight".to_owned(),
            "output_norm.weight".to_owned(),
        ),
    ];
    for layer in 0..layers {
        for (hf, gguf) in LAYER_TENSORS {
            names.push((
                format!("model.layers.{layer}.{hf}"),
                format!("blk.{layer}.{gguf}"),
            ));
        }
    }
    let mut tensors = Vec::with_capacity(names.len());
    for (hf, gguf) in &names {
        let tensor = weights
            .get(hf)
            .ok_or_else(|| candle_core::Error::msg(format!("checkpoint: no `{hf}`")))?;
        tensors.push((gguf.as_str(), QTensor::quantize(tensor, GgmlDType::F32)?));
    }

    // The first bytes, but the last entry is "ab" for the one merge (a GGUF
    // array cannot be empty: its element type comes from its first element).
    let mut tokens: Vec<Value> = (0..vocab as u8 - 1)
        .map(|b| Value::String(byte_char(b).to_string()))
        .collect();
    tokens.push(Value::String("ab".into()));
    let u32_of = |key: &str| number(key).map(|n| Value::U32(n as u32));
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("qwen2".into())),
        ("general.name", Value::String("qwen2_tied_bias".into())),
        ("qwen2.block_count", u32_of("num_hidden_layers")?),
        ("qwen2.context_length", u32_of("max_position_embeddings")?),
        ("qwen2.embedding_length", u32_of("hidden_size")?),
        ("qwen2.feed_forward_length", u32_of("intermediate_size")?),
        ("qwen2.attention.head_count", u32_of("num_attention_heads")?),
        (
            "qwen2.attention.head_count_kv",
            u32_of("num_key_value_heads")?,
        ),
        ("qwen2.attention.layer_norm_rms_epsilon", eps),
        ("qwen2.rope.freq_base", theta),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("qwen2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1); vocab as usize]),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a b".into())]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(&mut File::create(dest)?, &metadata, &tensors)
}
