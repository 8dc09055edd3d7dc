//! Block bookkeeping: allocator, per-sequence block tables, prefix cache and
//! copy-on-write.
//!
//! A block is a run of `block_size` token slots. Every block has a reference count:
//! the number of sequences whose table holds it. A full block whose keys and values
//! are computed is *committed* under a chained hash of its tokens (the hash of the
//! previous block and this block's tokens), so a later sequence with the same prefix
//! takes the block instead of recomputing it. When the last sequence lets go of a
//! committed block it stays in the prefix cache as *evictable*; it is reused in
//! least-recently-freed order only when no never-used block is left.
//!
//! Writing into a block that another sequence also holds would corrupt that
//! sequence, so [`BlockManager::prepare_write`] first gives the writer a private
//! copy and returns the copies the KV cache must make ([`BlockCopy`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::{Error, Result};

/// Index of a block in the KV cache.
pub type BlockId = u32;
/// Identifier of a sequence, chosen by the caller.
pub type SeqId = u64;

/// A block the KV cache must copy before a sequence writes into its private copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCopy {
    /// Shared block to read from.
    pub src: BlockId,
    /// Fresh block that becomes the writer's own.
    pub dst: BlockId,
}

/// Counters for dashboards and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Blocks in the cache.
    pub total: usize,
    /// Blocks that can be handed out now (never used, or cached and unreferenced).
    pub free: usize,
    /// Full prompt blocks looked up in the prefix cache.
    pub prefix_queries: u64,
    /// Of those, blocks found and reused.
    pub prefix_hits: u64,
}

/// The identity of a committed block's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlockKey {
    parent: u64,
    tokens: Vec<u32>,
}

impl BlockKey {
    fn hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.parent.hash(&mut h);
        self.tokens.hash(&mut h);
        h.finish()
    }
}

#[derive(Debug, Default)]
struct Block {
    ref_count: u32,
    /// Set while the block is in the prefix cache.
    key: Option<BlockKey>,
    /// Position in the eviction order while unreferenced and cached.
    lru_tick: u64,
}

#[derive(Debug, Default)]
struct SeqTable {
    blocks: Vec<BlockId>,
    /// Leading blocks that are committed to the prefix cache (or taken from it).
    committed: usize,
    /// Chained hash of the last committed block (0 before the first).
    last_hash: u64,
}

/// Allocator, block tables and prefix cache for one KV cache.
///
/// # Examples
///
/// ```
/// use mistralrs_paged_attn::BlockManager;
///
/// let mut blocks = BlockManager::new(8, 4);
/// let prompt = [1, 2, 3, 4, 5, 6];
/// let cached = blocks.allocate(1, &prompt).unwrap();
/// assert_eq!(cached, 0); // nothing cached yet
/// assert_eq!(blocks.stats().free, 6);
/// blocks.commit(1, &prompt, prompt.len()).unwrap();
/// blocks.free(1);
/// // The first block (tokens 1..=4) is now found by a second sequence.
/// assert_eq!(blocks.allocate(2, &prompt).unwrap(), 4);
/// ```
#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    blocks: Vec<Block>,
    /// Unreferenced blocks holding nothing worth keeping.
    never_used: VecDeque<BlockId>,
    /// Unreferenced committed blocks, oldest first.
    evictable: BTreeMap<u64, BlockId>,
    prefix: HashMap<u64, BlockId>,
    tables: HashMap<SeqId, SeqTable>,
    tick: u64,
    prefix_queries: u64,
    prefix_hits: u64,
}

impl BlockManager {
    /// A manager for `num_blocks` blocks of `block_size` token slots each.
    #[track_caller]
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        assert!(block_size > 0, "block_size must be positive");
        assert!(
            u32::try_from(num_blocks).is_ok(),
            "num_blocks must fit in a u32"
        );
        Self {
            block_size,
            blocks: (0..num_blocks).map(|_| Block::default()).collect(),
            never_used: (0..num_blocks as BlockId).collect(),
            evictable: BTreeMap::new(),
            prefix: HashMap::new(),
            tables: HashMap::new(),
            tick: 0,
            prefix_queries: 0,
            prefix_hits: 0,
        }
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks that hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// Current counters.
    pub fn stats(&self) -> BlockStats {
        BlockStats {
            total: self.blocks.len(),
            free: self.num_free(),
            prefix_queries: self.prefix_queries,
            prefix_hits: self.prefix_hits,
        }
    }

