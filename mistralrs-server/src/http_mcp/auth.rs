//! API-key authentication of the MCP endpoint: `Authorization: Bearer <key>`.
//!
//! Keys come from `[http_mcp] api_keys`, the file `api_keys_file` (one per line),
//! the environment variable `MISTRALRS_MCP_API_KEYS` (comma-separated) and
//! repeated `--http-mcp-auth-key`. A presented key is compared with every
//! configured key in constant time, without stopping at the first match, so the
//! response time does not tell how much of a key was right. Keys are never logged.
//!
//! Keys of `[[tool_forwarding.security.key_scopes]]` (read from the environment
//! variable each names) are accepted too, and carry their scope: the request
//! gets the matching [`CallerScope`] in its extensions for the forwarder. When a
//! key is configured both plainly and with a scope, the scope applies.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mistralrs_core::metrics::metrics;
use mistralrs_mcp::CallerScope;
use mistralrs_mcp::config::KeyScope;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::HttpMcpConfig;

use mistralrs_mcp::config::API_KEYS_ENV as KEYS_ENV;

/// Which configured key a request presented (its index), for per-key limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyId(pub(super) usize);

/// The accepted keys, and what each may use of the forwarded tools.
pub(super) struct ApiKeys {
    keys: Vec<Vec<u8>>,
    /// Parallel to `keys`; scoped keys come last so that they win a tie.
    scopes: Vec<Arc<CallerScope>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

/// Why a request was refused; the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Missing,
    Malformed,
    Invalid,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
        }
    }
}

impl ApiKeys {
    /// Every configured key; an error when there is none, the file is
    /// unreadable or a scope's environment variable is unset. `env` reads the
    /// environment (a parameter so tests need not change the process's).
    pub(super) fn load(
        config: &HttpMcpConfig,
        key_scopes: &[KeyScope],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut keys: Vec<String> = config.api_keys.clone();
        if let Some(path) = &config.api_keys_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("[http_mcp] api_keys_file {}: {e}", path.display()))?;
            keys.extend(text.lines().map(str::to_owned));
        }
        if let Some(list) = env(KEYS_ENV) {
            keys.extend(list.split(',').map(str::to_owned));
        }
        let mut keys: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let mut scopes = vec![CallerScope::unscoped(); keys.len()];
        for (i, scope) in key_scopes.iter().enumerate() {
            let key = env(&scope.key_env).ok_or_else(|| {
                anyhow::anyhow!(
                    "[[tool_forwarding.security.key_scopes]] {i}: environment variable {} is not set",
                    scope.key_env
                )
            })?;
            let key = key.trim();
            if key.is_empty() {
                anyhow::bail!(
                    "[[tool_forwarding.security.key_scopes]] {i}: environment variable {} is empty",
                    scope.key_env
                );
            }
            keys.push(key.as_bytes().to_vec());
            scopes.push(CallerScope::from_config(i, scope));
        }
        if keys.is_empty() {
            anyhow::bail!(
                "[http_mcp] auth_method = \"api_key\" needs at least one key (api_keys, api_keys_file, {KEYS_ENV} or --http-mcp-auth-key)"
            );
        }
        Ok(Self { keys, scopes })
    }

    fn check(&self, header: Option<&HeaderValue>) -> Result<KeyId, Failure> {
        let header = header.ok_or(Failure::Missing)?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(Failure::Malformed)?;
        // Every key is compared, and the index chosen without branching on a match.
        let mut matched = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, key) in self.keys.iter().enumerate() {
            let hit = key.as_slice().ct_eq(presented.as_bytes());
            index = u64::conditional_select(&index, &(i as u64), hit);
            matched |= hit;
        }
        if bool::from(matched) {
            Ok(KeyId(index as usize))
        } else {
            Err(Failure::Invalid)
        }
    }
}

