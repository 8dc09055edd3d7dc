//! One upstream MCP server: connect, fetch what it offers, watch it, reconnect.
//!
//! Each upstream has a supervisor task. It connects (a child process over
//! stdio, or Streamable HTTP) within the server's timeout, fetches its tools,
//! prompts and resources, and publishes them as [`Status::Up`]. It then waits
//! for the connection to end (the child exits, the transport closes), for a
//! ping to fail (an HTTP upstream that stopped answering), or for a
//! `list_changed` notification (refetch). A lost upstream is [`Status::Down`]
//! until a reconnect succeeds; attempts back off exponentially. Every change of
//! status bumps the `changes` counter the forwarder watches.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mistralrs_core::metrics::{ServerLabel, metrics};
use mistralrs_core::sync::{Mutex, RwLock};
#[allow(deprecated)] // logging: deprecated by SEP-2577, still used by clients
use rmcp::model::LoggingMessageNotificationParam;
use rmcp::model::{
    ClientConfig, ClientRequest, Implementation, Prompt, Resource, ResourceTemplate, Tool,
};
#[allow(deprecated)] // sampling: deprecated by SEP-2577, still asked by upstreams
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, ListRootsResult};
use rmcp::model::{CustomNotification, ElicitRequestParams, ElicitResult};
use rmcp::service::{
    ClientInitializeError, NotificationContext, Peer, RequestContext, RunningService,
};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::call_notices::CallNoticeRoutes;
use crate::callers::Callers;
use crate::config::{McpServerConfig, SessionMode};
use crate::in_order::InOrder;
use crate::per_client::{ClientUpstreams, DEFAULT_MAX_SESSIONS};
use crate::sampling::LocalSampler;
use crate::upstream_requests::UpstreamRequests;
use crate::{Error, Result};

/// Seconds to connect and per call unless the server's `timeout_secs` says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a connected upstream is pinged; a failed ping marks it down.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Concurrent requests on one HTTP upstream (rmcp's default is 16).
const HTTP_MAX_CONCURRENT: usize = 256;

/// The client of URL upstreams. rmcp's default client keeps no idle
/// connections, which costs a new TCP connection per call (measured: ~0.5 ms of
/// CPU per forwarded call); this one pools them. Redirects are not followed, so
/// a bearer token never travels to another origin. `https` is verified against
/// the system's roots (rustls) plus those of `ca_file`, when given.
pub(crate) fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if roots.is_empty() {
            return Err(Error::Config(format!(
                "{}: no PEM certificate in it",
                path.display()
            )));
        }
        builder = builder.tls_certs_merge(roots);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// An error and the errors beneath it, so that the cause (a refused
/// certificate, a refused connection) reaches `/health` and the log, not only
/// rmcp's summary of it.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Why initializing a URL upstream failed, down to the cause: rmcp's own
/// message stops at "error sending request", without the certificate or
/// connection error beneath it.
fn http_init_error(error: &ClientInitializeError) -> String {
    if let ClientInitializeError::TransportError {
        error: transport,
        context,
    } = error
        && let Some(StreamableHttpError::Client(client)) = transport
            .error
            .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return format!("{}, when {context}", with_causes(client));
    }
    with_causes(error)
}

/// A tool of an upstream with its argument validator.
#[derive(Debug)]
pub(crate) struct UpstreamTool {
    pub(crate) tool: Tool,
    /// `None` when the upstream's schema does not compile (then only the size
    /// limit applies, and a warning was logged).
    pub(crate) validator: Option<jsonschema::Validator>,
}

/// What a connected upstream offers.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) tools: Vec<UpstreamTool>,
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) templates: Vec<ResourceTemplate>,
}

impl Catalog {
    pub(crate) fn tool(&self, name: &str) -> Option<&UpstreamTool> {
        self.tools.iter().find(|t| t.tool.name == name)
    }
}

/// A live connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) catalog: Catalog,
    /// Process id of a stdio upstream.
    pub(crate) pid: Option<u32>,
}

/// Where an upstream stands.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    /// The first attempt has not finished.
    Connecting,
    /// Connected; calls go through.
    Up(Arc<Connection>),
    /// Not connected; calls fail fast with `error`.
    Down { error: String, retry_at: Instant },
}

/// The client side of one upstream connection: asks for a refetch when the
/// upstream's lists change, has the upstream's requests answered.
/// (Notifications whose order matters are taken off the transport by
/// [`InOrder`].)
#[derive(Debug, Clone)]
pub(crate) struct UpstreamClient {
    refetch: Arc<Notify>,
    requests: Arc<UpstreamRequests>,
}

