//! Rate limits shared by replicas: `[http_mcp.rate_limit] backend = "redis"`.
//!
//! Each check is one round trip: a Lua script runs the generic cell rate
//! algorithm (GCRA, what governor runs in memory) over the request's scopes in
//! Redis, atomically, on Redis' own clock (`TIME`), so replicas with skewed clocks
//! still share one budget. A scope's state is one key holding its theoretical
//! arrival time, expiring once the scope is idle. Auth-failure budgets work the
//! same way, with a block key that every replica reads before a key is checked.
//!
//! When Redis does not answer within the timeout (or refuses the connection),
//! the check is decided by `on_redis_error` and Redis counts as down for a
//! second: checks meanwhile don't wait for it, then one tries again. The state
//! is on `/health` and in `rate_limit_backend_up` and
//! `rate_limit_fallback_total{policy}`. One multiplexed connection (redis'
//! `ConnectionManager`, reconnecting by itself) carries every check: requests
//! are pipelined on it rather than spread over a pool.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mistralrs_core::metrics::{PolicyLabel, metrics};
use mistralrs_core::sync::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde_json::{Value, json};

use super::rejection::Rejection;
use crate::config::{OnRedisError, RateLimitConfig};

/// How long Redis counts as down after a failed check.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// Default `redis_timeout_ms`.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default `redis_key_prefix`.
const DEFAULT_PREFIX: &str = "mistralrs:ratelimit:";

/// GCRA over every scope in `KEYS`, in order. `ARGV[2i-1]` is scope i's
/// emission interval and `ARGV[2i]` its tolerance (interval x burst), both in
/// microseconds. Each scope that allows the request spends one token; the first
/// that refuses stops the walk. Returns `{0, 0}`, or `{i, wait in us}`.
const CHECK_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local wait = next_tat - now - tolerance
  if wait > 0 then return {i, wait} end
  redis.call('SET', key, string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
end
return {0, 0}
";

/// One failed authentication: GCRA on `KEYS[1]` (the address's failure
/// budget, `ARGV` as above); once it is spent, `KEYS[2]` blocks the address for
/// the wait. Returns the wait in us, or 0.
const FAILURE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - now - tolerance
if wait > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', math.max(1, math.ceil(wait / 1000)))
  return wait
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// How long `KEYS[1]` (an address's block) still lasts, in ms (<= 0: not blocked).
const BLOCK_SCRIPT: &str = "return redis.call('PTTL', KEYS[1])";

/// A rate as GCRA counts it, in microseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cell {
    interval_us: u64,
    tolerance_us: u64,
}

impl Cell {
    /// `per_second` with `burst` at once (default: one second's worth), as
    /// `rate_limit::quota` reads them (which has validated both).
    pub(super) fn new(per_second: f64, burst: Option<u32>) -> Self {
        let interval_us = (1e6 / per_second).round().max(1.0) as u64;
        let burst = super::rate_limit::burst_or_default(per_second, burst);
        Self {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst)),
        }
    }
}

/// Whether Redis answered lately, for `/health` and the skip-while-down rule.
#[derive(Debug, Default)]
struct BackendState {
    down_until: Option<Instant>,
    last_error: Option<String>,
}

/// The shared counters in one Redis.
pub(super) struct RedisLimits {
    connection: ConnectionManager,
    timeout: Duration,
    prefix: String,
    /// Where the URL points, without credentials, for `/health` and errors.
    address: String,
    on_error: OnRedisError,
    check_script: Script,
    failure_script: Script,
    block_script: Script,
    state: Mutex<BackendState>,
}

impl std::fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimits")
            .field("address", &self.address)
            .finish()
    }
}

/// `host:port/db` of a Redis URL: what may be shown (no user or password).
fn address_of(client: &Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr(), info.redis_settings().db())
}

impl RedisLimits {
    /// The client for `config.redis_url`. A malformed URL is an error; so is an
    /// unreachable Redis when `on_redis_error = "deny"` (nothing could pass).
    /// Otherwise an unreachable Redis is logged and the fallback applies until
    /// it answers.
    pub(super) async fn connect(config: &RateLimitConfig) -> anyhow::Result<Self> {
        let url = config.redis_url.as_deref().unwrap_or_default();
        // redis' parse errors can quote the URL; keep a password out of the message.
        let client = Client::open(url).map_err(|e| {
            anyhow::anyhow!(
                "[http_mcp.rate_limit] redis_url is not a Redis URL ({:?})",
                e.kind()
            )
        })?;
        let address = address_of(&client);
        let timeout = config
            .redis_timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| anyhow::anyhow!("Redis at {address}: {e}"))?;
        let limits = Self {
            connection,
            timeout,
            prefix: config
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            address,
            on_error: config.on_redis_error,
            check_script: Script::new(CHECK_SCRIPT),
            failure_script: Script::new(FAILURE_SCRIPT),
            block_script: Script::new(BLOCK_SCRIPT),
            state: Mutex::new("rate_limit_backend", BackendState::default()),
        };
        let mut connection = limits.connection.clone();
        let ping = tokio::time::timeout(
            timeout.max(Duration::from_secs(1)),
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        let problem = match ping {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer".to_owned()),
        };
        match problem {
            None => metrics().rate_limit_backend_up.set(1),
            Some(problem) if limits.on_error == OnRedisError::Deny => anyhow::bail!(
                "Redis at {} for [http_mcp.rate_limit]: {problem} (on_redis_error = \"deny\" needs it at start-up)",
                limits.address
            ),
            Some(problem) => {
                tracing::warn!(redis = %limits.address, %problem, policy = limits.on_error.as_str(), "Redis for rate limits is unreachable; the fallback applies until it answers");
                limits.mark_down(problem);
            }
        }
        Ok(limits)
    }

