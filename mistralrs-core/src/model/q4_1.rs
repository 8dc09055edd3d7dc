//! Q4_1 weights times f32 activations, vectorized. candle 0.11 has SIMD dot
//! products for Q4_0, Q8_0 and the k-quants on x86, but runs Q4_1 through its
//! scalar reference loop, which took 65 % of a decode step of SmolLM2 Q4_1.
//!
//! The arithmetic is ggml's `ggml_vec_dot_q4_1_q8_1`: activations rounded to 8
//! bits per block of 32 with f16 scales, integer dot products per block, scaled
//! and summed in f32. The portable loop sums blocks in order, as candle's
//! reference loop (whose activation block sums round once more, see
//! `int8_tiles::quantize_row`); the AVX2 loop is ggml's own AVX2 one (eight
//! lanes of partial sums, added up at the end), so its rounding differs from
//! the portable loop's in the last bits, as ggml's does. Where the CPU has
//! AVX-512 VNNI, tiles of rows by tokens share their loads, which is what
//! makes prefill and batched decode cheaper per token than one row at a time.

use candle_core::Tensor;
use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use super::int8_tiles::{self, BLOCK, Q8Row, tiled_forward};
use crate::{Error, Result};

/// Bytes of a stored block: f16 scale, f16 minimum, 16 bytes of nibbles.
const BLOCK_BYTES: usize = 20;

/// A `[rows, cols]` Q4_1 matrix, split into arrays the dot product reads
/// linearly: `value = scale * nibble + min`, nibble `j` of a block in the low
/// half of byte `j % 16` for `j < 16`, in the high half otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Q4_1Matrix {
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    mins: Vec<f32>,
    nibbles: Vec<[u8; BLOCK / 2]>,
}

impl Q4_1Matrix {
    /// The matrix of a Q4_1 tensor `[rows, cols]`.
    pub(crate) fn new(tensor: &QTensor) -> Result<Self> {
        let (rows, cols, data) = int8_tiles::stored_blocks(tensor, GgmlDType::Q4_1, BLOCK_BYTES)?;
        let blocks = rows * cols / BLOCK;
        let mut matrix = Self {
            rows,
            cols,
            scales: Vec::with_capacity(blocks),
            mins: Vec::with_capacity(blocks),
            nibbles: Vec::with_capacity(blocks),
        };
        for block in data.chunks_exact(BLOCK_BYTES) {
            let f16_at = |i: usize| f16::from_le_bytes([block[i], block[i + 1]]).to_f32();
            matrix.scales.push(f16_at(0));
            matrix.mins.push(f16_at(2));
            let mut nibbles = [0u8; BLOCK / 2];
            nibbles.copy_from_slice(&block[4..]);
            matrix.nibbles.push(nibbles);
        }
        Ok(matrix)
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

    /// `outs[t][i]` = token `t` times row `first_row + i`, with the fastest
    /// loop this CPU runs. Each product is computed the same way whatever
    /// tokens and rows share the call, so a sequence's logits do not depend
    /// on what is batched with it.
    fn dot_tile(&self, tokens: &[Q8Row], first_row: usize, outs: &mut [&mut [f32]]) {
        #[cfg(target_arch = "x86_64")]
        if int8_tiles::avx512::available() {
            int8_tiles::avx512::dot_tiles(self, tokens, first_row, outs);
            return;
        }
        for (x, out) in tokens.iter().zip(outs.iter_mut()) {
            self.dot_rows(x, first_row, out);
        }
    }

    /// The blocks of row `row`.
    fn row_blocks(&self, row: usize) -> std::ops::Range<usize> {
        int8_tiles::row_blocks(self.cols, row)
    }

    /// Dot products of `x` with rows `first_row..first_row + out.len()`, one
    /// row at a time.
    fn dot_rows(&self, x: &Q8Row, first_row: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            for (i, out) in out.iter_mut().enumerate() {
                let row = self.row_blocks(first_row + i);
                *out = avx2::dot(
                    &self.nibbles[row.clone()],
                    &self.scales[row.clone()],
                    &self.mins[row],
                    x,
                );
            }
            return;
        }
        self.dot_rows_portable(x, first_row, out);
    }

