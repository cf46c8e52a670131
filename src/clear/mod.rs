//! Clearing caches safely: plan (see [`plan`]), snapshot everything the plan touches (tagged
//! `pre-clear`), verify that snapshot by re-reading and re-hashing every blob the planned
//! files reference, record the clear, then delete or rewrite only files that still match the
//! snapshot. `undo` and `warm` put back what a clear removed, verified.

pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BlobId;
use crate::manifest::{EntryKind, Manifest, RelPath, SnapshotKind};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{self, RestoreOptions};
use crate::snapshot::{self, SnapshotOptions};
use crate::store::{BlobIndex, BlobReader};

pub use plan::{Action, CacheFile, ClearPlan, Link, SmartInput, Strategy, SupplierPage};

/// How to clear.
#[derive(Debug, Clone)]
pub struct ClearOptions {
    /// The strategy.
    pub strategy: Strategy,
    /// Types to clear (empty: the strategy's default set).
    pub types: Vec<String>,
    /// The time of the clear (TTL ages, snapshot time).
    pub now: DateTime<FixedOffset>,
    /// Host name recorded in the pre-clear snapshot.
    pub hostname: String,
    /// Plan only.
    pub dry_run: bool,
    /// `performance_aware`: the 1-minute load average and the number of cores.
    pub load: Option<(f64, usize)>,
}

/// One file of a clear's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// Path relative to the cache root.
    pub path: String,
    /// Cache type.
    pub cache_type: String,
    /// `delete` or `rewrite`.
    pub action: String,
    /// Size before the clear.
    pub size: u64,
    /// Access time before the clear (warm restores the most recently used first).
    pub atime_ns: i64,
    /// Why.
    pub reason: String,
    /// blake3 of the content a rewrite left (undo refuses if the file changed since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_hash: Option<BlobId>,
}

/// `clears/<id>.json`: written (durably) before anything is deleted, completed after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearRecord {
    /// Format version of this record.
    pub version: u32,
    /// The clear id.
    pub id: String,
    /// When.
    pub time: DateTime<FixedOffset>,
    /// Strategy name.
    pub strategy: String,
    /// Cache root.
    pub root: String,
    /// The verified pre-clear snapshot holding every planned file.
    pub snapshot: BlobId,
    /// Files the clear intended to remove or rewrite.
    pub planned: Vec<RecordedFile>,
    /// Set once the clear finished: files actually removed or rewritten.
    #[serde(default)]
    pub done: Option<Vec<String>>,
    /// Set once the clear finished: files left because they changed since the snapshot.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// What a clear did.
#[derive(Debug, Clone, Serialize)]
pub struct ClearSummary {
    /// The clear id (None on a dry run, a deferral, or when there was nothing to do).
    pub clear_id: Option<String>,
    /// Strategy.
    pub strategy: Strategy,
    /// Types considered.
    pub types: Vec<String>,
    /// The pre-clear snapshot.
    pub snapshot: Option<BlobId>,
    /// Compressed bytes the pre-clear snapshot added to the repository.
    pub snapshot_bytes_added: u64,
    /// The plan (on a dry run, what would happen).
    pub plan: ClearPlan,
    /// Paths removed or rewritten.
    pub done: Vec<String>,
    /// Paths left alone because they changed after the snapshot.
    pub skipped: Vec<String>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// `performance_aware` found the machine busy and did nothing.
    pub deferred: bool,
    /// Why it deferred.
    pub deferred_reason: Option<String>,
    /// Plan only.
    pub dry_run: bool,
}

