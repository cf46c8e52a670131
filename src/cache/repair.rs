//! Repair: validate the cache tree, then replace each invalid file by its newest snapshot
//! version that itself validates (blobs re-hashed on read, the whole file checked against
//! the manifest's hash, then the same rules as validation), written in place atomically
//! (temp file in the same folder, fsync, rename, fsync of the folder) with the snapshot's
//! mode and mtime. A file no snapshot holds a good version of moves to the quarantine folder
//! under its relative path; nothing is ever deleted. The caller holds the repository's
//! exclusive lock, so no snapshot of the tree interleaves with the changes.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use serde::Serialize;

use super::validate::{self, FileKind, InvalidFile, Problem, Rules, ValidateOptions};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BlobId;
use crate::manifest::{Entry, EntryKind, Manifest, RelPath, SnapshotKind};
use crate::net::{self, Receipt, SafetyOptions};
use crate::operation::{self, OperationRecord, RecordedFile};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{safe_mode, time_of};
use crate::scan::Stat;
use crate::snapshot;
use crate::store::{BlobIndex, BlobReader};

/// What to repair.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// Only these cache types, as for validation; empty = every validated type.
    pub types: Vec<String>,
    /// Find the versions and report what would be done; change nothing.
    pub dry_run: bool,
    /// Repair even what looks like a schema or version change (see
    /// [`validate::TypeSummary::mass_change`]).
    pub force: bool,
    /// Time of the pre-repair safety snapshot and the operation record.
    pub now: DateTime<FixedOffset>,
    /// Host name recorded in the safety snapshot.
    pub hostname: String,
}

/// A file replaced by a snapshot version.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    /// Path relative to the cache root.
    pub path: RelPath,
    /// Cache type; `None` for state files.
    pub cache_type: Option<String>,
    /// Why the file was invalid.
    pub reason: Problem,
    /// What validation found.
    pub detail: String,
    /// The snapshot the good version came from.
    pub from_snapshot: BlobId,
    /// When that snapshot was taken.
    pub snapshot_time: DateTime<FixedOffset>,
    /// Newer versions that were refused, and why.
    pub refused: Vec<String>,
}

/// A file moved to the quarantine folder because no snapshot holds a good version.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    /// Path relative to the cache root (where it was).
    pub path: RelPath,
    /// Cache type; `None` for state files.
    pub cache_type: Option<String>,
    /// Why the file was invalid.
    pub reason: Problem,
    /// What validation found.
    pub detail: String,
    /// Where it is now (or would be, on a dry run).
    pub quarantine_path: PathBuf,
    /// Snapshot versions that were refused, and why.
    pub refused: Vec<String>,
}

/// An invalid file that could be neither repaired nor quarantined; it was left as it was.
#[derive(Debug, Clone, Serialize)]
pub struct RepairFailure {
    /// Path relative to the cache root.
    pub path: RelPath,
    /// Cache type; `None` for state files.
    pub cache_type: Option<String>,
    /// Why the file was invalid.
    pub reason: Problem,
    /// What validation found.
    pub detail: String,
    /// What went wrong.
    pub error: String,
}

/// What repair did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSummary {
    /// Files validated.
    pub checked: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Files replaced by a snapshot version, by path.
    pub repaired: Vec<Repaired>,
    /// Files moved to quarantine, by path.
    pub quarantined: Vec<Quarantined>,
    /// Invalid files left alone because something failed.
    pub failed: Vec<RepairFailure>,
    /// Files validation could not read (not judged, not touched).
    pub errors: Vec<String>,
    /// Snapshots that could not be read and were passed over.
    pub warnings: Vec<String>,
    /// Types whose invalid files look like a schema or version change (repaired anyway
    /// only with `force`).
    pub suspected_changes: Vec<String>,
    /// The verified pre-repair snapshot of every file replaced or moved.
    pub safety_snapshot: Option<BlobId>,
    /// The operation's id: `cachevault undo ID` puts everything back.
    pub operation_id: Option<String>,
    /// Files left alone because they changed after the safety snapshot.
    pub skipped: Vec<String>,
}

impl RepairSummary {
    /// Whether every invalid file was handled and every file could be read.
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.errors.is_empty()
    }
}

