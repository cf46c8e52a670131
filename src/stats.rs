//! Operator statistics: what each cache type holds (files, bytes, oldest and newest entry,
//! entries past their TTL, size limit) and what the repository stores (snapshots, bytes on
//! disk, deduplication and compression ratios, growth per day), plus their rendering in
//! node_exporter's textfile format.
//!
//! Self-imposed constraint: walking a cache tree reads metadata only (`lstat` through
//! walkdir) and never opens a cache file, so statistics cannot disturb the access times that
//! LRU eviction relies on. Everything past the walk is pure and takes `now` as a parameter.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::config::{CacheType, Config};
use crate::error::Result;
use crate::id::BlobId;
use crate::manifest::{Manifest, SnapshotKind};
use crate::repo::Repository;
use crate::store::BlobIndex;

/// Bytes in one `max_size_mb` megabyte: the FBA sourcing system computes sizes as
/// `bytes / (1024 * 1024)`.
pub const BYTES_PER_MB: u64 = 1 << 20;
/// Bytes in one `max_total_size_gb` gigabyte.
pub const BYTES_PER_GB: u64 = 1 << 30;
/// Windows of the growth trend, in days.
pub const GROWTH_WINDOWS: [u32; 2] = [7, 30];

/// Metadata of one cache file, as walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// The files of one cache type, as walked.
#[derive(Debug, Clone, Default)]
pub struct TypeScan {
    /// Name of the cache type.
    pub name: String,
    /// Absolute folder of the type.
    pub dir: PathBuf,
    /// Whether the folder exists.
    pub exists: bool,
    /// Regular files of the type (state files and other types' sub-folders excluded).
    pub files: Vec<FileFacts>,
    /// Entries that could not be walked.
    pub errors: Vec<String>,
}

/// Walks the folder of every cache type of `cfg`. Regular files only; `*_state.json` files
/// belong to no type and are left out, as are sub-folders that are another (more specific)
/// type's folder, the repository and the quarantine. Symlinks are not followed.
pub fn scan_types(cfg: &Config) -> Vec<TypeScan> {
    use std::os::unix::ffi::OsStrExt;
    cfg.raw
        .cache
        .cache_types
        .iter()
        .map(|(name, t)| {
            let dir = cfg.type_dir(t);
            let mut scan = TypeScan {
                name: name.clone(),
                exists: dir.is_dir(),
                dir: dir.clone(),
                ..TypeScan::default()
            };
            if !scan.exists {
                return scan;
            }
            let mut it = walkdir::WalkDir::new(&dir)
                .follow_links(false)
                .min_depth(1)
                .sort_by_file_name()
                .into_iter();
            while let Some(item) = it.next() {
                let de = match item {
                    Ok(de) => de,
                    Err(e) => {
                        scan.errors.push(e.to_string());
                        continue;
                    }
                };
                let ft = de.file_type();
                if ft.is_dir() {
                    let foreign = de.path() == cfg.repository
                        || de.path() == cfg.quarantine
                        || de
                            .path()
                            .strip_prefix(&cfg.root)
                            .ok()
                            .and_then(|rel| cfg.type_of(rel))
                            .is_some_and(|(owner, _)| owner != name);
                    if foreign {
                        it.skip_current_dir();
                    }
                    continue;
                }
                if !ft.is_file() || crate::config::is_state_file(de.file_name().as_bytes()) {
                    continue;
                }
                // walkdir's metadata is lstat(2) when links are not followed: no open(2).
                match de.metadata() {
                    Ok(m) => scan.files.push(FileFacts {
                        size: m.len(),
                        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    }),
                    Err(e) => scan.errors.push(format!("{}: {e}", de.path().display())),
                }
            }
            scan
        })
        .collect()
}