/// Walks the folders of `types` (state files excluded: they are never cleared), without
/// following symlinks and without opening files (atimes stay as they are).
///
/// # Errors
/// I/O errors on the folders.
pub fn scan_files(cfg: &Config, types: &[String]) -> Result<Vec<CacheFile>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for name in types {
        let Some(t) = cfg.raw.cache.cache_types.get(name) else {
            continue;
        };
        let dir = cfg.type_dir(t);
        if !dir.exists() {
            continue;
        }
        for de in walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            // The agent keeps deleting cache files: one that vanished is simply not planned.
            let gone = |e: &walkdir::Error| {
                e.io_error().map(|io| io.kind()) == Some(std::io::ErrorKind::NotFound)
            };
            let de = match de {
                Ok(de) => de,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(Error::Invalid(format!("walking {}: {e}", dir.display()))),
            };
            if !de.file_type().is_file() {
                continue;
            }
            let rel = de.path().strip_prefix(&cfg.root).map_err(|_| {
                Error::Invalid(format!("{} is outside the cache root", de.path().display()))
            })?;
            if config::is_state_file(de.file_name().as_encoded_bytes()) {
                continue;
            }
            // A file belongs to the type with the most specific folder.
            if cfg.type_of(rel).map(|(n, _)| n) != Some(name.as_str()) {
                continue;
            }
            let Some(path) = rel.to_str().map(str::to_string) else {
                continue;
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            let m = match de.metadata() {
                Ok(m) => m,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(Error::Invalid(format!("{}: {e}", de.path().display()))),
            };
            out.push(CacheFile {
                path,
                cache_type: name.clone(),
                size: m.len(),
                mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                atime_ns: m.atime() * 1_000_000_000 + m.atime_nsec(),
                ino: m.ino(),
            });
        }
    }
    Ok(out)
}

/// Reads the linking map and the supplier pages for `smart_selective`.
///
/// # Errors
/// A linking map that cannot be read or parsed: relationship-aware clearing must not guess.
pub fn load_smart_input(cfg: &Config, files: &[CacheFile]) -> Result<(SmartInput, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut input = SmartInput::default();
    if let Some(t) = cfg.raw.cache.cache_types.get("linking_map") {
        let dir = cfg.type_dir(t);
        let map = dir.join("linking_map.json");
        if map.exists() {
            let bytes = fsutil::read(&map)?;
            let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!(
                    "{}: does not parse ({e}); smart_selective will not guess which products are processed",
                    map.display()
                ))
            })?;
            for r in records {
                let (Some(ean), Some(asin)) = (
                    r.get("supplier_ean").and_then(|v| v.as_str()),
                    r.get("asin").and_then(|v| v.as_str()),
                ) else {
                    continue;
                };
                input.links.push(Link {
                    supplier_ean: ean.to_string(),
                    asin: asin.to_string(),
                    linked_at: r
                        .get("linked_at")
                        .and_then(|v| v.as_str())
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.with_timezone(&Utc)),
                });
            }
        }
    }
    for f in files.iter().filter(|f| f.cache_type == "supplier_cache") {
        let path = cfg.root.join(&f.path);
        let parsed = fsutil::open_noatime(&path)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(doc) => input.pages.push(SupplierPage {
                path: f.path.clone(),
                doc,
            }),
            Err(e) => warnings.push(format!("{}: not valid JSON ({e}); left alone", f.path)),
        }
    }
    Ok((input, warnings))
}

