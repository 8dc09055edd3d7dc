//! Allocation, freeing, sharing, eviction, exhaustion and copy-on-write.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use mistralrs_paged_attn::{BlockCopy, BlockManager, Error};

fn tokens(n: u32) -> Vec<u32> {
    (100..100 + n).collect()
}

#[test]
fn allocation_takes_ceil_blocks_and_free_returns_them() {
    let mut m = BlockManager::new(10, 4);
    assert_eq!(m.allocate(1, &tokens(9)).unwrap(), 0);
    assert_eq!(m.stats().free, 7);
    assert_eq!(m.slots(1, 0, 9).unwrap().len(), 9);
    m.free(1);
    assert_eq!(m.stats().free, 10);
    m.free(1); // twice is harmless
    assert_eq!(m.stats().free, 10);
}

#[test]
fn slots_follow_the_block_table() {
    let mut m = BlockManager::new(4, 2);
    m.allocate(1, &[1, 2, 3]).unwrap();
    let slots = m.slots(1, 0, 3).unwrap();
    assert_eq!(
        slots[1],
        slots[0] + 1,
        "positions in one block are adjacent"
    );
    assert_eq!(slots[2] % 2, 0, "position 2 starts a new block");
}

#[test]
fn exhaustion_fails_without_side_effects() {
    let mut m = BlockManager::new(3, 4);
    m.allocate(1, &tokens(8)).unwrap();
    let err = m.allocate(2, &tokens(8)).unwrap_err();
    assert!(
        matches!(err, Error::OutOfBlocks { needed: 2, free: 1 }),
        "{err}"
    );
    assert!(!m.contains(2));
    assert_eq!(m.stats().free, 1);
    let err = m.prepare_write(1, 8, 16).unwrap_err();
    assert!(matches!(err, Error::OutOfBlocks { .. }));
    assert_eq!(m.stats().free, 1, "a failed grow takes nothing");
    assert!(m.prepare_write(1, 8, 12).unwrap().is_empty());
    assert_eq!(m.stats().free, 0);
}

#[test]
fn committed_prefix_is_shared_with_reference_counts() {
    let mut m = BlockManager::new(10, 4);
    let prompt = tokens(10); // 2 full blocks + 2 tokens
    m.allocate(1, &prompt).unwrap();
    m.commit(1, &prompt, 10).unwrap();
    let mut other = prompt.clone();
    other[9] = 7; // same two full blocks, different tail
    assert_eq!(m.allocate(2, &other).unwrap(), 8);
    assert_eq!(m.slots(1, 0, 8).unwrap(), m.slots(2, 0, 8).unwrap());
    assert_ne!(m.slots(1, 8, 10).unwrap(), m.slots(2, 8, 10).unwrap());
    let stats = m.stats();
    assert_eq!((stats.prefix_queries, stats.prefix_hits), (4, 2));
    assert_eq!(stats.free, 10 - 3 - 1);
    m.free(1);
    assert_eq!(m.stats().free, 10 - 3, "shared blocks stay with sequence 2");
    m.free(2);
    assert_eq!(m.stats().free, 10);
}

#[test]
fn different_prefix_does_not_match() {
    let mut m = BlockManager::new(10, 4);
    let a = tokens(8);
    m.allocate(1, &a).unwrap();
    m.commit(1, &a, 8).unwrap();
    let mut b = a.clone();
    b[0] = 1; // first block differs, so the second block's chain differs too
    assert_eq!(m.allocate(2, &b).unwrap(), 0);
}

#[test]
fn only_computed_blocks_are_committed() {
    let mut m = BlockManager::new(10, 4);
    let p = tokens(8);
    m.allocate(1, &p).unwrap();
    m.commit(1, &p, 5).unwrap(); // second block not computed yet
    m.free(1);
    assert_eq!(m.allocate(2, &p).unwrap(), 4);
}

#[test]
fn unreferenced_cached_blocks_are_evicted_oldest_first() {
    let mut m = BlockManager::new(4, 2);
    let (a, b) = (vec![1, 2], vec![3, 4]);
    for (seq, p) in [(1, &a), (2, &b)] {
        m.allocate(seq, &[p.as_slice(), &[9]].concat()).unwrap();
        m.commit(seq, p, 2).unwrap();
    }
    m.free(1);
    m.free(2);
    assert_eq!(m.stats().free, 4, "cached blocks count as free");
    // 3 blocks: both never-used blocks plus the oldest cached block (a's).
    m.allocate(3, &[5, 6, 7, 8, 0]).unwrap();
    m.free(3);
    assert_eq!(
        m.allocate(4, &[1, 2, 0]).unwrap(),
        0,
        "a's block was evicted"
    );
    assert_eq!(m.allocate(5, &[3, 4, 0]).unwrap(), 2, "b's block survived");
}

#[test]
fn full_prompt_hit_recomputes_last_token_in_a_private_copy() {
    let mut m = BlockManager::new(6, 4);
    let p = tokens(8);
    m.allocate(1, &p).unwrap();
    m.commit(1, &p, 8).unwrap();
    let cached = m.allocate(2, &p).unwrap();
    assert_eq!(cached, 7, "the last token is left to compute");
    let shared = m.slots(2, 4, 8).unwrap();
    let copies = m.prepare_write(2, cached, 8).unwrap();
    assert_eq!(copies.len(), 1);
    let BlockCopy { src, dst } = copies[0];
    assert_eq!(src, shared[0] / 4);
    assert_eq!(m.slots(2, 4, 8).unwrap()[0] / 4, dst);
    assert_eq!(
        m.slots(1, 4, 8).unwrap(),
        shared,
        "the first sequence keeps its block"
    );
    assert_eq!(m.slots(1, 0, 4).unwrap(), m.slots(2, 0, 4).unwrap());
}

#[test]
fn fork_shares_then_copies_on_write() {
    let mut m = BlockManager::new(6, 4);
    m.allocate(1, &tokens(6)).unwrap();
    m.fork(1, 2).unwrap();
    assert_eq!(m.stats().free, 4);
    let copies = m.prepare_write(2, 6, 7).unwrap();
    assert_eq!(copies.len(), 1, "the half-full shared block is copied");
    assert_eq!(m.stats().free, 3);
    assert!(
        m.prepare_write(1, 6, 7).unwrap().is_empty(),
        "now private to 1"
    );
    m.free(1);
    m.free(2);
    assert_eq!(m.stats().free, 6);
}

#[test]
fn unknown_sequences_are_errors() {
    let mut m = BlockManager::new(2, 2);
    assert!(matches!(m.slots(9, 0, 1), Err(Error::UnknownSequence(9))));
    assert!(matches!(
        m.prepare_write(9, 0, 1),
        Err(Error::UnknownSequence(9))
    ));
    m.allocate(1, &[1]).unwrap();
    assert!(matches!(
        m.allocate(1, &[1]),
        Err(Error::AlreadyAllocated(1))
    ));
}
