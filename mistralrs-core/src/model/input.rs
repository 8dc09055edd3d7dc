//! One forward pass's worth of tokens from several sequences, flattened.
//!
//! The tokens of all scheduled sequences (whole prefill chunks and single decode
//! tokens alike) are laid end to end, so every projection runs as one matrix
//! product over the batch; only attention goes sequence by sequence, over each
//! one's slots in the paged cache.

use candle_core::{Device, Tensor};

use crate::Result;

/// What the scheduler asks of the model for one sequence in a step.
#[derive(Debug, Clone)]
pub struct SeqChunk<'a> {
    /// The tokens to run, at positions `first_pos..first_pos + tokens.len()`.
    pub tokens: &'a [u32],
    /// Position of the first token.
    pub first_pos: usize,
    /// Cache slot of every position `0..first_pos + tokens.len()`.
    pub context_slots: &'a [u32],
    /// Whether the caller needs logits for the last token.
    pub wants_logits: bool,
}

/// Attention bookkeeping for one sequence of a [`BatchInput`].
#[derive(Debug, Clone)]
pub(crate) struct SeqSpan {
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) first_pos: usize,
    pub(crate) context_slots: Tensor,
}

/// The decode-only sequences of a batch (one new token each), whose attention
/// runs in one call (the decode kernel).
#[derive(Debug, Clone)]
pub(crate) struct DecodeBatch {
    /// Indices into `spans` of the sequences in the batch.
    pub(crate) spans: Vec<usize>,
    /// Rows of the flat batch holding their tokens.
    pub(crate) rows: Tensor,
    /// Context slots, each sequence padded to the longest: `[n * max_ctx]`.
    pub(crate) slots: Tensor,
    /// Context length of each.
    pub(crate) context_lens: Vec<usize>,
}

impl DecodeBatch {
    /// Batches the single-token chunks, when there are any.
    fn new(chunks: &[SeqChunk<'_>], offsets: &[usize], device: &Device) -> Result<Option<Self>> {
        let spans: Vec<usize> = (0..chunks.len())
            .filter(|&i| chunks[i].tokens.len() == 1)
            .collect();
        if spans.is_empty() {
            return Ok(None);
        }
        let max_ctx = spans
            .iter()
            .map(|&i| chunks[i].context_slots.len())
            .max()
            .unwrap_or(0);
        let mut slots = Vec::with_capacity(spans.len() * max_ctx);
        for &i in &spans {
            let own = chunks[i].context_slots;
            let pad = own.first().copied().unwrap_or(0);
            slots.extend(
                own.iter()
                    .copied()
                    .chain(std::iter::repeat(pad))
                    .take(max_ctx),
            );
        }
        let rows: Vec<u32> = spans.iter().map(|&i| offsets[i] as u32).collect();
        Ok(Some(Self {
            context_lens: spans
                .iter()
                .map(|&i| chunks[i].context_slots.len())
                .collect(),
            rows: Tensor::new(rows, device)?,
            slots: Tensor::new(slots, device)?,
            spans,
        }))
    }
}

/// Tensors for one forward pass.
#[derive(Debug, Clone)]
pub struct BatchInput {
    pub(crate) tokens: Tensor,
    pub(crate) positions: Tensor,
    pub(crate) new_slots: Tensor,
    pub(crate) spans: Vec<SeqSpan>,
    /// Rows of the flat batch whose logits are wanted, in chunk order.
    pub(crate) logit_rows: Tensor,
    /// The single-token sequences, attended to together.
    pub(crate) decode: Option<DecodeBatch>,
}

impl BatchInput {
    /// Flattens `chunks` into tensors on `device`.
    pub fn new(chunks: &[SeqChunk<'_>], device: &Device) -> Result<Self> {
        let (mut tokens, mut positions, mut new_slots, mut spans, mut rows) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for chunk in chunks {
            let offset = tokens.len();
            let n = chunk.tokens.len();
            tokens.extend_from_slice(chunk.tokens);
            positions.extend((chunk.first_pos..chunk.first_pos + n).map(|p| p as u32));
            new_slots.extend_from_slice(&chunk.context_slots[chunk.first_pos..chunk.first_pos + n]);
            spans.push(SeqSpan {
                offset,
                len: n,
                first_pos: chunk.first_pos,
                context_slots: Tensor::new(chunk.context_slots, device)?,
            });
            if chunk.wants_logits {
                rows.push((offset + n - 1) as u32);
            }
        }
        let offsets: Vec<usize> = spans.iter().map(|s: &SeqSpan| s.offset).collect();
        Ok(Self {
            decode: DecodeBatch::new(chunks, &offsets, device)?,
            tokens: Tensor::new(tokens, device)?,
            positions: Tensor::new(positions, device)?,
            new_slots: Tensor::new(new_slots, device)?,
            spans,
            logit_rows: Tensor::new(rows, device)?,
        })
    }
}
