//! The forwarder: upstream tools, prompts and resources offered under
//! namespaces, calls routed to their owner, behind the policy and the cache.
//!
//! Listing takes the catalogs of the connected upstreams as they are now;
//! an upstream that is down offers nothing until it is back. Connected MCP
//! sessions that subscribed are told (`notifications/*/list_changed`) whenever
//! an upstream connects, drops or changes its lists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use mistralrs_core::metrics::{NamespaceLabel, ToolCallLabels, ToolErrorLabels, metrics};
use mistralrs_core::sync::Mutex;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult,
    CancelledNotificationParam, ClientRequest, CompleteRequestParams, CompleteResult, ContentBlock,
    GetPromptRequestParams, GetPromptResponse, Prompt, ReadResourceRequestParams,
    ReadResourceResponse, Reference, Resource, ResourceTemplate, ResultType, ServerResult, Tool,
};
use rmcp::service::{PeerRequestOptions, RequestContext, ServiceError, SubscriptionContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::ToolCache;
use crate::call_notices::NoticeRoute;
use crate::callers::Caller;
use crate::client::{
    Catalog, Connection, SessionRoutes, Status, Upstream, UpstreamEvent, UpstreamNotice,
};
use crate::config::{McpClientConfig, NamespaceStrategy, SessionMode, ToolForwardingConfig};
use crate::input_rounds::{InputRounds, ParkedCall, ParkedCalls};
use crate::log_relay::{self, LogRelay};
use crate::name_table::{NameTable, Offer};
use crate::names::Namespacing;
use crate::per_client::ClientUpstream;
use crate::policy::Policy;
use crate::sampling::LocalSampler;
use crate::scope::CallerScope;
use crate::scope::{ClientSession, SessionLife};
use crate::subscriptions::{Subscriptions, Watcher};
use crate::{Error, Result};

/// Largest forwarded arguments unless `max_argument_bytes` says otherwise.
const DEFAULT_MAX_ARGUMENT_BYTES: usize = 1 << 20;

/// How one upstream stands, for `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamHealth {
    /// The server's configured name (its namespace).
    pub name: String,
    /// `connecting`, `up` or `down`.
    pub status: &'static str,
    /// Tools it offers now.
    pub tools: usize,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds until the next connection attempt, when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Process id of a stdio upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its tools and prompts a name collision keeps from clients
    /// (`namespace_strategy = "none"`), each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// Upstream MCP servers re-exported under namespaces.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: BTreeMap<String, Arc<Upstream>>,
    names: Namespacing,
    strategy: NamespaceStrategy,
    /// Exposed names under `none` and `conditional`, rebuilt when the
    /// upstreams' change counter (`generation`) moves on.
    table: Mutex<Arc<NameTable>>,
    generation: watch::Receiver<u64>,
    policy: Policy,
    cache: Option<ToolCache>,
    max_argument_bytes: usize,
    subscribers: Mutex<Vec<Watcher>>,
    /// Stateless clients' calls waiting for their answers.
    parked: ParkedCalls,
    /// How long a parked call waits for its client (the longest upstream timeout).
    longest_timeout: Duration,
    /// Sessions that asked for upstream log messages.
    logs: LogRelay,
    /// Sessions' resource subscriptions.
    subscriptions: Subscriptions,
    shutdown: CancellationToken,
    /// The upstream supervisors, awaited at shutdown so child processes are
    /// ended before the server exits.
    supervisors: TaskTracker,
}