/// Plans, snapshots, verifies, records and applies a clear. The caller holds the exclusive
/// repository lock.
///
/// # Errors
/// Anything failing before the first deletion (snapshot, verification, a full disk, the
/// record) returns an error with nothing deleted.
pub fn run(
    repo: &Repository,
    cfg: &Config,
    opts: &ClearOptions,
    progress: &dyn Progress,
) -> Result<ClearSummary> {
    let types = plan::select_types(cfg, opts.strategy, &opts.types)?;
    let mut summary = ClearSummary {
        clear_id: None,
        strategy: opts.strategy,
        types: types.clone(),
        snapshot: None,
        snapshot_bytes_added: 0,
        plan: ClearPlan::default(),
        done: Vec::new(),
        skipped: Vec::new(),
        bytes_freed: 0,
        deferred: false,
        deferred_reason: None,
        dry_run: opts.dry_run,
    };
    let clearing = &cfg.raw.cache.strategies.clearing;
    if opts.strategy == Strategy::PerformanceAware {
        if let Some((load, cores)) = opts.load {
            let per_core = load / cores.max(1) as f64;
            if per_core > clearing.load_threshold_per_core {
                summary.deferred = true;
                summary.deferred_reason = Some(format!(
                    "load average {load:.2} on {cores} cores is {per_core:.2} per core, above the {} threshold",
                    clearing.load_threshold_per_core
                ));
                return Ok(summary);
            }
        }
    }
    // The plan is computed first, from metadata read once: nothing read afterwards (the
    // snapshot reads files) changes the LRU order it was based on.
    let files = scan_files(
        cfg,
        &cfg.raw
            .cache
            .cache_types
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    let needs_smart = opts.strategy == Strategy::SmartSelective
        || (opts.strategy == Strategy::PerformanceAware
            && types.iter().any(|t| {
                cfg.raw
                    .cache
                    .cache_types
                    .get(t)
                    .is_some_and(|c| c.cleanup_strategy == "smart_selective")
            }));
    let mut warnings = Vec::new();
    let smart = if needs_smart {
        let (input, w) = load_smart_input(cfg, &files)?;
        warnings = w;
        Some(input)
    } else {
        None
    };
    let now_utc = opts.now.with_timezone(&Utc);
    let mut p = plan::plan(cfg, opts.strategy, &types, &files, smart.as_ref(), now_utc)?;
    p.warnings.extend(warnings);
    summary.bytes_freed = p.actions.iter().map(|a| a.bytes_freed()).sum();
    summary.plan = p;
    if opts.dry_run || summary.plan.actions.is_empty() {
        return Ok(summary);
    }

    // Snapshot exactly the planned files; an incomplete snapshot cannot authorise anything.
    let includes: Vec<RelPath> = summary
        .plan
        .actions
        .iter()
        .map(|a| RelPath::from(a.file().path.as_str()))
        .collect();
    let mut tags = vec![
        "pre-clear".to_string(),
        format!("clear:{}", opts.strategy.name()),
    ];
    if opts.strategy == Strategy::ArchiveOld {
        tags.push("archive".into());
    }
    let snap = snapshot::create(
        repo,
        &SnapshotOptions {
            root: cfg.root.clone(),
            includes,
            types: cfg.type_folders(),
            kind: if opts.strategy == Strategy::ArchiveOld {
                SnapshotKind::Archive
            } else {
                SnapshotKind::PreClear
            },
            tags,
            time: opts.now,
            hostname: opts.hostname.clone(),
            rehash: true,
            dry_run: false,
            parent: None,
        },
        progress,
    )?;
    let snap_id = snap.id.expect("a snapshot that is not a dry run has an id");
    if !snap.skipped.is_empty() || !snap.manifest.complete {
        return Err(Error::Invalid(format!(
            "the pre-clear snapshot {} is incomplete ({}); nothing was deleted",
            snap_id.short(),
            snap.skipped.join("; ")
        )));
    }
    summary.snapshot = Some(snap_id);
    summary.snapshot_bytes_added = snap.manifest.summary.bytes_added;
    let receipt = verify_receipt(repo, snap_id, &summary.plan)?;

    let clear_id = format!(
        "{}-{}",
        opts.now.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ"),
        snap_id.short()
    );
    let planned: Vec<RecordedFile> = summary
        .plan
        .actions
        .iter()
        .map(|a| {
            let f = a.file();
            let (action, reason, rewritten_hash) = match a {
                Action::Delete { reason, .. } => ("delete", reason.clone(), None),
                Action::Rewrite {
                    reason, content, ..
                } => ("rewrite", reason.clone(), Some(BlobId::of(content))),
            };
            RecordedFile {
                path: f.path.clone(),
                cache_type: f.cache_type.clone(),
                action: action.into(),
                size: f.size,
                atime_ns: f.atime_ns,
                reason,
                rewritten_hash,
            }
        })
        .collect();
    let mut record = ClearRecord {
        version: 1,
        id: clear_id.clone(),
        time: opts.now,
        strategy: opts.strategy.name().into(),
        root: snap.manifest.root.clone(),
        snapshot: snap_id,
        planned,
        done: None,
        skipped: Vec::new(),
    };
    write_record(repo, &record)?;
    crate::fault::point("clear.before_delete");

    // Delete / rewrite, in throttled batches for performance_aware.
    let batch = if opts.strategy == Strategy::PerformanceAware {
        clearing.batch_size
    } else {
        usize::MAX
    };
    let pause = Duration::from_millis(clearing.batch_pause_ms);
    let mut freed = 0u64;
    for (n, action) in summary.plan.actions.iter().enumerate() {
        if n > 0 && n % batch == 0 {
            std::thread::sleep(pause);
        }
        let f = action.file();
        let abs = cfg.root.join(&f.path);
        match apply_one(&abs, action, receipt.get(f.path.as_str())) {
            Ok(true) => {
                freed += action.bytes_freed();
                summary.done.push(f.path.clone());
            }
            Ok(false) => summary.skipped.push(f.path.clone()),
            Err(e) => {
                summary.skipped.push(f.path.clone());
                summary.plan.warnings.push(e.to_string());
            }
        }
    }
    summary.bytes_freed = freed;
    record.done = Some(summary.done.clone());
    record.skipped = summary.skipped.clone();
    write_record(repo, &record)?;
    summary.clear_id = Some(clear_id);
    Ok(summary)
}

/// What the verified snapshot holds for one planned file.
#[derive(Debug, Clone, Copy)]
struct Held {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

/// Re-reads and re-hashes every blob of every planned file from the snapshot just taken and
/// checks each file is held exactly as planned. The returned receipt is the only thing that
/// authorises a deletion.
fn verify_receipt(repo: &Repository, id: BlobId, p: &ClearPlan) -> Result<BTreeMap<String, Held>> {
    let index = BlobIndex::load(repo)?;
    let m = snapshot::load_with(repo, &index, &id)?;
    let mut reader = BlobReader::new(repo, &index);
    let entries: BTreeMap<&RelPath, &crate::manifest::Entry> =
        m.entries.iter().map(|e| (&e.path, e)).collect();
    let mut receipt = BTreeMap::new();
    for a in &p.actions {
        let f = a.file();
        let rel = RelPath::from(f.path.as_str());
        let e = entries
            .get(&rel)
            .filter(|e| e.kind == EntryKind::File)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "pre-clear snapshot {} does not hold {}",
                    id.short(),
                    f.path
                ))
            })?;
        let mut hasher = blake3::Hasher::new();
        for b in &e.blobs {
            hasher.update(&reader.read(b)?);
        }
        if Some(BlobId::from(hasher.finalize())) != e.hash {
            return Err(Error::corrupt(format!(
                "pre-clear snapshot {}: {} does not read back as stored; nothing was deleted",
                id.short(),
                f.path
            )));
        }
        receipt.insert(
            f.path.clone(),
            Held {
                size: e.size,
                mtime_ns: e.mtime_ns,
                ino: e.ino,
            },
        );
    }
    Ok(receipt)
}

