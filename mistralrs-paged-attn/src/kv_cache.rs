//! The key and value tensors of every layer, addressed by slot.
//!
//! Each layer holds keys and values of shape
//! `[num_blocks * block_size, kv_heads * head_dim]`: row `s` is slot `s`, the slot
//! of position `p` of a sequence being `block * block_size + p % block_size` for
//! the block its table holds at `p / block_size`. Rows are written in place with
//! `scatter_set` and read back with `index_select`, so the cache works for any
//! dtype and device candle supports; a Q8_0 cache keeps its bytes and scales
//! in two such tensors.

use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::kv_dtype::{KvDtype, Q8_0_BLOCK};
use crate::{BlockCopy, Error, Result};

/// Dimensions of a KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheShape {
    /// Decoder layers.
    pub num_layers: usize,
    /// Blocks in the cache.
    pub num_blocks: usize,
    /// Token slots per block.
    pub block_size: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
}

impl KvCacheShape {
    /// Memory the cache takes with values of `dtype`: keys and values of every
    /// slot of every layer.
    pub fn bytes(&self, dtype: KvDtype) -> usize {
        2 * self.num_layers * dtype.bytes(self.num_blocks * self.block_size * self.width())
    }

    /// Values per slot of one layer: every kv head's.
    fn width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// One layer's keys or values, a row per slot.
#[derive(Debug)]
pub enum CacheRows {
    /// `[slots, width]` floats.
    Float(Tensor),
    /// Q8_0 per 32 values of a row: `values` `[slots, width]` u8, each the
    /// signed byte plus 128 (candle has no i8), and `scales` `[slots, width /
    /// 32]` f16. A value is `scale * (byte - 128)`.
    Q8_0 {
        /// The values, offset by 128.
        values: Tensor,
        /// One scale per 32 values.
        scales: Tensor,
    },
}

impl CacheRows {
    fn zeros(rows: usize, width: usize, dtype: KvDtype, device: &Device) -> Result<Self> {
        Ok(match dtype.float() {
            Some(dtype) => Self::Float(Tensor::zeros((rows, width), dtype, device)?),
            None => Self::Q8_0 {
                values: Tensor::zeros((rows, width), DType::U8, device)?,
                scales: Tensor::zeros((rows, width / Q8_0_BLOCK), DType::F16, device)?,
            },
        })
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        match self {
            Self::Float(t) | Self::Q8_0 { values: t, .. } => t.dim(1).unwrap_or(0),
        }
    }

    /// The rows of `slots` (`[n]` u32) as f32, `[n, width]`.
    pub fn gather(&self, slots: &Tensor) -> Result<Tensor> {
        match self {
            Self::Float(rows) => Ok(rows.index_select(slots, 0)?.to_dtype(DType::F32)?),
            Self::Q8_0 { values, scales } => {
                let (n, width) = (slots.dim(0)?, self.width());
                let blocks = width / Q8_0_BLOCK;
                let values = (values.index_select(slots, 0)?.to_dtype(DType::F32)? - 128.0)?;
                let scales = scales.index_select(slots, 0)?.to_dtype(DType::F32)?;
                Ok(values
                    .reshape((n, blocks, Q8_0_BLOCK))?
                    .broadcast_mul(&scales.reshape((n, blocks, 1))?)?
                    .reshape((n, width))?)
            }
        }
    }

    /// Writes `rows` (`[n, width]`, any float dtype) into `slots` (`[n]`).
    fn write(&self, slots: &Tensor, rows: &Tensor) -> Result<()> {
        match self {
            Self::Float(cache) => {
                scatter_rows(cache, slots, &rows.to_dtype(cache.dtype())?.contiguous()?)
            }
            Self::Q8_0 { values, scales } => {
                let (n, width) = rows.dims2()?;
                let rows: Vec<f32> = rows.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                let (bytes, block_scales) = quantize_q8_0(&rows);
                let device = values.device();
                scatter_rows(values, slots, &Tensor::from_vec(bytes, (n, width), device)?)?;
                let block_scales = Tensor::from_vec(block_scales, (n, width / Q8_0_BLOCK), device)?;
                scatter_rows(scales, slots, &block_scales)
            }
        }
    }

