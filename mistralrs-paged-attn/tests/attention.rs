//! Paged attention against a direct computation on contiguous tensors.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use candle_core::{D, Device, Tensor};
use mistralrs_paged_attn::{
    BlockManager, CacheRows, KvCache, KvCacheShape, KvDtype, paged_attention,
    paged_attention_decode,
};

/// Largest absolute difference between two tensors of one shape.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Plain causal attention with grouped heads: q `[n, h, d]`, k/v `[ctx, kvh, d]`.
fn reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    first_pos: usize,
    scale: f64,
    window: usize,
) -> Tensor {
    let (n, heads, d) = q.dims3().unwrap();
    let kvh = k.dim(1).unwrap();
    let mut rows = Vec::new();
    for i in 0..n {
        for h in 0..heads {
            let qh = q.get(i).unwrap().get(h).unwrap(); // [d]
            let end = first_pos + i + 1;
            let start = end.saturating_sub(window);
            let kh = k
                .narrow(0, start, end - start)
                .unwrap()
                .narrow(1, h / (heads / kvh), 1)
                .unwrap()
                .squeeze(1)
                .unwrap();
            let vh = v
                .narrow(0, start, end - start)
                .unwrap()
                .narrow(1, h / (heads / kvh), 1)
                .unwrap()
                .squeeze(1)
                .unwrap();
            let s = (kh
                .matmul(&qh.unsqueeze(1).unwrap())
                .unwrap()
                .squeeze(1)
                .unwrap()
                * scale)
                .unwrap();
            let p = candle_core::Tensor::exp(
                &s.broadcast_sub(&s.max_keepdim(D::Minus1).unwrap()).unwrap(),
            )
            .unwrap();
            let p = p.broadcast_div(&p.sum_keepdim(D::Minus1).unwrap()).unwrap();
            rows.push(
                p.unsqueeze(0)
                    .unwrap()
                    .matmul(&vh)
                    .unwrap()
                    .squeeze(0)
                    .unwrap(),
            );
        }
    }
    Tensor::stack(&rows, 0)
        .unwrap()
        .reshape((n, heads * d))
        .unwrap()
}

#[test]
fn matches_contiguous_attention_across_scattered_blocks() {
    let dev = Device::Cpu;
    let (heads, kvh, d, bs) = (4, 2, 8, 4);
    let shape = KvCacheShape {
        num_layers: 1,
        num_blocks: 8,
        block_size: bs,
        kv_heads: kvh,
        head_dim: d,
    };
    let cache = KvCache::new(shape, KvDtype::F32, &dev).unwrap();
    let mut blocks = BlockManager::new(8, bs);
    // A decoy sequence takes the first blocks so the real one is not at slot 0.
    blocks.allocate(99, &[1, 2, 3, 4, 5]).unwrap();
    let ctx = 11;
    blocks.allocate(1, &vec![0; ctx]).unwrap();
    let k = Tensor::randn(0f32, 1., (ctx, kvh, d), &dev).unwrap();
    let v = Tensor::randn(0f32, 1., (ctx, kvh, d), &dev).unwrap();
    let slots = Tensor::new(blocks.slots(1, 0, ctx).unwrap(), &dev).unwrap();
    cache.write(0, &slots, &k, &v).unwrap();
    let (kc, vc) = cache.layer(0);
    let scale = 1.0 / (d as f64).sqrt();
    // Prefill of the last 5 positions (masked), then a single decode query, with
    // and without a sliding window of 3 positions.
    for (n, window) in [(5, None), (1, None), (5, Some(3)), (1, Some(3))] {
        let first = ctx - n;
        let q = Tensor::randn(0f32, 1., (n, heads, d), &dev).unwrap();
        let got = paged_attention(&q, kc, vc, &slots, first, scale, window).unwrap();
        let want = reference(&q, &k, &v, first, scale, window.unwrap_or(usize::MAX));
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-5, "n={n} window={window:?}: max abs error {err}");
    }
}

#[test]
fn prompt_attention_matches_contiguous_attention() {
    for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Bf16, KvDtype::Q8_0] {
        prompt_attention_matches_contiguous_attention_in(dtype);
    }
}

