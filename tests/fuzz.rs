//! Fuzzing the readers of untrusted repository files with proptest: random bytes and random
//! mutations of valid manifests, entry lists, indexes and archives go to the manifest, index
//! and archive decoders and to `BlobReader` over a real repository. Nothing may panic; every
//! input is either refused with an error or (for mutations that change nothing that matters)
//! accepted. Case counts are kept moderate so the suite stays fast; `fuzz/` holds the
//! cargo-fuzz targets for longer runs.

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use cachevault::archive::{self, ArchiveIndex};
use cachevault::manifest::{Entry, Manifest, RelPath};
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::store::{BlobIndex, BlobReader};
use cachevault::{BlobId, NoProgress, Repository};
use common::*;
use proptest::prelude::*;

/// One edit of a byte string; positions wrap around its length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Replace a run of ASCII digits (a number in JSON) with another number.
    Number(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(p, x)| Edit::Flip(p, x)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, v)| Edit::Insert(p, v)),
        2 => (any::<usize>(), 1..16usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        3 => (any::<usize>(), prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 60), any::<u64>()])
            .prop_map(|(p, n)| Edit::Number(p, n)),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..6)
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Flip(p, x) => {
                if !data.is_empty() {
                    data[p % len] ^= x;
                }
            }
            Edit::Insert(p, v) => {
                let at = p % (data.len() + 1);
                data.splice(at..at, v.iter().copied());
            }
            Edit::Delete(p, n) => {
                let at = p % len;
                let end = (at + n).min(data.len());
                if at < end {
                    data.drain(at..end);
                }
            }
            Edit::Truncate(p) => data.truncate(p % len),
            Edit::Number(p, n) => {
                let start = data
                    .iter()
                    .enumerate()
                    .cycle()
                    .skip(p % len)
                    .take(data.len())
                    .find(|(_, b)| b.is_ascii_digit())
                    .map(|(i, _)| i);
                if let Some(s) = start {
                    let end = (s..data.len())
                        .find(|&i| !data[i].is_ascii_digit())
                        .unwrap_or(data.len());
                    data.splice(s..end, n.to_string().into_bytes());
                }
            }
        }
    }
    data
}

/// A repository with one snapshot of a small tree (kept for the whole test binary), and the
/// raw bytes of its files.
struct Sample {
    _dir: TestDir,
    repo_dir: PathBuf,
    header: Vec<u8>,
    entries: Vec<u8>,
    index: Vec<u8>,
    archive: Vec<u8>,
}

fn sample() -> &'static Sample {
    static S: OnceLock<Sample> = OnceLock::new();
    S.get_or_init(|| {
        let t = TestDir::new();
        t.write("src/a.json", b"{\"a\": 1}\n");
        t.write("src/sub/b.json", json_array(30, 1));
        t.write("src/sub/empty.json", b"");
        t.write("src/sub/big.bin", noise(300 << 10, 9)); // forces a second frame
        std::os::unix::fs::symlink("a.json", t.join("src/link")).unwrap();
        let repo_dir = t.join("repo");
        let repo = Repository::init(&repo_dir).unwrap();
        let s = snapshot::create_listed(
            &repo,
            &SnapshotOptions {
                root: t.join("src"),
                includes: Vec::new(),
                kind: cachevault::manifest::SnapshotKind::Backup,
                types: Vec::new(),
                tags: vec!["t".into()],
                time: chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00+01:00").unwrap(),
                hostname: "h".into(),
                rehash: false,
                dry_run: false,
                parent: None,
            },
            &NoProgress,
        )
        .unwrap();
        let id = s.id.unwrap();
        let index_path = fs::read_dir(repo.index_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let index = fs::read(&index_path).unwrap();
        let idx: ArchiveIndex = serde_json::from_slice(&index).unwrap();
        assert!(idx.frames.len() >= 3, "{idx:?}");
        Sample {
            header: fs::read(repo.snapshot_path(&id)).unwrap(),
            entries: Manifest::encode_entries(&s.manifest.entries),
            archive: fs::read(repo.archive_path(&idx.archive)).unwrap(),
            index,
            repo_dir,
            _dir: t,
        }
    })
}

/// A header describing `text` as its entry list, so decode_entries gets past the hash check.
fn header_for(text: &[u8], entries: u64) -> Manifest {
    let id = BlobId::of(&sample().header);
    let mut m = Manifest::decode_header(cachevault::crypto::IdHasher::PLAIN, &id, &sample().header)
        .unwrap();
    m.tree.hash = Some(BlobId::of(text));
    m.tree.size = text.len() as u64;
    m.tree.entries = entries;
    m
}

/// The sample's entries, and a change list of them as text: every `gone_every`-th path
/// taken out, the others put in as they are; with the entries the list keeps.
fn sample_changes(gone_every: usize) -> (Vec<Entry>, Vec<u8>, Vec<Entry>) {
    use cachevault::manifest::{Change, Line};
    let mut base = header_for(&sample().entries, 0);
    base.tree.entries = sample()
        .entries
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    base.decode_entries(&BlobId::of(b"id"), &sample().entries)
        .unwrap();
    let mut text = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in base.entries.iter().enumerate() {
        if i % gone_every == 0 {
            Change::Gone(entry.path.clone()).write(&mut text);
        } else {
            Change::Put(entry.clone()).write(&mut text);
            kept.push(entry.clone());
        }
        text.push(b'\n');
    }
    (base.entries, text, kept)
}

