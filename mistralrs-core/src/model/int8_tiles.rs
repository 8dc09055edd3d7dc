//! What the integer matmul kernels (`q4_1.rs`, `q8_0.rs`) share: activations
//! rounded to 8 bits per block of 32 (ggml's Q8_1, whose values and scales are
//! also Q8_0's), the split of a product into work items of tokens by rows, and
//! the AVX-512 VNNI tiling of those items into four rows by four tokens.

use std::borrow::Cow;
use std::sync::Mutex;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use half::f16;

use crate::{Error, Result};

/// Values per block.
pub(super) const BLOCK: usize = 32;

/// The blocks of row `row` in a row-major matrix of `cols` columns stored in
/// blocks of [`BLOCK`].
pub(super) fn row_blocks(cols: usize, row: usize) -> std::ops::Range<usize> {
    let blocks = cols / BLOCK;
    row * blocks..(row + 1) * blocks
}

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
/// `scale * sum of values` by the unrounded scale, rounded to f16 once, as
/// llama.cpp rounds it (candle multiplies the f16 scale in f16, which moves
/// every Q4_1 minimum's term and cost 5 of 256 top-1 agreements with
/// llama.cpp on SmolLM2).
pub(super) fn quantize_row(x: &[f32]) -> Q8Row {
    let blocks = x.len() / BLOCK;
    let mut row = Q8Row {
        values: Vec::with_capacity(blocks),
        scales: Vec::with_capacity(blocks),
        sums: Vec::with_capacity(blocks),
    };
    let quantize: QuantizeBlock = {
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            avx512::quantize_block
        } else if avx2::available() {
            avx2::quantize_block
        } else {
            quantize_block
        }
        #[cfg(not(target_arch = "x86_64"))]
        quantize_block
    };
    for block in x.chunks_exact(BLOCK) {
        let mut values = [0i8; BLOCK];
        let (scale, sum) = quantize(block, &mut values);
        row.values.push(values);
        row.scales.push(f16::from_f32(scale).to_f32());
        row.sums.push(f16::from_f32(scale * sum as f32).to_f32());
    }
    row
}

/// A kernel of [`quantize_block`]'s arithmetic.
type QuantizeBlock = fn(&[f32], &mut [i8; BLOCK]) -> (f32, i32);

/// One block rounded to 8 bits: its values into `values`, and its unrounded
/// scale and the sum of its values.
fn quantize_block(block: &[f32], values: &mut [i8; BLOCK]) -> (f32, i32) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in values.iter_mut().zip(block) {
        *q = (v * inverse).round() as i8;
        sum += i32::from(*q);
    }
    (scale, sum)
}

