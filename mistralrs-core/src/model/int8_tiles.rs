//! What the integer matmul kernels (`q4_1.rs`, `q8_0.rs`) share: activations
//! rounded to 8 bits per block of 32 (ggml's Q8_1, whose values and scales are
//! also Q8_0's), the split of a product into work items of tokens by rows, and
//! the AVX-512 VNNI tiling of those items into four rows by four tokens.

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::Result;

/// Values per block.
pub(super) const BLOCK: usize = 32;
/// Output rows per parallel work item.
const ROWS_PER_ITEM: usize = 64;
/// Tokens per parallel work item: its rows are read from cache for each.
pub(super) const TOKENS_PER_ITEM: usize = 16;

/// One activation row rounded to 8 bits per block (ggml's Q8_1).
pub(super) struct Q8Row {
    pub(super) values: Vec<[i8; BLOCK]>,
    /// Per block, the f16 scale as f32.
    pub(super) scales: Vec<f32>,
    /// `scale * sum(values)` per block, rounded to f16 as ggml stores it.
    pub(super) sums: Vec<f32>,
}

/// ggml's `quantize_row_q8_1`: per block, `scale = max|x| / 127` stored as
/// f16, values `round(x / scale)` (by the unrounded scale), and the block's
/// `f16(sum of values) * f16 scale` computed in f16.
pub(super) fn quantize_row(x: &[f32]) -> Q8Row {
    let blocks = x.len() / BLOCK;
    let mut row = Q8Row {
        values: Vec::with_capacity(blocks),
        scales: Vec::with_capacity(blocks),
        sums: Vec::with_capacity(blocks),
    };
    for block in x.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut values = [0i8; BLOCK];
        let mut sum = 0i32;
        for (q, v) in values.iter_mut().zip(block) {
            *q = (v * inverse).round() as i8;
            sum += i32::from(*q);
        }
        let scale = f16::from_f32(scale);
        row.values.push(values);
        row.scales.push(scale.to_f32());
        row.sums.push((f16::from_f32(sum as f32) * scale).to_f32());
    }
    row
}

