//! `config.json` of a llama-family checkpoint, in both the classic layout
//! (`rope_theta` + `rope_scaling`) and the transformers 5 one (`rope_parameters`).

use serde::Deserialize;

use crate::{Error, Result};

/// One token id or several (`eos_token_id` is either in the wild).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// How rotary frequencies are scaled for long contexts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RopeParameters {
    /// `default`, `linear` or `llama3`.
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    /// Base of the frequencies (transformers 5 keeps it here).
    pub rope_theta: Option<f64>,
    /// Context extension factor.
    pub factor: Option<f64>,
    /// llama3: wavelengths above `original / low_freq_factor` are fully scaled.
    pub low_freq_factor: Option<f64>,
    /// llama3: wavelengths below `original / high_freq_factor` are kept.
    pub high_freq_factor: Option<f64>,
    /// llama3: the context the model was trained on.
    pub original_max_position_embeddings: Option<usize>,
}

fn default_rope_type() -> String {
    "default".into()
}

/// The fields of `config.json` the decoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    /// `llama`, `mistral` or `qwen2`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    pub num_key_value_heads: Option<usize>,
    /// Size of a head; defaults to hidden_size / heads.
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Classic layout: base of the rotary frequencies.
    pub rope_theta: Option<f64>,
    /// Classic layout: rotary scaling.
    pub rope_scaling: Option<RopeParameters>,
    /// transformers 5 layout: base and scaling together.
    pub rope_parameters: Option<RopeParameters>,
    /// The longest context the model supports.
    pub max_position_embeddings: usize,
    /// The output projection reuses the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama: biases on q/k/v/o (Qwen2 always has q/k/v biases).
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama: biases on the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral: attention window, when one is used.
    pub sliding_window: Option<usize>,
    /// Qwen2: whether `sliding_window` applies at all.
    pub use_sliding_window: Option<bool>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
}

fn default_model_type() -> String {
    "llama".into()
}

impl ModelConfig {
    /// Parses and checks a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| Error::Unsupported(format!("config.json: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if !matches!(self.model_type.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(Error::Unsupported(format!(
                "model_type `{}` (llama, mistral and qwen2 are)",
                self.model_type
            )));
        }
        let kv = self.kv_heads();
        if self.num_attention_heads == 0 || kv == 0 || !self.num_attention_heads.is_multiple_of(kv)
        {
            return Err(Error::Unsupported(format!(
                "{} attention heads cannot be grouped over {kv} key/value heads",
                self.num_attention_heads
            )));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(Error::Unsupported(
                "rotary embeddings need an even head_dim".into(),
            ));
        }
        let rope = self.rope();
        if !matches!(rope.rope_type.as_str(), "default" | "linear" | "llama3") {
            return Err(Error::Unsupported(format!(
                "rope_type `{}`",
                rope.rope_type
            )));
        }
        Ok(())
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Size of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Rotary parameters from whichever layout the file uses.
    pub fn rope(&self) -> RopeParameters {
        let mut rope = self
            .rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or(RopeParameters {
                rope_type: default_rope_type(),
                rope_theta: None,
                factor: None,
                low_freq_factor: None,
                high_freq_factor: None,
                original_max_position_embeddings: None,
            });
        rope.rope_theta = rope.rope_theta.or(self.rope_theta).or(Some(10_000.0));
        rope
    }

    /// Whether q/k/v projections carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// The attention window, when the model restricts attention to one.
    pub fn attention_window(&self) -> Option<usize> {
        match self.model_type.as_str() {
            "qwen2" if self.use_sliding_window != Some(true) => None,
            _ => self
                .sliding_window
                .filter(|&w| w < self.max_position_embeddings),
        }
    }
}
