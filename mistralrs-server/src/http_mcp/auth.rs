//! API-key authentication of the MCP endpoint: `Authorization: Bearer <key>`.
//!
//! Keys come from `[http_mcp] api_keys` and `auth_key`, the file `api_keys_file`
//! (one per line), the environment variable `MISTRALRS_MCP_API_KEYS`
//! (comma-separated), repeated `--http-mcp-auth-key` and the key scopes. Any key
//! from any of them turns key authentication on: a configured key never goes
//! unchecked. The scheme is matched case-insensitively (RFC 7235). A presented key is compared with every
//! configured key in constant time, without stopping at the first match, so the
//! response time does not tell how much of a key was right. Keys are never logged.
//!
//! Keys of `[[tool_forwarding.security.key_scopes]]` (read from the environment
//! variable each names) are accepted too, and carry their scope: the request
//! gets the matching [`CallerScope`] in its extensions for the forwarder. When a
//! key is configured both plainly and with a scope, the scope applies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use governor::DefaultKeyedRateLimiter;
use governor::clock::{Clock, DefaultClock};
use mistralrs_core::metrics::{ReasonLabel, metrics};
use mistralrs_core::sync::Mutex;
use mistralrs_mcp::CallerScope;
use mistralrs_mcp::config::KeyScope;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::redis_limits::{Cell, RedisLimits, shared_or_fallback};
use super::rejection::{AuthFailure as Failure, Rejection};
use crate::client_ip::ClientIp;
use crate::config::{AuthMethod, HttpMcpConfig};

use mistralrs_mcp::config::API_KEYS_ENV as KEYS_ENV;

/// Which configured key a request presented (its index): its scope and the
/// sessions it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyId(pub(super) usize);

/// The presented key's identity across replicas, for per-key limits: the first
/// 8 bytes of its SHA-256, the same wherever and in whichever order the key is
/// configured, and not the key (it may be stored in Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct KeyFingerprint(pub(super) u64);

impl KeyFingerprint {
    fn of(key: &[u8]) -> Self {
        let digest = Sha256::digest(key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self(u64::from_be_bytes(first))
    }
}

/// The accepted keys, and what each may use of the forwarded tools.
pub(super) struct ApiKeys {
    keys: Vec<Vec<u8>>,
    /// Parallel to `keys`.
    fingerprints: Vec<KeyFingerprint>,
    /// Parallel to `keys`; scoped keys come last so that they win a tie.
    scopes: Vec<Arc<CallerScope>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

impl ApiKeys {
    /// Every configured key, or `None` when no key is configured anywhere and
    /// `auth_method` does not ask for keys. Errors: `auth_method = "api_key"`
    /// without a key, `auth_method = "none"` next to keys, an unreadable key file,
    /// a scope whose environment variable is unset. `env` reads the environment
    /// (a parameter so tests need not change the process's).
    pub(super) fn load(
        config: &HttpMcpConfig,
        key_scopes: &[KeyScope],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Self>> {
        let mut keys: Vec<String> = config.api_keys.clone();
        keys.extend(config.auth_key.clone());
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
        match (config.auth_method, keys.is_empty()) {
            (Some(AuthMethod::ApiKey), true) => anyhow::bail!(
                "[http_mcp] auth_method = \"api_key\" needs at least one key (api_keys, auth_key, api_keys_file, {KEYS_ENV} or --http-mcp-auth-key)"
            ),
            (Some(AuthMethod::None), false) => anyhow::bail!(
                "[http_mcp] auth_method = \"none\" contradicts the configured API keys (api_keys, auth_key, api_keys_file, {KEYS_ENV}, --http-mcp-auth-key or key_scopes): remove the keys, or the auth_method line to require them"
            ),
            (_, true) => Ok(None),
            (_, false) => Ok(Some(Self {
                fingerprints: keys.iter().map(|k| KeyFingerprint::of(k)).collect(),
                keys,
                scopes,
            })),
        }
    }

    fn check(&self, header: Option<&HeaderValue>) -> Result<KeyId, Failure> {
        let header = header.ok_or(Failure::Missing)?;
        let presented = header
            .to_str()
            .ok()
            .and_then(bearer_token)
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

/// The token of `Bearer <token>`, the scheme in any case (RFC 7235).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Failed authentications per client IP. Each failure takes a token from the
/// address's own budget (`[http_mcp.rate_limit] auth_failures_per_ip`); once it
/// is spent, every request from that address gets 429 until the budget refills,
/// with the right key or not, so guessing gains nothing from speed.
pub(super) struct AuthFailureLimit {
    budget: DefaultKeyedRateLimiter<IpAddr>,
    blocked_until: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for AuthFailureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthFailureLimit")
    }
}

impl AuthFailureLimit {
    /// Forget expired blocks once this many addresses are held.
    const PRUNE_AT: usize = 1024;

    /// `per_second` failures per address, `burst` at once.
    pub(super) fn new(per_second: f64, burst: u32) -> anyhow::Result<Self> {
        Ok(Self {
            budget: DefaultKeyedRateLimiter::keyed(super::rate_limit::quota(
                per_second,
                Some(burst),
            )?),
            blocked_until: Mutex::new("mcp_auth_failures", HashMap::new()),
        })
    }

    /// How long `ip` is still refused, if it is.
    fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let until = *self.blocked_until.lock().get(&ip)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a failure; how long `ip` is refused when that spent its budget.
    fn record_failure(&self, ip: IpAddr) -> Option<Duration> {
        let wait = self
            .budget
            .check_key(&ip)
            .err()?
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_millis(1));
        let now = Instant::now();
        let mut blocked = self.blocked_until.lock();
        if blocked.len() >= Self::PRUNE_AT {
            blocked.retain(|_, until| *until > now);
            self.budget.retain_recent();
        }
        blocked.insert(ip, now + wait);
        Some(wait)
    }
}

/// What the authentication middleware needs.
#[derive(Debug)]
pub(super) struct Authenticator {
    pub(super) keys: ApiKeys,
    /// This replica's failure budgets (with Redis, the fallback's).
    pub(super) failures: AuthFailureLimit,
    /// Failure budgets shared through Redis.
    pub(super) shared: Option<Arc<RedisLimits>>,
    /// The failure budget's rate, as Redis counts it.
    pub(super) failure_rate: Cell,
}

impl Authenticator {
    /// How long `ip` is still refused for failed authentications, if it is.
    async fn blocked(&self, ip: IpAddr) -> Result<Option<Duration>, Rejection> {
        shared_or_fallback(
            self.shared.as_deref(),
            |redis| redis.auth_blocked(ip),
            None,
            || self.failures.blocked(ip),
        )
        .await
    }

