//! Decode attention on the CPU, reading keys and values where they lie in the
//! paged cache (as vLLM's paged attention kernel does): no gathered copy of the
//! context, no dtype conversion of it as a tensor, one pass for the scores and
//! one for the weighted values per key/value head.
//!
//! Each work item is one run of keys of one (sequence, key/value head) and
//! computes exactly what it would alone, so a sequence's result does not
//! depend on its batch. Scores, softmax and sums run in f32 whatever the cache
//! holds.

use std::sync::Mutex;

use candle_core::Tensor;

use crate::cpu_rows::{OverRows, Rows, attend_in_place, read_key_row};
use crate::cpu_softmax::exp_shifted_sum;
use crate::{CacheRows, Result};

/// What one decode call attends over.
struct Problem<'a> {
    /// `[n, heads, head_dim]` queries.
    q: Vec<f32>,
    /// `[n * max_ctx]` padded slot lists.
    slots: Vec<u32>,
    max_ctx: usize,
    context_lens: &'a [usize],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    window: Option<usize>,
}

/// Decode attention over the cache in place, or `None` when it is not on the
/// CPU (the caller then gathers).
pub(crate) fn decode_in_place(
    q: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    slots: &Tensor,
    context_lens: &[usize],
    scale: f64,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    attend_in_place(q, slots, k_cache, v_cache, |queries| Problem {
        max_ctx: queries.slots.len() / queries.n.max(1),
        q: queries.values,
        slots: queries.slots,
        context_lens,
        heads: queries.heads,
        kv_heads: k_cache.width() / queries.head_dim,
        head_dim: queries.head_dim,
        scale: scale as f32,
        window,
    })
}

/// Keys per work item. A long context is split into runs of this many keys
/// (from the first key the query sees, so the split depends only on the
/// sequence), each run's partial softmax is computed apart and the runs are
/// merged in order: one sequence's attention uses every core.
const KEYS_PER_ITEM: usize = 256;

/// One work item: a run of keys of one (sequence, kv head).
struct Item {
    seq: usize,
    kv_head: usize,
    keys: std::ops::Range<usize>,
}

impl OverRows for Problem<'_> {
    type Output = Vec<f32>;

    /// `[n, heads * head_dim]` outputs.
    fn over<R: Rows + ?Sized>(&self, k: &R, v: &R) -> Vec<f32> {
        let (n, d) = (self.context_lens.len(), self.head_dim);
        let group = self.heads / self.kv_heads;
        let mut items = Vec::new();
        // Runs of keys per (sequence, kv head), in that order.
        let mut runs = Vec::with_capacity(n * self.kv_heads);
        for seq in 0..n {
            let len = self.context_lens[seq];
            // The query sits at position len - 1 and sees the window behind it.
            let first = self.window.map_or(0, |w| len.saturating_sub(w));
            for kv_head in 0..self.kv_heads {
                let before = items.len();
                for start in (first..len).step_by(KEYS_PER_ITEM) {
                    let keys = start..(start + KEYS_PER_ITEM).min(len);
                    items.push(Item { seq, kv_head, keys });
                }
                runs.push(items.len() - before);
            }
        }
        let partial_len = group * (d + 2);
        let mut partials = vec![0f32; items.len() * partial_len];
        let slices: Vec<Mutex<&mut [f32]>> =
            partials.chunks_mut(partial_len).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(items.len(), |range| {
            for index in range {
                let mut slice = slices[index].lock().unwrap_or_else(|e| e.into_inner());
                self.attend_fastest(&items[index], k, v, &mut slice);
            }
        });
        drop(slices);
        let mut out = vec![0f32; n * self.heads * d];
        // Items of one (sequence, kv head) are adjacent, in key order; their
        // heads are adjacent in the output.
        let mut item = 0;
        for (out, runs) in out.chunks_exact_mut(group * d).zip(runs) {
            merge(
                &partials[item * partial_len..(item + runs) * partial_len],
                group,
                d,
                out,
            );
            item += runs;
        }
        out
    }
}

