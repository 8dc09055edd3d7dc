//! The lock seam: the same API in both builds; with `prometheus-locks`, contended
//! acquisitions are counted and timed and holds are sampled under the lock's name.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::Arc;
use std::time::{Duration, Instant};

use mistralrs_core::sync::{Mutex, RwLock};

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn contention_is_counted_and_every_counted_wait_is_timed() {
    let lock = Arc::new(Mutex::new("test_contended", 0u64));
    let series = |name: &str| {
        sample(
            &mistralrs_core::metrics::metrics().render(),
            &format!(r#"mistralrs_lock_{name}{{lock="test_contended"}}"#),
        )
    };
    // The lock is held while three threads ask for it, so each must wait,
    // whatever the scheduler does (a busy machine may otherwise run them one
    // after the other without ever contending).
    let held = lock.lock();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || *lock.lock() += 1)
        })
        .collect();
    if cfg!(feature = "prometheus-locks") {
        // A waiter counts its contention before it blocks.
        let deadline = Instant::now() + Duration::from_secs(30);
        while series("contended_total") < 3.0 {
            assert!(Instant::now() < deadline, "three waiters never contended");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(held);
    for waiter in waiters {
        waiter.join().unwrap();
    }
    // Acquisitions 2..=1281 of this thread; 1 in 64 of its holds is timed.
    for _ in 0..1280 {
        *lock.lock() += 1;
    }
    assert_eq!(*lock.lock(), 1283, "the lock still excludes");
    assert_eq!(lock.name(), "test_contended");
    if cfg!(feature = "prometheus-locks") {
        assert_eq!(series("contended_total"), 3.0);
        assert_eq!(
            series("wait_seconds_count"),
            3.0,
            "each contended acquisition has one wait sample"
        );
        // Holds 64, 128, ..., 1280 of this thread, plus none of the waiters'
        // first acquisitions.
        assert_eq!(series("hold_seconds_count"), 20.0);
    } else {
        assert!(
            !mistralrs_core::metrics::metrics()
                .render()
                .contains("mistralrs_lock_")
        );
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
