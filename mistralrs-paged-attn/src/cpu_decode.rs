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

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use half::{bf16, f16};

use crate::kv_dtype::Q8_0_BLOCK;
use crate::{CacheRows, Result};

/// A cache element read as f32. The conversions are plain integer and float
/// arithmetic, inlined so they vectorize with the kernel around them (a call
/// per row into `half`'s F16C routine took a third of a decode step at 4k
/// tokens of context). Both are exact.
trait CacheValue: Copy + Send + Sync {
    fn to_f32_row(src: &[Self], dst: &mut [f32]);
}

impl CacheValue for f32 {
    #[inline(always)]
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl CacheValue for f16 {
    #[inline(always)]
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16_bits_to_f32(s.to_bits());
        }
    }
}

impl CacheValue for bf16 {
    #[inline(always)]
    fn to_f32_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
}

/// An f16 as f32, exactly: the exponent and mantissa moved into an f32's
/// places and rescaled by 2^112 (which also turns subnormals into their
/// value), infinities and NaNs given the all-ones exponent, the sign put back.
#[inline(always)]
fn f16_bits_to_f32(bits: u16) -> f32 {
    let bits = u32::from(bits);
    let magnitude = bits & 0x7FFF;
    let scaled = (f32::from_bits(magnitude << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let special = if magnitude >= 0x7C00 { 0x7F80_0000 } else { 0 };
    f32::from_bits(scaled | special | ((bits & 0x8000) << 16))
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
/// held in contiguous CPU tensors (the caller then gathers).
pub(crate) fn decode_in_place(
    q: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    slots: &Tensor,
    context_lens: &[usize],
    scale: f64,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    let (n, heads, head_dim) = q.dims3()?;
    let kv_heads = k_cache.width() / head_dim;
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
    let out = match (k_cache, v_cache) {
        (CacheRows::Float(k), CacheRows::Float(v)) => {
            let (Some(k), Some(v)) = (CpuRows::of(k), CpuRows::of(v)) else {
                return Ok(None);
            };
            match (k.storage(), v.storage()) {
                (CpuStorage::F32(kd), CpuStorage::F32(vd)) => {
                    problem.run(&kd[k.start..], &vd[v.start..])
                }
                (CpuStorage::F16(kd), CpuStorage::F16(vd)) => {
                    problem.run(&kd[k.start..], &vd[v.start..])
                }
                (CpuStorage::BF16(kd), CpuStorage::BF16(vd)) => {
                    problem.run(&kd[k.start..], &vd[v.start..])
                }
                _ => return Ok(None),
            }
        }
        (
            CacheRows::Q8_0 {
                values: k_values,
                scales: k_scales,
            },
            CacheRows::Q8_0 {
                values: v_values,
                scales: v_scales,
            },
        ) => {
            let parts = [k_values, k_scales, v_values, v_scales].map(CpuRows::of);
            let [Some(kv), Some(ks), Some(vv), Some(vs)] = &parts else {
                return Ok(None);
            };
            match (kv.storage(), ks.storage(), vv.storage(), vs.storage()) {
                (
                    CpuStorage::U8(kvd),
                    CpuStorage::F16(ksd),
                    CpuStorage::U8(vvd),
                    CpuStorage::F16(vsd),
                ) => problem.run(
                    &Q8Rows {
                        values: &kvd[kv.start..],
                        scales: &ksd[ks.start..],
                    },
                    &Q8Rows {
                        values: &vvd[vv.start..],
                        scales: &vsd[vs.start..],
                    },
                ),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let out = Tensor::from_vec(out, (n, heads * head_dim), &Device::Cpu)?;
    Ok(Some(out.to_dtype(q.dtype())?))
}

/// A contiguous CPU tensor's storage, held for reading, and where it starts.
struct CpuRows<'a> {
    storage: Box<dyn std::ops::Deref<Target = Storage> + 'a>,
    start: usize,
}

impl<'a> CpuRows<'a> {
    fn of(tensor: &'a Tensor) -> Option<Self> {
        if !tensor.is_contiguous() {
            return None;
        }
        let (storage, layout) = tensor.storage_and_layout();
        let start = layout.start_offset();
        matches!(&*storage, Storage::Cpu(_)).then(|| Self {
            storage: Box::new(storage),
            start,
        })
    }

    fn storage(&self) -> &CpuStorage {
        match &**self.storage {
            Storage::Cpu(cpu) => cpu,
            _ => unreachable!("checked in `of`"),
        }
    }
}

/// Cache rows read as f32, by flat position (`slot * width + column`).
trait Rows: Sync {
    /// Values `start..start + dst.len()` into `dst`.
    fn read(&self, start: usize, dst: &mut [f32]);
    /// Asks for the memory of values `start..start + len` ahead of their use.
    fn prefetch(&self, start: usize, len: usize);
}

impl<T: CacheValue> Rows for [T] {
    #[inline(always)]
    fn read(&self, start: usize, dst: &mut [f32]) {
        T::to_f32_row(&self[start..start + dst.len()], dst);
    }

    #[inline(always)]
    fn prefetch(&self, start: usize, len: usize) {
        prefetch(&self[start..start + len]);
    }
}

/// A Q8_0 cache: bytes offset by 128, an f16 scale per 32 of them. Reads
/// start and end on block boundaries (heads are whole blocks).
struct Q8Rows<'a> {
    values: &'a [u8],
    scales: &'a [f16],
}

impl Rows for Q8Rows<'_> {
    #[inline(always)]
    fn read(&self, start: usize, dst: &mut [f32]) {
        let values = &self.values[start..start + dst.len()];
        let scales = &self.scales[start / Q8_0_BLOCK..(start + dst.len()) / Q8_0_BLOCK];
        for ((dst, values), scale) in dst
            .chunks_exact_mut(Q8_0_BLOCK)
            .zip(values.chunks_exact(Q8_0_BLOCK))
            .zip(scales)
        {
            let scale = f16_bits_to_f32(scale.to_bits());
            for (d, &v) in dst.iter_mut().zip(values) {
                *d = (i32::from(v) - 128) as f32 * scale;
            }
        }
    }

    #[inline(always)]
    fn prefetch(&self, start: usize, len: usize) {
        prefetch(&self.values[start..start + len]);
        prefetch(&self.scales[start / Q8_0_BLOCK..(start + len) / Q8_0_BLOCK]);
    }
}

/// Keys per work item. A long context is split into runs of this many keys
/// (from the first key the query sees, so the split depends only on the
/// sequence), each run's partial softmax is computed apart and the runs are
/// merged in order: one sequence's attention uses every core.
const KEYS_PER_ITEM: usize = 256;

/// How many keys ahead a row is prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Asks for the cache lines of `row` ahead of their use.
#[inline(always)]
fn prefetch<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = std::mem::size_of_val(row);
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch never faults, and the address lies in `row`.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().cast::<i8>().add(offset))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// One work item: a run of keys of one (sequence, kv head).
struct Item {
    seq: usize,
    kv_head: usize,
    keys: std::ops::Range<usize>,
}

impl Problem<'_> {
    /// `[n, heads * head_dim]` outputs.
    fn run<R: Rows + ?Sized>(&self, k: &R, v: &R) -> Vec<f32> {
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
            let mut sum = 0f32;
            for s in h_scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
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

/// Row `j` of `slots` (its values `column..column + row.len()`) into `row`,
/// asking the memory for the row a few keys ahead: the rows of one kv head are
/// strided across the cache. A function, not a closure, so it is inlined into
/// the kernel and vectorized with its features.
#[inline(always)]
fn read_key_row<R: Rows + ?Sized>(
    cache: &R,
    slots: &[u32],
    j: usize,
    width: usize,
    column: usize,
    row: &mut [f32],
) {
    if let Some(&ahead) = slots.get(j + PREFETCH_AHEAD) {
        cache.prefetch(ahead as usize * width + column, row.len());
    }
    cache.read(slots[j] as usize * width + column, row);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_f16_converts_as_half_does() {
        for bits in 0..=u16::MAX {
            let want = f16::from_bits(bits).to_f32();
            let got = f16_bits_to_f32(bits);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{bits:#06x}: {got} vs {want}"
            );
        }
    }
}
