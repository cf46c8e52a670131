//! Snapshot, restore and check end to end: exact round trips, incrementals, chunked appends,
//! corruption caught, traversal refused, archives readable by the system tar.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cachevault::check::{self, ReadData};
use cachevault::compare::compare_trees;
use cachevault::manifest::{Entry, EntryKind};
use cachevault::restore::{self, RestoreOptions};
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::store::BlobIndex;
use cachevault::{NoProgress, RelPath, Repository};
use common::*;

fn opts(root: &Path) -> SnapshotOptions {
    backup_options(root)
}

fn take(repo: &Repository, root: &Path) -> snapshot::SnapshotSummary {
    snapshot::create_listed(repo, &opts(root), &NoProgress).unwrap()
}

fn restore_all(
    repo: &Repository,
    m: &cachevault::Manifest,
    target: &Path,
) -> restore::RestoreSummary {
    restore::restore(repo, m, target, &RestoreOptions::default(), &NoProgress).unwrap()
}

/// Writes `dir/<name>.json`, a product file at version `v`.
fn product(dir: &Path, name: &str, v: &str) {
    let text = format!("{{\"asin\": \"{name}\", \"v\": \"{v}\"}}");
    fs::write(dir.join(format!("{name}.json")), text).unwrap();
}

/// Snapshots of one tree a minute apart (so the parent is always the one before), each
/// kept beside a copy of the tree it was taken of.
struct Days<'a> {
    t: &'a TestDir,
    repo: &'a Repository,
    src: std::path::PathBuf,
    minutes: i64,
    states: Vec<(cachevault::BlobId, Vec<Entry>, std::path::PathBuf)>,
}

impl<'a> Days<'a> {
    fn new(t: &'a TestDir, repo: &'a Repository, src: &Path) -> Self {
        Days {
            t,
            repo,
            src: src.to_path_buf(),
            minutes: 0,
            states: Vec::new(),
        }
    }

    fn take(&mut self) -> snapshot::SnapshotSummary {
        let mut o = opts(&self.src);
        self.minutes += 1;
        o.time += chrono::Duration::minutes(self.minutes);
        snapshot::create_listed(self.repo, &o, &NoProgress).unwrap()
    }

    /// Keeps snapshot `s` with a copy of the tree as it is now.
    fn keep(&mut self, s: &snapshot::SnapshotSummary) {
        let copy = self.t.join(format!("state{}", self.states.len() + 1));
        copy_tree(&self.src, &copy);
        self.states
            .push((s.id.unwrap(), s.manifest.entries.clone(), copy));
    }

    /// Every snapshot kept from the `from`th on reads back and restores exactly as its
    /// tree was.
    fn restore_exactly(&self, from: usize) {
        for (n, (id, entries, copy)) in self.states.iter().enumerate().skip(from) {
            let m = snapshot::load(self.repo, id).unwrap();
            assert_eq!(&m.entries, entries, "snapshot {n} reads back otherwise");
            let out = self.t.join(format!("restored-{}-{n}", id.short()));
            let r = restore_all(self.repo, &m, &out);
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            let diffs = compare_trees(copy, &out, true).unwrap();
            assert!(diffs.is_empty(), "snapshot {n}: {diffs:#?}");
        }
    }
}

#[test]
fn fixture_round_trip_is_exact() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    let s = take(&repo, &src);
    assert!(s.skipped.is_empty() && s.manifest.complete);
    assert!(s.manifest.summary.files_new > 30, "fixture tree too small");
    // A symlink, an empty folder, an empty file and a non-UTF-8 name are all recorded.
    let find = |p: &[u8]| s.manifest.entries.iter().find(|e| e.path.0 == p).cloned();
    assert_eq!(
        find(b"cached_products/awkward/link.json").unwrap().kind,
        EntryKind::Symlink
    );
    assert_eq!(
        find(b"cached_products/awkward/empty-folder").unwrap().kind,
        EntryKind::Dir
    );
    assert_eq!(find(b"cached_products/awkward/empty.json").unwrap().size, 0);
    assert!(find(b"cached_products/awkward/caf\xe9.json").is_some());
    let out = t.join("restored");
    let r = restore_all(&repo, &s.manifest, &out);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let diffs = compare_trees(&src, &out, true).unwrap();
    assert!(diffs.is_empty(), "differences: {diffs:#?}");
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode("cached_products/awkward/private.json"), 0o600);
    assert_eq!(mode("cached_products/awkward/tool.sh"), 0o755);
}

