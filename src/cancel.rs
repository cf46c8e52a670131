//! Stopping at the next safe point: the binary records a SIGINT or SIGTERM here, and long
//! operations call [`check`] between units of work (files, archives, actions), where
//! stopping leaves nothing half-written: temp files are removed as the error unwinds, the lock
//! and its holder file go with it, and the operation is journaled as interrupted. The library
//! never installs signal handlers itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};

/// The flag itself: 0, or the number of the signal that asked to stop. Shared so that a
/// signal handler can set it directly (an atomic store is all a handler may do).
pub fn flag() -> Arc<AtomicUsize> {
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicUsize::new(0))).clone()
}

/// Asks every running operation to stop at its next safe point; `signal` is the signal
/// number that asked (2 for SIGINT, 15 for SIGTERM), reported in the error.
pub fn request(signal: i32) {
    flag().store(usize::try_from(signal).unwrap_or(1), Ordering::SeqCst);
}

/// The signal that asked to stop, if any.
pub fn requested() -> Option<i32> {
    match flag().load(Ordering::SeqCst) {
        0 => None,
        s => Some(i32::try_from(s).unwrap_or(1)),
    }
}

/// `Err(Interrupted)` once a stop was asked for.
///
/// # Errors
/// [`Error::Interrupted`].
pub fn check() -> Result<()> {
    match requested() {
        None => Ok(()),
        Some(signal) => Err(Error::Interrupted { signal }),
    }
}