impl Problem<'_> {
    /// [`Self::attend`] compiled for the widest vectors this CPU has.
    fn attend_fastest<R: Rows + ?Sized>(&self, item: &Item, k: &R, v: &R, partial: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            #[allow(unsafe_code)]
            unsafe {
                self.attend_avx2(item, k, v, partial)
            };
            return;
        }
        self.attend(item, k, v, partial);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn attend_avx2<R: Rows + ?Sized>(&self, item: &Item, k: &R, v: &R, partial: &mut [f32]) {
        self.attend(item, k, v, partial);
    }

    /// The `group` query heads of the item's kv head over its keys, as a
    /// partial softmax: per head its highest score and the sum of
    /// `exp(score - highest)`, then per head the values weighted by the run's
    /// own softmax (`partial` is `[group * 2 + group * head_dim]`). Normalizing
    /// each score before the product with V, as llama.cpp does, kept four more
    /// near-ties of the teacher-forced test on llama.cpp's side than
    /// normalizing the product.
    #[inline(always)]
    fn attend<R: Rows + ?Sized>(&self, item: &Item, k: &R, v: &R, partial: &mut [f32]) {
        let d = self.head_dim;
        let group = self.heads / self.kv_heads;
        let width = self.kv_heads * d;
        let row_start = item.seq * self.max_ctx;
        let slots = &self.slots[row_start + item.keys.start..row_start + item.keys.end];
        let q_at = |h: usize| {
            let start = (item.seq * self.heads + item.kv_head * group + h) * d;
            &self.q[start..start + d]
        };
        let column = item.kv_head * d;
        let mut row = vec![0f32; d];
        // Scores, `[group, keys]`.
        let mut scores = vec![0f32; group * slots.len()];
        for j in 0..slots.len() {
            read_key_row(k, slots, j, width, column, &mut row);
            for h in 0..group {
                scores[h * slots.len() + j] = dot(q_at(h), &row) * self.scale;
            }
        }
        let (stats, out) = partial.split_at_mut(group * 2);
        for (h_scores, stats) in scores
            .chunks_mut(slots.len())
            .zip(stats.chunks_exact_mut(2))
        {
            let max = h_scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum = exp_shifted_sum(h_scores, max);
            for s in h_scores.iter_mut() {
                *s /= sum;
            }
            stats.copy_from_slice(&[max, sum]);
        }
        out.fill(0.0);
        for j in 0..slots.len() {
            read_key_row(v, slots, j, width, column, &mut row);
            for (h, out) in out.chunks_exact_mut(d).enumerate() {
                axpy(scores[h * slots.len() + j], &row, out);
            }
        }
    }
}

/// Merges the partial softmaxes of one (sequence, kv head)'s runs of keys,
/// in order, into the attention output of its `group` heads (`[group, d]`).
fn merge(partials: &[f32], group: usize, d: usize, out: &mut [f32]) {
    let partial_len = group * (d + 2);
    for (h, out) in out.chunks_exact_mut(d).enumerate() {
        let stats = |p: &[f32]| (p[h * 2], p[h * 2 + 1]);
        let max = partials
            .chunks_exact(partial_len)
            .map(|p| stats(p).0)
            .fold(f32::NEG_INFINITY, f32::max);
        // Each run's share of the whole softmax: exactly 1 for a lone run.
        let mass = |p: &[f32]| {
            let (run_max, run_sum) = stats(p);
            run_sum * (run_max - max).exp()
        };
        let total: f32 = partials.chunks_exact(partial_len).map(mass).sum();
        out.fill(0.0);
        // An empty context (no runs) leaves zeros.
        for p in partials.chunks_exact(partial_len) {
            let run_out = &p[group * 2 + h * d..group * 2 + (h + 1) * d];
            axpy(mass(p) / total, run_out, out);
        }
    }
}

/// `a . b`, in eight independent partial sums so the loop vectorizes.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out += a * x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(x) {
        *o += a * x;
    }
}