#[test]
fn incremental_snapshots_store_only_changes() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    let first = take(&repo, &src);
    let archives = |r: &Repository| fs::read_dir(r.archives_dir()).unwrap().count();
    let n_archives = archives(&repo);

    let same = take(&repo, &src);
    let st = &same.manifest.summary;
    assert_eq!(st.files_new + st.files_changed, 0);
    assert_eq!(st.files_unchanged, first.manifest.summary.files_new);
    assert_eq!((st.bytes_added, st.bytes_read), (0, 0));
    assert_eq!(
        archives(&repo),
        n_archives,
        "no-change snapshot wrote an archive"
    );
    assert_eq!(same.manifest.parent, first.id);
    // Nothing changed: the parent's stored entry list is named as it is.
    assert_eq!(same.manifest.tree, first.manifest.tree);
    // A folder's mode changes and nothing else: a new list, which reads back as recorded.
    use std::os::unix::fs::PermissionsExt;
    let folder = src.join("FBA_ANALYSIS");
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).unwrap();
    let moded = take(&repo, &src);
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).unwrap();
    // Stored as one change to the parent's list, which it shares.
    assert_eq!(moded.manifest.tree, first.manifest.tree);
    assert_eq!(moded.manifest.changes.as_ref().map(|c| c.entries), Some(1));
    assert_eq!(moded.manifest.summary.bytes_read, 0);
    let back = snapshot::load(&repo, moded.id.as_ref().unwrap()).unwrap();
    assert_eq!(back.entries, moded.manifest.entries);

    // One changed file, one new file, one deleted file.
    let amazon = src.join("FBA_ANALYSIS/amazon_cache");
    let mut files: Vec<_> = fs::read_dir(&amazon)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    fs::write(&files[0], b"{\"changed\": true}").unwrap();
    fs::remove_file(&files[1]).unwrap();
    fs::write(amazon.join("amazon_B0NEWNEW01.json"), b"{\"new\": true}").unwrap();
    let before: HashSet<_> = BlobIndex::load(&repo)
        .unwrap()
        .iter()
        .map(|(id, _)| id)
        .collect();
    let third = take(&repo, &src);
    let st = &third.manifest.summary;
    assert_eq!((st.files_new, st.files_changed), (1, 1));
    // Two content blobs, plus the part of the entry list that changed.
    let added: Vec<_> = BlobIndex::load(&repo)
        .unwrap()
        .iter()
        .map(|(id, _)| id)
        .filter(|b| !before.contains(b))
        .collect();
    let content: Vec<_> = added
        .iter()
        .filter(|b| !third.manifest.tree_blobs().any(|t| t == *b))
        .collect();
    assert_eq!(content.len(), 2);
    assert_eq!(st.blobs_added, added.len() as u64);
    assert!(
        st.bytes_added < 16 * 1024,
        "added {} bytes for two tiny files",
        st.bytes_added
    );
    assert_eq!(st.bytes_read, 17 + 13);

    // --rehash re-reads everything but stores no content again (every file counts as
    // changed, so the entry list is stored whole: its blobs are all that is added).
    let mut o = opts(&src);
    o.rehash = true;
    let before: HashSet<_> = BlobIndex::load(&repo)
        .unwrap()
        .iter()
        .map(|(id, _)| id)
        .collect();
    let re = snapshot::create_listed(&repo, &o, &NoProgress).unwrap();
    assert_eq!(re.manifest.summary.files_unchanged, 0);
    assert!(re.manifest.summary.bytes_read > 0);
    let added = BlobIndex::load(&repo)
        .unwrap()
        .iter()
        .filter(|(id, _)| !before.contains(id))
        .filter(|(id, _)| !re.manifest.tree_blobs().any(|t| t == id))
        .count();
    assert_eq!(added, 0, "--rehash stored content again");
    assert_eq!(re.manifest.entries, third.manifest.entries);
}

#[test]
fn appending_one_percent_to_a_large_json_array_adds_little() {
    let t = TestDir::new();
    let src = t.mkdirp("OUTPUTS/FBA_ANALYSIS/Linking map");
    let records = 92_000; // about 20 MB
    let map = src.join("linking_map.json");
    fs::write(&map, json_array(records, 7)).unwrap();
    let size = fs::metadata(&map).unwrap().len();
    assert!(size > 19_000_000, "test file is {size} bytes");
    let repo = Repository::init(&t.join("repo")).unwrap();
    let root = t.join("OUTPUTS");
    take(&repo, &root);
    let before: HashSet<_> = BlobIndex::load(&repo)
        .unwrap()
        .iter()
        .map(|(id, _)| id)
        .collect();
    // The agent appends 1% and rewrites the whole file.
    fs::write(&map, json_array(records + records / 100, 7)).unwrap();
    let s = take(&repo, &root);
    let after = BlobIndex::load(&repo).unwrap();
    let raw_added: u64 = after
        .iter()
        .filter(|(id, _)| !before.contains(id))
        .map(|(_, l)| l.length)
        .sum();
    assert!(
        raw_added * 20 < size,
        "appending 1% added {raw_added} raw bytes to a {size}-byte file"
    );
    assert!(s.manifest.summary.bytes_added * 20 < size);
    let out = t.join("restored");
    assert!(restore_all(&repo, &s.manifest, &out).errors.is_empty());
    assert_eq!(
        fs::read(out.join("FBA_ANALYSIS/Linking map/linking_map.json")).unwrap(),
        fs::read(&map).unwrap()
    );
}

