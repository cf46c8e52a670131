//! The storage layer's contract, checked the same way for every backend: objects by kind and
//! name, atomic writes, staged publishes, appends, renames, missing objects, locks; and a whole
//! repository (snapshot, restore, forget, prune, check) over a backend that is not a folder.

mod common;

use std::fs;
use std::io::Write;
use std::time::Duration;

use cachevault::backend::local::LocalBackend;
use cachevault::backend::memory::MemoryBackend;
use cachevault::backend::{Backend, ObjectKind};
use cachevault::check::{self, ReadData};
use cachevault::compare::compare_trees;
use cachevault::prune::{self, PruneOptions};
use cachevault::restore::{self, RestoreOptions};
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::{LockKind, NoProgress, Repository};
use common::*;

/// Every guarantee of [`Backend`], asserted on `b`.
fn conformance(b: &dyn Backend) {
    b.create().unwrap();
    // Empty kinds list nothing; missing objects are "not found", whatever the backend.
    for kind in ObjectKind::ALL {
        assert!(b.list(kind).unwrap().is_empty(), "{kind} not empty");
    }
    let e = b.read(ObjectKind::Snapshot, "nope.json").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    match b.open(ObjectKind::Archive, "nope") {
        Err(e) => assert!(e.is_not_found(), "{e}"),
        Ok(_) => panic!("opened a missing object"),
    }
    b.remove(ObjectKind::Index, "never-there.json").unwrap();

    // Whole writes replace (state objects); kinds are separate namespaces.
    b.write(ObjectKind::State, "s.json", b"first").unwrap();
    b.write(ObjectKind::State, "s.json", b"second").unwrap();
    assert_eq!(b.read(ObjectKind::State, "s.json").unwrap(), b"second");
    b.remove(ObjectKind::State, "s.json").unwrap();
    b.write(ObjectKind::Snapshot, "a.json", b"second").unwrap();
    b.write(ObjectKind::Index, "a.json", b"an index").unwrap();
    b.write(ObjectKind::Config, "config.json", b"{}").unwrap();
    b.write(ObjectKind::State, "schedule.json", b"{}").unwrap();
    b.sync(ObjectKind::Snapshot).unwrap();
    assert_eq!(b.read(ObjectKind::Snapshot, "a.json").unwrap(), b"second");
    assert_eq!(b.read(ObjectKind::Index, "a.json").unwrap(), b"an index");
    let names = |k| {
        let mut v: Vec<(String, u64)> = b
            .list(k)
            .unwrap()
            .into_iter()
            .map(|o| (o.name, o.size))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(ObjectKind::Snapshot), vec![("a.json".into(), 6)]);
    // Objects at the top do not leak into one another's listings.
    assert_eq!(names(ObjectKind::Config), vec![("config.json".into(), 2)]);
    assert_eq!(names(ObjectKind::State), vec![("schedule.json".into(), 2)]);

    // A staged object is invisible until published, and gone if dropped.
    let mut s = b.stage(ObjectKind::Archive).unwrap();
    s.file().write_all(&noise(300_000, 7)).unwrap();
    assert!(b.list(ObjectKind::Archive).unwrap().is_empty());
    b.publish(s, "pack.tar.zst").unwrap();
    let mut dropped = b.stage(ObjectKind::Archive).unwrap();
    dropped.file().write_all(b"never published").unwrap();
    drop(dropped);
    assert_eq!(
        names(ObjectKind::Archive),
        vec![("pack.tar.zst".into(), 300_000)]
    );

    // Ranges read exactly; a range past the end is an error, not a short read.
    let mut o = b.open(ObjectKind::Archive, "pack.tar.zst").unwrap();
    assert_eq!(o.len(), 300_000);
    assert_eq!(
        o.read_at(123_456, 1000).unwrap(),
        noise(300_000, 7)[123_456..124_456].to_vec()
    );
    assert!(o.read_at(299_999, 2).is_err());
    assert!(o.read_at(u64::MAX, 2).is_err());

    // Appends accumulate, creating the object first.
    b.append(ObjectKind::Journal, "2026-11.jsonl", b"one\n")
        .unwrap();
    b.append(ObjectKind::Journal, "2026-11.jsonl", b"two\n")
        .unwrap();
    assert_eq!(
        b.read(ObjectKind::Journal, "2026-11.jsonl").unwrap(),
        b"one\ntwo\n"
    );

    // Rename moves across kinds; the source is gone; a missing source is an error.
    b.rename(
        (ObjectKind::Index, "a.json"),
        (ObjectKind::Damaged, "index-a.json"),
    )
    .unwrap();
    assert!(b
        .read(ObjectKind::Index, "a.json")
        .unwrap_err()
        .is_not_found());
    assert_eq!(
        b.read(ObjectKind::Damaged, "index-a.json").unwrap(),
        b"an index"
    );
    assert!(b
        .rename((ObjectKind::Index, "a.json"), (ObjectKind::Damaged, "x"))
        .is_err());

    b.remove(ObjectKind::Snapshot, "a.json").unwrap();
    assert!(b.list(ObjectKind::Snapshot).unwrap().is_empty());

    // Locks: shared with shared, exclusive alone; released on drop.
    let mut quiet = |_: &str| {};
    let wait = Duration::from_millis(200);
    let r1 = b.lock(LockKind::Shared, "t1", wait, &mut quiet).unwrap();
    let r2 = b.lock(LockKind::Shared, "t2", wait, &mut quiet).unwrap();
    let e = b
        .lock(LockKind::Exclusive, "t3", wait, &mut quiet)
        .unwrap_err();
    assert!(matches!(e, cachevault::Error::Locked(_)), "{e}");
    drop((r1, r2));
    let x = b.lock(LockKind::Exclusive, "t4", wait, &mut quiet).unwrap();
    assert!(b.lock(LockKind::Shared, "t5", wait, &mut quiet).is_err());
    drop(x);
    b.lock(LockKind::Shared, "t6", wait, &mut quiet).unwrap();

    // A second create over a repository that holds something is refused.
    assert!(b.create().is_err());
}

