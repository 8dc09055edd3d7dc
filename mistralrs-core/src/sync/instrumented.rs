//! Instrumented `parking_lot` locks.
//!
//! The fast path is `try_lock`: when it succeeds nothing is timed, because reading
//! the clock (~40 ns here) costs more than an uncontended lock (~14 ns). Only when
//! the lock is taken does the slow path count the contention and time the wait.
//! Hold times are sampled: each thread times 1 of every 64 of its acquisitions
//! (a thread-local counter, so sampling adds no shared writes). The sampled hold
//! is recorded just before release, so it includes the histogram update.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use prometheus::{Histogram, IntCounter};

use crate::metrics::{LockLabel, metrics};

/// One in this many acquisitions per thread has its hold time recorded.
const HOLD_SAMPLE_EVERY: u32 = 64;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns recording on or off at run time (`[prometheus_locks] enabled`).
pub fn set_instrumentation(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

thread_local! {
    static ACQUISITIONS: Cell<u32> = const { Cell::new(0) };
}

/// The series of one named lock.
#[derive(Debug)]
struct Probe {
    name: &'static str,
    wait: Histogram,
    hold: Histogram,
    contended: IntCounter,
}

impl Probe {
    fn new(name: &'static str) -> Self {
        let m = metrics();
        Self {
            name,
            wait: m.lock_wait.get(&LockLabel { lock: name }),
            hold: m.lock_hold.get(&LockLabel { lock: name }),
            contended: m.lock_contended.get(&LockLabel { lock: name }),
        }
    }

    /// Acquires through `acquire` after a failed try, counting and timing the wait.
    #[cold]
    #[inline(never)]
    fn wait_for<G>(&self, acquire: impl FnOnce() -> G) -> G {
        if !ENABLED.load(Ordering::Relaxed) {
            return acquire();
        }
        self.contended.inc();
        let start = Instant::now();
        let guard = acquire();
        self.wait.observe(start.elapsed().as_secs_f64());
        guard
    }

    /// The start of a sampled hold, or `None` for the unsampled majority.
    #[inline]
    fn sample_hold(&self) -> Option<HoldTimer<'_>> {
        let n = ACQUISITIONS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        (n.is_multiple_of(HOLD_SAMPLE_EVERY) && ENABLED.load(Ordering::Relaxed)).then(|| {
            HoldTimer {
                hold: &self.hold,
                since: Instant::now(),
            }
        })
    }
}

/// Records a sampled hold time when the guard holding it drops.
#[derive(Debug)]
struct HoldTimer<'a> {
    hold: &'a Histogram,
    since: Instant,
}

impl Drop for HoldTimer<'_> {
    fn drop(&mut self) {
        self.hold.observe(self.since.elapsed().as_secs_f64());
    }
}

/// A mutual-exclusion lock whose waits and holds are measured under its name.
#[derive(Debug)]
pub struct Mutex<T> {
    probe: Probe,
    inner: parking_lot::Mutex<T>,
}

/// Guard of a [`Mutex`].
pub struct MutexGuard<'a, T> {
    // Declared first so the hold is recorded before the lock is released.
    _timer: Option<HoldTimer<'a>>,
    guard: parking_lot::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A lock named `name` around `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self {
            probe: Probe::new(name),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.probe.name
    }

    /// Blocks until the lock is held.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        let guard = match self.inner.try_lock() {
            Some(guard) => guard,
            None => self.probe.wait_for(|| self.inner.lock()),
        };
        MutexGuard {
            _timer: self.probe.sample_hold(),
            guard,
        }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A reader-writer lock whose waits and holds are measured under its name.
#[derive(Debug)]
pub struct RwLock<T> {
    probe: Probe,
    inner: parking_lot::RwLock<T>,
}

/// Shared guard of a [`RwLock`].
pub struct RwLockReadGuard<'a, T> {
    _timer: Option<HoldTimer<'a>>,
    guard: parking_lot::RwLockReadGuard<'a, T>,
}

/// Exclusive guard of a [`RwLock`].
pub struct RwLockWriteGuard<'a, T> {
    _timer: Option<HoldTimer<'a>>,
    guard: parking_lot::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    /// A lock named `name` around `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self {
            probe: Probe::new(name),
            inner: parking_lot::RwLock::new(value),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.probe.name
    }

    /// Blocks until shared access is held.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let guard = match self.inner.try_read() {
            Some(guard) => guard,
            None => self.probe.wait_for(|| self.inner.read()),
        };
        RwLockReadGuard {
            _timer: self.probe.sample_hold(),
            guard,
        }
    }

    /// Blocks until exclusive access is held.
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let guard = match self.inner.try_write() {
            Some(guard) => guard,
            None => self.probe.wait_for(|| self.inner.write()),
        };
        RwLockWriteGuard {
            _timer: self.probe.sample_hold(),
            guard,
        }
    }
}

impl<T> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
