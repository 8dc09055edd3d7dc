//! Q4_1 weights times f32 activations, vectorized. candle 0.11 has SIMD dot
//! products for Q4_0, Q8_0 and the k-quants on x86, but runs Q4_1 through its
//! scalar reference loop, which took 65 % of a decode step of SmolLM2 Q4_1.
//!
//! The arithmetic is ggml's `ggml_vec_dot_q4_1_q8_1`: activations rounded to 8
//! bits per block of 32 with f16 scales, integer dot products per block, scaled
//! and summed in f32. The portable loop sums blocks in order, as candle's
//! reference loop (whose activation block sums round once more, see
//! `int8_tiles::quantize_row`). Where the CPU has AVX2, eight rows interleaved
//! in memory are computed at once, one per lane (see [`Layout`]), which is
//! what makes prefill and batched decode cheaper per token than one row at a
//! time; matrices whose rows don't come in eights run in AVX-512 VNNI tiles
//! of rows by tokens where the CPU has them. The vectorized kernels' rounding
//! differs from the portable loop's in the last bits, as ggml's does.

use candle_core::Tensor;
use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use super::int8_tiles::{self, BLOCK, Q8Row, tiled_forward};
use crate::{Error, Result};

/// Bytes of a stored block: f16 scale, f16 minimum, 16 bytes of nibbles.
const BLOCK_BYTES: usize = 20;

/// Rows the AVX2 kernel computes together, one per lane.
const GROUP_ROWS: usize = 8;

/// How a matrix's blocks are ordered in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Row by row, each row's blocks in order: what the AVX-512 tiles and
    /// the portable loop read.
    Rows,
    /// For the AVX2 kernel: groups of [`GROUP_ROWS`] rows, and within a group
    /// block by block: the eight rows' scales, their minimums, and their
    /// nibbles in four runs of 32 bytes, run `p` holding bytes `4p..4p + 4`
    /// of each row in turn, so that one 32-bit lane holds one row's values.
    EightRows,
}

impl Layout {
    /// The layout the fastest kernel this CPU runs reads, for `rows` rows:
    /// the AVX2 kernel's wherever it runs, also on a CPU with AVX-512 VNNI
    /// (on an AMD EPYC Zen 4 it decoded 1.1-1.5x and prefilled 1.4-2x as
    /// fast as the AVX-512 tiles, docs/perf.md; no Intel AVX-512 CPU was at
    /// hand to measure).
    fn for_this_cpu(rows: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if int8_tiles::avx2::available() && rows.is_multiple_of(GROUP_ROWS) {
            return Self::EightRows;
        }
        let _ = rows;
        Self::Rows
    }
}

/// A `[rows, cols]` Q4_1 matrix, split into arrays the kernels read
/// linearly (in the order [`Layout`] says): `value = scale * nibble + min`,
/// nibble `j` of a block in the low half of byte `j % 16` for `j < 16`, in
/// the high half otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Q4_1Matrix {
    rows: usize,
    cols: usize,
    layout: Layout,
    scales: Vec<f32>,
    mins: Vec<f32>,
    nibbles: Vec<[u8; BLOCK / 2]>,
}

impl Q4_1Matrix {
    /// The matrix of a Q4_1 tensor `[rows, cols]`, laid out for this CPU.
    pub(crate) fn new(tensor: &QTensor) -> Result<Self> {
        let (rows, _) = tensor.shape().dims2()?;
        Self::with_layout(tensor, Layout::for_this_cpu(rows))
    }

    /// The matrix of a Q4_1 tensor `[rows, cols]` in `layout`.
    pub(crate) fn with_layout(tensor: &QTensor, layout: Layout) -> Result<Self> {
        let (rows, cols, data) =
            int8_tiles::stored_blocks(tensor, GgmlDType::Q4_1, BLOCK, BLOCK_BYTES)?;
        let blocks = data.chunks_exact(BLOCK_BYTES).map(|block| {
            let f16_at = |i: usize| f16::from_le_bytes([block[i], block[i + 1]]).to_f32();
            let mut nibbles = [0u8; BLOCK / 2];
            nibbles.copy_from_slice(&block[4..]);
            (f16_at(0), f16_at(2), nibbles)
        });
        Ok(Self::from_blocks(rows, cols, layout, blocks))
    }

