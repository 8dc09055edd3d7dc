//! The engine of one model: a thread that runs scheduler steps through the model,
//! and a cloneable handle that async code uses to submit, stream and cancel.
//!
//! The thread plans a step under the scheduler lock, runs the model without it, and
//! takes the lock again to hand each sequence its logits. Callers never wait for a
//! step: submitting or cancelling takes the lock only to touch the queues, then
//! wakes the thread.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};

use candle_core::Device;
use mistralrs_paged_attn::{BlockManager, KvCache, KvDtype, SeqId};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::chat_template::ChatTemplate;
use crate::constraint::{ConstrainedOutput, Grammars, OutputConstraint};
use crate::metrics::{ModelMetrics, metrics};
use crate::model::{BatchInput, Llama, LoadedModel, SeqChunk};
use crate::request::{Completion, Event, Failure, GeneratedToken, Prompt, Request};
use crate::sampling::Sampler;
use crate::scheduler::{Exit, Scheduler, SchedulerConfig, SchedulerStats, StepPlan};
use crate::sequence::{Advance, OutputRules, Sequence, StopRules};
use crate::sync::Mutex;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Most stop strings a request may give.
pub const MAX_STOP_STRINGS: usize = 16;

/// How an engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Queue and batch limits.
    pub scheduler: SchedulerConfig,
    /// Token slots per KV block. Default 16, as vLLM.
    pub block_size: usize,
    /// KV blocks. Default 512 (8192 token slots): a few MB for the demo model.
    pub num_blocks: usize,
    /// What the KV cache stores per value. Default f32, the one every candle
    /// CPU op has.
    pub cache_dtype: KvDtype,
    /// Where the model runs. Default the CPU.
    pub device: Device,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            scheduler: SchedulerConfig::default(),
            block_size: 16,
            num_blocks: 512,
            cache_dtype: KvDtype::F32,
            device: Device::Cpu,
        }
    }
}

/// Facts about the served model that callers need.
#[derive(Debug)]
pub struct ModelInfo {
    /// The name it is served under.
    pub name: String,
    /// Longest sequence (prompt and output) the model takes.
    pub max_model_len: usize,
    /// Token slots in the KV cache.
    pub cache_tokens: usize,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template.
    pub chat_template: Option<ChatTemplate>,
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
    /// Vocabulary size of the model.
    pub vocab_size: usize,
    /// Memory the model's weights take.
    pub weight_bytes: usize,
    /// Memory the KV cache takes once every block has been used (its pages
    /// are allocated zeroed and become resident as they are first written).
    pub kv_cache_bytes: usize,
}

struct Shared {
    info: ModelInfo,
    metrics: Arc<ModelMetrics>,
    scheduler: Mutex<Scheduler>,
    wake: SyncSender<()>,
    next_id: AtomicU64,
    stopping: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The grammar engine, built by the first constrained request.
    grammars: OnceLock<std::result::Result<Grammars, String>>,
}

impl Shared {
    fn wake(&self) {
        // A full channel already holds a wake-up; a closed one means the thread is gone.
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// A running engine. Cheap to clone; the engine stops when the last handle goes.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("model", &self.shared.info.name)
            .finish()
    }
}

/// Starts an engine thread serving `loaded` under `name`.
pub fn start(name: &str, loaded: LoadedModel, config: EngineConfig) -> Result<EngineHandle> {
    let LoadedModel {
        model,
        tokenizer,
        chat_template,
        eos_token_ids,
        ..
    } = loaded;
    let cache_shape = model.cache_shape(config.num_blocks, config.block_size);
    let cache = KvCache::new(cache_shape, config.cache_dtype, &config.device)?;
    let blocks = BlockManager::new(config.num_blocks, config.block_size);
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    let info = ModelInfo {
        name: name.to_owned(),
        max_model_len: model.config().max_position_embeddings,
        cache_tokens: config.num_blocks * config.block_size,
        tokenizer,
        chat_template,
        eos_token_ids,
        vocab_size: model.config().vocab_size,
        weight_bytes: model.weight_bytes(),
        kv_cache_bytes: cache_shape.bytes(config.cache_dtype),
    };
    let model_metrics = metrics().model(name);
    model_metrics.weight_bytes.set(info.weight_bytes as i64);
    model_metrics.kv_cache_bytes.set(info.kv_cache_bytes as i64);
    let shared = Arc::new(Shared {
        metrics: Arc::new(model_metrics),
        info,
        scheduler: Mutex::new("scheduler", Scheduler::new(config.scheduler, blocks)),
        wake,
        next_id: AtomicU64::new(1),
        stopping: AtomicBool::new(false),
        thread: Mutex::new("engine_thread", None),
        grammars: OnceLock::new(),
    });
    let weak = Arc::downgrade(&shared);
    let device = config.device.clone();
    let thread = std::thread::Builder::new()
        .name(format!("engine-{name}"))
        .spawn(move || run(weak, woken, model, cache, device))
        .map_err(|e| Error::io("engine thread", e))?;
    *shared.thread.lock() = Some(thread);
    Ok(EngineHandle { shared })
}