/// The prompt kernel reading a `dtype` cache in place, against plain
/// attention over the values the cache holds: prompts of several blocks of
/// queries (the kernel's work items), whole or after a cached prefix, with
/// windows that start inside a block and before the prompt.
fn prompt_attention_matches_contiguous_attention_in(dtype: KvDtype) {
    let dev = Device::Cpu;
    let (heads, kvh, d, bs) = (6, 2, 32, 4);
    let shape = KvCacheShape {
        num_layers: 1,
        num_blocks: 40,
        block_size: bs,
        kv_heads: kvh,
        head_dim: d,
    };
    let cache = KvCache::new(shape, dtype, &dev).unwrap();
    let mut blocks = BlockManager::new(40, bs);
    blocks.allocate(99, &[1, 2, 3, 4, 5]).unwrap();
    let ctx = 101;
    blocks.allocate(1, &vec![0; ctx]).unwrap();
    let slots = Tensor::new(blocks.slots(1, 0, ctx).unwrap(), &dev).unwrap();
    let k = Tensor::randn(0f32, 1., (ctx, kvh * d), &dev).unwrap();
    let v = Tensor::randn(0f32, 1., (ctx, kvh * d), &dev).unwrap();
    cache.write(0, &slots, &k, &v).unwrap();
    let (kc, vc) = cache.layer(0);
    // What the cache holds (rounded to its dtype), as contiguous tensors.
    let held = |c: &CacheRows| c.gather(&slots).unwrap().reshape((ctx, kvh, d)).unwrap();
    let (k, v) = (held(kc), held(vc));
    let scale = 1.0 / (d as f64).sqrt();
    for (n, window) in [
        (ctx, None),
        (ctx, Some(20)),
        (70, None),
        (70, Some(45)),
        (1, Some(7)),
    ] {
        let first = ctx - n;
        let q = Tensor::randn(0f32, 1., (n, heads, d), &dev).unwrap();
        let got = paged_attention(&q, kc, vc, &slots, first, scale, window).unwrap();
        let want = reference(&q, &k, &v, first, scale, window.unwrap_or(usize::MAX));
        let err = max_abs_diff(&got, &want);
        assert!(
            err < 1e-5,
            "{dtype:?}, n={n}, window={window:?}: max abs error {err}"
        );
    }
}

#[test]
fn copy_blocks_duplicates_every_layer() {
    for dtype in [KvDtype::F32, KvDtype::Q8_0] {
        copy_blocks_duplicates_every_layer_in(dtype);
    }
}

fn copy_blocks_duplicates_every_layer_in(dtype: KvDtype) {
    let dev = Device::Cpu;
    let shape = KvCacheShape {
        num_layers: 2,
        num_blocks: 4,
        block_size: 2,
        kv_heads: 1,
        head_dim: 32,
    };
    let cache = KvCache::new(shape, dtype, &dev).unwrap();
    let k = Tensor::randn(0f32, 1., (2, 32), &dev).unwrap();
    let slots = Tensor::new(&[2u32, 3], &dev).unwrap();
    for layer in 0..2 {
        cache.write(layer, &slots, &k, &(&k * 2.).unwrap()).unwrap();
    }
    cache
        .copy_blocks(&[mistralrs_paged_attn::BlockCopy { src: 1, dst: 3 }])
        .unwrap();
    let copied = Tensor::new(&[6u32, 7], &dev).unwrap();
    let rows = |c: &CacheRows, s: &Tensor| c.gather(s).unwrap().to_vec2::<f32>().unwrap();
    for layer in 0..2 {
        let (kc, vc) = cache.layer(layer);
        assert_eq!(rows(kc, &copied), rows(kc, &slots), "{dtype}");
        assert_eq!(rows(vc, &copied), rows(vc, &slots), "{dtype}");
    }
}

