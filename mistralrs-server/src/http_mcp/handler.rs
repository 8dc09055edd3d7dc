//! What MCP clients see: a `chat` tool backed by the served models, and the
//! tools, prompts and resources the forwarder re-exports from upstream servers
//! (limited by the caller's key scope, which the auth layer put in the request).
//!
//! Its arguments are the fields of an OpenAI chat completion request. When the
//! client sends a progress token, every piece of generated text goes out as a
//! `notifications/progress` event while the model runs; the result carries the
//! text, the finish reason and token usage. Cancelling the call (a
//! `notifications/cancelled`, or closing a stateless stream) cancels the sequence,
//! which frees its KV blocks.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};

use axum::http::request::Parts;
use mistralrs_core::request::{Event, Usage};
use mistralrs_core::{EngineHandle, Router};
use mistralrs_mcp::{CallOrigin, CallerScope, ClientSession, Forwarder, SessionLife};
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation, JsonObject,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::openai::tool_loop::{self, McpToolDefaults, McpToolset, ToolLoop};
use crate::openai::{ChatCompletionRequest, McpSelection};

const CHAT_TOOL: &str = "chat";

/// JSON Schema of the `chat` tool's arguments: the OpenAI chat fields it reads.
static CHAT_SCHEMA: LazyLock<Arc<JsonObject>> = LazyLock::new(|| {
    let schema = json!({
        "type": "object",
        "properties": {
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"role": {"type": "string"}, "content": {"type": ["string", "array", "null"]}},
                    "required": ["role"]
                },
                "description": "The conversation, as OpenAI chat messages."
            },
            "model": {"type": "string", "description": "Served model name; the default model when absent."},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 1},
            "min_p": {"type": "number", "minimum": 0, "maximum": 1},
            "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "repetition_penalty": {"type": "number", "exclusiveMinimum": 0},
            "seed": {"type": "integer", "minimum": 0},
            "stop": {"type": ["string", "array"], "items": {"type": "string"}},
            "mcp_tools": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Forwarded tools (as tools/list names them) the model may call; the server runs its calls and feeds the results back."
            },
            "max_tool_rounds": {"type": "integer", "minimum": 0, "maximum": 20, "description": "Most rounds of tool calls (default 5)."}
        },
        "required": ["messages"]
    });
    match schema {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
});

fn chat_tool() -> Tool {
    Tool::new(
        CHAT_TOOL,
        "Chat with a model served by this server. Arguments are OpenAI chat completion fields; \
         with a progress token, generated text streams as progress notifications.",
        Arc::clone(&CHAT_SCHEMA),
    )
}

/// One MCP session's handler: the router, the forwarder and the session's log level.
#[derive(Debug, Clone)]
pub(super) struct McpHandler {
    router: Arc<Router>,
    forwarder: Option<Arc<Forwarder>>,
    /// Forwarded tools each model is offered when a chat names none.
    mcp_tool_defaults: Arc<McpToolDefaults>,
    /// Rank of the least severe level the client wants (`logging/setLevel`);
    /// `u8::MAX` until it asks, so nothing is sent unasked.
    log_level: Arc<AtomicU8>,
    /// This session, for the forwarded subscriptions it holds.
    session: Arc<ClientSession>,
}

/// Severity rank of an MCP log level (debug lowest).
#[allow(deprecated)] // logging is deprecated by SEP-2577 but clients still use it
fn rank(level: LoggingLevel) -> u8 {
    level as u8
}

impl McpHandler {
    pub(super) fn new(
        router: Arc<Router>,
        forwarder: Option<Arc<Forwarder>>,
        mcp_tool_defaults: Arc<McpToolDefaults>,
    ) -> Self {
        Self {
            router,
            forwarder,
            mcp_tool_defaults,
            log_level: Arc::new(AtomicU8::new(u8::MAX)),
            session: Arc::new(ClientSession),
        }
    }

    /// Tells the client, at `info`, how a chat ended, if it asked for such logs.
    #[allow(deprecated)]
    async fn log_finished(&self, context: &RequestContext<RoleServer>, result: &CallToolResult) {
        if rank(LoggingLevel::Info) < self.log_level.load(Ordering::Relaxed) {
            return;
        }
        let mut note = LoggingMessageNotificationParam::new(
            LoggingLevel::Info,
            json!({"event": "chat finished", "result": result.structured_content}),
        );
        note.logger = Some("mistralrs".into());
        let _ = context.peer.notify_logging_message(note).await;
    }

