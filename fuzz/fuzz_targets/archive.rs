//! Whole archives from untrusted bytes, through the index-free scanner `check` relies on.
#![no_main]

use cachevault::archive::{scan_archive, FrameCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = scan_archive(data, "fuzzed archive", &FrameCodec::plain()) {
        assert_eq!(idx.size, data.len() as u64);
    }
});
