//! The operator's report: health, cache size per type over time, snapshots on a timeline with
//! what retention keeps, the repository's stored bytes and ratios, and the last run-due runs,
//! as one serialisable [`Report`]. `report --json` prints it and [`html::render`] draws it, so
//! the page and scripts see the same numbers.
//!
//! Self-imposed constraint: [`build`] is pure. It takes what was gathered (statistics, the
//! health verdict, snapshot headers, the retention plan, the journal) and `now`; it reads no
//! file and no clock. Snapshot headers are all it needs: never entry lists.

pub mod html;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::forget::GroupPlan;
use crate::health::{self, Level};
use crate::id::BlobId;
use crate::journal::{JournalEntry, RUN_DUE_JOB_PREFIX};
use crate::manifest::{Manifest, SnapshotKind};
use crate::stats::{Growth, RepoUsage, Stats, TotalStats};
use crate::units::human_bytes;

/// Version of the [`Report`] document; a field removed or changed in meaning bumps it.
pub const REPORT_VERSION: u32 = 1;
/// The tag that gives a snapshot its own colour on the timeline.
pub const REPAIRED_TAG: &str = "repaired";
/// Runs of run-due shown: the newest ones that ran a job.
pub const MAX_RUNS: usize = 14;
/// Clears shown: the newest ones.
pub const MAX_CLEARS: usize = 20;

/// The retention plan the report shows: a dry run of `forget` with the config's policy.
#[derive(Debug, Clone)]
pub struct RetentionInput<'a> {
    /// The plan of the config's root, at `now`.
    pub plan: &'a [GroupPlan],
    /// The keep policy in words (`7 daily, 4 weekly, 3 monthly`).
    pub policy: String,
    /// Safety snapshots are kept this many days.
    pub safety_days: i64,
}

/// Everything [`build`] reads.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// The time the report is for.
    pub now: DateTime<Utc>,
    /// Days the charts cover, back from `now`.
    pub days: u32,
    /// The config, when there is one (which cache types are backed up).
    pub config: Option<&'a Config>,
    /// The config's cache root as snapshots record it ([`Config::root_text`]).
    pub root: Option<String>,
    /// The repository's path, as the reader knows it.
    pub repository: String,
    /// What `stats` reports at `now` (with the repository figures of the whole repository).
    pub stats: &'a Stats,
    /// What `health` concludes at `now`.
    pub health: &'a health::Report,
    /// Every snapshot header, oldest first.
    pub snapshots: &'a [(BlobId, Manifest)],
    /// The retention plan (none without a config or without a policy).
    pub retention: Option<RetentionInput<'a>>,
    /// The operation journal, oldest first.
    pub journal: &'a [JournalEntry],
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The time the report is for.
    pub now: DateTime<Utc>,
    /// Days the charts cover.
    pub days: u32,
    /// `now - days`: where the charts start.
    pub since: DateTime<Utc>,
    /// The config's cache root (as snapshots record it), when there is a config.
    pub root: Option<String>,
    /// The repository's path.
    pub repository: String,
    /// 1. Health.
    pub health: HealthSection,
    /// 2. Cache size per type.
    pub cache: CacheSection,
    /// 3. Snapshots and retention.
    pub snapshots: SnapshotSection,
    /// 4. The repository's stored bytes.
    pub storage: StorageSection,
    /// 5. The last run-due runs and clears.
    pub runs: RunSection,
}

/// Section 1: health, as `health` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSection {
    /// One line saying what the section shows.
    pub reading: String,
    /// The worst level found.
    pub status: Level,
    /// Each check that ran, with its worst level and its findings.
    pub checks: Vec<CheckResult>,
    /// The findings, worst first, exactly as `health --json` lists them.
    pub reasons: Vec<health::Reason>,
}

/// One health check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Its name (`disk`, `size`, `backup`, ...).
    pub check: String,
    /// The worst level of its findings (`ok` when none).
    pub level: Level,
    /// Its findings.
    pub messages: Vec<String>,
}

/// Section 2: cache size per type over time.
#[derive(Debug, Clone, Serialize)]
pub struct CacheSection {
    /// One line saying what the section shows.
    pub reading: String,
    /// Per cache type, by name.
    pub types: Vec<TypeSeries>,
    /// All types together against the global limit (with a config).
    pub total: Option<TotalStats>,
    /// Files past their type's TTL now, all types together.
    pub past_ttl: u64,
    /// Their bytes.
    pub past_ttl_bytes: u64,
}

/// One cache type: its backups' totals in the window and its size now.
#[derive(Debug, Clone, Serialize)]
pub struct TypeSeries {
    /// Cache type name.
    pub name: String,
    /// Whether backups include the type (only then is there a history).
    pub backed_up: bool,
    /// Files now (from `stats`).
    pub files: u64,
    /// Bytes now (from `stats`).
    pub bytes: u64,
    /// `max_size_mb`.
    pub max_size_mb: f64,
    /// The limit in bytes.
    pub limit_bytes: u64,
    /// `bytes` as a percentage of the limit.
    pub used_pct: f64,
    /// Whether `bytes` exceeds the limit.
    pub over_limit: bool,
    /// `ttl_hours`; -1 never expires.
    pub ttl_hours: i64,
    /// Files past the TTL now.
    pub past_ttl: u64,
    /// Their bytes.
    pub past_ttl_bytes: u64,
    /// Growth from the first backup in the window to now, percent (None without one, or
    /// when that backup held nothing of the type).
    pub growth_pct: Option<f64>,
    /// Days from that backup to now.
    pub growth_days: Option<f64>,
    /// The type's totals in each backup of the root in the window, oldest first.
    pub points: Vec<SizePoint>,
}

