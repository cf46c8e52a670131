//! Deterministic crash and pause points for tests: when the environment variable
//! `CACHEVAULT_FAULT` names a point, the process aborts there, exactly as a power cut or
//! `kill -9` would stop it between two writes; `CACHEVAULT_PAUSE` stops it there instead,
//! for a test to act and resume it. Unset (always, in production) each costs one cached
//! lookup.

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

/// Stops the process (SIGSTOP, as `kill -STOP` would) if `CACHEVAULT_PAUSE` equals `name`,
/// so that a test can change the world at exactly that moment and then let it go on with
/// SIGCONT. Unset (always, in production) it costs one cached lookup.
pub fn pause(name: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("CACHEVAULT_PAUSE").ok());
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    // Once per process: a point inside a loop stops the first time only.
    if wanted.as_deref() == Some(name) && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        eprintln!("cachevault: pausing at {name}");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
        // Resumed: signals sent while stopped are delivered now, possibly to another
        // thread; give them a moment so that the test sees their effect at this very point.
        std::thread::sleep(std::time::Duration::from_millis(100));
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
