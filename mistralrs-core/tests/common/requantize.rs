//! A GGUF file rewritten with its weights in another tensor type, as
//! llama.cpp's `llama-quantize --allow-requantize` would: the model tests serve
//! every tensor type the server supports from one real model, and llama.cpp
//! reads the same files for their reference
//! (`scripts/make_gguf_types_reference.mjs`, with the files from `cargo run
//! --example write_test_ggufs`, which includes this module).
#![allow(unreachable_pub)] // public to the tests, private in the example

use std::fs::File;
use std::path::Path;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use mistralrs_core::model::Quantization;

/// The types the tests write: every GGUF type the server runs but the
/// SmolLM2 file's own (Q4_1), by the names `--quantize` and llama.cpp use.
pub const TYPES: [&str; 12] = [
    "q4_0", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "f16", "bf16", "f32",
];

/// The projections of a llama block, by their GGUF names.
const PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// Writes `source` to `dest` with its weights in `target` (one of `TYPES`).
/// A quantized target applies to the projections, each in the type that fits
/// its rows as `--quantize` picks it; the token embedding (also the output
/// head) stays as stored. A float target applies to every matrix. Norms stay
/// f32, as llama.cpp requires. Tensors and metadata keep a fixed order, so the
/// same source gives the same bytes.
pub fn requantize(source: &Path, target: &str, dest: &Path) -> candle_core::Result<()> {
    let float = match target {
        "f16" => Some(GgmlDType::F16),
        "bf16" => Some(GgmlDType::BF16),
        "f32" => Some(GgmlDType::F32),
        _ => None,
    };
    let quantized: Option<Quantization> = match float {
        Some(_) => None,
        None => Some(target.parse().map_err(candle_core::Error::msg)?),
    };
    let mut file = File::open(source)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|name| content.tensor_infos[*name].offset);
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let stored = content.tensor(&mut file, name, &Device::Cpu)?;
        let is_projection = PROJECTIONS
            .iter()
            .any(|p| name.ends_with(&format!(".{p}.weight")));
        let new_type = match (float, quantized) {
            (Some(float), _) if stored.shape().rank() == 2 => Some(float),
            (None, Some(quantized)) if is_projection => {
                let width = stored.shape().dims()[1];
                let fits = quantized.for_rows(width).ok_or_else(|| {
                    candle_core::Error::msg(format!("{name}: rows of {width} fit no type"))
                })?;
                Some(fits.ggml_dtype())
            }
            _ => None,
        };
        let tensor = match new_type {
            Some(dtype) => QTensor::quantize(&stored.dequantize(&Device::Cpu)?, dtype)?,
            None => stored,
        };
        tensors.push((name.as_str(), tensor));
    }
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.sort_by_key(|(k, _)| *k);
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(&mut File::create(dest)?, &metadata, &tensors)
}
