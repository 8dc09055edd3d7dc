//! The llama-family decoder (Llama 2/3, Mistral, Qwen2) over the paged KV cache.
//!
//! Tensors are asked for by the checkpoint's weight names (`model.layers.N.self_attn`,
//! `mlp`, ...) from a [`WeightSource`]: a Hugging Face folder loads without a
//! renaming table, and a GGUF file maps the names to its own.

use candle_core::{DType, Module, Tensor};
use candle_nn::RmsNorm;
use mistralrs_paged_attn::{KvCache, KvCacheShape, paged_attention, paged_attention_decode};

use super::config::ModelConfig;
use super::embedding::TokenEmbedding;
use super::input::BatchInput;
use super::rope::RotaryEmbedding;
use super::weights::{Projection, WeightSource, tensor_bytes};
use crate::Result;

#[derive(Debug)]
struct Attention {
    q_proj: Projection,
    k_proj: Projection,
    v_proj: Projection,
    o_proj: Projection,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
}

impl Attention {
    fn load(w: &dyn WeightSource, prefix: &str, cfg: &ModelConfig) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.kv_heads());
        let qkv_bias = cfg.qkv_bias();
        let name = |part: &str| format!("{prefix}.{part}");
        Ok(Self {
            q_proj: w.projection(&name("q_proj"), h, heads * d, qkv_bias)?,
            k_proj: w.projection(&name("k_proj"), h, kv_heads * d, qkv_bias)?,
            v_proj: w.projection(&name("v_proj"), h, kv_heads * d, qkv_bias)?,
            o_proj: w.projection(&name("o_proj"), heads * d, h, cfg.attention_bias)?,
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
        self.o_proj.forward(&Tensor::cat(&outputs, 0)?)
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Projection,
    up_proj: Projection,
    down_proj: Projection,
}

impl Mlp {
    fn load(w: &dyn WeightSource, prefix: &str, cfg: &ModelConfig) -> Result<Self> {
        let (h, i, bias) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        let name = |part: &str| format!("{prefix}.{part}");
        Ok(Self {
            gate_proj: w.projection(&name("gate_proj"), h, i, bias)?,
            up_proj: w.projection(&name("up_proj"), h, i, bias)?,
            down_proj: w.projection(&name("down_proj"), i, h, bias)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gated =
            (candle_nn::ops::silu(&self.gate_proj.forward(x)?)? * self.up_proj.forward(x)?)?;
        self.down_proj.forward(&gated)
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
    fn load(w: &dyn WeightSource, prefix: &str, cfg: &ModelConfig) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: w.rms_norm(&format!("{prefix}.input_layernorm"), h, eps)?,
            self_attn: Attention::load(w, &format!("{prefix}.self_attn"), cfg)?,
            post_attention_layernorm: w.rms_norm(
                &format!("{prefix}.post_attention_layernorm"),
                h,
                eps,
            )?,
            mlp: Mlp::load(w, &format!("{prefix}.mlp"), cfg)?,
        })
    }
}

/// A llama-family causal language model.
#[derive(Debug)]
pub struct Llama {
    embed_tokens: TokenEmbedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Projection,
    rope: RotaryEmbedding,
    cfg: ModelConfig,
}

impl Llama {
    /// Builds the model from tensors named as in a Hugging Face checkpoint.
    pub(crate) fn load(w: &dyn WeightSource, cfg: &ModelConfig) -> Result<Self> {
        let (h, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let embed_tokens = w.embedding("model.embed_tokens", vocab, h)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(w, &format!("model.layers.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = w.rms_norm("model.norm", h, cfg.rms_norm_eps)?;
        let lm_head = w.output_head(&embed_tokens, h, vocab)?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope: RotaryEmbedding::new(cfg, w.dtype(), w.device())?,
            cfg: cfg.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Memory the weights take (a head tied to the embedding counts once).
    pub fn weight_bytes(&self) -> usize {
        let norm = |n: &RmsNorm| tensor_bytes(n.weight());
        let head_is_embed = self.lm_head.shares_table_of(&self.embed_tokens);
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                let a = &l.self_attn;
                let m = &l.mlp;
                [
                    &a.q_proj,
                    &a.k_proj,
                    &a.v_proj,
                    &a.o_proj,
                    &m.gate_proj,
                    &m.up_proj,
                    &m.down_proj,
                ]
                .iter()
                .map(|p| p.bytes())
                .sum::<usize>()
                    + norm(&l.input_layernorm)
                    + norm(&l.post_attention_layernorm)
            })
            .sum();
        self.embed_tokens.bytes()
            + layers
            + norm(&self.norm)
            + if head_is_embed {
                0
            } else {
                self.lm_head.bytes()
            }
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