/// Statistics of one cache type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeStats {
    /// Absolute folder.
    pub path: PathBuf,
    /// Whether the folder exists.
    pub exists: bool,
    /// Regular files.
    pub files: u64,
    /// Their bytes (apparent sizes).
    pub bytes: u64,
    /// Modification time of the oldest file.
    pub oldest: Option<DateTime<Utc>>,
    /// Modification time of the newest file.
    pub newest: Option<DateTime<Utc>>,
    /// The type's TTL in hours; -1 never expires.
    pub ttl_hours: i64,
    /// Files whose modification time is more than `ttl_hours` before now.
    pub past_ttl: u64,
    /// Bytes of those files.
    pub past_ttl_bytes: u64,
    /// The type's size limit in megabytes.
    pub max_size_mb: f64,
    /// The size limit in bytes ([`BYTES_PER_MB`] per megabyte).
    pub limit_bytes: u64,
    /// `bytes` as a percentage of `limit_bytes`.
    pub used_pct: f64,
    /// Whether `bytes` exceeds the limit.
    pub over_limit: bool,
    /// Entries that could not be walked.
    pub errors: Vec<String>,
}

/// Converts a size limit in (fractional) megabytes to bytes.
pub fn mb_to_bytes(mb: f64) -> u64 {
    (mb * BYTES_PER_MB as f64).round() as u64
}

fn time_of_ns(ns: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Statistics of one walked type under its policy, at `now`. Pure.
pub fn type_stats(scan: &TypeScan, t: &CacheType, now: DateTime<Utc>) -> TypeStats {
    let limit_bytes = mb_to_bytes(t.max_size_mb);
    let bytes: u64 = scan.files.iter().map(|f| f.size).sum();
    // An entry is past its TTL when it was last written more than ttl_hours ago.
    let cutoff_ns = (t.ttl_hours > 0).then(|| {
        (now - Duration::hours(t.ttl_hours))
            .timestamp_nanos_opt()
            .unwrap_or(i64::MIN)
    });
    let expired = |f: &&FileFacts| cutoff_ns.is_some_and(|c| f.mtime_ns < c);
    TypeStats {
        path: scan.dir.clone(),
        exists: scan.exists,
        files: scan.files.len() as u64,
        bytes,
        oldest: scan
            .files
            .iter()
            .map(|f| f.mtime_ns)
            .min()
            .and_then(time_of_ns),
        newest: scan
            .files
            .iter()
            .map(|f| f.mtime_ns)
            .max()
            .and_then(time_of_ns),
        ttl_hours: t.ttl_hours,
        past_ttl: scan.files.iter().filter(expired).count() as u64,
        past_ttl_bytes: scan.files.iter().filter(expired).map(|f| f.size).sum(),
        max_size_mb: t.max_size_mb,
        limit_bytes,
        used_pct: pct(bytes, limit_bytes),
        over_limit: bytes > limit_bytes,
        errors: scan.errors.clone(),
    }
}

/// All cache types together against `global_settings.max_total_size_gb`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TotalStats {
    /// Files of all types.
    pub files: u64,
    /// Bytes of all types.
    pub bytes: u64,
    /// The global limit in gigabytes.
    pub max_total_size_gb: f64,
    /// The global limit in bytes ([`BYTES_PER_GB`] per gigabyte).
    pub limit_bytes: u64,
    /// `bytes` as a percentage of `limit_bytes`.
    pub used_pct: f64,
    /// Whether `bytes` exceeds the limit.
    pub over_limit: bool,
}

/// Sums the types against the global limit. Pure.
pub fn total_stats(types: &BTreeMap<String, TypeStats>, max_total_size_gb: f64) -> TotalStats {
    let bytes = types.values().map(|t| t.bytes).sum();
    let limit_bytes = (max_total_size_gb * BYTES_PER_GB as f64).round() as u64;
    TotalStats {
        files: types.values().map(|t| t.files).sum(),
        bytes,
        max_total_size_gb,
        limit_bytes,
        used_pct: pct(bytes, limit_bytes),
        over_limit: bytes > limit_bytes,
    }
}

/// Bytes the repository occupies on disk, per folder.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RepoUsage {
    /// `archives/`: compressed blob data.
    pub archives: u64,
    /// `index/`.
    pub index: u64,
    /// `snapshots/`: manifest headers.
    pub snapshots: u64,
}