    /// Counts a failure from `ip`; how long it is refused when that spent its budget.
    async fn record_failure(&self, ip: IpAddr) -> Result<Option<Duration>, Rejection> {
        shared_or_fallback(
            self.shared.as_deref(),
            |redis| redis.record_auth_failure(ip, self.failure_rate),
            None,
            || self.failures.record_failure(ip),
        )
        .await
    }
}

/// Middleware: 401 with `WWW-Authenticate` unless the request carries a valid
/// key; 429 while the caller's address has spent its failure budget.
pub(super) async fn require_key(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Result<Response, Rejection> {
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    let refuse = |retry_after| Rejection::RateLimited {
        scope: "auth_failures",
        retry_after,
    };
    if let Some(ip) = ip
        && let Some(wait) = auth.blocked(ip).await?
    {
        return Err(refuse(wait));
    }
    match auth.keys.check(request.headers().get(AUTHORIZATION)) {
        Ok(key) => {
            let scope = Arc::clone(&auth.keys.scopes[key.0]);
            request.extensions_mut().insert(key);
            request
                .extensions_mut()
                .insert(auth.keys.fingerprints[key.0]);
            request.extensions_mut().insert(scope);
            Ok(next.run(request).await)
        }
        Err(failure) => {
            let blocked = match ip {
                Some(ip) => auth.record_failure(ip).await?,
                None => None,
            };
            if let Some(wait) = blocked {
                metrics()
                    .http_mcp_auth_failures
                    .get(&ReasonLabel {
                        reason: failure.label(),
                    })
                    .inc();
                return Err(refuse(wait));
            }
            Err(Rejection::Unauthorized(failure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let keys = vec![b"alpha-key".to_vec(), b"beta".to_vec()];
        ApiKeys {
            fingerprints: keys.iter().map(|k| KeyFingerprint::of(k)).collect(),
            keys,
            scopes: vec![CallerScope::unscoped(), CallerScope::unscoped()],
        }
    }

    #[test]
    fn accepts_any_configured_key_and_names_each_failure() {
        let k = keys();
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(k.check(Some(&header("Bearer alpha-key"))), Ok(KeyId(0)));
        assert_eq!(k.check(Some(&header("Bearer beta"))), Ok(KeyId(1)));
        assert_eq!(k.check(Some(&header("bearer beta"))), Ok(KeyId(1)));
        assert_eq!(k.check(Some(&header("BEARER  beta "))), Ok(KeyId(1)));
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
        let loaded = ApiKeys::load(&config, &[], |_| None).unwrap().unwrap();
        assert_eq!(loaded.keys, [b"one".to_vec(), b"two".to_vec()]);
        let asks_for_keys = HttpMcpConfig {
            auth_method: Some(AuthMethod::ApiKey),
            ..HttpMcpConfig::default()
        };
        let err = ApiKeys::load(&asks_for_keys, &[], |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one key"), "{err}");
    }

    #[test]
    fn any_key_source_alone_turns_auth_on() {
        let no_env = |_: &str| None;
        assert!(
            ApiKeys::load(&HttpMcpConfig::default(), &[], no_env)
                .unwrap()
                .is_none(),
            "no key anywhere: no auth"
        );
        let from_env = |name: &str| (name == KEYS_ENV).then(|| "e1,e2".to_owned());
        let loaded = ApiKeys::load(&HttpMcpConfig::default(), &[], from_env).unwrap();
        assert_eq!(loaded.map(|k| k.keys.len()), Some(2), "{KEYS_ENV} alone");
        let listed = HttpMcpConfig {
            api_keys: vec!["k".into()],
            ..HttpMcpConfig::default()
        };
        assert!(
            ApiKeys::load(&listed, &[], no_env).unwrap().is_some(),
            "api_keys alone"
        );
        let one = HttpMcpConfig {
            auth_key: Some("k".into()),
            ..HttpMcpConfig::default()
        };
        assert!(
            ApiKeys::load(&one, &[], no_env).unwrap().is_some(),
            "auth_key alone"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "k\n").unwrap();
        let filed = HttpMcpConfig {
            api_keys_file: Some(file),
            ..HttpMcpConfig::default()
        };
        assert!(
            ApiKeys::load(&filed, &[], no_env).unwrap().is_some(),
            "api_keys_file alone"
        );
        let contradicting = HttpMcpConfig {
            auth_method: Some(AuthMethod::None),
            ..listed
        };
        let err = ApiKeys::load(&contradicting, &[], no_env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("auth_method = \"none\" contradicts"), "{err}");
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
        let loaded = ApiKeys::load(&config, &[scope], env).unwrap().unwrap();
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
