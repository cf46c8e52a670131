//! Sparse files and hard links: a 1 GiB file holding 4 KiB of data restores as a sparse
//! file, zero runs between data restore exactly, hard links restore as one inode, and a
//! manifest whose `link` names anything but an earlier copy of the same file is corrupt.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cachevault::manifest::Entry;
use cachevault::{snapshot, BlobId, EntryKind, RelPath, Repository};
use common::*;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Bytes a file occupies on disk.
fn on_disk(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().blocks() * 512
}

/// blake3 of a file's content, streamed.
fn hash_file(p: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut fs::File::open(p).unwrap(), &mut h).unwrap();
    h.finalize()
}

/// Fails, naming the folder, unless its file system keeps holes: one without sparse files
/// would make the checks below fail for a reason that is not restore's.
fn require_holes(dir: &Path) {
    let probe = dir.join("hole-probe");
    let f = fs::File::create(&probe).unwrap();
    f.set_len(64 * MIB).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"x", 32 * MIB).unwrap();
    f.sync_all().unwrap();
    let used = on_disk(&probe);
    fs::remove_file(&probe).unwrap();
    assert!(
        used < MIB,
        "the file system holding {} does not keep holes (a 64 MiB file with one byte of data \
         uses {used} bytes): these tests need one that does (tmpfs, ext4, xfs, btrfs)",
        dir.display()
    );
}

fn restore_into(repo: &Path, target: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
    args.extend_from_slice(extra);
    json(repo, &args, 0)
}

#[test]
fn a_sparse_gigabyte_restores_sparse() {
    let t = TestDir::new();
    require_holes(t.path());
    let src = t.mkdirp("src");
    let big = src.join("big.bin");
    {
        let mut f = fs::File::create(&big).unwrap();
        f.set_len(GIB).unwrap();
        // Unaligned, so that the data shares its first and last block with zeros.
        f.seek(SeekFrom::Start(300 * MIB + 1000)).unwrap();
        f.write_all(&noise(4096, 7)).unwrap();
    }
    let want = hash_file(&big);
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let started = std::time::Instant::now();
    let snap = json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    eprintln!("snapshot of a 1 GiB sparse file: {:?}", started.elapsed());
    assert_eq!(snap["bytes_total"], GIB);
    assert!(
        snap["bytes_added"].as_u64().unwrap() < MIB,
        "zeros dedupe into one blob: {snap}"
    );

    let check = |p: &Path, case: &str| {
        let m = fs::metadata(p).unwrap();
        assert_eq!(m.len(), GIB, "{case}: length");
        assert!(
            on_disk(p) < MIB,
            "{case}: the restored file uses {} bytes on disk",
            on_disk(p)
        );
        assert_eq!(hash_file(p), want, "{case}: content");
    };
    // Into a new folder: an unnamed O_TMPFILE file linked into place.
    let out = t.join("out");
    let started = std::time::Instant::now();
    let doc = restore_into(&repo, &out, &[]);
    eprintln!("restore of a 1 GiB sparse file: {:?}", started.elapsed());
    assert_eq!(
        (doc["files"].as_u64(), doc["links"].as_u64()),
        (Some(1), Some(0))
    );
    check(&out.join("big.bin"), "new target");

    // Over an existing dense file: the new content replaces it and is sparse too.
    fs::write(out.join("big.bin"), noise(2 << 20, 9)).unwrap();
    restore_into(&repo, &out, &[]);
    check(&out.join("big.bin"), "over an existing file");

    // In place, over the snapshot's own root.
    fs::write(&big, noise(2 << 20, 11)).unwrap();
    json(&repo, &["restore", "latest", "--in-place"], 0);
    check(&big, "in place");
}

#[test]
fn zero_runs_between_data_restore_exactly() {
    let t = TestDir::new();
    require_holes(t.path());
    // (zeros?, length): unaligned short runs, a 4 KiB run across a block edge, aligned
    // blocks inside long runs, and a file that ends in zeros. Over the 1 MiB chunking
    // threshold, so zero runs also cross blob edges.
    let layout: &[(bool, usize)] = &[
        (false, 10_000),
        (true, 100),
        (false, 5_000),
        (true, 4096),
        (false, 3_000),
        (true, (1 << 20) + 123),
        (false, 70_000),
        (true, 300_000),
        (false, 1),
        (true, 8192 + 5),
    ];
    let mut big = Vec::new();
    for (i, &(zero, len)) in layout.iter().enumerate() {
        if zero {
            big.resize(big.len() + len, 0);
        } else {
            big.extend_from_slice(&noise(len, i as u64 + 1));
        }
    }
    // One blob: 4 KiB of data, two aligned zero blocks, data.
    let mut small = noise(4096, 21);
    small.resize(3 * 4096, 0);
    small.extend_from_slice(&noise(5000, 22));
    t.write("src/big.bin", &big);
    t.write("src/small.bin", &small);
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    json(&repo, &["snapshot", t.join("src").to_str().unwrap()], 0);
    let out = t.join("out");
    restore_into(&repo, &out, &[]);
    // Written densely at the source: the holes below are restore's doing.
    for (name, want, hole) in [("big.bin", &big, 1 << 20), ("small.bin", &small, 8192)] {
        let p = out.join(name);
        assert!(fs::read(&p).unwrap() == *want, "{name}: content differs");
        let used = on_disk(&p);
        let dense = (want.len() as u64).div_ceil(4096) * 4096;
        assert!(
            used <= dense - hole,
            "{name}: {used} bytes on disk for {} bytes with a {hole} byte hole",
            want.len()
        );
    }
}