impl RepoUsage {
    /// All three together.
    pub fn total(&self) -> u64 {
        self.archives + self.index + self.snapshots
    }
}

/// Measures the repository's objects: archives, indexes and manifests.
///
/// # Errors
/// I/O and service errors naming the object.
pub fn repo_usage(repo: &Repository) -> Result<RepoUsage> {
    Ok(RepoUsage {
        archives: repo.usage(ObjectKind::Archive)?,
        index: repo.usage(ObjectKind::Index)?,
        snapshots: repo.usage(ObjectKind::Snapshot)?,
    })
}

/// Raw (uncompressed) bytes of the distinct blobs stored, each counted once.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct BlobBytes {
    /// File content (every blob that is not an entry list; blobs no snapshot uses any more
    /// count until prune removes them).
    pub content: u64,
    /// The snapshots' entry lists.
    pub entry_lists: u64,
}

/// Splits the blobs `index` lists into content and entry lists (the tree blobs the snapshot
/// headers name). Pure.
pub fn blob_bytes(index: &BlobIndex, snapshots: &[(BlobId, Manifest)]) -> BlobBytes {
    let trees: crate::id::IdSet = snapshots
        .iter()
        .flat_map(|(_, m)| m.tree_blobs().copied())
        .collect();
    let mut out = BlobBytes::default();
    for (id, loc) in index.iter() {
        if trees.contains(&id) {
            out.entry_lists += loc.length;
        } else {
            out.content += loc.length;
        }
    }
    out
}

/// What the repository added over one recent window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Growth {
    /// Length of the window.
    pub days: u32,
    /// Snapshots taken in the window.
    pub snapshots: u64,
    /// Compressed bytes those snapshots added to the repository (their `bytes_added`).
    pub bytes_added: u64,
    /// `bytes_added / days`.
    pub bytes_per_day: f64,
}

/// The newest snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastSnapshot {
    /// Its id.
    pub id: BlobId,
    /// Its recorded time.
    pub time: DateTime<FixedOffset>,
}

