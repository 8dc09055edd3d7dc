//! Attention of one sequence's queries over its keys and values in the paged cache.

use candle_core::{D, DType, Tensor};

use crate::{CacheRows, Result};

/// Causal attention for the queries of one sequence.
///
/// - `q`: `[n, heads, head_dim]`, the queries of positions `first_pos..first_pos + n`.
/// - `k_cache`, `v_cache`: one layer of a [`crate::KvCache`], read as f32.
/// - `context_slots`: `[first_pos + n]` u32, the slot of every position of the
///   sequence so far (including the `n` new ones, already written).
///
/// - `window`: when set, a query at position `p` sees only keys at positions
///   `p - window + 1..=p` (Mistral's sliding window).
///
/// Heads are grouped over the key/value heads (grouped-query attention). Scores and
/// softmax run in f32 whatever the cache dtype. On the CPU a kernel reads the
/// keys and values where they lie in the cache (`cpu_prefill`); elsewhere they
/// are gathered into tensors. Returns `[n, heads * head_dim]`.
pub fn paged_attention(
    q: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    context_slots: &Tensor,
    first_pos: usize,
    scale: f64,
    window: Option<usize>,
) -> Result<Tensor> {
    if let Some(out) = crate::cpu_prefill::prefill_in_place(
        q,
        k_cache,
        v_cache,
        context_slots,
        first_pos,
        scale,
        window,
    )? {
        return Ok(out);
    }
    let (n, heads, head_dim) = q.dims3()?;
    let ctx = context_slots.dim(0)?;
    let kv_heads = k_cache.width() / head_dim;
    let group = heads / kv_heads;
    let dtype = q.dtype();
    let gather = |cache: &CacheRows| -> Result<Tensor> {
        Ok(cache
            .gather(context_slots)?
            .reshape((ctx, kv_heads, head_dim))?
            .transpose(0, 1)?
            .contiguous()?)
    };
    let (k, v) = (gather(k_cache)?, gather(v_cache)?);
    // [n, heads, d] -> [kv_heads, group * n, d]; head h reads kv head h / group.
    let q = q
        .to_dtype(DType::F32)?
        .transpose(0, 1)?
        .reshape((kv_heads, group * n, head_dim))?
        .contiguous()?;
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let windowed = window.is_some_and(|w| ctx > w);
    let scores = if n > 1 || windowed {
        let mask = causal_mask(n, ctx, first_pos, window, q.device())?;
        scores
            .reshape((kv_heads, group, n, ctx))?
            .broadcast_add(&mask)?
            .reshape((kv_heads, group * n, ctx))?
    } else {
        scores
    };
    let probs = scores
        .broadcast_sub(&scores.max_keepdim(D::Minus1)?)?
        .exp()?;
    let probs = probs.broadcast_div(&probs.sum_keepdim(D::Minus1)?)?;
    let out = probs.matmul(&v)?; // [kv_heads, group * n, d]
    Ok(out
        .reshape((heads, n, head_dim))?
        .transpose(0, 1)?
        .reshape((n, heads * head_dim))?
        .to_dtype(dtype)?)
}

/// `[n, ctx]` additive mask: query `i` (position `first_pos + i`) sees keys up to
/// its own position, and no further back than the window.
fn causal_mask(
    n: usize,
    ctx: usize,
    first_pos: usize,
    window: Option<usize>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let visible = |pos: usize, key: usize| key <= pos && window.is_none_or(|w| pos - key < w);
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..ctx).map(move |j| {
                if visible(first_pos + i, j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (n, ctx), device)?)
}

/// Attention of one new token for each of several sequences (the decode step);
/// `slots` arrive padded to the longest context, and each sequence is computed
/// over its own visible keys only.
///
/// - `q`: `[n, heads, head_dim]`, one query per sequence, at position
///   `context_lens[i] - 1`.
/// - `slots`: `[n * max_ctx]` u32, sequence `i`'s context slots in row
///   `i * max_ctx..`, padded with any valid slot (masked out).
/// - `context_lens`: each sequence's context length (its slots that count).
///
/// On the CPU and on NVIDIA GPUs, a kernel reads the keys and values where
/// they lie in the cache (`cpu_decode`, `cuda_decode`); otherwise (a q8_0
/// cache on a GPU) [`paged_attention`] runs per sequence with one query each.
/// Either way a sequence gets what it would get alone, whatever else is in
/// the batch. Returns `[n, heads * head_dim]`.
pub fn paged_attention_decode(
    q: &Tensor,
    k_cache: &CacheRows,
    v_cache: &CacheRows,
    slots: &Tensor,
    context_lens: &[usize],
    scale: f64,
    window: Option<usize>,
) -> Result<Tensor> {
    if let Some(out) =
        crate::cpu_decode::decode_in_place(q, k_cache, v_cache, slots, context_lens, scale, window)?
    {
        return Ok(out);
    }
    #[cfg(feature = "cuda")]
    if let Some(out) = crate::cuda_decode::decode_in_place(
        q,
        k_cache,
        v_cache,
        slots,
        context_lens,
        scale,
        window,
    )? {
        return Ok(out);
    }
    let n = q.dim(0)?;
    let max_ctx = slots.dim(0)? / n.max(1);
    // Each sequence through the very computation a lone sequence gets: padding
    // to the longest context, or another layout, would change the length and
    // order of the reductions (softmax sum, the product with V) and with them
    // the rounding, so a sequence's tokens would depend on its batch.
    let outputs = context_lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            paged_attention(
                &q.narrow(0, i, 1)?,
                k_cache,
                v_cache,
                &slots.narrow(0, i * max_ctx, len)?,
                len - 1,
                scale,
                window,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&outputs, 0)?)
}