#[test]
fn the_local_backend_keeps_the_contract() {
    let t = TestDir::new();
    let b = LocalBackend::new(&t.join("repo"));
    conformance(&b);
    // Describing an object names it where it is.
    assert_eq!(
        b.describe(ObjectKind::Archive, "x.tar.zst"),
        t.join("repo/archives/x.tar.zst").display().to_string()
    );
    // Leftovers of interrupted writers are not objects, and remove_leftovers takes them.
    let half = cachevault::fsutil::temp_path_for(&t.join("repo/archives/x.tar.zst"));
    fs::write(&half, b"half").unwrap();
    assert_eq!(b.list(ObjectKind::Archive).unwrap().len(), 1);
    let (n, bytes) = b.remove_leftovers(false).unwrap();
    assert!(n >= 1 && bytes >= 4, "{n} {bytes}");
    assert!(!half.exists());
}

#[test]
fn the_memory_backend_keeps_the_contract() {
    conformance(&MemoryBackend::new());
}

#[test]
fn urls_of_unsupported_kinds_are_refused_not_taken_for_folders() {
    for loc in [
        "sftp://host/path",
        "rest:http://x/",
        "b2:bucket/x",
        "gs://b/p",
    ] {
        let e = Repository::init_at(loc).unwrap_err();
        assert!(e.to_string().contains(loc), "{loc}: {e}");
        assert!(!std::path::Path::new(loc).exists());
    }
    assert!(Repository::init_at("").is_err());
}