/// Statistics of the repository.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepoStats {
    /// Number of snapshots.
    pub snapshots: u64,
    /// Bytes on disk of archives, indexes and manifests.
    pub stored_bytes: u64,
    /// `stored_bytes` per folder.
    pub stored: RepoUsage,
    /// Sum over snapshots of their file content (`bytes_total`): what the snapshots would
    /// take without deduplication or compression.
    pub bytes_before_dedup: u64,
    /// Raw bytes of the distinct file-content blobs stored: the file content after
    /// deduplication, before compression.
    pub unique_bytes: u64,
    /// Raw bytes of the distinct entry-list blobs stored (snapshot metadata).
    pub entry_list_bytes: u64,
    /// `bytes_before_dedup / unique_bytes`.
    pub dedup_ratio: Option<f64>,
    /// `(unique_bytes + entry_list_bytes) / stored.archives`: raw blob bytes per byte of
    /// archive on disk.
    pub compression_ratio: Option<f64>,
    /// `bytes_before_dedup / stored_bytes`: both together.
    pub total_ratio: Option<f64>,
    /// Growth over the last 7 and 30 days, keyed `7d` and `30d`.
    pub growth: BTreeMap<String, Growth>,
    /// The newest snapshot of any kind, if any.
    pub last_snapshot: Option<LastSnapshot>,
    /// The newest complete `backup` not dated in the future: what health's backup check and
    /// the last-backup gauge mean.
    pub last_backup: Option<LastSnapshot>,
    /// The newest `pre-clear` snapshot.
    pub last_pre_clear: Option<LastSnapshot>,
    /// Manifests and indexes that cannot be read (the figures leave them out).
    pub damaged: Vec<crate::repo::Damaged>,
    /// Archives an index names that are gone.
    pub missing_archives: Vec<String>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Repository statistics from snapshot headers (oldest first, as [`crate::snapshot::list`]
/// returns them), the measured usage and the distinct blob bytes, at `now`. Pure.
pub fn repo_stats(
    snapshots: &[(BlobId, Manifest)],
    usage: RepoUsage,
    blobs: BlobBytes,
    now: DateTime<Utc>,
) -> RepoStats {
    let bytes_before_dedup: u64 = snapshots.iter().map(|(_, m)| m.summary.bytes_total).sum();
    let growth = GROWTH_WINDOWS
        .iter()
        .map(|&days| {
            let since = now - Duration::days(days as i64);
            let recent: Vec<&Manifest> = snapshots
                .iter()
                .map(|(_, m)| m)
                .filter(|m| m.time > since && m.time <= now)
                .collect();
            let bytes_added: u64 = recent.iter().map(|m| m.summary.bytes_added).sum();
            (
                format!("{days}d"),
                Growth {
                    days,
                    snapshots: recent.len() as u64,
                    bytes_added,
                    bytes_per_day: bytes_added as f64 / days as f64,
                },
            )
        })
        .collect();
    RepoStats {
        snapshots: snapshots.len() as u64,
        stored_bytes: usage.total(),
        stored: usage,
        bytes_before_dedup,
        unique_bytes: blobs.content,
        entry_list_bytes: blobs.entry_lists,
        dedup_ratio: ratio(bytes_before_dedup, blobs.content),
        compression_ratio: ratio(blobs.content + blobs.entry_lists, usage.archives),
        total_ratio: ratio(bytes_before_dedup, usage.total()),
        growth,
        last_snapshot: newest(snapshots, |_| true),
        last_backup: newest(snapshots, |m| {
            m.complete
                && m.kind() == SnapshotKind::Backup
                && m.time <= now + Duration::seconds(crate::select::CLOCK_SLACK_SECONDS)
        }),
        last_pre_clear: newest(snapshots, |m| m.kind() == SnapshotKind::PreClear),
        damaged: Vec::new(),
        missing_archives: Vec::new(),
    }
}

fn newest(
    snapshots: &[(BlobId, Manifest)],
    pick: impl Fn(&Manifest) -> bool,
) -> Option<LastSnapshot> {
    snapshots
        .iter()
        .filter(|(_, m)| pick(m))
        .max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)))
        .map(|(id, m)| LastSnapshot {
            id: *id,
            time: m.time,
        })
}

/// Reads what [`repo_stats`] needs from the repository: headers, indexes, folder sizes.
///
/// # Errors
/// I/O errors and corruption of manifests or indexes.
/// With `root`, the figures drawn from snapshots (counts, bytes before dedup, growth, last
/// snapshots) are of that root's snapshots only; stored bytes are the whole repository's.
pub fn gather_repo(repo: &Repository, now: DateTime<Utc>, root: Option<&str>) -> Result<RepoStats> {
    let listing = crate::snapshot::list(repo)?;
    let mut stats = gather_repo_with(repo, &listing.snapshots, now, root)?;
    stats.damaged.splice(0..0, listing.damaged);
    Ok(stats)
}

/// [`gather_repo`] with the snapshot headers already read (every readable snapshot of the
/// repository, oldest first), for callers that need them too. Damaged manifests are the
/// caller's to add to [`RepoStats::damaged`].
///
/// # Errors
/// I/O errors.
pub fn gather_repo_with(
    repo: &Repository,
    snapshots: &[(BlobId, Manifest)],
    now: DateTime<Utc>,
    root: Option<&str>,
) -> Result<RepoStats> {
    let index = BlobIndex::load(repo)?;
    // Entry-list blobs are told apart by every snapshot's tree, whatever the scope.
    let blobs = blob_bytes(&index, snapshots);
    let usage = repo_usage(repo)?;
    let mut stats = match root {
        Some(root) => {
            let scoped: Vec<(BlobId, Manifest)> = snapshots
                .iter()
                .filter(|(_, m)| m.root == root)
                .cloned()
                .collect();
            repo_stats(&scoped, usage, blobs, now)
        }
        None => repo_stats(snapshots, usage, blobs, now),
    };
    stats.damaged.extend(index.damaged.iter().cloned());
    stats.missing_archives = index.missing_archives.iter().map(|a| a.to_hex()).collect();
    Ok(stats)
}

