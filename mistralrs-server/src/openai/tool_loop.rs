//! The served model calling forwarded MCP tools itself. A chat request names
//! forwarded tools (`mcp_tools`, or `{"type": "mcp", "server_label": ...}` in
//! `tools`); each round the model answers with those tools offered, its calls
//! of them run through the forwarder (policy, the caller's scope, the cache and
//! the metrics apply) all at once, the results go back as `tool` messages, and
//! the next round starts, until an answer without calls, a call of one of the
//! client's own functions (returned to the client as usual), or
//! `max_tool_rounds`. Failed calls are results the model reads, never a failed
//! request.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};

use mistralrs_core::EngineHandle;
use mistralrs_core::metrics::{ModelLabel, metrics};
use mistralrs_core::request::{Event, Usage};
use mistralrs_mcp::{CallerScope, Forwarder};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ApiError;
use super::respond::{Endpoint, Envelope, call_id, call_json, usage_of};
use super::tools::{ParsedCall, StreamPiece, ToolCallStream, ToolParser};
use super::types::{ChatCompletionRequest, McpSelection};
use crate::config::Config;

/// Default of `max_tool_rounds`.
pub const DEFAULT_MAX_TOOL_ROUNDS: usize = 5;
/// The most rounds a request may ask for.
pub const MAX_TOOL_ROUNDS: usize = 20;

/// `[[models]] mcp_tools`: the forwarded tools each model is offered when a
/// request names none.
#[derive(Debug, Default)]
pub struct McpToolDefaults(HashMap<String, Vec<String>>);

impl McpToolDefaults {
    /// The defaults of every configured model, by served name.
    pub fn from_config(config: &Config) -> Self {
        Self(
            config
                .models
                .iter()
                .filter(|m| !m.mcp_tools.is_empty())
                .map(|m| (m.served_name(), m.mcp_tools.clone()))
                .collect(),
        )
    }

    /// `selection` with `model`'s default tools when it names none: only
    /// those available now, so an upstream that is down never fails a chat.
    pub fn apply(
        &self,
        model: &str,
        mut selection: McpSelection,
        forwarder: Option<&Arc<Forwarder>>,
        caller: &CallerScope,
    ) -> McpSelection {
        if !selection.is_empty() {
            return selection;
        }
        if let (Some(defaults), Some(forwarder)) = (self.0.get(model), forwarder) {
            let visible = forwarder.list_tools(caller);
            selection.names = defaults
                .iter()
                .filter(|name| visible.iter().any(|t| t.name == name.as_str()))
                .cloned()
                .collect();
        }
        selection
    }
}

/// The forwarded tools one request offers its model.
pub struct McpToolset {
    forwarder: Arc<Forwarder>,
    caller: Arc<CallerScope>,
    names: HashSet<String>,
    definitions: Vec<Value>,
}

impl std::fmt::Debug for McpToolset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpToolset")
            .field("names", &self.names)
            .finish()
    }
}

impl McpToolset {
    /// The forwarded tools `names` and every tool of `servers` that `caller`
    /// may use, as function definitions; any named tool the caller can't see
    /// (unknown, down, blocked by policy or scope) is a 400.
    pub fn resolve(
        forwarder: Option<&Arc<Forwarder>>,
        caller: Arc<CallerScope>,
        names: &[String],
        servers: &[String],
    ) -> Result<Self, ApiError> {
        let Some(forwarder) = forwarder else {
            return Err(ApiError::invalid(
                "mcp_tools",
                "this server forwards no MCP tools ([mcp_client] servers and the tool-forwarding feature)",
            ));
        };
        let visible = forwarder.list_tools(&caller);
        let mut chosen = Vec::new();
        for name in names {
            match visible.iter().find(|t| t.name == name.as_str()) {
                Some(tool) => chosen.push(tool),
                None => {
                    return Err(ApiError::invalid(
                        "mcp_tools",
                        format!("`{name}` is not a forwarded tool available to this caller"),
                    ));
                }
            }
        }
        for server in servers {
            let before = chosen.len();
            chosen.extend(
                visible.iter().filter(|t| {
                    forwarder.namespace_of(&t.name).as_deref() == Some(server.as_str())
                }),
            );
            if chosen.len() == before {
                return Err(ApiError::invalid(
                    "tools",
                    format!("the MCP server `{server}` offers no tools to this caller"),
                ));
            }
        }
        let mut seen = HashSet::new();
        chosen.retain(|t| seen.insert(t.name.to_string()));
        let definitions = chosen
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {
                    "name": tool.name,
                    "description": tool.description.as_deref().unwrap_or_default(),
                    "parameters": Value::Object((*tool.input_schema).clone()),
                }})
            })
            .collect();
        Ok(Self {
            forwarder: Arc::clone(forwarder),
            caller,
            names: seen,
            definitions,
        })
    }

    /// Runs one call; what the model reads back, and whether it failed. A
    /// name not offered (a tool the caller may not use, or none at all) is
    /// refused here, as the forwarder would refuse it.
    async fn call(&self, call: &ParsedCall, cancel: &CancellationToken) -> (String, bool) {
        if !self.names.contains(&call.name) {
            return (
                format!("error: `{}` is not one of the tools offered", call.name),
                true,
            );
        }
        let arguments = call.arguments.as_object().cloned().unwrap_or_default();
        self.forwarder
            .call_for_model(&self.caller, &call.name, arguments, cancel.clone())
            .await
    }
}