    /// Runs a chat to the end, streaming progress when asked, stopping when the
    /// call is cancelled.
    async fn chat(
        &self,
        arguments: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        // Bad arguments are a tool error the model can read (SEP-1303), never a
        // protocol error.
        let mut body: ChatCompletionRequest = match serde_json::from_value(Value::Object(arguments))
        {
            Ok(body) => body,
            Err(e) => return Ok(tool_error(format!("chat arguments: {e}"))),
        };
        let engine = match self.router.get(body.common.model.as_deref()) {
            Ok(engine) => engine,
            Err(e) => return Ok(tool_error(e.to_string())),
        };
        let selection = match body.take_mcp_selection() {
            Ok(selection) => self.mcp_tool_defaults.apply(
                &engine.info().name,
                selection,
                self.forwarder.as_ref(),
                &caller(&context),
            ),
            Err(e) => return Ok(tool_error(e.message().to_owned())),
        };
        if !selection.is_empty() {
            return self.chat_with_tools(engine, body, selection, context).await;
        }
        let request = match body.engine_request(engine.info(), None, None) {
            Ok((request, _)) => request,
            Err(e) => return Ok(tool_error(e.message().to_owned())),
        };
        let mut stream = match engine.submit(request) {
            Ok(stream) => stream,
            Err(e) => return Ok(tool_error(e.to_string())),
        };
        let progress_token = context.meta.get_progress_token();
        let (mut text, mut pieces) = (String::new(), 0u32);
        loop {
            let event = tokio::select! {
                () = context.ct.cancelled() => {
                    stream.cancel();
                    return Err(McpError::internal_error("the request was cancelled", None));
                }
                event = stream.next_event() => event,
            };
            match event {
                Some(Event::Token(token)) if !token.text.is_empty() => {
                    pieces += 1;
                    if let Some(progress_token) = &progress_token {
                        let note = ProgressNotificationParam::new(
                            progress_token.clone(),
                            f64::from(pieces),
                        )
                        .with_message(token.text.clone());
                        // A client that cannot take notifications still gets the result.
                        let _ = context.peer.notify_progress(note).await;
                    }
                    text.push_str(&token.text);
                }
                Some(Event::Token(_)) => {}
                Some(Event::Done(completion)) => {
                    let result = chat_result(
                        engine.info().name.clone(),
                        text,
                        completion.finish_reason.as_str(),
                        completion.usage,
                    );
                    self.log_finished(&context, &result).await;
                    return Ok(result);
                }
                Some(Event::Error(failure)) => return Ok(tool_error(failure.to_string())),
                None => return Ok(tool_error("the engine stopped".into())),
            }
        }
    }
}

impl McpHandler {
    /// A chat whose model calls forwarded tools, with the caller's key scope:
    /// the answer, and the calls made in `structuredContent.mcp_tool_calls`.
    async fn chat_with_tools(
        &self,
        engine: EngineHandle,
        body: ChatCompletionRequest,
        selection: McpSelection,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let toolset = match McpToolset::resolve(
            self.forwarder.as_ref(),
            caller(&context),
            &selection.names,
            &selection.servers,
        ) {
            Ok(toolset) => toolset,
            Err(e) => return Ok(tool_error(e.message().to_owned())),
        };
        let model = engine.info().name.clone();
        let events = ToolLoop {
            engine,
            body,
            parser: None,
            toolset,
            max_rounds: selection.max_rounds,
        }
        .spawn();
        let answer = tokio::select! {
            () = context.ct.cancelled() => {
                return Err(McpError::internal_error("the request was cancelled", None));
            }
            answer = tool_loop::collect(events) => answer,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => return Ok(tool_error(e.message().to_owned())),
        };
        let mut result = chat_result(model, answer.content, answer.finish, answer.usage);
        if let Some(structured) = result.structured_content.as_mut() {
            structured["mcp_tool_calls"] = Value::Array(answer.mcp_calls);
        }
        self.log_finished(&context, &result).await;
        Ok(result)
    }

    /// What the forwarder lists for this request's caller; nothing without one.
    fn forwarded<T>(
        &self,
        context: &RequestContext<RoleServer>,
        list: fn(&Forwarder, &CallerScope) -> Vec<T>,
    ) -> Vec<T> {
        self.forwarder
            .as_ref()
            .map(|forwarder| list(forwarder, &caller(context)))
            .unwrap_or_default()
    }
}

