//! The model's tokenizer (`tokenizer.json`) with its special tokens
//! (`tokenizer_config.json`), and incremental decoding for streaming.

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// A special token in `tokenizer_config.json`: a string or an AddedToken object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Text(String),
    Object { content: String },
}

impl SpecialToken {
    fn content(&self) -> &str {
        match self {
            Self::Text(s) | Self::Object { content: s } => s,
        }
    }
}

/// The parts of `tokenizer_config.json` the engine reads.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenizerConfig {
    bos_token: Option<SpecialToken>,
    eos_token: Option<SpecialToken>,
    /// One template, or a list of named ones (`default`, `tool_use`, ...).
    pub(crate) chat_template: Option<serde_json::Value>,
}

impl TokenizerConfig {
    pub(crate) fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::files(&path, e.to_string())),
            Err(_) => Ok(Self::default()),
        }
    }
}

/// A tokenizer with the model's special tokens.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// A tokenizer built elsewhere (a GGUF file's metadata) with its special tokens.
    pub(crate) fn new(
        inner: tokenizers::Tokenizer,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Self {
        Self {
            inner,
            bos_token,
            eos_token,
        }
    }

    /// Loads `tokenizer.json` and the special tokens of `tokenizer_config.json`.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::files(&path, e.to_string()))?;
        let config = TokenizerConfig::from_folder(dir)?;
        Ok(Self {
            inner,
            bos_token: config.bos_token.map(|t| t.content().to_owned()),
            eos_token: config.eos_token.map(|t| t.content().to_owned()),
        })
    }

    /// The tokenizer in a GGUF file's metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(path: &Path) -> Result<Self> {
        crate::model::gguf_tokenizer(path)
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's
    /// post-processor (usually a BOS token in front).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, add_special_tokens)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, without special tokens when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(tok_err)
    }

    /// The Hugging Face tokenizer underneath (grammar engines read its vocabulary).
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The beginning-of-sequence token, as text.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The end-of-sequence token, as text.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The end-of-sequence token's id.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token().and_then(|t| self.token_id(t))
    }
}

/// Turns a growing list of token ids into text pieces without splitting a
/// character that spans several tokens: a piece is released only once its text
/// no longer ends in a replacement character.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    keep_special: bool,
}

impl IncrementalDecoder {
    /// A decoder that writes special tokens out as text when `keep_special`.
    pub fn new(keep_special: bool) -> Self {
        Self {
            keep_special,
            ..Self::default()
        }
    }

    /// Adds `id` and returns the new text it completes, if any.
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let skip = !self.keep_special;
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], skip)?;
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') || !full.starts_with(&prefix) {
            return Ok(None);
        }
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(Some(full[prefix.len()..].to_owned()))
    }
}