    /// Copies the rows of `src` over those of `dst` (both `[n]` u32), as stored.
    fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        match self {
            Self::Float(rows) => scatter_rows(rows, dst, &rows.index_select(src, 0)?),
            Self::Q8_0 { values, scales } => {
                scatter_rows(values, dst, &values.index_select(src, 0)?)?;
                scatter_rows(scales, dst, &scales.index_select(src, 0)?)
            }
        }
    }
}

/// `target[slots[i]] = rows[i]` for `[n, w]` rows.
fn scatter_rows(target: &Tensor, slots: &Tensor, rows: &Tensor) -> Result<()> {
    let (n, width) = rows.dims2()?;
    let index = slots
        .reshape((n, 1))?
        .broadcast_as((n, width))?
        .contiguous()?;
    target.scatter_set(&index, rows, 0)?;
    Ok(())
}

/// llama.cpp's `quantize_row_q8_0`: per 32 values, `scale = max|x| / 127`
/// stored as f16, values `round(x / scale)` (by the unrounded scale), here
/// offset by 128 into bytes.
fn quantize_q8_0(x: &[f32]) -> (Vec<u8>, Vec<f16>) {
    let mut bytes = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(x.len() / Q8_0_BLOCK);
    for block in x.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        bytes.extend(
            block
                .iter()
                .map(|v| ((v * inverse).round() as i32 + 128) as u8),
        );
        scales.push(f16::from_f32(scale));
    }
    (bytes, scales)
}

/// Keys and values of all layers.
#[derive(Debug)]
pub struct KvCache {
    shape: KvCacheShape,
    dtype: KvDtype,
    layers: Vec<(CacheRows, CacheRows)>,
}

impl KvCache {
    /// A zeroed cache. Q8_0 needs heads of whole blocks (a multiple of 32).
    pub fn new(shape: KvCacheShape, dtype: KvDtype, device: &Device) -> Result<Self> {
        if dtype == KvDtype::Q8_0 && !shape.head_dim.is_multiple_of(Q8_0_BLOCK) {
            return Err(Error::Unsupported(format!(
                "a q8_0 KV cache needs a head size that is a multiple of {Q8_0_BLOCK}, \
                 not {}; use f16",
                shape.head_dim
            )));
        }
        let rows = shape.num_blocks * shape.block_size;
        let layers = (0..shape.num_layers)
            .map(|_| {
                Ok((
                    CacheRows::zeros(rows, shape.width(), dtype, device)?,
                    CacheRows::zeros(rows, shape.width(), dtype, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            shape,
            dtype,
            layers,
        })
    }

    /// The cache's dimensions.
    pub fn shape(&self) -> KvCacheShape {
        self.shape
    }

    /// What the cache stores per value.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    /// Keys and values of one layer, a row of `kv_heads * head_dim` per slot.
    pub fn layer(&self, layer: usize) -> (&CacheRows, &CacheRows) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }

    /// Writes `k` and `v` (`[n, kv_heads, head_dim]` or `[n, kv_heads * head_dim]`,
    /// any float dtype: they are converted to the cache's) into the slots `slots`
    /// (`[n]`, u32) of `layer`.
    pub fn write(&self, layer: usize, slots: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = slots.dim(0)?;
        let width = self.shape.width();
        let (kc, vc) = &self.layers[layer];
        kc.write(slots, &k.reshape((n, width))?)?;
        vc.write(slots, &v.reshape((n, width))?)?;
        Ok(())
    }

    /// Copies whole blocks in every layer (copy-on-write).
    pub fn copy_blocks(&self, copies: &[BlockCopy]) -> Result<()> {
        let Some((first, _)) = self.layers.first() else {
            return Ok(());
        };
        if copies.is_empty() {
            return Ok(());
        }
        let bs = self.shape.block_size as u32;
        let device = match first {
            CacheRows::Float(t) | CacheRows::Q8_0 { values: t, .. } => t.device(),
        };
        let slots = |pick: fn(&BlockCopy) -> u32| -> Vec<u32> {
            copies
                .iter()
                .flat_map(|c| (0..bs).map(move |o| pick(c) * bs + o))
                .collect()
        };
        let src = Tensor::new(slots(|c| c.src), device)?;
        let dst = Tensor::new(slots(|c| c.dst), device)?;
        for (k, v) in &self.layers {
            k.copy(&src, &dst)?;
            v.copy(&src, &dst)?;
        }
        Ok(())
    }
}
