//! Running a request on an engine and shaping what comes back as an OpenAI chat or
//! text completion: one JSON body, or server-sent event chunks ending in `[DONE]`.
//!
//! When a streaming client disconnects, axum drops the response body, which drops
//! the engine's `RequestStream`, which cancels the sequence and frees its blocks.

use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use mistralrs_core::metrics::{ToolParserLabels, metrics};
use mistralrs_core::request::{Completion, Event, GeneratedToken, Request, Usage};
use mistralrs_core::tokenizer::Tokenizer;
use mistralrs_core::{EngineHandle, RequestStream};
use serde_json::{Value, json};

use super::error::ApiError;
use super::tools::{ParsedCall, StreamPiece, ToolCallStream, ToolParser};

/// Which API shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/v1/chat/completions`, reading tool calls in this format when tools
    /// were offered.
    Chat {
        /// The tool-call format.
        tools: Option<ToolParser>,
    },
    /// `/v1/completions`.
    Completion,
}

impl Endpoint {
    fn id_prefix(self) -> &'static str {
        match self {
            Self::Chat { .. } => "chatcmpl",
            Self::Completion => "cmpl",
        }
    }

    fn object(self, streaming: bool) -> &'static str {
        match (self, streaming) {
            (Self::Chat { .. }, false) => "chat.completion",
            (Self::Chat { .. }, true) => "chat.completion.chunk",
            (Self::Completion, _) => "text_completion",
        }
    }

    /// The endpoint's label in logs and metrics.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Chat { .. } => "chat_completions",
            Self::Completion => "completions",
        }
    }
}

/// Fields every body of one response shares.
pub(super) struct Envelope {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
}

impl Envelope {
    /// A new response's id and time, for `model`.
    pub(super) fn new(endpoint: Endpoint, model: String) -> Self {
        Self {
            endpoint,
            id: format!("{}-{}", endpoint.id_prefix(), uuid::Uuid::new_v4().simple()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            model,
        }
    }

    /// A body (a chunk when `streaming`) with `choices`.
    pub(super) fn body(&self, streaming: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.endpoint.object(streaming),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }
}

/// Logs one request at info when it ends, however it ends; never its content.
struct RequestLog {
    id: String,
    model: String,
    endpoint: Endpoint,
    started: Instant,
    prompt_tokens: usize,
    completion_tokens: usize,
    outcome: &'static str,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        tracing::info!(
            request_id = %self.id,
            model = %self.model,
            endpoint = self.endpoint.label(),
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            duration_ms = self.started.elapsed().as_millis() as u64,
            outcome = self.outcome,
            "request finished"
        );
    }
}

/// Submits `request` to `engine` and answers as `endpoint`, streaming or not.
pub(super) async fn respond(
    engine: EngineHandle,
    endpoint: Endpoint,
    request: Request,
    streaming: bool,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let logprobs = request.sampling.logprobs.is_some();
    let envelope = Envelope::new(endpoint, engine.info().name.clone());
    let stream = engine.submit(request)?;
    let log = RequestLog {
        id: envelope.id.clone(),
        model: envelope.model.clone(),
        endpoint,
        started: Instant::now(),
        prompt_tokens: 0,
        completion_tokens: 0,
        outcome: "disconnected",
    };
    let tool_stream = match endpoint {
        Endpoint::Chat {
            tools: Some(parser),
        } if streaming => Some(ToolCallStream::new(parser, true)),
        _ => None,
    };
    let shaper = Shaper {
        envelope,
        engine,
        logprobs,
        include_usage,
        log,
        text_offset: 0,
        tool_stream,
        calls_sent: 0,
    };
    if streaming {
        Ok(shaper.into_sse(stream).into_response())
    } else {
        shaper
            .collect(stream)
            .await
            .map(|body| Json(body).into_response())
    }
}

/// Turns engine events into response bodies.
struct Shaper {
    envelope: Envelope,
    engine: EngineHandle,
    logprobs: bool,
    include_usage: bool,
    log: RequestLog,
    /// Characters of output so far (completions' `text_offset`).
    text_offset: usize,
    /// Tool calls read out of a streamed chat answer.
    tool_stream: Option<ToolCallStream>,
    /// Tool calls streamed so far (the next call's `index`).
    calls_sent: usize,
}

impl Shaper {
    fn tokenizer(&self) -> &Tokenizer {
        &self.engine.info().tokenizer
    }

    fn finished(&mut self, completion: &Completion, outcome: &'static str) {
        self.log.prompt_tokens = completion.usage.prompt_tokens;
        self.log.completion_tokens = completion.usage.completion_tokens;
        self.log.outcome = outcome;
    }

    async fn collect(mut self, mut stream: RequestStream) -> Result<Value, ApiError> {
        let mut tokens = Vec::new();
        while let Some(event) = stream.next_event().await {
            match event {
                Event::Token(token) => tokens.push(token),
                Event::Done(completion) => {
                    self.finished(&completion, completion.finish_reason.as_str());
                    return Ok(self.full_body(&tokens, &completion));
                }
                Event::Error(failure) => {
                    self.log.outcome = "error";
                    return Err(ApiError::from(mistralrs_core::Error::from(failure)));
                }
            }
        }
        Err(mistralrs_core::Error::EngineStopped.into())
    }

