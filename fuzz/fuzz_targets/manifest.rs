//! Manifest headers, entry lists and change lists from untrusted bytes: the first byte picks
//! which.
#![no_main]

use cachevault::crypto::IdHasher;
use cachevault::manifest::{check_changes, Change, ChangeMerge, LineDecoder, Tree};
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
        let _ = Manifest::decode_header(IdHasher::PLAIN, &BlobId::of(rest), rest);
    } else if mode & 4 != 0 {
        // A change list (manifest version 3), merged into a small sorted base.
        let id = BlobId::of(b"id");
        let tree = Tree {
            blobs: vec![BlobId::of(rest)],
            hash: Some(BlobId::of(rest)),
            entries: rest
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64,
            size: rest.len() as u64,
        };
        let mut d = LineDecoder::<Change>::new(&tree, &id);
        let Ok(changes) = d.feed(rest).and_then(|()| d.end(&tree)) else {
            return;
        };
        if check_changes(&changes, &id).is_ok() {
            let mut merge = ChangeMerge::new(std::sync::Arc::new(changes), &id);
            if let Ok(mut out) = merge.apply(Vec::new()) {
                out.extend(merge.finish());
                assert!(out.windows(2).all(|w| w[0].path < w[1].path));
                assert!(out.iter().all(|e| e.path.check_safe().is_ok()));
            }
        }
    } else {
        let id = BlobId::of(HEADER.as_bytes());
        let mut m = Manifest::decode_header(IdHasher::PLAIN, &id, HEADER.as_bytes())
            .expect("header parses");
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