/// Validates the tree of `cfg` and repairs what is invalid from the snapshots in `repo`.
///
/// # Errors
/// As [`validate::validate`]; an unreadable repository index or snapshot list. A snapshot
/// that cannot be read is passed over (listed in `warnings`); a file that cannot be written
/// or moved is listed in `failed`.
pub fn repair(
    repo: &Repository,
    cfg: &Config,
    opts: &RepairOptions,
    progress: &dyn Progress,
) -> Result<RepairSummary> {
    let rules = Rules::compile(
        cfg,
        &ValidateOptions {
            types: opts.types.clone(),
        },
    )?;
    let report = validate::validate_with(&rules, progress)?;
    let suspected = report.mass_changes(cfg.raw.cache.repair.max_invalid_share);
    if !suspected.is_empty() && !opts.force {
        return Err(Error::Invalid(format!(
            "repair refused, nothing was changed: {}",
            suspected.join("; ")
        )));
    }
    let mut summary = RepairSummary {
        checked: report.checked,
        dry_run: opts.dry_run,
        errors: report.errors,
        suspected_changes: suspected,
        ..Default::default()
    };
    if report.invalid.is_empty() {
        return Ok(summary);
    }
    // Snapshots record their canonical root; entry paths are relative to it.
    let root = cfg.root.canonicalize().map_err(Error::io(&cfg.root))?;
    let mut pending: Vec<Pending> = report
        .invalid
        .into_iter()
        .map(|file| Pending {
            abs: root.join(file.path.to_path()),
            file,
            refused: Vec::new(),
            refused_hashes: HashSet::new(),
            state: State::Open,
        })
        .collect();

    let snapshots = newest_first(repo, &mut summary.warnings)?;
    let index = if snapshots.is_empty() {
        BlobIndex::default()
    } else {
        BlobIndex::load(repo)?
    };
    for (id, header) in &snapshots {
        if pending.iter().all(|p| !matches!(p.state, State::Open)) {
            break;
        }
        let keys = candidates_in(header, &pending);
        if keys.is_empty() {
            continue;
        }
        let manifest = match snapshot::load_with(repo, &index, id) {
            Ok(m) => m,
            Err(e) => {
                summary
                    .warnings
                    .push(format!("snapshot {} passed over: {e}", id.short()));
                continue;
            }
        };
        let found: Vec<(usize, &Entry)> = manifest
            .entries
            .iter()
            .filter_map(|e| keys.get(e.path.as_bytes()).map(|&i| (i, e)))
            .collect();
        let attempts: Vec<(usize, Attempt)> = found
            .par_iter()
            .map(|&(i, e)| {
                // Planning only: nothing is written before the safety snapshot exists.
                let attempt = try_version(repo, &index, &rules, &pending[i], e);
                (i, attempt)
            })
            .collect();
        for (i, attempt) in attempts {
            let p = &mut pending[i];
            match attempt {
                Attempt::Repaired => {
                    let entry = manifest
                        .entries
                        .iter()
                        .find(|e| root.join(e.path.to_path()) == p.abs)
                        .cloned();
                    p.state = match entry {
                        Some(entry) => State::Repaired {
                            snapshot: *id,
                            time: manifest.time,
                            entry: Box::new(entry),
                        },
                        None => {
                            State::Failed("the version found vanished from its snapshot".into())
                        }
                    }
                }
                Attempt::Refused(why, hash) => {
                    p.refused.push(format!(
                        "snapshot {} ({}): {why}",
                        id.short(),
                        manifest.time.to_rfc3339()
                    ));
                    p.refused_hashes.extend(hash);
                }
                Attempt::SameAsRefused => {}
            }
        }
    }

    // The plan: what is replaced (with which version) and what moves to quarantine.
    let mut overwrite: Vec<(Pending, BlobId, DateTime<FixedOffset>, Box<Entry>)> = Vec::new();
    let mut moves: Vec<(Pending, PathBuf)> = Vec::new();
    for mut p in pending {
        match std::mem::replace(&mut p.state, State::Open) {
            State::Open => {
                let base = cfg.quarantine.join(p.file.path.to_path());
                let dest = free_name(&base);
                moves.push((p, dest));
            }
            State::Repaired {
                snapshot,
                time,
                entry,
            } => overwrite.push((p, snapshot, time, entry)),
            State::Failed(error) => summary.failed.push(failure(p.file, error)),
        }
    }
    if !opts.dry_run && (!overwrite.is_empty() || !moves.is_empty()) {
        apply(
            repo,
            cfg,
            opts,
            &root,
            &mut overwrite,
            &mut moves,
            &mut summary,
            progress,
        )?;
    }
    for (p, snapshot, time, _) in overwrite {
        if summary.skipped.contains(&p.file.path.display()) {
            continue;
        }
        summary.repaired.push(Repaired {
            path: p.file.path,
            cache_type: p.file.cache_type,
            reason: p.file.reason,
            detail: p.file.detail,
            from_snapshot: snapshot,
            snapshot_time: time,
            refused: p.refused,
        });
    }
    for (p, dest) in moves {
        if summary.skipped.contains(&p.file.path.display()) {
            continue;
        }
        summary.quarantined.push(Quarantined {
            path: p.file.path,
            cache_type: p.file.cache_type,
            reason: p.file.reason,
            detail: p.file.detail,
            quarantine_path: dest,
            refused: p.refused,
        });
    }
    Ok(summary)
}