    fn num_free(&self) -> usize {
        self.never_used.len() + self.evictable.len()
    }

    /// Whether a sequence has a block table.
    pub fn contains(&self, seq: SeqId) -> bool {
        self.tables.contains_key(&seq)
    }

    /// Gives `seq` a block table for `tokens`, reusing cached prefix blocks.
    ///
    /// Returns how many leading tokens already have their keys and values in the
    /// cache. At least the last token is always left to compute, since the caller
    /// needs its logits. Fails without side effects when blocks run short.
    pub fn allocate(&mut self, seq: SeqId, tokens: &[u32]) -> Result<usize> {
        if self.tables.contains_key(&seq) {
            return Err(Error::AlreadyAllocated(seq));
        }
        let (matched, last_hash) = self.match_prefix(tokens);
        let taken_from_free = matched
            .iter()
            .filter(|&&b| self.blocks[b as usize].ref_count == 0)
            .count();
        let fresh = self.blocks_for(tokens.len()) - matched.len();
        let needed = fresh + taken_from_free;
        if needed > self.num_free() {
            return Err(Error::OutOfBlocks {
                needed,
                free: self.num_free(),
            });
        }
        self.prefix_queries += (tokens.len() / self.block_size) as u64;
        self.prefix_hits += matched.len() as u64;
        let mut table = SeqTable {
            blocks: Vec::with_capacity(matched.len() + fresh),
            committed: matched.len(),
            last_hash,
        };
        for &block in &matched {
            self.retain(block);
            table.blocks.push(block);
        }
        for _ in 0..fresh {
            table.blocks.push(self.take_free()?);
        }
        self.tables.insert(seq, table);
        let cached = (matched.len() * self.block_size).min(tokens.len().saturating_sub(1));
        Ok(cached)
    }

    /// Leading full blocks of `tokens` found in the prefix cache, and the chained
    /// hash of the last one.
    fn match_prefix(&self, tokens: &[u32]) -> (Vec<BlockId>, u64) {
        let mut matched = Vec::new();
        let mut parent = 0;
        for chunk in tokens.chunks_exact(self.block_size) {
            let key = BlockKey {
                parent,
                tokens: chunk.to_vec(),
            };
            let hash = key.hash();
            match self.prefix.get(&hash) {
                Some(&block) if self.blocks[block as usize].key.as_ref() == Some(&key) => {
                    matched.push(block);
                    parent = hash;
                }
                _ => break,
            }
        }
        (matched, parent)
    }

    /// Makes `seq`'s table cover `end` tokens and gives it private copies of any
    /// block in `start..end` (the range it is about to write) that is shared with
    /// another sequence or committed to the prefix cache: committed blocks never
    /// change, so the cache can hand them to anyone.
    ///
    /// Fails without side effects when blocks run short; the caller may preempt
    /// another sequence and retry.
    pub fn prepare_write(
        &mut self,
        seq: SeqId,
        start: usize,
        end: usize,
    ) -> Result<Vec<BlockCopy>> {
        let block_size = self.block_size;
        let table = self.tables.get(&seq).ok_or(Error::UnknownSequence(seq))?;
        let grow = self.blocks_for(end).saturating_sub(table.blocks.len());
        let first = start / block_size;
        let shared: Vec<usize> = (first..table.blocks.len().min(end.div_ceil(block_size)))
            .filter(|&i| {
                let block = &self.blocks[table.blocks[i] as usize];
                block.ref_count > 1 || block.key.is_some()
            })
            .collect();
        let needed = grow + shared.len();
        if needed > self.num_free() {
            return Err(Error::OutOfBlocks {
                needed,
                free: self.num_free(),
            });
        }
        let mut copies = Vec::with_capacity(shared.len());
        for index in shared {
            let dst = self.take_free()?;
            let table = self.table_mut(seq)?;
            let src = std::mem::replace(&mut table.blocks[index], dst);
            // The copy is private until committed again.
            table.committed = table.committed.min(index);
            self.release(src);
            copies.push(BlockCopy { src, dst });
        }
        for _ in 0..grow {
            let block = self.take_free()?;
            self.table_mut(seq)?.blocks.push(block);
        }
        Ok(copies)
    }