/// The engine thread's loop. It ends when every handle is gone or on shutdown.
fn run(shared: Weak<Shared>, woken: Receiver<()>, model: Llama, cache: KvCache, device: Device) {
    let mut published = SchedulerStats::default();
    loop {
        let Some(engine) = shared.upgrade() else {
            return;
        };
        if engine.stopping.load(Ordering::Acquire) {
            engine.scheduler.lock().fail_all(Failure::ShuttingDown);
            return;
        }
        let (plan, stats) = {
            let mut scheduler = engine.scheduler.lock();
            let plan = scheduler.schedule();
            (plan, scheduler.stats())
        };
        publish(&engine.metrics, &mut published, stats);
        if plan.chunks.is_empty() {
            drop(engine);
            if woken.recv().is_err() {
                return;
            }
            continue;
        }
        step(&engine, &model, &cache, &device, plan);
    }
}

/// Sets the queue and cache gauges and advances the counters by what changed
/// since the last call.
fn publish(m: &ModelMetrics, last: &mut SchedulerStats, now: SchedulerStats) {
    m.running.set(now.running as i64);
    m.waiting.set(now.waiting as i64);
    m.kv_free.set(now.blocks.free as i64);
    m.kv_usage
        .set(1.0 - now.blocks.free as f64 / now.blocks.total.max(1) as f64);
    m.prefix_hits.inc_by(
        now.blocks
            .prefix_hits
            .saturating_sub(last.blocks.prefix_hits),
    );
    m.prefix_queries.inc_by(
        now.blocks
            .prefix_queries
            .saturating_sub(last.blocks.prefix_queries),
    );
    m.preemptions
        .inc_by(now.preemptions.saturating_sub(last.preemptions));
    *last = now;
}

/// Runs one planned step and gives every sequence that finished a chunk its token.
fn step(engine: &Shared, model: &Llama, cache: &KvCache, device: &Device, plan: StepPlan) {
    let logits = cache
        .copy_blocks(&plan.copies)
        .map_err(Error::from)
        .and_then(|()| {
            let chunks: Vec<SeqChunk<'_>> = plan
                .chunks
                .iter()
                .map(|c| SeqChunk {
                    tokens: &c.tokens,
                    first_pos: c.first_pos,
                    context_slots: &c.context_slots,
                    wants_logits: c.wants_logits,
                })
                .collect();
            let input = BatchInput::new(&chunks, device)?;
            Ok(model.forward(&input, cache)?.to_vec2::<f32>()?)
        });
    let mut scheduler = engine.scheduler.lock();
    let rows = match logits {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(model = %engine.info.name, "forward pass failed: {e}");
            for chunk in &plan.chunks {
                if let Some(seq) = scheduler.take(chunk.seq) {
                    scheduler.exit(seq, Exit::Failed(Failure::Internal));
                }
            }
            return;
        }
    };
    let mut rows = rows.into_iter();
    for chunk in plan.chunks {
        scheduler.computed(chunk.seq, chunk.tokens.len());
        if !chunk.wants_logits {
            continue;
        }
        let (Some(logits), Some(seq)) = (rows.next(), scheduler.running_mut(chunk.seq)) else {
            continue;
        };
        let exit = match seq.sample_and_accept(&logits, &engine.info.tokenizer) {
            Advance::Continue => continue,
            Advance::Finished(reason) => Exit::Finished(reason),
            Advance::CallerGone => Exit::Dropped,
            Advance::Failed => Exit::Failed(Failure::Internal),
        };
        if let Some(seq) = scheduler.take(chunk.seq) {
            scheduler.exit(seq, exit);
        }
    }
}

