//! Health evaluation: free disk space, size limits, invalid cache files, backup age and
//! failed operations, each turned into a reason with a level; the worst level is the status.
//!
//! Self-imposed constraint: [`evaluate`] is pure. It takes every measurement and `now` as
//! parameters and does no I/O, so each threshold is unit-tested without a full disk. The
//! binary gathers the inputs (statvfs, cache walk, journal, snapshot headers).

use std::path::PathBuf;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::Serialize;

use crate::fsutil::DiskSpace;
use crate::id::BlobId;
use crate::journal::JournalEntry;
use crate::manifest::{Manifest, SnapshotKind};

/// How bad a finding is. Ordered: `Ok < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Level {
    /// The exit code of `health`: 0 ok, 1 warning, 2 critical.
    pub fn exit_code(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Critical => 2,
        }
    }

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Warning or critical.
    pub level: Level,
    /// Which check found it: `disk`, `size`, `validation`, `backup`, `journal`, `repository`.
    pub check: String,
    /// What was found, in words.
    pub message: String,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The worst level among the reasons (`ok` when there are none).
    pub status: Level,
    /// Findings, worst first.
    pub reasons: Vec<Reason>,
    /// The checks that ran.
    pub checks: Vec<String>,
}

/// Limits the checks apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Warning below this share of free space, percent.
    pub warning_free_pct: f64,
    /// Warning below this many free bytes.
    pub warning_free_bytes: u64,
    /// Critical below this share of free space, percent.
    pub critical_free_pct: f64,
    /// Critical below this many free bytes.
    pub critical_free_bytes: u64,
    /// A type over its size limit is a warning; above this percentage of it, critical.
    pub critical_size_pct: f64,
    /// The last successful backup is a warning once older than this many backup periods.
    pub warning_backup_periods: i32,
    /// ... and critical once older than this many.
    pub critical_backup_periods: i32,
}

impl Default for Thresholds {
    /// Warning below 10% or 1 GiB free, critical below 2% or 200 MiB; size warning over the
    /// limit, critical over 120% of it; backup warning after 2 periods, critical after 7.
    fn default() -> Self {
        Thresholds {
            warning_free_pct: 10.0,
            warning_free_bytes: 1 << 30,
            critical_free_pct: 2.0,
            critical_free_bytes: 200 << 20,
            critical_size_pct: 120.0,
            warning_backup_periods: 2,
            critical_backup_periods: 7,
        }
    }
}

/// Free space of the file system under one path.
#[derive(Debug, Clone)]
pub struct Disk {
    /// What lives there: `cache` or `repository`.
    pub role: String,
    /// The path measured.
    pub path: PathBuf,
    /// The measurement, or why it failed.
    pub space: std::result::Result<DiskSpace, String>,
}

/// Size of one cache type (or of all together) against its limit.
#[derive(Debug, Clone)]
pub struct SizeUsage {
    /// Cache type name, or `total` for the global limit.
    pub name: String,
    /// Current bytes.
    pub bytes: u64,
    /// Limit in bytes.
    pub limit_bytes: u64,
}

/// `strategies.backup.frequency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
}

impl Frequency {
    /// Parses `hourly`, `daily` or `weekly`.
    pub fn parse(s: &str) -> Option<Frequency> {
        match s {
            "hourly" => Some(Frequency::Hourly),
            "daily" => Some(Frequency::Daily),
            "weekly" => Some(Frequency::Weekly),
            _ => None,
        }
    }

    /// Length of one period.
    pub fn period(self) -> Duration {
        match self {
            Frequency::Hourly => Duration::hours(1),
            Frequency::Daily => Duration::days(1),
            Frequency::Weekly => Duration::weeks(1),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Frequency::Hourly => "hourly",
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
        }
    }
}

