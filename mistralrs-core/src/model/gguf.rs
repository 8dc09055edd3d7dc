//! Loading a GGUF file (llama.cpp's format): the model's shape, tokenizer and
//! chat template from its metadata, its tensors through [`Gguf`].
//!
//! Architectures: `llama` (Llama, Mistral, SmolLM2, ... as llama.cpp writes
//! them) and `qwen2`. The tokenizer comes from the metadata (`gguf_tokenizer`)
//! unless a `tokenizer.json` (with `tokenizer_config.json`) sits beside the file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use candle_core::DType;
use candle_core::quantized::gguf_file::{self, Value};
use serde_json::json;

use super::config::ModelConfig;
use super::gguf_tokenizer::tokenizer;
use super::llama::Llama;
use super::quantize::Quantizer;
use super::weights::{Gguf, open_gguf};
use super::{FloatType, LoadOptions, LoadedModel};
use crate::chat_template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Architectures this server runs from GGUF.
const ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// Metadata of one file, with errors that name it.
pub(super) struct Metadata<'a> {
    pub(super) path: &'a Path,
    values: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    pub(super) fn get(&self, key: &str) -> Result<&Value> {
        self.values
            .get(key)
            .ok_or_else(|| Error::files(self.path, format!("metadata key `{key}` is missing")))
    }

    pub(super) fn bad(&self, key: &str, e: impl std::fmt::Display) -> Error {
        Error::files(self.path, format!("metadata key `{key}`: {e}"))
    }

    pub(super) fn u32(&self, key: &str) -> Result<u32> {
        let value = self.get(key)?;
        value
            .to_u32()
            .or_else(|_| value.to_u64().map(|v| v as u32))
            .map_err(|e| self.bad(key, e))
    }

    pub(super) fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)?.to_f32().map_err(|e| self.bad(key, e))
    }

    pub(super) fn string(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|e| self.bad(key, e))
    }

    pub(super) fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let values = self.get(key)?.to_vec().map_err(|e| self.bad(key, e))?;
        values
            .iter()
            .map(|v| {
                v.to_string()
                    .map(String::as_str)
                    .map_err(|e| self.bad(key, e))
            })
            .collect()
    }

    pub(super) fn bool(&self, key: &str) -> Result<bool> {
        self.get(key)?.to_bool().map_err(|e| self.bad(key, e))
    }

    /// An array of numbers, each read by `read`.
    fn numbers<T>(
        &self,
        key: &str,
        read: impl Fn(&Value) -> candle_core::Result<T>,
    ) -> Result<Vec<T>> {
        let values = self.get(key)?.to_vec().map_err(|e| self.bad(key, e))?;
        values
            .iter()
            .map(|v| read(v).map_err(|e| self.bad(key, e)))
            .collect()
    }

    pub(super) fn f32s(&self, key: &str) -> Result<Vec<f32>> {
        self.numbers(key, Value::to_f32)
    }

    pub(super) fn i32s(&self, key: &str) -> Result<Vec<i32>> {
        self.numbers(key, Value::to_i32)
    }

    pub(super) fn optional<T>(
        &self,
        key: &str,
        read: impl Fn(&Self, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.values.contains_key(key) {
            read(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(super) fn optional_string(&self, key: &str) -> Result<Option<&str>> {
        if self.values.contains_key(key) {
            self.string(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The decoder's configuration from `<arch>.*` metadata, as `config.json` would
/// give it (and checked the same way).
fn model_config(meta: &Metadata<'_>, arch: &str, vocab: usize, tied: bool) -> Result<ModelConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let heads = meta.u32(&key("attention.head_count"))?;
    let head_dim = meta.optional(&key("attention.key_length"), Metadata::u32)?;
    let config = json!({
        "model_type": arch,
        "vocab_size": vocab,
        "hidden_size": meta.u32(&key("embedding_length"))?,
        "intermediate_size": meta.u32(&key("feed_forward_length"))?,
        "num_hidden_layers": meta.u32(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": meta.optional(&key("attention.head_count_kv"), Metadata::u32)?.unwrap_or(heads),
        "head_dim": head_dim,
        "rms_norm_eps": meta.f32(&key("attention.layer_norm_rms_epsilon"))?,
        "rope_theta": meta.optional(&key("rope.freq_base"), Metadata::f32)?.unwrap_or(10_000.0),
        "max_position_embeddings": meta.u32(&key("context_length"))?,
        "tie_word_embeddings": tied,
    });
    ModelConfig::from_json(&config.to_string())
}

/// The tokenizer in the metadata of the GGUF file at `path` (its tensors unread).
pub(crate) fn tokenizer_of(path: &Path) -> Result<Tokenizer> {
    let (content, _) = open_gguf(path)?;
    tokenizer(&Metadata {
        path,
        values: &content.metadata,
    })
}

/// Bytes the tensors of `content` take loaded as stored, or dequantized to `dense`.
fn weight_bytes(content: &gguf_file::Content, dense: Option<DType>) -> u64 {
    content
        .tensor_infos
        .values()
        .map(|info| {
            let elements = info.shape.elem_count();
            let bytes = match dense {
                Some(dtype) => elements * dtype.size_in_bytes(),
                None => elements / info.ggml_dtype.block_size() * info.ggml_dtype.type_size(),
            };
            bytes as u64
        })
        .sum()
}

/// Loads the GGUF file at `path` as `options` say.
pub(crate) fn load(path: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    let (content, file) = open_gguf(path)?;
    let meta = Metadata {
        path,
        values: &content.metadata,
    };
    let arch = meta.string("general.architecture")?.to_owned();
    if !ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::Unsupported(format!(
            "{}: GGUF architecture `{arch}`; supported: {}",
            path.display(),
            ARCHITECTURES.join(", ")
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tokenizer = if dir.join("tokenizer.json").exists() {
        Tokenizer::from_folder(dir)?
    } else {
        tokenizer(&meta)?
    };
    let vocab = match meta.optional(&format!("{arch}.vocab_size"), Metadata::u32)? {
        Some(n) => n as usize,
        None => meta.strings("tokenizer.ggml.tokens")?.len(),
    };
    let tied = !content.tensor_infos.contains_key("output.weight");
    super::check_weights_fit(
        path,
        &options.device,
        weight_bytes(&content, options.dtype.map(FloatType::dtype)),
    )?;
    let cfg = model_config(&meta, &arch, vocab, tied)?;
    let chat_template = match meta.optional_string("tokenizer.chat_template")? {
        Some(source) if !dir.join("tokenizer_config.json").exists() => Some(ChatTemplate::new(
            source.to_owned(),
            tokenizer.bos_token(),
            tokenizer.eos_token(),
        )?),
        _ => ChatTemplate::from_folder(dir, &tokenizer)?,
    };
    let mut eos_token_ids: Vec<u32> = meta
        .optional("tokenizer.ggml.eos_token_id", Metadata::u32)?
        .into_iter()
        .chain(tokenizer.eos_token_id())
        .collect();
    eos_token_ids.sort_unstable();
    eos_token_ids.dedup();
    let source = Gguf {
        path: path.to_path_buf(),
        content,
        file: RefCell::new(file),
        device: options.device.clone(),
        dense_dtype: options.dtype.map(FloatType::dtype),
        quantizer: Quantizer::for_model(options, &cfg),
        // llama.cpp permutes q/k rows of llama models only.
        permuted_heads: (arch == "llama").then(|| (cfg.num_attention_heads, cfg.kv_heads())),
    };
    let model = Llama::load(&source, &cfg)?;
    Quantizer::log_summary(&source.quantizer);
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        eos_token_ids,
        path: path.to_path_buf(),
    })
}