    /// The matrix of a Q4_K tensor `[rows, cols]`, laid out for this CPU. Each
    /// 32 values of a Q4_K super-block share a scale `d * sc` and a minimum
    /// `-dmin * m` (6-bit `sc` and `m`), both exact in f32, so the matrix holds
    /// the very values the file does, in 0.75 bytes a value against the
    /// file's 0.56. (candle's x86 Q4_K kernel keeps a repacked copy of the
    /// same size beside the stored one.)
    pub(crate) fn from_q4k(tensor: &QTensor) -> Result<Self> {
        const SUPER: usize = 256;
        const SUPER_BYTES: usize = 144;
        let (rows, cols, data) =
            int8_tiles::stored_blocks(tensor, GgmlDType::Q4K, SUPER, SUPER_BYTES)?;
        let blocks = data.chunks_exact(SUPER_BYTES).flat_map(|sb| {
            let f16_at = |i: usize| f16::from_le_bytes([sb[i], sb[i + 1]]).to_f32();
            let (d, dmin) = (f16_at(0), f16_at(2));
            let (scales, quants) = (&sb[4..16], &sb[16..]);
            (0..SUPER / BLOCK).map(move |sub| {
                // ggml's get_scale_min_k4.
                let (sc, m) = if sub < 4 {
                    (scales[sub] & 63, scales[sub + 4] & 63)
                } else {
                    (
                        (scales[sub + 4] & 0xF) | ((scales[sub - 4] >> 6) << 4),
                        (scales[sub + 4] >> 4) | ((scales[sub] >> 6) << 4),
                    )
                };
                // Sub-blocks 2i and 2i + 1 are the low and high nibbles of the
                // same 32 bytes.
                let bytes = &quants[32 * (sub / 2)..32 * (sub / 2) + 32];
                let value = |j: usize| {
                    if sub % 2 == 0 {
                        bytes[j] & 0xF
                    } else {
                        bytes[j] >> 4
                    }
                };
                let nibbles: [u8; BLOCK / 2] =
                    std::array::from_fn(|j| value(j) | (value(j + 16) << 4));
                (d * f32::from(sc), -(dmin * f32::from(m)), nibbles)
            })
        });
        let layout = Layout::for_this_cpu(rows);
        Ok(Self::from_blocks(rows, cols, layout, blocks))
    }

    /// The matrix of `[rows, cols]` blocks given row by row, each as its
    /// scale, minimum and nibbles in Q4_1's order.
    fn from_blocks(
        rows: usize,
        cols: usize,
        layout: Layout,
        blocks: impl Iterator<Item = (f32, f32, [u8; BLOCK / 2])>,
    ) -> Self {
        let count = rows * cols / BLOCK;
        let mut matrix = Self {
            rows,
            cols,
            layout,
            scales: vec![0.0; count],
            mins: vec![0.0; count],
            nibbles: vec![[0; BLOCK / 2]; count],
        };
        let row_blocks = cols / BLOCK;
        for (n, (scale, min, nibbles)) in blocks.enumerate() {
            let (row, k) = (n / row_blocks, n % row_blocks);
            let at = matrix.index(row, k);
            matrix.scales[at] = scale;
            matrix.mins[at] = min;
            match layout {
                Layout::Rows => matrix.nibbles[n] = nibbles,
                Layout::EightRows => {
                    for (p, (entry, offset)) in matrix.nibble_runs(row, k).into_iter().enumerate() {
                        matrix.nibbles[entry][offset..offset + 4]
                            .copy_from_slice(&nibbles[4 * p..4 * p + 4]);
                    }
                }
            }
        }
        matrix
    }

    /// Where block `k` of row `row` keeps its scale and minimum.
    fn index(&self, row: usize, k: usize) -> usize {
        match self.layout {
            Layout::Rows => row * (self.cols / BLOCK) + k,
            Layout::EightRows => {
                let (group, lane) = (row / GROUP_ROWS, row % GROUP_ROWS);
                (group * (self.cols / BLOCK) + k) * GROUP_ROWS + lane
            }
        }
    }