/// Scheduled backups and the last one that succeeded.
#[derive(Debug, Clone)]
pub struct BackupInput {
    /// How often backups are due.
    pub frequency: Frequency,
    /// Recorded time of the last successful backup (see [`last_backup`]).
    pub last_success: Option<DateTime<FixedOffset>>,
    /// Each repository of `strategies.backup.copy_to` and the last successful copy to it
    /// (see [`last_copy`]).
    pub copies: Vec<(String, Option<DateTime<FixedOffset>>)>,
}

/// When the last successful copy to `to` was made, by the journal (`copy` and run-due's
/// `run-due:copy` entries name their destination in `details.to`).
pub fn last_copy(journal: &[JournalEntry], to: &str) -> Option<DateTime<FixedOffset>> {
    journal
        .iter()
        .filter(|e| {
            (e.operation == "copy" || e.operation == crate::journal::job_operation("copy"))
                && e.exit_code == 0
                && e.details.get("to").and_then(|v| v.as_str()) == Some(to)
        })
        // The time the run acted for (`--now`), else when the copy ended.
        .map(|e| {
            e.now
                .unwrap_or(e.time + chrono::Duration::milliseconds((e.seconds * 1000.0) as i64))
        })
        .max()
}

/// Everything [`evaluate`] looks at.
#[derive(Debug, Clone)]
pub struct Input {
    /// The time to judge ages against.
    pub now: DateTime<Utc>,
    /// Free space under the cache root and the repository.
    pub disks: Vec<Disk>,
    /// Cache types (and `total`) against their size limits.
    pub sizes: Vec<SizeUsage>,
    /// Number of invalid cache files found by validation; `None` when validation did not
    /// run (the check is then left out). The `validate` command fills this hook.
    pub invalid_files: Option<usize>,
    /// Scheduled backups; `None` when backups are disabled or no config says how often.
    pub backup: Option<BackupInput>,
    /// The operation journal, any order.
    pub journal: Vec<JournalEntry>,
    /// Why the repository could not be opened, if it could not.
    pub repository_error: Option<String>,
    /// Snapshots dated in the future, as `(short id, time)` ([`future_snapshots`]).
    pub future_snapshots: Vec<(String, DateTime<FixedOffset>)>,
    /// Damaged or missing repository files, each with its level and what to do
    /// ([`damage_findings`]).
    pub damage: Vec<(Level, String)>,
    /// The cache root and the repository, when the repository lies on the same file system
    /// as the cache root and no copy is configured: one disk failure takes both.
    pub same_disk: Option<(PathBuf, PathBuf)>,
    /// The last full validation and the files changed since it; `None` without a config.
    pub validation: Option<ValidationInput>,
}

/// What health knows of validation: when the last full one ran, and what a check of only the
/// files modified since found.
#[derive(Debug, Clone, Default)]
pub struct ValidationInput {
    /// `global_settings.validation_interval_hours`.
    pub interval_hours: i64,
    /// Wall-clock time of the last full validation (`validate` or run-due's job), if any.
    pub last_full: Option<DateTime<Utc>>,
    /// Files modified (mtime or ctime) since then, checked now.
    pub checked_since: u64,
    /// Those of them that are invalid, as `path (reason: detail)`.
    pub invalid_since: Vec<String>,
    /// Why the modified files could not be checked, if they could not.
    pub error: Option<String>,
}

/// The damage a listing and the index loader met, in words with the command that helps.
/// Pure.
pub fn damage_findings(
    manifests: &[crate::repo::Damaged],
    index: &crate::store::BlobIndex,
) -> Vec<(Level, String)> {
    let mut out: Vec<(Level, String)> = manifests
        .iter()
        .map(|d| {
            (
                Level::Critical,
                format!(
                    "{} cannot be read ({}): run `cachevault repair-snapshots --forget`",
                    d.file, d.error
                ),
            )
        })
        .collect();
    out.extend(index.damaged.iter().map(|d| {
        (
            Level::Critical,
            format!(
                "{} cannot be read ({}): run `cachevault rebuild-index`",
                d.file, d.error
            ),
        )
    }));
    out.extend(index.missing_archives.iter().map(|a| {
        (
            Level::Critical,
            format!(
                "archive {} is missing: run `cachevault rebuild-index`, then `cachevault repair-snapshots` (the next snapshot stores again what is still on disk)",
                a.to_hex()
            ),
        )
    }));
    // Usually the leftover of an interrupted write; it may also be an index that was lost.
    out.extend(index.unindexed_archives.iter().map(|a| {
        (
            Level::Warning,
            format!(
                "archive {} has no index: run `cachevault rebuild-index`",
                a.to_hex()
            ),
        )
    }));
    out
}

