//! Decode attention on the CPU, reading keys and values where they lie in the
//! paged cache (as vLLM's paged attention kernel does): no gathered copy of the
//! context, no dtype conversion of it as a tensor, one pass for the scores and
//! one for the weighted values per key/value head.
//!
//! Each work item is one (sequence, key/value head) and computes exactly what
//! it would alone, so a sequence's result does not depend on its batch. Scores,
//! softmax and sums run in f32 whatever the cache holds.

use std::sync::Mutex;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use half::{bf16, f16};

use crate::Result;

/// A cache element read as f32.
trait CacheValue: Copy + Send + Sync {
    fn to_f32_row(src: &[Self], dst: &mut [f32]);
}

impl CacheValue for f32 {
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl CacheValue for f16 {
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

impl CacheValue for bf16 {
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

/// What one decode call attends over.
struct Problem<'a> {
    /// `[n, heads, head_dim]` queries.
    q: &'a [f32],
    /// `[n * max_ctx]` padded slot lists.
    slots: &'a [u32],
    max_ctx: usize,
    context_lens: &'a [usize],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    scale: f32,
    window: Option<usize>,
}

/// Decode attention over the cache in place, or `None` when the cache is not
/// a contiguous f32/f16/bf16 tensor on the CPU (the caller then gathers).
pub(crate) fn decode_in_place(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    slots: &Tensor,
    context_lens: &[usize],
    scale: f64,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    if !k_cache.device().is_cpu() || !k_cache.is_contiguous() || !v_cache.is_contiguous() {
        return Ok(None);
    }
    let (n, heads, head_dim) = q.dims3()?;
    let kv_heads = k_cache.dim(1)? / head_dim;
    let q_values: Vec<f32> = q.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let slot_list: Vec<u32> = slots.to_vec1()?;
    let problem = Problem {
        q: &q_values,
        slots: &slot_list,
        max_ctx: slot_list.len() / n.max(1),
        context_lens,
        heads,
        kv_heads,
        head_dim,
        scale: scale as f32,
        window,
    };
    let (k_storage, k_layout) = k_cache.storage_and_layout();
    let (v_storage, v_layout) = v_cache.storage_and_layout();
    let (Storage::Cpu(k), Storage::Cpu(v)) = (&*k_storage, &*v_storage) else {
        return Ok(None);
    };
    let (k_from, v_from) = (k_layout.start_offset(), v_layout.start_offset());
    let out = match (k, v) {
        (CpuStorage::F32(k), CpuStorage::F32(v)) => problem.run(&k[k_from..], &v[v_from..]),
        (CpuStorage::F16(k), CpuStorage::F16(v)) => problem.run(&k[k_from..], &v[v_from..]),
        (CpuStorage::BF16(k), CpuStorage::BF16(v)) => problem.run(&k[k_from..], &v[v_from..]),
        _ => return Ok(None),
    };
    let out = Tensor::from_vec(out, (n, heads * head_dim), &Device::Cpu)?;
    Ok(Some(out.to_dtype(q.dtype())?))
}

impl Problem<'_> {
    /// `[n, heads * head_dim]` outputs, one work item per (sequence, kv head).
    fn run<T: CacheValue>(&self, k: &[T], v: &[T]) -> Vec<f32> {
        let (n, d) = (self.context_lens.len(), self.head_dim);
        let group = self.heads / self.kv_heads;
        let mut out = vec![0f32; n * self.heads * d];
        // Heads of one kv head are adjacent: each item owns `group * d` outputs.
        let items: Vec<Mutex<&mut [f32]>> = out.chunks_mut(group * d).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(items.len(), |range| {
            for index in range {
                let mut slice = items[index].lock().unwrap_or_else(|e| e.into_inner());
                let (seq, kv_head) = (index / self.kv_heads, index % self.kv_heads);
                self.attend(seq, kv_head, k, v, &mut slice);
            }
        });
        drop(items);
        out
    }

    /// The `group` query heads of `kv_head` in sequence `seq`, into `out`
    /// (`[group, head_dim]`).
    fn attend<T: CacheValue>(&self, seq: usize, kv_head: usize, k: &[T], v: &[T], out: &mut [f32]) {
        let d = self.head_dim;
        let group = self.heads / self.kv_heads;
        let width = self.kv_heads * d;
        let len = self.context_lens[seq];
        // The query sits at position len - 1 and sees the window behind it.
        let first = self.window.map_or(0, |w| len.saturating_sub(w));
        let slots = &self.slots[seq * self.max_ctx + first..seq * self.max_ctx + len];
        let q_at = |h: usize| {
            let start = (seq * self.heads + kv_head * group + h) * d;
            &self.q[start..start + d]
        };
        let row_of = |cache: &[T], slot: u32, row: &mut [f32]| {
            let start = slot as usize * width + kv_head * d;
            T::to_f32_row(&cache[start..start + d], row);
        };
        let mut row = vec![0f32; d];
        // Scores, `[group, keys]`.
        let mut scores = vec![0f32; group * slots.len()];
        for (j, &slot) in slots.iter().enumerate() {
            row_of(k, slot, &mut row);
            for h in 0..group {
                scores[h * slots.len() + j] = dot(q_at(h), &row) * self.scale;
            }
        }
        for h_scores in scores.chunks_mut(slots.len().max(1)) {
            let max = h_scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in h_scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for s in h_scores.iter_mut() {
                *s /= sum;
            }
        }
        out.fill(0.0);
        for (j, &slot) in slots.iter().enumerate() {
            row_of(v, slot, &mut row);
            for (h, out) in out.chunks_exact_mut(d).enumerate() {
                axpy(scores[h * slots.len() + j], &row, out);
            }
        }
    }
}

/// `a . b`, in eight independent partial sums so the loop vectorizes.
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
fn axpy(a: f32, x: &[f32], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(x) {
        *o += a * x;
    }
}