/// A type's totals in one backup (`summary.types`).
#[derive(Debug, Clone, Serialize)]
pub struct SizePoint {
    /// The snapshot's time.
    pub time: DateTime<FixedOffset>,
    /// The snapshot's id.
    pub snapshot: String,
    /// Files of the type.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// How retention treats a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The policy keeps it (see the reasons).
    Keep,
    /// The next `forget` removes it.
    Remove,
    /// Not planned: another root's snapshot, or no policy to plan with.
    NotPlanned,
}

impl Verdict {
    /// Its name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::Remove => "remove",
            Verdict::NotPlanned => "not-planned",
        }
    }
}

/// Section 3: the snapshots and what retention does with them.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSection {
    /// One line saying what the section shows.
    pub reading: String,
    /// The keep policy in words (none without a config).
    pub policy: Option<String>,
    /// Days safety snapshots are kept.
    pub safety_days: Option<i64>,
    /// Snapshots in the window per colour class (a kind, or `repaired`).
    pub counts: BTreeMap<String, u64>,
    /// Snapshots older than the window (listed, not drawn).
    pub older: u64,
    /// Snapshots kept by the plan.
    pub keep: u64,
    /// Snapshots the next `forget` removes.
    pub remove: u64,
    /// Every snapshot, oldest first.
    pub items: Vec<SnapshotItem>,
}

/// One snapshot on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotItem {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// Its recorded time.
    pub time: DateTime<FixedOffset>,
    /// Its kind.
    pub kind: SnapshotKind,
    /// Colour class: the kind's name, or `repaired` for a snapshot tagged so.
    pub class: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Root.
    pub root: String,
    /// Whether every file was read.
    pub complete: bool,
    /// Files.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Compressed bytes it added to the repository.
    pub bytes_added: u64,
    /// Whether it falls in the window (drawn).
    pub in_window: bool,
    /// What retention does with it.
    pub retention: Verdict,
    /// Why it is kept.
    pub reasons: Vec<String>,
}

/// What a point of the stored-bytes series marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageEvent {
    /// The start of the window.
    Start,
    /// A snapshot added bytes.
    Snapshot,
    /// A snapshot forgotten since added bytes (known from the journal).
    Forgotten,
    /// A prune freed bytes.
    Prune,
    /// Now: the bytes measured on disk.
    Now,
}

/// One point of the stored-bytes series.
#[derive(Debug, Clone, Serialize)]
pub struct StoragePoint {
    /// When.
    pub time: DateTime<FixedOffset>,
    /// What happened.
    pub event: StorageEvent,
    /// Stored bytes after it (reconstructed, except at [`StorageEvent::Now`]).
    pub bytes: i64,
    /// Bytes it added (negative: freed).
    pub delta: i64,
    /// The snapshot's id, for snapshot events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// The last copy to one `copy_to` repository (copying is not built yet: always empty).
#[derive(Debug, Clone, Serialize)]
pub struct CopyStatus {
    /// The other repository.
    pub repository: String,
    /// When the last copy finished.
    pub last_copy: Option<DateTime<FixedOffset>>,
}

/// Section 4: the repository.
#[derive(Debug, Clone, Serialize)]
pub struct StorageSection {
    /// One line saying what the section shows.
    pub reading: String,
    /// Stored bytes over the window, reconstructed backwards from the bytes on disk now: each
    /// snapshot's `bytes_added` and each prune's freed bytes (journal) is one step.
    pub points: Vec<StoragePoint>,
    /// Snapshots in the repository.
    pub snapshots: u64,
    /// Bytes on disk now (`stats`: archives, indexes, manifests).
    pub stored_bytes: u64,
    /// Per folder.
    pub stored: RepoUsage,
    /// The snapshots' file content before deduplication and compression.
    pub bytes_before_dedup: u64,
    /// Distinct file-content bytes.
    pub unique_bytes: u64,
    /// `bytes_before_dedup / unique_bytes`.
    pub dedup_ratio: Option<f64>,
    /// Raw blob bytes per byte of archive.
    pub compression_ratio: Option<f64>,
    /// `bytes_before_dedup / stored_bytes`.
    pub total_ratio: Option<f64>,
    /// Bytes added per day over the last 7 and 30 days.
    pub growth: BTreeMap<String, Growth>,
    /// The last copy to each `copy_to` repository.
    pub copies: Vec<CopyStatus>,
}

/// One job of a run.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    /// `backup`, `clearing`, `validation` or `optimization`.
    pub job: String,
    /// Wall-clock start.
    pub time: DateTime<FixedOffset>,
    /// `--now`, when the run was given one.
    pub now: Option<DateTime<FixedOffset>>,
    /// `ok`, `failed` or `deferred`.
    pub result: String,
    /// Seconds it took.
    pub seconds: f64,
    /// Bytes added (positive) or freed (negative), as journaled.
    pub bytes: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// The clear it made (clearing; optimization's size-limit clear).
    pub clear_id: Option<String>,
    /// Cache bytes that clear freed.
    pub bytes_freed: Option<u64>,
    /// How to put back what it cleared.
    pub undo: Option<String>,
}

