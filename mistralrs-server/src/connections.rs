//! Accepting connections on a port, with the limits `axum::serve` does not offer:
//! a header-read timeout (a client sending its headers slowly, "slowloris", is
//! closed), an idle timeout for kept-alive connections with nothing in flight, and
//! a cap on open connections per client IP. Also `TCP_NODELAY`, the peer address
//! as `ConnectInfo`, and graceful shutdown: at `stop` no more connections are
//! accepted and each open one closes once its in-flight requests are done.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mistralrs_core::sync::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::client_ip::TrustedProxies;
use crate::guarded_body::GuardedBody;

/// Limits on every connection of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this long (HTTP/1).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving closes after this long.
    pub idle_timeout: Duration,
    /// Open connections one client IP may hold; more are closed on accept.
    pub max_per_ip: usize,
    /// Load balancers, whose connections carry many clients: not held to `max_per_ip`.
    pub trusted_proxies: Arc<TrustedProxies>,
}

impl ConnectionLimits {
    /// nginx's `client_header_timeout` (60 s).
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
    /// As the header timeout: a kept-alive connection costs a file descriptor.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Far above what one well-behaved client opens (a pool of tens), well below
    /// the file descriptors a process has.
    pub const DEFAULT_MAX_PER_IP: usize = 512;
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_per_ip: Self::DEFAULT_MAX_PER_IP,
            trusted_proxies: Arc::default(),
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled and every connection
/// has closed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let per_ip = Arc::new(PerIp::default());
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: give others time to close.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = if limits.trusted_proxies.contains(peer.ip()) {
            None
        } else if let Some(slot) = PerIp::take(&per_ip, peer.ip(), limits.max_per_ip) {
            Some(slot)
        } else {
            tracing::debug!(ip = %peer.ip(), "connection refused: too many from this address");
            mistralrs_core::metrics::metrics()
                .connections_refused
                .get(&mistralrs_core::metrics::ReasonLabel { reason: "per_ip" })
                .inc();
            continue;
        };
        connections.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            limits.clone(),
            stop.clone(),
            slot,
        ));
    }
    connections.close();
    connections.wait().await;
}

/// One connection, until it closes (or idles out, or shutdown ends it).
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    _slot: Option<IpSlot>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = InFlight::begin(&activity);
            let app = app.clone();
            async move {
                let response: Response = app.oneshot(request.map(Body::new)).await?;
                Ok::<_, Infallible>(response.map(|body| GuardedBody::wrap(body, in_flight)))
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connection =
        pin!(builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)));
    let mut idle_check = tokio::time::interval(check_interval(limits.idle_timeout));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!("connection from {peer}: {e}");
                }
                break;
            }
            () = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for() >= limits.idle_timeout {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// How often an idle connection is looked at: a quarter of the timeout, so it
/// closes at most 25 % late, within bounds that keep timers cheap.
fn check_interval(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// When a connection last moved bytes, and how many of its requests are in
/// flight (a response whose body has not ended counts).
#[derive(Debug)]
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Zero while a request is in flight, else the time since bytes last moved.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// One request in flight on a connection, until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting each read and write in its [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections per client IP.
#[derive(Debug)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl Default for PerIp {
    fn default() -> Self {
        Self(Mutex::new("connections_per_ip", HashMap::new()))
    }
}

impl PerIp {
    /// A slot for one more connection from `ip`, or `None` at the cap.
    fn take(this: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = this.0.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            per_ip: Arc::clone(this),
            ip,
        })
    }
}

/// One connection's place in its IP's count, given back on drop.
#[derive(Debug)]
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.per_ip.0.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_gets_at_most_its_cap_and_slots_come_back() {
        let per_ip = Arc::new(PerIp::default());
        let a = IpAddr::from([127, 0, 0, 1]);
        let b = IpAddr::from([127, 0, 0, 2]);
        let first = PerIp::take(&per_ip, a, 2).unwrap();
        let _second = PerIp::take(&per_ip, a, 2).unwrap();
        assert!(PerIp::take(&per_ip, a, 2).is_none(), "third from a");
        assert!(PerIp::take(&per_ip, b, 2).is_some(), "b has its own count");
        drop(first);
        assert!(PerIp::take(&per_ip, a, 2).is_some(), "a slot came back");
    }

    #[test]
    fn in_flight_requests_are_never_idle() {
        let activity = Arc::new(Activity::new());
        let request = InFlight::begin(&activity);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(activity.idle_for(), Duration::ZERO);
        drop(request);
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.idle_for() >= Duration::from_millis(15));
    }
}