    fn full_body(&mut self, tokens: &[GeneratedToken], completion: &Completion) -> Value {
        let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
        let logprobs = self.logprobs.then(|| self.logprobs_json(tokens));
        let finish = completion.finish_reason.as_str();
        let choice = match self.envelope.endpoint {
            Endpoint::Chat {
                tools: Some(parser),
            } => {
                let parsed = parser.parse(&text);
                self.count_calls(parser, parsed.calls.len(), parsed.failures);
                let mut message = json!({"role": "assistant", "content": text});
                let mut finish = finish;
                if !parsed.calls.is_empty() {
                    let calls: Vec<Value> = parsed.calls.iter().map(whole_call).collect();
                    message["content"] = if parsed.content.is_empty() {
                        Value::Null
                    } else {
                        Value::String(parsed.content)
                    };
                    message["tool_calls"] = Value::Array(calls);
                    finish = calls_finish(finish);
                }
                json!({"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish})
            }
            Endpoint::Chat { tools: None } => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
            Endpoint::Completion => {
                json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        let mut body = self.envelope.body(false, json!([choice]));
        body["usage"] = usage_json(completion);
        body
    }

    /// Log-probabilities in the endpoint's format.
    fn logprobs_json(&mut self, tokens: &[GeneratedToken]) -> Value {
        let tokenizer = self.tokenizer().clone();
        let text_of = |id: u32| tokenizer.decode(&[id], false).unwrap_or_default();
        match self.envelope.endpoint {
            Endpoint::Chat { .. } => {
                let entry = |text: String, logprob: f32| json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()});
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut e = entry(text_of(t.id), t.logprob.unwrap_or(0.0));
                        e["top_logprobs"] = t
                            .top_logprobs
                            .iter()
                            .map(|(_, s, lp)| entry(s.clone(), *lp))
                            .collect();
                        e
                    })
                    .collect();
                json!({ "content": content })
            }
            Endpoint::Completion => {
                let mut offsets = Vec::with_capacity(tokens.len());
                for t in tokens {
                    offsets.push(self.text_offset);
                    self.text_offset += t.text.chars().count();
                }
                json!({
                    "tokens": tokens.iter().map(|t| text_of(t.id)).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": tokens.iter().map(|t| {
                        t.top_logprobs.iter().map(|(_, s, lp)| (s.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
                    }).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
        }
    }

    fn delta_chunk(&mut self, token: &GeneratedToken) -> Value {
        let logprobs = self
            .logprobs
            .then(|| self.logprobs_json(std::slice::from_ref(token)));
        let choice = match self.envelope.endpoint {
            Endpoint::Chat { .. } => {
                json!({"index": 0, "delta": {"content": token.text}, "logprobs": logprobs, "finish_reason": null})
            }
            Endpoint::Completion => {
                json!({"index": 0, "text": token.text, "logprobs": logprobs, "finish_reason": null})
            }
        };
        self.envelope.body(true, json!([choice]))
    }

    /// Chunks for one token of a chat answer with tools: its text pieces and
    /// the calls it completed; the token's log-probabilities ride on the first.
    fn tool_chunks(&mut self, token: &GeneratedToken) -> Vec<Value> {
        let pieces = match self.tool_stream.as_mut() {
            Some(stream) => stream.push(&token.text),
            None => return vec![self.delta_chunk(token)],
        };
        let mut logprobs = self
            .logprobs
            .then(|| self.logprobs_json(std::slice::from_ref(token)));
        let mut chunks = self.piece_chunks(pieces, &mut logprobs);
        if let Some(logprobs) = logprobs {
            chunks.push(self.chat_delta(json!({"content": ""}), Some(logprobs)));
        }
        chunks
    }

    fn piece_chunks(
        &mut self,
        pieces: Vec<StreamPiece>,
        logprobs: &mut Option<Value>,
    ) -> Vec<Value> {
        let mut chunks = Vec::new();
        for piece in pieces {
            match piece {
                StreamPiece::Content(text) => {
                    chunks.push(self.chat_delta(json!({"content": text}), logprobs.take()));
                }
                // As OpenAI streams a call: index, id and name first, then
                // the arguments in pieces.
                StreamPiece::CallStart(name) => {
                    chunks.push(self.call_head(&name, logprobs.take()));
                }
                StreamPiece::Arguments(text) => {
                    chunks.push(self.call_arguments(text, logprobs.take()));
                }
                StreamPiece::Call(call) => {
                    chunks.push(self.call_head(&call.name, logprobs.take()));
                    chunks.push(self.call_arguments(call.arguments.to_string(), None));
                }
            }
        }
        chunks
    }

    /// The first delta of the next call: its index, id, type and name.
    fn call_head(&mut self, name: &str, logprobs: Option<Value>) -> Value {
        let index = self.calls_sent;
        self.calls_sent += 1;
        let head = json!({"tool_calls": [{
            "index": index,
            "id": call_id(),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }]});
        self.chat_delta(head, logprobs)
    }

    /// A piece of the latest call's arguments.
    fn call_arguments(&self, text: String, logprobs: Option<Value>) -> Value {
        let index = self.calls_sent.saturating_sub(1);
        let arguments = json!({"tool_calls": [{"index": index, "function": {"arguments": text}}]});
        self.chat_delta(arguments, logprobs)
    }

    fn chat_delta(&self, delta: Value, logprobs: Option<Value>) -> Value {
        self.envelope.body(
            true,
            json!([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": null}]),
        )
    }

    /// Counts the calls a model wrote and those that could not be read.
    fn count_calls(&self, parser: ToolParser, calls: usize, failures: usize) {
        let labels = ToolParserLabels {
            model: &self.envelope.model,
            parser: parser.label(),
        };
        let m = metrics();
        if calls > 0 {
            m.tool_calls_generated.get(&labels).inc_by(calls as u64);
        }
        if failures > 0 {
            m.tool_call_parse_failures
                .get(&labels)
                .inc_by(failures as u64);
        }
    }

    fn first_chunk(&self) -> Option<Value> {
        matches!(self.envelope.endpoint, Endpoint::Chat { .. }).then(|| {
            self.envelope.body(
                true,
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            )
        })
    }

    fn last_chunks(&mut self, completion: &Completion) -> Vec<Value> {
        let mut chunks = Vec::new();
        let mut finish = completion.finish_reason.as_str();
        if let (
            Some(stream),
            Endpoint::Chat {
                tools: Some(parser),
            },
        ) = (self.tool_stream.take(), self.envelope.endpoint)
        {
            let (pieces, failures) = stream.finish();
            chunks = self.piece_chunks(pieces, &mut None);
            self.count_calls(parser, self.calls_sent, failures);
            if self.calls_sent > 0 {
                finish = calls_finish(finish);
            }
        }
        let choice = match self.envelope.endpoint {
            Endpoint::Chat { .. } => {
                json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completion => {
                json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish})
            }
        };
        chunks.push(self.envelope.body(true, json!([choice])));
        if self.include_usage {
            let mut usage = self.envelope.body(true, json!([]));
            usage["usage"] = usage_json(completion);
            chunks.push(usage);
        }
        chunks
    }

    /// The SSE response: a role chunk (chat), a chunk per token with text, the
    /// finish chunk, the usage chunk when asked, then `[DONE]`.
    fn into_sse(
        self,
        stream: RequestStream,
    ) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
        let first: Vec<Value> = self.first_chunk().into_iter().collect();
        let events = stream::unfold(Some((self, stream)), |state| async move {
            let (mut shaper, mut stream) = state?;
            let bodies = match stream.next_event().await {
                Some(Event::Token(token)) if token.text.is_empty() && !shaper.logprobs => {
                    Vec::new()
                }
                Some(Event::Token(token)) => shaper
                    .tool_chunks(&token)
                    .into_iter()
                    .map(|c| SseEvent::default().data(c.to_string()))
                    .collect(),
                Some(Event::Done(completion)) => {
                    shaper.finished(&completion, completion.finish_reason.as_str());
                    let mut out: Vec<SseEvent> = shaper
                        .last_chunks(&completion)
                        .into_iter()
                        .map(|c| SseEvent::default().data(c.to_string()))
                        .collect();
                    out.push(SseEvent::default().data("[DONE]"));
                    return Some((out, None));
                }
                Some(Event::Error(failure)) => {
                    shaper.log.outcome = "error";
                    let error = ApiError::from(mistralrs_core::Error::from(failure));
                    let out = vec![
                        SseEvent::default().data(error.body().to_string()),
                        SseEvent::default().data("[DONE]"),
                    ];
                    return Some((out, None));
                }
                None => return None,
            };
            Some((bodies, Some((shaper, stream))))
        });
        let head = stream::iter(
            first
                .into_iter()
                .map(|c| vec![SseEvent::default().data(c.to_string())]),
        );
        let all = head
            .chain(events)
            .flat_map(|batch| stream::iter(batch.into_iter().map(Ok)));
        Sse::new(all).keep_alive(KeepAlive::default())
    }
}

/// `finish_reason` of an answer that made calls: `tool_calls` unless it was
/// cut short.
pub(super) fn calls_finish(finish: &'static str) -> &'static str {
    if finish == "stop" {
        "tool_calls"
    } else {
        finish
    }
}

/// A fresh call id, in OpenAI's shape.
pub(super) fn call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// A call as a whole (non-streamed) message carries it.
fn whole_call(call: &ParsedCall) -> Value {
    call_json(&call_id(), call)
}

/// A call with its id, as assistant messages carry it.
pub(super) fn call_json(id: &str, call: &ParsedCall) -> Value {
    json!({
        "id": id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments.to_string()},
    })
}

fn usage_json(completion: &Completion) -> Value {
    usage_of(completion.usage)
}

/// `usage` of a response.
pub(super) fn usage_of(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
    })
}
