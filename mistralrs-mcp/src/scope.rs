//! What one caller may see and call, as resolved from its API key.
//!
//! The MCP endpoint's authentication layer puts a [`CallerScope`] in each
//! request's extensions; the forwarder reads it for listing, calling and the
//! cache key. Requests without one (no authentication, or a key without a scope)
//! are limited by the global policy only.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::KeyScope;

/// One client session of the MCP endpoint, by identity (`Arc::ptr_eq`): the
/// handler holds one per session, and forwarded resource subscriptions are
/// kept per session.
#[derive(Debug, Default)]
pub struct ClientSession;

/// A client's MCP session as the endpoint knows it: the MCP endpoint puts it in
/// the extensions of each request of a session, so that work done for the
/// session (a request relayed to it, its own upstream sessions) stops when the
/// session ends rather than at a timeout.
#[derive(Debug, Clone)]
pub struct SessionLife {
    /// The `Mcp-Session-Id`.
    pub id: std::sync::Arc<str>,
    /// Cancelled when the session ends (DELETE, or unknown to rmcp).
    pub closed: tokio_util::sync::CancellationToken,
}

impl SessionLife {
    /// The session of a request to the MCP endpoint; `None` for a stateless one.
    pub fn of(context: &rmcp::service::RequestContext<rmcp::RoleServer>) -> Option<Self> {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Self>())
            .cloned()
    }
}

/// The limits of one scoped key. Unset fields allow everything (the global
/// policy still applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerScope {
    /// Distinguishes scopes in cache keys; 0 is the unscoped caller.
    pub id: usize,
    /// Namespaces the caller may use.
    pub namespaces: Option<BTreeSet<String>>,
    /// Forwarded tool names the caller may use.
    pub tools: Option<BTreeSet<String>>,
}

impl CallerScope {
    /// The caller limited by the global policy only.
    pub fn unscoped() -> Arc<Self> {
        Arc::new(Self {
            id: 0,
            namespaces: None,
            tools: None,
        })
    }

    /// The scope of `[[tool_forwarding.security.key_scopes]]` entry `index`.
    pub fn from_config(index: usize, scope: &KeyScope) -> Arc<Self> {
        let set = |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().cloned().collect());
        Arc::new(Self {
            id: index + 1,
            namespaces: set(&scope.namespaces),
            tools: set(&scope.tools),
        })
    }

    /// Whether the caller may use anything of `namespace`.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|n| n.contains(namespace))
    }

    /// Whether the caller may use the forwarded tool `name` of `namespace`.
    pub fn allows_tool(&self, namespace: &str, name: &str) -> bool {
        self.allows_namespace(namespace) && self.tools.as_ref().is_none_or(|t| t.contains(name))
    }
}