    fn mark_down(&self, problem: String) {
        metrics().rate_limit_backend_up.set(0);
        let mut state = self.state.lock();
        state.down_until = Some(Instant::now() + DOWN_FOR);
        state.last_error = Some(problem);
    }

    /// Runs `query` on Redis within the timeout; `None` when Redis is down (or
    /// was found down less than a second ago), counted as a fallback.
    async fn run<T: redis::FromRedisValue>(&self, query: redis::ScriptInvocation<'_>) -> Option<T> {
        let skip = self
            .state
            .lock()
            .down_until
            .is_some_and(|until| Instant::now() < until);
        let outcome = if skip {
            None
        } else {
            let started = Instant::now();
            let mut connection = self.connection.clone();
            let answer =
                tokio::time::timeout(self.timeout, query.invoke_async(&mut connection)).await;
            metrics()
                .rate_limit_backend_seconds
                .observe(started.elapsed().as_secs_f64());
            match answer {
                Ok(Ok(value)) => {
                    let mut state = self.state.lock();
                    if state.down_until.take().is_some() {
                        tracing::info!(redis = %self.address, "Redis for rate limits answers again");
                    }
                    metrics().rate_limit_backend_up.set(1);
                    Some(value)
                }
                Ok(Err(e)) if !e.is_timeout() => {
                    self.mark_down(e.to_string());
                    None
                }
                // The connection's own response timeout, or ours around it.
                Ok(Err(_)) | Err(_) => {
                    self.mark_down(format!("no answer within {} ms", self.timeout.as_millis()));
                    None
                }
            }
        };
        if outcome.is_none() {
            metrics()
                .rate_limit_fallback
                .get(&PolicyLabel {
                    policy: self.on_error.as_str(),
                })
                .inc();
        }
        outcome
    }

    /// Spends one token of each of `scopes` (name, key suffix, rate) in order;
    /// the first that refuses, with the wait. `None` when Redis is down.
    pub(super) async fn check(
        &self,
        scopes: &[(&'static str, String, Cell)],
    ) -> Option<Option<(&'static str, Duration)>> {
        let mut invocation = self.check_script.prepare_invoke();
        for (_, key, cell) in scopes {
            invocation
                .key(format!("{}{key}", self.prefix))
                .arg(cell.interval_us)
                .arg(cell.tolerance_us);
        }
        let (refused, wait_us): (usize, u64) = self.run(invocation).await?;
        Some(
            refused
                .checked_sub(1)
                .and_then(|i| scopes.get(i))
                .map(|(scope, _, _)| (*scope, Duration::from_micros(wait_us))),
        )
    }

    /// How long `ip` is still blocked for failed authentications, if it is.
    /// `None` when Redis is down.
    pub(super) async fn auth_blocked(&self, ip: IpAddr) -> Option<Option<Duration>> {
        let mut invocation = self.block_script.prepare_invoke();
        invocation.key(format!("{}authblock:{ip}", self.prefix));
        let millis: i64 = self.run(invocation).await?;
        Some((millis > 0).then(|| Duration::from_millis(millis as u64)))
    }

    /// Counts a failed authentication from `ip`; how long it is blocked when
    /// that spent its budget. `None` when Redis is down.
    pub(super) async fn record_auth_failure(
        &self,
        ip: IpAddr,
        cell: Cell,
    ) -> Option<Option<Duration>> {
        let mut invocation = self.failure_script.prepare_invoke();
        invocation
            .key(format!("{}authfail:{ip}", self.prefix))
            .key(format!("{}authblock:{ip}", self.prefix))
            .arg(cell.interval_us)
            .arg(cell.tolerance_us);
        let wait_us: u64 = self.run(invocation).await?;
        Some((wait_us > 0).then(|| Duration::from_micros(wait_us).max(Duration::from_millis(1))))
    }

    /// The `/health` entry: where, whether it answers, the fallback.
    pub(super) fn report(&self) -> Value {
        let state = self.state.lock();
        let down = state
            .down_until
            .is_some()
            .then(|| state.last_error.clone().unwrap_or_default());
        json!({
            "backend": "redis",
            "redis": self.address,
            "state": if down.is_some() { "down" } else { "up" },
            "error": down,
            "on_redis_error": self.on_error.as_str(),
        })
    }
}

/// A limit's decision: by Redis when there is one and it answers, else by
/// `on_redis_error` (`local`: this replica's `local` decision, `allow`:
/// `allowed`, `deny`: 503). Without Redis, the `local` decision.
pub(super) async fn shared_or_fallback<'a, T, F>(
    redis: Option<&'a RedisLimits>,
    query: impl FnOnce(&'a RedisLimits) -> F,
    allowed: T,
    local: impl FnOnce() -> T,
) -> Result<T, Rejection>
where
    F: Future<Output = Option<T>>,
{
    let Some(redis) = redis else {
        return Ok(local());
    };
    match query(redis).await {
        Some(decision) => Ok(decision),
        None => match redis.on_error {
            OnRedisError::Local => Ok(local()),
            OnRedisError::Allow => Ok(allowed),
            OnRedisError::Deny => Err(Rejection::LimiterUnavailable),
        },
    }
}