/// Deletes or rewrites one file if it still matches what the snapshot holds. Ok(false) when
/// it changed since (left alone).
fn apply_one(abs: &Path, action: &Action, held: Option<&Held>) -> Result<bool> {
    let Some(held) = held else { return Ok(false) };
    let matches = |p: &Path| -> Result<bool> {
        match std::fs::symlink_metadata(p) {
            Ok(m) => Ok(m.is_file()
                && m.len() == held.size
                && m.mtime() * 1_000_000_000 + m.mtime_nsec() == held.mtime_ns
                && m.ino() == held.ino),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(p)(e)),
        }
    };
    if !matches(abs)? {
        return Ok(false);
    }
    match action {
        Action::Delete { .. } => {
            std::fs::remove_file(abs).map_err(Error::io(abs))?;
        }
        Action::Rewrite { content, .. } => {
            // Written beside the page, synced, and swapped in only if the page is still the
            // one the snapshot holds.
            let tmp = fsutil::temp_path_for(abs);
            let mut f = fsutil::create_new_private(&tmp)?;
            let perm = std::fs::symlink_metadata(abs)
                .map_err(Error::io(abs))?
                .permissions();
            let written = (|| {
                use std::io::Write;
                f.write_all(content).map_err(Error::io(&tmp))?;
                f.set_permissions(perm).map_err(Error::io(&tmp))?;
                f.sync_all().map_err(Error::io(&tmp))
            })();
            drop(f);
            if let Err(e) = written.and_then(|()| {
                if matches(abs)? {
                    fsutil::persist(&tmp, abs)
                } else {
                    Err(Error::Invalid(format!(
                        "{} changed during the clear; left alone",
                        abs.display()
                    )))
                }
            }) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    Ok(true)
}

fn records_dir(repo: &Repository) -> PathBuf {
    repo.root().join("clears")
}

fn write_record(repo: &Repository, r: &ClearRecord) -> Result<()> {
    let dir = records_dir(repo);
    fsutil::create_private_dir(&dir)?;
    let json = serde_json::to_vec_pretty(r).expect("record serialises");
    fsutil::write_atomic(&dir.join(format!("{}.json", r.id)), &json)
}

/// Every clear record, oldest first.
///
/// # Errors
/// I/O errors; a record that does not parse is corruption.
pub fn records(repo: &Repository) -> Result<Vec<ClearRecord>> {
    let dir = records_dir(repo);
    let mut out = Vec::new();
    for name in fsutil::list_names(&dir, ".json")? {
        let path = dir.join(&name);
        let r: ClearRecord = serde_json::from_slice(&fsutil::read(&path)?)
            .map_err(|e| Error::corrupt(format!("clear record {}: {e}", path.display())))?;
        out.push(r);
    }
    out.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Snapshots that an undoable clear younger than `days` still refers to, with the clear's
/// id: retention keeps them whatever their own age.
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
        .map(|r| (r.snapshot, r.id))
        .collect())
}

