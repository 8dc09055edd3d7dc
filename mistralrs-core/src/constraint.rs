//! Constrained decoding: output that must match a JSON schema or a Lark grammar.
//!
//! llguidance (the grammar engine mistral.rs uses) computes, before each token,
//! the set of tokens that keep the output inside the grammar; the sampler draws
//! only from that set. A model's [`Grammars`] (its token trie and the engine's
//! lexer slices) is built once, on the first constrained request; each request
//! compiles its own grammar at submission, so a bad schema is the caller's 400.

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokenId};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use toktrie_hf_tokenizers::ByteTokenizer;

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// What a request's output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputConstraint {
    /// A JSON value valid against this JSON schema.
    JsonSchema(Value),
    /// Any JSON object.
    JsonObject,
    /// A grammar in llguidance's Lark dialect (tool-call formats use it).
    Lark(String),
}

impl OutputConstraint {
    fn grammar(&self) -> TopLevelGrammar {
        match self {
            Self::JsonSchema(schema) => TopLevelGrammar::from_json_schema(compact(schema)),
            Self::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(&json!({"type": "object"})))
            }
            Self::Lark(source) => TopLevelGrammar::from_lark(source.clone()),
        }
    }
}

/// The schema with llguidance's option for JSON without free whitespace
/// (`x-guidance`), unless the schema sets its own: a weak model would otherwise
/// be free to pad the output with newlines until `max_tokens`.
fn compact(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object
            .entry("x-guidance")
            .or_insert_with(|| json!({"whitespace_flexible": false}));
    }
    schema
}

fn unsupported(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!(
        "constrained decoding can't use this tokenizer: {e}"
    ))
}

/// A model's grammar engine: its vocabulary as llguidance sees it.
pub struct Grammars {
    factory: ParserFactory,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grammars")
    }
}

impl Grammars {
    /// The engine for `tokenizer`, padded to the model's `vocab_size` logits,
    /// where any of `eos_token_ids` ends a finished output.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize, eos_token_ids: &[u32]) -> Result<Self> {
        let mut bytes =
            ByteTokenizer::from_tokenizer(tokenizer.hf().clone()).map_err(unsupported)?;
        if !eos_token_ids.is_empty() {
            bytes.set_eos_tokens(eos_token_ids);
        }
        let env: TokEnv = bytes
            .into_tok_env(Some(vocab_size.max(tokenizer.vocab_size())))
            .map_err(unsupported)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(unsupported)?;
        factory.set_stderr_log_level(0);
        Ok(Self { factory })
    }

    /// Compiles `constraint` for one request; a grammar the engine refuses is
    /// an invalid request naming why.
    pub fn compile(&self, constraint: &OutputConstraint) -> Result<ConstrainedOutput> {
        let parser = self
            .factory
            .create_parser(constraint.grammar())
            .map_err(|e| {
                Error::InvalidRequest(format!("the output constraint can't be compiled: {e}"))
            })?;
        Ok(ConstrainedOutput {
            matcher: Matcher::new(Ok(parser)),
        })
    }
}

/// One sequence's position in its grammar.
pub struct ConstrainedOutput {
    matcher: Matcher,
}

impl std::fmt::Debug for ConstrainedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConstrainedOutput")
    }
}

impl ConstrainedOutput {
    /// Sets the score of every token the grammar does not allow next to -inf.
    pub fn mask(&mut self, scores: &mut [f32]) -> std::result::Result<(), String> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| format!("grammar mask: {e}"))?;
        for (token, score) in scores.iter_mut().enumerate() {
            if !allowed.is_allowed(token as TokenId) {
                *score = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Moves past `token`, which the last mask allowed.
    pub fn accept(&mut self, token: u32) -> std::result::Result<(), String> {
        if self.matcher.is_stopped() {
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| format!("grammar step: {e}"))
    }

    /// Whether the grammar allows nothing more: the output is complete.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}
