//! Hostile repository content: tampered manifests, tampered indexes, a zstd bomb and restore
//! targets that already hold symlinks. Each is refused as corruption (exit code 3, naming the
//! file) and nothing is ever written outside the restore target.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use cachevault::archive::{self, ArchiveIndex};
use cachevault::manifest::{Entry, EntryKind, Manifest};
use cachevault::snapshot;
use cachevault::{BlobId, NoProgress, RelPath, Repository};
use common::*;

/// A repository holding one snapshot of a small tree (`a.json`, `sub/b.json`, `sub/c.json`).
struct Fixture {
    t: TestDir,
    repo_dir: PathBuf,
    repo: Repository,
    manifest: Manifest,
    id: BlobId,
}

fn fixture() -> Fixture {
    let t = TestDir::new();
    t.write("src/a.json", b"{\"a\": 1}\n");
    t.write("src/sub/b.json", json_array(40, 3));
    t.write("src/sub/c.json", b"{\"c\": [1, 2, 3]}\n");
    let repo_dir = t.join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    let opts = backup_options(&t.join("src"));
    let s = snapshot::create_listed(&repo, &opts, &NoProgress).unwrap();
    Fixture {
        id: s.id.unwrap(),
        manifest: s.manifest,
        repo_dir,
        repo,
        t,
    }
}

impl Fixture {
    fn entry(&self, path: &str) -> Entry {
        self.manifest
            .entries
            .iter()
            .find(|e| e.path == RelPath::from(path))
            .unwrap_or_else(|| panic!("no entry {path}"))
            .clone()
    }

    /// Stores a manifest with these entries (the header is this snapshot's, retagged).
    fn store(&self, entries: Vec<Entry>) -> BlobId {
        let mut m = self.manifest.clone();
        m.entries = entries;
        m.tags = vec!["hostile".into()];
        snapshot::store_manifest(&self.repo, &mut m).unwrap()
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["--repo", self.repo_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&all)
    }

