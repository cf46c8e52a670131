//! Archive indexes from untrusted bytes.
#![no_main]

use cachevault::archive::{ArchiveIndex, MAX_FRAME_RAW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = ArchiveIndex::decode(data, "fuzz") {
        for b in &idx.blobs {
            let f = idx.frames[b.frame as usize];
            assert!(b.offset + b.length <= f.raw_length && f.raw_length <= MAX_FRAME_RAW);
        }
    }
});