    /// In [`Layout::EightRows`], where bytes `4p..4p + 4` of block `k` of
    /// row `row` lie, for `p` in 0..4: an entry of `nibbles` and an offset
    /// in it (a run of 32 bytes is two entries).
    fn nibble_runs(&self, row: usize, k: usize) -> [(usize, usize); 4] {
        let first = self.index(row - row % GROUP_ROWS, k);
        let lane = row % GROUP_ROWS;
        std::array::from_fn(|p| {
            let byte = 32 * p + 4 * lane;
            (first + byte / 16, byte % 16)
        })
    }

    /// The 16 bytes of nibbles of block `k` of row `row`.
    fn block_nibbles(&self, row: usize, k: usize) -> [u8; BLOCK / 2] {
        match self.layout {
            Layout::Rows => self.nibbles[self.index(row, k)],
            Layout::EightRows => {
                let mut nibbles = [0u8; BLOCK / 2];
                for (p, (entry, offset)) in self.nibble_runs(row, k).into_iter().enumerate() {
                    nibbles[4 * p..4 * p + 4]
                        .copy_from_slice(&self.nibbles[entry][offset..offset + 4]);
                }
                nibbles
            }
        }
    }

    /// Memory the matrix takes.
    pub(crate) fn bytes(&self) -> usize {
        self.scales.len() * 4 + self.mins.len() * 4 + self.nibbles.len() * (BLOCK / 2)
    }

    /// `x W^T`: `x` is `[tokens, cols]` f32, the result `[tokens, rows]` f32.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, cols) = x.dims2()?;
        if cols != self.cols {
            return Err(Error::Unsupported(format!(
                "Q4_1 matmul of {cols} columns by a matrix of {}",
                self.cols
            )));
        }
        tiled_forward(x, self.rows, |tokens, first_row, outs| {
            self.dot_tile(tokens, first_row, outs)
        })
    }

    /// `outs[t][i]` = token `t` times row `first_row + i`, with the kernel
    /// for the matrix's layout and this CPU. Each product is computed the
    /// same way whatever tokens and rows share the call, so a sequence's
    /// logits do not depend on what is batched with it.
    fn dot_tile(&self, tokens: &[Q8Row], first_row: usize, outs: &mut [&mut [f32]]) {
        #[cfg(target_arch = "x86_64")]
        match self.layout {
            Layout::EightRows => {
                avx2::dot_groups(self, tokens, first_row, outs);
                return;
            }
            Layout::Rows if int8_tiles::avx512::available() => {
                int8_tiles::avx512::dot_tiles(self, tokens, first_row, outs);
                return;
            }
            Layout::Rows => {}
        }
        for (x, out) in tokens.iter().zip(outs.iter_mut()) {
            self.dot_rows_portable(x, first_row, out);
        }
    }

    /// The blocks of row `row` in [`Layout::Rows`].
    fn row_blocks(&self, row: usize) -> std::ops::Range<usize> {
        int8_tiles::row_blocks(self.cols, row)
    }

    /// Dot products of `x` with rows `first_row..first_row + out.len()`, one
    /// row at a time, blocks summed in order (candle's loop), in any layout.
    fn dot_rows_portable(&self, x: &Q8Row, first_row: usize, out: &mut [f32]) {
        for (i, out) in out.iter_mut().enumerate() {
            let row = first_row + i;
            let mut sum = 0f32;
            for (k, ((values, x_scale), x_sum)) in
                x.values.iter().zip(&x.scales).zip(&x.sums).enumerate()
            {
                let at = self.index(row, k);
                let dot = block_dot(&self.block_nibbles(row, k), values);
                sum += dot as f32 * self.scales[at] * x_scale + self.mins[at] * x_sum;
            }
            *out = sum;
        }
    }
}