/// How a failed call is counted in `tool_errors_total{kind}`.
#[derive(Debug, Clone, Copy)]
enum Failure {
    UnknownTool,
    Denied,
    InvalidArguments,
    UpstreamDown,
    Timeout,
    Transport,
    UpstreamError,
    Cancelled,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Self::UnknownTool => "unknown_tool",
            Self::Denied => "denied",
            Self::InvalidArguments => "invalid_arguments",
            Self::UpstreamDown => "upstream_down",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::UpstreamError => "upstream_error",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The caller's own session of `upstream` when it is `per_client` and the call
/// comes from a client session; `None`: the shared session.
async fn own_session(
    upstream: &Arc<Upstream>,
    origin: &CallOrigin,
) -> Result<Option<Arc<ClientUpstream>>> {
    if upstream.session_mode() != SessionMode::PerClient {
        return Ok(None);
    }
    let (Some(session), Some(caller)) = (&origin.session, &origin.caller) else {
        return Ok(None);
    };
    upstream.session_for(session, caller).await.map(Some)
}

fn count_error(namespace: &str, failure: Failure) {
    metrics()
        .tool_errors
        .get(&ToolErrorLabels {
            namespace,
            kind: failure.label(),
        })
        .inc();
}

fn count_call(namespace: &str, tool: &str, outcome: &str) {
    metrics()
        .tool_calls
        .get(&ToolCallLabels {
            namespace,
            tool,
            outcome,
        })
        .inc();
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// A tool result as text: its text parts joined, other parts as JSON (the
/// structured content when there are no parts).
fn result_text(result: &CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|content| match content {
            ContentBlock::Text(text) => text.text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    match (&result.structured_content, parts.is_empty()) {
        (Some(structured), true) => structured.to_string(),
        _ => parts.join("\n"),
    }
}

/// Who a forwarded call answers to: where its progress and log messages go,
/// who answers the upstream's requests during it, and what cancels it.
#[derive(Debug)]
pub struct CallOrigin {
    /// `None` for the served model.
    notices: Option<NoticeRoute>,
    /// The client session; `None` for the served model.
    caller: Option<Caller>,
    /// The caller's MCP session; `None` for the model and stateless requests.
    session: Option<SessionLife>,
    cancel: CancellationToken,
}

impl CallOrigin {
    /// An MCP client's call: its progress token, its session, its cancellation,
    /// and the log level its session asked for (a rank shared with its handler).
    pub fn client(context: &RequestContext<RoleServer>, log_level: &Arc<AtomicU8>) -> Self {
        let session = SessionLife::of(context);
        Self {
            notices: Some(NoticeRoute {
                peer: context.peer.clone(),
                progress_token: context.meta.get_progress_token(),
                // A 2026-07-28 request's opt-in to the log messages of its call.
                #[allow(deprecated)] // logging: deprecated by SEP-2577, still used
                log_level: context.meta.log_level(),
            }),
            caller: Some(Caller {
                peer: context.peer.clone(),
                request: Some(context.id.clone()),
                cancel: context.ct.clone(),
                session_closed: session
                    .as_ref()
                    .map(|s| s.closed.clone())
                    .unwrap_or_default(),
                log_level: Arc::clone(log_level),
                // A 2026-07-28 request without a session says in `_meta` what
                // its client can answer (rmcp gives such a request a peer with
                // default capabilities).
                declared: match &session {
                    Some(_) => None,
                    None => context.meta.client_capabilities(),
                },
                rounds: None,
            }),
            session,
            cancel: context.ct.clone(),
        }
    }

    /// Whether this is a call of a client without a session that declared
    /// something an upstream may ask it (else nothing is put to it, and the
    /// call needs no rounds).
    fn is_stateless_client(&self) -> bool {
        let declared = self.caller.as_ref().and_then(|c| c.declared.as_ref());
        self.session.is_none()
            && declared.is_some_and(|d| {
                d.sampling.is_some() || d.elicitation.is_some() || d.roots.is_some()
            })
    }

    /// Routes the upstream's requests during this call to its client's
    /// rounds, and lets the call outlive the request that started it: it ends
    /// with `ends`.
    fn answer_in_rounds(&mut self, rounds: InputRounds, ends: CancellationToken) {
        if let Some(caller) = &mut self.caller {
            caller.rounds = Some(rounds);
            caller.cancel = ends.clone();
        }
        self.cancel = ends;
    }

    /// A call the served model makes: no progress to relay, no client to ask;
    /// `cancel` ends it when the request that runs the model goes away.
    pub fn model(cancel: CancellationToken) -> Self {
        Self {
            notices: None,
            caller: None,
            session: None,
            cancel,
        }
    }
}

/// The resource subscriptions one `subscriptions/listen` stream holds, as a
/// session of its own; withdrawn when it ends, however it ends.
struct ListenHeld {
    forwarder: Arc<Forwarder>,
    stream: Arc<ClientSession>,
    uris: Vec<String>,
}

impl Drop for ListenHeld {
    fn drop(&mut self) {
        let (forwarder, stream) = (Arc::clone(&self.forwarder), Arc::clone(&self.stream));
        let uris = std::mem::take(&mut self.uris);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for uri in uris {
                    forwarder.unsubscribe_resource(&stream, &uri).await;
                }
            });
        }
    }
}