    /// Slot indices (block * block_size + offset) of positions `start..end`.
    pub fn slots(&self, seq: SeqId, start: usize, end: usize) -> Result<Vec<u32>> {
        let table = self.tables.get(&seq).ok_or(Error::UnknownSequence(seq))?;
        let bs = self.block_size;
        (start..end)
            .map(|pos| {
                let block = *table
                    .blocks
                    .get(pos / bs)
                    .ok_or(Error::UnknownSequence(seq))?;
                Ok(block * bs as u32 + (pos % bs) as u32)
            })
            .collect()
    }

    /// Enters into the prefix cache every full block of `tokens` whose keys and
    /// values are computed (the first `computed` tokens).
    pub fn commit(&mut self, seq: SeqId, tokens: &[u32], computed: usize) -> Result<()> {
        let bs = self.block_size;
        let full = computed.min(tokens.len()) / bs;
        let table = self.tables.get(&seq).ok_or(Error::UnknownSequence(seq))?;
        let (start, mut parent) = (table.committed, table.last_hash);
        let blocks: Vec<BlockId> = table
            .blocks
            .get(start..full)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        for (i, block) in (start..full).zip(blocks) {
            let key = BlockKey {
                parent,
                tokens: tokens[i * bs..(i + 1) * bs].to_vec(),
            };
            let hash = key.hash();
            if !self.prefix.contains_key(&hash) && self.blocks[block as usize].key.is_none() {
                self.prefix.insert(hash, block);
                self.blocks[block as usize].key = Some(key);
            }
            parent = hash;
        }
        if full > start {
            let table = self.table_mut(seq)?;
            table.committed = full;
            table.last_hash = parent;
        }
        Ok(())
    }

    /// Gives `child` the same blocks as `parent`; later writes copy on write.
    pub fn fork(&mut self, parent: SeqId, child: SeqId) -> Result<()> {
        if self.tables.contains_key(&child) {
            return Err(Error::AlreadyAllocated(child));
        }
        let table = self
            .tables
            .get(&parent)
            .ok_or(Error::UnknownSequence(parent))?;
        let copy = SeqTable {
            blocks: table.blocks.clone(),
            committed: table.committed,
            last_hash: table.last_hash,
        };
        for &block in &copy.blocks {
            self.retain(block);
        }
        self.tables.insert(child, copy);
        Ok(())
    }

    /// Drops `seq`'s table. Committed blocks stay cached until evicted. Freeing an
    /// unknown sequence does nothing, so cancellation paths may call it twice.
    pub fn free(&mut self, seq: SeqId) {
        if let Some(table) = self.tables.remove(&seq) {
            for block in table.blocks {
                self.release(block);
            }
        }
    }

    fn table_mut(&mut self, seq: SeqId) -> Result<&mut SeqTable> {
        self.tables.get_mut(&seq).ok_or(Error::UnknownSequence(seq))
    }

    fn retain(&mut self, block: BlockId) {
        let b = &mut self.blocks[block as usize];
        if b.ref_count == 0 {
            self.evictable.remove(&b.lru_tick);
        }
        b.ref_count += 1;
    }

    fn release(&mut self, block: BlockId) {
        let b = &mut self.blocks[block as usize];
        b.ref_count -= 1;
        if b.ref_count > 0 {
            return;
        }
        if b.key.is_some() {
            self.tick += 1;
            b.lru_tick = self.tick;
            self.evictable.insert(self.tick, block);
        } else {
            self.never_used.push_back(block);
        }
    }

    /// A block with no references and no cached contents, evicting the oldest
    /// cached block when no never-used block is left.
    fn take_free(&mut self) -> Result<BlockId> {
        let block = match self.never_used.pop_front() {
            Some(block) => block,
            None => {
                let (_, block) = self
                    .evictable
                    .pop_first()
                    .ok_or(Error::OutOfBlocks { needed: 1, free: 0 })?;
                if let Some(key) = self.blocks[block as usize].key.take() {
                    self.prefix.remove(&key.hash());
                }
                block
            }
        };
        self.blocks[block as usize].ref_count = 1;
        Ok(block)
    }
}
