// Decode attention over the paged KV cache on NVIDIA GPUs: one query per
// sequence reads its keys and values where they lie in the cache, through its
// slot list, as vLLM's paged-attention kernel does; no gathered copy of the
// context. One thread block per (sequence, head); each warp takes every
// WARPS-th key, its lanes split the head's dimensions, and keeps an online
// softmax (running max, sum and weighted values); the warps' partial results
// are merged at the end. Scores and sums are f32 whatever the cache holds.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define WARPS 4
#define MAX_HEAD_DIM 256
#define PER_LANE (MAX_HEAD_DIM / 32)

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// q: [n, heads, head_dim] f32; k, v: [rows, kv_heads * head_dim];
// slots: [n * max_ctx], sequence s's in s * max_ctx..; lens: [n];
// out: [n, heads * head_dim] f32. window 0: none.
template <typename T>
__device__ void paged_decode(const float *q, const T *k, const T *v, const uint32_t *slots,
                             const uint32_t *lens, float *out, int heads, int kv_heads,
                             int head_dim, int max_ctx, float scale, int window) {
  const int seq = blockIdx.x / heads;
  const int head = blockIdx.x % heads;
  const int kv_head = head / (heads / kv_heads);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int len = lens[seq];
  const int first = (window > 0 && len > window) ? len - window : 0;
  const int row_width = kv_heads * head_dim;

  float qv[PER_LANE];
  float acc[PER_LANE];
#pragma unroll
  for (int i = 0; i < PER_LANE; i++) {
    const int d = lane + i * 32;
    qv[i] = d < head_dim ? q[(seq * heads + head) * head_dim + d] * scale : 0.f;
    acc[i] = 0.f;
  }
  float max_score = -INFINITY;
  float sum = 0.f;
  for (int j = first + warp; j < len; j += WARPS) {
    const size_t row = (size_t)slots[(size_t)seq * max_ctx + j] * row_width + kv_head * head_dim;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + i * 32;
      if (d < head_dim) dot += qv[i] * to_f32(k[row + d]);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffff, dot, offset);
    const float new_max = fmaxf(max_score, dot);
    const float old_weight = __expf(max_score - new_max);
    const float weight = __expf(dot - new_max);
    sum = sum * old_weight + weight;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + i * 32;
      if (d < head_dim) acc[i] = acc[i] * old_weight + weight * to_f32(v[row + d]);
    }
    max_score = new_max;
  }

  __shared__ float warp_max[WARPS];
  __shared__ float warp_sum[WARPS];
  __shared__ float warp_acc[WARPS][MAX_HEAD_DIM];
  if (lane == 0) {
    warp_max[warp] = max_score;
    warp_sum[warp] = sum;
  }
#pragma unroll
  for (int i = 0; i < PER_LANE; i++) {
    const int d = lane + i * 32;
    if (d < head_dim) warp_acc[warp][d] = acc[i];
  }
  __syncthreads();
  float total_max = -INFINITY;
  for (int w = 0; w < WARPS; w++) total_max = fmaxf(total_max, warp_max[w]);
  float total_sum = 0.f;
  for (int w = 0; w < WARPS; w++) {
    // A warp that saw no key holds max -inf and sum 0: weight 0.
    if (warp_sum[w] > 0.f) total_sum += warp_sum[w] * __expf(warp_max[w] - total_max);
  }
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float value = 0.f;
    for (int w = 0; w < WARPS; w++) {
      if (warp_sum[w] > 0.f) value += warp_acc[w][d] * __expf(warp_max[w] - total_max);
    }
    out[(seq * heads + head) * head_dim + d] = value / total_sum;
  }
}

#define PAGED_DECODE(NAME, T)                                                                  \
  extern "C" __global__ void NAME(const float *q, const T *k, const T *v,                     \
                                  const uint32_t *slots, const uint32_t *lens, float *out,    \
                                  int heads, int kv_heads, int head_dim, int max_ctx,         \
                                  float scale, int window) {                                  \
    paged_decode<T>(q, k, v, slots, lens, out, heads, kv_heads, head_dim, max_ctx, scale,     \
                    window);                                                                  \
  }

PAGED_DECODE(paged_decode_f32, float)
PAGED_DECODE(paged_decode_f16, __half)
PAGED_DECODE(paged_decode_bf16, __nv_bfloat16)