/// What an upstream tells the forwarder's sessions about.
#[derive(Debug)]
pub(crate) enum UpstreamEvent {
    /// `notifications/message`.
    #[allow(deprecated)]
    Log(LoggingMessageNotificationParam),
    /// `notifications/resources/updated` for this URI.
    ResourceUpdated(String),
}

/// An upstream's event, by the upstream's name.
pub(crate) type UpstreamNotice = (String, UpstreamEvent);

/// What a call goes through: an upstream session and the routes of what comes
/// back during it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionRoutes<'a> {
    pub(crate) peer: &'a Peer<RoleClient>,
    pub(crate) call_notices: &'a Arc<CallNoticeRoutes>,
    pub(crate) callers: &'a Arc<Callers>,
    /// The upstream's shared session (a failure there marks the upstream down).
    pub(crate) shared: bool,
}

/// Where an upstream session's ordered notifications go ([`InOrder`]).
#[derive(Debug, Clone)]
pub(crate) struct OrderedNotices {
    /// Log messages and resource updates, to the forwarder.
    pub(crate) notices: mpsc::Sender<UpstreamNotice>,
    /// The queues of the session's calls in flight.
    pub(crate) call_notices: Arc<CallNoticeRoutes>,
}

impl OrderedNotices {
    /// `transport` of upstream `server`, its ordered notifications taken off here.
    fn wrap<T>(&self, server: &str, transport: T) -> InOrder<T> {
        InOrder {
            inner: transport,
            server: server.to_owned(),
            notices: self.notices.clone(),
            call_notices: Arc::clone(&self.call_notices),
        }
    }
}

impl ClientHandler for UpstreamClient {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refetch.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refetch.notify_one();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refetch.notify_one();
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        if UpstreamRequests::is_elicitation_complete(&notification) {
            self.requests.elicitation_complete(notification).await;
        }
    }

    #[allow(deprecated)] // sampling: deprecated by SEP-2577, still asked by upstreams
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> std::result::Result<CreateMessageResult, ErrorData> {
        self.requests.create_message(params, &context).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> std::result::Result<ElicitResult, ErrorData> {
        self.requests.create_elicitation(params, &context).await
    }

    #[allow(deprecated)] // roots: deprecated by SEP-2577, still asked by upstreams
    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> std::result::Result<ListRootsResult, ErrorData> {
        self.requests.list_roots(&context).await
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.requests.capabilities(),
            Implementation::new("mistralrs-server", env!("CARGO_PKG_VERSION")),
        )
    }
}

pub(crate) type Running = RunningService<RoleClient, UpstreamClient>;

/// One configured upstream and its current status.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: String,
    spec: McpServerConfig,
    /// Variables removed from a child's inherited environment.
    secret_env: Arc<[String]>,
    /// HTTP client of URL upstreams, shared so that connections are pooled.
    http: reqwest::Client,
    /// Connect timeout and per-call timeout.
    pub(crate) timeout: Duration,
    status: RwLock<Status>,
    pub(crate) call_notices: Arc<CallNoticeRoutes>,
    /// The clients of the calls in flight, for the upstream's requests.
    pub(crate) callers: Arc<Callers>,
    refetch: Arc<Notify>,
    changes: watch::Sender<u64>,
    notices: mpsc::Sender<UpstreamNotice>,
    /// Who answers the upstream's requests.
    pub(crate) requests: Arc<UpstreamRequests>,
    /// Upstream sessions of one client each (`per_client` mode).
    pub(crate) client_upstreams: ClientUpstreams,
}

impl Upstream {
    pub(crate) fn new(
        spec: McpServerConfig,
        secret_env: Arc<[String]>,
        http: reqwest::Client,
        changes: watch::Sender<u64>,
        notices: mpsc::Sender<UpstreamNotice>,
        sampler: Option<Arc<dyn LocalSampler>>,
    ) -> Arc<Self> {
        metrics()
            .mcp_upstream_up
            .get(&ServerLabel {
                server: spec.name.as_str(),
            })
            .set(0);
        let timeout = spec
            .timeout_secs
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let callers = Arc::new(Callers::new());
        let max_sessions = spec.max_upstream_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        let requests = Arc::new(UpstreamRequests {
            server: spec.name.clone(),
            callers: Arc::clone(&callers),
            sampling: spec.sampling,
            elicitation: spec.elicitation,
            roots: spec.roots,
            sampler,
            timeout,
            url_elicitations: Arc::new(Mutex::new("mcp_url_elicitations", HashMap::new())),
        });
        Arc::new(Self {
            name: spec.name.clone(),
            timeout,
            spec,
            secret_env,
            http,
            status: RwLock::new("mcp_upstream_status", Status::Connecting),
            call_notices: Arc::new(CallNoticeRoutes::new()),
            callers,
            refetch: Arc::new(Notify::new()),
            changes,
            notices,
            requests,
            client_upstreams: ClientUpstreams::new(max_sessions),
        })
    }

