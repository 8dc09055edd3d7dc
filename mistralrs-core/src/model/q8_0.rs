//! Q8_0 weights times f32 activations in AVX-512 VNNI tiles. candle's Q8_0
//! kernel is AVX2, one row and one token at a time; GGUF files keep the output
//! head in Q8_0 (SmolLM2's `token_embd`, 49,152 rows), which made it a quarter
//! of a decode step. Built on x86-64 and used only where the CPU has AVX-512
//! VNNI; elsewhere candle's kernel runs.
//!
//! The arithmetic is ggml's `ggml_vec_dot_q8_0_q8_0`: activations rounded to 8
//! bits per block of 32 with f16 scales, exact integer products per block,
//! scaled and summed in f32. `vpdpbusd` multiplies unsigned by signed bytes,
//! so each weight's sign moves onto the activation (`|w| * (sign(w) x)`), which
//! keeps the integer sums exact.

use candle_core::Tensor;
use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use super::int8_tiles::{self, BLOCK, avx512, tiled_forward};
use crate::{Error, Result};

/// Bytes of a stored block: f16 scale, 32 signed bytes.
const BLOCK_BYTES: usize = 34;

/// A `[rows, cols]` Q8_0 matrix as the tiles read it.
#[derive(Debug, Clone)]
pub(crate) struct Q8_0Matrix {
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    values: Vec<[i8; BLOCK]>,
}

impl Q8_0Matrix {
    /// The matrix of a Q8_0 tensor `[rows, cols]`, when this CPU runs the
    /// tiles; `None` where it doesn't.
    pub(crate) fn new(tensor: &QTensor) -> Result<Option<Self>> {
        if !avx512::available() {
            return Ok(None);
        }
        Self::unpack(tensor).map(Some)
    }

    fn unpack(tensor: &QTensor) -> Result<Self> {
        let (rows, cols, data) =
            int8_tiles::stored_blocks(tensor, GgmlDType::Q8_0, BLOCK, BLOCK_BYTES)?;
        let blocks = rows * cols / BLOCK;
        let mut matrix = Self {
            rows,
            cols,
            scales: Vec::with_capacity(blocks),
            values: Vec::with_capacity(blocks),
        };
        for block in data.chunks_exact(BLOCK_BYTES) {
            matrix
                .scales
                .push(f16::from_le_bytes([block[0], block[1]]).to_f32());
            matrix
                .values
                .push(std::array::from_fn(|i| block[2 + i] as i8));
        }
        Ok(matrix)
    }

    /// Memory the matrix takes.
    pub(crate) fn bytes(&self) -> usize {
        self.scales.len() * 4 + self.values.len() * BLOCK
    }

    /// `x W^T`: `x` is `[tokens, cols]` f32, the result `[tokens, rows]` f32.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, cols) = x.dims2()?;
        if cols != self.cols {
            return Err(Error::Unsupported(format!(
                "Q8_0 matmul of {cols} columns by a matrix of {}",
                self.cols
            )));
        }
        tiled_forward(x, self.rows, |tokens, first_row, outs| {
            avx512::dot_tiles(self, tokens, first_row, outs);
        })
    }

    /// The blocks of row `row`.
    fn row_blocks(&self, row: usize) -> std::ops::Range<usize> {
        int8_tiles::row_blocks(self.cols, row)
    }
}

mod tile {
    use std::arch::x86_64::{
        __mmask64, _mm512_abs_epi8, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps,
        _mm512_loadu_si512, _mm512_mask_sub_epi8, _mm512_movepi8_mask, _mm512_mul_ps,
        _mm512_reduce_add_ps, _mm512_set_epi32, _mm512_setzero_ps, _mm512_setzero_si512,
    };

    use super::Q8_0Matrix;
    use crate::model::int8_tiles::Q8Row;
    use crate::model::int8_tiles::avx512::{Tiles, pair_scales};

