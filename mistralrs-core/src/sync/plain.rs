//! Plain std locks, for builds without `prometheus-locks`. The name is kept so the
//! API matches the instrumented build; it is not used.

use std::ops::{Deref, DerefMut};

/// A mutual-exclusion lock with a name.
#[derive(Debug)]
pub struct Mutex<T> {
    name: &'static str,
    inner: std::sync::Mutex<T>,
}

/// Guard of a [`Mutex`].
pub struct MutexGuard<'a, T>(std::sync::MutexGuard<'a, T>);

impl<T> Mutex<T> {
    /// A lock named `name` around `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self {
            name,
            inner: std::sync::Mutex::new(value),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Blocks until the lock is held.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(
            self.inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A reader-writer lock with a name.
#[derive(Debug)]
pub struct RwLock<T> {
    name: &'static str,
    inner: std::sync::RwLock<T>,
}

/// Shared guard of a [`RwLock`].
pub struct RwLockReadGuard<'a, T>(std::sync::RwLockReadGuard<'a, T>);
/// Exclusive guard of a [`RwLock`].
pub struct RwLockWriteGuard<'a, T>(std::sync::RwLockWriteGuard<'a, T>);

impl<T> RwLock<T> {
    /// A lock named `name` around `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self {
            name,
            inner: std::sync::RwLock::new(value),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Blocks until shared access is held.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        RwLockReadGuard(
            self.inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Blocks until exclusive access is held.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        RwLockWriteGuard(
            self.inner
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl<T> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Does nothing: plain locks record nothing.
pub fn set_instrumentation(_enabled: bool) {}
