//! Where a request goes once it is authenticated and within its rates: the
//! protocol-version header is checked, a POST body read (bounded) and checked
//! (`jsonrpc`), and then
//!
//! - a request naming a session reaches it only when that session is open for
//!   the same key (else 404, as for an unknown session), and keeps it busy
//!   while its answer streams;
//! - an `initialize` takes a session slot first (503 at the limit);
//! - a request with neither a session id nor a protocol version, for a method
//!   that needs no session (`ping`, `tools/*`, `prompts/*`, `resources/*`), is
//!   served statelessly with a JSON answer, so a one-line curl works;
//! - DELETE of a session answers 200 (the Python SDK accepts only 200 or 204),
//!   and 404 when there is no such session.
//!
//! A request without `Accept` (or with `*/*`) accepts any media type (RFC 9110,
//! 12.5.1): it is treated as accepting both JSON and an event stream.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mistralrs_mcp::SessionLife;
use rmcp::model::{ErrorCode, ProtocolVersion};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use serde_json::{Value, json};

use super::auth::KeyId;
use super::handler::McpHandler;
use super::jsonrpc::{self, Message, Refused};
use super::priming;
use super::rejection::Rejection;
use super::sessions::Sessions;
use crate::guarded_body::GuardedBody;

/// Largest MCP request body. JSON-RPC messages with chat messages in them stay
/// far below; anything larger is refused before it is read.
pub(super) const MAX_BODY_BYTES: usize = 4 << 20;

/// Methods a client may call without a session or protocol version.
const SESSIONLESS_METHODS: [&str; 8] = [
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
];

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// What the front door routes between.
pub(super) struct FrontDoor {
    pub(super) sessions: Arc<Sessions>,
    /// `<replica_id>.`: the prefix of the session ids this replica gives out.
    pub(super) session_prefix: Option<String>,
    /// Serves sessionless requests, answering with JSON.
    pub(super) stateless: StreamableHttpService<McpHandler, NeverSessionManager>,
}

impl std::fmt::Debug for FrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoor").finish_non_exhaustive()
    }
}

/// Middleware: the routing the module describes.
pub(super) async fn route(
    State(door): State<Arc<FrontDoor>>,
    mut request: Request,
    next: Next,
) -> Result<Response, Rejection> {
    check_protocol_version(request.headers())?;
    accept_any_media_type(request.headers_mut());
    let owner = request.extensions().get::<KeyId>().copied();
    let session = door.local_session_id(request.headers_mut())?;
    match (request.method().clone(), session) {
        (Method::POST, session) => door.post(request, session, owner, next).await,
        (Method::DELETE, Some(id)) => door.delete(request, &id, owner, next).await,
        (_, Some(id)) => door.in_session(request, &id, owner, next).await,
        (_, None) => Ok(next.run(request).await),
    }
}

impl FrontDoor {
    /// The request's session id as rmcp knows it. With a replica id, clients
    /// hold `<replica_id>.<id>`: the prefix is checked and taken off (in the
    /// header too); an id of another replica is an unknown session.
    fn local_session_id(&self, headers: &mut HeaderMap) -> Result<Option<String>, Rejection> {
        let Some(presented) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let Some(prefix) = &self.session_prefix else {
            return Ok(Some(presented.to_owned()));
        };
        let local = presented
            .strip_prefix(prefix.as_str())
            .ok_or(Rejection::UnknownSession)?
            .to_owned();
        let value = HeaderValue::from_str(&local).map_err(|_| Rejection::UnknownSession)?;
        headers.insert(SESSION_HEADER, value);
        Ok(Some(local))
    }

