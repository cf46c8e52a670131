//! A snapshot that walks, reads and writes its list a window at a time: on trees of several
//! windows, the list it stores is exactly the list it made, whether it is kept as changes,
//! passes the change limit in the middle of the walk (and is rebuilt whole from the
//! parent's list), loses a folder, or has hard links whose paths lie windows apart; and it
//! restores to the tree it read.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cachevault::manifest::Entry;
use cachevault::restore::{self, RestoreOptions};
use cachevault::snapshot::{self, SnapshotSummary};
use cachevault::{NoProgress, Repository};
use common::*;

/// Folders of this many files: three of them fill more than two windows of the walk.
const PER_FOLDER: usize = 3000;

fn file(root: &Path, folder: &str, i: usize) -> std::path::PathBuf {
    root.join(folder).join(format!("B{i:06}.json"))
}

fn write_tree(root: &Path) {
    for folder in ["amazon", "pages", "suggestions"] {
        fs::create_dir_all(root.join(folder)).unwrap();
        for i in 0..PER_FOLDER {
            fs::write(file(root, folder, i), format!("{{\"{folder}\": {i}}}")).unwrap();
        }
    }
}

/// A snapshot a minute after the last one, its list as made beside it.
fn take(repo: &Repository, root: &Path, minute: i64) -> SnapshotSummary {
    let mut o = backup_options(root);
    o.time += chrono::Duration::minutes(minute);
    let s = snapshot::create_listed(repo, &o, &NoProgress).unwrap();
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
    s
}

/// The stored list, read back.
fn stored(repo: &Repository, s: &SnapshotSummary) -> Vec<Entry> {
    snapshot::load(repo, s.id.as_ref().unwrap())
        .unwrap()
        .entries
}

/// The list a snapshot with no parent makes of the tree as it is now, in a repository of
/// its own.
fn fresh(root: &Path, at: &Path) -> Vec<Entry> {
    let repo = Repository::init(at).unwrap();
    let s = take(&repo, root, 0);
    stored(&repo, &s)
}

fn assert_restores(repo: &Repository, s: &SnapshotSummary, root: &Path, to: &Path) {
    let m = snapshot::load(repo, s.id.as_ref().unwrap()).unwrap();
    let r = restore::restore(repo, &m, to, &RestoreOptions::default(), &NoProgress).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let diffs = cachevault::compare::compare_trees(root, to, true).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
}

/// The child's output once it ends; a child still running 30 s after `since` is killed and
/// the test fails with `hung`.
fn ended_within_30s(
    mut child: std::process::Child,
    since: std::time::Instant,
    hung: &str,
) -> std::process::Output {
    while child.try_wait().unwrap().is_none() {
        if since.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("{hung} within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_list_past_its_change_limit_midway_is_rebuilt_whole_from_the_parent() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    write_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    let first = take(&repo, &src, 1);
    assert!(first.manifest.changes.is_none());
    assert_eq!(stored(&repo, &first), first.manifest.entries);
    assert_eq!(first.manifest.tree.entries as usize, 3 * PER_FOLDER + 3);

    // A few changes in every folder: kept as changes to the first list.
    for folder in ["amazon", "pages", "suggestions"] {
        for i in (0..PER_FOLDER).step_by(300) {
            fs::write(file(&src, folder, i), b"{\"changed\": 1}").unwrap();
        }
    }
    fs::remove_file(file(&src, "pages", 7)).unwrap();
    let second = take(&repo, &src, 2);
    let changes = second.manifest.changes.as_ref().expect("stored as changes");
    // 30 files, one taken out, and the folder it left (its times changed).
    assert_eq!(changes.entries, 32, "{changes:?}");
    assert_eq!(second.manifest.tree, first.manifest.tree);
    assert_eq!(stored(&repo, &second), second.manifest.entries);
    assert_eq!(second.manifest.entries, fresh(&src, &t.join("fresh2")));

    // Every other file of the second folder changes: past a quarter of the list by the
    // middle of the walk, with the first folder's entries already kept as changes.
    for i in (0..PER_FOLDER).step_by(2) {
        fs::write(file(&src, "pages", i + 1), b"{\"changed\": 2}").unwrap();
    }
    for i in (0..PER_FOLDER).step_by(2) {
        fs::write(file(&src, "suggestions", i), b"{\"changed\": 3}").unwrap();
    }
    let third = take(&repo, &src, 3);
    assert!(third.manifest.changes.is_none(), "stored whole");
    assert_ne!(third.manifest.tree, first.manifest.tree);
    let list = stored(&repo, &third);
    assert_eq!(list, third.manifest.entries);
    assert_eq!(list, fresh(&src, &t.join("fresh3")));
    let st = &third.manifest.summary;
    assert_eq!(st.files_unchanged as usize, 3 * PER_FOLDER - 3000, "{st:?}");
    assert_eq!((st.files_changed + st.files_new) as usize, 3000, "{st:?}");
    assert_restores(&repo, &third, &src, &t.join("restored"));
}

#[test]
fn a_folder_gone_passes_the_limit_and_the_list_is_written_whole() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    write_tree(&src);
    let repo = Repository::init(&t.join("repo")).unwrap();
    let first = take(&repo, &src, 1);
    fs::write(file(&src, "amazon", 5), b"{\"changed\": 1}").unwrap();
    let second = take(&repo, &src, 2);
    assert!(second.manifest.changes.is_some());
    // The middle folder goes: 3,001 paths taken out, more than a quarter of the list.
    fs::remove_dir_all(src.join("pages")).unwrap();
    let third = take(&repo, &src, 3);
    assert!(third.manifest.changes.is_none(), "stored whole");
    let list = stored(&repo, &third);
    assert_eq!(list, third.manifest.entries);
    assert_eq!(list, fresh(&src, &t.join("fresh")));
    assert_eq!(list.len(), 2 * PER_FOLDER + 2);
    assert_ne!(third.manifest.tree, first.manifest.tree);
    assert_restores(&repo, &third, &src, &t.join("restored"));
}

#[test]
fn hard_links_windows_apart_take_their_first_paths_content() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    write_tree(&src);
    // The first paths sort first, their links windows later.
    fs::hard_link(file(&src, "amazon", 1), src.join("zlinks-a.json")).unwrap();
    fs::hard_link(
        file(&src, "amazon", 1),
        file(&src, "suggestions", 2999).with_extension("link"),
    )
    .unwrap();
    fs::write(file(&src, "amazon", 2), b"{\"big\": 2}").unwrap();
    fs::hard_link(file(&src, "amazon", 2), src.join("zlinks-b.json")).unwrap();
    let repo = Repository::init(&t.join("repo")).unwrap();
    let first = take(&repo, &src, 1);
    let list = stored(&repo, &first);
    assert_eq!(list, first.manifest.entries);
    let of = |p: &str| list.iter().find(|e| e.path.display() == p).unwrap().clone();
    let head = of("amazon/B000001.json");
    for later in ["suggestions/B002999.link", "zlinks-a.json"] {
        let e = of(later);
        assert_eq!(
            e.link.as_deref().map(|l| l.display()),
            Some(head.path.display())
        );
        assert_eq!((e.hash, e.size), (head.hash, head.size));
    }
    assert_eq!(of("zlinks-b.json").hash, of("amazon/B000002.json").hash);
    let out = t.join("restored");
    assert_restores(&repo, &first, &src, &out);
    let ino = |p: &str| fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("amazon/B000001.json"), ino("zlinks-a.json"));
    assert_eq!(ino("amazon/B000001.json"), ino("suggestions/B002999.link"));

    // Unchanged: the same list, nothing read; a link stays a change-free entry.
    let second = take(&repo, &src, 2);
    assert_eq!(second.manifest.summary.bytes_read, 0);
    assert_eq!(stored(&repo, &second), list);
}