/// The whole repository above the storage layer works on a backend that is not a folder:
/// nothing reaches around it to the file system.
#[test]
fn a_repository_in_memory_snapshots_restores_forgets_prunes_and_checks() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let b = MemoryBackend::new();
    let repo = Repository::init_in(Box::new(b.clone())).unwrap();
    assert!(repo.local_path().is_none());
    let opts = |time: &str| SnapshotOptions {
        root: src.clone(),
        includes: Vec::new(),
        kind: cachevault::manifest::SnapshotKind::Backup,
        types: Vec::new(),
        tags: Vec::new(),
        time: chrono::DateTime::parse_from_rfc3339(time).unwrap(),
        hostname: "test".into(),
        rehash: false,
        dry_run: false,
        parent: None,
    };
    let first =
        snapshot::create_listed(&repo, &opts("2026-11-25T12:00:00+00:00"), &NoProgress).unwrap();
    let first_id = first.id.unwrap();
    fs::write(src.join("changed.json"), json_array(2000, 3)).unwrap();
    let second =
        snapshot::create_listed(&repo, &opts("2026-11-26T12:00:00+00:00"), &NoProgress).unwrap();
    assert!(b.list(ObjectKind::Archive).unwrap().len() >= 2);

    // Reopened from the same objects, it restores byte for byte.
    let repo = Repository::open_in(Box::new(b.clone())).unwrap();
    let out = t.join("restored");
    let m = snapshot::load(&repo, &second.id.unwrap()).unwrap();
    restore::restore(&repo, &m, &out, &RestoreOptions::default(), &NoProgress).unwrap();
    assert!(compare_trees(&src, &out, false).unwrap().is_empty());

    // Forget the first, prune, and the second still checks and restores whole.
    let removal = cachevault::forget::remove(&repo, &[first_id]);
    assert!(removal.error.is_none(), "{:?}", removal.error);
    assert_eq!(removal.removed, vec![first_id]);
    prune::prune(
        &repo,
        &PruneOptions {
            max_unused: 0.0,
            dry_run: false,
        },
        &NoProgress,
    )
    .unwrap();
    let report = check::check(&repo, ReadData::All, 1).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let out2 = t.join("restored2");
    restore::restore(&repo, &m, &out2, &RestoreOptions::default(), &NoProgress).unwrap();
    assert!(compare_trees(&src, &out2, false).unwrap().is_empty());
    // Not one file was written for the repository itself.
    let mut top: Vec<String> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["OUTPUTS", "restored", "restored2"]);
}

#[test]
fn the_s3_backend_keeps_the_contract() {
    let Some(moto) = common::s3::Moto::start() else {
        return;
    };
    moto.bucket("contract");
    let url = moto.url("contract", "some/prefix");
    let b = cachevault::backend::s3::S3Backend::open(&url).unwrap();
    conformance(&b);
    // moto keeps create-only writes, and the backend learned so.
    assert!(b.create_only_writes().unwrap());
    assert_eq!(b.location(), url);
    // Objects live under the prefix, in the same folders as on disk.
    let keys = moto.keys("contract", "some/prefix/");
    assert!(
        keys.iter()
            .any(|k| k == "some/prefix/archives/pack.tar.zst"),
        "{keys:?}"
    );
    // A content-addressed object is never replaced by a second writer.
    b.write(ObjectKind::Snapshot, "same.json", b"first")
        .unwrap();
    b.write(ObjectKind::Snapshot, "same.json", b"other")
        .unwrap();
    assert_eq!(b.read(ObjectKind::Snapshot, "same.json").unwrap(), b"first");
    // A large object goes up in parts and reads back exactly, range by range.
    let big = noise(40 << 20, 11);
    let mut s = b.stage(ObjectKind::Archive).unwrap();
    s.file().write_all(&big).unwrap();
    b.publish(s, "big.tar.zst").unwrap();
    let mut o = b.open(ObjectKind::Archive, "big.tar.zst").unwrap();
    assert_eq!(o.len(), big.len() as u64);
    let at = (33 << 20) + 17;
    assert_eq!(
        o.read_at(at, 4096).unwrap(),
        big[at as usize..at as usize + 4096]
    );
    // A whole repository over S3.
    moto.bucket("whole");
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = Repository::init_at(&moto.url("whole", "r")).unwrap();
    let s = snapshot::create_listed(
        &repo,
        &SnapshotOptions {
            root: src.clone(),
            includes: Vec::new(),
            kind: cachevault::manifest::SnapshotKind::Backup,
            types: Vec::new(),
            tags: Vec::new(),
            time: chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00+00:00").unwrap(),
            hostname: "test".into(),
            rehash: false,
            dry_run: false,
            parent: None,
        },
        &NoProgress,
    )
    .unwrap();
    let repo = Repository::open_at(&moto.url("whole", "r")).unwrap();
    let m = snapshot::load(&repo, &s.id.unwrap()).unwrap();
    restore::restore(
        &repo,
        &m,
        &t.join("out"),
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert!(compare_trees(&src, &t.join("out"), false)
        .unwrap()
        .is_empty());
    let report = check::check(&repo, ReadData::All, 1).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Opening a prefix that holds no repository says so.
    let e = Repository::open_at(&moto.url("whole", "elsewhere")).unwrap_err();
    assert!(matches!(e, cachevault::Error::NotARepository(_)), "{e}");
    // A bucket that does not exist is named in the error.
    let e = Repository::init_at(&moto.url("no-such-bucket", "r")).unwrap_err();
    assert!(e.to_string().contains("no-such-bucket"), "{e}");
}