/// What a tool loop reports as it goes.
#[derive(Debug)]
pub enum LoopEvent {
    /// Answer text.
    Content(String),
    /// The model called a forwarded tool.
    McpCall {
        /// The call's id in the conversation.
        id: String,
        /// The forwarded tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A forwarded tool answered.
    McpResult {
        /// The call's id.
        id: String,
        /// What the model reads.
        content: String,
        /// Whether the call failed.
        is_error: bool,
    },
    /// The model called the client's own functions: the answer's `tool_calls`.
    ClientCalls(Vec<ParsedCall>),
    /// The end: the finish reason and the tokens of every round.
    Done {
        /// `stop`, `tool_calls` (client calls), or `length` (a round's
        /// `max_tokens`, or `max_tool_rounds` reached).
        finish: &'static str,
        /// Tokens over all rounds.
        usage: Usage,
    },
    /// A round could not run.
    Failed(ApiError),
}

/// One request's rounds.
pub struct ToolLoop {
    /// The model.
    pub engine: EngineHandle,
    /// The request, its MCP fields taken out.
    pub body: ChatCompletionRequest,
    /// `--tool-parser`.
    pub parser: Option<ToolParser>,
    /// The forwarded tools offered.
    pub toolset: McpToolset,
    /// Most rounds of calls.
    pub max_rounds: usize,
}

impl ToolLoop {
    /// Runs the rounds in a task; its events arrive on the receiver, which,
    /// when dropped, ends the loop (and cancels its engine request and calls).
    pub fn spawn(self) -> mpsc::Receiver<LoopEvent> {
        let (events, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            let cancel = CancellationToken::new();
            let _cancel_on_exit = cancel.clone().drop_guard();
            if let Err(error) = self.run(&events, &cancel).await {
                let _ = events.send(LoopEvent::Failed(error)).await;
            }
        });
        receiver
    }