/// `cachevault snapshot` stopped by SIGTERM while its readers are at work (with batches of
/// later windows still queued): it exits 143 at once, writes no manifest and leaves no
/// archive or temp file behind; the repository checks clean and a new snapshot completes.
#[test]
fn a_signal_stops_the_snapshot_while_its_readers_work() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    // 30 MB in one window: four batches, two of them queued when the readers stop.
    fs::create_dir_all(src.join("amazon")).unwrap();
    for i in 0..PER_FOLDER {
        fs::write(file(&src, "amazon", i), noise(10_000, i as u64)).unwrap();
    }
    let repo_dir = t.join("repo");
    Repository::init(&repo_dir).unwrap();
    let started = std::time::Instant::now();
    let args = ["--repo", repo_dir.to_str().unwrap(), "snapshot"];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    args.push(src.as_os_str());
    let child = spawn_paused(&args, "snapshot.reading");
    terminate_paused(&child);
    let out = ended_within_30s(child, started, "the snapshot did not stop after the signal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let repo = Repository::open(&repo_dir).unwrap();
    assert!(snapshot::list_ids(&repo).unwrap().is_empty());
    let left: Vec<String> = files_under(&repo_dir)
        .into_iter()
        .filter(|p| p.starts_with("archives/") || p.ends_with(".tmp"))
        .collect();
    assert!(left.iter().all(|p| !p.ends_with(".tmp")), "{left:?}");
    let r = cachevault::check::check(&repo, cachevault::check::ReadData::All, 1).unwrap();
    assert!(r.ok(), "{:?}", r.errors);
    let s = take(&repo, &src, 1);
    assert_restores(&repo, &s, &src, &t.join("restored"));
}

/// A file replaced by a FIFO (or anything not a regular file) between the walk and its read
/// is neither waited on nor read: the snapshot ends, incomplete (exit 1), naming it.
#[test]
fn a_file_that_became_a_fifo_before_its_read_is_reported_not_waited_on() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    // One window, one batch: walked whole before the first file is read, read in order.
    fs::create_dir_all(src.join("amazon")).unwrap();
    for i in 0..200 {
        fs::write(file(&src, "amazon", i), format!("{{\"n\": {i}}}")).unwrap();
    }
    let late = file(&src, "amazon", 199);
    let repo_dir = t.join("repo");
    Repository::init(&repo_dir).unwrap();
    let args = ["--repo", repo_dir.to_str().unwrap(), "--json", "snapshot"];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    args.push(src.as_os_str());
    let child = spawn_paused(&args, "snapshot.reading");
    fs::remove_file(&late).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&late)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let ok = std::process::Command::new("kill")
        .args(["-CONT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -CONT");
    let out = ended_within_30s(
        child,
        std::time::Instant::now(),
        "the snapshot waited on the FIFO",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["complete"], false, "{doc}");
    let said = doc.to_string();
    assert!(said.contains("no longer a regular file"), "{said}");
    assert!(said.contains("B000199.json"), "{said}");
}
