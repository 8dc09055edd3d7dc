//! The key and value tensors of every layer, addressed by slot.
//!
//! Each layer holds one key and one value tensor of shape
//! `[num_blocks * block_size, kv_heads * head_dim]`: row `s` is slot `s`, the slot
//! of position `p` of a sequence being `block * block_size + p % block_size` for
//! the block its table holds at `p / block_size`. Rows are written in place with
//! `scatter_set` and read back with `index_select`, so the cache works for any
//! dtype and device candle supports.

use candle_core::{DType, Device, Tensor};

use crate::{BlockCopy, Result};

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
    pub fn bytes(&self, dtype: DType) -> usize {
        2 * self.num_layers
            * self.num_blocks
            * self.block_size
            * self.kv_heads
            * self.head_dim
            * dtype.size_in_bytes()
    }
}

/// Keys and values of all layers.
#[derive(Debug)]
pub struct KvCache {
    shape: KvCacheShape,
    layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// A zeroed cache.
    pub fn new(shape: KvCacheShape, dtype: DType, device: &Device) -> Result<Self> {
        let rows = (
            shape.num_blocks * shape.block_size,
            shape.kv_heads * shape.head_dim,
        );
        let layers = (0..shape.num_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(rows, dtype, device)?,
                    Tensor::zeros(rows, dtype, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self { shape, layers })
    }

    /// The cache's dimensions.
    pub fn shape(&self) -> KvCacheShape {
        self.shape
    }

    /// Keys and values of one layer, `[slots, kv_heads * head_dim]` each.
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }

    /// Writes `k` and `v` (`[n, kv_heads, head_dim]` or `[n, kv_heads * head_dim]`,
    /// any float dtype: they are converted to the cache's) into the slots `slots`
    /// (`[n]`, u32) of `layer`.
    pub fn write(&self, layer: usize, slots: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = slots.dim(0)?;
        let width = self.shape.kv_heads * self.shape.head_dim;
        let index = slots
            .reshape((n, 1))?
            .broadcast_as((n, width))?
            .contiguous()?;
        let (kc, vc) = &self.layers[layer];
        let rows = |t: &Tensor| t.reshape((n, width))?.to_dtype(kc.dtype())?.contiguous();
        kc.scatter_set(&index, &rows(k)?, 0)?;
        vc.scatter_set(&index, &rows(v)?, 0)?;
        Ok(())
    }

    /// Copies whole blocks in every layer (copy-on-write).
    pub fn copy_blocks(&self, copies: &[BlockCopy]) -> Result<()> {
        if copies.is_empty() {
            return Ok(());
        }
        let bs = self.shape.block_size as u32;
        let device = self.layers[0].0.device();
        let slots = |pick: fn(&BlockCopy) -> u32| -> Vec<u32> {
            copies
                .iter()
                .flat_map(|c| (0..bs).map(move |o| pick(c) * bs + o))
                .collect()
        };
        let src = Tensor::new(slots(|c| c.src), device)?;
        let dst = Tensor::new(slots(|c| c.dst), device)?;
        for layer in 0..self.layers.len() {
            let (k, v) = &self.layers[layer];
            let (k, v) = (k.index_select(&src, 0)?, v.index_select(&src, 0)?);
            self.write(layer, &dst, &k, &v)?;
        }
        Ok(())
    }
}
