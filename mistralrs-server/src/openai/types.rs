//! Request bodies of the OpenAI API and their translation into engine requests.
//!
//! Unknown fields are ignored, as OpenAI's clients send many; fields with the
//! wrong type are 400s naming the field (serde's message).

use axum::extract::FromRequest;
use mistralrs_core::ModelInfo;
use mistralrs_core::request::{Prompt, Request};
use mistralrs_core::sampling::SamplingParams;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::tool_loop::{DEFAULT_MAX_TOOL_ROUNDS, MAX_TOOL_ROUNDS};
use super::tools::{self, ToolFields, ToolParser};

/// `axum::Json` whose rejections are OpenAI-style errors.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by chat and text completions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonParams {
    /// Model name; the default model when absent.
    pub model: Option<String>,
    /// Sampling temperature (OpenAI's default is 1).
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Top-k sampling (extension, as vLLM).
    pub top_k: Option<usize>,
    /// Min-p sampling (extension, as vLLM).
    pub min_p: Option<f32>,
    /// Most tokens to generate.
    pub max_tokens: Option<usize>,
    /// Newer name of `max_tokens` in the chat API.
    pub max_completion_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// OpenAI presence penalty.
    pub presence_penalty: Option<f32>,
    /// OpenAI frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Hugging Face repetition penalty (extension).
    pub repetition_penalty: Option<f32>,
    /// Completions per prompt; only 1 is served.
    pub n: Option<usize>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options.
    pub stream_options: Option<StreamOptions>,
    /// Keep generating past end-of-sequence tokens (extension).
    #[serde(default)]
    pub ignore_eos: bool,
}

impl CommonParams {
    /// An engine request for `prompt`, returning `top_logprobs` alternatives
    /// when `logprobs` is set.
    pub fn to_request(&self, prompt: Prompt, logprobs: Option<usize>) -> Result<Request, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only n = 1 is supported"));
        }
        let defaults = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_k: self.top_k,
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: self
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed,
            logprobs,
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        Ok(Request {
            prompt,
            sampling,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            stop,
            stop_token_ids: Vec::new(),
            ignore_eos: self.ignore_eos,
            constraint: None,
            keep_special_tokens: false,
        })
    }

    /// Whether the stream ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// The conversation.
    pub messages: Vec<Value>,
    /// Functions the model may call.
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or a named function.
    pub tool_choice: Option<Value>,
    /// Several calls in one answer (default true).
    pub parallel_tool_calls: Option<bool>,
    /// `text`, `json_object` or `json_schema`: what the answer must be.
    pub response_format: Option<Value>,
    /// Forwarded MCP tools the server runs for the model (extension).
    pub mcp_tools: Option<Vec<String>>,
    /// Most rounds of MCP tool calls before the answer (extension; default 5).
    pub max_tool_rounds: Option<usize>,
    /// Return log-probabilities of the output tokens.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token (0-20), with `logprobs`.
    pub top_logprobs: Option<usize>,
    /// The rest.
    #[serde(flatten)]
    pub common: CommonParams,
}

impl ChatCompletionRequest {
    /// The engine request for `model`, and the tool-call format its answer is
    /// read in when tools are offered (`parser` overrides the template's).
    pub fn engine_request(
        &self,
        model: &ModelInfo,
        parser: Option<ToolParser>,
        logprobs: Option<usize>,
    ) -> Result<(Request, Option<ToolParser>), ApiError> {
        let fields = ToolFields {
            tools: self.tools.as_deref(),
            tool_choice: self.tool_choice.as_ref(),
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: self.response_format.as_ref(),
        };
        let plan = tools::plan(self.messages()?, fields, model, parser)?;
        let mut request = self.common.to_request(plan.prompt, logprobs)?;
        request.constraint = plan.constraint;
        request.keep_special_tokens = plan.parser.is_some_and(ToolParser::needs_special_tokens);
        Ok((request, plan.parser))
    }

