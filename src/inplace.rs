//! Restoring a snapshot over the tree it was taken of (`restore --in-place`), under the
//! safety net: every file it would overwrite is compared with the snapshot first (unchanged
//! files are left alone), the ones that differ go into a verified `pre-restore` snapshot, the
//! operation is recorded, and each file is replaced only while it is still the one that
//! snapshot holds. `undo` then puts back exactly what the restore replaced and removes what it
//! created, if unchanged since.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BlobId;
use crate::manifest::{EntryKind, Manifest, RelPath, SnapshotKind};
use crate::net::{self, SafetyOptions};
use crate::operation::{self, Conflict, OperationRecord, RecordedFile};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{self, RestoreOptions, RestoreSummary};

/// How to restore in place.
#[derive(Debug, Clone)]
pub struct InPlaceOptions {
    /// Only these paths of the snapshot (and what lies below them); empty = all of it.
    pub paths: Vec<RelPath>,
    /// List what would be overwritten and created; change nothing.
    pub dry_run: bool,
    /// Time of the safety snapshot and the record.
    pub now: DateTime<FixedOffset>,
    /// Host name of the safety snapshot.
    pub hostname: String,
    /// Cache type folders, for the safety snapshot's per-type totals.
    pub types: Vec<(String, RelPath)>,
}

/// What an in-place restore did, or would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InPlaceSummary {
    /// Files whose different content is replaced by the snapshot's.
    pub overwrite: Vec<String>,
    /// Files the snapshot holds that are not there: created.
    pub create: Vec<String>,
    /// Files removed (a restore never removes any; the field is there for symmetry with
    /// `undo --dry-run`).
    pub remove: Vec<String>,
    /// Files already as the snapshot holds them: left alone.
    pub unchanged: usize,
    /// Files left alone because they changed while the restore ran, or because something
    /// other than a file is in the way.
    pub conflicts: Vec<Conflict>,
    /// The verified pre-restore snapshot of what was overwritten.
    pub safety_snapshot: Option<String>,
    /// The operation's id: `cachevault undo ID` puts everything back.
    pub operation_id: Option<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Restores `m` (snapshot `id`) over its own root. The caller holds the exclusive lock.
