//! A GGUF file's tokenizer, built from its `tokenizer.ggml.*` metadata as
//! llama.cpp reads it: `gpt2` (byte-level BPE with merges and the pre-tokenizer
//! `tokenizer.ggml.pre` names) and `llama` (SentencePiece BPE with scores, byte
//! fallback and a space prefix: Llama 1/2, Mistral v0.1-v0.3, Phi-3, ...).

use std::cmp::Ordering;
use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::gguf::Metadata;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The `tokenizer.ggml.model` values this server builds.
const TOKENIZER_MODELS: [&str; 2] = ["gpt2", "llama"];

/// llama.cpp's pre-tokenizer regexes, by `tokenizer.ggml.pre`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// SentencePiece's word-boundary mark, which stands for a space in its pieces.
const SPACE_MARK: &str = "\u{2581}";

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The tokenizer of the file `meta` describes, with its special tokens.
pub(super) fn tokenizer(meta: &Metadata<'_>) -> Result<Tokenizer> {
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let types = meta
        .optional("tokenizer.ggml.token_type", Metadata::i32s)?
        .unwrap_or_default();
    let model = meta.string("tokenizer.ggml.model")?;
    let mut inner = match model {
        "gpt2" => byte_level_bpe(meta, &tokens)?,
        "llama" => sentencepiece_bpe(meta, &tokens)?,
        _ => {
            return Err(Error::files(
                meta.path,
                format!(
                    "tokenizer.ggml.model `{model}` is not supported from GGUF metadata (supported: {}); put the model's tokenizer.json beside the file",
                    TOKENIZER_MODELS.join(", ")
                ),
            ));
        }
    };
    // Control and unknown tokens are special (never produced from plain text
    // pieces, skipped when decoding); user-defined ones are matched whole.
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| matches!(**t, UNKNOWN | CONTROL | USER_DEFINED))
        .map(|(token, t)| AddedToken::from((*token).to_owned(), *t != USER_DEFINED))
        .collect();
    inner.add_special_tokens(&added);
    let token_at = |key: &str| -> Result<Option<(u32, String)>> {
        Ok(meta
            .optional(key, Metadata::u32)?
            .and_then(|id| tokens.get(id as usize).map(|t| (id, (*t).to_owned()))))
    };
    let bos = token_at("tokenizer.ggml.bos_token_id")?;
    // Plain-text prompts (completions) get BOS in front where the file asks for it,
    // as llama.cpp does; chat templates write their own.
    let add_bos = meta
        .optional("tokenizer.ggml.add_bos_token", Metadata::bool)?
        .unwrap_or(model == "llama");
    if let (true, Some((id, token))) = (add_bos, &bos) {
        let bad = |e: String| meta.bad("tokenizer.ggml.bos_token_id", e);
        let template = TemplateProcessing::builder()
            .try_single(format!("{token} $A"))
            .map_err(bad)?
            .special_tokens(vec![(token.clone(), *id)])
            .build()
            .map_err(|e| bad(e.to_string()))?;
        inner.with_post_processor(Some(template));
    }
    Ok(Tokenizer::new(
        inner,
        bos.map(|(_, t)| t),
        token_at("tokenizer.ggml.eos_token_id")?.map(|(_, t)| t),
    ))
}

/// `gpt2`: byte-level BPE from the file's merges and pre-tokenizer.
fn byte_level_bpe(meta: &Metadata<'_>, tokens: &[&str]) -> Result<tokenizers::Tokenizer> {
    let merges = meta
        .strings("tokenizer.ggml.merges")?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| meta.bad("tokenizer.ggml.merges", format!("`{m}` is not a pair")))
        })
        .collect::<Result<Merges>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .build()
        .map_err(|e| meta.bad("tokenizer.ggml.merges", e))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let pre = meta
        .optional_string("tokenizer.ggml.pre")?
        .unwrap_or("default");
    inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(inner)
}

/// `llama`: SentencePiece's BPE, which merges the pair whose joined piece
/// scores highest. The file keeps scores, not merges; the merges are derived
/// from them as transformers' GGUF converter does (every split of a piece into
/// two pieces of the vocabulary, ranked by the joined piece's score), so that
/// Hugging Face's BPE makes the same choices. Spaces become `▁`, with one in
/// front of each text run unless `tokenizer.ggml.add_space_prefix` is false;
/// characters outside the vocabulary fall back to byte tokens (`<0x..>`).
fn sentencepiece_bpe(meta: &Metadata<'_>, tokens: &[&str]) -> Result<tokenizers::Tokenizer> {
    let scores = meta.f32s("tokenizer.ggml.scores")?;
    if scores.len() != tokens.len() {
        return Err(meta.bad(
            "tokenizer.ggml.scores",
            format!("{} scores for {} tokens", scores.len(), tokens.len()),
        ));
    }
    let score_of: HashMap<&str, f32> = tokens.iter().copied().zip(scores.iter().copied()).collect();
    let mut ranked: Vec<(f32, &str, &str)> = Vec::new();
    for (piece, &score) in tokens.iter().zip(&scores) {
        let mut splits: Vec<(&str, &str)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(left, right)| score_of.contains_key(left) && score_of.contains_key(right))
            .collect();
        // transformers orders one piece's splits by their halves' scores, highest first.
        let halves = |(left, right): &(&str, &str)| (score_of[left], score_of[right]);
        splits.sort_by(|a, b| halves(b).partial_cmp(&halves(a)).unwrap_or(Ordering::Equal));
        ranked.extend(splits.into_iter().map(|(left, right)| (score, left, right)));
    }
    // Stable: pieces of equal score keep the vocabulary's order.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges: Merges = ranked
        .into_iter()
        .map(|(_, left, right)| (left.to_owned(), right.to_owned()))
        .collect();
    let unknown = meta
        .optional("tokenizer.ggml.unknown_token_id", Metadata::u32)?
        .and_then(|id| tokens.get(id as usize))
        .map_or("<unk>", |t| *t);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .unk_token(unknown.to_owned())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| meta.bad("tokenizer.ggml.scores", e))?;
    let space_prefix = meta
        .optional("tokenizer.ggml.add_space_prefix", Metadata::bool)?
        .unwrap_or(true);
    let spaces = Replace::new(" ", SPACE_MARK).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let unspaces = Replace::new(SPACE_MARK, " ").map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut normalizers = Vec::new();
    let mut decoders = vec![
        unspaces.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        normalizers.push(Prepend::new(SPACE_MARK.to_owned()).into());
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    normalizers.push(spaces.into());
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
}

/// Token ids by their text.
fn vocab(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(id, token)| ((*token).to_owned(), id as u32))
        .collect()
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