/// Whether a record's root (canonical since version 2 of the record; as the config named it
/// before) is `root` (canonical).
fn same_root(recorded: &str, root: &str) -> bool {
    recorded == root
        || Path::new(recorded)
            .canonicalize()
            .is_ok_and(|p| p.as_os_str() == root)
}

/// Finds a clear record by id (or unique prefix), or the newest one. With `root`, only
/// records of that cache root count: the newest is the newest of that root, and a named
/// record of another root is refused, naming both roots.
///
/// # Errors
/// [`Error::Invalid`] when none matches or the named one is of another root.
pub fn find_record(repo: &Repository, id: Option<&str>, root: Option<&str>) -> Result<ClearRecord> {
    let all = records(repo)?;
    match id {
        None => all
            .into_iter()
            .rfind(|r| root.is_none_or(|root| same_root(&r.root, root)))
            .ok_or_else(|| {
                Error::Invalid(match root {
                    Some(root) => {
                        format!("no clear of {root} has been recorded in this repository")
                    }
                    None => "no clear has been recorded in this repository".into(),
                })
            }),
        Some(id) => {
            let mut m: Vec<ClearRecord> =
                all.into_iter().filter(|r| r.id.starts_with(id)).collect();
            let r = match m.len() {
                1 => m.remove(0),
                0 => return Err(Error::Invalid(format!("no clear with id {id:?}"))),
                _ => return Err(Error::Invalid(format!("clear id {id:?} is ambiguous"))),
            };
            match root {
                Some(root) if !same_root(&r.root, root) => Err(Error::Invalid(format!(
                    "clear {} was of {}, not of the config's root {root}; refusing to put its files into another tree",
                    r.id, r.root
                ))),
                _ => Ok(r),
            }
        }
    }
}