/// Carries out a repair plan under the safety net: a verified `pre-repair` snapshot of every
/// file about to be replaced or moved, the operation recorded, then each change made only
/// while the file is still the one the snapshot holds. Files that changed are left alone
/// (listed in `skipped`); a file whose change fails is listed in `failed`.
#[allow(clippy::too_many_arguments)]
fn apply(
    repo: &Repository,
    cfg: &Config,
    opts: &RepairOptions,
    root: &Path,
    overwrite: &mut [(Pending, BlobId, DateTime<FixedOffset>, Box<Entry>)],
    moves: &mut [(Pending, PathBuf)],
    summary: &mut RepairSummary,
    progress: &dyn Progress,
) -> Result<()> {
    let paths: Vec<String> = overwrite
        .iter()
        .map(|(p, ..)| p.file.path.display())
        .chain(moves.iter().map(|(p, _)| p.file.path.display()))
        .collect();
    let receipt = net::protect(
        repo,
        &paths,
        &SafetyOptions {
            root: root.to_path_buf(),
            kind: SnapshotKind::PreRepair,
            tags: vec!["repair".into()],
            time: opts.now,
            hostname: opts.hostname.clone(),
            types: cfg.type_folders(),
            what: "nothing was repaired",
        },
        progress,
    )?;
    summary.safety_snapshot = Some(receipt.snapshot);
    let planned: Vec<RecordedFile> = overwrite
        .iter()
        .map(|(p, _, _, e)| RecordedFile {
            path: p.file.path.display(),
            cache_type: p.file.cache_type.clone().unwrap_or_default(),
            action: "overwrite".into(),
            size: p.file.stat.size,
            atime_ns: 0,
            reason: format!("{}: {}", p.file.reason, p.file.detail),
            rewritten_hash: None,
            after_hash: e.hash,
            moved_to: None,
        })
        .chain(moves.iter().map(|(p, dest)| RecordedFile {
            path: p.file.path.display(),
            cache_type: p.file.cache_type.clone().unwrap_or_default(),
            action: "move".into(),
            size: p.file.stat.size,
            atime_ns: 0,
            reason: format!(
                "{}: {}; no valid version in any snapshot",
                p.file.reason, p.file.detail
            ),
            rewritten_hash: None,
            after_hash: None,
            moved_to: Some(dest.display().to_string()),
        }))
        .collect();
    let mut record = OperationRecord::new(
        "repair",
        "repair",
        opts.now,
        &receipt.root,
        Some(receipt.snapshot),
        planned,
    );
    operation::write_record(repo, &record)?;
    summary.operation_id = Some(record.id.clone());
    let mut done = Vec::new();
    let index = BlobIndex::load(repo)?;
    let mut reader = BlobReader::new(repo, &index);
    let mut failed_paths = Vec::new();
    for (p, _, _, e) in overwrite.iter() {
        crate::cancel::check().map_err(|err| {
            err.after(format!(
                "repair {} had replaced {} file(s) (undo puts them back)",
                record.id,
                done.len()
            ))
        })?;
        let path = p.file.path.display();
        if !receipt.still_matches(&path, &p.abs)? {
            summary.skipped.push(path);
            continue;
        }
        let written = read_version(&mut reader, e)
            .and_then(|data| replace(&p.abs, &receipt, &path, &data, e));
        match written {
            Ok(()) => done.push(path),
            Err(err) => {
                failed_paths.push((path, format!("writing the good version failed: {err}")))
            }
        }
    }
    for (p, dest) in moves.iter_mut() {
        let path = p.file.path.display();
        if !receipt.still_matches(&path, &p.abs)? {
            summary.skipped.push(path);
            continue;
        }
        match quarantine(&p.abs, &receipt, &path, dest) {
            Ok(actual) => {
                *dest = actual;
                done.push(path);
            }
            Err(err) => failed_paths.push((
                path,
                format!(
                    "no good version in any snapshot, and moving it to quarantine failed: {err}"
                ),
            )),
        }
    }
    // The record's moves name where each file really went.
    for f in &mut record.planned {
        if let Some((_, dest)) = moves.iter().find(|(p, _)| p.file.path.display() == f.path) {
            f.moved_to = Some(dest.display().to_string());
        }
    }
    record.done = Some(done);
    record.skipped = summary.skipped.clone();
    operation::write_record(repo, &record)?;
    for (path, error) in failed_paths {
        summary.skipped.push(path.clone());
        if let Some((p, ..)) = overwrite
            .iter()
            .find(|(p, ..)| p.file.path.display() == path)
        {
            summary.failed.push(failure(p.file.clone(), error));
        } else if let Some((p, _)) = moves.iter().find(|(p, _)| p.file.path.display() == path) {
            summary.failed.push(failure(p.file.clone(), error));
        }
    }
    Ok(())
}