fn only_archive(repo: &Repository) -> std::path::PathBuf {
    let mut v: Vec<_> = fs::read_dir(repo.archives_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

#[test]
fn a_flipped_byte_is_caught_by_check_and_by_restore() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo_dir = t.join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    let s = take(&repo, &src);
    let ok = json(&repo_dir, &["check", "--read-data"], 0);
    assert_eq!(ok["ok"], true);

    let archive = only_archive(&repo);
    let mut bytes = fs::read(&archive).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    fs::write(&archive, &bytes).unwrap();

    // Structure alone still holds; reading the data finds the damage.
    json(&repo_dir, &["check"], 0);
    let bad = json(&repo_dir, &["check", "--read-data"], 3);
    assert_eq!(bad["ok"], false);
    let named = bad["damaged_archives"][0].as_str().unwrap();
    assert_eq!(Path::new(named), archive);
    let affected = bad["affected_files"].as_array().unwrap();
    assert!(!affected.is_empty(), "no affected file named: {bad}");

    // Restore into a target that already holds every file: damaged files are named, and
    // their existing copies are left untouched; the rest is restored.
    let out = t.join("restore");
    let r0 = restore_all(&Repository::open(&repo_dir).unwrap(), &s.manifest, &out);
    assert!(!r0.errors.is_empty() && r0.corruption);
    let victim = affected[0]
        .as_str()
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    fs::write(out.join(&victim), b"operator's own copy").unwrap();
    let o = run(&[
        "--repo",
        repo_dir.to_str().unwrap(),
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&victim),
        "stderr does not name {victim}: {err}"
    );
    assert_eq!(fs::read(out.join(&victim)).unwrap(), b"operator's own copy");
    let leftovers: Vec<_> = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().as_bytes().ends_with(b".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// A chunked file's blobs are verified through the file's own hash on restore (each byte
/// hashed once): a damaged chunk still fails that file alone, named with its blob, and
/// leaves nothing at its name.
#[test]
fn a_flipped_byte_in_a_chunked_file_fails_that_file_alone() {
    let t = TestDir::new();
    let src = t.join("tree");
    // Incompressible, so the middle of the archive lies inside this file's chunks.
    t.write("tree/big.bin", noise(3 << 20, 11));
    for i in 0..20 {
        t.write(
            format!("tree/small/s{i:02}.json"),
            format!("{{\"n\": {i}}}"),
        );
    }
    let repo_dir = t.join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    let s = take(&repo, &src);
    let big = s
        .manifest
        .entries
        .iter()
        .find(|e| e.path == RelPath::from("big.bin"))
        .unwrap();
    assert!(big.blobs.len() > 1, "big.bin was not chunked");

    let archive = only_archive(&repo);
    let mut bytes = fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs::write(&archive, &bytes).unwrap();

    let out = t.join("restore");
    let o = run(&[
        "--repo",
        repo_dir.to_str().unwrap(),
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("big.bin"),
        "stderr does not name big.bin: {err}"
    );
    assert!(
        err.contains("is corrupt (content hashes to"),
        "the damaged blob is not named: {err}"
    );
    assert!(!out.join("big.bin").exists(), "the damaged file was kept");
    for i in 0..20 {
        let name = format!("small/s{i:02}.json");
        assert_eq!(
            fs::read(out.join(&name)).unwrap(),
            fs::read(src.join(&name)).unwrap(),
            "{name}"
        );
    }
    let leftovers: Vec<_> = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && !e.path().starts_with(out.join("small")))
        .map(|e| e.path().to_path_buf())
        .collect();
    assert!(leftovers.is_empty(), "left in the target: {leftovers:?}");
    let bad = json(&repo_dir, &["check", "--read-data"], 3);
    assert_eq!(bad["ok"], false);
}

fn write_manifest_with(repo: &Repository, mut m: cachevault::Manifest, e: Entry) -> String {
    m.entries.push(e);
    snapshot::store_manifest(repo, &mut m).unwrap().to_hex()
}

#[test]
fn path_traversal_is_refused() {
    let t = TestDir::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.json"), b"{}").unwrap();
    let repo_dir = t.join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    let s = take(&repo, &src);
    let file = s.manifest.entries[0].clone();
    for evil in ["../evil.json", "/tmp/evil.json", "x/../../evil.json"] {
        let mut e = file.clone();
        e.path = RelPath::from(evil);
        let id = write_manifest_with(&repo, s.manifest.clone(), e);
        let out = t.join("target");
        let o = run(&[
            "--repo",
            repo_dir.to_str().unwrap(),
            "restore",
            &id,
            "--target",
            out.to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{evil}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("unsafe path"));
        assert!(!t.join("evil.json").exists() && !Path::new("/tmp/evil.json").exists());
        fs::remove_file(repo.snapshot_path(&id.parse().unwrap())).unwrap();
    }
    // A target that already holds a symlink to elsewhere never redirects a write.
    let mut nested = file.clone();
    nested.path = RelPath::from("sub/b.json");
    let mut dir = file.clone();
    dir.kind = EntryKind::Dir;
    dir.path = RelPath::from("sub");
    dir.size = 0;
    dir.hash = None;
    dir.blobs.clear();
    let mut m = s.manifest.clone();
    m.entries.push(dir);
    let id = write_manifest_with(&repo, m, nested);
    let out = t.mkdirp("target2");
    let elsewhere = t.mkdirp("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
    let o = run(&[
        "--repo",
        repo_dir.to_str().unwrap(),
        "restore",
        &id,
        "--target",
        out.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "wrote through a symlink"
    );
    assert!(
        out.join("a.json").exists(),
        "the safe entries are still restored"
    );
}

#[test]
fn every_archive_opens_with_system_tar() {
    let why = "open our archives with the system's tools";
    if !require("tar", why) || !require("zstd", why) {
        return;
    }
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    fs::write(src.join("big.json"), json_array(20_000, 3)).unwrap();
    let repo = Repository::init(&t.join("repo")).unwrap();
    take(&repo, &src);
    let mut n = 0;
    for a in fs::read_dir(repo.archives_dir()).unwrap() {
        let a = a.unwrap().path();
        let list = Command::new("tar")
            .arg("--zstd")
            .arg("-tf")
            .arg(&a)
            .output()
            .unwrap();
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let out = t.mkdirp(format!("x{n}"));
        let x = Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&a)
            .arg("-C")
            .arg(&out)
            .output()
            .unwrap();
        assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
        for name in String::from_utf8(list.stdout).unwrap().lines() {
            let data = fs::read(out.join(name)).unwrap();
            assert_eq!(blake3::hash(&data).to_hex().as_str(), name);
            n += 1;
        }
    }
    assert!(n > 30);
}

use std::process::Command;

#[test]
fn check_read_data_subset_and_structure() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    take(&repo, &src);
    let r = check::check(&repo, ReadData::Subset(100.0), 1).unwrap();
    assert!(r.ok() && r.archives_read == 1);
    // An index whose archive is gone is an error naming the archive.
    let archive = only_archive(&repo);
    fs::remove_file(&archive).unwrap();
    let r = check::check(&repo, ReadData::None, 1).unwrap();
    assert!(!r.ok());
    assert!(
        r.errors.iter().any(|e| e.contains("missing")),
        "{:?}",
        r.errors
    );
}

#[test]
fn a_file_that_keeps_changing_while_read_is_reported_and_the_exit_code_is_1() {
    let t = TestDir::new();
    let src = t.mkdirp("src");
    fs::write(src.join("stable.json"), b"{}").unwrap();
    let busy = src.join("busy.json");
    // Large enough that every read attempt spans many of the writer's appends.
    fs::write(&busy, json_array(120_000, 9)).unwrap();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let busy = busy.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&busy).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b" ").unwrap();
            }
        })
    };
    let doc = json(&repo, &["snapshot", src.to_str().unwrap()], 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(doc["complete"], false);
    let skipped = doc["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s.as_str().unwrap().contains("busy.json")
                && s.as_str().unwrap().contains("changed while being read")),
        "{doc}"
    );
    // The rest of the snapshot is there and sound.
    assert_eq!(doc["files_new"], 1);
    assert_eq!(json(&repo, &["check", "--read-data"], 0)["ok"], true);
}

