//! Manifest headers and entry lists from untrusted bytes: the first byte picks which.
#![no_main]

use cachevault::{BlobId, Manifest};
use libfuzzer_sys::fuzz_target;

/// A valid header whose tree is rewritten to describe the fuzzed entry list.
const HEADER: &str = r#"{"version":1,"time":"2026-11-25T14:00:00+01:00","hostname":"h",
"root":"/r","paths":["/r"],"tags":[],"parent":null,"complete":true,"warnings":[],
"summary":{"files_new":0,"files_changed":0,"files_unchanged":0,"dirs":0,"symlinks":0,
"bytes_total":0,"bytes_read":0,"blobs_added":0,"bytes_added":0},
"tree":{"blobs":[],"hash":null,"entries":0,"size":0}}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = Manifest::decode_header(&BlobId::of(rest), rest);
    } else {
        let id = BlobId::of(HEADER.as_bytes());
        let mut m = Manifest::decode_header(&id, HEADER.as_bytes()).expect("header parses");
        m.tree.hash = Some(BlobId::of(rest));
        m.tree.size = rest.len() as u64;
        // The claimed count: the real line count, or a hostile one.
        let lines = rest
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        m.tree.entries = if mode & 2 == 0 {
            lines
        } else {
            u64::MAX >> (mode >> 2)
        };
        if m.decode_entries(&id, rest).is_ok() {
            for e in &m.entries {
                assert!(e.path.check_safe().is_ok());
            }
        }
    }
});