/// Reads and verifies one snapshot version.
fn read_version(reader: &mut BlobReader<'_>, e: &Entry) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(e.size as usize);
    for b in &e.blobs {
        data.extend_from_slice(&reader.read(b)?);
    }
    if data.len() as u64 != e.size || Some(BlobId::of(&data)) != e.hash {
        return Err(Error::corrupt(format!(
            "{}: the version read back does not match its snapshot",
            e.path.display()
        )));
    }
    Ok(data)
}

struct Pending {
    file: InvalidFile,
    /// Canonical absolute path.
    abs: PathBuf,
    refused: Vec<String>,
    /// Contents already refused: the same version in older snapshots is not read again.
    refused_hashes: HashSet<BlobId>,
    state: State,
}

enum State {
    Open,
    Repaired {
        snapshot: BlobId,
        time: DateTime<FixedOffset>,
        entry: Box<Entry>,
    },
    Failed(String),
}

enum Attempt {
    Repaired,
    Refused(String, Option<BlobId>),
    SameAsRefused,
}

fn failure(file: InvalidFile, error: String) -> RepairFailure {
    RepairFailure {
        path: file.path,
        cache_type: file.cache_type,
        reason: file.reason,
        detail: file.detail,
        error,
    }
}

/// Snapshot headers, newest first (by time, then id). A manifest that cannot be read is
/// passed over with a warning: one damaged snapshot must not stop repair from older ones.
fn newest_first(repo: &Repository, warnings: &mut Vec<String>) -> Result<Vec<(BlobId, Manifest)>> {
    let ids = snapshot::list_ids(repo)?;
    let loaded: Vec<(BlobId, Result<Manifest>)> = ids
        .par_iter()
        .map(|id| (*id, snapshot::load_header(repo, id)))
        .collect();
    let mut out = Vec::with_capacity(loaded.len());
    for (id, m) in loaded {
        match m {
            Ok(m) => out.push((id, m)),
            Err(e) => warnings.push(format!("snapshot {} passed over: {e}", id.short())),
        }
    }
    out.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
    Ok(out)
}

/// The still-open files `header`'s snapshot may hold: path relative to the snapshot's root
/// (as its entries name them) to position in `pending`.
fn candidates_in(header: &Manifest, pending: &[Pending]) -> HashMap<Vec<u8>, usize> {
    let root = Path::new(&header.root);
    pending
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.state, State::Open))
        .filter(|(_, p)| header.paths.iter().any(|inc| p.abs.starts_with(inc)))
        .filter_map(|(i, p)| {
            let rel = p.abs.strip_prefix(root).ok()?;
            Some((rel.as_os_str().as_bytes().to_vec(), i))
        })
        .collect()
}

/// Reads one snapshot version of a pending file, verifies and validates it. Nothing is
/// written here: the plan is carried out under the safety net by [`apply`].
fn try_version(
    repo: &Repository,
    index: &BlobIndex,
    rules: &Rules<'_>,
    p: &Pending,
    e: &Entry,
) -> Attempt {
    if e.kind != EntryKind::File {
        let what = if e.kind == EntryKind::Dir {
            "a folder"
        } else {
            "a symlink"
        };
        return Attempt::Refused(format!("the path is {what} there"), None);
    }
    if e.hash.is_some_and(|h| p.refused_hashes.contains(&h)) {
        return Attempt::SameAsRefused;
    }
    let mut reader = BlobReader::new(repo, index);
    let mut data = Vec::with_capacity(e.size as usize);
    for b in &e.blobs {
        match reader.read(b) {
            Ok(d) => data.extend_from_slice(&d),
            Err(err) => return Attempt::Refused(format!("cannot be read: {err}"), None),
        }
    }
    let actual = BlobId::of(&data);
    if data.len() as u64 != e.size || Some(actual) != e.hash {
        return Attempt::Refused(
            format!(
                "content ({} bytes, hash {}) does not match the manifest",
                data.len(),
                actual.short()
            ),
            None,
        );
    }
    let kind = match &p.file.cache_type {
        Some(t) => FileKind::Typed(t),
        None => FileKind::State,
    };
    if let Err(f) = rules.check(kind, &data) {
        return Attempt::Refused(format!("that version is invalid too ({f})"), Some(actual));
    }
    Attempt::Repaired
}

