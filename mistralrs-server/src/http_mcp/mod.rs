//! The MCP endpoint: `/mcp/stream` over Streamable HTTP on its own port.
//!
//! Built on rmcp's `StreamableHttpService`, a tower service mounted in axum. rmcp
//! speaks both protocol generations: sessions (`Mcp-Session-Id`, GET stream,
//! DELETE, resumption) up to 2025-11-25 and stateless POST at 2026-07-28; and it
//! checks `Host` against loopback names by default (DNS-rebinding protection).
//! What the endpoint offers lives in [`handler`]; what reaches it, and how, in
//! the layers `app` stacks (refusals in [`rejection`]).

mod auth;
mod front_door;
mod handler;
mod jsonrpc;
mod priming;
mod rate_limit;
mod redis_limits;
mod rejection;
mod sessions;
mod version_adapt;

use crate::openai::tool_loop::McpToolDefaults;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use mistralrs_core::Router;
use mistralrs_core::metrics::{McpRequestLabels, MethodLabel, metrics};
use mistralrs_mcp::Forwarder;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::app::HealthSection;
use crate::config::{Config, RateLimitBackend, RateLimitConfig};
use crate::guarded_body::GuardedBody;
use handler::McpHandler;

/// The path of the endpoint on its port.
pub const MCP_PATH: &str = "/mcp/stream";

/// SSE keep-alive: frequent enough that proxies keep the stream open and a
/// vanished client is noticed within seconds.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Sessions open at once unless `[http_mcp] max_sessions` says otherwise.
const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Seconds before an idle session closes unless `session_idle_timeout_secs` says otherwise.
const DEFAULT_IDLE_SECS: u64 = 600;

/// The MCP endpoint as `app` builds it.
pub struct McpEndpoint {
    /// The MCP port's routes.
    pub app: axum::Router,
    /// The shared rate limiter's `/health` entry, with `backend = "redis"`.
    pub rate_limit_health: Option<HealthSection>,
}

/// The MCP port's routes: the served models' chat tool and, with a
/// forwarder, the upstream servers' tools. `shutdown` ends every session and
/// stream when cancelled. Connects to Redis for shared rate limits.
pub async fn app(
    router: Arc<Router>,
    forwarder: Option<Arc<Forwarder>>,
    full_config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<McpEndpoint> {
    let config = &full_config.http_mcp;
    let keys = auth::ApiKeys::load(
        config,
        &full_config.tool_forwarding.security.key_scopes,
        |var| std::env::var(var).ok(),
    )?;
    let ip = full_config
        .serve_ip
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if keys.is_none() && !ip.is_loopback() {
        anyhow::bail!(
            "the MCP endpoint without API keys may only bind a loopback address, not {ip}"
        );
    }
    let mut server_config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
        .with_cancellation_token(shutdown.clone());
    if !config.allowed_origins.is_empty() {
        server_config.allowed_origins = config.allowed_origins.clone();
    }
    match config.allowed_hosts.as_deref() {
        None => {}
        Some([any]) if any == "*" => server_config = server_config.disable_allowed_hosts(),
        Some(hosts) => server_config = server_config.with_allowed_hosts(hosts.iter().cloned()),
    }
    let handler_factory = {
        let router = Arc::clone(&router);
        let defaults = Arc::new(McpToolDefaults::from_config(full_config));
        move || {
            Ok(McpHandler::new(
                Arc::clone(&router),
                forwarder.clone(),
                Arc::clone(&defaults),
            ))
        }
    };
    // Sessions expire in `sessions`, which knows about open streams; rmcp's own
    // idle timer would close a session whose GET stream is open.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = None;
    let manager = Arc::new(manager);
    let service: StreamableHttpService<McpHandler, LocalSessionManager> =
        StreamableHttpService::new(
            handler_factory.clone(),
            Arc::clone(&manager),
            server_config.clone(),
        );
    let stateless = StreamableHttpService::new(
        handler_factory,
        Arc::new(NeverSessionManager::default()),
        server_config
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    let idle = Duration::from_secs(
        config
            .session_idle_timeout_secs
            .unwrap_or(DEFAULT_IDLE_SECS),
    );
    let sessions = Arc::new(sessions::Sessions::new(
        manager,
        config.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
        idle,
    ));
    tokio::spawn(Arc::clone(&sessions).reap_idle(shutdown));
    let door = Arc::new(front_door::FrontDoor {
        sessions,
        session_prefix: config.replica_id.as_ref().map(|id| format!("{id}.")),
        stateless,
    });
    // `layer` wraps what is already there, so the last layer added runs first:
    // count, close after unread bodies, find the client's address, authenticate,
    // rate-limit, front door
    // (protocol version, body checks, sessions), serve.
    let mut app = axum::Router::new()
        .nest_service(MCP_PATH, service)
        .layer(middleware::from_fn_with_state(door, front_door::route));
    let rates = &config.rate_limit;
    let shared = match rates.backend {
        RateLimitBackend::Memory => None,
        RateLimitBackend::Redis => Some(Arc::new(redis_limits::RedisLimits::connect(rates).await?)),
    };
    if let Some(limits) = rate_limit::RateLimits::new(rates, shared.clone())? {
        app = app.layer(middleware::from_fn_with_state(
            Arc::new(limits),
            rate_limit::limit,
        ));
    }
    if let Some(keys) = keys {
        let per_second = rates
            .auth_failures_per_ip
            .unwrap_or(RateLimitConfig::DEFAULT_AUTH_FAILURES_PER_IP);
        let burst = rates
            .auth_failures_burst
            .unwrap_or(RateLimitConfig::DEFAULT_AUTH_FAILURES_BURST);
        let authenticator = Arc::new(auth::Authenticator {
            keys,
            failures: auth::AuthFailureLimit::new(per_second, burst)?,
            shared: shared.clone(),
            failure_rate: redis_limits::Cell::new(per_second, Some(burst)),
        });
        app = app.layer(middleware::from_fn_with_state(
            authenticator,
            auth::require_key,
        ));
    }
    let app = app
        .layer(middleware::from_fn_with_state(
            Arc::clone(&full_config.connection_limits().trusted_proxies),
            crate::client_ip::resolve,
        ))
        .layer(middleware::from_fn_with_state(
            front_door::MAX_BODY_BYTES,
            crate::unread_body::close_after_unread_body,
        ))
        .layer(middleware::from_fn(count_requests));
    Ok(McpEndpoint {
        app,
        rate_limit_health: shared.map(|redis| HealthSection(Box::new(move || redis.report()))),
    })
}

/// Decrements `http_mcp_active_connections` when the response body it rides
/// with is dropped (finished, or the client went away).
struct ActiveConnection;

impl ActiveConnection {
    fn open() -> Self {
        metrics().http_mcp_active_connections.inc();
        Self
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        metrics().http_mcp_active_connections.dec();
    }
}

/// `http_mcp_requests_total{method,status}`, the time to the response head, and
/// the requests in flight until their body (an SSE stream, maybe) ends.
async fn count_requests(request: Request, next: Next) -> Response {
    let method = match *request.method() {
        Method::POST => "POST",
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    let active = ActiveConnection::open();
    let started = Instant::now();
    let response = next.run(request).await;
    let m = metrics();
    m.http_mcp_request_duration
        .get(&MethodLabel { method })
        .observe(started.elapsed().as_secs_f64());
    m.http_mcp_requests
        .get(&McpRequestLabels {
            method,
            status: response.status().as_str(),
        })
        .inc();
    response.map(|body| GuardedBody::wrap(body, active))
}
