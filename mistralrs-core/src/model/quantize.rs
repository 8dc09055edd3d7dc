//! In-situ quantization (ISQ): a dense checkpoint's projections quantized to a
//! GGML type while the model loads, as mistral.rs's ISQ and llama.cpp's
//! `llama-quantize` do. Embeddings, norms and the output head stay dense: they
//! are small next to the layers and the most sensitive to rounding.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::{GgmlDType, QTensor};

use super::{LoadOptions, ModelConfig};
use crate::Result;

/// A type `--quantize` produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 4.5 bits per weight: blocks of 32 with an f16 scale.
    Q4_0,
    /// 5 bits: blocks of 32 with an f16 scale and minimum.
    Q4_1,
    /// 5.5 bits: blocks of 32.
    Q5_0,
    /// 6 bits: blocks of 32 with a minimum.
    Q5_1,
    /// 8.5 bits: blocks of 32; nearly lossless.
    Q8_0,
    /// k-quant, 2.6 bits: super-blocks of 256.
    Q2K,
    /// k-quant, 3.4 bits.
    Q3K,
    /// k-quant, 4.5 bits.
    Q4K,
    /// k-quant, 5.5 bits.
    Q5K,
    /// k-quant, 6.6 bits.
    Q6K,
}

const ALL: [(Quantization, &str); 10] = [
    (Quantization::Q4_0, "q4_0"),
    (Quantization::Q4_1, "q4_1"),
    (Quantization::Q5_0, "q5_0"),
    (Quantization::Q5_1, "q5_1"),
    (Quantization::Q8_0, "q8_0"),
    (Quantization::Q2K, "q2_k"),
    (Quantization::Q3K, "q3_k"),
    (Quantization::Q4K, "q4_k"),
    (Quantization::Q5K, "q5_k"),
    (Quantization::Q6K, "q6_k"),
];

impl Quantization {
    /// The GGML type of the quantized weights.
    pub fn ggml_dtype(self) -> GgmlDType {
        match self {
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q5_1 => GgmlDType::Q5_1,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q2K => GgmlDType::Q2K,
            Self::Q3K => GgmlDType::Q3K,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q5K => GgmlDType::Q5K,
            Self::Q6K => GgmlDType::Q6K,
        }
    }

    /// The type used for a row that does not fit this type's blocks (as
    /// llama.cpp: a 32-wide type at least as precise).
    fn fallback(self) -> Self {
        match self {
            Self::Q2K | Self::Q3K => Self::Q4_0,
            Self::Q4K => Self::Q5_0,
            Self::Q5K => Self::Q5_1,
            Self::Q6K => Self::Q8_0,
            other => other,
        }
    }

    /// What a row's length must be a multiple of: the block, or two blocks
    /// for the types whose dot products take blocks in pairs (as in ggml).
    fn row_unit(self) -> usize {
        let block = self.ggml_dtype().block_size();
        match self {
            Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => 2 * block,
            _ => block,
        }
    }

    /// The type a weight with rows of `width` values gets when this one is
    /// asked for: this type, else its fallback, else q8_0, whichever first fits
    /// the rows; `None` when rows are not even a multiple of 32.
    pub fn for_rows(self, width: usize) -> Option<Self> {
        [self, self.fallback(), Self::Q8_0]
            .into_iter()
            .find(|q| width.is_multiple_of(q.row_unit()))
    }

    /// Bytes per weight, for memory estimates.
    pub fn bytes_per_weight(self) -> f64 {
        let dtype = self.ggml_dtype();
        dtype.type_size() as f64 / dtype.block_size() as f64
    }

    /// The names `--quantize` accepts.
    pub fn names() -> String {
        ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = ALL.iter().find(|(q, _)| q == self).map_or("?", |(_, n)| *n);
        f.write_str(name)
    }
}

impl FromStr for Quantization {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        // `q4_k`, `Q4_K` and `q4k` all name the same type.
        let wanted = s.trim().to_ascii_lowercase().replace('_', "");
        ALL.iter()
            .find(|(_, n)| n.replace('_', "") == wanted)
            .map(|(q, _)| *q)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a quantization this server can produce; use one of: {}",
                    Quantization::names()
                )
            })
    }
}

impl<'de> serde::Deserialize<'de> for Quantization {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Told how far quantization has come: `(done, total)` projections.
pub type ProgressFn = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Quantizes the projections of one model as they load, counting them for the
/// progress callback and the rows that needed a fallback type.
pub(crate) struct Quantizer {
    target: Quantization,
    total: usize,
    done: Cell<usize>,
    fell_back: Cell<usize>,
    kept_dense: Cell<usize>,
    progress: Option<ProgressFn>,
}

impl Quantizer {
    /// A quantizer to `target` for `total` projections.
    pub(crate) fn new(target: Quantization, total: usize, progress: Option<ProgressFn>) -> Self {
        Self {
            target,
            total,
            done: Cell::new(0),
            fell_back: Cell::new(0),
            kept_dense: Cell::new(0),
            progress,
        }
    }

