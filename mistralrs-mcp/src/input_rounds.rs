//! Upstream requests for clients without a session: the 2026-07-28 multi
//! round-trip requests (SEP-2322). Nothing can be sent to a stateless client, so
//! when an upstream asks something (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) during such a client's forwarded call,
//! the call is parked: the client gets an `InputRequiredResult` holding the
//! questions and an opaque `requestState`, retries the call with its answers,
//! and the answers go to the upstream requests still waiting. The retry gets
//! the result, or the next questions.
//!
//! The upstream's call never notices: it stays one call, in flight on the
//! gateway's upstream session, from the first round to the last.
// Sampling and roots are deprecated by SEP-2577 (2026-07-28); upstreams still ask.
#![allow(deprecated)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use mistralrs_core::sync::Mutex;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResponse, CallToolResult, ClientResult, CreateMessageResult, ElicitResult, ErrorData,
    InputRequest, InputRequests, InputRequiredResult, InputResponses, ListRootsResult,
    ServerRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Calls waiting for their client's answers, at most; past it a stateless
/// client's call is answered by the gateway as for a client that asks nothing.
const MAX_PARKED_CALLS: usize = 1024;

/// Questions one call may have open at once; an upstream asking more waits.
const OPEN_QUESTIONS: usize = 16;

/// One upstream request for the client, and where its answer goes (`None`:
/// the client did not answer it).
#[derive(Debug)]
struct Question {
    request: InputRequest,
    answer: oneshot::Sender<Option<serde_json::Value>>,
}

/// The side of a parked call that the upstream's requests go through.
#[derive(Debug, Clone)]
pub(crate) struct InputRounds(mpsc::Sender<Question>);

impl InputRounds {
    /// Puts `request` to the client in its next round and waits for the
    /// answer, at most `timeout` and not past `withdrawn` (the upstream took
    /// the request back) or `ended` (the call was given up).
    pub(crate) async fn ask(
        &self,
        request: ServerRequest,
        method: &str,
        timeout: Duration,
        withdrawn: &CancellationToken,
        ended: &CancellationToken,
    ) -> Result<ClientResult, McpError> {
        let request = match request {
            ServerRequest::CreateMessageRequest(r) => InputRequest::CreateMessage(r),
            ServerRequest::ElicitRequest(r) => InputRequest::Elicitation(r),
            ServerRequest::ListRootsRequest(r) => InputRequest::ListRoots(r),
            _ => {
                return Err(McpError::internal_error(
                    format!("{method} can't be put to a client without a session"),
                    None,
                ));
            }
        };
        let gone = || McpError::internal_error(format!("{method}: the call was given up"), None);
        let (answer, answered) = oneshot::channel();
        let waited = tokio::select! {
            waited = tokio::time::timeout(timeout, async {
                self.0.send(Question { request, answer }).await.map_err(|_| gone())?;
                answered.await.map_err(|_| gone())
            }) => waited,
            () = withdrawn.cancelled() => {
                return Err(McpError::internal_error(format!("{method}: withdrawn"), None));
            }
            () = ended.cancelled() => return Err(gone()),
        };
        let answer = waited
            .map_err(|_| {
                McpError::internal_error(
                    format!(
                        "{method}: the client did not answer within {} s",
                        timeout.as_secs()
                    ),
                    None,
                )
            })??
            .ok_or_else(|| {
                McpError::internal_error(format!("{method}: the client left it unanswered"), None)
            })?;
        client_result(method, answer)
    }
}

/// A client's answer as the result the upstream expects, or the client's own
/// error (an answer with `code` and `message`).
fn client_result(method: &str, answer: serde_json::Value) -> Result<ClientResult, McpError> {
    if answer.get("code").is_some()
        && answer.get("message").is_some()
        && let Ok(error) = serde_json::from_value::<ErrorData>(answer.clone())
    {
        return Err(error);
    }
    let malformed = |e: serde_json::Error| {
        McpError::invalid_params(format!("{method}: the client's answer: {e}"), None)
    };
    Ok(match method {
        "sampling/createMessage" => ClientResult::CreateMessageResult(Box::new(
            serde_json::from_value::<CreateMessageResult>(answer).map_err(malformed)?,
        )),
        "elicitation/create" => ClientResult::ElicitResult(
            serde_json::from_value::<ElicitResult>(answer).map_err(malformed)?,
        ),
        _ => ClientResult::ListRootsResult(
            serde_json::from_value::<ListRootsResult>(answer).map_err(malformed)?,
        ),
    })
}

/// A forwarded call between two rounds: the task running it, and the
/// questions its client has not answered yet.
#[derive(Debug)]
pub(crate) struct ParkedCall {
    /// The key the call was made with (`CallerScope::id`): only it may resume it.
    owner: usize,
    /// The exposed tool name, which the retry repeats.
    tool: String,
    questions: mpsc::Receiver<Question>,
    open: BTreeMap<String, Question>,
    asked: u64,
    call: JoinHandle<Result<CallToolResult, McpError>>,
    /// Ends the call when the parked call is dropped (expired, or the client
    /// went away during a round).
    _ends: DropGuard,
    expires: Instant,
}

