//! The paged cache's rows read on the CPU where they lie, whatever their
//! dtype: the shared part of the CPU attention kernels (`cpu_decode`,
//! `cpu_prefill`).

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use half::{bf16, f16};

use crate::kv_dtype::Q8_0_BLOCK;
use crate::{CacheRows, Result};

/// What a CPU attention kernel starts from: the queries (`[n, heads,
/// head_dim]`) as f32 and the slots, read out of their tensors once.
pub(crate) struct Queries {
    pub(crate) values: Vec<f32>,
    pub(crate) slots: Vec<u32>,
    pub(crate) n: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
}

/// Runs the attention that `kernel` builds from the queries over the layer's
/// cache where it lies: `[n, heads * head_dim]` in the queries' dtype, or
/// `None` when the queries or the cache are not on the CPU (the caller then
/// gathers; the queries are not copied to the host only to find that out).
pub(crate) fn attend_in_place<A: OverRows<Output = Vec<f32>>>(
    q: &Tensor,
    slots: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    kernel: impl FnOnce(Queries) -> A,
) -> Result<Option<Tensor>> {
    if !q.device().is_cpu() {
        return Ok(None);
    }
    let (n, heads, head_dim) = q.dims3()?;
    let queries = Queries {
        values: q.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
        slots: slots.to_vec1()?,
        n,
        heads,
        head_dim,
    };
    let Some(out) = over_cache(k_cache, v_cache, &kernel(queries)) else {
        return Ok(None);
    };
    let out = Tensor::from_vec(out, (n, heads * head_dim), &Device::Cpu)?;
    Ok(Some(out.to_dtype(q.dtype())?))
}

/// An attention computed over a layer's keys and values, read as [`Rows`] of
/// whichever type the cache holds.
pub(crate) trait OverRows {
    type Output;
    fn over<R: Rows + ?Sized>(&self, k: &R, v: &R) -> Self::Output;
}

/// Runs `attention` over the layer's cache where it lies, or `None` when the
/// cache is not held in contiguous CPU tensors (the caller then gathers).
fn over_cache<A: OverRows>(
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    attention: &A,
) -> Option<A::Output> {
    Some(match (k_cache, v_cache) {
        (CacheRows::Float(k), CacheRows::Float(v)) => {
            let (Some(k), Some(v)) = (CpuRows::of(k), CpuRows::of(v)) else {
                return None;
            };
            match (k.storage(), v.storage()) {
                (CpuStorage::F32(kd), CpuStorage::F32(vd)) => {
                    attention.over(&kd[k.start..], &vd[v.start..])
                }
                (CpuStorage::F16(kd), CpuStorage::F16(vd)) => {
                    attention.over(&kd[k.start..], &vd[v.start..])
                }
                (CpuStorage::BF16(kd), CpuStorage::BF16(vd)) => {
                    attention.over(&kd[k.start..], &vd[v.start..])
                }
                _ => return None,
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
                return None;
            };
            match (kv.storage(), ks.storage(), vv.storage(), vs.storage()) {
                (
                    CpuStorage::U8(kvd),
                    CpuStorage::F16(ksd),
                    CpuStorage::U8(vvd),
                    CpuStorage::F16(vsd),
                ) => attention.over(
                    &Q8Rows {
                        values: &kvd[kv.start..],
                        scales: &ksd[ks.start..],
                    },
                    &Q8Rows {
                        values: &vvd[vv.start..],
                        scales: &vsd[vs.start..],
                    },
                ),
                _ => return None,
            }
        }
        _ => return None,
    })
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

/// Cache rows read as f32, by flat position (`slot * width + column`).
pub(crate) trait Rows: Sync {
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

/// Row `j` of `slots` (its values `column..column + row.len()`) into `row`,
/// asking the memory for the row a few keys ahead: the rows of one kv head are
/// strided across the cache. A function, not a closure, so it is inlined into
/// the kernel and vectorized with its features.
#[inline(always)]
pub(crate) fn read_key_row<R: Rows + ?Sized>(
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