/// Middleware: 401 with `WWW-Authenticate` unless the request carries a valid key.
pub(super) async fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    mut request: Request,
    next: Next,
) -> Response {
    match keys.check(request.headers().get(AUTHORIZATION)) {
        Ok(key) => {
            let scope = Arc::clone(&keys.scopes[key.0]);
            request.extensions_mut().insert(key);
            request.extensions_mut().insert(scope);
            next.run(request).await
        }
        Err(failure) => {
            metrics()
                .http_mcp_auth_failures
                .with_label_values(&[failure.label()])
                .inc();
            let message = match failure {
                Failure::Missing => "missing Authorization: Bearer <key>",
                Failure::Malformed => "malformed Authorization header; expected Bearer <key>",
                Failure::Invalid => "invalid API key",
            };
            let challenge = HeaderValue::from_static(r#"Bearer realm="mistralrs-mcp""#);
            let body = axum::Json(serde_json::json!({"error": message}));
            (
                StatusCode::UNAUTHORIZED,
                [(WWW_AUTHENTICATE, challenge)],
                body,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            keys: vec![b"alpha-key".to_vec(), b"beta".to_vec()],
            scopes: vec![CallerScope::unscoped(), CallerScope::unscoped()],
        }
    }

    #[test]
    fn accepts_any_configured_key_and_names_each_failure() {
        let k = keys();
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(k.check(Some(&header("Bearer alpha-key"))), Ok(KeyId(0)));
        assert_eq!(k.check(Some(&header("Bearer beta"))), Ok(KeyId(1)));
        assert_eq!(k.check(None), Err(Failure::Missing));
        assert_eq!(
            k.check(Some(&header("Basic YWxhZGRpbg=="))),
            Err(Failure::Malformed)
        );
        assert_eq!(k.check(Some(&header("Bearer "))), Err(Failure::Malformed));
        assert_eq!(
            k.check(Some(&header("Bearer alpha"))),
            Err(Failure::Invalid)
        );
        assert_eq!(
            k.check(Some(&header("Bearer alpha-key-and-more"))),
            Err(Failure::Invalid)
        );
    }

    #[test]
    fn debug_output_never_shows_keys() {
        assert_eq!(format!("{:?}", keys()), "ApiKeys(2 keys)");
    }

    #[test]
    fn a_key_file_adds_keys_and_no_keys_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "one\n\n  two  \n").unwrap();
        let config = HttpMcpConfig {
            api_keys_file: Some(file),
            ..HttpMcpConfig::default()
        };
        let loaded = ApiKeys::load(&config, &[], |_| None).unwrap();
        assert_eq!(loaded.keys, [b"one".to_vec(), b"two".to_vec()]);
        let err = ApiKeys::load(&HttpMcpConfig::default(), &[], |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one key"), "{err}");
    }

    #[test]
    fn a_scoped_key_authenticates_with_its_scope_and_wins_a_tie() {
        let var = "SCOPED_KEY";
        let env = |name: &str| (name == var).then(|| "shared-key".to_owned());
        let config = HttpMcpConfig {
            api_keys: vec!["shared-key".into(), "other".into()],
            ..HttpMcpConfig::default()
        };
        let scope = KeyScope {
            key_env: var.into(),
            namespaces: Some(vec!["fs".into()]),
            tools: None,
        };
        let loaded = ApiKeys::load(&config, &[scope], env).unwrap();
        let header = HeaderValue::from_static("Bearer shared-key");
        let id = loaded.check(Some(&header)).unwrap();
        assert_eq!(loaded.scopes[id.0].id, 1, "the scoped entry wins");
        assert!(!loaded.scopes[id.0].allows_namespace("web"));
        let missing = KeyScope {
            key_env: "MISTRALRS_TEST_UNSET_VARIABLE".into(),
            ..KeyScope::default()
        };
        let err = ApiKeys::load(&config, &[missing], env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("MISTRALRS_TEST_UNSET_VARIABLE"), "{err}");
    }
}
