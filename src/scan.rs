//! Walking a cache tree: walkdir without following symlinks, sorted by name, into entries
//! with the metadata change detection needs. Skips the repository if it lies inside.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::manifest::{EntryKind, RelPath};

/// One walked item.
#[derive(Debug, Clone)]
pub struct ScannedEntry {
    /// Relative to the snapshot root (the path on disk is the root joined with it).
    pub path: RelPath,
    /// Kind.
    pub kind: EntryKind,
    /// Metadata as walked.
    pub stat: Stat,
    /// Symlink target.
    pub target: Option<RelPath>,
    /// (device, inode) of a regular file with more than one link: paths of a snapshot that
    /// share it are hard links of one file.
    pub link_key: Option<(u64, u64)>,
}

/// The metadata fields snapshots record and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Permission bits.
    pub mode: u32,
    /// Size.
    pub size: u64,
    /// mtime ns.
    pub mtime_ns: i64,
    /// ctime ns.
    pub ctime_ns: i64,
    /// inode.
    pub ino: u64,
}

impl Stat {
    /// Extracts the fields from std metadata.
    pub fn of(m: &std::fs::Metadata) -> Stat {
        Stat {
            mode: m.mode() & 0o7777,
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
        }
    }
}

/// Result of a walk: entries in walk order plus problems met.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Entries (pre-order, sorted by name within each folder).
    pub entries: Vec<ScannedEntry>,
    /// Unreadable folders or entries: the snapshot is incomplete.
    pub errors: Vec<String>,
    /// Entries skipped by design (sockets, FIFOs, devices, the repository).
    pub ignored: Vec<String>,
}

/// Walks `includes` (paths relative to `root`; empty = the whole root), adding the ancestor
/// folders of each include so a restore can recreate them. `exclude` (the repository) is
/// skipped with its contents.
pub fn scan(root: &Path, includes: &[RelPath], exclude: Option<&Path>) -> ScanResult {
    let mut out = ScanResult::default();
    let whole = [RelPath::default()];
    let includes = if includes.is_empty() {
        &whole[..]
    } else {
        includes
    };
    for inc in includes {
        // Ancestor folders of the include (not the root itself).
        let comps: Vec<&[u8]> = if inc.0.is_empty() {
            Vec::new()
        } else {
            inc.components().collect()
        };
        for i in 1..comps.len() {
            let rel = RelPath(comps[..i].join(&b'/'));
            if let Ok(m) = std::fs::symlink_metadata(root.join(rel.to_path())) {
                out.entries.push(ScannedEntry {
                    path: rel,
                    kind: EntryKind::Dir,
                    stat: Stat::of(&m),
                    target: None,
                    link_key: None,
                });
            }
        }
        let start = root.join(inc.to_path());
        let walker = walkdir::WalkDir::new(&start)
            .follow_links(false)
            .min_depth(if inc.0.is_empty() { 1 } else { 0 });
        // Walk (readdir gives names and types), then stat in parallel: the stat calls are
        // most of a walk's cost, and a cache folder holds tens of thousands of files.
        let mut found: Vec<(RelPath, walkdir::DirEntry)> = Vec::new();
        let mut it = walker.into_iter();
        while let Some(item) = it.next() {
            let de = match item {
                Ok(de) => de,
                Err(e) => {
                    let path = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    if e.io_error().map(|io| io.kind()) == Some(std::io::ErrorKind::NotFound) {
                        out.ignored
                            .push(format!("{path}: vanished during the walk"));
                    } else {
                        out.errors.push(format!("{path}: {e}"));
                    }
                    continue;
                }
            };
            if exclude.is_some_and(|x| de.path() == x) {
                out.ignored
                    .push(format!("{}: the repository itself", de.path().display()));
                if de.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            let rel = match de.path().strip_prefix(root) {
                Ok(r) => RelPath(r.as_os_str().as_bytes().to_vec()),
                Err(_) => continue,
            };
            found.push((rel, de));
        }
        // Stated straight into the one list (no second list of results): problems go
        // aside with their position, to be told in walk order.
        use rayon::prelude::*;
        let problems = std::sync::Mutex::new(Vec::new());
        let stated: Vec<ScannedEntry> = found
            .into_par_iter()
            .enumerate()
            .filter_map(|(i, (rel, de))| match stat_entry(rel, &de) {
                Ok(e) => Some(e),
                Err(p) => {
                    problems
                        .lock()
                        .expect("problem list lock is never poisoned")
                        .push((i, p));
                    None
                }
            })
            .collect();
        if out.entries.is_empty() {
            out.entries = stated;
        } else {
            out.entries.extend(stated);
        }
        let mut problems = problems
            .into_inner()
            .expect("problem list lock is never poisoned");
        problems.sort_unstable_by_key(|(i, _)| *i);
        for (_, (ignored, msg)) in problems {
            if ignored {
                out.ignored.push(msg);
            } else {
                out.errors.push(msg);
            }
        }
    }
    // Bytewise path order: deterministic, and every folder precedes its contents. Includes
    // that overlap (a folder and one inside it, or shared ancestors) walk a path twice:
    // kept once.
    out.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    out.entries
        .dedup_by(|later, first| later.path == first.path);
    out
}

/// Stats one walked entry. Err((ignored, message)): `ignored` for special files and files
/// that vanished, otherwise an error that makes the snapshot incomplete.
fn stat_entry(
    rel: RelPath,
    de: &walkdir::DirEntry,
) -> std::result::Result<ScannedEntry, (bool, String)> {
    let meta = match de.metadata() {
        Ok(m) => m,
        Err(e) => {
            let gone = e.io_error().map(|io| io.kind()) == Some(std::io::ErrorKind::NotFound);
            let what = if gone {
                "vanished during the walk".to_string()
            } else {
                e.to_string()
            };
            return Err((gone, format!("{}: {what}", de.path().display())));
        }
    };
    let ft = de.file_type();
    let (kind, target) = if ft.is_file() {
        (EntryKind::File, None)
    } else if ft.is_dir() {
        (EntryKind::Dir, None)
    } else if ft.is_symlink() {
        match std::fs::read_link(de.path()) {
            Ok(t) => (
                EntryKind::Symlink,
                Some(RelPath(t.as_os_str().as_bytes().to_vec())),
            ),
            Err(e) => return Err((false, format!("{}: {e}", de.path().display()))),
        }
    } else {
        return Err((
            true,
            format!("{}: not a file, folder or symlink", de.path().display()),
        ));
    };
    let link_key = (kind == EntryKind::File && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    Ok(ScannedEntry {
        path: rel,
        kind,
        stat: Stat::of(&meta),
        target,
        link_key,
    })
}