    /// The `initialize` answer with the session id clients hold.
    fn with_public_session_id(&self, mut response: Response, local: &str) -> Response {
        if let Some(prefix) = &self.session_prefix
            && let Ok(value) = HeaderValue::from_str(&format!("{prefix}{local}"))
        {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
        response
    }

    async fn post(
        &self,
        request: Request,
        session: Option<String>,
        owner: Option<KeyId>,
        next: Next,
    ) -> Result<Response, Rejection> {
        if crate::unread_body::declared_length(&request).is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(Rejection::BodyTooLarge);
        }
        let (parts, body) = request.into_parts();
        let bytes = read_body(body).await?;
        let message = match jsonrpc::check(&bytes) {
            Ok(message) => message,
            Err(Refused::Rejected(rejection)) => return Err(rejection),
            Err(Refused::InvalidParams { id, message }) => return Ok(invalid_params(id, &message)),
        };
        let asked = if message.is_initialize() {
            asked_version(&bytes)
        } else {
            None
        };
        let request = Request::from_parts(parts, Body::from(bytes));
        if let Some(id) = session {
            return self.in_session(request, &id, owner, next).await;
        }
        if message.is_initialize() {
            let reservation = self.sessions.reserve().ok_or(Rejection::TooManySessions)?;
            let takes_priming = priming::takes_priming(asked.as_deref());
            let response = next.run(request).await;
            let opened = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|_| response.status().is_success());
            let Some(id) = opened.map(str::to_owned) else {
                return Ok(response);
            };
            reservation.open(&id, owner, takes_priming);
            let response = self.with_public_session_id(response, &id);
            return Ok(match takes_priming {
                true => response,
                false => response.map(priming::strip),
            });
        }
        if needs_no_session(request.headers(), &message) {
            return Ok(self.stateless.handle(request).await.map(Body::new));
        }
        Ok(next.run(request).await)
    }

    /// A request of session `id`: passed on only when the session is open for
    /// `owner`; the session stays busy until the answer has streamed.
    async fn in_session(
        &self,
        mut request: Request,
        id: &str,
        owner: Option<KeyId>,
        next: Next,
    ) -> Result<Response, Rejection> {
        let session_use = self
            .sessions
            .enter(id, owner)
            .ok_or(Rejection::UnknownSession)?;
        request.extensions_mut().insert(SessionLife {
            id: Arc::from(id),
            closed: session_use.closed.clone(),
        });
        let response = next.run(request).await;
        if response.status() == StatusCode::NOT_FOUND {
            self.sessions.forget(id);
        }
        let response = match session_use.takes_priming {
            true => response,
            false => response.map(priming::strip),
        };
        Ok(response.map(|body| GuardedBody::wrap(body, session_use)))
    }

    /// DELETE: 404 for a session that is not open for `owner`, else 200 once
    /// rmcp has closed it.
    async fn delete(
        &self,
        request: Request,
        id: &str,
        owner: Option<KeyId>,
        next: Next,
    ) -> Result<Response, Rejection> {
        let mut response = self.in_session(request, id, owner, next).await?;
        if response.status().is_success() {
            self.sessions.forget(id);
            *response.status_mut() = StatusCode::OK;
        }
        Ok(response)
    }
}

/// The `protocolVersion` an `initialize` body asks for.
fn asked_version(body: &[u8]) -> Option<String> {
    let message: Value = serde_json::from_slice(body).ok()?;
    message["params"]["protocolVersion"]
        .as_str()
        .map(str::to_owned)
}

/// Reads a body of at most [`MAX_BODY_BYTES`]: 413 past it, 400 when it breaks off.
async fn read_body(body: Body) -> Result<Bytes, Rejection> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Rejection::BodyTooLarge),
        Err(_) => Err(Rejection::BodyUnreadable),
    }
}

/// A request that may be served without a session: no session id, no protocol
/// version anywhere, a method that keeps no state.
fn needs_no_session(headers: &HeaderMap, message: &Message) -> bool {
    !headers.contains_key(VERSION_HEADER)
        && !message.has_meta_protocol_version
        && message.is_request()
        && message
            .method
            .as_deref()
            .is_some_and(|m| SESSIONLESS_METHODS.contains(&m))
}

/// 400 with -32022 for an `MCP-Protocol-Version` this server does not speak,
/// with the versions it does (rmcp alone answers with plain text).
fn check_protocol_version(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(requested) = headers.get(VERSION_HEADER) else {
        return Ok(());
    };
    let requested = requested.to_str().unwrap_or("");
    let known = ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .any(|v| v.as_str() == requested);
    if known {
        return Ok(());
    }
    Err(Rejection::UnsupportedProtocolVersion {
        requested: requested.to_owned(),
        supported: ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .map(ProtocolVersion::as_str)
            .collect(),
    })
}

/// No `Accept`, or a wildcard in it, accepts JSON and event streams alike.
fn accept_any_media_type(headers: &mut HeaderMap) {
    let any = headers.get(ACCEPT).is_none_or(|accept| {
        accept
            .to_str()
            .unwrap_or("")
            .split(',')
            .any(|range| matches!(range.split(';').next().map(str::trim), Some("*/*")))
    });
    if any {
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
    }
}

/// -32602 to request `id`, as JSON-RPC answers it: HTTP 200 with the error.
fn invalid_params(id: Value, message: &str) -> Response {
    mistralrs_core::metrics::metrics()
        .http_mcp_errors
        .get(&mistralrs_core::metrics::KindLabel {
            kind: "invalid_params",
        })
        .inc();
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": ErrorCode::INVALID_PARAMS.0, "message": message},
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
