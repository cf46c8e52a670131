//! Whole archives from untrusted bytes, through the index-free scanner `check` relies on.
#![no_main]

use cachevault::archive::scan_archive;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("cachevault-fuzz-{}.tar.zst", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    if let Ok(idx) = scan_archive(&path) {
        assert_eq!(idx.size, data.len() as u64);
    }
});