/// The AVX-512 VNNI tile for Q4_1: a row's nibbles are unpacked once for the
/// tile's tokens, and one `vpdpbusd` multiplies two blocks (unsigned nibbles
/// by signed values, summed in fours).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        _mm256_loadu_si256, _mm256_srli_epi16, _mm512_and_si512, _mm512_castsi256_si512,
        _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps, _mm512_inserti64x4,
        _mm512_loadu_si512, _mm512_mul_ps, _mm512_reduce_add_ps, _mm512_set_epi32,
        _mm512_set1_epi8, _mm512_setzero_ps, _mm512_setzero_si512, _mm512_shuffle_i64x2,
    };

    use super::{Q4_1Matrix, Q8Row};
    use crate::model::int8_tiles::avx512::{Tiles, dot_f32, pair_scales};

    impl Tiles for Q4_1Matrix {
        fn tile<const R: usize, const T: usize>(
            &self,
            tokens: &[Q8Row],
            first_row: usize,
            i: usize,
            outs: &mut [&mut [f32]],
        ) {
            // SAFETY: `Tiles` are only run where the CPU has AVX-512 F, BW and VNNI.
            #[allow(unsafe_code)]
            unsafe {
                tile::<R, T>(self, tokens, first_row, i, outs)
            }
        }
    }

    /// Rows `first_row + i ..+ R` times `tokens[..T]`, into `outs[t][i..]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn tile<const R: usize, const T: usize>(
        m: &Q4_1Matrix,
        tokens: &[Q8Row],
        first_row: usize,
        i: usize,
        outs: &mut [&mut [f32]],
    ) {
        let low_mask = _mm512_set1_epi8(0x0F);
        // The products' lanes 0-3 and 8-11 sum the first block of a pair,
        // 4-7 and 12-15 the second (arguments from lane 15 down to lane 0).
        let block_of_lane = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
        let rows: [std::ops::Range<usize>; R] =
            std::array::from_fn(|r| m.row_blocks(first_row + i + r));
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        for k in (0..m.cols / super::BLOCK).step_by(2) {
            let mut nibbles = [_mm512_setzero_si512(); R];
            let mut scales = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let b = rows[r].start + k;
                // SAFETY: two blocks of 16 bytes are 32 readable bytes.
                #[allow(unsafe_code)]
                let packed = unsafe { _mm256_loadu_si256(m.nibbles[b..b + 2].as_ptr().cast()) };
                // Lanes: block k's values 0-15, block k+1's 0-15, then 16-31 of each.
                let both = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(packed),
                    _mm256_srli_epi16::<4>(packed),
                );
                nibbles[r] = _mm512_and_si512(both, low_mask);
                scales[r] = pair_scales(&m.scales[b..b + 2], block_of_lane);
            }
            for t in 0..T {
                let x = &tokens[t];
                // SAFETY: two blocks of 32 values are 64 readable bytes.
                #[allow(unsafe_code)]
                let raw = unsafe { _mm512_loadu_si512(x.values[k..k + 2].as_ptr().cast()) };
                // [k: 0-15, 16-31, k+1: 0-15, 16-31] into the nibbles' order.
                let values = _mm512_shuffle_i64x2::<0xD8>(raw, raw);
                let x_scales = pair_scales(&x.scales[k..k + 2], block_of_lane);
                for r in 0..R {
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles[r], values);
                    acc[r][t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(dot),
                        _mm512_mul_ps(scales[r], x_scales),
                        acc[r][t],
                    );
                }
            }
        }
        for (r, row) in rows.into_iter().enumerate() {
            for (t, x) in tokens.iter().take(T).enumerate() {
                let mins = dot_f32(&m.mins[row.clone()], &x.sums);
                outs[t][i + r] = _mm512_reduce_add_ps(acc[r][t]) + mins;
            }
        }
    }
}