impl Forwarder {
    /// Connects to every configured upstream at once and waits until each has
    /// connected or failed (bounded by the longest timeout); one that fails is
    /// retried in the background and does not hold up the others. `None` when
    /// forwarding is off or no upstream is configured.
    pub async fn start(
        client: &McpClientConfig,
        forwarding: &ToolForwardingConfig,
        sampler: Option<Arc<dyn LocalSampler>>,
    ) -> Result<Option<Arc<Self>>> {
        let servers = client.active_servers();
        if !forwarding.enabled || servers.is_empty() {
            return Ok(None);
        }
        crate::config::validate(client, forwarding)?;
        let names = Namespacing::new(&forwarding.namespace_separator)?;
        if !names.separator_is_portable() {
            tracing::warn!(
                separator = names.separator(),
                "tool_forwarding.namespace_separator is outside [A-Za-z0-9_-]: OpenAI and Anthropic clients reject such tool names"
            );
        }
        let (changes, _) = watch::channel(0u64);
        // Upstream events beyond this many waiting are dropped: they never hold up calls.
        let (notices, notices_received) = tokio::sync::mpsc::channel::<UpstreamNotice>(1024);
        let shutdown = CancellationToken::new();
        let secret_env: Arc<[String]> = crate::config::secret_env_vars(client, forwarding).into();
        // One pool for all URL upstreams, but one of its own for each with a `ca_file`.
        let shared_http = crate::client::http_client(None)?;
        let mut upstreams: BTreeMap<String, Arc<Upstream>> = BTreeMap::new();
        for spec in servers {
            let http = match &spec.ca_file {
                Some(path) => crate::client::http_client(Some(path)).map_err(|e| {
                    Error::Config(format!("`mcp_client.servers` `{}`: ca_file {e}", spec.name))
                })?,
                None => shared_http.clone(),
            };
            let upstream = Upstream::new(
                spec.clone(),
                Arc::clone(&secret_env),
                http,
                changes.clone(),
                notices.clone(),
                sampler.clone(),
            );
            upstreams.insert(spec.name.clone(), upstream);
        }
        let longest = upstreams
            .values()
            .map(|u| u.timeout)
            .max()
            .unwrap_or_default();
        let forwarder = Arc::new(Self {
            parked: ParkedCalls::new(),
            longest_timeout: longest,
            names,
            strategy: forwarding.namespace_strategy,
            table: Mutex::new("mcp_forwarded_names", Arc::new(NameTable::unbuilt())),
            generation: changes.subscribe(),
            policy: Policy::new(&forwarding.security),
            cache: ToolCache::new(&forwarding.cache),
            max_argument_bytes: forwarding
                .security
                .max_argument_bytes
                .unwrap_or(DEFAULT_MAX_ARGUMENT_BYTES),
            subscribers: Mutex::new("mcp_list_subscribers", Vec::new()),
            logs: LogRelay::new(),
            subscriptions: Subscriptions::new(),
            shutdown: shutdown.clone(),
            supervisors: TaskTracker::new(),
            upstreams,
        });
        let mut changed = changes.subscribe();
        for upstream in forwarder.upstreams.values() {
            forwarder
                .supervisors
                .spawn(Arc::clone(upstream).supervise(shutdown.clone()));
        }
        let settled = async {
            while forwarder
                .upstreams
                .values()
                .any(|u| matches!(u.status(), Status::Connecting))
            {
                if changed.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(longest + Duration::from_secs(1), settled).await;
        if let Some(table) = forwarder.name_table()
            && forwarder.strategy == NamespaceStrategy::None
            && !table.left_out.is_empty()
        {
            forwarder.shutdown().await;
            let clashes: Vec<String> = table
                .left_out
                .iter()
                .map(|l| format!("{} `{}` of `{}` ({})", l.kind, l.name, l.server, l.reason))
                .collect();
            return Err(Error::Config(format!(
                "namespace_strategy = \"none\" needs unique names: {}; use \"conditional\" or \"server_prefix\"",
                clashes.join("; ")
            )));
        }
        forwarder.warn_unmatched_names(forwarding);
        tokio::spawn(Arc::clone(&forwarder).announce_changes(changes.subscribe()));
        tokio::spawn(Arc::clone(&forwarder).relay_notices(notices_received));
        Ok(Some(forwarder))
    }

    /// Warns about each blocked or cacheable tool name that matches no tool of
    /// a connected upstream (or names no configured upstream): a typo in a deny
    /// list must not pass silently.
    fn warn_unmatched_names(&self, forwarding: &ToolForwardingConfig) {
        let configured = forwarding
            .security
            .blocked_tools
            .iter()
            .map(|name| ("tool_forwarding.security.blocked_tools", name))
            .chain(
                forwarding
                    .cache
                    .cacheable_tools
                    .iter()
                    .map(|name| ("tool_forwarding.cache.cacheable_tools", name)),
            );
        for (key, name) in configured {
            let Some((server, tool)) = self.names.parse(name) else {
                continue;
            };
            match self.upstreams.get(server).map(|u| u.status()) {
                None => tracing::warn!("`{key}`: `{name}` names no configured upstream `{server}`"),
                Some(Status::Up(connection)) if connection.catalog.tool(tool).is_none() => {
                    tracing::warn!("`{key}`: `{name}`: upstream `{server}` has no tool `{tool}`");
                }
                Some(_) => {}
            }
        }
    }

    /// Stops every upstream connection and waits until they are closed: a
    /// child process gets MCP's stdio shutdown (stdin closed, then SIGTERM, then
    /// SIGKILL, 3 s apart) before this returns.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.supervisors.close();
        self.supervisors.wait().await;
    }

    /// Each upstream's state, for `/health`.
    pub fn health(&self) -> Vec<UpstreamHealth> {
        self.upstreams
            .values()
            .map(|upstream| {
                let mut health = UpstreamHealth {
                    name: upstream.name.clone(),
                    status: "connecting",
                    tools: 0,
                    error: None,
                    retry_in_ms: None,
                    pid: None,
                    left_out: Vec::new(),
                };
                match upstream.status() {
                    Status::Connecting => {}
                    Status::Up(connection) => {
                        health.status = "up";
                        health.tools = connection.catalog.tools.len();
                        health.pid = connection.pid;
                    }
                    Status::Down { error, retry_at } => {
                        health.status = "down";
                        health.error = Some(error);
                        let wait = retry_at.saturating_duration_since(Instant::now());
                        health.retry_in_ms = Some(wait.as_millis() as u64);
                    }
                }
                if let Some(table) = self.name_table() {
                    health.left_out = table
                        .left_out
                        .iter()
                        .filter(|l| l.server == upstream.name)
                        .map(|l| format!("{} `{}`: {}", l.kind, l.name, l.reason))
                        .collect();
                }
                health
            })
            .collect()
    }

    /// The exposed names now, rebuilt first if an upstream changed since;
    /// `None` under `server_prefix`, whose names need no table.
    fn name_table(&self) -> Option<Arc<NameTable>> {
        if self.strategy == NamespaceStrategy::ServerPrefix {
            return None;
        }
        let generation = *self.generation.borrow();
        let mut table = self.table.lock();
        if table.generation != generation {
            let connected: Vec<(&str, Arc<Connection>)> = self.connected().collect();
            let offers: Vec<Offer<'_>> = connected
                .iter()
                .map(|(server, c)| {
                    let tools = c
                        .catalog
                        .tools
                        .iter()
                        .map(|t| t.tool.name.as_ref())
                        .collect();
                    let prompts = c.catalog.prompts.iter().map(|p| p.name.as_str()).collect();
                    (*server, tools, prompts)
                })
                .collect();
            let rebuilt = NameTable::build(self.strategy, &self.names, &offers, &table, generation);
            for left in rebuilt
                .left_out
                .iter()
                .filter(|l| !table.left_out.contains(l))
            {
                tracing::warn!(
                    server = %left.server,
                    kind = left.kind,
                    name = %left.name,
                    reason = %left.reason,
                    "a forwarded name collides and is left out"
                );
            }
            metrics()
                .mcp_forwarded_names_left_out
                .set(rebuilt.left_out.len() as i64);
            *table = Arc::new(rebuilt);
        }
        Some(Arc::clone(&table))
    }

    /// The owner and upstream name of the tool clients call `exposed`.
    fn resolve_tool(&self, exposed: &str) -> Option<(String, String)> {
        match self.name_table() {
            Some(table) => table.tool(exposed).cloned(),
            None => self
                .names
                .parse(exposed)
                .filter(|(server, _)| self.upstreams.contains_key(*server))
                .map(|(server, tool)| (server.to_owned(), tool.to_owned())),
        }
    }

    /// Whether `name` belongs to a configured upstream (so the forwarder, not
    /// the local tools, answers for it).
    pub fn owns(&self, name: &str) -> bool {
        self.resolve_tool(name).is_some()
    }

    /// The upstream (namespace) a forwarded tool name belongs to.
    pub fn namespace_of(&self, name: &str) -> Option<String> {
        self.resolve_tool(name).map(|(server, _)| server)
    }

    /// A call the served model made, as [`Self::call_tool_once`] runs it, with what
    /// the model reads back: the result's text (other parts as JSON), or the
    /// refusal's message; and whether it failed.
    pub async fn call_for_model(
        &self,
        caller: &CallerScope,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        cancel: CancellationToken,
    ) -> (String, bool) {
        let mut request = CallToolRequestParams::new(name.to_owned());
        request.arguments = Some(arguments);
        match self
            .call_tool_once(caller, request, CallOrigin::model(cancel))
            .await
        {
            Ok(result) => (result_text(&result), result.is_error == Some(true)),
            Err(error) => (format!("error: {}", error.message), true),
        }
    }

    /// Tells this session when the forwarded lists change.
    pub fn subscribe(&self, peer: Peer<RoleServer>) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|w| !w.is_closed());
        subscribers.push(Watcher::Session(peer));
    }

    /// Relays upstream log messages to this session at `level` (its handler's
    /// level rank, shared), and asks every upstream for the most verbose level
    /// a session wants, and the session's own upstream sessions for its level.
    pub async fn follow_logs(
        &self,
        peer: Peer<RoleServer>,
        level: Arc<AtomicU8>,
        caller: Arc<CallerScope>,
        session: Option<&SessionLife>,
    ) {
        let own_level = log_relay::level_of(level.load(std::sync::atomic::Ordering::Relaxed));
        if let Some(wanted) = self.logs.follow(peer, level, caller) {
            self.ask_upstreams_for_logs(wanted).await;
        }
        let (Some(session), Some(level)) = (session, own_level) else {
            return;
        };
        for (server, upstream) in &self.upstreams {
            if let Some(own) = upstream.opened_session_of(&session.id) {
                log_relay::ask_for_logs(server, &own.peer, level, upstream.timeout).await;
            }
        }
    }

    /// `logging/setLevel` to every connected upstream that offers logging.
    #[allow(deprecated)] // logging: deprecated by SEP-2577, still used by clients
    async fn ask_upstreams_for_logs(&self, level: rmcp::model::LoggingLevel) {
        for (server, upstream) in &self.upstreams {
            if let Status::Up(connection) = upstream.status() {
                log_relay::ask_for_logs(server, &connection.peer, level, upstream.timeout).await;
            }
        }
    }

    /// Passes upstream log messages and resource updates to the sessions
    /// that asked for them.
    async fn relay_notices(
        self: Arc<Self>,
        mut notices: tokio::sync::mpsc::Receiver<UpstreamNotice>,
    ) {
        while let Some((server, event)) = notices.recv().await {
            match event {
                UpstreamEvent::Log(message) => {
                    self.logs
                        .relay(&server, message, |caller| {
                            self.policy.allows_namespace(caller, &server)
                        })
                        .await;
                }
                UpstreamEvent::ResourceUpdated(uri) => {
                    let watchers = self.subscriptions.subscribers(&server, &uri);
                    if watchers.is_empty() {
                        self.unsubscribe_upstream(&server, &uri).await;
                    }
                    for watcher in watchers {
                        watcher.resource_updated(uri.clone()).await;
                    }
                }
            }
        }
    }

    /// Subscribes `session` to the forwarded resource `uri`: the upstream that
    /// lists it (or a template it matches) is asked with the URI's first
    /// subscriber. Errors: no such resource for `caller`, an owner without
    /// subscriptions, the owner's refusal.
    pub async fn subscribe_resource(
        &self,
        caller: &CallerScope,
        session: &Arc<ClientSession>,
        peer: Peer<RoleServer>,
        uri: String,
    ) -> std::result::Result<(), McpError> {
        self.hold_subscription(caller, session, Watcher::Session(peer), uri)
            .await
    }

    /// Serves a 2026-07-28 `subscriptions/listen` stream until the client
    /// ends it: the forwarded lists' changes and the updates of the resources
    /// it listens to, which are subscribed upstream (shared with sessions'
    /// subscriptions) while it lasts. Errors: a resource `caller` may not
    /// read, or whose owner refuses, ends the stream at once.
    pub async fn listen(
        self: &Arc<Self>,
        caller: &CallerScope,
        subscription: SubscriptionContext,
    ) -> std::result::Result<(), McpError> {
        let watcher = Watcher::listening(&subscription);
        let accepted = subscription.accepted().clone();
        // rmcp may drop this future when the stream closes rather than let it
        // finish, so what the stream holds is let go of by a guard.
        let mut held = ListenHeld {
            forwarder: Arc::clone(self),
            stream: Arc::new(ClientSession),
            uris: Vec::new(),
        };
        for uri in accepted.resource_subscriptions.unwrap_or_default() {
            self.hold_subscription(caller, &held.stream, watcher.clone(), uri.clone())
                .await?;
            held.uris.push(uri);
        }
        {
            let mut subscribers = self.subscribers.lock();
            subscribers.retain(|w| !w.is_closed());
            subscribers.push(watcher);
        }
        subscription.cancelled().await;
        Ok(())
    }

    #[allow(deprecated)] // resources/subscribe: the pre-2026-07-28 form, which upstreams speak
    async fn hold_subscription(
        &self,
        caller: &CallerScope,
        session: &Arc<ClientSession>,
        watcher: Watcher,
        uri: String,
    ) -> std::result::Result<(), McpError> {
        let (server, connection) = self.resource_owner(caller, &uri)?;
        let subscribable = connection.peer.peer_info().is_some_and(|info| {
            info.capabilities
                .resources
                .as_ref()
                .is_some_and(|r| r.subscribe == Some(true))
        });
        if !subscribable {
            return Err(McpError::invalid_params(
                format!("upstream MCP server `{server}` offers no resource subscriptions"),
                None,
            ));
        }
        if self.subscriptions.add(&server, &uri, session, watcher) {
            let request = rmcp::model::SubscribeRequestParams::new(uri.clone());
            if let Err(e) = self.ask(&server, connection.peer.subscribe(request)).await {
                self.subscriptions.remove(&uri, session);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Ends `session`'s subscription to `uri`; the upstream's ends with its
    /// last subscriber.
    pub async fn unsubscribe_resource(&self, session: &Arc<ClientSession>, uri: &str) {
        for server in self.subscriptions.remove(uri, session) {
            self.unsubscribe_upstream(&server, uri).await;
        }
    }

    #[allow(deprecated)] // resources/unsubscribe: the pre-2026-07-28 form
    async fn unsubscribe_upstream(&self, server: &str, uri: &str) {
        let Some(Status::Up(connection)) = self.upstreams.get(server).map(|u| u.status()) else {
            return;
        };
        let request = rmcp::model::UnsubscribeRequestParams::new(uri.to_owned());
        if let Err(e) = self.ask(server, connection.peer.unsubscribe(request)).await {
            tracing::debug!(server, "resources/unsubscribe upstream: {}", e.message);
        }
    }

    /// Sends `list_changed` notifications to every subscribed session after
    /// each burst of upstream changes; an upstream that (re)connects is asked
    /// for the log level sessions want and the subscriptions they hold.
    #[allow(deprecated)] // resources/subscribe: the pre-2026-07-28 form
    async fn announce_changes(self: Arc<Self>, mut changes: watch::Receiver<u64>) {
        while changes.changed().await.is_ok() {
            if let Some(level) = self.logs.wanted() {
                self.ask_upstreams_for_logs(level).await;
            }
            // A reconnected upstream has forgotten its subscriptions.
            for (server, connection) in self.connected() {
                for uri in self.subscriptions.held(server) {
                    let request = rmcp::model::SubscribeRequestParams::new(uri);
                    let _ = self.ask(server, connection.peer.subscribe(request)).await;
                }
            }
            let watchers: Vec<Watcher> = {
                let mut subscribers = self.subscribers.lock();
                subscribers.retain(|w| !w.is_closed());
                subscribers.clone()
            };
            for watcher in watchers {
                watcher.lists_changed().await;
            }
        }
    }

    fn connected(&self) -> impl Iterator<Item = (&str, Arc<Connection>)> {
        self.upstreams
            .iter()
            .filter_map(|(name, upstream)| match upstream.status() {
                Status::Up(connection) => Some((name.as_str(), connection)),
                _ => None,
            })
    }

    /// The forwarded tools `caller` may see, renamed into their namespace with
    /// schema and annotations as the upstream gave them.
    pub fn list_tools(&self, caller: &CallerScope) -> Vec<Tool> {
        let table = self.name_table();
        let mut tools = Vec::new();
        for (server, connection) in self.connected() {
            for upstream_tool in &connection.catalog.tools {
                let upstream_name = upstream_tool.tool.name.as_ref();
                let canonical = self.names.join(server, upstream_name);
                let exposed = match &table {
                    Some(table) => match table.tool_name(server, upstream_name) {
                        Some(name) => name.to_owned(),
                        None => continue,
                    },
                    None => canonical.clone(),
                };
                if self.policy.allows_tool(caller, server, &canonical) {
                    let mut tool = upstream_tool.tool.clone();
                    tool.name = exposed.into();
                    tools.push(tool);
                }
            }
        }
        tools
    }

    /// A forwarded tool by its forwarded name, as the global policy lets
    /// anyone see it (rmcp uses it to check `Mcp-Param-*` headers).
    pub fn get_tool(&self, name: &str) -> Option<Tool> {
        let (server, tool) = self.resolve_tool(name)?;
        let canonical = self.names.join(&server, &tool);
        if !self
            .policy
            .allows_tool(&CallerScope::unscoped(), &server, &canonical)
        {
            return None;
        }
        let Status::Up(connection) = self.upstreams.get(&server)?.status() else {
            return None;
        };
        let mut found = connection.catalog.tool(&tool)?.tool.clone();
        found.name = name.to_owned().into();
        Some(found)
    }

    /// A client's call of a forwarded tool, as [`Self::call_tool_once`] runs
    /// it; except that when a stateless (2026-07-28) client's call makes the
    /// upstream ask something, the client answers in rounds
    /// (`InputRequiredResult`, then its retry with `requestState`: see
    /// `input_rounds.rs`).
    pub async fn call_tool(
        self: &Arc<Self>,
        caller: &CallerScope,
        mut request: CallToolRequestParams,
        mut origin: CallOrigin,
    ) -> std::result::Result<CallToolResponse, McpError> {
        let client_gone = origin.cancel.clone();
        if let Some(state) = request.request_state.take() {
            let responses = request.input_responses.take().unwrap_or_default();
            let call = self
                .parked
                .resume(&state, caller.id, &request.name, responses)?;
            return self.parked.round(call, &client_gone).await;
        }
        if !origin.is_stateless_client() || !self.parked.has_room() {
            return Ok(self.call_tool_once(caller, request, origin).await?.into());
        }
        let (forwarder, scope) = (Arc::clone(self), caller.clone());
        let tool = request.name.to_string();
        let call = ParkedCall::start(caller.id, tool, self.longest_timeout, |rounds, ends| {
            origin.answer_in_rounds(rounds, ends);
            tokio::spawn(async move { forwarder.call_tool_once(&scope, request, origin).await })
        });
        self.parked.round(call, &client_gone).await
    }

    /// Calls a forwarded tool for `caller`: parse, policy, argument checks,
    /// cache, then the upstream with its timeout. The origin's progress token
    /// and cancellation travel with the call. Upstream failures are tool
    /// errors (`isError`) carrying the upstream's message; calls the caller may
    /// not make, or with bad arguments, are JSON-RPC errors.
    async fn call_tool_once(
        &self,
        caller: &CallerScope,
        request: CallToolRequestParams,
        origin: CallOrigin,
    ) -> std::result::Result<CallToolResult, McpError> {
        let exposed = request.name.to_string();
        let Some((server, tool)) = self.resolve_tool(&exposed) else {
            count_error("unknown", Failure::UnknownTool);
            return Err(unknown_tool(&exposed));
        };
        let (server, tool) = (server.as_str(), tool.as_str());
        let Some(upstream) = self.upstreams.get(server) else {
            count_error("unknown", Failure::UnknownTool);
            return Err(unknown_tool(&exposed));
        };
        // Policy, cache and metrics know the tool by its prefixed name.
        let name = self.names.join(server, tool);
        if !self.policy.allows_tool(caller, server, &name) {
            count_error(server, Failure::Denied);
            tracing::debug!(tool = %name, "forwarded call refused by policy");
            return Err(unknown_tool(&exposed));
        }
        let connection = match upstream.status() {
            Status::Up(connection) => connection,
            Status::Connecting | Status::Down { .. } => {
                count_error(server, Failure::UpstreamDown);
                return Ok(tool_error(self.down_message(upstream)));
            }
        };
        let Some(listed) = connection.catalog.tool(tool) else {
            count_error(server, Failure::UnknownTool);
            return Err(unknown_tool(&exposed));
        };
        let mut request = request;
        let had_arguments = request.arguments.is_some();
        let arguments = serde_json::Value::Object(request.arguments.take().unwrap_or_default());
        if let Err(message) = self.check_arguments(listed, &arguments) {
            count_error(server, Failure::InvalidArguments);
            return Err(McpError::invalid_params(
                format!("arguments of `{exposed}`: {message}"),
                None,
            ));
        }
        let cache_key = self
            .cache
            .as_ref()
            .and_then(|cache| cache.key(caller.id, &name, &arguments));
        if let (Some(cache), Some(key)) = (&self.cache, &cache_key) {
            if let Some(hit) = cache.get(key).await {
                metrics()
                    .tool_cache_hits
                    .get(&NamespaceLabel { namespace: server })
                    .inc();
                count_call(server, tool, "cached");
                return Ok(hit);
            }
            metrics()
                .tool_cache_misses
                .get(&NamespaceLabel { namespace: server })
                .inc();
        }
        let mut upstream_request = request;
        upstream_request.name = tool.to_owned().into();
        upstream_request.meta = None;
        if let (true, serde_json::Value::Object(map)) = (had_arguments, arguments) {
            upstream_request.arguments = Some(map);
        }
        let own = match own_session(upstream, &origin).await {
            Ok(own) => own,
            Err(e) => return Ok(tool_error(e.to_string())),
        };
        let routes = match &own {
            Some(own) => SessionRoutes {
                peer: &own.peer,
                call_notices: &own.call_notices,
                callers: &own.callers,
                shared: false,
            },
            None => SessionRoutes {
                peer: &connection.peer,
                call_notices: &upstream.call_notices,
                callers: &upstream.callers,
                shared: true,
            },
        };
        let result = self
            .send_call(upstream, routes, server, upstream_request, origin)
            .await;
        match &result {
            Ok(result) if result.is_error == Some(true) => count_call(server, tool, "tool_error"),
            Ok(result) => {
                count_call(server, tool, "ok");
                if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
                    cache.insert(key, result).await;
                }
            }
            Err(_) => count_call(server, tool, "error"),
        }
        result
    }

    /// The size limit, then the tool's input schema.
    fn check_arguments(
        &self,
        listed: &crate::client::UpstreamTool,
        value: &serde_json::Value,
    ) -> Result<()> {
        let size = json_size(value);
        if size > self.max_argument_bytes {
            return Err(Error::Policy(format!(
                "{size} bytes is over the limit of {} bytes",
                self.max_argument_bytes
            )));
        }
        if let Some(validator) = &listed.validator {
            let errors: Vec<String> = validator
                .iter_errors(value)
                .take(5)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    if at.is_empty() {
                        e.to_string()
                    } else {
                        format!("{at}: {e}")
                    }
                })
                .collect();
            if !errors.is_empty() {
                return Err(Error::Policy(errors.join("; ")));
            }
        }
        Ok(())
    }

    fn down_message(&self, upstream: &Upstream) -> String {
        match upstream.status() {
            Status::Down { error, retry_at } => format!(
                "upstream MCP server `{}` is unavailable ({error}); next connection attempt in {} ms",
                upstream.name,
                retry_at
                    .saturating_duration_since(Instant::now())
                    .as_millis()
            ),
            _ => format!(
                "upstream MCP server `{}` is still connecting",
                upstream.name
            ),
        }
    }

    /// Sends the call upstream, relaying progress, passing a cancellation on,
    /// and turning failures into tool errors.
    async fn send_call(
        &self,
        upstream: &Upstream,
        routes: SessionRoutes<'_>,
        server: &str,
        request: CallToolRequestParams,
        origin: CallOrigin,
    ) -> std::result::Result<CallToolResult, McpError> {
        let started = Instant::now();
        let options =
            PeerRequestOptions::with_timeout(upstream.timeout).reset_timeout_on_progress();
        let sending = routes.callers.sending();
        let handle = routes
            .peer
            .send_cancellable_request(
                ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                options,
            )
            .await;
        let handle = match handle {
            Ok(handle) => handle,
            Err(e) => {
                count_error(server, Failure::Transport);
                if routes.shared {
                    upstream.report_lost();
                }
                return Ok(tool_error(format!("upstream MCP server `{server}`: {e}")));
            }
        };
        let _caller = sending.register(handle.id.clone(), origin.caller);
        let mut notices = routes
            .call_notices
            .register(handle.progress_token.clone(), origin.notices);
        let (id, peer) = (handle.id.clone(), handle.peer.clone());
        let response = handle.await_response();
        tokio::pin!(response);
        let response = loop {
            tokio::select! {
                response = &mut response => break response,
                Some(notice) = notices.next() => notices.relay(server, notice).await,
                () = origin.cancel.cancelled() => {
                    count_error(server, Failure::Cancelled);
                    let reason = Some("the client cancelled the call".to_owned());
                    let _ = peer
                        .notify_cancelled(CancelledNotificationParam::new(Some(id), reason))
                        .await;
                    return Err(McpError::internal_error("the request was cancelled", None));
                }
            }
        };
        notices.drain(server).await;
        metrics()
            .tool_forwarded_duration
            .get(&NamespaceLabel { namespace: server })
            .observe(started.elapsed().as_secs_f64());
        match response {
            Ok(ServerResult::CallToolResult(mut result)) => {
                // An upstream on an older protocol sends no `resultType`, which
                // 2026-07-28 clients require; rmcp drops it again for older ones.
                // The same holds for prompts, resources and completions below.
                result.result_type = Some(ResultType::COMPLETE);
                Ok(result)
            }
            Ok(other) => {
                count_error(server, Failure::UpstreamError);
                Ok(tool_error(format!(
                    "upstream MCP server `{server}` answered tools/call with an unexpected result: {other:?}"
                )))
            }
            Err(ServiceError::McpError(error)) => {
                count_error(server, Failure::UpstreamError);
                Ok(tool_error(format!(
                    "upstream MCP server `{server}`: {}",
                    error.message
                )))
            }
            Err(ServiceError::Timeout { timeout }) => {
                count_error(server, Failure::Timeout);
                Ok(tool_error(format!(
                    "upstream MCP server `{server}` did not answer within {} s",
                    timeout.as_secs()
                )))
            }
            Err(e) => {
                count_error(server, Failure::Transport);
                upstream.report_lost();
                Ok(tool_error(format!(
                    "upstream MCP server `{server}` failed during the call: {e}"
                )))
            }
        }
    }

    /// The items of every connected upstream whose namespace `caller` may use,
    /// each renamed by `rename(server, name)` (left out when it gives `None`).
    fn namespaced<T: Clone>(
        &self,
        caller: &CallerScope,
        items: fn(&Catalog) -> &[T],
        name: fn(&mut T) -> &mut String,
        rename: impl Fn(&str, &str) -> Option<String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (server, connection) in self.connected() {
            if self.policy.allows_namespace(caller, server) {
                for item in items(&connection.catalog) {
                    let mut item = item.clone();
                    if let Some(renamed) = rename(server, name(&mut item)) {
                        *name(&mut item) = renamed;
                        out.push(item);
                    }
                }
            }
        }
        out
    }

    /// Forwarded prompts `caller` may see, named by the namespace strategy.
    pub fn list_prompts(&self, caller: &CallerScope) -> Vec<Prompt> {
        let table = self.name_table();
        self.namespaced(
            caller,
            |c| &c.prompts,
            |p| &mut p.name,
            |server, prompt| match &table {
                Some(table) => table.prompt_name(server, prompt).map(str::to_owned),
                None => Some(self.names.join(server, prompt)),
            },
        )
    }

    /// Gets a forwarded prompt from its upstream.
    pub async fn get_prompt(
        &self,
        caller: &CallerScope,
        mut request: GetPromptRequestParams,
    ) -> std::result::Result<GetPromptResponse, McpError> {
        let name = request.name.clone();
        let (server, prompt, connection) = self.route(caller, &name)?;
        request.name = prompt;
        request.meta = None;
        let mut response = self
            .ask(&server, connection.peer.get_prompt_once(request))
            .await?;
        if let GetPromptResponse::Complete(result) = &mut response {
            result.result_type = Some(ResultType::COMPLETE);
        }
        Ok(response)
    }

    /// Forwarded resources `caller` may see, with their own URIs and names
    /// prefixed by their namespace.
    pub fn list_resources(&self, caller: &CallerScope) -> Vec<Resource> {
        self.namespaced(
            caller,
            |c| &c.resources,
            |r| &mut r.name,
            |s, n| Some(self.resource_name(s, n)),
        )
    }

    /// Forwarded resource templates `caller` may see.
    pub fn list_resource_templates(&self, caller: &CallerScope) -> Vec<ResourceTemplate> {
        self.namespaced(
            caller,
            |c| &c.templates,
            |t| &mut t.name,
            |s, n| Some(self.resource_name(s, n)),
        )
    }

    /// A resource's display name: prefixed under `server_prefix`, as the
    /// upstream gives it otherwise (resources are routed by URI, not name).
    fn resource_name(&self, server: &str, name: &str) -> String {
        match self.strategy {
            NamespaceStrategy::ServerPrefix => self.names.join(server, name),
            NamespaceStrategy::None | NamespaceStrategy::Conditional => name.to_owned(),
        }
    }

    /// Reads a resource from the upstream that listed it, or whose template's
    /// fixed prefix the URI starts with.
    pub async fn read_resource(
        &self,
        caller: &CallerScope,
        mut request: ReadResourceRequestParams,
    ) -> std::result::Result<ReadResourceResponse, McpError> {
        let (server, connection) = self.resource_owner(caller, &request.uri)?;
        request.meta = None;
        let mut response = self
            .ask(&server, connection.peer.read_resource_once(request))
            .await?;
        if let ReadResourceResponse::Complete(result) = &mut response {
            result.result_type = Some(ResultType::COMPLETE);
        }
        Ok(response)
    }

    /// The connected upstream `caller` may use that listed `uri`, or whose
    /// template's fixed prefix it starts with.
    fn resource_owner(
        &self,
        caller: &CallerScope,
        uri: &str,
    ) -> std::result::Result<(String, Arc<Connection>), McpError> {
        self.connected()
            .find(|(server, connection)| {
                self.policy.allows_namespace(caller, server)
                    && (connection.catalog.resources.iter().any(|r| r.uri == uri)
                        || connection.catalog.templates.iter().any(|t| {
                            let prefix = t.uri_template.split('{').next().unwrap_or_default();
                            !prefix.is_empty() && uri.starts_with(prefix)
                        }))
            })
            .map(|(server, connection)| (server.to_owned(), connection))
            .ok_or_else(|| McpError::resource_not_found(format!("unknown resource `{uri}`"), None))
    }

    /// Completes a prompt's or a resource template's argument with the
    /// upstream that owns it (`completion/complete`): a prompt by its forwarded
    /// name, a template by its URI. An owner that does not offer completions
    /// gives no values.
    pub async fn complete(
        &self,
        caller: &CallerScope,
        mut request: CompleteRequestParams,
    ) -> std::result::Result<CompleteResult, McpError> {
        let (server, connection) = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let (server, name, connection) = self.route(caller, &prompt.name)?;
                prompt.name = name;
                (server, connection)
            }
            Reference::Resource(template) => {
                let owner = self.connected().find(|(server, connection)| {
                    self.policy.allows_namespace(caller, server)
                        && connection
                            .catalog
                            .templates
                            .iter()
                            .any(|t| t.uri_template == template.uri)
                });
                let (server, connection) = owner.ok_or_else(|| {
                    McpError::invalid_params(
                        format!("unknown resource template `{}`", template.uri),
                        None,
                    )
                })?;
                (server.to_owned(), connection)
            }
            _ => {
                return Err(McpError::invalid_params(
                    "unknown kind of completion reference",
                    None,
                ));
            }
        };
        let offers_completions = connection
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.completions.is_some());
        if !offers_completions {
            return Ok(CompleteResult::default());
        }
        request.meta = None;
        let mut result = self.ask(&server, connection.peer.complete(request)).await?;
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    /// Awaits a request to upstream `server` within its timeout.
    async fn ask<T>(
        &self,
        server: &str,
        request: impl Future<Output = std::result::Result<T, ServiceError>>,
    ) -> std::result::Result<T, McpError> {
        let timeout = self
            .upstreams
            .get(server)
            .map_or(crate::client::DEFAULT_TIMEOUT, |u| u.timeout);
        tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| {
                McpError::internal_error(
                    format!(
                        "upstream MCP server `{server}` did not answer within {} s",
                        timeout.as_secs()
                    ),
                    None,
                )
            })?
            .map_err(|e| upstream_failure(server, e))
    }

    /// The connected upstream owning a forwarded prompt name, and the
    /// prompt's name there, if `caller` may use it.
    fn route(
        &self,
        caller: &CallerScope,
        name: &str,
    ) -> std::result::Result<(String, String, Arc<Connection>), McpError> {
        let unknown = || McpError::invalid_params(format!("unknown prompt `{name}`"), None);
        let (server, prompt) = match self.name_table() {
            Some(table) => table.prompt(name).cloned().ok_or_else(unknown)?,
            None => {
                let (server, prompt) = self.names.parse(name).ok_or_else(unknown)?;
                (server.to_owned(), prompt.to_owned())
            }
        };
        let upstream = self.upstreams.get(&server).ok_or_else(unknown)?;
        if !self.policy.allows_namespace(caller, &server) {
            return Err(unknown());
        }
        match upstream.status() {
            Status::Up(connection) => Ok((server, prompt, connection)),
            _ => Err(McpError::internal_error(self.down_message(upstream), None)),
        }
    }
}

/// Bytes of `value` as compact JSON, counted without building the text.
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("unknown tool `{name}`"), None)
}

fn upstream_failure(server: &str, error: ServiceError) -> McpError {
    match error {
        ServiceError::McpError(mut e) => {
            e.message = format!("upstream MCP server `{server}`: {}", e.message).into();
            e
        }
        other => McpError::internal_error(format!("upstream MCP server `{server}`: {other}"), None),
    }
}
