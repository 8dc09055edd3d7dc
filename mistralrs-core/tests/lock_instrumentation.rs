//! The lock seam: the same API in both builds; with `prometheus-locks`, contended
//! acquisitions are counted and timed and holds are sampled under the lock's name.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::{Arc, Barrier};

use mistralrs_core::sync::{Mutex, RwLock};

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn contention_is_counted_and_every_counted_wait_is_timed() {
    let lock = Arc::new(Mutex::new("test_contended", 0u64));
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (lock, barrier) = (Arc::clone(&lock), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..20_000 {
                    let mut n = lock.lock();
                    *n += 1;
                    std::hint::black_box(&mut *n);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*lock.lock(), 80_000, "the lock still excludes");
    assert_eq!(lock.name(), "test_contended");
    let text = mistralrs_core::metrics::metrics().render();
    let contended = sample(
        &text,
        r#"mistralrs_lock_contended_total{lock="test_contended"}"#,
    );
    let waits = sample(
        &text,
        r#"mistralrs_lock_wait_seconds_count{lock="test_contended"}"#,
    );
    let holds = sample(
        &text,
        r#"mistralrs_lock_hold_seconds_count{lock="test_contended"}"#,
    );
    if cfg!(feature = "prometheus-locks") {
        assert!(contended > 0.0, "4 threads on one lock contend");
        assert_eq!(
            waits, contended,
            "each contended acquisition has one wait sample"
        );
        // 1 in 64 acquisitions per thread is timed: 80_001 / 64 ~ 1250.
        assert!((1200.0..=1300.0).contains(&holds), "sampled holds: {holds}");
    } else {
        assert!(!text.contains("mistralrs_lock_"));
    }
}

#[test]
fn rwlock_readers_share_and_writers_exclude() {
    let lock = Arc::new(RwLock::new("test_rw", vec![1]));
    {
        let (a, b) = (lock.read(), lock.read());
        assert_eq!(a.len() + b.len(), 2, "two readers at once");
    }
    lock.write().push(2);
    assert_eq!(*lock.read(), [1, 2]);
    assert_eq!(lock.name(), "test_rw");
}
