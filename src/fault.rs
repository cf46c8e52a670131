//! Deterministic crash points for tests: when the environment variable `CACHEVAULT_FAULT`
//! names a point, the process aborts there, exactly as a power cut or `kill -9` would stop
//! it between two writes. Unset (always, in production) it costs one cached lookup.

use std::sync::OnceLock;

/// Aborts the process if `CACHEVAULT_FAULT` equals `name`.
pub fn point(name: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("CACHEVAULT_FAULT").ok());
    if wanted.as_deref() == Some(name) {
        eprintln!("cachevault: injected fault at {name}");
        std::process::abort();
    }
}

/// Every fault point, for tests that walk them all.
pub const POINTS: &[&str] = &[
    "archive.before_rename",
    "archive.before_index",
    "snapshot.before_manifest",
    "prune.after_repack",
    "prune.after_index_delete",
];
