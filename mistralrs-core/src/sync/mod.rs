//! The lock seam: every shared structure of the engine is locked through these
//! types, so the lock implementation changes in this one place.
//!
//! With the `prometheus-locks` feature they are `parking_lot` locks that record,
//! per lock name, the wait of contended acquisitions, a sample of hold times and a
//! contention count; without it, plain std locks. Both builds have the same API:
//! `Mutex::new(name, value)`, `lock()`, `RwLock::read()` / `write()`, guards that
//! never report poisoning (a panic under a lock is a bug the panic already
//! reports, and the queues and tables behind the locks stay structurally valid).
//!
//! # Examples
//!
//! ```
//! use mistralrs_core::sync::Mutex;
//!
//! let queue = Mutex::new("example_queue", Vec::new());
//! queue.lock().push(1);
//! assert_eq!(queue.lock().len(), 1);
//! ```

#[cfg(feature = "prometheus-locks")]
mod instrumented;
#[cfg(feature = "prometheus-locks")]
pub use instrumented::*;

#[cfg(not(feature = "prometheus-locks"))]
mod plain;
#[cfg(not(feature = "prometheus-locks"))]
pub use plain::*;