impl ParkedCall {
    /// Starts `call` for `owner`: it asks through the returned
    /// [`InputRounds`] and ends when `ends` is cancelled or this is dropped.
    pub(crate) fn start(
        owner: usize,
        tool: String,
        ttl: Duration,
        call: impl FnOnce(
            InputRounds,
            CancellationToken,
        ) -> JoinHandle<Result<CallToolResult, McpError>>,
    ) -> Self {
        let (ask, questions) = mpsc::channel(OPEN_QUESTIONS);
        let ends = CancellationToken::new();
        let call = call(InputRounds(ask), ends.clone());
        Self {
            owner,
            tool,
            questions,
            open: BTreeMap::new(),
            asked: 0,
            call,
            _ends: ends.drop_guard(),
            expires: Instant::now() + ttl,
        }
    }

    /// Gives the client's answers to the questions they are keyed by; a
    /// question left unanswered fails upstream.
    fn answer(&mut self, mut responses: InputResponses) {
        for (key, question) in std::mem::take(&mut self.open) {
            let _ = question.answer.send(responses.remove(&key));
        }
    }

    /// Runs the call until it ends or asks something, not past `client_gone`.
    async fn next_event(&mut self, client_gone: &CancellationToken) -> Event {
        tokio::select! {
            biased;
            done = &mut self.call => Event::Done(done.unwrap_or_else(|e| {
                Err(McpError::internal_error(format!("the forwarded call failed: {e}"), None))
            })),
            Some(question) = self.questions.recv() => {
                self.hold(question);
                while let Ok(more) = self.questions.try_recv() {
                    self.hold(more);
                }
                Event::Asked
            }
            () = client_gone.cancelled() => Event::ClientGone,
        }
    }

    fn hold(&mut self, question: Question) {
        self.asked += 1;
        self.open.insert(self.asked.to_string(), question);
    }

    fn input_requests(&self) -> InputRequests {
        self.open
            .iter()
            .map(|(key, question)| (key.clone(), question.request.clone()))
            .collect()
    }
}

enum Event {
    Done(Result<CallToolResult, McpError>),
    Asked,
    ClientGone,
}

/// The parked calls of every stateless client, by `requestState`.
#[derive(Debug)]
pub(crate) struct ParkedCalls {
    calls: Mutex<HashMap<String, ParkedCall>>,
}

impl ParkedCalls {
    pub(crate) fn new() -> Self {
        Self {
            calls: Mutex::new("mcp_parked_calls", HashMap::new()),
        }
    }

    /// Whether another call may be parked.
    pub(crate) fn has_room(&self) -> bool {
        let mut calls = self.calls.lock();
        expire(&mut calls);
        calls.len() < MAX_PARKED_CALLS
    }

    /// The call `state` names, answered with `responses`, when `owner` parked
    /// it for `tool`; else an error that does not say which check failed.
    pub(crate) fn resume(
        &self,
        state: &str,
        owner: usize,
        tool: &str,
        responses: InputResponses,
    ) -> Result<ParkedCall, McpError> {
        let mut calls = self.calls.lock();
        expire(&mut calls);
        let mine = calls
            .get(state)
            .is_some_and(|call| call.owner == owner && call.tool == tool);
        let mut call = mine.then(|| calls.remove(state)).flatten().ok_or_else(|| {
            McpError::invalid_params(
                format!(
                    "requestState names no call of `{tool}` waiting for this client's input (unknown, expired or answered already)"
                ),
                None,
            )
        })?;
        drop(calls);
        call.answer(responses);
        Ok(call)
    }

    /// Runs `call` until it ends or asks its client something; then the
    /// result, or the questions with the `requestState` of the parked call.
    /// When no call can be parked, its questions go unanswered and the
    /// round waits for the end.
    pub(crate) async fn round(
        &self,
        mut call: ParkedCall,
        client_gone: &CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        loop {
            match call.next_event(client_gone).await {
                Event::Done(result) => return result.map(Into::into),
                Event::ClientGone => {
                    return Err(McpError::internal_error("the request was cancelled", None));
                }
                Event::Asked => {
                    let requests = call.input_requests();
                    let mut calls = self.calls.lock();
                    expire(&mut calls);
                    if calls.len() < MAX_PARKED_CALLS {
                        let state = uuid::Uuid::new_v4().simple().to_string();
                        calls.insert(state.clone(), call);
                        return Ok(InputRequiredResult::new(Some(requests), Some(state)).into());
                    }
                    drop(calls);
                    call.answer(InputResponses::new());
                }
            }
        }
    }
}

fn expire(calls: &mut HashMap<String, ParkedCall>) {
    let now = Instant::now();
    calls.retain(|_, call| call.expires > now);
}
