//! Start-up and shutdown: config, logging, models, listener, signals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use candle_core::{DType, Device};
use mistralrs_core::{EngineConfig, Router, SchedulerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::app::{AppState, app};
use crate::cli::Cli;
use crate::config::{AuthMethod, Config, ModelEntry};
use crate::http_mcp;
use crate::model_source;

const DEFAULT_PORT: u16 = 1234;
const DEFAULT_MAX_BODY: usize = 4 << 20;
const DEFAULT_SHUTDOWN_SECS: u64 = 10;

/// Runs the server until SIGINT or SIGTERM.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let config = cli.merge_into(file);
    init_logging(config.log_level.as_deref().unwrap_or("info"));
    let router = Arc::new(Router::new());
    for entry in &config.models {
        load_model(&router, entry, &config)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(serve(config, Arc::clone(&router)));
    router.shutdown();
    result
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads one model with a progress spinner (shown only on a terminal).
fn load_model(router: &Router, entry: &ModelEntry, config: &Config) -> anyhow::Result<()> {
    let name = entry
        .name
        .clone()
        .unwrap_or_else(|| model_source::default_name(&entry.model));
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("loading {name} from {}", entry.model));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let dir = model_source::resolve(&entry.model)?;
    let loaded = mistralrs_core::model::load(&dir, DType::F32, &Device::Cpu)
        .with_context(|| format!("loading model `{name}` from {}", dir.display()))?;
    let defaults = SchedulerConfig::default();
    let engine_config = EngineConfig {
        scheduler: SchedulerConfig {
            max_seqs: config.max_seqs.unwrap_or(defaults.max_seqs),
            max_batch_tokens: config.max_batch_tokens.unwrap_or(defaults.max_batch_tokens),
            max_waiting: config.max_waiting.unwrap_or(defaults.max_waiting),
        },
        num_blocks: config
            .kv_cache_blocks
            .unwrap_or(EngineConfig::default().num_blocks),
        ..EngineConfig::default()
    };
    let engine = mistralrs_core::start(&name, loaded, engine_config)?;
    spinner.finish_and_clear();
    tracing::info!(model = %name, path = %dir.display(), "model loaded");
    router.add(engine);
    Ok(())
}

async fn serve(config: Config, router: Arc<Router>) -> anyhow::Result<()> {
    let ip = config.serve_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let addr = SocketAddr::new(ip, config.port.unwrap_or(DEFAULT_PORT));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let forwarder = mistralrs_mcp::Forwarder::start(&config.mcp_client, &config.tool_forwarding)
        .await
        .context("starting tool forwarding")?;
    let state = Arc::new(AppState {
        router: Arc::clone(&router),
        started_unix,
        forwarder: forwarder.clone(),
    });
    mistralrs_core::sync::set_instrumentation(config.prometheus_locks.enabled);
    let app = app(
        state,
        config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        &config.prometheus_locks.metrics_endpoint,
    );
    // Stop accepting at the signal; end what is still running after the grace period.
    let stop_accepting = CancellationToken::new();
    let end_streams = CancellationToken::new();
    let mcp = match config.http_mcp.port {
        Some(port) => {
            if config.http_mcp.auth_method == AuthMethod::None && !ip.is_loopback() {
                anyhow::bail!(
                    "the MCP endpoint without authentication may only bind a loopback address, not {ip}"
                );
            }
            let mcp_app = http_mcp::app(
                Arc::clone(&router),
                forwarder.clone(),
                &config,
                end_streams.clone(),
            )?;
            let mcp_addr = SocketAddr::new(ip, port);
            let mcp_listener = tokio::net::TcpListener::bind(mcp_addr)
                .await
                .with_context(|| format!("binding {mcp_addr}"))?;
            println!(
                "mistralrs-server MCP endpoint on http://{}{}",
                mcp_listener.local_addr()?,
                http_mcp::MCP_PATH
            );
            Some((mcp_listener, mcp_app))
        }
        None => None,
    };
    // Tests and scripts read this line to find a port chosen with --port 0.
    println!("mistralrs-server listening on http://{local}");
    tracing::info!(%local, models = ?router.names(), "serving");
    let grace = Duration::from_secs(
        config
            .shutdown_timeout_secs
            .unwrap_or(DEFAULT_SHUTDOWN_SECS),
    );
    tokio::spawn(shut_down_on_signal(
        stop_accepting.clone(),
        end_streams.clone(),
        Arc::clone(&router),
        grace,
    ));
    let main = axum::serve(no_delay(listener), app)
        .with_graceful_shutdown(stop_accepting.clone().cancelled_owned());
    let mcp = async move {
        match mcp {
            Some((listener, app)) => {
                axum::serve(
                    no_delay(listener),
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(stop_accepting.cancelled_owned())
                .await
            }
            None => Ok(()),
        }
    };
    let (main_result, mcp_result) = tokio::join!(main, mcp);
    if let Some(forwarder) = &forwarder {
        forwarder.shutdown();
    }
    main_result.context("serving")?;
    mcp_result.context("serving MCP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Accepted connections with `TCP_NODELAY`: SSE events (tokens, progress, small
/// tool results) are small writes, and Nagle's algorithm would hold each one
/// back until the previous was acknowledged (up to a delayed-ACK 40 ms).
fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

/// At SIGINT/SIGTERM: stop accepting, let the engines finish what they run for
/// up to `grace`, then end every MCP session and cancel whatever is left.
async fn shut_down_on_signal(
    stop_accepting: CancellationToken,
    end_streams: CancellationToken,
    router: Arc<Router>,
    grace: Duration,
) {
    shutdown_signal().await;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    stop_accepting.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    while !router.engines().iter().all(|e| e.is_idle()) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("grace period over: cancelling in-flight requests");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    end_streams.cancel();
    router.shutdown();
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
