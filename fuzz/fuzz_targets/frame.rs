//! One zstd frame from untrusted bytes, with an untrusted raw length (the first 4 bytes).
#![no_main]

use cachevault::archive::decompress_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (len, frame) = data.split_at(4);
    let raw = u32::from_le_bytes(len.try_into().expect("4 bytes")) as u64;
    if let Ok(out) = decompress_frame(frame, raw) {
        assert_eq!(out.len() as u64, raw);
    }
});