/// One run-due run that ran a job.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// Links the run's entries in the journal.
    pub run_id: String,
    /// Wall-clock start (of its first job when the run's own entry is not journaled yet).
    pub time: DateTime<FixedOffset>,
    /// `--now`, when given.
    pub now: Option<DateTime<FixedOffset>>,
    /// The run's result (none while it is being written: the run writing this report).
    pub result: Option<String>,
    /// Seconds the whole run took (none as above).
    pub seconds: Option<f64>,
    /// Its jobs, in the order they ran.
    pub jobs: Vec<JobRow>,
}

/// One clear (by `clear`, or by a run-due job).
#[derive(Debug, Clone, Serialize)]
pub struct ClearRow {
    /// Wall-clock start.
    pub time: DateTime<FixedOffset>,
    /// `--now`, when given.
    pub now: Option<DateTime<FixedOffset>>,
    /// The journal operation that cleared: `clear`, `run-due:clearing`, `run-due:optimization`.
    pub operation: String,
    /// The strategy.
    pub strategy: Option<String>,
    /// `ok`, `partial`, `failed` or `deferred`.
    pub result: String,
    /// Cache bytes freed.
    pub bytes_freed: u64,
    /// The clear id.
    pub clear_id: Option<String>,
    /// Why it was deferred.
    pub deferred_reason: Option<String>,
    /// How to put back what it cleared.
    pub undo: Option<String>,
}

/// Section 5: the last run-due runs and clears.
#[derive(Debug, Clone, Serialize)]
pub struct RunSection {
    /// One line saying what the section shows.
    pub reading: String,
    /// The newest runs in the window that ran a job (at most [`MAX_RUNS`]), and older ones
    /// in the window whose jobs failed or were deferred, oldest first.
    pub runs: Vec<RunRow>,
    /// Runs in the window that ran a job (shown or not).
    pub all_runs: u64,
    /// Runs in the window that found nothing due.
    pub idle_runs: u64,
    /// The newest clears in the window, oldest first (at most [`MAX_CLEARS`]).
    pub clears: Vec<ClearRow>,
}

/// Builds the report. Pure.
pub fn build(input: &ReportInput) -> Report {
    let since = input.now - Duration::days(i64::from(input.days));
    Report {
        version: REPORT_VERSION,
        now: input.now,
        days: input.days,
        since,
        root: input.root.clone(),
        repository: input.repository.clone(),
        health: health_section(input.health),
        cache: cache_section(input, since),
        snapshots: snapshot_section(input, since),
        storage: storage_section(input, since),
        runs: run_section(input, since),
    }
}