/// Everything `stats` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// The time the statistics are computed for.
    pub now: DateTime<Utc>,
    /// Per cache type, by name (empty without a config).
    pub cache_types: BTreeMap<String, TypeStats>,
    /// All types together against the global limit (None without a config).
    pub total: Option<TotalStats>,
    /// The repository (None when there is none yet).
    pub repository: Option<RepoStats>,
}

/// Walks the cache types of `cfg` and computes their statistics at `now`.
pub fn cache_stats(cfg: &Config, now: DateTime<Utc>) -> (BTreeMap<String, TypeStats>, TotalStats) {
    let types: BTreeMap<String, TypeStats> = scan_types(cfg)
        .iter()
        .filter_map(|scan| {
            cfg.raw
                .cache
                .cache_types
                .get(&scan.name)
                .map(|t| (scan.name.clone(), type_stats(scan, t, now)))
        })
        .collect();
    let total = total_stats(&types, cfg.raw.cache.global_settings.max_total_size_gb);
    (types, total)
}

/// Renders `stats` in the Prometheus text exposition format that node_exporter's textfile
/// collector reads: `# HELP` and `# TYPE` before each metric family, one
/// `name{labels} value` line per sample. Metrics without a value (a ratio over nothing) are
/// left out. Pure.
pub fn prometheus(stats: &Stats) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        if samples.is_empty() {
            return;
        }
        out.push_str(&format!("# HELP cachevault_{name} {help}\n"));
        out.push_str(&format!("# TYPE cachevault_{name} gauge\n"));
        for (labels, v) in samples {
            out.push_str(&format!("cachevault_{name}{labels} {}\n", number(v)));
        }
    };
    let per_type = |f: &dyn Fn(&TypeStats) -> Option<f64>| -> Vec<(String, f64)> {
        stats
            .cache_types
            .iter()
            .filter_map(|(name, t)| {
                f(t).map(|v| (format!("{{cache_type=\"{}\"}}", label_value(name)), v))
            })
            .collect()
    };
    let secs = |t: &Option<DateTime<Utc>>| {
        t.map(|t| t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9)
    };
    family(
        "cache_files",
        "Regular files of a cache type (state files excluded).",
        per_type(&|t| Some(t.files as f64)),
    );
    family(
        "cache_bytes",
        "Bytes of the files of a cache type.",
        per_type(&|t| Some(t.bytes as f64)),
    );
    family(
        "cache_limit_bytes",
        "Size limit of a cache type (max_size_mb, 1 MB = 1048576 bytes).",
        per_type(&|t| Some(t.limit_bytes as f64)),
    );
    family(
        "cache_over_limit",
        "1 when a cache type is larger than its size limit.",
        per_type(&|t| Some(if t.over_limit { 1.0 } else { 0.0 })),
    );
    family(
        "cache_past_ttl_files",
        "Files of a cache type last modified more than ttl_hours ago (0 when it never expires).",
        per_type(&|t| Some(t.past_ttl as f64)),
    );
    family(
        "cache_past_ttl_bytes",
        "Bytes of the files of a cache type past their TTL.",
        per_type(&|t| Some(t.past_ttl_bytes as f64)),
    );
    family(
        "cache_ttl_seconds",
        "TTL of a cache type in seconds (ttl_hours * 3600); -1 never expires.",
        per_type(&|t| {
            Some(if t.ttl_hours < 0 {
                -1.0
            } else {
                t.ttl_hours as f64 * 3600.0
            })
        }),
    );
    family(
        "cache_oldest_mtime_seconds",
        "Modification time of the oldest file of a cache type (Unix seconds).",
        per_type(&|t| secs(&t.oldest)),
    );
    family(
        "cache_newest_mtime_seconds",
        "Modification time of the newest file of a cache type (Unix seconds).",
        per_type(&|t| secs(&t.newest)),
    );
    if let Some(total) = &stats.total {
        family(
            "cache_total_bytes",
            "Bytes of all cache types together.",
            vec![(String::new(), total.bytes as f64)],
        );
        family(
            "cache_total_limit_bytes",
            "Global size limit (max_total_size_gb, 1 GB = 1073741824 bytes).",
            vec![(String::new(), total.limit_bytes as f64)],
        );
    }
    if let Some(r) = &stats.repository {
        let one = |v: f64| vec![(String::new(), v)];
        let maybe = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
        family(
            "repository_snapshots",
            "Snapshots in the repository.",
            one(r.snapshots as f64),
        );
        family(
            "repository_stored_bytes",
            "Bytes the repository's archives, indexes and manifests occupy on disk.",
            one(r.stored_bytes as f64),
        );
        family(
            "repository_before_dedup_bytes",
            "Sum over snapshots of their file content, before deduplication and compression.",
            one(r.bytes_before_dedup as f64),
        );
        family(
            "repository_unique_bytes",
            "Raw bytes of the distinct file-content blobs stored (after dedup, before compression).",
            one(r.unique_bytes as f64),
        );
        family(
            "repository_dedup_ratio",
            "bytes_before_dedup / unique_bytes.",
            maybe(r.dedup_ratio),
        );
        family(
            "repository_compression_ratio",
            "Raw bytes of all distinct blobs / bytes of the archives on disk.",
            maybe(r.compression_ratio),
        );
        family(
            "repository_daily_growth_bytes",
            "Bytes added to the repository per day, averaged over a recent window (label window).",
            r.growth
                .values()
                .map(|g| (format!("{{window=\"{}d\"}}", g.days), g.bytes_per_day))
                .collect(),
        );
        family(
            "repository_last_snapshot_timestamp_seconds",
            "Time of the newest snapshot of any kind (Unix seconds).",
            maybe(r.last_snapshot.as_ref().map(|l| l.time.timestamp() as f64)),
        );
        family(
            "repository_last_backup_timestamp_seconds",
            "Time of the newest complete backup (Unix seconds); alert on this one.",
            maybe(r.last_backup.as_ref().map(|l| l.time.timestamp() as f64)),
        );
        family(
            "repository_last_pre_clear_timestamp_seconds",
            "Time of the newest pre-clear safety snapshot (Unix seconds).",
            maybe(r.last_pre_clear.as_ref().map(|l| l.time.timestamp() as f64)),
        );
    }
    family(
        "stats_timestamp_seconds",
        "When these statistics were computed (Unix seconds).",
        vec![(String::new(), stats.now.timestamp() as f64)],
    );
    out
}