    /// `shared` or `per_client`.
    pub(crate) fn session_mode(&self) -> SessionMode {
        self.spec.session_mode
    }

    /// The current status.
    pub(crate) fn status(&self) -> Status {
        self.status.read().clone()
    }

    fn set_status(&self, status: Status) {
        let up = matches!(status, Status::Up(_));
        *self.status.write() = status;
        metrics()
            .mcp_upstream_up
            .get(&ServerLabel {
                server: self.name.as_str(),
            })
            .set(i64::from(up));
        self.changes.send_modify(|n| *n += 1);
    }

    /// After a call failed on the transport: marks the upstream down at once
    /// when its transport is closed, so other calls fail fast, and wakes the
    /// supervisor, which reconnects (or refetches, if the connection lives).
    pub(crate) fn report_lost(&self) {
        if let Status::Up(connection) = self.status()
            && connection.peer.is_transport_closed()
        {
            self.set_status(Status::Down {
                error: "the connection was lost during a call".into(),
                retry_at: Instant::now(),
            });
        }
        self.refetch.notify_one();
    }

    /// Connects, watches and reconnects until `shutdown`.
    pub(crate) async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let error = match tokio::time::timeout(self.timeout, self.connect()).await {
                Ok(Ok((running, connection))) => {
                    backoff = INITIAL_BACKOFF;
                    tracing::info!(server = %self.name, tools = connection.catalog.tools.len(), "upstream MCP server connected");
                    self.set_status(Status::Up(Arc::new(connection)));
                    self.watch(running, &shutdown).await
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => Error::Timeout {
                    what: "connecting",
                    after: self.timeout,
                }
                .to_string(),
            };
            if shutdown.is_cancelled() {
                self.set_status(Status::Down {
                    error: "the server is shutting down".into(),
                    retry_at: Instant::now(),
                });
                return;
            }
            tracing::warn!(server = %self.name, %error, retry_in_ms = backoff.as_millis() as u64, "upstream MCP server down");
            self.set_status(Status::Down {
                error,
                retry_at: Instant::now() + backoff,
            });
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Serves a live connection until it ends; returns why it ended.
    async fn watch(&self, running: Running, shutdown: &CancellationToken) -> String {
        let peer = running.peer().clone();
        let stop = running.cancellation_token();
        let ended = running.waiting();
        tokio::pin!(ended);
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    // Closing the transport ends a child process (rmcp's
                    // TokioChildProcess::graceful_shutdown); wait for it.
                    stop.cancel();
                    let _ = ended.await;
                    return "the server is shutting down".into();
                }
                quit = &mut ended => return format!("connection ended ({quit:?})"),
                () = self.refetch.notified() => {
                    if peer.is_transport_closed() {
                        return "connection closed".into();
                    }
                    match tokio::time::timeout(self.timeout, fetch_catalog(&self.name, &peer)).await {
                        Ok(Ok(catalog)) => {
                            let pid = match self.status() {
                                Status::Up(c) => c.pid,
                                _ => None,
                            };
                            tracing::info!(server = %self.name, tools = catalog.tools.len(), "upstream lists changed");
                            self.set_status(Status::Up(Arc::new(Connection { peer: peer.clone(), catalog, pid })));
                        }
                        Ok(Err(e)) => return format!("refetching its lists: {e}"),
                        Err(_) => return format!("refetching its lists: no answer within {} s", self.timeout.as_secs()),
                    }
                }
                _ = ping.tick() => {
                    let ping = peer.send_request(ClientRequest::PingRequest(Default::default()));
                    match tokio::time::timeout(self.timeout, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return format!("ping failed: {e}"),
                        Err(_) => return format!("no answer to ping within {} s", self.timeout.as_secs()),
                    }
                }
            }
        }
    }

    /// Starts the transport, initializes and fetches the catalog.
    async fn connect(&self) -> Result<(Running, Connection)> {
        let ordered = OrderedNotices {
            notices: self.notices.clone(),
            call_notices: Arc::clone(&self.call_notices),
        };
        let refetch = Arc::clone(&self.refetch);
        let (running, pid) = self
            .open_session(Arc::clone(&self.requests), ordered, refetch)
            .await?;
        let catalog = fetch_catalog(&self.name, running.peer()).await?;
        let peer = running.peer().clone();
        Ok((running, Connection { peer, catalog, pid }))
    }

    /// Starts the transport and initializes an upstream session whose
    /// requests `requests` answers, whose ordered notifications go to
    /// `ordered`, and whose `list_changed` wake `refetch`.
    pub(crate) async fn open_session(
        &self,
        requests: Arc<UpstreamRequests>,
        ordered: OrderedNotices,
        refetch: Arc<Notify>,
    ) -> Result<(Running, Option<u32>)> {
        let client = UpstreamClient { refetch, requests };
        match (&self.spec.command, &self.spec.url) {
            (Some(command), _) => {
                let (transport, pid) = self.spawn(command)?;
                let running = client
                    .serve(ordered.wrap(&self.name, transport))
                    .await
                    .map_err(|e| Error::Connect(format!("initializing: {}", with_causes(&e))))?;
                Ok((running, pid))
            }
            (None, Some(url)) => {
                let transport = StreamableHttpClientTransport::with_client(
                    self.http.clone(),
                    self.http_config(url)?,
                );
                let running = client
                    .serve(ordered.wrap(&self.name, transport))
                    .await
                    .map_err(|e| {
                        Error::Connect(format!("initializing {url}: {}", http_init_error(&e)))
                    })?;
                Ok((running, None))
            }
            (None, None) => Err(Error::Config("neither `command` nor `url` is set".into())),
        }
    }

    /// The child process, its stderr logged at debug level under the server's name.
    fn spawn(&self, command: &str) -> Result<(TokioChildProcess, Option<u32>)> {
        let mut cmd = tokio::process::Command::new(command);
        for var in self.secret_env.iter() {
            cmd.env_remove(var);
        }
        cmd.args(&self.spec.args)
            .envs(&self.spec.env)
            .kill_on_drop(true);
        if let Some(cwd) = &self.spec.cwd {
            cmd.current_dir(cwd);
        }
        let (child, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Connect(format!("starting `{command}`: {e}")))?;
        if let Some(stderr) = stderr {
            let name = self.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(server = %name, "upstream stderr: {line}");
                }
            });
        }
        let pid = child.id();
        Ok((child, pid))
    }

    fn http_config(&self, url: &str) -> Result<StreamableHttpClientTransportConfig> {
        let mut headers = HashMap::new();
        for (name, value) in &self.spec.headers {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|e| Error::Config(format!("header name `{name}`: {e}")))?;
            let value = http::HeaderValue::try_from(value.as_str())
                .map_err(|e| Error::Config(format!("header `{name}`: {e}")))?;
            headers.insert(name, value);
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(url)
            .max_concurrent_requests(HTTP_MAX_CONCURRENT)
            .custom_headers(headers);
        if let Some(var) = &self.spec.bearer_token_env {
            let token = std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "`bearer_token_env`: environment variable {var} is not set"
                ))
            })?;
            config = config.auth_header(token);
        }
        Ok(config)
    }
}