///
/// # Errors
/// An unusable root, a failed safety snapshot (nothing is changed then), I/O errors.
pub fn restore_in_place(
    repo: &Repository,
    m: &Manifest,
    opts: &InPlaceOptions,
    progress: &dyn Progress,
) -> Result<(InPlaceSummary, RestoreSummary)> {
    let root = Path::new(&m.root);
    let named: HashSet<&[u8]> = opts.paths.iter().map(|p| p.as_bytes()).collect();
    let wanted = |p: &RelPath| {
        named.is_empty()
            || named.contains(p.as_bytes())
            || p.as_bytes()
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'/' && named.contains(&p.as_bytes()[..i]))
    };
    let selected: Vec<&crate::manifest::Entry> =
        m.entries.iter().filter(|e| wanted(&e.path)).collect();
    if !opts.paths.is_empty() && selected.is_empty() {
        let w: Vec<String> = opts.paths.iter().map(RelPath::display).collect();
        return Err(Error::Invalid(format!(
            "no entry of the snapshot matches {}",
            w.join(", ")
        )));
    }
    let mut s = InPlaceSummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // What each file is now: nothing (create), the same content (left alone), other
    // content (overwrite, protected), or something that is not a file (conflict).
    let mut after: BTreeMap<String, Option<BlobId>> = BTreeMap::new();
    let mut exact: Vec<RelPath> = Vec::new();
    for e in &selected {
        let path = e.path.display();
        let abs = root.join(e.path.to_path());
        match e.kind {
            EntryKind::Dir => exact.push(e.path.clone()),
            EntryKind::Symlink | EntryKind::File => {
                let meta = std::fs::symlink_metadata(&abs);
                match meta {
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        s.create.push(path.clone());
                        // Files only: undo removes what the restore created, if unchanged.
                        if e.kind == EntryKind::File {
                            after.insert(path, e.hash);
                        }
                        exact.push(e.path.clone());
                    }
                    Err(err) => return Err(Error::io(&abs)(err)),
                    Ok(md) if md.is_dir() => s.conflicts.push(Conflict {
                        path,
                        reason: "a folder is there; not replacing it".into(),
                    }),
                    Ok(md) if md.file_type().is_symlink() => {
                        if e.kind == EntryKind::Symlink
                            && std::fs::read_link(&abs).ok().as_deref()
                                == e.target.as_ref().map(|t| t.to_path())
                        {
                            s.unchanged += 1;
                        } else {
                            s.conflicts.push(Conflict {
                                path,
                                reason: "a symlink is there; not replacing it".into(),
                            });
                        }
                    }
                    Ok(md) => {
                        let same = e.kind == EntryKind::File
                            && md.len() == e.size
                            && hash_of(&abs)? == e.hash;
                        if same {
                            s.unchanged += 1;
                        } else {
                            s.overwrite.push(path.clone());
                            after.insert(path, e.hash);
                            exact.push(e.path.clone());
                        }
                    }
                }
            }
        }
    }
    if opts.dry_run || (s.overwrite.is_empty() && s.create.is_empty()) {
        return Ok((s, RestoreSummary::default()));
    }

    // What is about to be overwritten goes into a verified safety snapshot first.
    let receipt = if s.overwrite.is_empty() {
        None
    } else {
        Some(net::protect(
            repo,
            &s.overwrite,
            &SafetyOptions {
                root: root.to_path_buf(),
                kind: SnapshotKind::PreRestore,
                tags: vec!["restore".into()],
                time: opts.now,
                hostname: opts.hostname.clone(),
                types: opts.types.clone(),
                what: "nothing was restored",
            },
            progress,
        )?)
    };
    s.safety_snapshot = receipt.as_ref().map(|r| r.snapshot.to_hex());
    let overwrite: BTreeSet<&String> = s.overwrite.iter().collect();
    let planned: Vec<RecordedFile> = after
        .iter()
        .map(|(path, hash)| {
            let held = receipt.as_ref().and_then(|r| r.held(path));
            RecordedFile {
                path: path.clone(),
                cache_type: String::new(),
                action: if overwrite.contains(path) {
                    "overwrite"
                } else {
                    "create"
                }
                .into(),
                size: held.map_or(0, |h| h.size),
                atime_ns: 0,
                reason: "restore --in-place".into(),
                rewritten_hash: None,
                after_hash: *hash,
                moved_to: None,
            }
        })
        .collect();
    let mut record = OperationRecord::new(
        "restore",
        "in-place",
        opts.now,
        &m.root,
        receipt.as_ref().map(|r| r.snapshot),
        planned,
    );
    operation::write_record(repo, &record)?;
    s.operation_id = Some(record.id.clone());

    // Each file is replaced only while it is still what was judged: the protected content
    // for overwrites, nothing for creations.
    let creates: HashSet<RelPath> = s.create.iter().map(|p| RelPath::from(p.as_str())).collect();
    let guard_receipt = receipt.clone();
    let guard: restore::Guard = std::sync::Arc::new(move |rel: &RelPath, dest: &Path| {
        if creates.contains(rel) {
            return match std::fs::symlink_metadata(dest) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Ok(_) => Ok(false),
                Err(e) => Err(Error::io(dest)(e)),
            };
        }
        match &guard_receipt {
            Some(r) => r.still_matches(&rel.display(), dest),
            None => Ok(false),
        }
    });
    let r = restore::restore(
        repo,
        m,
        root,
        &RestoreOptions {
            paths: exact,
            exact: true,
            dry_run: false,
            guard: Some(guard),
            window: 0,
        },
        progress,
    )?;
    let skipped: HashSet<String> = r.skipped.iter().map(RelPath::display).collect();
    let failed: HashSet<String> = r
        .errors
        .iter()
        .filter_map(|e| e.split(": ").next().map(str::to_string))
        .collect();
    for p in &skipped {
        s.conflicts.push(Conflict {
            path: p.clone(),
            reason: "changed while the restore ran; left as it is".into(),
        });
    }
    record.done = Some(
        after
            .keys()
            .filter(|p| !skipped.contains(*p) && !failed.contains(*p))
            .cloned()
            .collect(),
    );
    record.skipped = skipped.into_iter().collect();
    operation::write_record(repo, &record)?;
    Ok((s, r))
}

fn hash_of(abs: &Path) -> Result<Option<BlobId>> {
    let f = fsutil::open_noatime(abs).map_err(Error::io(abs))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(f).map_err(Error::io(abs))?;
    Ok(Some(BlobId::from(h.finalize())))
}