/// The level free space `space` deserves under `t`. Pure.
pub fn disk_level(space: &DiskSpace, t: &Thresholds) -> Level {
    let pct = space.available_pct();
    if pct < t.critical_free_pct || space.available_bytes < t.critical_free_bytes {
        Level::Critical
    } else if pct < t.warning_free_pct || space.available_bytes < t.warning_free_bytes {
        Level::Warning
    } else {
        Level::Ok
    }
}

/// Snapshots dated more than the clock slack after `now` (a clock that was wrong when they
/// were taken), as `(short id, time)`. Pure.
pub fn future_snapshots(
    snapshots: &[(BlobId, Manifest)],
    now: DateTime<Utc>,
) -> Vec<(String, DateTime<FixedOffset>)> {
    let horizon = now + Duration::seconds(crate::select::CLOCK_SLACK_SECONDS);
    snapshots
        .iter()
        .filter(|(_, m)| m.time > horizon)
        .map(|(id, m)| (id.short(), m.time))
        .collect()
}

/// The recorded time of the last successful backup: the newest complete `backup` of `root`
/// (the cache root a config-driven backup snapshots; any root when `None`) not dated in the
/// future, never a safety or partial snapshot, nor a type backup (tagged `type:T`: it holds
/// some types only, and an hourly one must not hide a failing regular backup), or, when there
/// is none, the snapshot time the journal recorded for its last `snapshot` with result `ok`.
/// Pure.
pub fn last_backup(
    snapshots: &[(BlobId, Manifest)],
    journal: &[JournalEntry],
    root: Option<&str>,
    now: DateTime<Utc>,
) -> Option<DateTime<FixedOffset>> {
    let horizon = now + Duration::seconds(crate::select::CLOCK_SLACK_SECONDS);
    let from_snapshots = snapshots
        .iter()
        .map(|(_, m)| m)
        .filter(|m| {
            m.complete
                && m.kind() == SnapshotKind::Backup
                && m.time <= horizon
                && root.is_none_or(|r| m.root == r)
                && !m.tags.iter().any(|t| t.starts_with("type:"))
        })
        .map(|m| m.time)
        .max();
    from_snapshots.or_else(|| {
        journal
            .iter()
            .filter(|e| e.operation == "snapshot" && e.result == "ok")
            .map(|e| {
                e.details
                    .get("time")
                    .and_then(|t| t.as_str())
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .unwrap_or(e.time)
            })
            .max()
    })
}