/// A sample value as Prometheus parses it (Go's float syntax).
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub(crate) fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SnapshotStats, Tree, MANIFEST_VERSION};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cache_type(ttl_hours: i64, max_size_mb: f64) -> CacheType {
        CacheType {
            path: "x".into(),
            ttl_hours,
            max_size_mb,
            backup_enabled: true,
            validation_enabled: true,
            cleanup_strategy: "ttl".into(),
            schema: None,
            cache_version: None,
            backup_frequency: None,
        }
    }

    fn ns(s: &str) -> i64 {
        t(s).timestamp_nanos_opt().unwrap()
    }

    #[test]
    fn type_stats_count_ttl_and_limit() {
        let now = t("2026-11-20T12:00:00Z");
        let scan = TypeScan {
            name: "a".into(),
            dir: "/c/a".into(),
            exists: true,
            files: vec![
                FileFacts {
                    size: 600_000,
                    mtime_ns: ns("2026-11-20T11:00:00Z"),
                },
                FileFacts {
                    size: 500_000,
                    mtime_ns: ns("2026-11-18T11:00:00Z"),
                },
                FileFacts {
                    size: 10,
                    mtime_ns: ns("2026-11-01T00:00:00Z"),
                },
            ],
            errors: vec![],
        };
        let s = type_stats(&scan, &cache_type(24, 1.0), now);
        assert_eq!((s.files, s.bytes), (3, 1_100_010));
        assert_eq!((s.past_ttl, s.past_ttl_bytes), (2, 500_010));
        assert_eq!(s.oldest, Some(t("2026-11-01T00:00:00Z")));
        assert_eq!(s.newest, Some(t("2026-11-20T11:00:00Z")));
        assert_eq!(s.limit_bytes, 1 << 20);
        assert!(s.over_limit);
        let never = type_stats(&scan, &cache_type(-1, 2.0), now);
        assert_eq!(never.past_ttl, 0);
        assert!(!never.over_limit);
    }

    #[test]
    fn ratios_and_growth() {
        let now = t("2026-11-20T12:00:00Z");
        let snap = |time: &str, total: u64, added: u64, n: u8| {
            (
                BlobId([n; 32]),
                Manifest {
                    version: MANIFEST_VERSION,
                    time: DateTime::parse_from_rfc3339(time).unwrap(),
                    kind: None,
                    hostname: "h".into(),
                    root: "/r".into(),
                    paths: vec!["/r".into()],
                    tags: vec![],
                    parent: None,
                    repaired_from: None,
                    complete: true,
                    warnings: vec![],
                    summary: SnapshotStats {
                        bytes_total: total,
                        bytes_added: added,
                        ..SnapshotStats::default()
                    },
                    tree: Tree::default(),
                    changes: None,
                    entries: vec![],
                },
            )
        };
        let snaps = vec![
            snap("2026-10-01T00:00:00Z", 1000, 400, 1),
            snap("2026-11-10T00:00:00Z", 1000, 30, 2),
            snap("2026-11-19T00:00:00Z", 1000, 70, 3),
        ];
        let usage = RepoUsage {
            archives: 500,
            index: 50,
            snapshots: 50,
        };
        let blobs = BlobBytes {
            content: 1500,
            entry_lists: 0,
        };
        let r = repo_stats(&snaps, usage, blobs, now);
        assert_eq!(r.snapshots, 3);
        assert_eq!(r.stored_bytes, 600);
        assert_eq!(r.bytes_before_dedup, 3000);
        assert_eq!(r.dedup_ratio, Some(2.0));
        assert_eq!(r.compression_ratio, Some(3.0));
        assert_eq!(r.total_ratio, Some(5.0));
        assert_eq!(r.growth["7d"].bytes_added, 70);
        assert_eq!(r.growth["7d"].snapshots, 1);
        assert_eq!(r.growth["30d"].bytes_added, 100);
        assert_eq!(r.growth["30d"].bytes_per_day, 100.0 / 30.0);
        assert_eq!(r.last_snapshot.unwrap().id, BlobId([3; 32]));
        let empty = repo_stats(&[], RepoUsage::default(), BlobBytes::default(), now);
        assert_eq!(empty.dedup_ratio, None);
        assert!(empty.last_snapshot.is_none());
    }

    #[test]
    fn prometheus_lines_are_well_formed() {
        let now = t("2026-11-20T12:00:00Z");
        let mut types = BTreeMap::new();
        let scan = TypeScan {
            name: "we\"ird".into(),
            ..TypeScan::default()
        };
        types.insert(
            "we\"ird".into(),
            type_stats(&scan, &cache_type(1, 1.5), now),
        );
        let text = prometheus(&Stats {
            now,
            total: Some(total_stats(&types, 5.0)),
            cache_types: types,
            repository: Some(repo_stats(
                &[],
                RepoUsage::default(),
                BlobBytes::default(),
                now,
            )),
        });
        assert!(text.contains("cachevault_cache_files{cache_type=\"we\\\"ird\"} 0\n"));
        assert!(text.contains("cachevault_cache_limit_bytes{cache_type=\"we\\\"ird\"} 1572864\n"));
        assert!(!text.contains("dedup_ratio"), "no ratio over nothing");
        assert!(
            !text.contains("oldest_mtime"),
            "no oldest file in an empty type"
        );
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