#[test]
fn repository_files_are_private_and_restore_strips_setuid() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let setuid = t.write("OUTPUTS/tool-setuid.sh", b"#!/bin/sh\n");
    fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).unwrap();
    let setgid = t.mkdirp("OUTPUTS/shared-setgid");
    fs::set_permissions(&setgid, fs::Permissions::from_mode(0o2775)).unwrap();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    json(&repo, &["check", "--read-data"], 0);
    json(&repo, &["forget", "--keep-last", "1", "--prune"], 0);
    let out = t.join("restored");
    json(
        &repo,
        &["restore", "latest", "--target", out.to_str().unwrap()],
        0,
    );
    // Everything the repository holds is private to its owner, whatever the umask.
    let mut seen = 0;
    for de in walkdir::WalkDir::new(&repo) {
        let de = de.unwrap();
        let mode = de.metadata().unwrap().permissions().mode() & 0o7777;
        let want = if de.file_type().is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, want, "{} is {mode:o}", de.path().display());
        seen += 1;
    }
    assert!(seen > 8, "{seen}");
    // Restore never recreates setuid or setgid bits, and makes its target private.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out.join("tool-setuid.sh")), 0o755);
    assert_eq!(mode(&out.join("shared-setgid")), 0o775);
    assert_eq!(mode(&out), 0o700);
}

