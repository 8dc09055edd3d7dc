//! Start-up and shutdown: config, logging, models, listener, signals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use candle_core::Device;
use mistralrs_core::model::{LoadOptions, ProgressFn};
use mistralrs_core::{EngineConfig, KvDtype, Router, SchedulerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::app::{AppState, app};
use crate::cli::Cli;
use crate::config::{Config, ModelEntry};
use crate::connections;
use crate::http_mcp;
use crate::model_source;
use crate::openai::tool_loop::McpToolDefaults;

const DEFAULT_PORT: u16 = 1234;
const DEFAULT_MAX_BODY: usize = 4 << 20;
const DEFAULT_SHUTDOWN_SECS: u64 = 10;
/// The share of a GPU's memory the server fills unless told (vLLM's default).
const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.9;

/// Runs the server until SIGINT or SIGTERM.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let mut config = cli.merge_into(file);
    let respelled = config.tool_forwarding.respell_tool_names();
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("settings (config file and flags): {e}"))?;
    // Without the variable, candle works its default out again on every dense
    // matmul, reading /proc/cpuinfo where it cannot read the CPU's preferred
    // cores (a sixth of a dense model's decode step on the build machine).
    use_threads(
        config
            .threads
            .unwrap_or_else(candle_core::utils::get_num_threads),
    );
    init_logging(
        config.log_level.as_deref().unwrap_or("info"),
        config.log_payloads,
    );
    for warning in respelled {
        tracing::warn!("{warning}");
    }
    let device = config.device.unwrap_or_default().open()?;
    let router = Arc::new(Router::new());
    for entry in &config.models {
        load_model(&router, entry, &config, &device)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(serve(config, Arc::clone(&router)));
    router.shutdown();
    result
}

/// Sizes candle's thread pools (its quantized kernels read these variables
/// when they first run, its matmuls on every call).
fn use_threads(threads: usize) {
    // SAFETY: called from `run` before the runtime, the engines or anything
    // else starts a thread, so no other thread reads the environment meanwhile.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
}

/// Logs at `level` unless `RUST_LOG` says otherwise. rmcp's session layer is
/// held at `warn`: it logs session ids, which work like bearer tokens, at
/// `info`. Unless `log_payloads`, so is rmcp's service loop: at `debug` and
/// `info` it logs whole messages, prompts, tool arguments and results included.
fn init_logging(level: &str, log_payloads: bool) {
    let mut directives = format!("{level},rmcp::transport::streamable_http_server=warn");
    if !log_payloads {
        directives.push_str(",rmcp::service=warn");
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads one model with a progress spinner, or a bar while quantizing (shown
/// only on a terminal).
fn load_model(
    router: &Router,
    entry: &ModelEntry,
    config: &Config,
    device: &Device,
) -> anyhow::Result<()> {
    let name = entry.served_name();
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("loading {name} from {}", entry.model));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let dir = model_source::resolve(
        &entry.model,
        entry.gguf_file.as_deref(),
        &crate::hub::Hub::from_env(),
    )?;
    let progress: Option<ProgressFn> = entry.quantize.map(|target| {
        let bar = spinner.clone();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("quantizing {name} to {target}"));
        Arc::new(move |done: usize, total: usize| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }) as ProgressFn
    });
    let options = LoadOptions {
        dtype: entry.dtype,
        quantize: entry.quantize,
        device: device.clone(),
        progress,
    };
    let loaded = mistralrs_core::model::load(&dir, &options)
        .with_context(|| format!("loading model `{name}` from {}", dir.display()))?;
    let defaults = SchedulerConfig::default();
    let engine_defaults = EngineConfig::default();
    let kv_dtype = config.kv_cache_dtype.unwrap_or(if device.is_cpu() {
        KvDtype::F16
    } else {
        KvDtype::Bf16
    });
    let block_bytes = loaded
        .model
        .cache_shape(1, engine_defaults.block_size)
        .bytes(kv_dtype) as u64;
    let gpu_memory = mistralrs_core::DeviceMemory::of(device)?;
    let num_blocks = match (config.kv_cache_mem, config.kv_cache_blocks, gpu_memory) {
        (Some(mem), ..) => {
            let blocks = (mem.as_u64() / block_bytes) as usize;
            anyhow::ensure!(
                blocks > 0,
                "kv_cache_mem {mem} is less than one KV cache block of `{name}` ({})",
                bytesize::ByteSize::b(block_bytes)
            );
            blocks
        }
        (None, Some(blocks), _) => blocks,
        (None, None, Some(gpu)) => gpu
            .kv_blocks(
                config
                    .gpu_memory_utilization
                    .unwrap_or(DEFAULT_GPU_MEMORY_UTILIZATION),
                block_bytes,
            )
            .with_context(|| format!("sizing the KV cache of `{name}` on {device:?}"))?,
        (None, None, None) => engine_defaults.num_blocks,
    };
    let engine_config = EngineConfig {
        scheduler: SchedulerConfig {
            max_seqs: config.max_seqs.unwrap_or(defaults.max_seqs),
            max_batch_tokens: config.max_batch_tokens.unwrap_or(defaults.max_batch_tokens),
            max_waiting: config.max_waiting.unwrap_or(defaults.max_waiting),
        },
        num_blocks,
        cache_dtype: kv_dtype,
        device: device.clone(),
        ..engine_defaults
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
    // Upstreams with `sampling = "local"` get their sampling requests answered here.
    #[cfg(feature = "tool-forwarding")]
    let sampler: Option<Arc<dyn mistralrs_mcp::sampling::LocalSampler>> = Some(Arc::new(
        crate::mcp_sampling::EngineSampler::new(Arc::clone(&router)),
    ));
    #[cfg(not(feature = "tool-forwarding"))]
    let sampler = None;
    let forwarder =
        mistralrs_mcp::Forwarder::start(&config.mcp_client, &config.tool_forwarding, sampler)
            .await
            .context("starting tool forwarding")?;
    // Stop accepting at the signal; end what is still running after the grace period.
    let stop_accepting = CancellationToken::new();
    let end_streams = CancellationToken::new();
    let mut rate_limit_health = None;
    let mcp = match config.http_mcp.endpoint_port() {
        Some(port) => {
            let endpoint = http_mcp::app(
                Arc::clone(&router),
                forwarder.clone(),
                &config,
                end_streams.clone(),
            )
            .await?;
            rate_limit_health = endpoint.rate_limit_health;
            let mcp_app = endpoint.app;
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
    let state = Arc::new(AppState {
        router: Arc::clone(&router),
        started_unix,
        forwarder: forwarder.clone(),
        tool_parser: config.tool_parser,
        mcp_tool_defaults: Arc::new(McpToolDefaults::from_config(&config)),
        rate_limit_health,
    });
    mistralrs_core::sync::set_instrumentation(config.prometheus_locks.enabled);
    let app = app(
        state,
        config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        &config.prometheus_locks.metrics_endpoint,
    );
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
    let limits = config.connection_limits();
    let main = connections::serve(listener, app, limits.clone(), stop_accepting.clone());
    let mcp = async move {
        if let Some((listener, app)) = mcp {
            connections::serve(listener, app, limits, stop_accepting).await;
        }
    };
    tokio::join!(main, mcp);
    if let Some(forwarder) = &forwarder {
        forwarder.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
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
