//! Paged KV cache for the inference engine.
//!
//! The cache is split into fixed-size blocks of token slots. A [`BlockManager`]
//! hands blocks out to sequences (their block tables), shares full blocks between
//! sequences with the same prefix (prefix caching by a chained hash of the block's
//! tokens, with reference counts and copy-on-write), and keeps unused cached blocks
//! around until the space is needed. The [`KvCache`] holds the key and value tensors
//! for every layer, and [`paged_attention`] computes attention for a sequence by
//! reading its keys and values through its slot list.
//!
//! Nothing here knows about requests or models: the scheduler in `mistralrs-core`
//! decides who gets blocks, this crate only keeps the books and does the math.

mod attention;
mod block_manager;
mod cpu_decode;
mod cpu_prefill;
mod cpu_rows;
mod cpu_softmax;
#[cfg(feature = "cuda")]
mod cuda_decode;
mod error;
mod kv_cache;
mod kv_dtype;

pub use attention::{paged_attention, paged_attention_decode};
pub use block_manager::{BlockCopy, BlockId, BlockManager, BlockStats, SeqId};
pub use error::{Error, Result};
pub use kv_cache::{CacheRows, KvCache, KvCacheShape};
pub use kv_dtype::KvDtype;