/// The AVX2 kernel for Q4_1, over [`Layout::EightRows`]: eight rows at once,
/// one per 32-bit lane, so no lane ever needs summing across. Per block and
/// token, eight `vpmaddubsw` (four nibbles of each row by four values of the
/// token, broadcast) add up in 16 bits (at most 8 * 2 * 15 * 127 = 30,480: no
/// overflow), one `vpmaddwd` widens them, and the block's scales and
/// minimums enter in f32: per row, `sum = fma(scale * x_scale, dot, sum)`,
/// then `sum = fma(min, x_sum, sum)`, block after block. Per product the
/// same operations whatever shares the call. ggml's AVX2 loop instead keeps
/// eight partial sums of one row, each block waiting on the one before.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi16, _mm256_and_si256, _mm256_cvtepi32_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_mul_ps, _mm256_set1_epi8, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_setzero_si256, _mm256_srli_epi16, _mm256_storeu_ps,
    };

    use super::{BLOCK, GROUP_ROWS, Q4_1Matrix, Q8Row};
    use crate::model::int8_tiles::avx2::available;

    /// Tokens per call of the kernel: with their 16-bit sums, 8 of AVX2's 16
    /// registers.
    const TOKENS: usize = 4;

    /// `outs[t][i]` = `tokens[t]` times row `first_row + i`, eight rows and up
    /// to four tokens at a time. Only for [`super::Layout::EightRows`].
    pub(super) fn dot_groups(
        m: &Q4_1Matrix,
        tokens: &[Q8Row],
        first_row: usize,
        outs: &mut [&mut [f32]],
    ) {
        let rows = outs.first().map_or(0, |out| out.len());
        assert!(
            available()
                && tokens.len() == outs.len()
                && first_row.is_multiple_of(GROUP_ROWS)
                && rows.is_multiple_of(GROUP_ROWS)
                && tokens.iter().all(|x| x.values.len() == m.cols / BLOCK)
        );
        for (group, outs) in tokens.chunks(TOKENS).zip(outs.chunks_mut(TOKENS)) {
            for i in (0..rows).step_by(GROUP_ROWS) {
                // SAFETY: the CPU has AVX2 and FMA, and the shapes hold
                // (asserted above).
                #[allow(unsafe_code)]
                unsafe {
                    match group.len() {
                        1 => eight_rows::<1>(m, group, first_row, i, outs),
                        2 => eight_rows::<2>(m, group, first_row, i, outs),
                        3 => eight_rows::<3>(m, group, first_row, i, outs),
                        _ => eight_rows::<TOKENS>(m, group, first_row, i, outs),
                    }
                }
            }
        }
    }

    /// Rows `first_row + i ..+ 8` times `tokens[..T]`, into `outs[t][i..]`.
    #[target_feature(enable = "avx2,fma")]
    fn eight_rows<const T: usize>(
        m: &Q4_1Matrix,
        tokens: &[Q8Row],
        first_row: usize,
        i: usize,
        outs: &mut [&mut [f32]],
    ) {
        let low_mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let blocks = m.cols / BLOCK;
        let first = m.index(first_row + i, 0);
        let scales = &m.scales[first..first + blocks * GROUP_ROWS];
        let mins = &m.mins[first..first + blocks * GROUP_ROWS];
        let nibbles = &m.nibbles[first..first + blocks * GROUP_ROWS];
        let tokens = &tokens[..T];
        let mut sums = [_mm256_setzero_ps(); T];
        for k in 0..blocks {
            let mut dots = [_mm256_setzero_si256(); T];
            for p in 0..4 {
                // SAFETY: run `p` of the block is two entries, 32 readable bytes.
                #[allow(unsafe_code)]
                let run = unsafe {
                    _mm256_loadu_si256(nibbles[k * GROUP_ROWS + 2 * p..][..2].as_ptr().cast())
                };
                // Per lane (row): values 4p..4p+4, then 16+4p..16+4p+4.
                let low = _mm256_and_si256(run, low_mask);
                let high = _mm256_and_si256(_mm256_srli_epi16::<4>(run), low_mask);
                for (dot, x) in dots.iter_mut().zip(tokens) {
                    let values = &x.values[k];
                    let products = _mm256_add_epi16(
                        _mm256_maddubs_epi16(low, broadcast_four(values, 4 * p)),
                        _mm256_maddubs_epi16(high, broadcast_four(values, 16 + 4 * p)),
                    );
                    *dot = _mm256_add_epi16(*dot, products);
                }
            }
            // SAFETY: the block's eight scales and eight minimums are 32
            // readable bytes each.
            #[allow(unsafe_code)]
            let (w_scales, w_mins) = unsafe {
                (
                    _mm256_loadu_ps(scales[k * GROUP_ROWS..][..GROUP_ROWS].as_ptr()),
                    _mm256_loadu_ps(mins[k * GROUP_ROWS..][..GROUP_ROWS].as_ptr()),
                )
            };
            for ((sum, dot), x) in sums.iter_mut().zip(dots).zip(tokens) {
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, ones));
                let scale = _mm256_mul_ps(w_scales, _mm256_set1_ps(x.scales[k]));
                *sum = _mm256_fmadd_ps(scale, dot, *sum);
                *sum = _mm256_fmadd_ps(w_mins, _mm256_set1_ps(x.sums[k]), *sum);
            }
        }
        for (sum, out) in sums.iter().zip(outs.iter_mut()) {
            // SAFETY: `out[i..i + 8]` is 8 writable f32 (rows are whole groups).
            #[allow(unsafe_code)]
            unsafe {
                _mm256_storeu_ps(out[i..i + GROUP_ROWS].as_mut_ptr(), *sum)
            };
        }
    }

    /// Values `at..at + 4` of a block in every 32-bit lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn broadcast_four(values: &[i8; BLOCK], at: usize) -> __m256i {
        let four = [values[at], values[at + 1], values[at + 2], values[at + 3]];
        _mm256_set1_epi32(i32::from_le_bytes(four.map(|v| v as u8)))
    }
}

