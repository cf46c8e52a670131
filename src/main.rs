//! The `cachevault` binary: parse arguments, dispatch to the library, render, exit code.

mod cli;

fn main() -> std::process::ExitCode {
    bound_allocator_arenas();
    cli::main()
}

/// Caps glibc's malloc at one arena a core (at least two) unless `MALLOC_ARENA_MAX` says
/// otherwise. By default every thread that allocates may get an arena of its own, up to eight
/// a core, and each arena keeps what its thread freed: the frame and batch buffers the reader,
/// compressor and writer threads pass between them were held several times over. At 110k files
/// on 2 cores this takes the peak RSS of a daily snapshot from 46 to 40 MiB, of
/// `forget --prune` from 43 to 34, of `check --read-data` from 32 to 27 and of a restore from
/// 34 to 31, at the same speed (docs in bench/README.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_allocator_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets one of the allocator's tuning values; it is called before
    // any other thread exists, and a value it refuses leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_allocator_arenas() {}
