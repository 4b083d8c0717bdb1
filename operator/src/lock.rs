//! Locking the operator's in-memory maps (histories, caches, poller state).
//!
//! A poisoned lock only means a task panicked mid-update of a map of plain values;
//! the map is still usable, and an operator that stops reconciling over it would
//! be worse than one that goes on.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
