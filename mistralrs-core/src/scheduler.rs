//! Continuous batching: which sequences run in the next step, and how much of each.
//!
//! Sequences wait in arrival order and are admitted while the running set is under
//! `max_seqs` and the KV cache has blocks for their whole prompt (the prefix cache
//! may cover part of it). Every step then runs one decode token for each sequence
//! that is generating and a chunk of each prompt still being read, all within a
//! token budget, so a long prompt is prefilled over several steps (chunked prefill)
//! without stalling the others. When a running sequence needs a block and none is
//! free, the most recently admitted sequence is preempted: its blocks are freed and
//! it goes back to the front of the queue to be recomputed later.

use std::collections::VecDeque;

use mistralrs_paged_attn::{BlockCopy, BlockManager, BlockStats, Error as KvError, SeqId};

use crate::request::{Failure, FinishReason};
use crate::sequence::Sequence;

/// Limits of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Sequences running at once. Default 32: enough to fill a CPU batch, small
    /// enough that one step's latency stays low.
    pub max_seqs: usize,
    /// Tokens in one step (decode tokens plus prefill chunks). Default 512: a long
    /// prompt takes several steps instead of stalling everyone's next token.
    pub max_batch_tokens: usize,
    /// Requests allowed to wait; more are refused so callers can back off.
    /// Default 256.
    pub max_waiting: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_seqs: 32,
            max_batch_tokens: 512,
            max_waiting: 256,
        }
    }
}

/// One sequence's part of a step.
#[derive(Debug, Clone)]
pub(crate) struct PlannedChunk {
    pub(crate) seq: SeqId,
    pub(crate) tokens: Vec<u32>,
    pub(crate) first_pos: usize,
    /// Slots of positions `0..first_pos + tokens.len()`.
    pub(crate) context_slots: Vec<u32>,
    /// The chunk reaches the end of the sequence, so a token is sampled after it.
    pub(crate) wants_logits: bool,
}

/// Everything the model runs in one step.
#[derive(Debug, Default)]
pub(crate) struct StepPlan {
    pub(crate) chunks: Vec<PlannedChunk>,
    /// Blocks to copy before the step writes (copy-on-write).
    pub(crate) copies: Vec<BlockCopy>,
}

/// Queue lengths and cache use, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Sequences admitted and not finished.
    pub running: usize,
    /// Sequences waiting for admission.
    pub waiting: usize,
    /// KV cache blocks and prefix-cache counters.
    pub blocks: BlockStats,
    /// Sequences preempted so far.
    pub preemptions: u64,
}

/// The waiting and running sequences and the KV blocks they hold.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: SchedulerConfig,
    blocks: BlockManager,
    waiting: VecDeque<Sequence>,
    /// In admission order: the last one is preempted first.
    running: Vec<Sequence>,
    cancelled: Vec<SeqId>,
    preemptions: u64,
}

/// Why a sequence leaves the scheduler.
pub(crate) enum Exit {
    Finished(FinishReason),
    Failed(Failure),
    /// The caller went away; nobody to tell.
    Dropped,
}

impl Scheduler {
    pub(crate) fn new(config: SchedulerConfig, blocks: BlockManager) -> Self {
        Self {
            config,
            blocks,
            waiting: VecDeque::new(),
            running: Vec::new(),
            cancelled: Vec::new(),
            preemptions: 0,
        }
    }

