//! Undoable operations: the record every operation that overwrites, moves or removes cache
//! files writes (clear, repair, restore in place, a forced undo) before its first change, and
//! `undo`, which puts the tree back exactly as it was before one of them: files it removed or
//! overwrote return from its safety snapshot, files it created are removed if unchanged
//! since. Files changed since the operation are left alone and listed (partial undo) unless
//! forced, and a forced undo takes its own safety snapshot first, so it too can be undone.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BlobId;
use crate::manifest::{Manifest, RelPath, SnapshotKind};
use crate::net::{self, Held, Receipt, SafetyOptions};
use crate::progress::Progress;
use crate::repo::{layout, Damaged, Repository};
use crate::restore::{self, RestoreOptions};
use crate::scan::Stat;
use crate::snapshot;
use crate::store::BlobIndex;

/// Version of the record format written now (2 added `operation`, `undone_by`, the
/// `overwrite`, `create` and `move` actions and an optional snapshot).
pub const RECORD_VERSION: u32 = 2;

/// One file of an operation's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// Path relative to the cache root.
    pub path: String,
    /// Cache type (empty when it belongs to none).
    #[serde(default)]
    pub cache_type: String,
    /// `delete`, `rewrite` (a clear's smaller version), `overwrite` (other content written
    /// over it), `create` (written where nothing was) or `move` (moved to `moved_to`).
    pub action: String,
    /// Size before the operation (0 for `create`).
    pub size: u64,
    /// Access time before the operation (warm restores the most recently used first).
    #[serde(default)]
    pub atime_ns: i64,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// blake3 of the content a rewrite left (undo refuses if the file changed since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_hash: Option<BlobId>,
    /// blake3 of the content an `overwrite` or `create` left (record version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_hash: Option<BlobId>,
    /// Where a `move` put the file, absolute (record version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

impl RecordedFile {
    /// The content the operation left at the path (None: nothing).
    fn left(&self) -> Option<BlobId> {
        match self.action.as_str() {
            "rewrite" => self.rewritten_hash,
            "overwrite" | "create" => self.after_hash,
            _ => None,
        }
    }
}

fn default_operation() -> String {
    "clear".into()
}

/// `clears/<id>.json`: written (durably) before anything is changed, completed after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationRecord {
    /// Format version of this record ([`RECORD_VERSION`]).
    pub version: u32,
    /// The operation id.
    pub id: String,
    /// `clear`, `repair`, `restore` or `undo` (version 1 records are clears).
    #[serde(default = "default_operation")]
    pub operation: String,
    /// When.
    pub time: DateTime<FixedOffset>,
    /// Clear strategy, or a word saying what the operation was (`in-place`, `force`).
    pub strategy: String,
    /// Cache root (canonical).
    pub root: String,
    /// The verified safety snapshot holding every file before the operation changed it
    /// (None when the operation only created files).
    pub snapshot: Option<BlobId>,
    /// Files the operation intended to change.
    pub planned: Vec<RecordedFile>,
    /// Set once the operation finished: files actually changed.
    #[serde(default)]
    pub done: Option<Vec<String>>,
    /// Set once the operation finished: files left because they changed since the snapshot.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// The undo that put everything back, once one did (record version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_by: Option<String>,
}

/// The record of a clear (the first kind of operation recorded).
pub type ClearRecord = OperationRecord;

impl OperationRecord {
    /// A new record, not yet done, for changes to `root` authorised by `snapshot`.
    pub fn new(
        operation: &str,
        strategy: &str,
        time: DateTime<FixedOffset>,
        root: &str,
        snapshot: Option<BlobId>,
        planned: Vec<RecordedFile>,
    ) -> OperationRecord {
        let suffix = match snapshot {
            Some(s) => s.short(),
            None => {
                let mut key = format!("{operation}{root}");
                for f in &planned {
                    key.push_str(&f.path);
                }
                BlobId::of(key.as_bytes()).short()
            }
        };
        OperationRecord {
            version: RECORD_VERSION,
            id: format!(
                "{}-{suffix}",
                time.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ")
            ),
            operation: operation.into(),
            time,
            strategy: strategy.into(),
            root: root.into(),
            snapshot,
            planned,
            done: None,
            skipped: Vec::new(),
            undone_by: None,
        }
    }
}