impl EngineHandle {
    /// The served model.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.info
    }

    /// Queue lengths and KV cache use.
    pub fn stats(&self) -> SchedulerStats {
        self.shared.scheduler.lock().stats()
    }

    /// Renders and tokenizes a prompt.
    pub fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let info = &self.shared.info;
        match prompt {
            Prompt::Text(text) => info.tokenizer.encode(text, true),
            Prompt::Tokens(ids) => {
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= info.vocab_size) {
                    return Err(Error::InvalidRequest(format!(
                        "token id {bad} is outside the vocabulary of {}",
                        info.vocab_size
                    )));
                }
                Ok(ids.clone())
            }
            Prompt::Chat { messages, tools } => {
                let template = info.chat_template.as_ref().ok_or_else(|| {
                    Error::InvalidRequest(format!("model `{}` has no chat template", info.name))
                })?;
                let text = template.render(messages, tools.as_deref(), true)?;
                // The template writes the special tokens itself.
                info.tokenizer.encode(&text, false)
            }
        }
    }

    /// Queues a request and returns the stream of its events.
    pub fn submit(&self, request: Request) -> Result<RequestStream> {
        let info = &self.shared.info;
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(Error::EngineStopped);
        }
        request.sampling.validate()?;
        if request.max_tokens == Some(0) {
            return Err(Error::InvalidRequest(
                "`max_tokens` must be at least 1".into(),
            ));
        }
        if request.stop.len() > MAX_STOP_STRINGS || request.stop.iter().any(String::is_empty) {
            return Err(Error::InvalidRequest(format!(
                "`stop` takes at most {MAX_STOP_STRINGS} non-empty strings"
            )));
        }
        let prompt = self.tokenize(&request.prompt)?;
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let limit = info.max_model_len.min(info.cache_tokens);
        if prompt.len() >= limit {
            let what = if info.max_model_len <= info.cache_tokens {
                "context length"
            } else {
                "KV cache"
            };
            return Err(Error::PromptTooLong {
                prompt: prompt.len(),
                limit: format!(
                    "the model's {what} is {limit} tokens and at least one must be generated"
                ),
            });
        }
        let max_len = request
            .max_tokens
            .map_or(limit, |m| (prompt.len() + m).min(limit));
        let mut token_ids = request.stop_token_ids.clone();
        if !request.ignore_eos {
            token_ids.extend(&info.eos_token_ids);
        }
        let constraint = request
            .constraint
            .as_ref()
            .map(|c| self.compile(c))
            .transpose()?;
        let output = OutputRules {
            stop: StopRules {
                token_ids,
                strings: request.stop.clone(),
            },
            constraint,
            keep_special_tokens: request.keep_special_tokens,
        };
        let id: SeqId = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = unbounded_channel();
        let seq = Sequence::new(
            id,
            prompt,
            max_len,
            Sampler::new(request.sampling),
            output,
            events,
            Arc::clone(&self.shared.metrics),
        );
        let queued = self.shared.scheduler.lock().add(seq);
        queued.map_err(Error::QueueFull)?;
        self.shared.wake();
        Ok(RequestStream {
            id,
            receiver,
            engine: self.clone(),
            finished: false,
        })
    }

    /// Compiles an output constraint, building the model's grammar engine the
    /// first time.
    fn compile(&self, constraint: &OutputConstraint) -> Result<ConstrainedOutput> {
        let info = &self.shared.info;
        let grammars = self.shared.grammars.get_or_init(|| {
            Grammars::new(&info.tokenizer, info.vocab_size, &info.eos_token_ids)
                .map_err(|e| e.to_string())
        });
        match grammars {
            Ok(grammars) => grammars.compile(constraint),
            Err(e) => Err(Error::InvalidRequest(format!(
                "model `{}` can't constrain its output: {e}",
                info.name
            ))),
        }
    }

    /// Cancels a request; its blocks are freed at the start of the next step.
    pub fn cancel(&self, id: SeqId) {
        self.shared.scheduler.lock().cancel(id);
        self.shared.wake();
    }

    /// Ends every request with an error and stops the engine thread.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake();
        let thread = self.shared.thread.lock().take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Runs a request to the end and collects its output.
    pub async fn generate(&self, request: Request) -> Result<Output> {
        let mut stream = self.submit(request)?;
        let mut output = Output::default();
        while let Some(event) = stream.next_event().await {
            match event {
                Event::Token(token) => {
                    output.text.push_str(&token.text);
                    output.tokens.push(token);
                }
                Event::Done(completion) => {
                    output.completion = Some(completion);
                    return Ok(output);
                }
                Event::Error(failure) => return Err(failure.into()),
            }
        }
        Err(Error::EngineStopped)
    }

    /// Whether the engine is idle (nothing waiting or running).
    pub fn is_idle(&self) -> bool {
        self.shared.scheduler.lock().is_idle()
    }

    /// The KV block size, for callers that reason about prefix reuse.
    pub fn block_size(&self) -> usize {
        self.shared.scheduler.lock().block_size()
    }
}

/// A whole generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// All text.
    pub text: String,
    /// Every token event.
    pub tokens: Vec<GeneratedToken>,
    /// How it ended.
    pub completion: Option<Completion>,
}

/// The events of one request. Dropping it cancels the request.
#[derive(Debug)]
pub struct RequestStream {
    id: SeqId,
    receiver: UnboundedReceiver<Event>,
    engine: EngineHandle,
    finished: bool,
}

impl RequestStream {
    /// The request's id, for [`EngineHandle::cancel`].
    pub fn id(&self) -> SeqId {
        self.id
    }

    /// The next event; `None` after the last one.
    pub async fn next_event(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let event = std::task::ready!(self.receiver.poll_recv(cx));
        if matches!(event, None | Some(Event::Done(_)) | Some(Event::Error(_))) {
            self.finished = true;
        }
        Poll::Ready(event)
    }

    /// Cancels the request; a `Done` event with `Cancelled` follows.
    pub fn cancel(&self) {
        self.engine.cancel(self.id);
    }
}

impl tokio_stream::Stream for RequestStream {
    type Item = Event;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.finished {
            self.engine.cancel(self.id);
        }
    }
}