/// A time for people, in UTC.
pub fn when(t: &DateTime<FixedOffset>) -> String {
    t.with_timezone(&Utc)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

fn in_window(t: DateTime<FixedOffset>, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    t > since && t <= now
}

fn health_section(r: &health::Report) -> HealthSection {
    let checks: Vec<CheckResult> = r
        .checks
        .iter()
        .map(|c| {
            let found: Vec<&health::Reason> = r.reasons.iter().filter(|x| &x.check == c).collect();
            CheckResult {
                check: c.clone(),
                level: found.iter().map(|x| x.level).max().unwrap_or(Level::Ok),
                messages: found.iter().map(|x| x.message.clone()).collect(),
            }
        })
        .collect();
    let passed: Vec<&str> = checks
        .iter()
        .filter(|c| c.level == Level::Ok)
        .map(|c| c.check.as_str())
        .collect();
    let reading = if r.reasons.is_empty() {
        format!(
            "Healthy: all {} checks passed ({}).",
            checks.len(),
            passed.join(", ")
        )
    } else {
        let worst = &r.reasons[0];
        let mut s = format!(
            "{}: {} finding{}; worst: {}: {}",
            capitalised(r.status.as_str()),
            r.reasons.len(),
            if r.reasons.len() == 1 { "" } else { "s" },
            worst.check,
            worst.message
        );
        if !passed.is_empty() {
            s.push_str(&format!("; passed: {}", passed.join(", ")));
        }
        s.push('.');
        s
    };
    HealthSection {
        reading,
        status: r.status,
        checks,
        reasons: r.reasons.clone(),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn cache_section(input: &ReportInput, since: DateTime<Utc>) -> CacheSection {
    let root = input.root.as_ref();
    let backups: Vec<&(BlobId, Manifest)> = input
        .snapshots
        .iter()
        .filter(|(_, m)| {
            m.kind() == SnapshotKind::Backup
                && Some(&m.root) == root
                && in_window(m.time, since, input.now)
        })
        .collect();
    let types: Vec<TypeSeries> = input
        .stats
        .cache_types
        .iter()
        .map(|(name, t)| {
            let backed_up = input
                .config
                .and_then(|c| c.raw.cache.cache_types.get(name))
                .is_some_and(|c| c.backup_enabled);
            let points: Vec<SizePoint> = if backed_up {
                backups
                    .iter()
                    .filter_map(|(id, m)| {
                        m.summary.types.get(name).map(|tt| SizePoint {
                            time: m.time,
                            snapshot: id.to_hex(),
                            files: tt.files,
                            bytes: tt.bytes,
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let first = points.first().filter(|p| p.bytes > 0);
            TypeSeries {
                name: name.clone(),
                backed_up,
                files: t.files,
                bytes: t.bytes,
                max_size_mb: t.max_size_mb,
                limit_bytes: t.limit_bytes,
                used_pct: t.used_pct,
                over_limit: t.over_limit,
                ttl_hours: t.ttl_hours,
                past_ttl: t.past_ttl,
                past_ttl_bytes: t.past_ttl_bytes,
                growth_pct: first
                    .map(|p| (t.bytes as f64 - p.bytes as f64) * 100.0 / p.bytes as f64),
                growth_days: first.map(|p| {
                    input.now.signed_duration_since(p.time).num_seconds() as f64 / 86_400.0
                }),
                points,
            }
        })
        .collect();
    let past_ttl = types.iter().map(|t| t.past_ttl).sum();
    let past_ttl_bytes = types.iter().map(|t| t.past_ttl_bytes).sum();
    CacheSection {
        reading: cache_reading(&types, past_ttl, input.days, input.config.is_some()),
        types,
        total: input.stats.total.clone(),
        past_ttl,
        past_ttl_bytes,
    }
}

fn cache_reading(types: &[TypeSeries], past_ttl: u64, days: u32, configured: bool) -> String {
    if !configured {
        return "No config given: the cache types and their limits are unknown.".into();
    }
    // The type nearest its limit is the one to read about.
    let Some(t) = types
        .iter()
        .max_by(|a, b| a.used_pct.total_cmp(&b.used_pct))
    else {
        return "The config names no cache types.".into();
    };
    let mut s = match (t.growth_pct, t.growth_days) {
        (Some(g), Some(d)) => format!(
            "{} {} {:.0}% in {} and is at {} of its limit",
            t.name,
            if g < 0.0 { "shrank" } else { "grew" },
            g.abs(),
            days_text(d),
            pct_text(t.used_pct)
        ),
        _ if !t.backed_up => format!(
            "{} is at {} of its limit (not backed up, so no history)",
            t.name,
            pct_text(t.used_pct)
        ),
        _ => format!(
            "{} is at {} of its limit (no backup in the last {days} days to compare with)",
            t.name,
            pct_text(t.used_pct)
        ),
    };
    if t.over_limit {
        s.push_str(", OVER it");
    }
    s.push_str(&format!(
        "; {past_ttl} file{} past TTL now.",
        if past_ttl == 1 { "" } else { "s" }
    ));
    s
}

fn days_text(d: f64) -> String {
    let n = d.round() as i64;
    if d < 1.0 {
        format!("{:.0} hours", d * 24.0)
    } else if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

fn pct_text(p: f64) -> String {
    if p > 0.0 && p < 1.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.0}%")
    }
}

/// The colour class of a snapshot: its kind, or `repaired` when tagged so.
pub fn class_of(m: &Manifest) -> String {
    if m.tags.iter().any(|t| t == REPAIRED_TAG) {
        REPAIRED_TAG.into()
    } else {
        m.kind().name().into()
    }
}

fn snapshot_section(input: &ReportInput, since: DateTime<Utc>) -> SnapshotSection {
    let decisions: HashMap<&str, (bool, &Vec<String>)> = input
        .retention
        .iter()
        .flat_map(|r| r.plan.iter())
        .flat_map(|g| g.decisions.iter())
        .map(|d| (d.id.as_str(), (d.keep, &d.reasons)))
        .collect();
    let mut counts = BTreeMap::new();
    let mut older = 0;
    let items: Vec<SnapshotItem> = input
        .snapshots
        .iter()
        .map(|(id, m)| {
            let hex = id.to_hex();
            let class = class_of(m);
            let drawn = in_window(m.time, since, input.now);
            if drawn {
                *counts.entry(class.clone()).or_insert(0) += 1;
            } else if m.time <= since {
                older += 1;
            }
            let (retention, reasons) = match decisions.get(hex.as_str()) {
                Some((true, r)) => (Verdict::Keep, (*r).clone()),
                Some((false, _)) => (Verdict::Remove, Vec::new()),
                None => (Verdict::NotPlanned, Vec::new()),
            };
            SnapshotItem {
                short_id: id.short(),
                id: hex,
                time: m.time,
                kind: m.kind(),
                class,
                tags: m.tags.clone(),
                root: m.root.clone(),
                complete: m.complete,
                files: m.file_count(),
                bytes: m.summary.bytes_total,
                bytes_added: m.summary.bytes_added,
                in_window: drawn,
                retention,
                reasons,
            }
        })
        .collect();
    let keep = items
        .iter()
        .filter(|i| i.retention == Verdict::Keep)
        .count() as u64;
    let remove = items
        .iter()
        .filter(|i| i.retention == Verdict::Remove)
        .count() as u64;
    let drawn: u64 = counts.values().sum();
    let mut reading = format!(
        "{drawn} snapshot{} in the last {} days",
        if drawn == 1 { "" } else { "s" },
        input.days
    );
    if !counts.is_empty() {
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        reading.push_str(&format!(" ({})", parts.join(", ")));
    }
    if older > 0 {
        reading.push_str(&format!(", {older} older"));
    }
    match &input.retention {
        Some(r) => {
            reading.push_str(&format!(
                "; the retention policy ({}; safety snapshots {}d) keeps {keep} and will remove {remove} next",
                r.policy, r.safety_days
            ));
            if let Some(first) = items.iter().find(|i| i.retention == Verdict::Remove) {
                reading.push_str(&format!(
                    ", the oldest from {}",
                    first.time.with_timezone(&Utc).format("%Y-%m-%d")
                ));
            }
            reading.push('.');
        }
        None => reading.push_str("; no retention policy to plan with (no config)."),
    }
    SnapshotSection {
        reading,
        policy: input.retention.as_ref().map(|r| r.policy.clone()),
        safety_days: input.retention.as_ref().map(|r| r.safety_days),
        counts,
        older,
        keep,
        remove,
        items,
    }
}

/// Repository bytes a journaled operation freed by pruning (0 when it did not prune).
pub fn prune_freed(e: &JournalEntry) -> i64 {
    let field = |k: &str| e.details.get(k).and_then(Value::as_i64);
    match e.operation.as_str() {
        "prune" => field("bytes_freed").unwrap_or(-e.bytes),
        // `forget --prune`: its bytes are prune's alone.
        "forget" => (-e.bytes).max(0),
        "run-due:optimization" => field("prune_bytes_freed").unwrap_or(0),
        _ => 0,
    }
}

/// Snapshots the journal says operations took, as `(id, time, bytes_added)`: how the stored
/// bytes series counts snapshots forgotten since. Pure.
pub fn journaled_snapshots(journal: &[JournalEntry]) -> Vec<(String, DateTime<FixedOffset>, i64)> {
    journal
        .iter()
        .filter(|e| e.result != "failed")
        .filter_map(|e| {
            let (id, bytes) = match e.operation.as_str() {
                "snapshot" => ("id", "bytes_added"),
                "run-due:backup" | "run-due:type_backup" => ("snapshot", "bytes_added"),
                "clear" | "run-due:clearing" => ("snapshot", "snapshot_bytes_added"),
                "run-due:optimization" => {
                    ("size_limits_snapshot", "size_limits_snapshot_bytes_added")
                }
                _ => return None,
            };
            let id = text_field(e, id)?;
            let bytes = e.details.get(bytes).and_then(Value::as_i64)?;
            // A snapshot records its own time (`--time`); run-due's is its `now`.
            let time = text_field(e, "time")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .unwrap_or_else(|| e.effective_time());
            Some((id, time, bytes))
        })
        .collect()
}

/// Stored bytes over the window, reconstructed backwards from `stored_now`: the value after
/// the last event is what is on disk now, and each event before it steps back by what it
/// added or freed. Snapshots forgotten since count by what the journal recorded of them;
/// bytes nothing recorded (older journals) show as bytes stored before the window. Pure.
pub fn storage_points(
    snapshots: &[(BlobId, Manifest)],
    journal: &[JournalEntry],
    stored_now: u64,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<StoragePoint> {
    // (time, delta, event, snapshot id)
    let mut events: Vec<(DateTime<FixedOffset>, i64, StorageEvent, Option<String>)> = snapshots
        .iter()
        .filter(|(_, m)| m.time <= now)
        .map(|(id, m)| {
            (
                m.time,
                m.summary.bytes_added as i64,
                StorageEvent::Snapshot,
                Some(id.to_hex()),
            )
        })
        .collect();
    let known: std::collections::HashSet<String> =
        snapshots.iter().map(|(id, _)| id.to_hex()).collect();
    let mut forgotten: Vec<(String, DateTime<FixedOffset>, i64)> = journaled_snapshots(journal)
        .into_iter()
        .filter(|(id, time, _)| !known.contains(id) && *time <= now)
        .collect();
    forgotten.sort();
    forgotten.dedup_by(|a, b| a.0 == b.0);
    events.extend(
        forgotten
            .into_iter()
            .map(|(id, time, bytes)| (time, bytes, StorageEvent::Forgotten, Some(id))),
    );
    events.extend(
        journal
            .iter()
            .filter(|e| e.result != "failed" && e.effective_time() <= now)
            .map(|e| (e, prune_freed(e)))
            .filter(|(_, freed)| *freed != 0)
            .map(|(e, freed)| (e.effective_time(), -freed, StorageEvent::Prune, None)),
    );
    events.sort_by_key(|e| e.0);
    let mut after = stored_now as i64;
    let mut points = Vec::new();
    for (time, delta, event, snapshot) in events.into_iter().rev() {
        if time <= since {
            break;
        }
        points.push(StoragePoint {
            time,
            event,
            bytes: after,
            delta,
            snapshot,
        });
        after -= delta;
    }
    points.push(StoragePoint {
        time: since.fixed_offset(),
        event: StorageEvent::Start,
        bytes: after,
        delta: 0,
        snapshot: None,
    });
    points.reverse();
    points.push(StoragePoint {
        time: now.fixed_offset(),
        event: StorageEvent::Now,
        bytes: stored_now as i64,
        delta: 0,
        snapshot: None,
    });
    points
}

fn storage_section(input: &ReportInput, since: DateTime<Utc>) -> StorageSection {
    let Some(r) = &input.stats.repository else {
        return StorageSection {
            reading: "The repository could not be measured.".into(),
            points: Vec::new(),
            snapshots: 0,
            stored_bytes: 0,
            stored: RepoUsage::default(),
            bytes_before_dedup: 0,
            unique_bytes: 0,
            dedup_ratio: None,
            compression_ratio: None,
            total_ratio: None,
            growth: BTreeMap::new(),
            copies: Vec::new(),
        };
    };
    let points = storage_points(
        input.snapshots,
        input.journal,
        r.stored_bytes,
        since,
        input.now,
    );
    let start = points.first().map(|p| p.bytes).unwrap_or(0);
    let change = r.stored_bytes as i64 - start;
    let ratio = |v: Option<f64>| v.map(|v| format!("{v:.1}x")).unwrap_or_else(|| "-".into());
    let per_day = r
        .growth
        .get("7d")
        .map(|g| human_bytes(g.bytes_per_day.round() as u64))
        .unwrap_or_else(|| "-".into());
    let reading = format!(
        "{} stored now, {}{} over {} days (reconstructed from the snapshots' bytes_added, the journal's for snapshots forgotten since, less what prune freed per the journal); dedup {}, compression {}; growing {per_day}/day over the last 7 days.",
        human_bytes(r.stored_bytes),
        if change < 0 { "-" } else { "+" },
        human_bytes(change.unsigned_abs()),
        input.days,
        ratio(r.dedup_ratio),
        ratio(r.compression_ratio),
    );
    StorageSection {
        reading,
        points,
        snapshots: r.snapshots,
        stored_bytes: r.stored_bytes,
        stored: r.stored,
        bytes_before_dedup: r.bytes_before_dedup,
        unique_bytes: r.unique_bytes,
        dedup_ratio: r.dedup_ratio,
        compression_ratio: r.compression_ratio,
        total_ratio: r.total_ratio,
        growth: r.growth.clone(),
        copies: Vec::new(),
    }
}

fn text_field(e: &JournalEntry, k: &str) -> Option<String> {
    e.details.get(k).and_then(Value::as_str).map(str::to_string)
}

fn undo_hint(clear_id: &Option<String>, result: &str) -> Option<String> {
    clear_id
        .as_ref()
        .filter(|_| result == "ok" || result == "partial")
        .map(|id| format!("cachevault undo {id}"))
}

fn job_row(e: &JournalEntry) -> JobRow {
    let job = e
        .operation
        .strip_prefix(RUN_DUE_JOB_PREFIX)
        .unwrap_or(&e.operation)
        .to_string();
    let (clear_id, bytes_freed) = match job.as_str() {
        "clearing" => (
            text_field(e, "clear_id"),
            e.details.get("bytes_freed").and_then(Value::as_u64),
        ),
        "optimization" => (
            text_field(e, "size_limits_clear_id"),
            e.details
                .get("size_limits_bytes_freed")
                .and_then(Value::as_u64),
        ),
        _ => (None, None),
    };
    JobRow {
        undo: undo_hint(&clear_id, &e.result),
        job,
        time: e.time,
        now: e.now,
        result: e.result.clone(),
        seconds: e.seconds,
        bytes: e.bytes,
        error: e.error.clone(),
        clear_id,
        bytes_freed,
    }
}

fn run_section(input: &ReportInput, since: DateTime<Utc>) -> RunSection {
    let recent: Vec<&JournalEntry> = input
        .journal
        .iter()
        .filter(|e| in_window(e.effective_time(), since, input.now))
        .collect();
    let mut runs: Vec<RunRow> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut idle_runs = 0;
    // Job entries are written before their run's entry (which is journaled once the run
    // ends), so runs are gathered by id, not by order.
    for e in &recent {
        let is_run = e.operation == "run-due";
        // The optimization's steps are drawn in its cell, not as jobs.
        let is_job = e.operation.starts_with(RUN_DUE_JOB_PREFIX)
            && !crate::journal::is_run_due_step(&e.operation);
        let Some(id) = e.run_id.as_deref().filter(|_| is_run || is_job) else {
            continue;
        };
        let i = *index.entry(id).or_insert_with(|| {
            runs.push(RunRow {
                run_id: id.to_string(),
                time: e.time,
                now: e.now,
                result: None,
                seconds: None,
                jobs: Vec::new(),
            });
            runs.len() - 1
        });
        let run = &mut runs[i];
        if is_run {
            run.time = e.time;
            run.now = e.now;
            run.result = Some(e.result.clone());
            run.seconds = Some(e.seconds);
        } else {
            run.time = run.time.min(e.time);
            run.jobs.push(job_row(e));
        }
    }
    runs.retain(|r| {
        let ran = !r.jobs.is_empty();
        if !ran {
            idle_runs += 1;
        }
        ran
    });
    runs.sort_by_key(|r| r.time);
    let all_runs = runs.len();
    let all_jobs: Vec<&JobRow> = runs.iter().flat_map(|r| r.jobs.iter()).collect();
    let count = |result: &str| all_jobs.iter().filter(|j| j.result == result).count();
    let (jobs, failed, deferred) = (all_jobs.len(), count("failed"), count("deferred"));
    // The newest runs, and any older one of the window that did not go well: a failure
    // stays in sight while it is in the window.
    let first_newest = runs.len().saturating_sub(MAX_RUNS);
    let mut i = 0;
    runs.retain(|r| {
        i += 1;
        i > first_newest || r.jobs.iter().any(|j| j.result != "ok")
    });

    let mut clears: Vec<ClearRow> = recent
        .iter()
        .filter_map(|e| {
            let (clear_id, bytes_freed) = match e.operation.as_str() {
                "clear" | "run-due:clearing" => (
                    text_field(e, "clear_id"),
                    e.details.get("bytes_freed").and_then(Value::as_u64),
                ),
                "run-due:optimization" => (
                    text_field(e, "size_limits_clear_id"),
                    e.details
                        .get("size_limits_bytes_freed")
                        .and_then(Value::as_u64),
                ),
                _ => return None,
            };
            let deferred = e.details.get("deferred").and_then(Value::as_bool) == Some(true);
            // An optimization that found every type within its limit cleared nothing.
            if e.operation == "run-due:optimization" && clear_id.is_none() {
                return None;
            }
            // Entries before `deferred` was a result said `failed` with `deferred: true`.
            let result = if deferred {
                "deferred".to_string()
            } else {
                e.result.clone()
            };
            // A scheduled clear that found nothing to clear is no news.
            if clear_id.is_none() && result == "ok" {
                return None;
            }
            Some(ClearRow {
                undo: undo_hint(&clear_id, &result),
                time: e.time,
                now: e.now,
                operation: e.operation.clone(),
                strategy: text_field(e, "strategy").or_else(|| {
                    (e.operation == "run-due:optimization").then(|| "size_based".into())
                }),
                result,
                bytes_freed: bytes_freed.unwrap_or(0),
                clear_id,
                deferred_reason: text_field(e, "deferred_reason"),
            })
        })
        .collect();
    let skip = clears.len().saturating_sub(MAX_CLEARS);
    clears.drain(..skip);

    let mut reading = format!(
        "{all_runs} run-due run{} ran jobs in the last {} days",
        if all_runs == 1 { "" } else { "s" },
        input.days
    );
    if all_runs > 0 {
        reading.push_str(&format!(
            ": {jobs} jobs, {failed} failed, {deferred} deferred"
        ));
    }
    if all_runs > runs.len() {
        reading.push_str(&format!(" ({} runs shown)", runs.len()));
    }
    if let Some(last) = runs.last() {
        let failed: Vec<&str> = last
            .jobs
            .iter()
            .filter(|j| j.result == "failed")
            .map(|j| j.job.as_str())
            .collect();
        reading.push_str(&format!(
            "; the last at {} {}",
            when(&last.now.unwrap_or(last.time)),
            if failed.is_empty() {
                "succeeded".to_string()
            } else {
                format!("failed in {}", failed.join(", "))
            }
        ));
    }
    let done: Vec<&ClearRow> = clears.iter().filter(|c| c.clear_id.is_some()).collect();
    reading.push_str(&format!(
        "; {} clear{} freed {}.",
        done.len(),
        if done.len() == 1 { "" } else { "s" },
        human_bytes(done.iter().map(|c| c.bytes_freed).sum())
    ));
    RunSection {
        reading,
        runs,
        all_runs: all_runs as u64,
        idle_runs,
        clears,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SnapshotStats, Tree, MANIFEST_VERSION};

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("test time parses")
    }

    fn snap(n: u8, time: &str, added: u64) -> (BlobId, Manifest) {
        (
            BlobId([n; 32]),
            Manifest {
                version: MANIFEST_VERSION,
                time: t(time),
                kind: Some(SnapshotKind::Backup),
                hostname: "h".into(),
                root: "/r".into(),
                paths: vec!["/r".into()],
                tags: vec![],
                parent: None,
                repaired_from: None,
                complete: true,
                warnings: vec![],
                summary: SnapshotStats {
                    bytes_added: added,
                    ..SnapshotStats::default()
                },
                tree: Tree::default(),
                changes: None,
                entries: vec![],
            },
        )
    }

    fn entry(
        op: &str,
        time: &str,
        now: Option<&str>,
        result: &str,
        details: Value,
    ) -> JournalEntry {
        JournalEntry {
            time: t(time),
            now: now.map(t),
            run_id: details
                .get("run")
                .and_then(Value::as_str)
                .map(str::to_string),
            operation: op.into(),
            root: None,
            seconds: 0.5,
            result: result.into(),
            exit_code: 0,
            bytes: 0,
            error: None,
            details,
        }
    }

    #[test]
    fn stored_bytes_step_back_from_the_bytes_on_disk() {
        let snaps = vec![
            snap(1, "2026-11-01T00:00:00Z", 1000),
            snap(2, "2026-11-10T00:00:00Z", 300),
            snap(3, "2026-11-20T00:00:00Z", 200),
        ];
        let journal = vec![
            entry(
                "prune",
                "2026-12-01T00:00:00Z",
                Some("2026-11-15T00:00:00Z"),
                "ok",
                serde_json::json!({"bytes_freed": 400}),
            ),
            // A backup forgotten before the prune; and one still there, not counted twice.
            entry(
                "run-due:backup",
                "2026-12-01T00:00:00Z",
                Some("2026-11-12T00:00:00Z"),
                "ok",
                serde_json::json!({"snapshot": "f0", "bytes_added": 250}),
            ),
            entry(
                "snapshot",
                "2026-12-01T00:00:00Z",
                None,
                "ok",
                serde_json::json!({"id": BlobId([3; 32]).to_hex(), "bytes_added": 200,
                                   "time": "2026-11-20T00:00:00Z"}),
            ),
        ];
        let now = t("2026-11-21T00:00:00Z").with_timezone(&Utc);
        let since = t("2026-11-05T00:00:00Z").with_timezone(&Utc);
        let p = storage_points(&snaps, &journal, 5000, since, now);
        let steps: Vec<(StorageEvent, i64, i64)> =
            p.iter().map(|p| (p.event, p.bytes, p.delta)).collect();
        assert_eq!(
            steps,
            vec![
                (StorageEvent::Start, 4650, 0),
                (StorageEvent::Snapshot, 4950, 300),
                (StorageEvent::Forgotten, 5200, 250),
                // The prune is placed at its --now, not at the wall clock.
                (StorageEvent::Prune, 4800, -400),
                (StorageEvent::Snapshot, 5000, 200),
                (StorageEvent::Now, 5000, 0),
            ]
        );
        assert_eq!(
            p[1].snapshot.as_deref(),
            Some(BlobId([2; 32]).to_hex().as_str())
        );
    }

    #[test]
    fn runs_gather_their_jobs_by_run_id_and_clears_carry_undo_hints() {
        let j = vec![
            entry(
                "run-due:backup",
                "2026-11-20T10:00:00Z",
                Some("2026-11-19T02:00:00Z"),
                "ok",
                serde_json::json!({"run": "a"}),
            ),
            entry(
                "run-due:clearing",
                "2026-11-20T10:00:01Z",
                Some("2026-11-19T02:00:00Z"),
                "ok",
                serde_json::json!({"run": "a", "clear_id": "C1", "bytes_freed": 50, "strategy": "ttl"}),
            ),
            entry(
                "run-due",
                "2026-11-20T10:00:00Z",
                Some("2026-11-19T02:00:00Z"),
                "ok",
                serde_json::json!({"run": "a"}),
            ),
            // Nothing due.
            entry(
                "run-due",
                "2026-11-20T10:01:00Z",
                Some("2026-11-19T02:15:00Z"),
                "ok",
                serde_json::json!({"run": "b"}),
            ),
            entry(
                "clear",
                "2026-11-20T10:02:00Z",
                Some("2026-11-19T03:00:00Z"),
                "deferred",
                serde_json::json!({"deferred": true, "strategy": "performance_aware", "clear_id": null}),
            ),
            // The run writing the report: its own entry is not journaled yet.
            entry(
                "run-due:validation",
                "2026-11-20T10:03:00Z",
                Some("2026-11-20T02:00:00Z"),
                "failed",
                serde_json::json!({"run": "c"}),
            ),
        ];
        let now = t("2026-11-20T12:00:00Z").with_timezone(&Utc);
        let stats = Stats {
            now,
            cache_types: BTreeMap::new(),
            total: None,
            repository: None,
        };
        let verdict = health::Report {
            status: Level::Ok,
            reasons: vec![],
            checks: vec!["disk".into()],
        };
        let r = build(&ReportInput {
            now,
            days: 30,
            config: None,
            root: None,
            repository: "/repo".into(),
            stats: &stats,
            health: &verdict,
            snapshots: &[],
            retention: None,
            journal: &j,
        });
        let runs = &r.runs.runs;
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(runs[0].run_id, "a");
        assert_eq!(runs[0].result.as_deref(), Some("ok"));
        assert_eq!(
            runs[0]
                .jobs
                .iter()
                .map(|j| j.job.as_str())
                .collect::<Vec<_>>(),
            ["backup", "clearing"]
        );
        assert_eq!(runs[0].jobs[1].undo.as_deref(), Some("cachevault undo C1"));
        assert_eq!(runs[1].result, None);
        assert_eq!(r.runs.idle_runs, 1);
        let clears = &r.runs.clears;
        assert_eq!(clears.len(), 2);
        assert_eq!(
            (clears[0].bytes_freed, clears[0].result.as_str()),
            (50, "ok")
        );
        assert_eq!(clears[1].result, "deferred");
        assert_eq!(clears[1].undo, None);
        assert!(
            r.runs.reading.starts_with("2 run-due runs ran jobs in the last 30 days: 3 jobs, 1 failed, 0 deferred; the last at 2026-11-20 02:00 UTC failed in validation; 1 clear freed 50 B"),
            "{}",
            r.runs.reading
        );
        assert_eq!(r.health.reading, "Healthy: all 1 checks passed (disk).");
    }
}