/// Writes a record atomically (before the first change, again when done, again to point it
/// at a repaired snapshot or mark it undone).
///
/// # Errors
/// I/O errors.
pub fn write_record(repo: &Repository, r: &OperationRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(r).expect("record serialises");
    repo.write_object(ObjectKind::Record, &layout::record(&r.id), &json)
}

/// Every readable record, oldest first. A record that does not parse costs only its own
/// operation (which can then not be undone); [`load_records`] names it.
///
/// # Errors
/// I/O errors.
pub fn records(repo: &Repository) -> Result<Vec<OperationRecord>> {
    Ok(load_records(repo)?.0)
}

/// Every readable record, oldest first, and the records that cannot be read.
///
/// # Errors
/// I/O errors.
pub fn load_records(repo: &Repository) -> Result<(Vec<OperationRecord>, Vec<Damaged>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for o in repo.backend().list(ObjectKind::Record)? {
        if !layout::is_record(&o.name) {
            continue;
        }
        let bytes = match repo.read_object(ObjectKind::Record, &o.name) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue,
            Err(e) if e.is_corruption() => {
                damaged.push(Damaged {
                    file: ObjectKind::Record.path_of(&o.name),
                    error: e.to_string(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<OperationRecord>(&bytes) {
            Ok(r) => out.push(r),
            Err(e) => damaged.push(Damaged {
                file: ObjectKind::Record.path_of(&o.name),
                error: format!("does not parse: {e}"),
            }),
        }
    }
    out.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    Ok((out, damaged))
}

/// Snapshots that an operation younger than `days` still refers to, with its id: retention
/// keeps them whatever their own age.
///
/// # Errors
/// As [`records`].
pub fn referenced_snapshots(
    repo: &Repository,
    now: DateTime<Utc>,
    days: i64,
) -> Result<BTreeMap<BlobId, String>> {
    let horizon = chrono::Duration::try_days(days);
    Ok(records(repo)?
        .into_iter()
        .filter(|r| horizon.is_none_or(|d| now.signed_duration_since(r.time) < d))
        .filter_map(|r| r.snapshot.map(|s| (s, r.id)))
        .collect())
}

/// Whether a record's root (canonical since version 2 of the record; as the config named it
/// before) is `root` (canonical).
pub fn same_root(recorded: &str, root: &str) -> bool {
    recorded == root
        || Path::new(recorded)
            .canonicalize()
            .is_ok_and(|p| p.as_os_str() == root)
}

/// Finds a record by id (or unique prefix), or the newest one not yet undone. With `root`,
/// only records of that cache root count, and a named record of another root is refused,
/// naming both roots. `operation` narrows the newest to one kind (`warm` takes clears).
///
/// # Errors
/// [`Error::Invalid`] when none matches or the named one is of another root.
pub fn find_record(
    repo: &Repository,
    id: Option<&str>,
    root: Option<&str>,
    operation: Option<&str>,
) -> Result<OperationRecord> {
    let all = records(repo)?;
    let what = operation.unwrap_or("undoable operation");
    match id {
        None => all
            .into_iter()
            .filter(|r| r.undone_by.is_none())
            .filter(|r| operation.is_none_or(|o| r.operation == o))
            .rfind(|r| root.is_none_or(|root| same_root(&r.root, root)))
            .ok_or_else(|| {
                Error::Invalid(match root {
                    Some(root) => {
                        format!("no {what} of {root} is left to undo in this repository")
                    }
                    None => format!("no {what} is recorded in this repository"),
                })
            }),
        Some(id) => {
            let mut m: Vec<OperationRecord> =
                all.into_iter().filter(|r| r.id.starts_with(id)).collect();
            let r = match m.len() {
                1 => m.remove(0),
                0 => return Err(Error::Invalid(format!("no operation with id {id:?}"))),
                _ => return Err(Error::Invalid(format!("operation id {id:?} is ambiguous"))),
            };
            match root {
                Some(root) if !same_root(&r.root, root) => Err(Error::Invalid(format!(
                    "{} {} was of {}, not of the config's root {root}; refusing to put its files into another tree",
                    r.operation, r.id, r.root
                ))),
                _ => Ok(r),
            }
        }
    }
}

/// A file undo leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Path relative to the cache root.
    pub path: String,
    /// Why it is not touched.
    pub reason: String,
}

/// How to undo.
#[derive(Debug, Clone, Default)]
pub struct UndoOptions {
    /// Only these paths of the operation (warm); None: all of them.
    pub only: Option<Vec<String>>,
    /// Overwrite or remove files changed since the operation too (after a safety snapshot).
    pub force: bool,
    /// List what would be done; change nothing.
    pub dry_run: bool,
    /// Time of the forced undo's safety snapshot and record.
    pub now: Option<DateTime<FixedOffset>>,
    /// Host name of the forced undo's safety snapshot.
    pub hostname: String,
    /// Cache type folders, for the safety snapshot's per-type totals.
    pub types: Vec<(String, RelPath)>,
}

/// What undo (or warm) did, or would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UndoSummary {
    /// The operation undone (field name kept from when only clears were undone).
    pub clear_id: String,
    /// Its kind of operation.
    pub operation: String,
    /// The snapshot restored from.
    pub snapshot: Option<String>,
    /// Files written back (verified), created or overwritten.
    pub restored: Vec<String>,
    /// Files the operation created, removed again.
    pub removed: Vec<String>,
    /// Files already as before the operation.
    pub already: Vec<String>,
    /// Files changed since the operation, left alone (without `force`).
    pub conflicts: Vec<Conflict>,
    /// Files the snapshot no longer holds (it was repaired after losing their data).
    pub lost: Vec<String>,
    /// Failures.
    pub errors: Vec<String>,
    /// The plan: files overwritten, created and removed (also filled on a dry run).
    pub overwrite: Vec<String>,
    /// See `overwrite`.
    pub create: Vec<String>,
    /// See `overwrite`.
    pub remove: Vec<String>,
    /// With `force`: the safety snapshot of what the forced undo replaced.
    pub safety_snapshot: Option<String>,
    /// With `force`: the record of the forced undo (itself undoable).
    pub undo_id: Option<String>,
    /// Conflicts left unresolved (all of them without `force`; with it, those that changed
    /// while undo ran or that are not regular files).
    pub unresolved: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// How one planned file stands now.
#[derive(Debug, Clone, Copy)]
struct Standing {
    /// Content now (None: nothing there).
    current: Option<BlobId>,
    /// Metadata now, to check right before the change that it has not moved.
    stat: Option<Stat>,
    /// A folder or symlink is in the way.
    not_a_file: bool,
}

fn standing(abs: &Path) -> Result<Standing> {
    match std::fs::symlink_metadata(abs) {
        Ok(m) if !m.is_file() => Ok(Standing {
            current: None,
            stat: None,
            not_a_file: true,
        }),
        Ok(_) => {
            let file = fsutil::open_noatime(abs).map_err(Error::io(abs))?;
            let stat = Stat::of(&file.metadata().map_err(Error::io(abs))?);
            let mut h = blake3::Hasher::new();
            h.update_reader(file).map_err(Error::io(abs))?;
            Ok(Standing {
                current: Some(BlobId::from(h.finalize())),
                stat: Some(stat),
                not_a_file: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Standing {
            current: None,
            stat: None,
            not_a_file: false,
        }),
        Err(e) => Err(Error::io(abs)(e)),
    }
}

fn held_of(stat: &Stat) -> Held {
    Held {
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        ctime_ns: stat.ctime_ns,
        ino: stat.ino,
        hash: None,
    }
}

/// Whether the destination is still as judged: the same file (by metadata), or still absent.
fn unchanged_since(judged: Option<&Held>, abs: &Path) -> Result<bool> {
    match judged {
        Some(h) => net::still_matches(h, abs),
        None => match std::fs::symlink_metadata(abs) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io(abs)(e)),
        },
    }
}

/// Puts the tree back as it was before `record`'s operation (all of it, or `only` those
/// paths), verified, with metadata. Files changed since the operation are left alone and
/// listed in `conflicts` unless `force`, which first takes a `pre-restore` safety snapshot of
/// them and records the forced undo as an operation of its own. The caller holds the
/// exclusive lock.
///
/// # Errors
/// An unreadable snapshot, I/O errors, a failed safety snapshot (nothing changed then).
pub fn undo(
    repo: &Repository,
    root: &Path,
    record: &OperationRecord,
    opts: &UndoOptions,
    progress: &dyn Progress,
) -> Result<UndoSummary> {
    let index = BlobIndex::load(repo)?;
    let m: Option<Manifest> = match record.snapshot {
        Some(id) => Some(snapshot::load_with(repo, &index, &id)?),
        None => None,
    };
    let before: BTreeMap<String, Option<BlobId>> = m
        .iter()
        .flat_map(|m| m.entries.iter())
        .map(|e| (e.path.display(), e.hash))
        .collect();
    let done: HashSet<&String> = record.done.iter().flatten().collect();
    let mut s = UndoSummary {
        clear_id: record.id.clone(),
        operation: record.operation.clone(),
        snapshot: record.snapshot.map(|i| i.to_hex()),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // What to write from the snapshot, and what to remove, each with how its destination
    // stood when judged.
    let mut write: Vec<(String, Option<Held>)> = Vec::new();
    let mut remove: Vec<(String, Held)> = Vec::new();
    let mut moved_back: Vec<(String, PathBuf, BlobId)> = Vec::new();
    let mut forced: Vec<String> = Vec::new();
    for f in &record.planned {
        // An operation interrupted before it finished may have done part of its plan.
        if record.done.is_some() && !done.contains(&f.path) {
            continue;
        }
        if opts.only.as_ref().is_some_and(|o| !o.contains(&f.path)) {
            continue;
        }
        let created = f.action == "create";
        let was = if created {
            None
        } else {
            match before.get(&f.path) {
                Some(h) => *h,
                None => {
                    s.lost.push(f.path.clone());
                    continue;
                }
            }
        };
        let abs = root.join(&f.path);
        let now = standing(&abs)?;
        let judged = now.stat.as_ref().map(held_of);
        if now.not_a_file {
            s.conflicts.push(Conflict {
                path: f.path.clone(),
                reason: "a folder or symlink is there now".into(),
            });
            s.unresolved += 1;
            continue;
        }
        if now.current == was {
            s.already.push(f.path.clone());
            continue;
        }
        let safe = now.current == f.left();
        if !safe {
            let reason = match (now.current, f.left()) {
                (Some(_), None) => "created again since the operation",
                (None, Some(_)) => "removed since the operation",
                _ => "changed since the operation",
            };
            s.conflicts.push(Conflict {
                path: f.path.clone(),
                reason: reason.into(),
            });
            if !opts.force {
                s.unresolved += 1;
                continue;
            }
            if now.current.is_some() {
                forced.push(f.path.clone());
            }
        }
        match (was, judged) {
            (Some(_), j) => {
                if j.is_some() {
                    s.overwrite.push(f.path.clone());
                } else {
                    s.create.push(f.path.clone());
                }
                write.push((f.path.clone(), j));
                if f.action == "move" {
                    if let (Some(to), Some(h)) = (&f.moved_to, was) {
                        moved_back.push((f.path.clone(), PathBuf::from(to), h));
                    }
                }
            }
            (None, Some(j)) => {
                s.remove.push(f.path.clone());
                remove.push((f.path.clone(), j));
            }
            (None, None) => s.already.push(f.path.clone()),
        }
    }
    if opts.dry_run {
        return Ok(s);
    }

    // A forced undo replaces files nobody else holds: they go into a safety snapshot first,
    // and the forced undo is recorded, so that it can be undone in its turn.
    let mut receipt: Option<Receipt> = None;
    let mut own: Option<OperationRecord> = None;
    if !forced.is_empty() {
        let time = opts
            .now
            .unwrap_or_else(|| chrono::Local::now().fixed_offset());
        let r = net::protect(
            repo,
            &forced,
            &SafetyOptions {
                root: root.to_path_buf(),
                kind: SnapshotKind::PreRestore,
                tags: vec![format!("undo:{}", record.id)],
                time,
                hostname: opts.hostname.clone(),
                types: opts.types.clone(),
                what: "nothing was changed",
            },
            progress,
        )?;
        s.safety_snapshot = Some(r.snapshot.to_hex());
        let planned = forced
            .iter()
            .map(|p| {
                let goes = remove.iter().any(|(q, _)| q == p);
                RecordedFile {
                    path: p.clone(),
                    cache_type: String::new(),
                    action: if goes { "delete" } else { "overwrite" }.into(),
                    size: r.held(p).map_or(0, |h| h.size),
                    atime_ns: 0,
                    reason: format!("undo --force of {}", record.id),
                    rewritten_hash: None,
                    after_hash: if goes {
                        None
                    } else {
                        before.get(p).copied().flatten()
                    },
                    moved_to: None,
                }
            })
            .collect();
        let rec = OperationRecord::new("undo", "force", time, &r.root, Some(r.snapshot), planned);
        write_record(repo, &rec)?;
        s.undo_id = Some(rec.id.clone());
        receipt = Some(r);
        own = Some(rec);
    }

    // Removals: files the operation created, if still exactly as judged.
    for (path, judged) in &remove {
        crate::cancel::check()?;
        let abs = root.join(path);
        let ok = match receipt.as_ref().filter(|r| r.held(path).is_some()) {
            Some(r) => r.still_matches(path, &abs)?,
            None => net::still_matches(judged, &abs)?,
        };
        if !ok {
            s.conflicts.push(Conflict {
                path: path.clone(),
                reason: "changed while undo ran".into(),
            });
            s.unresolved += 1;
            continue;
        }
        std::fs::remove_file(&abs).map_err(Error::io(&abs))?;
        s.removed.push(path.clone());
    }

    // Writes: verified restores from the snapshot, each checked right before it replaces
    // its destination.
    if let Some(m) = &m {
        let judged: BTreeMap<RelPath, Option<Held>> = write
            .iter()
            .map(|(p, j)| (RelPath::from(p.as_str()), *j))
            .collect();
        let receipt_for_guard = receipt.clone();
        let guard: restore::Guard = std::sync::Arc::new(move |rel: &RelPath, dest: &Path| {
            let key = rel.display();
            if let Some(r) = receipt_for_guard
                .as_ref()
                .filter(|r| r.held(&key).is_some())
            {
                return r.still_matches(&key, dest);
            }
            match judged.get(rel) {
                Some(j) => unchanged_since(j.as_ref(), dest),
                None => Ok(false),
            }
        });
        let r = restore::restore(
            repo,
            m,
            root,
            &RestoreOptions {
                exact: false,
                paths: write
                    .iter()
                    .map(|(p, _)| RelPath::from(p.as_str()))
                    .collect(),
                dry_run: false,
                guard: Some(guard),
                window: 0,
            },
            progress,
        )?;
        let failed: HashSet<String> = r
            .errors
            .iter()
            .filter_map(|e| e.split(": ").next().map(str::to_string))
            .collect();
        let skipped: HashSet<String> = r.skipped.iter().map(RelPath::display).collect();
        for (p, _) in &write {
            if skipped.contains(p) {
                s.conflicts.push(Conflict {
                    path: p.clone(),
                    reason: "changed while undo ran".into(),
                });
                s.unresolved += 1;
            } else if !failed.contains(p) {
                s.restored.push(p.clone());
            }
        }
        s.errors = r.errors;
    }
    // What a `move` left elsewhere goes once the file is back, if it is still that file.
    for (path, to, hash) in &moved_back {
        if !s.restored.contains(path) {
            continue;
        }
        if let Ok(Standing {
            current: Some(h), ..
        }) = standing(to)
        {
            if h == *hash {
                std::fs::remove_file(to).map_err(Error::io(to))?;
            }
        }
    }
    if let Some(mut rec) = own {
        rec.done = Some(forced.clone());
        write_record(repo, &rec)?;
    }
    // Undone for good only when everything came back: a partial undo stays the next one.
    if opts.only.is_none() && s.errors.is_empty() && s.lost.is_empty() && s.unresolved == 0 {
        let mut rec = record.clone();
        rec.undone_by = Some(s.undo_id.clone().unwrap_or_else(|| {
            format!(
                "undo at {}",
                opts.now
                    .unwrap_or_else(|| chrono::Local::now().fixed_offset())
                    .to_rfc3339()
            )
        }));
        write_record(repo, &rec)?;
    }
    Ok(s)
}

/// The `top` files of a clear to warm first: the config's priority paths, then the most
/// recently used (by access time before the clear).
pub fn warm_selection(priority: &[String], record: &OperationRecord, top: usize) -> Vec<String> {
    let rank = |path: &str| {
        priority
            .iter()
            .position(|p| path == p || path.starts_with(&format!("{}/", p.trim_end_matches('/'))))
            .unwrap_or(usize::MAX)
    };
    let done: HashSet<&String> = record.done.iter().flatten().collect();
    let mut files: Vec<&RecordedFile> = record
        .planned
        .iter()
        .filter(|f| f.action == "delete" || f.action == "rewrite")
        .filter(|f| record.done.is_none() || done.contains(&f.path))
        .collect();
    files.sort_by(|a, b| {
        rank(&a.path)
            .cmp(&rank(&b.path))
            .then(b.atime_ns.cmp(&a.atime_ns))
            .then(a.path.cmp(&b.path))
    });
    files
        .into_iter()
        .take(top)
        .map(|f| f.path.clone())
        .collect()
}