/// `a.json`, `sub/b.json` and `sub/c.json`: three names of one file; `same.json`: a copy
/// with the same content; `other.json`: another file.
fn link_tree(src: &Path) -> Vec<u8> {
    let content = json_array(30, 5).into_bytes();
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.json"), &content).unwrap();
    fs::hard_link(src.join("a.json"), src.join("sub/b.json")).unwrap();
    fs::hard_link(src.join("a.json"), src.join("sub/c.json")).unwrap();
    fs::write(src.join("same.json"), &content).unwrap();
    fs::write(src.join("other.json"), b"{\"other\": true}\n").unwrap();
    content
}

fn entry<'a>(m: &'a cachevault::Manifest, path: &str) -> &'a Entry {
    m.entries
        .iter()
        .find(|e| e.path == RelPath::from(path))
        .unwrap_or_else(|| panic!("no entry {path}"))
}

fn load(repo: &Path, id: &serde_json::Value) -> cachevault::Manifest {
    let repo = Repository::open(repo).unwrap();
    snapshot::load(&repo, &id.as_str().unwrap().parse().unwrap()).unwrap()
}

#[test]
fn hard_links_restore_as_one_inode() {
    let t = TestDir::new();
    let src = t.join("src");
    let content = link_tree(&src);
    let len = content.len() as u64;
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let snap = json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    // The group is read once; the copy with the same content is a file of its own.
    assert_eq!(snap["files_new"], 5);
    assert_eq!(snap["bytes_read"], 2 * len + 16, "{snap}");
    let m = load(&repo, &snap["id"]);
    let a = entry(&m, "a.json");
    assert_eq!(a.link, None);
    for p in ["sub/b.json", "sub/c.json"] {
        let e = entry(&m, p);
        assert_eq!(e.link.as_deref(), Some(&RelPath::from("a.json")), "{p}");
        assert_eq!(
            (e.size, e.hash, &e.blobs),
            (a.size, a.hash, &a.blobs),
            "{p}"
        );
    }
    assert_eq!(entry(&m, "same.json").link, None);

    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    let nlink = |p: &Path| fs::metadata(p).unwrap().nlink();
    let assert_group = |out: &Path, case: &str| {
        let a = out.join("a.json");
        for p in ["sub/b.json", "sub/c.json"] {
            assert_eq!(
                ino(&out.join(p)),
                ino(&a),
                "{case}: {p} is not a link of a.json"
            );
            assert_eq!(fs::read(out.join(p)).unwrap(), content, "{case}: {p}");
        }
        assert_eq!(nlink(&a), 3, "{case}");
        assert_ne!(ino(&out.join("same.json")), ino(&a), "{case}");
        assert_eq!(nlink(&out.join("same.json")), 1, "{case}");
        assert_eq!(
            fs::metadata(&a).unwrap().mtime(),
            fs::metadata(src.join("a.json")).unwrap().mtime(),
            "{case}: mtime"
        );
    };
    let out = t.join("out");
    let dry = restore_into(&repo, &out, &["--dry-run"]);
    assert_eq!(
        (dry["files"].as_u64(), dry["links"].as_u64()),
        (Some(5), Some(2))
    );
    let doc = restore_into(&repo, &out, &[]);
    assert_eq!(
        (doc["files"].as_u64(), doc["links"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(
        doc["bytes"],
        2 * len + 16,
        "linked files are not written again"
    );
    assert_group(&out, "new target");
    // Again over the restored files (each name replaced): still one inode.
    let doc = restore_into(&repo, &out, &[]);
    assert_eq!(doc["links"], 2);
    assert_group(&out, "over existing files");

    // The second link alone: a plain file with the right content.
    let alone = t.join("alone");
    let doc = restore_into(&repo, &alone, &["--path", "sub/b.json"]);
    assert_eq!(
        (doc["files"].as_u64(), doc["links"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(fs::read(alone.join("sub/b.json")).unwrap(), content);
    assert_eq!(nlink(&alone.join("sub/b.json")), 1);
    assert!(!alone.join("a.json").exists());

    // Unchanged: reused from the parent, links and all.
    let again = json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(
        (
            again["files_unchanged"].as_u64(),
            again["bytes_read"].as_u64()
        ),
        (Some(5), Some(0))
    );
    assert_eq!(load(&repo, &again["id"]).entries, m.entries);

    // The group's first name gone: the links are recomputed from the new walk.
    fs::remove_file(src.join("a.json")).unwrap();
    let third = json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(third["bytes_read"], len, "the group is read once: {third}");
    let m3 = load(&repo, &third["id"]);
    assert_eq!(entry(&m3, "sub/b.json").link, None);
    assert_eq!(
        entry(&m3, "sub/c.json").link.as_deref(),
        Some(&RelPath::from("sub/b.json"))
    );
    let out3 = t.join("out3");
    let doc = restore_into(&repo, &out3, &[]);
    assert_eq!(doc["links"], 1);
    assert_eq!(ino(&out3.join("sub/b.json")), ino(&out3.join("sub/c.json")));
    assert_eq!(nlink(&out3.join("sub/b.json")), 2);
    json(&repo, &["check", "--read-data"], 0);
}

#[test]
fn a_link_to_anything_but_an_earlier_copy_is_corrupt() {
    let t = TestDir::new();
    let src = t.join("src");
    link_tree(&src);
    std::os::unix::fs::symlink("other.json", src.join("sym.json")).unwrap();
    let repo_dir = t.join("repo");
    json(&repo_dir, &["init"], 0);
    let snap = json(&repo_dir, &["snapshot", src.to_str().unwrap()], 0);
    let good = load(&repo_dir, &snap["id"]);
    let repo = Repository::open(&repo_dir).unwrap();
    let outside = t.mkdirp("outside");
    fs::write(outside.join("secret.json"), b"{}").unwrap();
    let outside_file = outside.join("secret.json");

    let with_link = |path: &str, link: &str| {
        let mut m = good.clone();
        for e in &mut m.entries {
            if e.path == RelPath::from(path) {
                e.link = Some(Box::new(RelPath::from(link)));
            }
        }
        m
    };
    let cases: Vec<(&str, cachevault::Manifest)> = vec![
        ("a missing entry", with_link("sub/b.json", "nowhere.json")),
        ("a folder", with_link("sub/b.json", "sub")),
        ("a symlink", with_link("sub/b.json", "sym.json")),
        ("itself", with_link("sub/b.json", "sub/b.json")),
        ("a later entry", with_link("a.json", "sub/c.json")),
        (
            "a file with other content",
            with_link("sub/b.json", "other.json"),
        ),
        ("another link", with_link("sub/c.json", "sub/b.json")),
        (
            "a path outside",
            with_link("sub/b.json", outside_file.to_str().unwrap()),
        ),
        (
            "a '..' path",
            with_link("sub/b.json", "../outside/secret.json"),
        ),
        ("a link on a symlink", with_link("sym.json", "a.json")),
        ("a link on a folder", with_link("sub", "a.json")),
    ];
    for (case, mut m) in cases {
        m.tags = vec!["hostile".into()];
        let id: BlobId = snapshot::store_manifest(&repo, &mut m).unwrap();
        let target = t.join(format!("target-{}", id.short()));
        let out = run(&[
            "--repo",
            repo_dir.to_str().unwrap(),
            "restore",
            &id.to_hex(),
            "--target",
            target.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{case}: {err}");
        assert!(err.contains(&id.short()), "{case}: {err}");
        assert!(err.contains("hard link"), "{case}: {err}");
        assert!(!target.exists(), "{case}: restored part of it");
        assert_eq!(fs::read(&outside_file).unwrap(), b"{}", "{case}");
        assert_eq!(fs::metadata(&outside_file).unwrap().nlink(), 1, "{case}");
        let check = run(&["--repo", repo_dir.to_str().unwrap(), "check"]);
        assert_eq!(check.status.code(), Some(3), "{case}: check passed");
        fs::remove_file(repo.snapshot_path(&id)).unwrap();
    }
    // The untampered snapshot still restores, as one inode.
    let out = t.join("out");
    let doc = restore_into(&repo_dir, &out, &[]);
    assert_eq!(doc["links"], 2);
    assert_eq!(
        fs::metadata(out.join("sub/c.json")).unwrap().ino(),
        fs::metadata(out.join("a.json")).unwrap().ino()
    );
    assert_eq!(
        good.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink)
            .count(),
        1
    );
}
