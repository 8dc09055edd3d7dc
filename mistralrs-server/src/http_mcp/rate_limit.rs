//! `[http_mcp.rate_limit]`: requests per second for all clients together, per API
//! key and per client IP, each with a burst (default: one second's worth). A
//! refused request gets 429 with `Retry-After` (whole seconds, at least 1) and is
//! counted in `http_mcp_rate_limited_total{scope}`. Limits are checked per IP
//! first, then per key, then global, and a check spends a token: a request
//! refused by its IP or key limit has spent only that client's own tokens, never
//! the global budget other clients share. (Its IP token is spent when its key
//! or the global limit refuses it.)
//!
//! Failed authentications have a budget of their own per IP (see `auth`).
//!
//! The counters live in this process, or with `backend = "redis"` in Redis,
//! shared by replicas (`redis_limits`); this process's counters then decide
//! while Redis is down if `on_redis_error = "local"`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use super::auth::KeyFingerprint;
use super::redis_limits::{Cell, RedisLimits, shared_or_fallback};
use super::rejection::Rejection;
use crate::client_ip::ClientIp;
use crate::config::{MAX_RATE, MIN_RATE, RateLimitConfig};

/// Forget idle per-IP and per-key state every this many checks.
const RETAIN_EVERY: u64 = 4096;

/// The configured limits, counted here or in Redis.
#[derive(Debug)]
pub(super) struct RateLimits {
    local: LocalLimits,
    shared: Option<Arc<RedisLimits>>,
    /// Each scope's rate as Redis counts it; `None` where no limit is set.
    per_ip: Option<Cell>,
    per_key: Option<Cell>,
    global: Option<Cell>,
}

impl RateLimits {
    /// The limits for the configured rates, shared through `shared` when given;
    /// `None` when no rate is set.
    pub(super) fn new(
        config: &RateLimitConfig,
        shared: Option<Arc<RedisLimits>>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(local) = LocalLimits::new(config)? else {
            return Ok(None);
        };
        let cell = |rate: Option<f64>| rate.map(|r| Cell::new(r, config.burst));
        Ok(Some(Self {
            local,
            shared,
            per_ip: cell(config.per_ip),
            per_key: cell(config.per_key),
            global: cell(config.global),
        }))
    }

    /// The scope that refuses the request and when to retry, or `None` to let it pass.
    async fn check(
        &self,
        key: Option<KeyFingerprint>,
        ip: Option<IpAddr>,
    ) -> Result<Option<(&'static str, Duration)>, Rejection> {
        let scopes = || {
            let ip = self
                .per_ip
                .zip(ip)
                .map(|(c, ip)| ("ip", format!("ip:{ip}"), c));
            let key = self
                .per_key
                .zip(key)
                .map(|(c, k)| ("key", format!("key:{:016x}", k.0), c));
            let global = self.global.map(|c| ("global", "global".to_owned(), c));
            [ip, key, global].into_iter().flatten().collect::<Vec<_>>()
        };
        shared_or_fallback(
            self.shared.as_deref(),
            |redis| async move { redis.check(&scopes()).await },
            None,
            || self.local.check(key, ip),
        )
        .await
    }
}

/// Limiters in this process; `None` where no limit is set.
struct LocalLimits {
    global: Option<DefaultDirectRateLimiter>,
    per_key: Option<DefaultKeyedRateLimiter<KeyFingerprint>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl std::fmt::Debug for LocalLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimits")
            .field("global", &self.global.is_some())
            .field("per_key", &self.per_key.is_some())
            .field("per_ip", &self.per_ip.is_some())
            .finish()
    }
}

/// The burst of a limit: as configured, else one second's worth; at least 1.
pub(super) fn burst_or_default(per_second: f64, burst: Option<u32>) -> u32 {
    burst.unwrap_or_else(|| per_second.ceil() as u32).max(1)
}