/// Decodes, checks and merges change-list `text` into `base`: None when refused.
fn merged_changes(base: &[Entry], text: &[u8]) -> Option<Vec<Entry>> {
    use cachevault::manifest::{check_changes, Change, ChangeMerge, LineDecoder, Tree};
    let tree = Tree {
        blobs: vec![BlobId::of(text)],
        hash: Some(BlobId::of(text)),
        entries: text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64,
        size: text.len() as u64,
    };
    let id = BlobId::of(b"id");
    let mut d = LineDecoder::<Change>::new(&tree, &id);
    let changes = d.feed(text).and_then(|()| d.end(&tree)).ok()?;
    check_changes(&changes, &id).ok()?;
    let mut merge = ChangeMerge::new(std::sync::Arc::new(changes), &id);
    let mut out = merge.apply(base.to_vec()).ok()?;
    out.extend(merge.finish().ok()?);
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn manifest_header_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::decode_header(cachevault::crypto::IdHasher::PLAIN, &BlobId::of(&bytes), &bytes);
        // Under a name that is not its hash, always refused.
        prop_assert!(Manifest::decode_header(cachevault::crypto::IdHasher::PLAIN, &BlobId::of(b"x"), &bytes).is_err()
            || BlobId::of(&bytes) == BlobId::of(b"x"));
    }

    #[test]
    fn manifest_header_mutations(e in edits()) {
        let bytes = apply(sample().header.clone(), &e);
        if let Ok(m) = Manifest::decode_header(cachevault::crypto::IdHasher::PLAIN, &BlobId::of(&bytes), &bytes) {
            prop_assert!(m.version <= cachevault::manifest::MANIFEST_VERSION);
        }
    }

    #[test]
    fn entry_list_random_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        count in prop_oneof![0..8u64, Just(u64::MAX), Just(1 << 60)],
    ) {
        let mut m = header_for(&bytes, count);
        let _ = m.decode_entries(&BlobId::of(b"id"), &bytes);
    }

    /// A change list (manifest version 3) from mutations of a valid one: decoded, checked
    /// and merged into the sample's list without a panic; whatever is accepted merges into
    /// a strictly sorted list of safe paths.
    #[test]
    fn change_list_mutations(e in edits(), gone_every in 2..5usize) {
        let (base, valid, _) = sample_changes(gone_every);
        if let Some(out) = merged_changes(&base, &apply(valid, &e)) {
            prop_assert!(out.windows(2).all(|w| w[0].path < w[1].path));
            for entry in &out {
                prop_assert!(entry.path.check_safe().is_ok());
            }
        }
    }

    #[test]
    fn entry_list_mutations(e in edits(), extra in 0..3u64) {
        let text = apply(sample().entries.clone(), &e);
        let lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        let mut m = header_for(&text, lines + extra % 2);
        if m.decode_entries(&BlobId::of(b"id"), &text).is_ok() {
            // Whatever was accepted is safe to restore.
            for entry in &m.entries {
                prop_assert!(entry.path.check_safe().is_ok());
            }
        }
    }

    #[test]
    fn byte_paths_with_any_text(s in ".{0,12}") {
        let json = serde_json::json!({ "bytes": s }).to_string();
        let _ = serde_json::from_str::<RelPath>(&json);
    }

    #[test]
    fn index_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ArchiveIndex::decode(&bytes, "fuzz");
    }

    #[test]
    fn index_mutations(e in edits()) {
        let bytes = apply(sample().index.clone(), &e);
        if let Ok(idx) = ArchiveIndex::decode(&bytes, "fuzz") {
            // Whatever was accepted keeps every blob inside its frame and the file.
            for b in &idx.blobs {
                let f = idx.frames[b.frame as usize];
                prop_assert!(b.offset.checked_add(b.length).is_some_and(|end| end <= f.raw_length));
                prop_assert!(f.raw_length <= archive::MAX_FRAME_RAW);
            }
        }
    }

    #[test]
    fn index_random_structure(
        size in prop_oneof![0..4096u64, any::<u64>()],
        frames in proptest::collection::vec((any::<u64>(), 0..5000u64, any::<u64>()), 0..4),
        blobs in proptest::collection::vec((any::<u32>(), any::<u64>(), any::<u64>()), 0..4),
    ) {
        let doc = serde_json::json!({
            "version": 1, "archive": BlobId::of(b"a").to_hex(), "size": size,
            "frames": frames.iter().map(|(o, l, r)| serde_json::json!({"offset": o, "length": l, "raw_length": r})).collect::<Vec<_>>(),
            "blobs": blobs.iter().map(|(f, o, l)| serde_json::json!({"id": BlobId::of(&o.to_le_bytes()).to_hex(), "frame": f % 5, "offset": o, "length": l})).collect::<Vec<_>>(),
        });
        let _ = ArchiveIndex::decode(doc.to_string().as_bytes(), "fuzz");
    }

    #[test]
    fn frame_random_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        raw in prop_oneof![0..70_000u64, Just(u64::MAX), Just(1 << 40)],
    ) {
        let _ = archive::decompress_frame(&bytes, raw);
    }

    #[test]
    fn frame_mutations(e in edits(), which in 0..3usize, lie in prop_oneof![Just(0i64), -600..600i64]) {
        let s = sample();
        let idx: ArchiveIndex = serde_json::from_slice(&s.index).unwrap();
        let f = idx.frames[which % idx.frames.len()];
        let frame = s.archive[f.offset as usize..(f.offset + f.length) as usize].to_vec();
        let raw = f.raw_length.saturating_add_signed(lie);
        let mutated = apply(frame.clone(), &e);
        if let Ok(out) = archive::decompress_frame(&mutated, raw) {
            prop_assert_eq!(out.len() as u64, raw);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn scan_archive_mutations(e in edits()) {
        let t = TestDir::new();
        let p = t.join("a.tar.zst");
        fs::write(&p, apply(sample().archive.clone(), &e)).unwrap();
        if let Ok(idx) = scan_archive_file(&p) {
            prop_assert_eq!(idx.size, fs::metadata(&p).unwrap().len());
        }
    }

    /// Every blob read through the repository's reader from a mutated archive is either
    /// refused or exactly the blob it names.
    #[test]
    fn blob_reader_over_a_mutated_archive(e in edits(), index_edits in proptest::option::of(edits())) {
        let s = sample();
        let t = TestDir::new();
        let repo_dir = t.join("repo");
        copy_dir(&s.repo_dir, &repo_dir);
        let repo = Repository::open(&repo_dir).unwrap();
        let idx: ArchiveIndex = serde_json::from_slice(&s.index).unwrap();
        fs::write(repo.archive_path(&idx.archive), apply(s.archive.clone(), &e)).unwrap();
        if let Some(ie) = &index_edits {
            fs::write(repo.index_path(&idx.archive), apply(s.index.clone(), ie)).unwrap();
        }
        let Ok(index) = BlobIndex::load(&repo) else { return Ok(()) };
        let mut reader = BlobReader::new(&repo, &index);
        let ids: Vec<BlobId> = idx.blobs.iter().map(|b| b.id).collect();
        for id in ids {
            if let Ok(data) = reader.read(&id) {
                prop_assert_eq!(BlobId::of(&data), id);
            }
        }
        // The whole-snapshot readers too: load, check, restore.
        let snap = snapshot::list_ids(&repo).unwrap()[0];
        if let Ok(m) = snapshot::load(&repo, &snap) {
            let out = t.join("restored");
            let _ = cachevault::restore::restore(&repo, &m, &out, &Default::default(), &NoProgress);
        }
        let _ = cachevault::check::check(&repo, cachevault::check::ReadData::All, 1);
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for de in walkdir::WalkDir::new(from) {
        let de = de.unwrap();
        let dest = to.join(de.path().strip_prefix(from).unwrap());
        if de.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else if de.file_type().is_file() {
            fs::copy(de.path(), &dest).unwrap();
        }
    }
}

// See: a path given as {"bytes": hex} whose hex held a multi-byte character panicked
// (a string slice through the middle of the character) instead of failing to parse.
#[test]
fn byte_path_with_a_multibyte_character_is_an_error() {
    for s in ["a\u{e9}0", "\u{e9}\u{e9}", "+f", "0g"] {
        let json = serde_json::json!({ "bytes": s }).to_string();
        assert!(serde_json::from_str::<RelPath>(&json).is_err(), "{s:?}");
    }
}

// See: a header claiming 2^60 entries made decode_entries reserve room for them first
// ("capacity overflow" panic) before finding the list empty.
#[test]
fn a_header_claiming_2_pow_60_entries_is_an_error() {
    let mut m = header_for(b"", 1 << 60);
    assert!(m.decode_entries(&BlobId::of(b"id"), b"").is_err());
}

// See: decompress_frame reserved the raw length the index declared before decompressing,
// so an index claiming 2^60 bytes aborted the process.
#[test]
fn a_frame_claiming_2_pow_60_bytes_is_an_error() {
    let s = sample();
    let idx: ArchiveIndex = serde_json::from_slice(&s.index).unwrap();
    let f = idx.frames[0];
    let frame = &s.archive[f.offset as usize..(f.offset + f.length) as usize];
    assert!(archive::decompress_frame(frame, 1 << 60).is_err());
    assert_eq!(
        archive::decompress_frame(frame, f.raw_length)
            .unwrap()
            .len() as u64,
        f.raw_length
    );
}

/// The unmutated change list of `change_list_mutations` decodes, and merged into the
/// sample's list gives it without the paths it takes out: the mutations start from a list
/// that is accepted.
#[test]
fn the_valid_change_list_is_accepted_and_merges_as_written() {
    let (base, text, kept) = sample_changes(3);
    assert!(base.len() >= 5, "{base:?}");
    assert_eq!(merged_changes(&base, &text), Some(kept));
}