    impl Tiles for Q8_0Matrix {
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
        m: &Q8_0Matrix,
        tokens: &[Q8Row],
        first_row: usize,
        i: usize,
        outs: &mut [&mut [f32]],
    ) {
        // The products' lanes 0-7 sum the first block of a pair, 8-15 the
        // second (arguments from lane 15 down to lane 0).
        let block_of_lane = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let rows: [std::ops::Range<usize>; R] =
            std::array::from_fn(|r| m.row_blocks(first_row + i + r));
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        for k in (0..m.cols / super::BLOCK).step_by(2) {
            let mut magnitudes = [_mm512_setzero_si512(); R];
            let mut negative: [__mmask64; R] = [0; R];
            let mut scales = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let b = rows[r].start + k;
                // SAFETY: two blocks of 32 values are 64 readable bytes.
                #[allow(unsafe_code)]
                let w = unsafe { _mm512_loadu_si512(m.values[b..b + 2].as_ptr().cast()) };
                magnitudes[r] = _mm512_abs_epi8(w);
                negative[r] = _mm512_movepi8_mask(w);
                scales[r] = pair_scales(&m.scales[b..b + 2], block_of_lane);
            }
            for t in 0..T {
                let x = &tokens[t];
                // SAFETY: two blocks of 32 values are 64 readable bytes.
                #[allow(unsafe_code)]
                let values = unsafe { _mm512_loadu_si512(x.values[k..k + 2].as_ptr().cast()) };
                let x_scales = pair_scales(&x.scales[k..k + 2], block_of_lane);
                for r in 0..R {
                    // Values are within +-127, so negating one never overflows.
                    let signed =
                        _mm512_mask_sub_epi8(values, negative[r], _mm512_setzero_si512(), values);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitudes[r], signed);
                    acc[r][t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(dot),
                        _mm512_mul_ps(scales[r], x_scales),
                        acc[r][t],
                    );
                }
            }
        }
        for r in 0..R {
            for t in 0..T {
                outs[t][i + r] = _mm512_reduce_add_ps(acc[r][t]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module};

    use super::*;
    use crate::model::int8_tiles::{assert_tokens_alone_equal_batched, random};

    fn matrix(rows: usize, cols: usize, seed: u32) -> (QTensor, Option<Q8_0Matrix>) {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let ours = Q8_0Matrix::new(&q).unwrap();
        if ours.is_none() {
            eprintln!("no AVX-512 VNNI here: candle's Q8_0 kernel runs instead");
        }
        (q, ours)
    }

    #[test]
    fn matches_candles_q8_0_matmul() {
        let (rows, cols) = (200, 192);
        let (q, Some(ours)) = matrix(rows, cols, 5) else {
            return;
        };
        let candle = QMatMul::from_qtensor(q).unwrap();
        for tokens in [1, 3, 17] {
            let x = Tensor::from_vec(
                random(tokens * cols, 9 + tokens as u32),
                (tokens, cols),
                &Device::Cpu,
            )
            .unwrap();
            let want: Vec<Vec<f32>> = candle.forward(&x).unwrap().to_vec2().unwrap();
            let got: Vec<Vec<f32>> = ours.forward(&x).unwrap().to_vec2().unwrap();
            // The same integer products; the f32 sums in another order.
            for (got, want) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{tokens} tokens: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn a_tokens_result_does_not_depend_on_the_tokens_beside_it() {
        // Rows and tokens that leave partial tiles and work items.
        let (rows, cols) = (130, 128);
        let (_, Some(ours)) = matrix(rows, cols, 13) else {
            return;
        };
        assert_tokens_alone_equal_batched(cols, 17, "Q8_0", |x| ours.forward(x));
    }

    #[test]
    fn other_types_and_shapes_are_refused() {
        let w = Tensor::zeros((4, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q4 = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        assert!(Q8_0Matrix::unpack(&q4).is_err());
        let w = Tensor::zeros((4, 96), candle_core::DType::F32, &Device::Cpu).unwrap();
        let odd = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(Q8_0Matrix::unpack(&odd).is_err());
    }
}