/// What undo or warm did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PutBackSummary {
    /// The clear.
    pub clear_id: String,
    /// The snapshot restored from.
    pub snapshot: String,
    /// Files restored (verified).
    pub restored: Vec<String>,
    /// Files already as before the clear.
    pub already: Vec<String>,
    /// Files changed since the clear (refused without --force).
    pub conflicts: Vec<String>,
    /// Restore errors.
    pub errors: Vec<String>,
}

/// How a planned file stands now, compared with the clear and the snapshot.
fn standing(root: &Path, f: &RecordedFile, snap_hash: Option<BlobId>) -> Result<&'static str> {
    let abs = root.join(&f.path);
    let current = match fsutil::open_noatime(&abs) {
        Ok(file) => {
            let mut h = blake3::Hasher::new();
            h.update_reader(file).map_err(Error::io(&abs))?;
            Some(BlobId::from(h.finalize()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&abs)(e)),
    };
    Ok(match (current, f.action.as_str()) {
        (Some(h), _) if Some(h) == snap_hash => "already",
        (None, "delete") => "restore",
        (Some(h), "rewrite") if Some(h) == f.rewritten_hash => "restore",
        _ => "conflict",
    })
}

/// Puts back what a clear removed or rewrote (all of it, or `only` those paths), verified,
/// with metadata. Refuses files changed since the clear unless `force`. The caller holds the
/// exclusive lock.
///
/// # Errors
/// Conflicts without `force` (nothing restored), unreadable snapshot.
pub fn put_back(
    repo: &Repository,
    cfg: &Config,
    record: &ClearRecord,
    only: Option<&[String]>,
    force: bool,
    progress: &dyn Progress,
) -> Result<PutBackSummary> {
    let index = BlobIndex::load(repo)?;
    let m: Manifest = snapshot::load_with(repo, &index, &record.snapshot)?;
    let hashes: BTreeMap<String, Option<BlobId>> = m
        .entries
        .iter()
        .map(|e| (e.path.display(), e.hash))
        .collect();
    let done: HashSet<&String> = record.done.iter().flatten().collect();
    let mut s = PutBackSummary {
        clear_id: record.id.clone(),
        snapshot: record.snapshot.to_hex(),
        ..Default::default()
    };
    let mut wanted = Vec::new();
    for f in &record.planned {
        // A clear interrupted before it finished may have done part of its plan.
        if record.done.is_some() && !done.contains(&f.path) {
            continue;
        }
        if only.is_some_and(|o| !o.contains(&f.path)) {
            continue;
        }
        match standing(&cfg.root, f, hashes.get(&f.path).copied().flatten())? {
            "already" => s.already.push(f.path.clone()),
            "restore" => wanted.push(f.path.clone()),
            _ => {
                s.conflicts.push(f.path.clone());
                if force {
                    wanted.push(f.path.clone());
                }
            }
        }
    }
    if !s.conflicts.is_empty() && !force {
        return Err(Error::Invalid(format!(
            "{} file(s) changed since clear {}; nothing restored (use --force to overwrite them): {}",
            s.conflicts.len(),
            record.id,
            s.conflicts.join(", ")
        )));
    }
    if wanted.is_empty() {
        return Ok(s);
    }
    let r = restore::restore(
        repo,
        &m,
        &cfg.root,
        &RestoreOptions {
            paths: wanted.iter().map(|p| RelPath::from(p.as_str())).collect(),
            dry_run: false,
        },
        progress,
    )?;
    s.errors = r.errors;
    let failed: HashSet<String> = s
        .errors
        .iter()
        .filter_map(|e| e.split(": ").next().map(str::to_string))
        .collect();
    s.restored = wanted.into_iter().filter(|p| !failed.contains(p)).collect();
    Ok(s)
}

/// The `top` files of a clear to warm first: the config's priority paths, then the most
/// recently used (by access time before the clear).
pub fn warm_selection(cfg: &Config, record: &ClearRecord, top: usize) -> Vec<String> {
    let priority = &cfg.raw.cache.strategies.clearing.warm_priority;
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
