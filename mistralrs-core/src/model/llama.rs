//! The llama-family decoder (Llama 2/3, Mistral, Qwen2) over the paged KV cache.
//!
//! Submodule names follow the checkpoint's weight names (`model.layers.N.self_attn`,
//! `mlp`, ...), so a Hugging Face folder loads without a renaming table.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};
use mistralrs_paged_attn::{KvCache, KvCacheShape, paged_attention, paged_attention_decode};

use super::config::ModelConfig;
use super::input::BatchInput;
use super::rope::RotaryEmbedding;
use crate::Result;

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    Ok(candle_nn::linear_b(in_dim, out_dim, bias, vb)?)
}

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.kv_heads());
        let qkv_bias = cfg.qkv_bias();
        Ok(Self {
            q_proj: linear(h, heads * d, qkv_bias, vb.pp("q_proj"))?,
            k_proj: linear(h, kv_heads * d, qkv_bias, vb.pp("k_proj"))?,
            v_proj: linear(h, kv_heads * d, qkv_bias, vb.pp("v_proj"))?,
            o_proj: linear(heads * d, h, cfg.attention_bias, vb.pp("o_proj"))?,
            heads,
            kv_heads,
            head_dim: d,
            window: cfg.attention_window(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        input: &BatchInput,
        rope: &RotaryEmbedding,
        cache: &KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let t = x.dim(0)?;
        let q = self
            .q_proj
            .forward(x)?
            .reshape((t, self.heads, self.head_dim))?;
        let k = self
            .k_proj
            .forward(x)?
            .reshape((t, self.kv_heads, self.head_dim))?;
        let v = self.v_proj.forward(x)?;
        let q = rope.apply(&q, &input.positions)?;
        let k = rope.apply(&k, &input.positions)?;
        cache.write(layer, &input.new_slots, &k, &v)?;
        let (k_cache, v_cache) = cache.layer(layer);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut outputs: Vec<Option<Tensor>> = vec![None; input.spans.len()];
        if let Some(batch) = &input.decode {
            let q = q.index_select(&batch.rows, 0)?;
            let out = paged_attention_decode(
                &q,
                k_cache,
                v_cache,
                &batch.slots,
                &batch.context_lens,
                scale,
                self.window,
            )?;
            for (k, &span) in batch.spans.iter().enumerate() {
                outputs[span] = Some(out.narrow(0, k, 1)?);
            }
        }
        let outputs = input
            .spans
            .iter()
            .zip(outputs)
            .map(|(span, done)| match done {
                Some(out) => Ok(out),
                None => {
                    let q = q.narrow(0, span.offset, span.len)?;
                    Ok(paged_attention(
                        &q,
                        k_cache,
                        v_cache,
                        &span.context_slots,
                        span.first_pos,
                        scale,
                        self.window,
                    )?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.o_proj.forward(&Tensor::cat(&outputs, 0)?)?)
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: linear(h, i, bias, vb.pp("gate_proj"))?,
            up_proj: linear(h, i, bias, vb.pp("up_proj"))?,
            down_proj: linear(i, h, bias, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gated =
            (candle_nn::ops::silu(&self.gate_proj.forward(x)?)? * self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&gated)?)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: candle_nn::rms_norm(h, eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::load(vb.pp("self_attn"), cfg)?,
            post_attention_layernorm: candle_nn::rms_norm(
                h,
                eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }
}

/// A llama-family causal language model.
#[derive(Debug)]
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    cfg: ModelConfig,
}

impl Llama {
    /// Builds the model from weights named as in a Hugging Face checkpoint.
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let m = vb.pp("model");
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(m.pp(format!("layers.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            linear(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope: RotaryEmbedding::new(cfg, vb.dtype(), vb.device())?,
            cfg: cfg.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The KV cache layout this model needs for `num_blocks` blocks.
    pub fn cache_shape(&self, num_blocks: usize, block_size: usize) -> KvCacheShape {
        KvCacheShape {
            num_layers: self.cfg.num_hidden_layers,
            num_blocks,
            block_size,
            kv_heads: self.cfg.kv_heads(),
            head_dim: self.cfg.head_dim(),
        }
    }

    /// Runs the batch, writing its keys and values into `cache`, and returns the
    /// f32 logits (`[rows, vocab]`) of the rows the input asked for.
    pub fn forward(&self, input: &BatchInput, cache: &KvCache) -> Result<Tensor> {
        let mut x = self.embed_tokens.forward(&input.tokens)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let _span = tracing::trace_span!("layer", i).entered();
            let attn = layer.self_attn.forward(
                &layer.input_layernorm.forward(&x)?,
                input,
                &self.rope,
                cache,
                i,
            )?;
            x = (x + attn)?;
            let mlp = layer
                .mlp
                .forward(&layer.post_attention_layernorm.forward(&x)?)?;
            x = (x + mlp)?;
        }
        let last = x.index_select(&input.logit_rows, 0)?;
        Ok(self
            .lm_head
            .forward(&self.norm.forward(&last)?)?
            .to_dtype(DType::F32)?)
    }
}