/// Judges `input` under `t`. Pure.
pub fn evaluate(input: &Input, t: &Thresholds) -> Report {
    let mut reasons = Vec::new();
    let mut checks = Vec::new();
    let mut add = |level: Level, check: &str, message: String| {
        if level > Level::Ok {
            reasons.push(Reason {
                level,
                check: check.into(),
                message,
            });
        }
    };

    if let Some(e) = &input.repository_error {
        checks.push("repository".to_string());
        add(
            Level::Critical,
            "repository",
            format!("the repository cannot be opened: {e}"),
        );
    }

    if !input.disks.is_empty() {
        checks.push("disk".into());
    }
    for d in &input.disks {
        match &d.space {
            Ok(space) => {
                let level = disk_level(space, t);
                add(
                    level,
                    "disk",
                    format!(
                        "{}: {} free of {} ({:.1}%) on the file system of {}",
                        d.role,
                        crate::units::human_bytes(space.available_bytes),
                        crate::units::human_bytes(space.total_bytes),
                        space.available_pct(),
                        d.path.display()
                    ),
                );
            }
            Err(e) => add(
                Level::Warning,
                "disk",
                format!(
                    "{}: free space of {} unknown: {e}",
                    d.role,
                    d.path.display()
                ),
            ),
        }
    }

    if !input.sizes.is_empty() {
        checks.push("size".into());
    }
    for s in &input.sizes {
        if s.limit_bytes == 0 || s.bytes <= s.limit_bytes {
            continue;
        }
        let pct = s.bytes as f64 * 100.0 / s.limit_bytes as f64;
        let level = if pct > t.critical_size_pct {
            Level::Critical
        } else {
            Level::Warning
        };
        let what = if s.name == "total" {
            "all cache types together".to_string()
        } else {
            s.name.clone()
        };
        add(
            level,
            "size",
            format!(
                "{what}: {} is {pct:.0}% of the {} limit",
                crate::units::human_bytes(s.bytes),
                crate::units::human_bytes(s.limit_bytes)
            ),
        );
    }

    if let Some(n) = input.invalid_files {
        checks.push("validation".into());
        if n > 0 {
            add(
                Level::Warning,
                "validation",
                format!("{n} invalid cache files (run `cachevault validate` for the list)"),
            );
        }
    }

    if let Some(v) = &input.validation {
        check_validation(v, input.now, &mut checks, &mut add);
    }

    if let Some(b) = &input.backup {
        checks.push("backup".into());
        let period = b.frequency.period();
        match b.last_success {
            None => add(
                Level::Warning,
                "backup",
                format!(
                    "no successful backup yet ({} backups are configured)",
                    b.frequency.name()
                ),
            ),
            Some(last) => {
                let age = input.now.signed_duration_since(last);
                let level = if age > period * t.critical_backup_periods {
                    Level::Critical
                } else if age > period * t.warning_backup_periods {
                    Level::Warning
                } else {
                    Level::Ok
                };
                add(
                    level,
                    "backup",
                    format!(
                        "last successful backup was {} ago ({}), for {} backups",
                        crate::units::human_duration(age.num_seconds()),
                        last.to_rfc3339(),
                        b.frequency.name()
                    ),
                );
            }
        }
    }

    if let Some((root, repo)) = &input.same_disk {
        checks.push("copies".into());
        add(
            Level::Warning,
            "copies",
            format!(
                "the repository {} is on the same file system as the cache root {}, and no copy is configured: one disk failure takes the cache and every backup; set strategies.backup.copy_to (README: Backups off the machine)",
                repo.display(),
                root.display()
            ),
        );
    }
    if let Some(b) = input.backup.as_ref().filter(|b| !b.copies.is_empty()) {
        checks.push("copies".into());
        let period = b.frequency.period();
        for (to, last) in &b.copies {
            match last {
                None => add(
                    Level::Warning,
                    "copies",
                    format!("no successful copy to {to} yet"),
                ),
                Some(last) => {
                    let age = input.now.signed_duration_since(*last);
                    let level = if age > period * 2 {
                        Level::Warning
                    } else {
                        Level::Ok
                    };
                    add(
                        level,
                        "copies",
                        format!(
                            "last successful copy to {to} was {} ago ({}); copies should follow every {} backup",
                            crate::units::human_duration(age.num_seconds()),
                            last.to_rfc3339(),
                            b.frequency.name()
                        ),
                    );
                }
            }
        }
    }

    if !input.damage.is_empty() && !checks.iter().any(|c| c == "repository") {
        checks.push("repository".into());
    }
    for (level, d) in &input.damage {
        add(*level, "repository", d.clone());
    }

    checks.push("clock".into());
    for (id, time) in &input.future_snapshots {
        add(
            Level::Warning,
            "clock",
            format!(
                "snapshot {id} is dated {}, in the future: the clock was wrong when it was taken; `latest` passes it over (forget it by id once it is not needed)",
                time.to_rfc3339()
            ),
        );
    }

    let deferrals = crate::journal::deferrals_in_a_row(&input.journal);
    if input
        .journal
        .iter()
        .any(|e| e.operation == crate::journal::job_operation("clearing"))
    {
        checks.push("clearing".into());
    }
    if deferrals >= crate::journal::DEFERRALS_WARNING {
        add(
            Level::Warning,
            "clearing",
            format!(
                "the scheduled clear was deferred {deferrals} times in a row (the machine was busy each time): raise strategies.clearing.load_threshold_per_core, move strategies.clearing.schedule.cron to a quieter hour, or run `cachevault clear` by hand"
            ),
        );
    }

    checks.push("journal".into());
    // A deferred clear (the machine was busy) changed nothing by design: neither a failure
    // nor a success of its kind.
    let mut journal: Vec<&JournalEntry> = input
        .journal
        .iter()
        .filter(|e| e.result != "deferred")
        .collect();
    journal.sort_by_key(|e| e.time);
    let mut kinds: Vec<&str> = journal.iter().map(|e| e.operation.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<&&JournalEntry> = journal.iter().filter(|e| e.operation == kind).collect();
        let since_ok = of_kind
            .iter()
            .rposition(|e| e.result == "ok")
            .map_or(0, |i| i + 1);
        let bad = &of_kind[since_ok..];
        let Some(latest) = bad.last() else { continue };
        // `check` failing with the corruption exit code means stored data is damaged.
        let level = if latest.exit_code == 3 {
            Level::Critical
        } else {
            Level::Warning
        };
        let what = if latest.result == "failed" {
            "failed"
        } else {
            "completed with skipped entries"
        };
        let mut message = format!("{kind} {what} at {}", latest.time.to_rfc3339());
        if let Some(e) = &latest.error {
            message.push_str(&format!(": {e}"));
        }
        if bad.len() > 1 {
            message.push_str(&format!(
                " ({} unsuccessful runs since the last successful one)",
                bad.len()
            ));
        }
        add(level, "journal", message);
    }

    reasons.sort_by_key(|r| std::cmp::Reverse(r.level));
    Report {
        status: reasons.iter().map(|r| r.level).max().unwrap_or(Level::Ok),
        reasons,
        checks,
    }
}

