//! Prompt attention on the CPU, reading keys and values where they lie in the
//! paged cache: causal blocks of queries, each over only the keys its queries
//! see, on every core.
//!
//! The tensor path this replaces on the CPU computed every query against every
//! key of the context (half of it then masked away), in one product that ran on
//! a single core, and went over the `[heads, n, context]` scores five more
//! times as whole tensors (mask, max, exp, sum, divide): a third of a 500-token
//! prompt's time. Here a work item is one block of queries of one key/value
//! head: its keys and values converted to f32 once, the scores as one matrix
//! product, softmax row by row over the keys each query sees, and the weighted
//! values as a second product. Scores, softmax and sums run in f32 whatever
//! the cache holds.

use std::ops::Range;
use std::sync::Mutex;

use candle_core::Tensor;

use crate::cpu_rows::{OverRows, Rows, attend_in_place, read_key_row};
use crate::cpu_softmax::exp_shifted_sum;
use crate::{CacheRows, Result};

/// Queries per work item. Larger blocks make the products faster and waste
/// more of the causal triangle (a block computes the scores of its own keys
/// for all its queries, and masks the later half).
const QUERIES_PER_ITEM: usize = 32;

/// One sequence's prompt attention.
struct Prompt {
    /// `[n, heads, head_dim]` queries of positions `first_pos..first_pos + n`.
    q: Vec<f32>,
    /// `[first_pos + n]`: the slot of every position so far.
    slots: Vec<u32>,
    first_pos: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    window: Option<usize>,
}

/// Prompt attention over the cache in place, or `None` when it is not on the
/// CPU (the caller then gathers). Arguments as for [`crate::paged_attention`].
pub(crate) fn prefill_in_place(
    q: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    context_slots: &Tensor,
    first_pos: usize,
    scale: f64,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    attend_in_place(q, context_slots, k_cache, v_cache, |queries| Prompt {
        q: queries.values,
        slots: queries.slots,
        first_pos,
        heads: queries.heads,
        kv_heads: k_cache.width() / queries.head_dim,
        head_dim: queries.head_dim,
        scale: scale as f32,
        window,
    })
}

/// One work item: a block of queries (indices into the prompt) of one kv head.
struct Item {
    kv_head: usize,
    queries: Range<usize>,
}

impl OverRows for Prompt {
    type Output = Vec<f32>;

    /// `[n, heads * head_dim]` outputs.
    fn over<R: Rows + ?Sized>(&self, k: &R, v: &R) -> Vec<f32> {
        let d = self.head_dim;
        let group = self.heads / self.kv_heads;
        let n = self.q.len() / (self.heads * d);
        // The last blocks see the most keys: handing them out first leaves
        // the light ones to even out the cores at the end.
        let items: Vec<Item> = (0..n)
            .step_by(QUERIES_PER_ITEM)
            .rev()
            .flat_map(|start| {
                let queries = start..(start + QUERIES_PER_ITEM).min(n);
                (0..self.kv_heads).map(move |kv_head| Item {
                    kv_head,
                    queries: queries.clone(),
                })
            })
            .collect();
        let results: Vec<Mutex<Vec<f32>>> = items.iter().map(|_| Mutex::default()).collect();
        candle_core::utils::barrier_pool().execute_chunked(items.len(), |range| {
            for index in range {
                let out = self.attend_fastest(&items[index], k, v);
                *results[index].lock().unwrap_or_else(|e| e.into_inner()) = out;
            }
        });
        let mut out = vec![0f32; n * self.heads * d];
        for (item, result) in items.iter().zip(results) {
            let result = result.into_inner().unwrap_or_else(|e| e.into_inner());
            let block = item.queries.len();
            for (h, head_rows) in result.chunks_exact(block * d).enumerate() {
                let head = item.kv_head * group + h;
                for (i, row) in head_rows.chunks_exact(d).enumerate() {
                    let at = ((item.queries.start + i) * self.heads + head) * d;
                    out[at..at + d].copy_from_slice(row);
                }
            }
        }
        out
    }
}

impl Prompt {
    /// The first key position that a query at `pos` sees.
    fn first_visible(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }

    /// [`Self::attend`] compiled for the widest vectors this CPU has (the
    /// products pick their own).
    fn attend_fastest<R: Rows + ?Sized>(&self, item: &Item, k: &R, v: &R) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            #[allow(unsafe_code)]
            return unsafe { self.attend_avx2(item, k, v) };
        }
        self.attend(item, k, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn attend_avx2<R: Rows + ?Sized>(&self, item: &Item, k: &R, v: &R) -> Vec<f32> {
        self.attend(item, k, v)
    }

    /// The item's `group` heads over the keys its queries see: `[group,
    /// block, head_dim]`, head-major.
    #[inline(always)]
    fn attend<R: Rows + ?Sized>(&self, item: &Item, k: &R, v: &R) -> Vec<f32> {
        let d = self.head_dim;
        let group = self.heads / self.kv_heads;
        let block = item.queries.len();
        let rows = group * block;
        let first_key = self.first_visible(self.first_pos + item.queries.start);
        let end_key = self.first_pos + item.queries.end;
        let slots = &self.slots[first_key..end_key];
        let keys = slots.len();
        let width = self.kv_heads * d;
        let column = item.kv_head * d;

        // Queries as `[group * block, d]`, row `h * block + i`.
        let mut q = vec![0f32; rows * d];
        for (r, q_row) in q.chunks_exact_mut(d).enumerate() {
            let (h, i) = (r / block, r % block);
            let at = ((item.queries.start + i) * self.heads + item.kv_head * group + h) * d;
            q_row.copy_from_slice(&self.q[at..at + d]);
        }
        let mut kv = vec![0f32; keys * d];
        for (j, row) in kv.chunks_exact_mut(d).enumerate() {
            read_key_row(k, slots, j, width, column, row);
        }
        // Scores `[rows, keys]` = q · kᵀ.
        let mut scores = vec![0f32; rows * keys];
        product(&mut scores, rows, keys, d, &q, d, &kv, 1, d);
        for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
            let pos = self.first_pos + item.queries.start + r % block;
            let seen = self.first_visible(pos) - first_key..pos + 1 - first_key;
            softmax_over(row, seen, self.scale);
        }
        for (j, row) in kv.chunks_exact_mut(d).enumerate() {
            read_key_row(v, slots, j, width, column, row);
        }
        // Outputs `[rows, d]` = probabilities · v.
        let mut out = vec![0f32; rows * d];
        product(&mut out, rows, d, keys, &scores, keys, &kv, d, 1);
        out
    }
}

/// `row[seen]` scaled and turned into probabilities, each normalized before
/// the product with V as llama.cpp does (and as the decode kernel does); the
/// rest of the row, keys the query does not see, zero.
#[inline(always)]
fn softmax_over(row: &mut [f32], seen: Range<usize>, scale: f32) {
    let (before, rest) = row.split_at_mut(seen.start);
    let (visible, after) = rest.split_at_mut(seen.len());
    before.fill(0.0);
    after.fill(0.0);
    for s in visible.iter_mut() {
        *s *= scale;
    }
    let max = visible.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = exp_shifted_sum(visible, max);
    for s in visible.iter_mut() {
        *s /= sum;
    }
}

/// `out[m, n] = a[m, k] · b[k, n]`, on this thread: `a` row-major with rows
/// `a_row` apart, `b`'s element `(kk, j)` at `kk * b_row + j * b_col` (so a
/// row-major `[n, k]` matrix given with `b_row = 1, b_col = k` is read
/// transposed).
#[allow(clippy::too_many_arguments)] // the strides of a matrix product
fn product(
    out: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_row: usize,
    b: &[f32],
    b_row: usize,
    b_col: usize,
) {
    assert_eq!(out.len(), m * n, "product's output size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    assert!((m - 1) * a_row + k <= a.len(), "product's left operand");
    assert!(
        (k - 1) * b_row + (n - 1) * b_col < b.len(),
        "product's right operand"
    );
    // SAFETY: every element read or written lies in its slice (the asserts
    // above bound the largest offsets), and `out` is borrowed mutably alone.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            a_row as isize,
            b.as_ptr(),
            b_col as isize,
            b_row as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