    fn dot_rows_portable(&self, x: &Q8Row, first_row: usize, out: &mut [f32]) {
        for (i, out) in out.iter_mut().enumerate() {
            let row = self.row_blocks(first_row + i);
            let mut sum = 0f32;
            for ((((nibbles, scale), min), (values, x_scale)), x_sum) in self.nibbles[row.clone()]
                .iter()
                .zip(&self.scales[row.clone()])
                .zip(&self.mins[row])
                .zip(x.values.iter().zip(&x.scales))
                .zip(&x.sums)
            {
                let dot = block_dot(nibbles, values);
                sum += dot as f32 * scale * x_scale + min * x_sum;
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

/// ggml's AVX2 `ggml_vec_dot_q4_1_q8_1`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256, __m256i, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_loadu_si128,
        _mm_movehdup_ps, _mm_movehl_ps, _mm_srli_epi16, _mm256_and_si256, _mm256_castps256_ps128,
        _mm256_castsi128_si256, _mm256_cvtepi32_ps, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_insertf128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_set1_epi8, _mm256_set1_epi16, _mm256_set1_ps, _mm256_setzero_ps,
    };

    use super::{BLOCK, Q8Row};

    /// Whether this CPU runs the AVX2 loop.
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// One row's dot product with `x`; only called when [`available`].
    pub(super) fn dot(nibbles: &[[u8; BLOCK / 2]], scales: &[f32], mins: &[f32], x: &Q8Row) -> f32 {
        assert!(available());
        // SAFETY: the CPU has AVX2 and FMA (asserted above).
        #[allow(unsafe_code)]
        unsafe {
            dot_avx2(nibbles, scales, mins, x)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2(nibbles: &[[u8; BLOCK / 2]], scales: &[f32], mins: &[f32], x: &Q8Row) -> f32 {
        let mut acc: __m256 = _mm256_setzero_ps();
        let mut min_sums = 0f32;
        let low_mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let blocks = nibbles
            .iter()
            .zip(scales.iter().zip(mins))
            .zip(x.values.iter().zip(x.scales.iter().zip(&x.sums)));
        for ((nibbles, (scale, min)), (values, (x_scale, x_sum))) in blocks {
            min_sums += min * x_sum;
            // SAFETY: `nibbles` is 16 readable bytes and `values` 32; both loads
            // are unaligned ones.
            #[allow(unsafe_code)]
            let (packed, y) = unsafe {
                (
                    _mm_loadu_si128(nibbles.as_ptr().cast::<__m128i>()),
                    _mm256_loadu_si256(values.as_ptr().cast::<__m256i>()),
                )
            };
            // Low nibbles in bytes 0-15 (values 0-15), high ones in 16-31.
            let both = _mm256_insertf128_si256::<1>(
                _mm256_castsi128_si256(packed),
                _mm_srli_epi16::<4>(packed),
            );
            let q = _mm256_and_si256(both, low_mask);
            // u8 x i8 products summed in pairs (at most 2 * 15 * 127: no
            // saturation), then in fours, as eight i32 lanes.
            let products = _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), ones);
            let scale = _mm256_set1_ps(scale * x_scale);
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(products), acc);
        }
        hsum(acc) + min_sums
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum(x: __m256) -> f32 {
        let halves = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        let quarters = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(quarters, _mm_movehdup_ps(quarters)))
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
    use crate::model::int8_tiles::{TOKENS_PER_ITEM, quantize_row, random};
    use candle_core::Module;
    use candle_core::quantized::QMatMul;

    #[test]
    fn matches_candles_q4_1_matmul() {
        let (rows, cols) = (200, 192);
        let w = Tensor::from_vec(random(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
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
            let portable: Vec<Vec<f32>> = (0..tokens)
                .map(|t| {
                    let mut got = vec![0f32; rows];
                    let row = quantize_row(&x[t * cols..(t + 1) * cols]);
                    ours.dot_rows_portable(&row, 0, &mut got);
                    got
                })
                .collect();
            let tiles: Vec<Vec<f32>> = ours.forward(&x_tensor).unwrap().to_vec2().unwrap();
            let by_rows: Vec<Vec<f32>> = (0..tokens)
                .map(|t| {
                    let mut got = vec![0f32; rows];
                    ours.dot_rows(&quantize_row(&x[t * cols..(t + 1) * cols]), 0, &mut got);
                    got
                })
                .collect();
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
            // The dispatched tiles (AVX-512 VNNI where the CPU has it) and the
            // row-at-a-time loop (AVX2 where it has that): the portable loop's
            // arithmetic up to summation order.
            close(&tiles, &portable, 1e-5, "tiles");
            close(&by_rows, &portable, 1e-5, "row at a time");
        }
    }

    #[test]
    fn a_tokens_result_does_not_depend_on_the_tokens_beside_it() {
        // Rows and tokens that leave partial tiles and work items.
        let (rows, cols) = (130, 128);
        let w = Tensor::from_vec(random(rows * cols, 3), (rows, cols), &Device::Cpu).unwrap();
        let ours = Q4_1Matrix::new(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
        let tokens = TOKENS_PER_ITEM + 6;
        let x = Tensor::from_vec(random(tokens * cols, 11), (tokens, cols), &Device::Cpu).unwrap();
        let together: Vec<Vec<f32>> = ours.forward(&x).unwrap().to_vec2().unwrap();
        for (t, together) in together.iter().enumerate() {
            let alone: Vec<Vec<f32>> = ours
                .forward(&x.narrow(0, t, 1).unwrap())
                .unwrap()
                .to_vec2()
                .unwrap();
            assert_eq!(&alone[0], together, "token {t}");
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