/// The caller's scope, as the auth layer resolved it from the API key.
fn caller(context: &RequestContext<RoleServer>) -> Arc<CallerScope> {
    context
        .extensions
        .get::<Parts>()
        .and_then(|parts| parts.extensions.get::<Arc<CallerScope>>())
        .cloned()
        .unwrap_or_else(CallerScope::unscoped)
}

/// The protocol version of the caller's session: the one it asked for at
/// `initialize` when this server speaks it, else this server's latest; the
/// newest for sessionless requests.
fn negotiated_version(context: &RequestContext<RoleServer>) -> ProtocolVersion {
    context
        .peer
        .peer_info()
        .map(|info| info.protocol_version.clone())
        .filter(|asked| ProtocolVersion::KNOWN_VERSIONS.contains(asked))
        .unwrap_or(ProtocolVersion::LATEST)
}

fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("unknown tool `{name}`"), None)
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// A chat's answer: its text, and the text, model, finish reason and token
/// counts as structured content.
fn chat_result(model: String, text: String, finish: &str, usage: Usage) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
    result.structured_content = Some(json!({
        "text": text,
        "model": model,
        "finish_reason": finish,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
    }));
    result
}

impl ServerHandler for McpHandler {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        // Prompts and resources are the forwarded ones: empty lists without
        // upstreams, and announced as changing only with them.
        let capabilities = if self.forwarder.is_some() {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_logging()
                .enable_completions()
                .build()
        } else {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_logging()
                .build()
        };
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("mistralrs-server", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.subscribe(context.peer);
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = vec![chat_tool()];
        if let Some(forwarder) = &self.forwarder {
            tools.extend(forwarder.list_tools(&caller(&context)));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let prompts = self.forwarded(&context, Forwarder::list_prompts);
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        match &self.forwarder {
            Some(forwarder) => forwarder.get_prompt(&caller(&context), request).await,
            None => Err(McpError::invalid_params(
                format!("unknown prompt `{}`", request.name),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let resources = self.forwarded(&context, Forwarder::list_resources);
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let templates = self.forwarded(&context, Forwarder::list_resource_templates);
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match &self.forwarder {
            Some(forwarder) => forwarder.read_resource(&caller(&context), request).await,
            None => Err(McpError::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                None,
            )),
        }
    }

    #[allow(deprecated)] // resources/subscribe: the pre-2026-07-28 form
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        match &self.forwarder {
            Some(forwarder) => {
                let peer = context.peer.clone();
                forwarder
                    .subscribe_resource(&caller(&context), &self.session, peer, request.uri)
                    .await
            }
            None => Err(McpError::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                None,
            )),
        }
    }

    #[allow(deprecated)] // resources/unsubscribe: the pre-2026-07-28 form
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Some(forwarder) = &self.forwarder {
            forwarder
                .unsubscribe_resource(&self.session, &request.uri)
                .await;
        }
        Ok(())
    }

    /// 2026-07-28 `subscriptions/listen`: with forwarding, every category it
    /// asks for is accepted (rmcp keeps only what `get_info` advertises).
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.forwarder.as_ref().map(|_| requested.clone())
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        let caller = caller(subscription.request_context());
        match &self.forwarder {
            Some(forwarder) => forwarder.listen(&caller, subscription).await,
            None => Ok(()),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        match &self.forwarder {
            Some(forwarder) => forwarder.complete(&caller(&context), request).await,
            None => Ok(CompleteResult::default()),
        }
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.log_level.store(rank(request.level), Ordering::Relaxed);
        if let Some(forwarder) = &self.forwarder {
            let level = Arc::clone(&self.log_level);
            let session = SessionLife::of(&context);
            forwarder
                .follow_logs(
                    context.peer.clone(),
                    level,
                    caller(&context),
                    session.as_ref(),
                )
                .await;
        }
        Ok(())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if name == CHAT_TOOL {
            return Some(chat_tool());
        }
        self.forwarder.as_ref()?.get_tool(name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name == CHAT_TOOL {
            let result = self
                .chat(request.arguments.unwrap_or_default(), context)
                .await?;
            return Ok(result.into());
        }
        match &self.forwarder {
            Some(forwarder) if forwarder.owns(&request.name) => {
                let response = forwarder
                    .call_tool(
                        &caller(&context),
                        request,
                        CallOrigin::client(&context, &self.log_level),
                    )
                    .await?;
                Ok(match response {
                    CallToolResponse::Complete(result) => {
                        super::version_adapt::adapt(result, &negotiated_version(&context)).into()
                    }
                    other => other,
                })
            }
            _ => Err(unknown_tool(&request.name)),
        }
    }
}