/// A Q8_0 cache gives back what was written within about half a step of each
/// block's scale (max |x| / 127), and refuses heads that aren't whole blocks.
#[test]
fn a_q8_0_cache_rounds_each_block_to_its_scale() {
    let dev = Device::Cpu;
    let shape = KvCacheShape {
        num_layers: 1,
        num_blocks: 4,
        block_size: 4,
        kv_heads: 2,
        head_dim: 64,
    };
    let cache = KvCache::new(shape, KvDtype::Q8_0, &dev).unwrap();
    let k = (Tensor::randn(0f32, 1., (5, 128), &dev).unwrap() * 3.).unwrap();
    let slots = Tensor::new(&[9u32, 2, 5, 14, 0], &dev).unwrap();
    cache.write(0, &slots, &k, &k).unwrap();
    let got = cache.layer(0).0.gather(&slots).unwrap();
    let want = k.to_vec2::<f32>().unwrap();
    for (got, want) in got.to_vec2::<f32>().unwrap().iter().zip(&want) {
        for (got, want) in got.chunks(32).zip(want.chunks(32)) {
            let step = want.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.;
            // Half a step from rounding, plus up to 127 steps times the f16
            // scale's relative error (2^-11).
            let bound = step * (0.5 + 127. / 2048.) * 1.01;
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= bound, "{g} vs {w} (step {step})");
            }
        }
    }
    assert_eq!(shape.bytes(KvDtype::Q8_0), 2 * 16 * 128 / 32 * 34);
    let odd = KvCacheShape {
        head_dim: 48,
        ..shape
    };
    let err = KvCache::new(odd, KvDtype::Q8_0, &dev).unwrap_err();
    assert!(err.to_string().contains("multiple of 32"), "{err}");
}

#[test]
fn batched_decode_matches_per_sequence_attention() {
    for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Bf16, KvDtype::Q8_0] {
        batched_decode_matches_per_sequence_attention_in(dtype);
    }
}

/// The decode kernel, reading a `dtype` cache in place, against the prompt
/// kernel with one query per sequence, and against itself with the sequence
/// alone.
/// The long context is split into runs of keys merged afterwards; the windows
/// start inside a run and across a run's end.
fn batched_decode_matches_per_sequence_attention_in(dtype: KvDtype) {
    let dev = Device::Cpu;
    let (heads, kvh, d, bs) = (4, 2, 32, 4);
    let shape = KvCacheShape {
        num_layers: 1,
        num_blocks: 160,
        block_size: bs,
        kv_heads: kvh,
        head_dim: d,
    };
    let cache = KvCache::new(shape, dtype, &dev).unwrap();
    let mut blocks = BlockManager::new(160, bs);
    let lens = [3usize, 9, 600];
    let mut all_slots = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        blocks.allocate(i as u64, &vec![0; len]).unwrap();
        let slots = blocks.slots(i as u64, 0, len).unwrap();
        let k = Tensor::randn(0f32, 1., (len, kvh, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (len, kvh, d), &dev).unwrap();
        cache
            .write(0, &Tensor::new(slots.as_slice(), &dev).unwrap(), &k, &v)
            .unwrap();
        all_slots.push(slots);
    }
    let (kc, vc) = cache.layer(0);
    let max_ctx = *lens.iter().max().unwrap();
    let padded: Vec<u32> = all_slots
        .iter()
        .flat_map(|s| {
            s.iter()
                .copied()
                .chain(std::iter::repeat(s[0]))
                .take(max_ctx)
        })
        .collect();
    let padded = Tensor::new(padded, &dev).unwrap();
    let q = Tensor::randn(0f32, 1., (lens.len(), heads, d), &dev).unwrap();
    let scale = 1.0 / (d as f64).sqrt();
    for window in [None, Some(4), Some(300)] {
        let batched = paged_attention_decode(&q, kc, vc, &padded, &lens, scale, window).unwrap();
        for (i, &len) in lens.iter().enumerate() {
            let slots = Tensor::new(all_slots[i].as_slice(), &dev).unwrap();
            let q_i = q.narrow(0, i, 1).unwrap();
            let alone =
                paged_attention_decode(&q_i, kc, vc, &slots, &[len], scale, window).unwrap();
            assert_eq!(
                alone.to_vec2::<f32>().unwrap(),
                batched.narrow(0, i, 1).unwrap().to_vec2::<f32>().unwrap(),
                "{dtype:?}, sequence {i}, window {window:?}: alone and batched differ"
            );
            let one = paged_attention(&q_i, kc, vc, &slots, len - 1, scale, window).unwrap();
            let err = max_abs_diff(&batched.narrow(0, i, 1).unwrap(), &one);
            assert!(
                err < 1e-5,
                "{dtype:?}, sequence {i}, window {window:?}: {err}"
            );
        }
    }
}