/// A governor quota of `per_second` with `burst` (default: one second's worth).
/// An error, never a panic, for a rate outside [`MIN_RATE`, `MAX_RATE`] or a
/// burst whose span does not fit governor's clock.
pub(super) fn quota(per_second: f64, burst: Option<u32>) -> anyhow::Result<Quota> {
    if !(MIN_RATE..=MAX_RATE).contains(&per_second) {
        anyhow::bail!("rate {per_second}/s is outside {MIN_RATE:.3e}..={MAX_RATE:e}");
    }
    let period = Duration::from_secs_f64(1.0 / per_second);
    let burst = burst_or_default(per_second, burst);
    let span_nanos = period.as_nanos().checked_mul(u128::from(burst));
    if span_nanos.is_none_or(|n| n >= u128::from(u64::MAX)) {
        anyhow::bail!("burst {burst} at {per_second}/s spans more time than the limiter can count");
    }
    let quota = Quota::with_period(period)
        .ok_or_else(|| anyhow::anyhow!("rate {per_second}/s is too high"))?;
    Ok(quota.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
}

impl LocalLimits {
    /// Limiters for the configured rates, or `None` when no rate is set.
    fn new(config: &RateLimitConfig) -> anyhow::Result<Option<Self>> {
        if config.global.is_none() && config.per_key.is_none() && config.per_ip.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            global: config
                .global
                .map(|r| quota(r, config.burst).map(DefaultDirectRateLimiter::direct))
                .transpose()?,
            per_key: config
                .per_key
                .map(|r| quota(r, config.burst).map(DefaultKeyedRateLimiter::keyed))
                .transpose()?,
            per_ip: config
                .per_ip
                .map(|r| quota(r, config.burst).map(DefaultKeyedRateLimiter::keyed))
                .transpose()?,
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }))
    }

    /// The scope that refuses the request and when to retry, or `None` to let it pass.
    fn check(
        &self,
        key: Option<KeyFingerprint>,
        ip: Option<IpAddr>,
    ) -> Option<(&'static str, Duration)> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.per_key.iter().for_each(|l| l.retain_recent());
            self.per_ip.iter().for_each(|l| l.retain_recent());
        }
        let now = self.clock.now();
        if let (Some(limiter), Some(ip)) = (&self.per_ip, ip)
            && let Err(wait) = limiter.check_key(&ip)
        {
            return Some(("ip", wait.wait_time_from(now)));
        }
        if let (Some(limiter), Some(key)) = (&self.per_key, key)
            && let Err(wait) = limiter.check_key(&key)
        {
            return Some(("key", wait.wait_time_from(now)));
        }
        if let Some(Err(wait)) = self.global.as_ref().map(|l| l.check()) {
            return Some(("global", wait.wait_time_from(now)));
        }
        None
    }
}

/// Middleware: 429 with `Retry-After` when a limit is exceeded.
pub(super) async fn limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Result<Response, Rejection> {
    let key = request.extensions().get::<KeyFingerprint>().copied();
    let ip = request.extensions().get::<ClientIp>().map(|c| c.0);
    match limits.check(key, ip).await? {
        None => Ok(next.run(request).await),
        Some((scope, retry_after)) => Err(Rejection::RateLimited { scope, retry_after }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(
        global: Option<f64>,
        per_key: Option<f64>,
        per_ip: Option<f64>,
        burst: u32,
    ) -> LocalLimits {
        let config = RateLimitConfig {
            global,
            per_key,
            per_ip,
            burst: Some(burst),
            ..RateLimitConfig::default()
        };
        LocalLimits::new(&config).unwrap().unwrap()
    }

    #[test]
    fn no_rates_means_no_limiter() {
        assert!(
            RateLimits::new(&RateLimitConfig::default(), None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn each_scope_refuses_past_its_burst() {
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        let l = limits(Some(0.5), None, None, 2);
        assert!(l.check(None, ip).is_none() && l.check(None, ip).is_none());
        let (scope, wait) = l.check(None, ip).unwrap();
        assert_eq!(scope, "global");
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );

        let l = limits(None, Some(0.5), None, 1);
        assert!(l.check(Some(KeyFingerprint(0)), ip).is_none());
        assert_eq!(
            l.check(Some(KeyFingerprint(0)), ip).map(|r| r.0),
            Some("key")
        );
        assert!(
            l.check(Some(KeyFingerprint(1)), ip).is_none(),
            "another key has its own budget"
        );

        let l = limits(None, None, Some(0.5), 1);
        assert!(l.check(None, ip).is_none());
        assert_eq!(l.check(None, ip).map(|r| r.0), Some("ip"));
        assert!(l.check(None, Some(IpAddr::from([127, 0, 0, 2]))).is_none());
    }

    #[test]
    fn a_request_refused_by_its_ip_does_not_spend_the_global_budget() {
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        // A global budget of 3 and 1 per address: refusals by `a`'s own limit
        // leave the global budget to others.
        let l = LocalLimits {
            global: Some(DefaultDirectRateLimiter::direct(
                quota(0.01, Some(3)).unwrap(),
            )),
            per_key: None,
            per_ip: Some(DefaultKeyedRateLimiter::keyed(
                quota(0.01, Some(1)).unwrap(),
            )),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        };
        for _ in 0..10 {
            l.check(None, a);
        }
        assert!(
            l.check(None, b).is_none(),
            "b finds the global token a could not spend"
        );
    }

    #[test]
    fn rates_that_cannot_be_counted_are_errors_not_panics() {
        for (rate, burst) in [
            (1e-30, None),
            (1e-12, None),
            (f64::NAN, None),
            (1e12, None),
            (MIN_RATE, Some(u32::MAX)),
        ] {
            let err = quota(rate, burst).unwrap_err().to_string();
            assert!(
                err.contains("rate") || err.contains("burst"),
                "{rate}: {err}"
            );
        }
        assert!(quota(MIN_RATE, None).is_ok() && quota(MAX_RATE, None).is_ok());
    }
}
