//! What callers send the engine and what streams back.

use std::time::Duration;

use serde_json::Value;

use crate::constraint::OutputConstraint;
use crate::sampling::SamplingParams;

/// The text to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Plain text, tokenized with the tokenizer's special tokens (completions).
    Text(String),
    /// OpenAI chat messages (and tool definitions) rendered by the chat template.
    Chat {
        /// The messages, as OpenAI sends them.
        messages: Vec<Value>,
        /// Tool definitions, as OpenAI sends them.
        tools: Option<Vec<Value>>,
    },
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What to continue.
    pub prompt: Prompt,
    /// How to choose tokens.
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None` runs to the end of the context.
    pub max_tokens: Option<usize>,
    /// Strings that end generation; they are not part of the output.
    pub stop: Vec<String>,
    /// Tokens that end generation, besides the model's end-of-sequence tokens.
    pub stop_token_ids: Vec<u32>,
    /// Keep going past the model's end-of-sequence tokens.
    pub ignore_eos: bool,
    /// What the output must match, enforced while sampling.
    pub constraint: Option<OutputConstraint>,
    /// Keep special tokens in the output text (tool-call markers such as
    /// Mistral's `[TOOL_CALLS]` are special tokens).
    pub keep_special_tokens: bool,
}

impl Request {
    /// A greedy request for `prompt` with default settings.
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            constraint: None,
            keep_special_tokens: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token, a stop token or a stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The caller cancelled the request.
    Cancelled,
}

impl FinishReason {
    /// The name OpenAI's API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens whose keys and values came from the prefix cache.
    pub cached_prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    /// Its id.
    pub id: u32,
    /// Text released with this token: may be empty while a multi-byte character
    /// or a possible stop string is incomplete, and may hold text of earlier tokens.
    pub text: String,
    /// Log-probability, when asked for.
    pub logprob: Option<f32>,
    /// Top alternatives `(id, text, logprob)`, when asked for.
    pub top_logprobs: Vec<(u32, String, f32)>,
}

/// The end of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Time from submission to the first token, when one was produced.
    pub time_to_first_token: Option<Duration>,
    /// Time from submission to the end.
    pub duration: Duration,
}

/// What a request's stream yields: tokens, then exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A token was generated.
    Token(GeneratedToken),
    /// The request finished.
    Done(Completion),
    /// The request failed after it was accepted.
    Error(Failure),
}

/// Why an accepted request failed. The kind says whose fault it is, so the
/// server maps it to a status once; the details of an internal failure go to
/// the server log where it happened, never to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The server is shutting down: retry later or elsewhere.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The engine failed (a forward pass, the KV cache).
    #[error("internal error; see the server log")]
    Internal,
}
