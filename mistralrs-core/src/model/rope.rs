//! Rotary position embeddings: the cos/sin tables, with llama3 and linear scaling.

use candle_core::{DType, Device, Tensor};

use super::config::{ModelConfig, RopeParameters};
use crate::Result;

/// Cos and sin tables, `[max_positions, head_dim / 2]`, looked up per token.
#[derive(Debug, Clone)]
pub(crate) struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    pub(crate) fn new(cfg: &ModelConfig, dtype: DType, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let freqs = inverse_frequencies(&cfg.rope(), dim);
        let positions = cfg.max_position_embeddings;
        let mut cos = Vec::with_capacity(positions * freqs.len());
        let mut sin = Vec::with_capacity(positions * freqs.len());
        for pos in 0..positions {
            for &f in &freqs {
                // f32 like the reference implementation, so long positions agree.
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let shape = (positions, freqs.len());
        Ok(Self {
            cos: Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?,
        })
    }

    /// Rotates `x` (`[tokens, heads, head_dim]`) by the angle of each token's
    /// position (`positions`: `[tokens]` u32).
    pub(crate) fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let cos = self.cos.index_select(positions, 0)?.unsqueeze(0)?;
        let sin = self.sin.index_select(positions, 0)?.unsqueeze(0)?;
        let x = x.unsqueeze(0)?.contiguous()?;
        Ok(candle_nn::rotary_emb::rope_thd(&x, &cos, &sin)?.squeeze(0)?)
    }
}

/// `1 / theta^(2i / dim)`, rescaled as the config asks.
fn inverse_frequencies(rope: &RopeParameters, dim: usize) -> Vec<f32> {
    let theta = rope.rope_theta.unwrap_or(10_000.0) as f32;
    let base: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f32 / dim as f32))
        .collect();
    let factor = rope.factor.unwrap_or(1.0) as f32;
    match rope.rope_type.as_str() {
        "linear" => base.into_iter().map(|f| f / factor).collect(),
        "llama3" => {
            let low = rope.low_freq_factor.unwrap_or(1.0) as f32;
            let high = rope.high_freq_factor.unwrap_or(4.0) as f32;
            let original = rope.original_max_position_embeddings.unwrap_or(8192) as f32;
            base.into_iter()
                .map(|f| llama3_scale(f, factor, low, high, original))
                .collect()
        }
        _ => base,
    }
}

/// Llama 3.1's frequency-dependent scaling: long wavelengths are divided by
/// `factor`, short ones kept, the band between interpolated.
fn llama3_scale(freq: f32, factor: f32, low: f32, high: f32, original: f32) -> f32 {
    let wavelen = 2.0 * std::f32::consts::PI / freq;
    if wavelen < original / high {
        freq
    } else if wavelen > original / low {
        freq / factor
    } else {
        let smooth = (original / wavelen - low) / (high - low);
        (1.0 - smooth) * freq / factor + smooth * freq
    }
}
