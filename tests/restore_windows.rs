//! A restore that reads its entry list as it goes, a window at a time: any window size
//! restores the same tree as a restore of the whole list (contents, modes, times, symlinks,
//! hard links across windows), a filtered one takes only what it names, damage past the first
//! window stops it there with what was written complete, and a hard link is never made to a
//! file reached through a symlink in the target.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cachevault::manifest::Entry;
use cachevault::restore::{self, RestoreOptions, RestoreSummary, RESTORE_MARKER};
use cachevault::snapshot;
use cachevault::store::BlobIndex;
use cachevault::{BlobId, Manifest, NoProgress, RelPath, Repository};
use common::*;

/// What a tree holds, path by path: kind, mode, mtime, content or link target, and for a
/// file the first path of its group of hard links (so that groups compare across trees).
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_of: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            format!("dir {:o} {}", m.mode() & 0o7777, m.mtime())
        } else {
            let group = first_of
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone();
            format!(
                "file {:o} {} {} group {group}",
                m.mode() & 0o7777,
                m.mtime(),
                blake3::hash(&fs::read(&p).unwrap())
            )
        };
        out.insert(rel, what);
    }
    out
}

struct Fixture {
    t: TestDir,
    src: PathBuf,
    repo: Repository,
    id: BlobId,
    manifest: Manifest,
}