    /// `weight` (`[out, in]`) quantized to the type that fits its rows
    /// (`Quantization::for_rows`); `None` when none does (the weight then
    /// stays dense).
    pub(crate) fn quantize(&self, weight: &Tensor) -> Result<Option<QTensor>> {
        let fits = self.target.for_rows(weight.dim(1)?);
        if fits.is_some_and(|q| q != self.target) {
            self.fell_back.set(self.fell_back.get() + 1);
        }
        let quantized = match fits {
            Some(q) => Some(QTensor::quantize(weight, q.ggml_dtype())?),
            None => {
                self.kept_dense.set(self.kept_dense.get() + 1);
                None
            }
        };
        self.done.set(self.done.get() + 1);
        if let Some(progress) = &self.progress {
            progress(self.done.get(), self.total);
        }
        Ok(quantized)
    }

    /// The quantizer `options` ask for, for the projections of a model
    /// shaped as `cfg` (seven a layer: q, k, v, o, gate, up, down).
    pub(crate) fn for_model(options: &LoadOptions, cfg: &ModelConfig) -> Option<Self> {
        options
            .quantize
            .map(|target| Self::new(target, 7 * cfg.num_hidden_layers, options.progress.clone()))
    }

    /// Logs what was quantized to what, when anything was.
    pub(crate) fn log_summary(quantizer: &Option<Self>) {
        if let Some(quantizer) = quantizer {
            tracing::info!("{}", quantizer.summary());
        }
    }

    /// A line for the log: what was quantized to what.
    pub(crate) fn summary(&self) -> String {
        let mut line = format!(
            "{} projections quantized to {}",
            self.done.get(),
            self.target
        );
        if self.fell_back.get() > 0 {
            line.push_str(&format!(
                "; {} with rows not a multiple of {} used {} or q8_0",
                self.fell_back.get(),
                self.target.row_unit(),
                self.target.fallback()
            ));
        }
        if self.kept_dense.get() > 0 {
            line.push_str(&format!(
                "; {} kept dense (rows not a multiple of 32)",
                self.kept_dense.get()
            ));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_parse_both_spellings_and_unknown_ones_list_the_choices() {
        assert_eq!("q4_k".parse::<Quantization>(), Ok(Quantization::Q4K));
        assert_eq!("Q4K".parse::<Quantization>(), Ok(Quantization::Q4K));
        assert_eq!("q8_0".parse::<Quantization>(), Ok(Quantization::Q8_0));
        let err = "q8_1".parse::<Quantization>().unwrap_err();
        assert!(err.contains("q8_1") && err.contains("q4_0, q4_1"), "{err}");
        assert!("".parse::<Quantization>().is_err());
        for (q, name) in ALL {
            assert_eq!(q.to_string(), name);
            assert_eq!(name.parse::<Quantization>(), Ok(q));
        }
    }

    #[test]
    fn short_rows_fall_back_to_a_32_wide_type_and_odd_rows_stay_dense() {
        let quantizer = Quantizer::new(Quantization::Q4K, 4, None);
        let w = |cols| Tensor::ones((4, cols), candle_core::DType::F32, &Device::Cpu).unwrap();
        let full = quantizer.quantize(&w(256)).unwrap().unwrap();
        assert_eq!(full.dtype(), GgmlDType::Q4K);
        let short = quantizer.quantize(&w(128)).unwrap().unwrap();
        assert_eq!(short.dtype(), GgmlDType::Q5_0);
        // Three blocks of 32: q5_0 takes blocks in pairs, q8_0 does not.
        let odd = quantizer.quantize(&w(96)).unwrap().unwrap();
        assert_eq!(odd.dtype(), GgmlDType::Q8_0);
        assert!(quantizer.quantize(&w(40)).unwrap().is_none());
        let summary = quantizer.summary();
        assert!(
            summary.contains("4 projections quantized to q4_k"),
            "{summary}"
        );
        assert!(
            summary.contains("2 with rows not a multiple of 256 used q5_0 or q8_0"),
            "{summary}"
        );
        assert!(summary.contains("1 kept dense"), "{summary}");
    }

    #[test]
    fn bytes_per_weight_follow_the_block_layout() {
        assert!((Quantization::Q8_0.bytes_per_weight() - 34.0 / 32.0).abs() < 1e-9);
        assert!((Quantization::Q4_0.bytes_per_weight() - 18.0 / 32.0).abs() < 1e-9);
        assert!((Quantization::Q4K.bytes_per_weight() - 144.0 / 256.0).abs() < 1e-9);
    }
}
