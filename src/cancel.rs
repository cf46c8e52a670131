//! Stopping at the next safe point: the binary records a SIGINT or SIGTERM here, and long
//! operations call [`check`] between units of work (files, archives, actions), where
//! stopping leaves nothing half-written: temp files are removed as the error unwinds, the lock
//! and its holder file go with it, and the operation is journaled as interrupted. The library
//! never installs signal handlers itself.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

static REQUESTED: AtomicI32 = AtomicI32::new(0);

/// Asks every running operation to stop at its next safe point; `signal` is the signal
/// number that asked (2 for SIGINT, 15 for SIGTERM), reported in the error.
pub fn request(signal: i32) {
    REQUESTED.store(signal, Ordering::SeqCst);
}

/// The signal that asked to stop, if any.
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
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