/// A tree of 6 folders and about 130 entries: two groups of hard links whose later paths lie
/// in other folders, symlinks, a folder and a file with modes and times of their own.
fn fixture() -> Fixture {
    let t = TestDir::new();
    let src = t.join("src");
    for (d, n) in [("a", 20), ("b/deep", 15), ("m", 25), ("q", 10), ("z", 30)] {
        for i in 0..n {
            t.write(
                format!("src/{d}/f{i:03}.json"),
                json_array(3 + i % 7, (i * 31 + d.len()) as u64),
            );
        }
    }
    fs::hard_link(src.join("a/f001.json"), src.join("m/link-to-a1.json")).unwrap();
    fs::hard_link(src.join("a/f001.json"), src.join("z/link-to-a1.json")).unwrap();
    fs::hard_link(src.join("b/deep/f002.json"), src.join("q/link-to-b2.json")).unwrap();
    std::os::unix::fs::symlink("../a/f003.json", src.join("m/sym.json")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("z/dangling")).unwrap();
    fs::set_permissions(src.join("q"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(src.join("z/f004.json"), fs::Permissions::from_mode(0o640)).unwrap();
    set_times(&src.join("z/f005.json"), 1_600_000_000, 1_600_000_000);
    // Folders last: adding to them above changed their times.
    for (dir, secs) in [("b/deep", 1_500_000_000), ("q", 1_400_000_000)] {
        fs::File::open(src.join(dir))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    }
    let repo = Repository::init(&t.join("repo")).unwrap();
    let s = snapshot::create_listed(&repo, &backup_options(&src), &NoProgress).unwrap();
    Fixture {
        id: s.id.unwrap(),
        manifest: s.manifest,
        src,
        repo,
        t,
    }
}

impl Fixture {
    fn streamed(
        &self,
        id: &BlobId,
        target: &Path,
        opts: RestoreOptions,
    ) -> cachevault::Result<RestoreSummary> {
        let index = std::sync::Arc::new(BlobIndex::load(&self.repo).unwrap());
        let header = snapshot::load_header(&self.repo, id).unwrap();
        restore::restore_streamed(&self.repo, index, *id, &header, target, &opts, &NoProgress)
    }

    fn entry(&self, path: &str) -> Entry {
        self.manifest
            .entries
            .iter()
            .find(|e| e.path == RelPath::from(path))
            .unwrap_or_else(|| panic!("no entry {path}"))
            .clone()
    }
}

fn window(n: usize) -> RestoreOptions {
    RestoreOptions {
        window: n,
        ..RestoreOptions::default()
    }
}

#[test]
fn every_window_size_restores_the_same_tree() {
    let f = fixture();
    let want = describe(&f.src);
    assert!(want.len() > 100, "{}", want.len());
    // The same list whole, as a baseline.
    let whole_target = f.t.join("whole");
    let whole = restore::restore(
        &f.repo,
        &f.manifest,
        &whole_target,
        &RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(describe(&whole_target), want);
    assert_eq!(whole.links, 3);
    for n in [1, 2, 5, 17, 64, 0] {
        let target = f.t.join(format!("w{n}"));
        let s = f.streamed(&f.id, &target, window(n)).unwrap();
        assert!(s.errors.is_empty(), "window {n}: {:?}", s.errors);
        assert_eq!(describe(&target), want, "window {n}");
        // Every later path of a group is a link, never a copy, wherever its first path lay.
        assert_eq!(
            (s.files, s.dirs, s.symlinks, s.links, s.bytes),
            (
                whole.files,
                whole.dirs,
                whole.symlinks,
                whole.links,
                whole.bytes
            ),
            "window {n}"
        );
        assert!(!target.join(RESTORE_MARKER).exists(), "window {n}");
        // A second restore over the first (not empty: files go through temp names) leaves
        // it the same.
        let again = f.streamed(&f.id, &target, window(n)).unwrap();
        assert!(again.errors.is_empty(), "window {n}: {:?}", again.errors);
        assert_eq!(describe(&target), want, "window {n}, again");
    }
}

#[test]
fn a_filtered_streamed_restore_takes_only_what_it_names() {
    let f = fixture();
    let target = f.t.join("only-m");
    let s = f
        .streamed(
            &f.id,
            &target,
            RestoreOptions {
                paths: vec![RelPath::from("m"), RelPath::from("q/link-to-b2.json")],
                window: 3,
                ..RestoreOptions::default()
            },
        )
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let got = describe(&target);
    let want: BTreeMap<String, String> = describe(&f.src)
        .into_iter()
        .filter(|(p, _)| p.starts_with("m/") || p == "m" || p == "q/link-to-b2.json")
        // The first paths of their groups are not restored: the links come back as copies,
        // each the first of its own group.
        .map(|(p, d)| {
            let d = match d.find(" group ") {
                Some(i) => format!("{} group {p}", &d[..i]),
                None => d,
            };
            (p, d)
        })
        .collect();
    // The folder `q` itself was not named: it is made, with default metadata.
    let got: BTreeMap<String, String> = got.into_iter().filter(|(p, _)| p != "q").collect();
    assert_eq!(got, want);
    assert_eq!(s.links, 0);

    // A path nothing matches: an error, and the target is not made.
    let none = f.t.join("none");
    let err = f
        .streamed(
            &f.id,
            &none,
            RestoreOptions {
                paths: vec![RelPath::from("no/such")],
                window: 2,
                ..RestoreOptions::default()
            },
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("no entry of the snapshot matches"),
        "{err}"
    );
    assert!(!none.exists());
}

#[test]
fn damage_past_the_first_window_stops_the_restore_there() {
    let f = fixture();
    // The list with an entry that climbs out of the target at its end: every path before
    // it is sound.
    let mut entries = f.manifest.entries.clone();
    let mut evil = f.entry("z/f001.json");
    evil.path = RelPath::from("zz/../../evil.json");
    entries.push(evil);
    let mut m = f.manifest.clone();
    m.entries = entries;
    m.tags = vec!["hostile".into()];
    let bad = snapshot::store_manifest(&f.repo, &mut m).unwrap();

    // Whole, nothing is written.
    let whole = f.t.join("whole");
    let err = f.streamed(&bad, &whole, window(0)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("unsafe path"), "{err}");
    assert!(!whole.exists() || fs::read_dir(&whole).unwrap().next().is_none());

    // In windows of 4, the windows before the damage are written, complete and settled.
    let target = f.t.join("part");
    let err = f.streamed(&bad, &target, window(4)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains(&bad.short()), "{err}");
    assert!(!f.t.join("evil.json").exists() && !f.t.path().join("../evil.json").exists());
    assert!(
        !target.join(RESTORE_MARKER).exists(),
        "the files written are complete"
    );
    let want = describe(&f.src);
    let got = describe(&target);
    assert!(
        got.len() > 100,
        "the windows before the damage: {}",
        got.len()
    );
    for (p, d) in &got {
        assert_eq!(want.get(p), Some(d), "{p}");
    }
}

#[test]
fn a_hard_link_is_never_made_to_a_file_behind_a_symlink_in_the_target() {
    let f = fixture();
    // The target holds `a` as a symlink to a folder elsewhere, which holds a file with the
    // content of `a/f001.json`, the first path of a group whose later paths come in later
    // windows.
    let elsewhere = f.t.mkdirp("elsewhere");
    fs::copy(f.src.join("a/f001.json"), elsewhere.join("f001.json")).unwrap();
    let target = f.t.mkdirp("target");
    std::os::unix::fs::symlink(&elsewhere, target.join("a")).unwrap();
    let s = f.streamed(&f.id, &target, window(1)).unwrap();
    // Everything under `a` fails; nothing is written through the symlink.
    assert!(!s.errors.is_empty());
    assert!(
        s.errors.iter().all(|e| e.starts_with("a")),
        "{:?}",
        s.errors
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1);
    let outside = fs::metadata(elsewhere.join("f001.json")).unwrap();
    assert_eq!(outside.nlink(), 1, "linked to a file outside the target");
    // The later paths are copies with the right content; the group without `a` holds.
    let want = fs::read(f.src.join("a/f001.json")).unwrap();
    for p in ["m/link-to-a1.json", "z/link-to-a1.json"] {
        let m = fs::metadata(target.join(p)).unwrap();
        assert_ne!(m.ino(), outside.ino(), "{p}");
        assert_eq!(fs::read(target.join(p)).unwrap(), want, "{p}");
    }
    assert_eq!(
        s.links, 1,
        "q/link-to-b2.json still links to b/deep/f002.json"
    );
    assert_eq!(
        fs::metadata(target.join("q/link-to-b2.json"))
            .unwrap()
            .ino(),
        fs::metadata(target.join("b/deep/f002.json")).unwrap().ino()
    );
}

#[test]
fn a_file_named_as_the_marker_is_restored_whatever_the_window() {
    let t = TestDir::new();
    let src = t.join("src");
    t.write(format!("src/{RESTORE_MARKER}"), b"not ours\n");
    t.write("src/-early.json", b"{}\n");
    for i in 0..10 {
        t.write(format!("src/d/f{i}.json"), json_array(2, i));
    }
    let repo = Repository::init(&t.join("repo")).unwrap();
    let s = snapshot::create_listed(&repo, &backup_options(&src), &NoProgress).unwrap();
    let id = s.id.unwrap();
    let want = describe(&src);
    for n in [1, 2, 3, 0] {
        let target = t.join(format!("w{n}"));
        let index = std::sync::Arc::new(BlobIndex::load(&repo).unwrap());
        let header = snapshot::load_header(&repo, &id).unwrap();
        let r =
            restore::restore_streamed(&repo, index, id, &header, &target, &window(n), &NoProgress)
                .unwrap();
        assert!(r.errors.is_empty(), "window {n}: {:?}", r.errors);
        assert_eq!(describe(&target), want, "window {n}");
    }
}

/// `cachevault restore` of a list longer than one window, stopped by SIGTERM while it writes
/// the first: it writes no further window, exits 143 saying so, and leaves neither the
/// marker (every file written is complete) nor a temp file.
#[test]
fn a_signal_stops_the_restore_between_windows_with_what_was_written_complete() {
    let t = TestDir::new();
    let src = t.join("src");
    let per = restore::WINDOW_ENTRIES + 500;
    for i in 0..per {
        t.write(
            format!("src/d{}/f{i:05}.json", i % 3),
            format!("{{\"n\": {i}}}\n"),
        );
    }
    let repo_dir = t.join("repo");
    let repo = Repository::init(&repo_dir).unwrap();
    snapshot::create_listed(&repo, &backup_options(&src), &NoProgress).unwrap();
    let target = t.join("restored");
    let args = [
        "--repo",
        repo_dir.to_str().unwrap(),
        "restore",
        "latest",
        "--target",
    ];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    args.push(target.as_os_str());
    let child = spawn_paused(&args, "restore.writing");
    terminate_paused(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!target.join(RESTORE_MARKER).exists());
    let written = files_under(&target);
    assert!(
        written.iter().all(|p| !p.ends_with(".tmp")),
        "a temp file was left: {written:?}"
    );
    let files = written.iter().filter(|p| p.ends_with(".json")).count();
    assert!(
        files < per - 400,
        "{files} of {per} files: the windows after the signal were written"
    );
    for p in written.iter().filter(|p| p.ends_with(".json")) {
        assert_eq!(
            fs::read(target.join(p)).unwrap(),
            fs::read(src.join(p)).unwrap(),
            "{p}"
        );
    }
}