    pub(crate) fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            running: self.running.len(),
            waiting: self.waiting.len(),
            blocks: self.blocks.stats(),
            preemptions: self.preemptions,
        }
    }

    pub(crate) fn block_size(&self) -> usize {
        self.blocks.block_size()
    }

    /// Queues a sequence; returns the queue length as the error when it is full.
    pub(crate) fn add(&mut self, seq: Sequence) -> Result<(), usize> {
        if self.waiting.len() >= self.config.max_waiting {
            return Err(self.waiting.len());
        }
        self.waiting.push_back(seq);
        Ok(())
    }

    /// Marks a sequence for removal at the start of the next step.
    pub(crate) fn cancel(&mut self, id: SeqId) {
        self.cancelled.push(id);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Plans the next step.
    pub(crate) fn schedule(&mut self) -> StepPlan {
        self.reap();
        let mut plan = StepPlan::default();
        let mut budget = self.config.max_batch_tokens;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let seq = &self.running[i];
            let (id, start) = (seq.id, seq.num_computed);
            let len = seq.pending().min(budget);
            match self.blocks.prepare_write(id, start, start + len) {
                Ok(copies) => {
                    plan.copies.extend(copies);
                    let chunk = self.plan_chunk(&self.running[i], len);
                    plan.chunks.push(chunk);
                    budget -= len;
                    i += 1;
                }
                Err(KvError::OutOfBlocks { .. }) => self.preempt_last(),
                Err(e) => {
                    tracing::error!(seq = self.running[i].id, "KV cache: {e}");
                    let seq = self.running.remove(i);
                    self.exit(seq, Exit::Failed(Failure::Internal));
                }
            }
        }
        self.admit(&mut plan, budget);
        plan
    }

    /// Admits waiting sequences in order while they fit.
    fn admit(&mut self, plan: &mut StepPlan, mut budget: usize) {
        while budget > 0 && self.running.len() < self.config.max_seqs {
            let Some(seq) = self.waiting.front() else {
                break;
            };
            let id = seq.id;
            let Ok(cached) = self.blocks.allocate(id, &seq.tokens) else {
                break;
            };
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            seq.num_computed = cached;
            if seq.output_len() == 0 {
                seq.cached_prompt_tokens = cached;
            }
            let len = seq.pending().min(budget);
            match self.blocks.prepare_write(id, cached, cached + len) {
                Ok(copies) => {
                    plan.copies.extend(copies);
                    plan.chunks.push(self.plan_chunk(&seq, len));
                    budget -= len;
                    self.running.push(seq);
                }
                Err(_) => {
                    // Only a copy-on-write block was missing: try again next step.
                    self.blocks.free(id);
                    self.waiting.push_front(seq);
                    break;
                }
            }
        }
    }

    fn plan_chunk(&self, seq: &Sequence, len: usize) -> PlannedChunk {
        let start = seq.num_computed;
        let end = start + len;
        PlannedChunk {
            seq: seq.id,
            tokens: seq.tokens[start..end].to_vec(),
            first_pos: start,
            context_slots: self.blocks.slots(seq.id, 0, end).unwrap_or_default(),
            wants_logits: end == seq.tokens.len(),
        }
    }

    /// Frees the newest running sequence and queues it first for recomputation.
    fn preempt_last(&mut self) {
        if let Some(mut seq) = self.running.pop() {
            self.blocks.free(seq.id);
            seq.num_computed = 0;
            self.preemptions += 1;
            tracing::debug!(seq = seq.id, "preempted: out of KV blocks");
            self.waiting.push_front(seq);
        }
    }

    /// Removes cancelled sequences and those whose caller went away.
    fn reap(&mut self) {
        let cancelled = std::mem::take(&mut self.cancelled);
        let gone = |s: &Sequence| cancelled.contains(&s.id) || s.caller_gone();
        let mut leaving = Vec::new();
        for seq in self
            .waiting
            .iter()
            .chain(self.running.iter())
            .filter(|s| gone(s))
        {
            leaving.push(seq.id);
        }
        for id in leaving {
            if let Some(seq) = self.take(id) {
                self.exit(seq, Exit::Finished(FinishReason::Cancelled));
            }
        }
    }

    /// Takes a sequence out of the scheduler (running or waiting).
    pub(crate) fn take(&mut self, id: SeqId) -> Option<Sequence> {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            return Some(self.running.remove(i));
        }
        let i = self.waiting.iter().position(|s| s.id == id)?;
        self.waiting.remove(i)
    }

    /// The running sequence `id`.
    pub(crate) fn running_mut(&mut self, id: SeqId) -> Option<&mut Sequence> {
        self.running.iter_mut().find(|s| s.id == id)
    }

    /// Records that a chunk ran: its tokens are now in the cache, and full blocks
    /// go into the prefix cache.
    pub(crate) fn computed(&mut self, id: SeqId, len: usize) {
        if let Some(seq) = self.running.iter_mut().find(|s| s.id == id) {
            seq.num_computed += len;
            let _ = self.blocks.commit(id, &seq.tokens, seq.num_computed);
        }
    }

    /// Frees a sequence's blocks and sends its last event.
    pub(crate) fn exit(&mut self, seq: Sequence, exit: Exit) {
        self.blocks.free(seq.id);
        match exit {
            Exit::Finished(reason) => seq.finish(reason),
            Exit::Failed(failure) => seq.fail(failure),
            Exit::Dropped => {}
        }
    }

    /// Ends every sequence with an error (shutdown).
    pub(crate) fn fail_all(&mut self, failure: Failure) {
        let all: Vec<Sequence> = self
            .waiting
            .drain(..)
            .chain(self.running.drain(..))
            .collect();
        for seq in all {
            self.exit(seq, Exit::Failed(failure));
        }
    }
}