#[test]
fn an_unreadable_file_is_listed_and_the_exit_code_is_1() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let src = t.mkdirp("src");
    fs::write(src.join("ok.json"), b"{}").unwrap();
    fs::write(src.join("secret.json"), b"{\"no\": 1}").unwrap();
    fs::set_permissions(src.join("secret.json"), fs::Permissions::from_mode(0o000)).unwrap();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    // root reads anything: run the snapshot as an unprivileged user where that is possible.
    let mut cmd = if is_root() {
        if !require(
            "setpriv",
            "snapshot as an unprivileged user (root reads anything)",
        ) {
            return;
        }
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for de in walkdir::WalkDir::new(t.path()) {
            let de = de.unwrap();
            if de.file_name() != "secret.json" {
                std::os::unix::fs::lchown(de.path(), Some(65534), Some(65534)).unwrap();
            }
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let out = cmd
        .args([
            "--repo",
            repo.to_str().unwrap(),
            "--json",
            "snapshot",
            src.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["complete"], false);
    assert_eq!(doc["files_new"], 1);
    assert!(
        doc["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("secret.json")),
        "{doc}"
    );
}

/// A restore into an empty folder creates files at their own names. Killed (-9) in the
/// middle, it leaves the mark that says a file may be cut short; a second restore into the
/// same folder writes every file anew, verified, even one cut short, and removes the mark.
#[test]
fn a_restore_killed_in_an_empty_folder_is_marked_and_completed_by_the_next() {
    use std::process::{Command, Stdio};
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let many = src.join("FBA_ANALYSIS/amazon_cache");
    fs::create_dir_all(&many).unwrap();
    for i in 0..300 {
        fs::write(many.join(format!("amazon_K{i:05}.json")), json_array(20, i)).unwrap();
    }
    let repo_dir = t.join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    let m = take(&repo, &src).manifest;
    let target = t.join("restored");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachevault"))
        .args([
            "--repo",
            repo_dir.to_str().unwrap(),
            "--quiet",
            "restore",
            "latest",
        ])
        .args(["--target", target.to_str().unwrap()])
        .env("CACHEVAULT_PAUSE", "restore.writing")
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_paused(&mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let marker = target.join(restore::RESTORE_MARKER);
    assert!(marker.exists(), "no mark after a killed restore");
    // What a crash in the middle of a write leaves: a file cut short at its name.
    let written: Vec<_> = files_under(&target)
        .into_iter()
        .filter(|p| p.ends_with(".json") && !p.contains(restore::RESTORE_MARKER))
        .collect();
    assert!(
        !written.is_empty(),
        "the restore wrote nothing before its pause"
    );
    let cut = target.join(&written[0]);
    let len = fs::metadata(&cut).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let r = restore_all(&repo, &m, &target);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(!marker.exists(), "the mark outlived a complete restore");
    let diffs = compare_trees(&src, &target, false).unwrap();
    assert!(diffs.is_empty(), "differences: {diffs:#?}");
    // Into a fresh folder, nothing is left beside the tree.
    let again = t.join("again");
    assert!(restore_all(&repo, &m, &again).errors.is_empty());
    assert!(!again.join(restore::RESTORE_MARKER).exists());
    assert!(compare_trees(&src, &again, false).unwrap().is_empty());
}

/// The parent's entry list is read as the walk goes: damage part way through it (here a
/// tree blob that is not stored) costs only reading the files past it again. The snapshot
/// is complete, says so, names no parent, and restores exactly.
#[test]
fn a_parent_damaged_part_way_costs_only_reading_the_rest_again() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    for d in 0..30 {
        let dir = src.join(format!("amazon_{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(
                dir.join(format!("B0{d:02}{f:04}.json")),
                format!("{{\"asin\": \"B0{d:02}{f:04}\", \"price\": {f}}}"),
            )
            .unwrap();
        }
    }
    let repo = Repository::init(&t.join("repo")).unwrap();
    let first = take(&repo, &src);
    let tree = &first.manifest.tree.blobs;
    assert!(tree.len() >= 3, "entry list in {} blobs only", tree.len());
    // A parent whose second tree blob is gone.
    let mut damaged = first.manifest.clone();
    damaged.tags = vec!["damaged".into()];
    damaged.tree.blobs[1] = cachevault::BlobId::of(b"a blob that was never stored");
    let damaged_id = snapshot::write_manifest(&repo, &damaged).unwrap();

    let mut o = opts(&src);
    o.parent = Some(damaged_id);
    let s = snapshot::create_listed(&repo, &o, &NoProgress).unwrap();
    let st = &s.manifest.summary;
    assert!(
        s.manifest.complete && s.skipped.is_empty(),
        "{:?}",
        s.skipped
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("cannot be read whole")),
        "{:?}",
        s.warnings
    );
    assert_eq!(s.manifest.parent, None, "a damaged parent is not named");
    // The files the first blob lists are trusted; those past the damage are read again
    // (and their content, already stored, is not stored twice).
    assert!(st.files_unchanged > 0, "{st:?}");
    assert!(st.files_new + st.files_changed > 0, "{st:?}");
    assert_eq!(st.files_unchanged + st.files_new + st.files_changed, 3000);
    assert!(st.bytes_read > 0 && st.blobs_added <= 3, "{st:?}");
    assert_eq!(
        s.manifest.entries, first.manifest.entries,
        "the damaged parent changed what was recorded"
    );
    let out = t.join("restored");
    let r = restore_all(&repo, &s.manifest, &out);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(compare_trees(&src, &out, true).unwrap().is_empty());

    // A parent read whole is named, and nothing is read.
    o.parent = s.id;
    let again = snapshot::create_listed(&repo, &o, &NoProgress).unwrap();
    assert_eq!(again.manifest.parent, s.id);
    assert_eq!(again.manifest.summary.bytes_read, 0);
}

/// Later entry lists are stored as their changes to one base list: every snapshot reads
/// back and restores exactly as its tree was, the base outlives the snapshot that wrote
/// it, and past one change in four a list is stored whole again.
#[test]
fn entry_lists_are_stored_as_changes_to_one_base_and_each_restores_exactly() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    let amazon = src.join("amazon_cache");
    fs::create_dir_all(&amazon).unwrap();
    let write = |i: usize, v: &str| product(&amazon, &format!("B{i:05}"), v);
    for i in 0..200 {
        write(i, "a");
    }
    fixture_tree(&src.join("fixture"));
    let repo = Repository::init(&t.join("repo")).unwrap();
    let mut days = Days::new(&t, &repo, &src);
    let first = days.take();
    assert!(first.manifest.changes.is_none(), "a first list is whole");
    days.keep(&first);

    // Day 2: changed, new and deleted files, a folder's mode.
    write(3, "b");
    write(500, "new");
    fs::remove_file(amazon.join("B00007.json")).unwrap();
    fs::set_permissions(src.join("fixture"), fs::Permissions::from_mode(0o700)).unwrap();
    let second = days.take();
    assert_eq!(
        second.manifest.tree, first.manifest.tree,
        "the base is shared"
    );
    let changes = second.manifest.changes.as_ref().expect("stored as changes");
    // B00003 and B00500 put in, B00007 taken out, `fixture` put in again, and
    // `amazon_cache` when its mtime moved as files came and went (the clock's grain).
    assert!((4..=5).contains(&changes.entries), "{changes:?}");
    assert_eq!(second.manifest.parent, first.id);
    days.keep(&second);

    // Day 3: the file new on day 2 goes, another changes, one changes back.
    fs::remove_file(amazon.join("B00500.json")).unwrap();
    write(9, "c");
    fs::set_permissions(src.join("fixture"), fs::Permissions::from_mode(0o755)).unwrap();
    let third = days.take();
    assert_eq!(third.manifest.tree, first.manifest.tree, "never a chain");
    let changes = third.manifest.changes.as_ref().expect("stored as changes");
    // B00003 and B00007 as the parent changed them, B00009 put in, B00500 taken out,
    // `fixture` put in (as the base has it again: a change that costs one line), and
    // `amazon_cache` when its mtime moved.
    assert!((5..=6).contains(&changes.entries), "{changes:?}");
    assert_eq!(third.manifest.parent, second.id);
    days.keep(&third);

    // Nothing changes: the parent's lists are named as they are.
    let same = days.take();
    assert_eq!(
        (&same.manifest.tree, &same.manifest.changes),
        (&third.manifest.tree, &third.manifest.changes)
    );

    days.restore_exactly(0);
    let r = check::check(&repo, ReadData::Subset(100.0), 1).unwrap();
    assert!(r.ok(), "{:?}", r.errors);

    // The snapshot that wrote the base is forgotten: its list lives on in the others.
    let repo_dir = t.join("repo");
    let out = run(&[
        "--repo",
        repo_dir.to_str().unwrap(),
        "forget",
        &first.id.unwrap().to_hex(),
        "--prune",
    ]);
    assert!(out.status.success(), "{out:?}");
    days.restore_exactly(1);
    let r = check::check(&repo, ReadData::Subset(100.0), 1).unwrap();
    assert!(r.ok(), "{:?}", r.errors);

    // Most files change: the list is stored whole again, and is the next lists' base.
    for i in 0..120 {
        write(i, "d");
    }
    let whole = days.take();
    assert!(whole.manifest.changes.is_none());
    assert_ne!(whole.manifest.tree, first.manifest.tree);
    write(150, "e");
    let next = days.take();
    assert_eq!(next.manifest.parent, whole.id, "{:?}", next.warnings);
    assert_eq!(
        next.manifest.tree, whole.manifest.tree,
        "{:?}",
        next.manifest.changes
    );
    assert!(next.manifest.changes.is_some());
    let m = snapshot::load(&repo, next.id.as_ref().unwrap()).unwrap();
    assert_eq!(m.entries, next.manifest.entries);
}

/// Change lists longer than a reader holds whole (over 4,096 changes) are read blob by
/// blob: a snapshot built on one composes its own list from it as both stream by, `check`
/// reads every list beside the base they share, and each snapshot reads back and restores
/// exactly as its tree was.
#[test]
fn long_change_lists_stream_through_snapshot_check_and_restore() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    let amazon = src.join("amazon_cache");
    fs::create_dir_all(&amazon).unwrap();
    let write = |i: usize, v: &str| product(&amazon, &format!("amazon_B0{i:06}"), v);
    for i in 0..17_000 {
        write(i, "a");
    }
    let repo = Repository::init(&t.join("repo")).unwrap();
    let mut days = Days::new(&t, &repo, &src);
    let first = days.take();
    days.keep(&first);
    // 4,150 files changed and 50 gone: more changes than are held whole, fewer than a
    // quarter of the list.
    for i in (0..8_300).step_by(2) {
        write(i, "b");
    }
    for i in 16_900..16_950 {
        fs::remove_file(amazon.join(format!("amazon_B0{i:06}.json"))).unwrap();
    }
    let second = days.take();
    let changes = second.manifest.changes.as_ref().expect("stored as changes");
    assert!(changes.entries > 4_096, "{changes:?}");
    assert_eq!(second.manifest.tree, first.manifest.tree);
    days.keep(&second);
    // A few more: the parent's long list is read as it streams by, and again to compose.
    write(1, "c");
    write(4, "a");
    write(20_000, "new");
    let third = days.take();
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    assert_eq!(third.manifest.parent, second.id);
    assert_eq!(third.manifest.tree, first.manifest.tree, "never a chain");
    let changes = third.manifest.changes.as_ref().expect("stored as changes");
    assert!(changes.entries > 4_096, "{changes:?}");
    days.keep(&third);
    let r = check::check(&repo, ReadData::None, 1).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    days.restore_exactly(0);
}

