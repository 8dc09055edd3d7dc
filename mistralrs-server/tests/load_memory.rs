//! Loading a safetensors checkpoint needs its weights once, not twice.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::io::Write;
use std::path::Path;

use common::Server;
use serde_json::{Value, json};

/// A llama shaped `config` (hidden, intermediate, layers, heads, kv heads)
/// with the demo model's tokenizer and every weight 0.01, as f32 safetensors.
fn write_checkpoint(dir: &Path, dims: (usize, usize, usize, usize, usize)) {
    let (hidden, intermediate, layers, heads, kv_heads) = dims;
    let demo = mistralrs_core::demo::ensure_demo_model().unwrap();
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(demo.join(file), dir.join(file)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("config.json")).unwrap()).unwrap();
    let vocab = config["vocab_size"].as_u64().unwrap() as usize;
    config["hidden_size"] = json!(hidden);
    config["intermediate_size"] = json!(intermediate);
    config["num_hidden_layers"] = json!(layers);
    config["num_attention_heads"] = json!(heads);
    config["num_key_value_heads"] = json!(kv_heads);
    config["tie_word_embeddings"] = json!(true);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let kv = hidden / heads * kv_heads;
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
    ];
    for i in 0..layers {
        let at = |part: &str| format!("model.layers.{i}.{part}.weight");
        tensors.extend([
            (at("input_layernorm"), vec![hidden]),
            (at("post_attention_layernorm"), vec![hidden]),
            (at("self_attn.q_proj"), vec![hidden, hidden]),
            (at("self_attn.k_proj"), vec![kv, hidden]),
            (at("self_attn.v_proj"), vec![kv, hidden]),
            (at("self_attn.o_proj"), vec![hidden, hidden]),
            (at("mlp.gate_proj"), vec![intermediate, hidden]),
            (at("mlp.up_proj"), vec![intermediate, hidden]),
            (at("mlp.down_proj"), vec![hidden, intermediate]),
        ]);
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let header = Value::Object(header).to_string();
    let file = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    let mut out = std::io::BufWriter::new(file);
    out.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    out.write_all(header.as_bytes()).unwrap();
    let chunk: Vec<u8> = std::iter::repeat_n(0.01f32.to_le_bytes(), 1 << 16)
        .flatten()
        .collect();
    let mut left = offset;
    while left > 0 {
        let n = left.min(chunk.len());
        out.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

/// A ~270 MB f32 checkpoint: the server's peak memory once it is up exceeds
/// the demo model's by at most 1.25 times the weights it reports. Mapped
/// files kept every page read resident until loading ended: twice the weights.
#[tokio::test(flavor = "multi_thread")]
async fn a_safetensors_checkpoint_loads_without_a_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), (1024, 2816, 6, 16, 4));
    let small_flags = ["--kv-cache-blocks", "8"];
    let baseline = {
        let demo = Server::start_model("demo", &small_flags);
        demo.health().await;
        demo.memory_bytes("VmHWM")
    };
    let server = Server::start_model(dir.path().to_str().unwrap(), &small_flags);
    let health = server.health().await;
    let weights = health["models"][0]["memory"]["weights_bytes"]
        .as_u64()
        .unwrap();
    let peak = server.memory_bytes("VmHWM");
    let added = peak.saturating_sub(baseline);
    eprintln!(
        "weights {} MiB; peak RSS {} MiB, the demo's {} MiB: {:.2}x the weights added",
        weights >> 20,
        peak >> 20,
        baseline >> 20,
        added as f64 / weights as f64
    );
    assert!(weights > 250 << 20, "weights {weights}");
    assert!(
        added as f64 <= 1.25 * weights as f64,
        "loading added {added} bytes for {weights} bytes of weights"
    );
}