/// The integer dot product of a block of nibbles with a block of 8-bit values.
#[inline(always)]
fn block_dot(nibbles: &[u8; BLOCK / 2], values: &[i8; BLOCK]) -> i32 {
    let (low, high) = values.split_at(BLOCK / 2);
    let mut sum = 0i32;
    for j in 0..BLOCK / 2 {
        sum += i32::from(nibbles[j] & 0x0F) * i32::from(low[j])
            + i32::from(nibbles[j] >> 4) * i32::from(high[j]);
    }
    sum
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::int8_tiles::{assert_tokens_alone_equal_batched, quantize_row, random};
    use candle_core::Module;
    use candle_core::quantized::QMatMul;

    #[test]
    fn matches_candles_q4_1_matmul() {
        let (rows, cols) = (200, 192);
        let w = Tensor::from_vec(random(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let q_again = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let ours = Q4_1Matrix::new(&q).unwrap();
        let candle = QMatMul::from_qtensor(q).unwrap();
        for tokens in [1, 3, 17] {
            let x: Vec<f32> = random(tokens * cols, 7 + tokens as u32);
            let x_tensor = Tensor::from_vec(x.clone(), (tokens, cols), &Device::Cpu).unwrap();
            let candle: Vec<Vec<f32>> = candle.forward(&x_tensor).unwrap().to_vec2().unwrap();
            // The portable loop: candle's arithmetic but for the activations'
            // block sums, which candle rounds once more: at most an f16 ulp of
            // a sum (< 16 here: 2^-7) times a minimum (> -2) per block, 6
            // blocks, so within 0.1.
            let by_rows = Q4_1Matrix::with_layout(&q_again, Layout::Rows).unwrap();
            let portable: Vec<Vec<f32>> = (0..tokens)
                .map(|t| {
                    let mut got = vec![0f32; rows];
                    let row = quantize_row(&x[t * cols..(t + 1) * cols]);
                    by_rows.dot_rows_portable(&row, 0, &mut got);
                    got
                })
                .collect();
            let tiles: Vec<Vec<f32>> = ours.forward(&x_tensor).unwrap().to_vec2().unwrap();
            // The portable loop reads every layout alike.
            for layout in [Layout::Rows, Layout::EightRows] {
                let other = Q4_1Matrix::with_layout(&q_again, layout).unwrap();
                for (t, want) in portable.iter().enumerate() {
                    let mut got = vec![0f32; rows];
                    other.dot_rows_portable(
                        &quantize_row(&x[t * cols..(t + 1) * cols]),
                        0,
                        &mut got,
                    );
                    assert_eq!(&got, want, "{layout:?}, token {t}");
                }
            }
            for (got, want) in portable.iter().flatten().zip(candle.iter().flatten()) {
                assert!(
                    (got - want).abs() <= 0.1,
                    "{tokens} tokens: {got} vs candle's {want}"
                );
            }
            let close = |got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32, what: &str| {
                for (got, want) in got.iter().flatten().zip(want.iter().flatten()) {
                    assert!(
                        (got - want).abs() <= tolerance * want.abs().max(1.0),
                        "{what}, {tokens} tokens: {got} vs {want}"
                    );
                }
            };
            // The dispatched kernel (AVX-512 VNNI tiles or AVX2 groups of
            // rows, as the CPU has): the portable loop's arithmetic up to
            // summation order.
            close(&tiles, &portable, 1e-5, "tiles");
        }
    }

    /// A Q4_K matrix converted holds exactly the values candle dequantizes,
    /// in both layouts, and multiplies within activation rounding of
    /// candle's Q4_K kernel (Q8_K activations, a scale per 256 values; ours
    /// per 32).
    #[test]
    fn a_q4_k_matrix_converts_exactly() {
        let (rows, cols) = (24, 512);
        let w = Tensor::from_vec(random(rows * cols, 5), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        let want: Vec<Vec<f32>> = q.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
        for layout in [Layout::Rows, Layout::EightRows] {
            let mut ours = Q4_1Matrix::from_q4k(&q).unwrap();
            if ours.layout != layout {
                let blocks: Vec<_> = (0..rows)
                    .flat_map(|row| (0..cols / BLOCK).map(move |k| (row, k)))
                    .map(|(row, k)| {
                        let at = ours.index(row, k);
                        (ours.scales[at], ours.mins[at], ours.block_nibbles(row, k))
                    })
                    .collect();
                ours = Q4_1Matrix::from_blocks(rows, cols, layout, blocks.into_iter());
            }
            for (row, want) in want.iter().enumerate() {
                let got: Vec<f32> = (0..cols)
                    .map(|c| {
                        let (k, j) = (c / BLOCK, c % BLOCK);
                        let byte = ours.block_nibbles(row, k)[j % 16];
                        let nibble = if j < 16 { byte & 0xF } else { byte >> 4 };
                        let at = ours.index(row, k);
                        ours.scales[at] * f32::from(nibble) + ours.mins[at]
                    })
                    .collect();
                assert_eq!(&got, want, "{layout:?}, row {row}");
            }
        }
        // Against the exact product with the stored values, ours (8-bit
        // activations per 32 values) errs about as much as candle's (per 256;
        // here 0.1215 against 0.1214).
        let ours = Q4_1Matrix::from_q4k(&q).unwrap();
        let stored = q.dequantize(&Device::Cpu).unwrap();
        let candle = QMatMul::from_qtensor(q).unwrap();
        let x = Tensor::from_vec(random(5 * cols, 9), (5, cols), &Device::Cpu).unwrap();
        let exact = x.matmul(&stored.t().unwrap()).unwrap();
        let rms_error = |y: Tensor| -> f32 {
            let d = (y - &exact).unwrap();
            d.sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .sqrt()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let (ours, candle) = (
            rms_error(ours.forward(&x).unwrap()),
            rms_error(candle.forward(&x).unwrap()),
        );
        assert!(
            ours <= 1.1 * candle,
            "RMS error {ours} against candle's {candle}"
        );
        let q4_0 = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        assert!(Q4_1Matrix::from_q4k(&q4_0).is_err());
    }

    #[test]
    fn a_tokens_result_does_not_depend_on_the_tokens_beside_it() {
        // Rows and tokens that leave partial tiles, groups and work items;
        // 130 rows are no whole number of AVX2 groups (the portable loop
        // runs there), 136 are.
        for rows in [130, 136] {
            let cols = 128;
            let w = Tensor::from_vec(random(rows * cols, 3), (rows, cols), &Device::Cpu).unwrap();
            let ours = Q4_1Matrix::new(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
            let what = format!("{rows} rows ({:?})", ours.layout);
            assert_tokens_alone_equal_batched(cols, 11, &what, |x| ours.forward(x));
        }
    }

    #[test]
    fn other_types_and_shapes_are_refused() {
        let w = Tensor::zeros((4, 64), DType::F32, &Device::Cpu).unwrap();
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(Q4_1Matrix::new(&q8).is_err());
        let w = Tensor::zeros((4, 96), DType::F32, &Device::Cpu).unwrap();
        let odd = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        assert!(Q4_1Matrix::new(&odd).is_err());
        let ok = Q4_1Matrix::new(
            &QTensor::quantize(
                &Tensor::zeros((4, 64), DType::F32, &Device::Cpu).unwrap(),
                GgmlDType::Q4_1,
            )
            .unwrap(),
        )
        .unwrap();
        let wrong = Tensor::zeros((1, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(ok.forward(&wrong).is_err());
    }
}