    fn restore(&self, id: &BlobId, target: &Path) -> Output {
        self.cli(&[
            "restore",
            &id.to_hex(),
            "--target",
            target.to_str().unwrap(),
        ])
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 3 and a message naming `what` (on stderr, or in check's report on stdout).
fn assert_corrupt(o: &Output, what: &str, case: &str) {
    let err = format!("{}{}", stderr(o), String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(3), "{case}: {err}");
    assert!(
        err.contains(what),
        "{case}: stderr does not name {what:?}: {err}"
    );
}

/// Every path below `dir`, for "nothing was written here" checks.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn tampered_manifests_are_refused_as_corruption() {
    let f = fixture();
    let elsewhere = f.t.mkdirp("elsewhere");
    let a = f.entry("a.json");
    let b = f.entry("sub/b.json");
    let sub = f.entry("sub");
    let with_path = |e: &Entry, p: &str| {
        let mut e = e.clone();
        e.path = RelPath::from(p);
        e
    };
    let abs_evil = f.t.join("evil-absolute.json");
    let mut link = a.clone();
    link.kind = EntryKind::Symlink;
    link.size = 0;
    link.hash = None;
    link.blobs.clear();
    link.target = Some(Box::new(RelPath::from(elsewhere.to_str().unwrap())));
    let mut bigger = a.clone();
    bigger.size += 1000;
    let mut smaller = b.clone();
    smaller.size = 10;
    let cases: Vec<(&str, Vec<Entry>, String)> = vec![
        (
            "a '..' path",
            vec![a.clone(), with_path(&a, "../evil.json")],
            "unsafe path".into(),
        ),
        (
            "a '..' inside a path",
            vec![a.clone(), with_path(&a, "sub/../../evil.json")],
            "unsafe path".into(),
        ),
        (
            "an absolute path",
            vec![a.clone(), with_path(&a, abs_evil.to_str().unwrap())],
            "absolute path".into(),
        ),
        (
            "duplicate entries",
            vec![a.clone(), a.clone()],
            "duplicate entry".into(),
        ),
        (
            "entries out of order",
            vec![with_path(&a, "b.json"), a.clone()],
            "not sorted".into(),
        ),
        (
            "a symlink, then a file through it",
            vec![link.clone(), with_path(&a, "a.json/x.json")],
            "not a folder".into(),
        ),
        (
            "a symlink, then a folder and a file through it",
            vec![
                link.clone(),
                with_path(&sub, "a.json/d"),
                with_path(&b, "a.json/d/x.json"),
            ],
            "not a folder".into(),
        ),
        (
            "a file, then a file below it",
            vec![a.clone(), with_path(&b, "a.json/x.json")],
            "not a folder".into(),
        ),
    ];
    for (case, entries, why) in cases {
        let id = f.store(entries);
        let target = f.t.join(format!("target-{}", id.short()));
        let o = f.restore(&id, &target);
        assert_corrupt(&o, &id.short(), case);
        assert!(stderr(&o).contains(&why), "{case}: {}", stderr(&o));
        assert!(listing(&elsewhere).is_empty(), "{case}: wrote outside");
        assert!(
            !f.t.join("evil.json").exists() && !abs_evil.exists(),
            "{case}"
        );
        assert!(listing(&target).is_empty(), "{case}: restored part of it");
        // check names the snapshot too, and the good snapshot still restores.
        let c = f.cli(&["check"]);
        assert_corrupt(&c, &id.short(), case);
        fs::remove_file(f.repo.snapshot_path(&id)).unwrap();
    }
    // See: a symlink entry followed by entries below it (`a -> /elsewhere`, `a/x.json`) was
    // accepted; restore created a real folder `a` in its place and failed only on the symlink.
    // It is now refused when the manifest is decoded (test above, cases "through it").

    // Sizes that lie: the file is refused before anything is written, the rest restored.
    for (case, lie, other) in [
        ("a size larger than the blobs", bigger, b.clone()),
        ("a size smaller than the blobs", smaller, a.clone()),
    ] {
        let path = lie.path.display();
        let mut entries = vec![sub.clone(), other.clone(), lie];
        entries.sort_by(|x, y| x.path.cmp(&y.path));
        let id = f.store(entries);
        let target = f.t.join(format!("target-{}", id.short()));
        let o = f.restore(&id, &target);
        assert_corrupt(&o, &path, case);
        assert!(stderr(&o).contains("blobs hold"), "{case}: {}", stderr(&o));
        assert!(
            !target.join(&path).exists(),
            "{case}: the lying file was written"
        );
        assert!(target.join(other.path.to_path()).exists(), "{case}");
        let leftovers: Vec<_> = listing(&target)
            .into_iter()
            .filter(|p| p.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{case}: {leftovers:?}");
        // check sees the lie without reading any data.
        let c = f.cli(&["check"]);
        assert_corrupt(&c, &path, case);
        fs::remove_file(f.repo.snapshot_path(&id)).unwrap();
    }
    // See: a manifest whose `size` disagreed with its blobs passed `check --read-data`, and
    // restore noticed only after writing the whole content to a temp file.

    // A header written by hand per docs/FORMAT.md that claims 2^60 entries in an empty list.
    let header = serde_json::json!({
        "version": 1, "time": "2026-11-25T14:00:00+01:00", "hostname": "h", "root": "/r",
        "paths": ["/r"], "complete": true, "summary": f.manifest.summary,
        "tree": {"blobs": [], "hash": BlobId::of(b"").to_hex(), "entries": 1u64 << 60, "size": 0}
    });
    let bytes = serde_json::to_vec(&header).unwrap();
    let id = BlobId::of(&bytes);
    fs::write(f.repo.snapshot_path(&id), &bytes).unwrap();
    let o = f.restore(&id, &f.t.join("target-huge"));
    assert_corrupt(&o, &id.short(), "2^60 entries");
    assert!(stderr(&o).contains("entry count"), "{}", stderr(&o));
    fs::remove_file(f.repo.snapshot_path(&id)).unwrap();

    // A header whose name is not its hash.
    let forged = f.repo.snapshot_path(&BlobId::of(b"forged"));
    fs::copy(f.repo.snapshot_path(&f.id), &forged).unwrap();
    let o = f.restore(&BlobId::of(b"forged"), &f.t.join("target-forged"));
    assert_corrupt(&o, &BlobId::of(b"forged").short(), "renamed manifest");
    fs::remove_file(forged).unwrap();

    let ok = f.cli(&["--json", "check", "--read-data"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

/// The only archive and its index, parsed.
fn only_archive(repo: &Repository) -> (PathBuf, PathBuf, ArchiveIndex) {
    let names: Vec<_> = fs::read_dir(repo.index_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 1);
    let idx: ArchiveIndex = serde_json::from_slice(&fs::read(&names[0]).unwrap()).unwrap();
    (repo.archive_path(&idx.archive), names[0].clone(), idx)
}

#[test]
fn tampered_indexes_are_refused_as_corruption() {
    let f = fixture();
    let (archive_path, index_path, good) = only_archive(&f.repo);
    let pristine = fs::read(&index_path).unwrap();
    assert!(good.frames.len() >= 2, "{good:?}");
    let huge = 1u64 << 60;
    type Tamper = Box<dyn Fn(&mut ArchiveIndex)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "a frame past the declared size",
            Box::new(|i| i.frames[0].offset = i.size + 100),
            "outside the archive",
        ),
        (
            "a frame past the end of the file, size lying along",
            Box::new(|i| {
                for fr in &mut i.frames {
                    fr.offset += 1 << 20;
                }
                i.size += 1 << 20;
            }),
            "beyond the end of the file",
        ),
        (
            "a frame 2^60 bytes long",
            Box::new(move |i| {
                i.frames[0].length = huge;
                for fr in &mut i.frames[1..] {
                    fr.offset += huge;
                }
                i.size += huge;
            }),
            "beyond the end of the file",
        ),
        (
            "a frame that claims 2^60 decompressed bytes",
            Box::new(move |i| i.frames[0].raw_length = huge),
            "decompressed bytes",
        ),
        (
            "overlapping frames",
            Box::new(|i| i.frames[1].offset = 0),
            "overlaps",
        ),
        (
            "a blob outside its frame",
            Box::new(|i| i.blobs[0].offset = i.frames[0].raw_length),
            "outside its frame",
        ),
        (
            "a blob longer than its frame",
            Box::new(|i| i.blobs[0].length = u64::MAX),
            "outside its frame",
        ),
        (
            "a blob in a missing frame",
            Box::new(|i| i.blobs[0].frame = 99),
            "missing frame",
        ),
        (
            "a newer index version",
            Box::new(|i| i.version = 99),
            "newer",
        ),
    ];
    let index_name = index_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for (n, (case, tamper, why)) in cases.into_iter().enumerate() {
        let mut idx = good.clone();
        tamper(&mut idx);
        fs::write(&index_path, serde_json::to_vec(&idx).unwrap()).unwrap();
        let target = f.t.join(format!("target-{n}"));
        let o = f.restore(&f.id, &target);
        let named = if why == "beyond the end of the file" {
            archive_path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        } else {
            index_name.clone()
        };
        if why == "newer" {
            // A newer format is not corruption, but it is refused all the same.
            assert_eq!(o.status.code(), Some(2), "{case}: {}", stderr(&o));
        } else {
            assert_corrupt(&o, &named, case);
        }
        assert!(stderr(&o).contains(why), "{case}: {}", stderr(&o));
        let c = f.cli(&["check", "--read-data"]);
        assert_ne!(c.status.code(), Some(0), "{case}: check passed");
    }
    fs::write(&index_path, &pristine).unwrap();

    // An index whose name does not match its archive.
    let wrong = f.repo.index_path(&BlobId::of(b"another archive"));
    fs::rename(&index_path, &wrong).unwrap();
    let o = f.restore(&f.id, &f.t.join("target-renamed"));
    assert_corrupt(
        &o,
        wrong.file_name().unwrap().to_str().unwrap(),
        "renamed index",
    );
    assert!(stderr(&o).contains("describes archive"), "{}", stderr(&o));
    assert_corrupt(&f.cli(&["check"]), "describes archive", "renamed index");
    fs::rename(&wrong, &index_path).unwrap();
    let ok = f.cli(&["check", "--read-data"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

/// A zstd frame that decompresses to `bytes` zeros, streamed (no content size in its header,
/// as a hostile writer would leave it).
fn zstd_bomb(bytes: usize) -> Vec<u8> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..bytes / zeros.len() {
        enc.write_all(&zeros).unwrap();
    }
    enc.finish().unwrap()
}

#[test]
fn a_zstd_bomb_ends_in_an_error_not_an_oom() {
    const BOMB: usize = 1 << 30; // 1 GiB of zeros in ~40 KiB
    let bomb = zstd_bomb(BOMB);
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    // The reader refuses to go past what the index declares.
    let err = archive::decompress_frame(&bomb, 4096).unwrap_err();
    assert!(!err.to_string().is_empty());
    // Even when the index declares the real size: no frame may be that large.
    assert!(archive::decompress_frame(&bomb, BOMB as u64).is_err());
    // A frame whose header declares its size, too.
    let declared = zstd::bulk::compress(&vec![0u8; 64 << 20], 1).unwrap();
    assert!(archive::decompress_frame(&declared, 4096).is_err());

    // Patch the bomb into a real repository, in place of the frame holding sub/b.json, with
    // an index that is consistent in every other way (named by the new archive's hash).
    let f = fixture();
    let (archive_path, index_path, mut idx) = only_archive(&f.repo);
    let old = fs::read(&archive_path).unwrap();
    let b = f.entry("sub/b.json");
    let frame_no = idx.blobs.iter().find(|x| x.id == b.blobs[0]).unwrap().frame as usize;
    let fr = idx.frames[frame_no];
    let mut patched = old[..fr.offset as usize].to_vec();
    patched.extend_from_slice(&bomb);
    patched.extend_from_slice(&old[(fr.offset + fr.length) as usize..]);
    let grow = bomb.len() as u64 as i64 - fr.length as i64;
    idx.frames[frame_no].length = bomb.len() as u64;
    for later in &mut idx.frames[frame_no + 1..] {
        later.offset = (later.offset as i64 + grow) as u64;
    }
    idx.size = patched.len() as u64;
    idx.archive = BlobId::of(&patched);
    fs::remove_file(&archive_path).unwrap();
    fs::remove_file(&index_path).unwrap();
    let new_archive = f.repo.archive_path(&idx.archive);
    fs::write(&new_archive, &patched).unwrap();
    fs::write(
        f.repo.index_path(&idx.archive),
        serde_json::to_vec(&idx).unwrap(),
    )
    .unwrap();
    // scan_archive, which trusts no index, stops at its own bound.
    let e = scan_archive_file(&new_archive).unwrap_err();
    assert!(e.is_corruption(), "{e}");

    // The binary, limited to 512 MiB of address space, fails cleanly on a 1 GiB bomb.
    let limited = |args: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 524288 && exec \"$0\" --repo \"$1\" {args}"
            ))
            .arg(BIN)
            .arg(&f.repo_dir)
            // Address space, not memory, is limited: keep thread stacks and malloc arenas
            // from eating it on machines with many cores.
            .env("RAYON_NUM_THREADS", "2")
            .env("MALLOC_ARENA_MAX", "2")
            .output()
            .unwrap()
    };
    let target = f.t.join("target-bomb");
    let o = limited(&format!(
        "restore {} --target {}",
        f.id.to_hex(),
        target.display()
    ));
    assert_corrupt(&o, "sub/b.json", "bomb restore");
    assert!(!target.join("sub/b.json").exists());
    let o = limited("check --read-data");
    assert_corrupt(&o, &new_archive.display().to_string(), "bomb check");
}

#[test]
fn restore_never_writes_through_symlinks_already_in_the_target() {
    let f = fixture();
    let mut entries = f.manifest.entries.clone();
    // A symlink of the snapshot's own, and a folder two levels down.
    let mut link = f.entry("a.json");
    link.path = RelPath::from("link.json");
    link.kind = EntryKind::Symlink;
    link.size = 0;
    link.hash = None;
    link.blobs.clear();
    link.target = Some(Box::new(RelPath::from("a.json")));
    let mut deep = f.entry("sub");
    deep.path = RelPath::from("deep");
    let mut inner = f.entry("sub");
    inner.path = RelPath::from("deep/inner");
    let mut deep_file = f.entry("sub/c.json");
    deep_file.path = RelPath::from("deep/inner/d.json");
    entries.extend([link, deep, inner, deep_file]);
    entries.sort_by(|x, y| x.path.cmp(&y.path));
    let id = f.store(entries);

    let elsewhere = f.t.mkdirp("elsewhere");
    let victim = f.t.write("elsewhere/victim.json", b"victim");
    let victim2 = f.t.write("elsewhere/victim2.json", b"victim2");
    let target = f.t.mkdirp("target");
    symlink(&elsewhere, target.join("sub")).unwrap(); // a folder of the snapshot
    symlink(&victim, target.join("a.json")).unwrap(); // a file of the snapshot
    symlink(&victim2, target.join("link.json")).unwrap(); // a symlink of the snapshot
    fs::create_dir(target.join("deep")).unwrap();
    symlink(&elsewhere, target.join("deep/inner")).unwrap(); // deeper down
    let before = listing(&elsewhere);

    let o = f.restore(&id, &target);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(
        listing(&elsewhere),
        before,
        "wrote into the symlinked folder"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"victim");
    assert_eq!(fs::read(&victim2).unwrap(), b"victim2");
    // Files and symlinks in the target are replaced, never written through.
    let a = fs::symlink_metadata(target.join("a.json")).unwrap();
    assert!(a.is_file(), "a.json is still a symlink");
    assert_eq!(fs::read(target.join("a.json")).unwrap(), b"{\"a\": 1}\n");
    assert_eq!(
        fs::read_link(target.join("link.json")).unwrap(),
        Path::new("a.json")
    );
    // The symlinked folders are left as they were, not followed.
    assert!(fs::symlink_metadata(target.join("sub"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(target.join("deep/inner"))
        .unwrap()
        .file_type()
        .is_symlink());
}
