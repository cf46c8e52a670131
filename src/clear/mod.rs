//! Clearing caches safely: plan (see [`plan`]), snapshot everything the plan touches (tagged
//! `pre-clear`), verify that snapshot by re-reading and re-hashing every blob the planned
//! files reference, record the clear, then delete or rewrite only files that still match the
//! snapshot. `undo` and `warm` put back what a clear removed, verified.

pub mod plan;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BlobId;
use crate::manifest::SnapshotKind;
use crate::net::{self, Receipt, SafetyOptions};
use crate::progress::Progress;
use crate::repo::Repository;

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

pub use crate::operation::{
    find_record, load_records, records, referenced_snapshots, write_record, ClearRecord,
    OperationRecord, RecordedFile,
};

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
    // A file that cannot be read cannot be held in a snapshot, so it is never deleted: it
    // leaves the plan, with a warning, and the clear goes on with the rest.
    p.actions.retain(|a| {
        let path = &a.file().path;
        match fsutil::open_noatime(&cfg.root.join(path)) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                p.warnings.push(format!(
                    "{path}: cannot be read ({e}); left out of the clear, since it cannot be held in a snapshot"
                ));
                false
            }
        }
    });
    summary.bytes_freed = p.actions.iter().map(|a| a.bytes_freed()).sum();
    summary.plan = p;
    if opts.dry_run || summary.plan.actions.is_empty() {
        return Ok(summary);
    }

    // Snapshot exactly the planned files, verified: the receipt is what authorises each
    // deletion, and only while the file is still the one it holds.
    let paths: Vec<String> = summary
        .plan
        .actions
        .iter()
        .map(|a| a.file().path.clone())
        .collect();
    let archive = opts.strategy == Strategy::ArchiveOld;
    let receipt = net::protect(
        repo,
        &paths,
        &SafetyOptions {
            root: cfg.root.clone(),
            kind: if archive {
                SnapshotKind::Archive
            } else {
                SnapshotKind::PreClear
            },
            tags: if archive {
                vec![
                    "pre-clear".into(),
                    format!("clear:{}", opts.strategy.name()),
                    "archive".into(),
                ]
            } else {
                vec![format!("clear:{}", opts.strategy.name())]
            },
            time: opts.now,
            hostname: opts.hostname.clone(),
            types: cfg.type_folders(),
            what: "nothing was deleted",
        },
        progress,
    )?;
    summary.snapshot = Some(receipt.snapshot);
    summary.snapshot_bytes_added = receipt.bytes_added;

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
                after_hash: None,
                moved_to: None,
            }
        })
        .collect();
    let mut record = OperationRecord::new(
        "clear",
        opts.strategy.name(),
        opts.now,
        &receipt.root,
        Some(receipt.snapshot),
        planned,
    );
    let clear_id = record.id.clone();
    write_record(repo, &record)?;
    crate::fault::point("clear.before_delete");
    crate::fault::pause("clear.before_delete");

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
        if let Err(e) = crate::cancel::check() {
            record.done = Some(summary.done.clone());
            record.skipped = summary.skipped.clone();
            write_record(repo, &record)?;
            return Err(e.after(format!(
                "clear {clear_id} had removed or rewritten {} file(s) (undo puts them back)",
                summary.done.len()
            )));
        }
        let f = action.file();
        let abs = cfg.root.join(&f.path);
        match apply_one(&abs, action, &receipt, &f.path) {
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

/// Deletes or rewrites one file if it still is the one the snapshot holds (size, mtime,
/// ctime and inode, checked right before the change). Ok(false) when it changed since (left
/// alone).
fn apply_one(abs: &Path, action: &Action, receipt: &Receipt, path: &str) -> Result<bool> {
    let matches = |p: &Path| receipt.still_matches(path, p);
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