/// The kernels' batch invariance: `forward` of a batch of tokens (enough to
/// leave partial work items) gives each token exactly what it gives alone.
#[cfg(test)]
pub(super) fn assert_tokens_alone_equal_batched(
    cols: usize,
    seed: u32,
    what: &str,
    forward: impl Fn(&Tensor) -> Result<Tensor>,
) {
    let tokens = TOKENS_PER_ITEM + 6;
    let x = Tensor::from_vec(random(tokens * cols, seed), (tokens, cols), &Device::Cpu).unwrap();
    let together: Vec<Vec<f32>> = forward(&x).unwrap().to_vec2().unwrap();
    for (t, together) in together.iter().enumerate() {
        let alone: Vec<Vec<f32>> = forward(&x.narrow(0, t, 1).unwrap())
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(&alone[0], together, "{what}, token {t}");
    }
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

/// The stored blocks of a `[rows, cols]` matrix of `dtype` (blocks of
/// `block_values` values in `block_bytes` bytes) whose rows are a whole number
/// of blocks and of [`BLOCK`] pairs (what the tiles read), with its shape; a
/// matrix of another type or shape is an error naming the kernel.
pub(super) fn stored_blocks(
    tensor: &QTensor,
    dtype: GgmlDType,
    block_values: usize,
    block_bytes: usize,
) -> Result<(usize, usize, Cow<'_, [u8]>)> {
    let (rows, cols) = tensor.shape().dims2()?;
    let row_multiple = block_values.max(2 * BLOCK);
    if tensor.dtype() != dtype || cols % row_multiple != 0 {
        return Err(Error::Unsupported(format!(
            "the {dtype:?} kernel needs a {dtype:?} matrix with rows of a multiple of \
             {row_multiple}, not {:?} {:?}",
            tensor.dtype(),
            tensor.shape()
        )));
    }
    let data = tensor.data()?;
    let blocks = rows * cols / block_values;
    if data.len() != blocks * block_bytes {
        return Err(Error::Unsupported(format!(
            "a {dtype:?} tensor of {blocks} blocks holds {} bytes",
            data.len()
        )));
    }
    Ok((rows, cols, data))
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
    // Read where the activations lie: a copy of them was 3 % of a prompt's
    // time, on one core.
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
        return Err(Error::Unsupported(
            "quantized products run on the CPU".to_string(),
        ));
    };
    let x = &values[layout.start_offset()..layout.start_offset() + tokens * cols];
    let rows_q8 = quantize_rows(x, cols);
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

/// Each token's row of `x` rounded with [`quantize_row`]; a prompt's tokens
/// on every core (on one, a 500-token prompt's rounding was 3 % of its time
/// with the other cores waiting). Each row is rounded alone, so the result
/// does not depend on how the rows are shared out.
fn quantize_rows(x: &[f32], cols: usize) -> Vec<Q8Row> {
    let tokens = x.len() / cols;
    if tokens < TOKENS_PER_ITEM {
        return x.chunks_exact(cols).map(quantize_row).collect();
    }
    let rows: Vec<Mutex<Option<Q8Row>>> = (0..tokens).map(|_| Mutex::default()).collect();
    candle_core::utils::barrier_pool().execute_chunked(tokens, |range| {
        for t in range {
            let row = quantize_row(&x[t * cols..(t + 1) * cols]);
            *rows[t].lock().unwrap_or_else(|e| e.into_inner()) = Some(row);
        }
    });
    rows.into_iter()
        .map(|row| {
            row.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("the pool ran every token")
        })
        .collect()
}

/// What the AVX2 kernels (x86-64 CPUs without AVX-512 VNNI) share: the
/// check for the CPU, and activations rounded to 8 bits eight at a time.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::{
        __m256, __m256i, _CMP_GE_OQ, _MM_FROUND_NO_EXC, _MM_FROUND_TO_ZERO, _mm_add_epi32,
        _mm_cvtsi128_si32, _mm_cvtss_f32, _mm_max_ps, _mm_movehdup_ps, _mm_movehl_ps,
        _mm_shuffle_epi32, _mm256_add_epi32, _mm256_add_ps, _mm256_and_ps, _mm256_andnot_ps,
        _mm256_castps256_ps128, _mm256_castsi256_si128, _mm256_cmp_ps, _mm256_cvttps_epi32,
        _mm256_extractf128_ps, _mm256_extracti128_si256, _mm256_loadu_ps, _mm256_max_ps,
        _mm256_mul_ps, _mm256_or_ps, _mm256_packs_epi16, _mm256_packs_epi32,
        _mm256_permutevar8x32_epi32, _mm256_round_ps, _mm256_set1_ps, _mm256_setr_epi32,
        _mm256_storeu_si256, _mm256_sub_ps,
    };

    use super::BLOCK;

    /// Whether this CPU runs the AVX2 kernels.
    pub(crate) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// [`super::quantize_block`] eight values at a time, bit for bit: the
    /// same products, and `round` (half away from zero) as truncation plus
    /// one step away from zero where the dropped part is at least a half.
    pub(crate) fn quantize_block(block: &[f32], values: &mut [i8; BLOCK]) -> (f32, i32) {
        assert!(available() && block.len() == BLOCK);
        // SAFETY: the CPU has AVX2 (asserted above).
        #[allow(unsafe_code)]
        unsafe {
            quantize_block_avx2(block, values)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn quantize_block_avx2(block: &[f32], values: &mut [i8; BLOCK]) -> (f32, i32) {
        let sign_bit = _mm256_set1_ps(-0.0);
        let mut x = [_mm256_set1_ps(0.0); 4];
        let mut amax = _mm256_set1_ps(0.0);
        for (j, x) in x.iter_mut().enumerate() {
            // SAFETY: `block` holds 32 values, four loads of 8.
            #[allow(unsafe_code)]
            let loaded = unsafe { _mm256_loadu_ps(block.as_ptr().add(8 * j)) };
            *x = loaded;
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, loaded));
        }
        let halves = _mm_max_ps(
            _mm256_extractf128_ps::<1>(amax),
            _mm256_castps256_ps128(amax),
        );
        let quarters = _mm_max_ps(halves, _mm_movehl_ps(halves, halves));
        let amax = _mm_cvtss_f32(_mm_max_ps(quarters, _mm_movehdup_ps(quarters)));
        let scale = amax / 127.0;
        let inverse = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
        let q: [__m256i; 4] = [
            round(x[0], inverse),
            round(x[1], inverse),
            round(x[2], inverse),
            round(x[3], inverse),
        ];
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum));
        // Packing works within 128-bit lanes: the permutation puts the
        // values back in order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `values` is 32 writable bytes.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_storeu_si256(values.as_mut_ptr().cast(), packed)
        };
        (scale, _mm_cvtsi128_si32(sum))
    }

    /// `round(x * inverse)` per lane, as integers.
    #[target_feature(enable = "avx2,fma")]
    fn round(x: __m256, inverse: __m256) -> __m256i {
        let t = _mm256_mul_ps(x, inverse);
        let whole = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
        let sign_bit = _mm256_set1_ps(-0.0);
        let dropped = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(t, whole));
        let away = _mm256_cmp_ps::<_CMP_GE_OQ>(dropped, _mm256_set1_ps(0.5));
        let step = _mm256_or_ps(_mm256_and_ps(t, sign_bit), _mm256_set1_ps(1.0));
        _mm256_cvttps_epi32(_mm256_add_ps(whole, _mm256_and_ps(away, step)))
    }
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

    use std::arch::x86_64::{
        _CMP_GE_OQ, _MM_FROUND_NO_EXC, _MM_FROUND_TO_ZERO, _mm_storeu_si128, _mm512_abs_ps,
        _mm512_add_epi32, _mm512_and_si512, _mm512_castps_si512, _mm512_castsi512_ps,
        _mm512_cmp_ps_mask, _mm512_cvtepi32_epi8, _mm512_cvttps_epi32, _mm512_loadu_ps,
        _mm512_mask_add_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_or_si512, _mm512_reduce_add_epi32,
        _mm512_reduce_max_ps, _mm512_roundscale_ps, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_sub_ps,
    };

    use super::{BLOCK, Q8Row};

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

    /// [`super::quantize_block`] sixteen values at a time, bit for bit: the
    /// same products, and `round` (half away from zero) as truncation plus
    /// one step away from zero where the dropped part is at least a half.
    pub(crate) fn quantize_block(block: &[f32], values: &mut [i8; BLOCK]) -> (f32, i32) {
        assert!(available() && block.len() == BLOCK);
        // SAFETY: the CPU has AVX-512 F (asserted above).
        #[allow(unsafe_code)]
        unsafe {
            quantize_block_avx512(block, values)
        }
    }

    #[target_feature(enable = "avx512f")]
    fn quantize_block_avx512(block: &[f32], values: &mut [i8; BLOCK]) -> (f32, i32) {
        // SAFETY: `block` holds 32 values, two loads of 16.
        #[allow(unsafe_code)]
        let (low, high) = unsafe {
            (
                _mm512_loadu_ps(block.as_ptr()),
                _mm512_loadu_ps(block.as_ptr().add(16)),
            )
        };
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(low), _mm512_abs_ps(high)));
        let scale = amax / 127.0;
        let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let (low, high) = (round(low, inverse), round(high, inverse));
        // SAFETY: `values` is 32 writable bytes, two stores of 16.
        #[allow(unsafe_code)]
        unsafe {
            _mm_storeu_si128(values.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(low));
            _mm_storeu_si128(
                values.as_mut_ptr().add(16).cast(),
                _mm512_cvtepi32_epi8(high),
            );
        }
        (scale, _mm512_reduce_add_epi32(_mm512_add_epi32(low, high)))
    }

    /// `round(x * inverse)` per lane, as integers.
    #[target_feature(enable = "avx512f")]
    fn round(x: __m512, inverse: f32) -> __m512i {
        let t = _mm512_mul_ps(x, _mm512_set1_ps(inverse));
        let whole = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
        let dropped = _mm512_abs_ps(_mm512_sub_ps(t, whole));
        let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(dropped, _mm512_set1_ps(0.5));
        let sign = _mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32(i32::MIN));
        let step = _mm512_castsi512_ps(_mm512_or_si512(
            sign,
            _mm512_castps_si512(_mm512_set1_ps(1.0)),
        ));
        _mm512_cvttps_epi32(_mm512_mask_add_ps(whole, away, whole, step))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Block sums are `scale * sum` rounded to f16 once, by the unrounded
    /// scale (ggml's reference and x86 code alike), not candle's product of
    /// the f16 scale and the f16 sum, which rounds differently for some blocks.
    #[test]
    fn block_sums_round_once_as_llama_cpp_does() {
        let x = random(64 * BLOCK, 5);
        let row = quantize_row(&x);
        let mut differ_from_candle = 0;
        for (i, block) in x.chunks_exact(BLOCK).enumerate() {
            let mut values = [0i8; BLOCK];
            let (scale, sum) = quantize_block(block, &mut values);
            assert_eq!(row.sums[i], f16::from_f32(scale * sum as f32).to_f32());
            let candle = (f16::from_f32(sum as f32) * f16::from_f32(scale)).to_f32();
            differ_from_candle += usize::from(candle != row.sums[i]);
        }
        assert!(
            differ_from_candle > 0,
            "no block tells the two roundings apart"
        );
    }

    /// The vectorized rounding gives the portable one's bits, ties included.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vectorized_rounding_matches_the_portable_one() {
        // Random blocks, a zero block, and one whose scale is 1 so that the
        // halves are exact ties in both directions.
        let mut blocks: Vec<Vec<f32>> = (0..64).map(|i| random(BLOCK, 100 + i)).collect();
        blocks.push(vec![0.0; BLOCK]);
        blocks.push(
            (0..BLOCK)
                .map(|i| if i == 0 { 127.0 } else { i as f32 * 0.5 - 8.0 })
                .collect(),
        );
        let mut kernels: Vec<(&str, QuantizeBlock)> = Vec::new();
        if avx512::available() {
            kernels.push(("AVX-512", avx512::quantize_block));
        }
        if avx2::available() {
            kernels.push(("AVX2", avx2::quantize_block));
        }
        assert!(!kernels.is_empty(), "an x86-64 CPU without AVX2");
        for (name, kernel) in kernels {
            for block in &blocks {
                let (mut want, mut got) = ([0i8; BLOCK], [0i8; BLOCK]);
                let expected = quantize_block(block, &mut want);
                let actual = kernel(block, &mut got);
                assert_eq!((got, actual.1), (want, expected.1), "{name}: {block:?}");
                assert_eq!(actual.0.to_bits(), expected.0.to_bits(), "{name}");
            }
        }
    }
}
