//! Lock cost: std, parking_lot and the engine's seam (`mistralrs_core::sync`, the
//! instrumented wrapper with `prometheus-locks`, std without), uncontended and
//! with 2, 4 and 8 threads, for a mutex and a read-heavy (9 reads : 1 write)
//! RwLock. One op = acquire, a counter update, release.
//!
//! `cargo bench -p mistralrs-core --bench locks` (instrumented) and
//! `cargo bench -p mistralrs-core --bench locks --no-default-features` (plain).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// The operations the benchmark needs from every lock type.
trait BenchLock: Send + Sync + 'static {
    fn new() -> Self;
    fn update(&self);
    fn read(&self) -> u64;
}

impl BenchLock for std::sync::Mutex<u64> {
    fn new() -> Self {
        std::sync::Mutex::new(0)
    }
    fn update(&self) {
        *self.lock().unwrap() += 1;
    }
    fn read(&self) -> u64 {
        *self.lock().unwrap()
    }
}

impl BenchLock for parking_lot::Mutex<u64> {
    fn new() -> Self {
        parking_lot::Mutex::new(0)
    }
    fn update(&self) {
        *self.lock() += 1;
    }
    fn read(&self) -> u64 {
        *self.lock()
    }
}

impl BenchLock for mistralrs_core::sync::Mutex<u64> {
    fn new() -> Self {
        mistralrs_core::sync::Mutex::new("bench_mutex", 0)
    }
    fn update(&self) {
        *self.lock() += 1;
    }
    fn read(&self) -> u64 {
        *self.lock()
    }
}

impl BenchLock for std::sync::RwLock<u64> {
    fn new() -> Self {
        std::sync::RwLock::new(0)
    }
    fn update(&self) {
        *self.write().unwrap() += 1;
    }
    fn read(&self) -> u64 {
        *std::sync::RwLock::read(self).unwrap()
    }
}

impl BenchLock for parking_lot::RwLock<u64> {
    fn new() -> Self {
        parking_lot::RwLock::new(0)
    }
    fn update(&self) {
        *self.write() += 1;
    }
    fn read(&self) -> u64 {
        *parking_lot::RwLock::read(self)
    }
}

impl BenchLock for mistralrs_core::sync::RwLock<u64> {
    fn new() -> Self {
        mistralrs_core::sync::RwLock::new("bench_rwlock", 0)
    }
    fn update(&self) {
        *self.write() += 1;
    }
    fn read(&self) -> u64 {
        *mistralrs_core::sync::RwLock::read(self)
    }
}

/// Time for `iters` ops spread over `threads` threads; `reads_per_write` 0 means
/// every op writes.
fn run<L: BenchLock>(threads: usize, iters: u64, reads_per_write: u64) -> Duration {
    let lock = Arc::new(L::new());
    let per_thread = iters.div_ceil(threads as u64);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (lock, barrier) = (Arc::clone(&lock), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    if reads_per_write > 0 && i % (reads_per_write + 1) != 0 {
                        black_box(lock.read());
                    } else {
                        lock.update();
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn bench_family<M: BenchLock, P: BenchLock, S: BenchLock>(
    c: &mut Criterion,
    group: &str,
    reads_per_write: u64,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for threads in [1, 2, 4, 8] {
        g.bench_with_input(BenchmarkId::new("std", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run::<M>(t, iters, reads_per_write))
        });
        g.bench_with_input(
            BenchmarkId::new("parking_lot", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| run::<P>(t, iters, reads_per_write)),
        );
        g.bench_with_input(BenchmarkId::new("seam", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run::<S>(t, iters, reads_per_write))
        });
    }
    g.finish();
}

fn locks(c: &mut Criterion) {
    use mistralrs_core::sync;
    bench_family::<std::sync::Mutex<u64>, parking_lot::Mutex<u64>, sync::Mutex<u64>>(c, "mutex", 0);
    bench_family::<std::sync::RwLock<u64>, parking_lot::RwLock<u64>, sync::RwLock<u64>>(
        c,
        "rwlock_read_heavy",
        9,
    );
}

criterion_group!(benches, locks);
criterion_main!(benches);
