//! Progress reporting seam: the library reports through [`Progress`]; the binary draws bars.

/// Receives progress of a long operation. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// Starts a phase with a total (bytes or items).
    fn start(&self, _phase: &str, _total: u64) {}
    /// Advances the current phase.
    fn inc(&self, _delta: u64) {}
    /// Ends the current phase.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