/// Reproducible values in [-2, 2) for the kernels' tests.
#[cfg(test)]
pub(super) fn random(len: usize, seed: u32) -> Vec<f32> {
    // A small LCG: reproducible values in [-2, 2) without a dependency.
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

/// `x W^T` for `x` `[tokens, cols]` and a `[rows, cols]` matrix whose products
/// `dot_tile(tokens, first_row, outs)` computes into `outs[t][i]` (token `t`
/// times row `first_row + i`). One work item per run of tokens and run of rows,
/// holding its tokens' slices of those rows: a run of rows is read once for all
/// its tokens.
pub(super) fn tiled_forward(
    x: &Tensor,
    rows: usize,
    dot_tile: impl Fn(&[Q8Row], usize, &mut [&mut [f32]]) + Sync,
) -> Result<Tensor> {
    let (tokens, cols) = x.dims2()?;
    let x: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let rows_q8: Vec<Q8Row> = x.chunks_exact(cols).map(quantize_row).collect();
    let mut out = vec![0f32; tokens * rows];
    let mut slices: Vec<_> = out
        .chunks_mut(rows)
        .map(|row| row.chunks_mut(ROWS_PER_ITEM).collect::<Vec<_>>())
        .collect();
    let row_runs = rows.div_ceil(ROWS_PER_ITEM);
    let mut items = Vec::new();
    for first_token in (0..tokens).step_by(TOKENS_PER_ITEM) {
        let group = &mut slices[first_token..(first_token + TOKENS_PER_ITEM).min(tokens)];
        let mut by_run: Vec<Vec<&mut [f32]>> = (0..row_runs).map(|_| Vec::new()).collect();
        for token_slices in group.iter_mut() {
            for (run, slice) in token_slices.drain(..).enumerate() {
                by_run[run].push(slice);
            }
        }
        for (run, outs) in by_run.into_iter().enumerate() {
            let tokens = &rows_q8[first_token..first_token + outs.len()];
            items.push(Mutex::new((tokens, run * ROWS_PER_ITEM, outs)));
        }
    }
    candle_core::utils::barrier_pool().execute_chunked(items.len(), |range| {
        for item in &items[range] {
            let mut guard = item.lock().unwrap_or_else(|e| e.into_inner());
            let (tokens, first_row, ref mut outs) = *guard;
            dot_tile(tokens, first_row, outs);
        }
    });
    drop(items);
    Ok(Tensor::from_vec(out, (tokens, rows), &Device::Cpu)?)
}

/// The AVX-512 VNNI tiles: four rows by up to four tokens share their loads
/// (a row's unpacked weights for the tile's tokens, a token's values for its
/// rows). Each kernel computes a product the same way whatever the tile's
/// shape, so a sequence's result does not depend on its batch.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::{
        __m128d, __m512, __m512i, __mmask16, _mm_castpd_ps, _mm_load_sd, _mm512_castps128_ps512,
        _mm512_fmadd_ps, _mm512_maskz_loadu_ps, _mm512_permutexvar_ps, _mm512_reduce_add_ps,
        _mm512_setzero_ps,
    };

    use super::Q8Row;

    const TILE_ROWS: usize = 4;
    const TILE_TOKENS: usize = 4;

    /// Whether this CPU runs the AVX-512 VNNI tiles.
    pub(crate) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    /// A matrix with an AVX-512 VNNI tile kernel.
    pub(crate) trait Tiles {
        /// Rows `first_row + i ..+ R` times `tokens[..T]`, into `outs[t][i..]`.
        /// Only called where [`available`].
        fn tile<const R: usize, const T: usize>(
            &self,
            tokens: &[Q8Row],
            first_row: usize,
            i: usize,
            outs: &mut [&mut [f32]],
        );
    }

    /// `outs[t][i]` = `tokens[t]` times row `first_row + i`, tile by tile; only
    /// called when [`available`].
    pub(crate) fn dot_tiles<M: Tiles>(
        m: &M,
        tokens: &[Q8Row],
        first_row: usize,
        outs: &mut [&mut [f32]],
    ) {
        assert!(available() && tokens.len() == outs.len());
        let rows = outs.first().map_or(0, |out| out.len());
        for (group, outs) in tokens.chunks(TILE_TOKENS).zip(outs.chunks_mut(TILE_TOKENS)) {
            let mut i = 0;
            while i < rows {
                let full = rows - i >= TILE_ROWS;
                match (full, group.len()) {
                    (true, 1) => m.tile::<TILE_ROWS, 1>(group, first_row, i, outs),
                    (true, 2) => m.tile::<TILE_ROWS, 2>(group, first_row, i, outs),
                    (true, 3) => m.tile::<TILE_ROWS, 3>(group, first_row, i, outs),
                    (true, _) => m.tile::<TILE_ROWS, TILE_TOKENS>(group, first_row, i, outs),
                    (false, 1) => m.tile::<1, 1>(group, first_row, i, outs),
                    (false, 2) => m.tile::<1, 2>(group, first_row, i, outs),
                    (false, 3) => m.tile::<1, 3>(group, first_row, i, outs),
                    (false, _) => m.tile::<1, TILE_TOKENS>(group, first_row, i, outs),
                }
                i += if full { TILE_ROWS } else { 1 };
            }
        }
    }

    /// `a . b` sixteen lanes at a time: the blocks' minimums times the
    /// activations' block sums.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let mut acc = _mm512_setzero_ps();
        for (a, b) in a.chunks(16).zip(b.chunks(16)) {
            let lanes: __mmask16 = (1u32 << a.len()).wrapping_sub(1) as __mmask16;
            // SAFETY: the mask reads only the chunk's `a.len()` values.
            #[allow(unsafe_code)]
            let (a, b) = unsafe {
                (
                    _mm512_maskz_loadu_ps(lanes, a.as_ptr()),
                    _mm512_maskz_loadu_ps(lanes, b.as_ptr()),
                )
            };
            acc = _mm512_fmadd_ps(a, b, acc);
        }
        _mm512_reduce_add_ps(acc)
    }

    /// Two blocks' scales spread over the lanes that hold their sums.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn pair_scales(pair: &[f32], block_of_lane: __m512i) -> __m512 {
        assert_eq!(pair.len(), 2);
        // SAFETY: two f32 are the 8 bytes `_mm_load_sd` reads.
        #[allow(unsafe_code)]
        let two: __m128d = unsafe { _mm_load_sd(pair.as_ptr().cast()) };
        _mm512_permutexvar_ps(block_of_lane, _mm512_castps128_ps512(_mm_castpd_ps(two)))
    }
}
