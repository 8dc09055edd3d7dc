//! Writes a random-weight llama GGUF shaped like a 1.1B model (TinyLlama's
//! shape: 22 blocks of width 2048, 5632 wide MLP, 32 query and 4 KV heads)
//! in llama.cpp's Q4_K_M mix, with SmolLM2's tokenizer and chat template, for
//! the speed race on the K-quant types most downloaded files use (SmolLM2's
//! own widths, 576 and 1536, fit no K-quant row):
//! `cargo run --release -p mistralrs-core --example write_shaped_gguf -- SMOLLM2.gguf OUT.gguf`

use std::fs::File;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};

const BLOCKS: usize = 22;
const WIDTH: usize = 2048;
const MLP_WIDTH: usize = 5632;
const HEADS: usize = 32;
const KV_HEADS: usize = 4;
const HEAD_DIM: usize = WIDTH / HEADS;

/// llama.cpp's Q4_K_M gives some blocks' `attn_v` and `ffn_down` Q6_K
/// (`use_more_bits` in llama-quant.cpp): the first and last eighth, and every
/// third block between.
fn more_bits(block: usize) -> bool {
    !(BLOCKS / 8..7 * BLOCKS / 8).contains(&block) || (block - BLOCKS / 8) % 3 == 2
}

fn random(rows: usize, columns: usize, dtype: GgmlDType) -> candle_core::Result<QTensor> {
    let values = Tensor::randn(0f32, 0.02, (rows, columns), &Device::Cpu)?;
    QTensor::quantize(&values, dtype)
}

fn ones(len: usize) -> candle_core::Result<QTensor> {
    QTensor::quantize(
        &Tensor::ones(len, candle_core::DType::F32, &Device::Cpu)?,
        GgmlDType::F32,
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(source), Some(dest)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: write_shaped_gguf SMOLLM2.gguf OUT.gguf");
    };
    let content = gguf_file::Content::read(&mut File::open(&source)?)?;
    let vocab = content.tensor_infos["token_embd.weight"].shape.dims()[0];
    let shape: [(&str, u32); 6] = [
        ("llama.block_count", BLOCKS as u32),
        ("llama.embedding_length", WIDTH as u32),
        ("llama.feed_forward_length", MLP_WIDTH as u32),
        ("llama.attention.head_count", HEADS as u32),
        ("llama.attention.head_count_kv", KV_HEADS as u32),
        ("llama.rope.dimension_count", HEAD_DIM as u32),
    ];
    let shape: Vec<(&str, gguf_file::Value)> = shape
        .iter()
        .map(|(key, value)| (*key, gguf_file::Value::U32(*value)))
        .collect();
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(key, _)| !shape.iter().any(|(k, _)| k == key))
        .map(|(key, value)| (key.as_str(), value))
        .chain(shape.iter().map(|(key, value)| (*key, value)))
        .collect();
    metadata.sort_by_key(|(key, _)| *key);

    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            random(vocab, WIDTH, GgmlDType::Q6K)?,
        ),
        ("output_norm.weight".into(), ones(WIDTH)?),
    ];
    for block in 0..BLOCKS {
        let wide = if more_bits(block) {
            GgmlDType::Q6K
        } else {
            GgmlDType::Q4K
        };
        let kv = KV_HEADS * HEAD_DIM;
        for (name, rows, columns, dtype) in [
            ("attn_q", WIDTH, WIDTH, GgmlDType::Q4K),
            ("attn_k", kv, WIDTH, GgmlDType::Q4K),
            ("attn_v", kv, WIDTH, wide),
            ("attn_output", WIDTH, WIDTH, GgmlDType::Q4K),
            ("ffn_gate", MLP_WIDTH, WIDTH, GgmlDType::Q4K),
            ("ffn_up", MLP_WIDTH, WIDTH, GgmlDType::Q4K),
            ("ffn_down", WIDTH, MLP_WIDTH, wide),
        ] {
            tensors.push((
                format!("blk.{block}.{name}.weight"),
                random(rows, columns, dtype)?,
            ));
        }
        tensors.push((format!("blk.{block}.attn_norm.weight"), ones(WIDTH)?));
        tensors.push((format!("blk.{block}.ffn_norm.weight"), ones(WIDTH)?));
        eprintln!("block {block} of {BLOCKS}");
    }
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gguf_file::write(&mut File::create(&dest)?, &metadata, &tensors)?;
    println!("{dest}");
    Ok(())
}