/// A parent whose change list is damaged costs reading every file again; the new list is
/// stored whole, and check names the damaged snapshot.
#[test]
fn a_parent_with_a_damaged_change_list_is_read_past() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    take(&repo, &src);
    fs::write(src.join("FBA_ANALYSIS/extra.json"), b"{\"x\": 1}").unwrap();
    let second = take(&repo, &src);
    let mut damaged = second.manifest.clone();
    damaged.tags = vec!["damaged".into()];
    damaged.changes.as_mut().expect("stored as changes").blobs[0] =
        cachevault::BlobId::of(b"a blob that was never stored");
    let damaged_id = snapshot::write_manifest(&repo, &damaged).unwrap();
    assert!(snapshot::load(&repo, &damaged_id)
        .unwrap_err()
        .is_corruption());

    let mut o = opts(&src);
    o.parent = Some(damaged_id);
    let s = snapshot::create_listed(&repo, &o, &NoProgress).unwrap();
    assert!(s.manifest.complete);
    assert!(
        s.warnings.iter().any(|w| w.contains("cannot be read")),
        "{:?}",
        s.warnings
    );
    assert_eq!(s.manifest.parent, None);
    assert!(s.manifest.changes.is_none(), "a list built on damage");
    assert_eq!(s.manifest.summary.files_unchanged, 0);
    assert_eq!(s.manifest.entries, second.manifest.entries);

    let r = check::check(&repo, ReadData::None, 1).unwrap();
    assert!(!r.ok());
    assert!(
        r.errors.iter().any(|e| e.contains(&damaged_id.short())),
        "{:?}",
        r.errors
    );
}