/// Refuses to act on a file that is no longer the one the safety snapshot holds (the
/// application that writes the cache may have rewritten it since): size, mtime, ctime and
/// inode, checked right before the change.
fn still_the_same(abs: &Path, receipt: &Receipt, path: &str) -> Result<()> {
    if !receipt.still_matches(path, abs)? {
        return Err(Error::Invalid(format!(
            "{} changed since its pre-repair snapshot; left alone (run repair again)",
            abs.display()
        )));
    }
    Ok(())
}

/// Writes `data` over `abs` atomically: temp file in the same folder, mode and mtime of the
/// snapshot entry, fsync, rename, fsync of the folder.
fn replace(abs: &Path, receipt: &Receipt, path: &str, data: &[u8], e: &Entry) -> Result<()> {
    let tmp = fsutil::temp_path_for(abs);
    let result = (|| {
        let mut f = fsutil::create_new_private(&tmp)?;
        f.write_all(data).map_err(Error::io(&tmp))?;
        f.set_permissions(fs::Permissions::from_mode(safe_mode(e.mode)))
            .map_err(Error::io(&tmp))?;
        f.set_modified(time_of(e.mtime_ns))
            .map_err(Error::io(&tmp))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        drop(f);
        // The last moment before the file is replaced.
        still_the_same(abs, receipt, path)?;
        fsutil::persist(&tmp, abs)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `base`, or `base.1`, `base.2`, ...: the numbered name when earlier ones are taken.
fn numbered(base: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return base.to_path_buf();
    }
    let mut name = base.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}"));
    base.with_file_name(name)
}

/// The first free name among [`numbered`] (what a dry run reports).
fn free_name(base: &Path) -> PathBuf {
    (0..)
        .map(|n| numbered(base, n))
        .find(|p| fs::symlink_metadata(p).is_err())
        .expect("some numbered name is free")
}

/// Moves `abs` to the first free [`numbered`] name of `base`, never overwriting: a hard link
/// (fails if the name exists) then unlink, or, across file systems, a durable copy then
/// unlink. The cache name goes only once the quarantined copy is durable.
fn quarantine(abs: &Path, receipt: &Receipt, path: &str, base: &Path) -> Result<PathBuf> {
    still_the_same(abs, receipt, path)?;
    let expected_ino = receipt.held(path).map(|h| h.ino).unwrap_or_default();
    let dir = base.parent().unwrap_or(Path::new("."));
    fsutil::create_private_dir(dir)?;
    for n in 0.. {
        let dest = numbered(base, n);
        match fs::hard_link(abs, &dest) {
            Ok(()) => {
                // The link names whatever `abs` named at that instant: make sure it is the
                // file that was judged before the cache name goes.
                let linked = fs::symlink_metadata(&dest).map_err(Error::io(&dest))?;
                if Stat::of(&linked).ino != expected_ino {
                    let _ = fs::remove_file(&dest);
                    return Err(Error::Invalid(format!(
                        "{} changed while being quarantined; left alone (run repair again)",
                        abs.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // Another file system, or links not permitted there: copy instead.
            Err(_) => match copy_new(abs, &dest) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(e),
            },
        }
        fsutil::sync_dir(dir)?;
        fs::remove_file(abs).map_err(Error::io(abs))?;
        fsutil::sync_dir(abs.parent().unwrap_or(Path::new(".")))?;
        return Ok(dest);
    }
    unreachable!("the loop returns")
}

/// Copies `src` to the new file `dest` with its mode and mtime, durably; `Ok(false)` when
/// `dest` already exists.
fn copy_new(src: &Path, dest: &Path) -> Result<bool> {
    let mut from = fsutil::open_noatime(src).map_err(Error::io(src))?;
    let meta = from.metadata().map_err(Error::io(src))?;
    let mut to: File = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io(dest)(e)),
    };
    let result = (|| {
        std::io::copy(&mut from, &mut to).map_err(Error::io(dest))?;
        to.set_permissions(fs::Permissions::from_mode(
            meta.permissions().mode() & 0o1777,
        ))
        .map_err(Error::io(dest))?;
        if let Ok(t) = meta.modified() {
            to.set_modified(t).map_err(Error::io(dest))?;
        }
        to.sync_all().map_err(Error::io(dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(dest);
    }
    result.map(|()| true)
}
