//! Decode attention on NVIDIA GPUs: `kernels/paged_decode.cu` reads each
//! sequence's keys and values where they lie in the paged cache, in one launch
//! for the whole batch per layer, instead of a gathered copy and two matmuls per
//! sequence. Float caches only; a q8_0 cache takes the gathering path.
//!
//! `MISTRALRS_PAGED_DECODE=gather` turns the kernel off, so a benchmark can
//! measure both paths on the same binary (scripts/gpu-bench.sh).

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor, WithDType, bail};

use crate::{CacheRows, Result};

#[allow(unreachable_pub)]
mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// Threads per block: the kernel's `WARPS` warps.
const THREADS: u32 = 4 * 32;
/// The kernel's `MAX_HEAD_DIM`.
const MAX_HEAD_DIM: usize = 256;

/// Whether the kernel runs (not turned off for a benchmark).
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("MISTRALRS_PAGED_DECODE").as_deref() != Ok("gather"))
}

/// [`crate::paged_attention_decode`] by the kernel when the cache is a float
/// cache on a GPU; `None` otherwise (the caller then gathers).
pub(crate) fn decode_in_place(
    q: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    slots: &Tensor,
    context_lens: &[usize],
    scale: f64,
    window: Option<usize>,
) -> Result<Option<Tensor>> {
    let (CacheRows::Float(k), CacheRows::Float(v)) = (k_cache, v_cache) else {
        return Ok(None);
    };
    let (n, heads, head_dim) = q.dims3()?;
    if !enabled() || !q.device().is_cuda() || head_dim > MAX_HEAD_DIM || n == 0 {
        return Ok(None);
    }
    let kv_heads = k.dim(1)? / head_dim;
    let lens: Vec<u32> = context_lens.iter().map(|&l| l as u32).collect();
    let op = PagedDecode {
        k: k.clone(),
        v: v.clone(),
        slots: slots.contiguous()?,
        lens: Tensor::new(lens.as_slice(), q.device())?,
        heads,
        kv_heads,
        head_dim,
        max_ctx: slots.dim(0)? / n,
        scale: scale as f32,
        window: window.unwrap_or(0),
    };
    let out = q
        .to_dtype(DType::F32)?
        .contiguous()?
        .apply_op1_no_bwd(&op)?;
    Ok(Some(out.to_dtype(q.dtype())?))
}

/// The launch: `q` is the op's input, the rest rides along.
struct PagedDecode {
    k: Tensor,
    v: Tensor,
    slots: Tensor,
    lens: Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    max_ctx: usize,
    scale: f32,
    window: usize,
}

/// The device slice of a contiguous tensor, from its first element.
fn slice_of<'a, T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    storage: &'a Storage,
    layout: &Layout,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    let Storage::Cuda(storage) = storage else {
        bail!("paged decode: a tensor is not on the GPU")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("paged decode: a tensor is not contiguous")
    };
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

impl PagedDecode {
    fn launch<T: WithDType + DeviceRepr + candle_core::cuda_backend::CudaDType>(
        &self,
        name: &str,
        q: &CudaStorage,
        q_layout: &Layout,
    ) -> candle_core::Result<CudaStorage> {
        let device = q.device().clone();
        let n = q_layout.shape().dims()[0];
        let (k, k_layout) = self.k.storage_and_layout();
        let (v, v_layout) = self.v.storage_and_layout();
        let (slots, slots_layout) = self.slots.storage_and_layout();
        let (lens, lens_layout) = self.lens.storage_and_layout();
        let Some((q_start, q_end)) = q_layout.contiguous_offsets() else {
            bail!("paged decode: the queries are not contiguous")
        };
        let q = q.as_cuda_slice::<f32>()?.slice(q_start..q_end);
        let k = slice_of::<T>(&k, k_layout)?;
        let v = slice_of::<T>(&v, v_layout)?;
        let slots = slice_of::<u32>(&slots, slots_layout)?;
        let lens = slice_of::<u32>(&lens, lens_layout)?;
        let out = device.alloc_zeros::<f32>(n * self.heads * self.head_dim)?;
        let func =
            device.get_or_load_custom_func(name, "mistralrs_paged_decode", ptx::PAGED_DECODE)?;
        let mut builder = func.builder();
        builder.arg(&q);
        builder.arg(&k);
        builder.arg(&v);
        builder.arg(&slots);
        builder.arg(&lens);
        builder.arg(&out);
        candle_core::builder_arg!(
            builder,
            self.heads as i32,
            self.kv_heads as i32,
            self.head_dim as i32,
            self.max_ctx as i32,
            self.scale,
            self.window as i32
        );
        let config = LaunchConfig {
            grid_dim: ((n * self.heads) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel reads `n * heads * head_dim` queries, the slots of
        // `n * max_ctx`, `n` lengths, cache rows named by slots the block
        // manager handed out, and writes `n * heads * head_dim` outputs: the
        // sizes of the buffers above.
        #[allow(unsafe_code)]
        unsafe { builder.launch(config) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, device))
    }
}

impl CustomOp1 for PagedDecode {
    fn name(&self) -> &'static str {
        "paged-decode"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        bail!("paged decode: the CUDA kernel has no CPU path (cpu_decode is that)")
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = match &q.slice {
            CudaStorageSlice::F32(_) => match self.k.dtype() {
                DType::F32 => self.launch::<f32>("paged_decode_f32", q, layout)?,
                DType::F16 => self.launch::<half::f16>("paged_decode_f16", q, layout)?,
                DType::BF16 => self.launch::<half::bf16>("paged_decode_bf16", q, layout)?,
                other => bail!("paged decode: a {other:?} cache"),
            },
            _ => bail!("paged decode: the queries must be f32"),
        };
        Ok((
            out,
            Shape::from((layout.shape().dims()[0], self.heads * self.head_dim)),
        ))
    }
}