    async fn run(
        self,
        events: &mpsc::Sender<LoopEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), ApiError> {
        let model = self.engine.info().name.clone();
        let mut messages = self.body.messages.clone();
        let mut usage = Usage::default();
        let mut tools = self.body.tools.clone().unwrap_or_default();
        let client_functions: HashSet<String> = tools
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
            .collect();
        tools.extend(self.toolset.definitions.iter().cloned());
        for round in 0..=self.max_rounds {
            let last = round == self.max_rounds;
            let mut body = self.body.clone();
            body.messages = messages.clone();
            body.tools = Some(tools.clone());
            if last {
                // Out of rounds: the model answers from what it has.
                body.tool_choice = Some(json!("none"));
            } else if round > 0 {
                // A forced first call is enough; later rounds choose freely.
                body.tool_choice = None;
            }
            let Some(answer) = self.answer(&body, events).await? else {
                return Ok(());
            };
            add_usage(&mut usage, answer.usage);
            // Calls of the client's own functions go back to the client; any
            // other name the model writes is answered as a failed call.
            let client_calls: Vec<ParsedCall> = answer
                .calls
                .iter()
                .filter(|c| client_functions.contains(&c.name))
                .cloned()
                .collect();
            let finish = if answer.calls.is_empty() {
                // After the last round of calls the answer is marked `length`:
                // the model may have wanted more tools than it was given.
                Some(if last && round > 0 {
                    "length"
                } else {
                    answer.finish
                })
            } else if !client_calls.is_empty() {
                let _ = events.send(LoopEvent::ClientCalls(client_calls)).await;
                Some(if answer.finish == "stop" {
                    "tool_calls"
                } else {
                    answer.finish
                })
            } else {
                None
            };
            if let Some(finish) = finish {
                metrics()
                    .model_tool_rounds
                    .get(&ModelLabel { model: &model })
                    .observe(round as f64);
                let _ = events.send(LoopEvent::Done { finish, usage }).await;
                return Ok(());
            }
            let started = Instant::now();
            let ran = self.run_calls(answer, &mut messages, events, cancel).await;
            metrics()
                .model_tool_seconds
                .get(&ModelLabel { model: &model })
                .observe(started.elapsed().as_secs_f64());
            if !ran {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One answer of the model, its text sent on as it comes and its calls
    /// read whole; `None` when the receiver has gone.
    async fn answer(
        &self,
        body: &ChatCompletionRequest,
        events: &mpsc::Sender<LoopEvent>,
    ) -> Result<Option<RoundAnswer>, ApiError> {
        let (request, parser) = body.engine_request(self.engine.info(), self.parser, None)?;
        let mut stream = self.engine.submit(request)?;
        let mut reader = parser.map(|p| ToolCallStream::new(p, false));
        let mut answer = RoundAnswer::default();
        loop {
            let (pieces, done) = match stream.next_event().await {
                Some(Event::Token(token)) => match reader.as_mut() {
                    Some(reader) => (reader.push(&token.text), false),
                    None => (vec![StreamPiece::Content(token.text)], false),
                },
                Some(Event::Done(completion)) => {
                    answer.usage = completion.usage;
                    answer.finish = completion.finish_reason.as_str();
                    let rest = reader.take().map(|r| r.finish().0).unwrap_or_default();
                    (rest, true)
                }
                Some(Event::Error(failure)) => {
                    return Err(mistralrs_core::Error::from(failure).into());
                }
                None => return Err(mistralrs_core::Error::EngineStopped.into()),
            };
            for piece in pieces {
                match piece {
                    StreamPiece::Content(text) if text.is_empty() => {}
                    StreamPiece::Content(text) => {
                        answer.content.push_str(&text);
                        if events.send(LoopEvent::Content(text)).await.is_err() {
                            return Ok(None);
                        }
                    }
                    StreamPiece::Call(call) => answer.calls.push(call),
                    // Not produced by a reader that reads calls whole.
                    StreamPiece::CallStart(_) | StreamPiece::Arguments(_) => {}
                }
            }
            if done {
                return Ok(Some(answer));
            }
        }
    }

    /// Runs a round's calls at once, adds the assistant turn and the results
    /// to `messages`, and reports both; false when the receiver has gone.
    async fn run_calls(
        &self,
        answer: RoundAnswer,
        messages: &mut Vec<Value>,
        events: &mpsc::Sender<LoopEvent>,
        cancel: &CancellationToken,
    ) -> bool {
        let ids: Vec<String> = answer.calls.iter().map(|_| call_id()).collect();
        for (id, call) in ids.iter().zip(&answer.calls) {
            let event = LoopEvent::McpCall {
                id: id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            };
            if events.send(event).await.is_err() {
                return false;
            }
        }
        let calls = answer.calls.iter().map(|c| self.toolset.call(c, cancel));
        let results = futures_util::future::join_all(calls).await;
        messages.push(json!({
            "role": "assistant",
            "content": answer.content,
            "tool_calls": ids.iter().zip(&answer.calls).map(|(id, c)| call_json(id, c)).collect::<Vec<_>>(),
        }));
        for (id, (text, is_error)) in ids.into_iter().zip(results) {
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            let event = LoopEvent::McpResult {
                id,
                content: text,
                is_error,
            };
            if events.send(event).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// What the model said in one round.
#[derive(Debug, Default)]
struct RoundAnswer {
    content: String,
    calls: Vec<ParsedCall>,
    finish: &'static str,
    usage: Usage,
}

fn add_usage(total: &mut Usage, round: Usage) {
    total.prompt_tokens += round.prompt_tokens;
    total.cached_prompt_tokens += round.cached_prompt_tokens;
    total.completion_tokens += round.completion_tokens;
}

/// Answers a chat request whose model runs MCP tools: one body with the final
/// answer and every call made (`mcp_tool_calls`), or server-sent events with
/// the answer's text as it comes, each call and result as a chunk of its own
/// (`choices: []` and `mcp_tool_call` / `mcp_tool_result`), then the finish.
pub async fn respond(
    tool_loop: ToolLoop,
    streaming: bool,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let envelope = Envelope::new(
        Endpoint::Chat { tools: None },
        tool_loop.engine.info().name.clone(),
    );
    let events = tool_loop.spawn();
    if streaming {
        return Ok(stream_events(envelope, events, include_usage).into_response());
    }
    let answer = collect(events).await?;
    let mut message = json!({"role": "assistant", "content": answer.content});
    if answer.content.is_empty() {
        message["content"] = Value::Null;
    }
    if !answer.client_calls.is_empty() {
        message["tool_calls"] = answer
            .client_calls
            .iter()
            .map(|c| call_json(&call_id(), c))
            .collect();
    }
    let choice = json!({
        "index": 0,
        "message": message,
        "logprobs": null,
        "finish_reason": answer.finish,
        "mcp_tool_calls": answer.mcp_calls,
    });
    let mut body = envelope.body(false, json!([choice]));
    body["usage"] = usage_of(answer.usage);
    Ok(Json(body).into_response())
}

/// A loop's events gathered into one answer.
#[derive(Debug, Default)]
pub struct LoopAnswer {
    /// The text of every round.
    pub content: String,
    /// The forwarded calls made, each with its result.
    pub mcp_calls: Vec<Value>,
    /// Calls of the client's own functions, when the model made some.
    pub client_calls: Vec<ParsedCall>,
    /// Why it ended.
    pub finish: &'static str,
    /// Tokens over all rounds.
    pub usage: Usage,
}

/// Waits for the loop's end.
pub async fn collect(mut events: mpsc::Receiver<LoopEvent>) -> Result<LoopAnswer, ApiError> {
    let mut answer = LoopAnswer::default();
    while let Some(event) = events.recv().await {
        match event {
            LoopEvent::Content(text) => answer.content.push_str(&text),
            LoopEvent::McpCall {
                id,
                name,
                arguments,
            } => answer
                .mcp_calls
                .push(json!({"id": id, "name": name, "arguments": arguments.to_string()})),
            LoopEvent::McpResult {
                id,
                content,
                is_error,
            } => {
                if let Some(call) = answer.mcp_calls.iter_mut().find(|c| c["id"] == id) {
                    call["content"] = json!(content);
                    call["is_error"] = json!(is_error);
                }
            }
            LoopEvent::ClientCalls(calls) => answer.client_calls = calls,
            LoopEvent::Done { finish, usage } => {
                answer.finish = finish;
                answer.usage = usage;
                return Ok(answer);
            }
            LoopEvent::Failed(error) => return Err(error),
        }
    }
    Err(mistralrs_core::Error::EngineStopped.into())
}

fn stream_events(
    envelope: Envelope,
    events: mpsc::Receiver<LoopEvent>,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let data = |value: Value| SseEvent::default().data(value.to_string());
    let delta = |envelope: &Envelope, delta: Value, finish: Value| {
        envelope.body(
            true,
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        )
    };
    let first = delta(
        &envelope,
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    );
    let head = stream::iter([vec![data(first)]]);
    let rest = stream::unfold(Some((envelope, events, 0usize)), move |state| async move {
        let (envelope, mut events, mut calls_sent) = state?;
        let chunks = match events.recv().await {
            Some(LoopEvent::Content(text)) => vec![delta(&envelope, json!({"content": text}), Value::Null)],
            Some(LoopEvent::McpCall {
                id,
                name,
                arguments,
            }) => {
                let mut chunk = envelope.body(true, json!([]));
                chunk["mcp_tool_call"] =
                    json!({"id": id, "name": name, "arguments": arguments.to_string()});
                vec![chunk]
            }
            Some(LoopEvent::McpResult {
                id,
                content,
                is_error,
            }) => {
                let mut chunk = envelope.body(true, json!([]));
                chunk["mcp_tool_result"] =
                    json!({"id": id, "content": content, "is_error": is_error});
                vec![chunk]
            }
            Some(LoopEvent::ClientCalls(calls)) => calls
                .into_iter()
                .flat_map(|call| {
                    let index = calls_sent;
                    calls_sent += 1;
                    let head = json!({"tool_calls": [{"index": index, "id": call_id(), "type": "function",
                        "function": {"name": call.name, "arguments": ""}}]});
                    let arguments = json!({"tool_calls": [{"index": index,
                        "function": {"arguments": call.arguments.to_string()}}]});
                    [delta(&envelope, head, Value::Null), delta(&envelope, arguments, Value::Null)]
                })
                .collect(),
            Some(LoopEvent::Done { finish, usage }) => {
                let mut out = vec![data(delta(&envelope, json!({}), json!(finish)))];
                if include_usage {
                    let mut chunk = envelope.body(true, json!([]));
                    chunk["usage"] = usage_of(usage);
                    out.push(data(chunk));
                }
                out.push(SseEvent::default().data("[DONE]"));
                return Some((out, None));
            }
            Some(LoopEvent::Failed(error)) => {
                let out = vec![data(error.body()), SseEvent::default().data("[DONE]")];
                return Some((out, None));
            }
            None => return None,
        };
        Some((
            chunks.into_iter().map(data).collect(),
            Some((envelope, events, calls_sent)),
        ))
    });
    let all = head
        .chain(rest)
        .flat_map(|batch| stream::iter(batch.into_iter().map(Ok)));
    Sse::new(all).keep_alive(KeepAlive::default())
}