    /// Takes the MCP tools out of the request: `mcp_tools`, and the
    /// `{"type": "mcp", "server_label": ...}` entries of `tools`.
    pub fn take_mcp_selection(&mut self) -> Result<McpSelection, ApiError> {
        let mut selection = McpSelection {
            names: self.mcp_tools.take().unwrap_or_default(),
            servers: Vec::new(),
            max_rounds: self.max_tool_rounds.unwrap_or(DEFAULT_MAX_TOOL_ROUNDS),
        };
        if selection.max_rounds > MAX_TOOL_ROUNDS {
            return Err(ApiError::invalid(
                "max_tool_rounds",
                format!("`max_tool_rounds` is at most {MAX_TOOL_ROUNDS}"),
            ));
        }
        if let Some(tools) = self.tools.as_mut() {
            let mut servers = Vec::new();
            for (i, tool) in tools.iter().enumerate() {
                if tool["type"] == "mcp" {
                    let label = tool["server_label"].as_str().ok_or_else(|| {
                        ApiError::invalid(
                            "tools",
                            format!("tools[{i}]: an MCP tool needs `server_label`"),
                        )
                    })?;
                    servers.push(label.to_owned());
                }
            }
            tools.retain(|t| t["type"] != "mcp");
            selection.servers = servers;
        }
        Ok(selection)
    }

    /// The messages checked and text-part arrays joined into strings, the form
    /// chat templates expect.
    fn messages(&self) -> Result<Vec<Value>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| normalize_message(i, m))
            .collect()
    }

    /// Alternatives per token, when log-probabilities are asked for.
    pub fn logprobs(&self) -> Option<usize> {
        self.logprobs.then(|| self.top_logprobs.unwrap_or(0))
    }
}

fn normalize_message(i: usize, message: &Value) -> Result<Value, ApiError> {
    let Some(object) = message.as_object() else {
        return Err(ApiError::invalid(
            "messages",
            format!("messages[{i}] must be an object"),
        ));
    };
    if !object.get("role").is_some_and(Value::is_string) {
        return Err(ApiError::invalid(
            "messages",
            format!("messages[{i}].role must be a string"),
        ));
    }
    let mut message = message.clone();
    match object.get("content") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::invalid(
                            "messages",
                            format!("messages[{i}].content: only text parts are supported"),
                        ));
                    }
                }
            }
            message["content"] = Value::String(text);
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "messages",
                format!("messages[{i}].content must be a string or an array of parts"),
            ));
        }
    }
    Ok(message)
}

/// The forwarded MCP tools a chat request asks the server to run.
#[derive(Debug, Clone, Default)]
pub struct McpSelection {
    /// Forwarded tool names.
    pub names: Vec<String>,
    /// Upstream servers whose every tool is offered.
    pub servers: Vec<String>,
    /// Most rounds of calls.
    pub max_rounds: usize,
}

impl McpSelection {
    /// Whether the request names no MCP tool.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.servers.is_empty()
    }
}

/// `prompt` of a text completion.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// Several texts (only one is served).
    Texts(Vec<String>),
    /// Several token lists (only one is served).
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: PromptField,
    /// Alternatives per token with their log-probabilities (0-20).
    pub logprobs: Option<usize>,
    /// Repeat the prompt in the output (not supported).
    #[serde(default)]
    pub echo: bool,
    /// Text after the completion (not supported).
    pub suffix: Option<String>,
    /// The rest.
    #[serde(flatten)]
    pub common: CommonParams,
}

impl CompletionRequest {
    /// The prompt, refusing what is not served.
    pub fn prompt(&self) -> Result<Prompt, ApiError> {
        if self.echo {
            return Err(ApiError::invalid("echo", "`echo` is not supported"));
        }
        if self.suffix.is_some() {
            return Err(ApiError::invalid("suffix", "`suffix` is not supported"));
        }
        let one = |n: usize| {
            if n == 1 {
                Ok(())
            } else {
                Err(ApiError::invalid(
                    "prompt",
                    "only one prompt per request is supported",
                ))
            }
        };
        Ok(match &self.prompt {
            PromptField::Text(t) => Prompt::Text(t.clone()),
            PromptField::Tokens(ids) => Prompt::Tokens(ids.clone()),
            PromptField::Texts(v) => {
                one(v.len())?;
                Prompt::Text(v[0].clone())
            }
            PromptField::TokenLists(v) => {
                one(v.len())?;
                Prompt::Tokens(v[0].clone())
            }
        })
    }
}