/// The age of the last full validation against its interval, and the files modified since it
/// that are invalid now.
fn check_validation(
    v: &ValidationInput,
    now: DateTime<Utc>,
    checks: &mut Vec<String>,
    add: &mut impl FnMut(Level, &str, String),
) {
    checks.push("validation_age".into());
    match v.last_full {
        None => add(
            Level::Warning,
            "validation_age",
            "no full validation yet: run `cachevault validate` (run-due runs it every validation_interval_hours)".into(),
        ),
        Some(last) => {
            let age = now.signed_duration_since(last);
            if age > Duration::hours(v.interval_hours) {
                add(
                    Level::Warning,
                    "validation_age",
                    format!(
                        "the last full validation was {} ago ({}), more than validation_interval_hours ({} h)",
                        crate::units::human_duration(age.num_seconds()),
                        last.to_rfc3339(),
                        v.interval_hours
                    ),
                );
            }
            checks.push("modified_files".into());
            if let Some(e) = &v.error {
                add(
                    Level::Warning,
                    "modified_files",
                    format!("the files modified since the last full validation could not be checked: {e}"),
                );
            }
            if !v.invalid_since.is_empty() {
                const SHOWN: usize = 10;
                let mut names = v.invalid_since[..v.invalid_since.len().min(SHOWN)].join(", ");
                if v.invalid_since.len() > SHOWN {
                    names.push_str(&format!(", and {} more", v.invalid_since.len() - SHOWN));
                }
                add(
                    Level::Warning,
                    "modified_files",
                    format!(
                        "{} of the {} cache files modified since the last full validation ({}) are invalid: {names}; run `cachevault repair`",
                        v.invalid_since.len(),
                        v.checked_since,
                        last.to_rfc3339()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn input() -> Input {
        Input {
            now: now(),
            disks: vec![],
            sizes: vec![],
            invalid_files: None,
            backup: None,
            journal: vec![],
            repository_error: None,
            future_snapshots: vec![],
            damage: vec![],
            same_disk: None,
            validation: None,
        }
    }

    fn space(total: u64, available: u64) -> DiskSpace {
        DiskSpace {
            total_bytes: total,
            available_bytes: available,
        }
    }

    #[test]
    fn disk_thresholds_by_share_and_by_bytes() {
        let t = Thresholds::default();
        let cases = [
            // Plenty of both.
            (space(100 * GIB, 50 * GIB), Level::Ok),
            // Exactly at the warning share is not below it.
            (space(100 * GIB, 10 * GIB), Level::Ok),
            // Below 10%.
            (space(100 * GIB, 9 * GIB), Level::Warning),
            // Above 10% but below 1 GiB on a small disk.
            (space(5 * GIB, GIB - 1), Level::Warning),
            (space(5 * GIB, GIB), Level::Ok),
            // Below 2% on a big disk, though many GiB free.
            (space(1000 * GIB, 19 * GIB), Level::Critical),
            (space(1000 * GIB, 20 * GIB), Level::Warning),
            // Below 200 MiB on a tiny disk, though 20% free.
            (space(GIB, 199 * MIB), Level::Critical),
            (space(GIB, 200 * MIB), Level::Warning),
            // Full.
            (space(100 * GIB, 0), Level::Critical),
        ];
        for (s, want) in cases {
            assert_eq!(disk_level(&s, &t), want, "{s:?}");
        }
    }

    #[test]
    fn disk_reasons_set_the_status() {
        let mut i = input();
        i.disks = vec![
            Disk {
                role: "cache".into(),
                path: "/c".into(),
                space: Ok(space(100 * GIB, 50 * GIB)),
            },
            Disk {
                role: "repository".into(),
                path: "/r".into(),
                space: Ok(space(100 * GIB, 5 * GIB)),
            },
        ];
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Warning);
        assert_eq!(r.reasons.len(), 1);
        assert!(r.reasons[0].message.starts_with("repository: 5.0 GiB free"));
        i.disks[0].space = Ok(space(100 * GIB, GIB));
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Critical);
        assert_eq!(r.reasons[0].check, "disk");
        assert_eq!(r.status.exit_code(), 2);
    }

    #[test]
    fn nothing_wrong_is_ok() {
        let r = evaluate(&input(), &Thresholds::default());
        assert_eq!(r.status, Level::Ok);
        assert!(r.reasons.is_empty());
        assert_eq!(r.status.exit_code(), 0);
    }

    #[test]
    fn size_limits() {
        let mut i = input();
        i.sizes = vec![
            SizeUsage {
                name: "a".into(),
                bytes: 100,
                limit_bytes: 100,
            },
            SizeUsage {
                name: "b".into(),
                bytes: 110,
                limit_bytes: 100,
            },
        ];
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Warning);
        assert_eq!(r.reasons.len(), 1);
        assert!(r.reasons[0].message.starts_with("b: "));
        i.sizes[0].bytes = 121;
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Critical);
        assert!(r.reasons[0].message.starts_with("a: "));
    }

    #[test]
    fn invalid_files_hook() {
        let mut i = input();
        i.invalid_files = Some(0);
        assert_eq!(evaluate(&i, &Thresholds::default()).status, Level::Ok);
        i.invalid_files = Some(3);
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Warning);
        assert_eq!(r.reasons[0].check, "validation");
    }

    #[test]
    fn backup_age_against_the_period() {
        let mut i = input();
        let ago = |h: i64| Some((now() - Duration::hours(h)).fixed_offset());
        for (freq, hours, want) in [
            (Frequency::Daily, 47, Level::Ok),
            (Frequency::Daily, 49, Level::Warning),
            (Frequency::Daily, 7 * 24 + 1, Level::Critical),
            (Frequency::Hourly, 1, Level::Ok),
            (Frequency::Hourly, 3, Level::Warning),
            (Frequency::Weekly, 13 * 24, Level::Ok),
            (Frequency::Weekly, 15 * 24, Level::Warning),
        ] {
            i.backup = Some(BackupInput {
                copies: Vec::new(),
                frequency: freq,
                last_success: ago(hours),
            });
            assert_eq!(
                evaluate(&i, &Thresholds::default()).status,
                want,
                "{freq:?} {hours}h"
            );
        }
        i.backup = Some(BackupInput {
            copies: Vec::new(),
            frequency: Frequency::Daily,
            last_success: None,
        });
        assert_eq!(evaluate(&i, &Thresholds::default()).status, Level::Warning);
    }

    #[test]
    fn copies_older_than_two_backup_periods_warn() {
        let mut i = input();
        let ago = |h: i64| Some((now() - Duration::hours(h)).fixed_offset());
        for (copies, want) in [
            (vec![("s3://b/x".to_string(), ago(47))], Level::Ok),
            (vec![("s3://b/x".to_string(), ago(49))], Level::Warning),
            (vec![("s3://b/x".to_string(), None)], Level::Warning),
            (
                vec![("/a".to_string(), ago(1)), ("/b".to_string(), ago(50))],
                Level::Warning,
            ),
        ] {
            i.backup = Some(BackupInput {
                frequency: Frequency::Daily,
                last_success: ago(1),
                copies,
            });
            let r = evaluate(&i, &Thresholds::default());
            assert_eq!(r.status, want, "{:?}", r.reasons);
            if want == Level::Warning {
                assert_eq!(r.reasons[0].check, "copies");
            }
        }
        // The journal's copies: the newest success to that destination, end time.
        let mut ok = entry("run-due:copy", 3, "ok", 0);
        ok.details = serde_json::json!({"to": "s3://b/x"});
        let mut failed = entry("run-due:copy", 5, "failed", 2);
        failed.details = serde_json::json!({"to": "s3://b/x"});
        let mut other = entry("copy", 6, "ok", 0);
        other.details = serde_json::json!({"to": "/elsewhere"});
        let j = vec![ok.clone(), failed, other];
        assert_eq!(
            last_copy(&j, "s3://b/x"),
            Some(ok.time + Duration::milliseconds((ok.seconds * 1000.0) as i64))
        );
        assert_eq!(last_copy(&j, "/nowhere"), None);
    }

    fn entry(op: &str, hour: u32, result: &str, code: u8) -> JournalEntry {
        JournalEntry {
            root: None,
            now: None,
            run_id: None,
            time: DateTime::parse_from_rfc3339(&format!("2026-11-20T{hour:02}:00:00Z")).unwrap(),
            operation: op.into(),
            seconds: 1.0,
            result: result.into(),
            exit_code: code,
            bytes: 0,
            error: (result == "failed").then(|| "boom".to_string()),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn failed_operations_since_the_last_success_of_their_kind() {
        let mut i = input();
        i.journal = vec![
            entry("prune", 1, "failed", 2),
            entry("prune", 2, "ok", 0),
            entry("snapshot", 3, "ok", 0),
        ];
        assert_eq!(evaluate(&i, &Thresholds::default()).status, Level::Ok);
        i.journal.push(entry("snapshot", 4, "failed", 2));
        i.journal.push(entry("snapshot", 5, "failed", 2));
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Warning);
        assert_eq!(r.reasons.len(), 1);
        assert!(
            r.reasons[0].message.contains("snapshot failed")
                && r.reasons[0].message.contains("boom")
                && r.reasons[0].message.contains("2 unsuccessful runs"),
            "{:?}",
            r.reasons
        );
        i.journal.push(entry("check", 6, "failed", 3));
        assert_eq!(evaluate(&i, &Thresholds::default()).status, Level::Critical);
        i.journal.push(entry("snapshot", 7, "ok", 0));
        i.journal.push(entry("check", 8, "ok", 0));
        assert_eq!(evaluate(&i, &Thresholds::default()).status, Level::Ok);
    }

    #[test]
    fn a_deferred_clear_is_neither_a_failure_nor_a_success() {
        let mut i = input();
        i.journal = vec![
            entry("clear", 1, "ok", 0),
            entry("run-due:clearing", 2, "deferred", 0),
            entry("clear", 3, "deferred", 5),
        ];
        assert_eq!(evaluate(&i, &Thresholds::default()).status, Level::Ok);
        // A failure before a deferral is still reported.
        i.journal.insert(1, entry("clear", 2, "failed", 2));
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Warning);
        assert!(r.reasons[0].message.starts_with("clear failed"), "{r:?}");
    }

    #[test]
    fn last_backup_prefers_snapshots_of_the_root() {
        use crate::manifest::{SnapshotStats, Tree, MANIFEST_VERSION};
        let snap = |root: &str, time: &str, complete: bool| -> (BlobId, Manifest) {
            (
                BlobId::of(time.as_bytes()),
                Manifest {
                    version: MANIFEST_VERSION,
                    time: DateTime::parse_from_rfc3339(time).unwrap(),
                    kind: None,
                    hostname: "h".into(),
                    root: root.into(),
                    paths: vec![root.into()],
                    tags: vec![],
                    parent: None,
                    repaired_from: None,
                    complete,
                    warnings: vec![],
                    summary: SnapshotStats::default(),
                    tree: Tree::default(),
                    changes: None,
                    entries: vec![],
                },
            )
        };
        let mut pre_clear = snap("/cache", "2026-11-19T06:00:00Z", true);
        pre_clear.1.tags = vec!["pre-clear".into()];
        let mut future = snap("/cache", "2030-01-01T00:00:00Z", true);
        future.1.kind = Some(SnapshotKind::Backup);
        let mut typed = snap("/cache", "2026-11-19T12:00:00Z", true);
        typed.1.tags = vec!["scheduled".into(), "type:linking_map".into()];
        typed.1.kind = Some(SnapshotKind::Backup);
        let snaps = vec![
            typed,
            snap("/cache", "2026-11-18T00:00:00Z", true),
            snap("/cache", "2026-11-19T00:00:00Z", false),
            pre_clear,
            future,
            snap("/other", "2026-11-20T00:00:00Z", true),
        ];
        let mut j = entry("snapshot", 9, "ok", 0);
        j.details = serde_json::json!({"time": "2026-11-10T00:00:00Z"});
        assert_eq!(
            last_backup(&snaps, std::slice::from_ref(&j), Some("/cache"), now())
                .map(|t| t.to_rfc3339()),
            Some("2026-11-18T00:00:00+00:00".into())
        );
        assert_eq!(
            last_backup(&snaps, &[], None, now()).map(|t| t.to_rfc3339()),
            Some("2026-11-20T00:00:00+00:00".into())
        );
        assert_eq!(
            last_backup(&[], &[j], Some("/cache"), now()).map(|t| t.to_rfc3339()),
            Some("2026-11-10T00:00:00+00:00".into())
        );
        let future = future_snapshots(&snaps, now());
        assert_eq!(future.len(), 1);
        let mut i = input();
        i.future_snapshots = future;
        let r = evaluate(&i, &Thresholds::default());
        assert_eq!(r.status, Level::Warning);
        assert!(
            r.reasons[0].message.contains("2030-01-01"),
            "{:?}",
            r.reasons
        );
    }
}
