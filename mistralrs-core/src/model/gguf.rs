//! Loading a GGUF file (llama.cpp's format): the model's shape, tokenizer and
//! chat template from its metadata, its tensors through [`Gguf`].
//!
//! Architectures: `llama` (Llama, Mistral, SmolLM2, ... as llama.cpp writes
//! them) and `qwen2`. Tokenizers: `gpt2`-style byte-level BPE with the
//! pre-tokenizer the file names (`tokenizer.ggml.pre`). A `tokenizer.json`
//! (with `tokenizer_config.json`) beside the file is used instead when present.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::config::ModelConfig;
use super::llama::Llama;
use super::quantize::Quantizer;
use super::weights::{Gguf, open_gguf};
use super::{FloatType, LoadOptions, LoadedModel};
use crate::chat_template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Architectures this server runs from GGUF.
const ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// llama.cpp's pre-tokenizer regexes, by `tokenizer.ggml.pre`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Metadata of one file, with errors that name it.
struct Metadata<'a> {
    path: &'a Path,
    values: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.values
            .get(key)
            .ok_or_else(|| Error::files(self.path, format!("metadata key `{key}` is missing")))
    }

    fn bad(&self, key: &str, e: impl std::fmt::Display) -> Error {
        Error::files(self.path, format!("metadata key `{key}`: {e}"))
    }

    fn u32(&self, key: &str) -> Result<u32> {
        let value = self.get(key)?;
        value
            .to_u32()
            .or_else(|_| value.to_u64().map(|v| v as u32))
            .map_err(|e| self.bad(key, e))
    }

    fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)?.to_f32().map_err(|e| self.bad(key, e))
    }

    fn string(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|e| self.bad(key, e))
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>> {
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

    fn optional<T>(&self, key: &str, read: impl Fn(&Self, &str) -> Result<T>) -> Result<Option<T>> {
        if self.values.contains_key(key) {
            read(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn optional_string(&self, key: &str) -> Result<Option<&str>> {
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

/// The tokenizer from `tokenizer.ggml.*`: byte-level BPE with its merges,
/// control tokens as special tokens.
fn tokenizer(meta: &Metadata<'_>) -> Result<Tokenizer> {
    let model = meta.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::files(
            meta.path,
            format!(
                "tokenizer.ggml.model `{model}` is not supported from GGUF metadata (only `gpt2`, byte-level BPE); put the model's tokenizer.json beside the file"
            ),
        ));
    }
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let merges = meta.strings("tokenizer.ggml.merges")?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| ((*token).to_owned(), id as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| meta.bad("tokenizer.ggml.merges", format!("`{m}` is not a pair")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| meta.bad("tokenizer.ggml.merges", e))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let pre = meta
        .optional_string("tokenizer.ggml.pre")?
        .unwrap_or("default");
    inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    let types: Vec<i32> = match meta.values.get("tokenizer.ggml.token_type") {
        Some(value) => value
            .to_vec()
            .map_err(|e| meta.bad("tokenizer.ggml.token_type", e))?
            .iter()
            .map(|v| v.to_i32().unwrap_or(1))
            .collect(),
        None => Vec::new(),
    };
    // llama.cpp token types: 3 control, 4 user-defined.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(token, t)| AddedToken::from((*token).to_owned(), *t == 3))
        .collect();
    inner.add_special_tokens(&special);
    let token_at = |key: &str| -> Result<Option<String>> {
        Ok(meta
            .optional(key, Metadata::u32)?
            .and_then(|id| tokens.get(id as usize))
            .map(|t| (*t).to_owned()))
    };
    Ok(Tokenizer::new(
        inner,
        token_at("tokenizer.ggml.bos_token_id")?,
        token_at("tokenizer.ggml.eos_token_id")?,
    ))
}

/// The pre-tokenizer llama.cpp uses for `pre`.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(pattern.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])
        .into())
    };
    match pre {
        // SmolLM: digits one by one, then GPT-2's byte-level split.
        "smollm" => Ok(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into()),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_SPLIT),
        "llama-bpe" | "llama3" | "smaug-bpe" => split(LLAMA3_SPLIT),
        _ => Ok(ByteLevel::new(false, true, true).into()),
    }
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