/// check reads a shared base once for every list built on it, and names exactly the
/// snapshots a damaged list affects: damaged changes name their snapshot alone; a damaged
/// base names every snapshot built on it and no other.
#[test]
fn check_names_exactly_the_snapshots_a_damaged_list_affects() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    let minutes = std::cell::Cell::new(0);
    let take = |src: &Path| {
        let mut o = opts(src);
        minutes.set(minutes.get() + 1);
        o.time += chrono::Duration::minutes(minutes.get());
        snapshot::create_listed(&repo, &o, &NoProgress).unwrap()
    };
    let first = take(&src);
    fs::write(src.join("FBA_ANALYSIS/extra.json"), b"{\"x\": 1}").unwrap();
    let second = take(&src);
    fs::write(src.join("FBA_ANALYSIS/extra2.json"), b"{\"x\": 2}").unwrap();
    let third = take(&src);
    for s in [&second, &third] {
        assert_eq!(s.manifest.tree, first.manifest.tree);
        assert!(s.manifest.changes.is_some());
    }
    let good: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|s| s.id.unwrap().short())
        .collect();
    let r = check::check(&repo, ReadData::None, 1).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    assert_eq!(r.snapshots, 3);
    let never = cachevault::BlobId::of(b"a blob that was never stored");
    let named = |r: &check::CheckReport, id: &cachevault::BlobId| {
        r.errors.iter().any(|e| e.contains(&id.short()))
    };
    let remove = |id: &cachevault::BlobId| {
        fs::remove_file(
            t.join("repo/snapshots")
                .join(format!("{}.json", id.to_hex())),
        )
        .unwrap()
    };

    // Damaged changes: that snapshot alone.
    let mut bad = third.manifest.clone();
    bad.tags = vec!["bad changes".into()];
    bad.changes.as_mut().unwrap().blobs[0] = never;
    let bad_id = snapshot::write_manifest(&repo, &bad).unwrap();
    let r = check::check(&repo, ReadData::None, 1).unwrap();
    assert!(named(&r, &bad_id), "{:?}", r.errors);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    remove(&bad_id);

    // A damaged base (a blob never stored, or text that does not match its hash): the list
    // that is the base and the one built on it by changes, and no other.
    for (case, damage) in [("a lost blob", 0), ("a wrong hash", 1)] {
        let mut base = first.manifest.clone();
        base.tags = vec![format!("base {case}")];
        if damage == 0 {
            base.tree.blobs[0] = never;
        } else {
            base.tree.hash = Some(never);
        }
        let mut on_it = second.manifest.clone();
        on_it.tags = vec![format!("built on {case}")];
        on_it.tree = base.tree.clone();
        let base_id = snapshot::write_manifest(&repo, &base).unwrap();
        let on_id = snapshot::write_manifest(&repo, &on_it).unwrap();
        let r = check::check(&repo, ReadData::None, 1).unwrap();
        assert!(
            named(&r, &base_id) && named(&r, &on_id),
            "{case}: {:?}",
            r.errors
        );
        assert_eq!(r.errors.len(), 2, "{case}: {:?}", r.errors);
        for g in &good {
            assert!(
                !r.errors.iter().any(|e| e.contains(g)),
                "{case}: {:?}",
                r.errors
            );
        }
        // Each reads as check says: refused, while the good ones load.
        for id in [&base_id, &on_id] {
            assert!(
                snapshot::load(&repo, id).unwrap_err().is_corruption(),
                "{case}"
            );
        }
        remove(&base_id);
        remove(&on_id);
    }
    let r = check::check(&repo, ReadData::Subset(100.0), 1).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    for s in [&first, &second, &third] {
        let m = snapshot::load(&repo, s.id.as_ref().unwrap()).unwrap();
        assert_eq!(m.entries, s.manifest.entries);
    }
}

/// Files are created with their own mode when the umask leaves it whole, and given it
/// after when not: whatever the umask, a restore into an empty folder gives every file its
/// recorded mode.
#[test]
fn restored_modes_are_exact_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    let modes = [0o644, 0o600, 0o755, 0o444, 0o666, 0o777, 0o640, 0o1644];
    fs::create_dir_all(&src).unwrap();
    for m in modes {
        let p = src.join(format!("f{m:o}.json"));
        fs::write(&p, format!("{{\"mode\": {m}}}")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
    }
    let repo = t.join("repo");
    json(&repo, &["init", "--no-encrypt"], 0);
    json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    for umask in ["022", "077", "000", "027"] {
        let target = t.join(format!("restored-{umask}"));
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(["--repo", repo.to_str().unwrap(), "restore", "latest"])
            .arg("--target")
            .arg(&target)
            .output()
            .unwrap();
        assert!(out.status.success(), "umask {umask}: {out:?}");
        for m in modes {
            let got = fs::metadata(target.join(format!("f{m:o}.json")))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(got, m, "umask {umask}: f{m:o}.json restored as {got:o}");
        }
    }
}
