//! The one error type of the KV cache.

/// What can go wrong while managing or using the paged KV cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not enough free blocks for the request; the caller may preempt and retry.
    #[error("out of KV cache blocks: need {needed}, {free} free")]
    OutOfBlocks {
        /// Blocks the operation needed.
        needed: usize,
        /// Blocks that were free.
        free: usize,
    },
    /// The sequence has no block table (never allocated, or already freed).
    #[error("unknown sequence {0}")]
    UnknownSequence(u64),
    /// The sequence already has a block table.
    #[error("sequence {0} is already allocated")]
    AlreadyAllocated(u64),
    /// A cache that this model's shape can't have.
    #[error("{0}")]
    Unsupported(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