/// A failed list request: the upstream's own error answer, or the transport's.
fn listing_failed(what: &str, error: rmcp::ServiceError) -> Error {
    match error {
        rmcp::ServiceError::McpError(e) => Error::Upstream(format!("{what}: {}", e.message)),
        other => Error::Transport(format!("{what}: {other}")),
    }
}

/// Tools, prompts and resources of a connected upstream, each list fetched
/// only when the upstream announced the capability.
async fn fetch_catalog(server: &str, peer: &Peer<RoleClient>) -> Result<Catalog> {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut catalog = Catalog::default();
    if capabilities.tools.is_some() {
        let tools = peer
            .list_all_tools()
            .await
            .map_err(|e| listing_failed("tools/list", e))?;
        catalog.tools = tools
            .into_iter()
            .map(|tool| {
                let schema = serde_json::Value::Object((*tool.input_schema).clone());
                let validator = jsonschema::validator_for(&schema)
                    .inspect_err(|e| {
                        tracing::warn!(server, tool = %tool.name, "input schema does not compile, not validated: {e}");
                    })
                    .ok();
                UpstreamTool { tool, validator }
            })
            .collect();
    }
    if capabilities.prompts.is_some() {
        catalog.prompts = peer
            .list_all_prompts()
            .await
            .map_err(|e| listing_failed("prompts/list", e))?;
    }
    if capabilities.resources.is_some() {
        catalog.resources = peer
            .list_all_resources()
            .await
            .map_err(|e| listing_failed("resources/list", e))?;
        catalog.templates = peer
            .list_all_resource_templates()
            .await
            .map_err(|e| listing_failed("resources/templates/list", e))?;
    }
    Ok(catalog)
}
