//! `health`: gathers the measurements (free space, cache sizes, journal, snapshot headers)
//! and renders the library's verdict; the exit code is the status. `report` gathers its
//! health section through the same functions.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};

use cachevault::health::{
    self, BackupInput, Disk, Frequency, Input, SizeUsage, Thresholds, ValidationInput,
};
use cachevault::journal::JournalEntry;
use cachevault::manifest::Manifest;
use cachevault::stats::{TotalStats, TypeStats};
use cachevault::{fsutil, journal, snapshot, stats, BlobId};

use super::args::HealthArgs;
use super::stats::now_or;
use super::{table, Ctx, Outcome};

/// What `health` and `report` read from the cache tree and the repository, read once.
pub struct Gathered {
    /// Per cache type and all together (with a config).
    pub cache: Option<(BTreeMap<String, TypeStats>, TotalStats)>,
    /// Snapshot headers, oldest first (empty when the repository could not be read).
    pub snapshots: Vec<(BlobId, Manifest)>,
    /// The journal, oldest first.
    pub journal: Vec<JournalEntry>,
    /// Why the repository could not be opened or read, if it could not.
    pub repository_error: Option<String>,
    /// Damaged or missing repository files, with their level and what to run.
    pub damage: Vec<(health::Level, String)>,
}

/// Walks the cache types (metadata only) and reads the snapshot headers and the journal.
pub fn gather(ctx: &Ctx, now: DateTime<Utc>) -> Gathered {
    let cache = ctx.config.as_ref().map(|cfg| stats::cache_stats(cfg, now));
    let mut damage = Vec::new();
    let (snapshots, journal, repository_error) = match ctx.open_repo() {
        Ok(repo) => {
            let listing = snapshot::list(&repo);
            let entries = journal::read(&repo);
            let index = cachevault::store::BlobIndex::load(&repo);
            match (listing, entries, index) {
                (Ok(l), Ok(j), Ok(index)) => {
                    damage = health::damage_findings(&l.damaged, &index);
                    (l.snapshots, j, None)
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    (Vec::new(), Vec::new(), Some(e.to_string()))
                }
            }
        }
        Err(e) => (Vec::new(), Vec::new(), Some(format!("{e:#}"))),
    };
    Gathered {
        cache,
        snapshots,
        journal,
        repository_error,
        damage,
    }
}

/// Number of invalid cache files found by the last full validation (`validate` or run-due's
/// validation job, from the journal): health does not re-read every cache file itself.
fn invalid_cache_files(journal: &[JournalEntry]) -> Option<usize> {
    journal
        .iter()
        .rev()
        .find(|e| e.operation == "validate" && e.exit_code <= super::exit::PARTIAL)
        .and_then(|e| e.details.get("invalid_count").and_then(|v| v.as_u64()))
        .map(|n| n as usize)
}

/// The last full validation (journal: `validate`, written by the command and by run-due's
/// job) and a check of only the cache files modified since it: cheap, and it finds a file
/// broken after the last validation without re-reading the whole cache.
fn validation_input(cfg: &cachevault::config::Config, journal: &[JournalEntry]) -> ValidationInput {
    use cachevault::cache::validate::{self, Rules, ValidateOptions};
    let last_full = journal
        .iter()
        .filter(|e| e.operation == "validate" && e.exit_code <= super::exit::PARTIAL)
        .map(|e| e.time.with_timezone(&Utc))
        .max();
    let mut v = ValidationInput {
        interval_hours: cfg.raw.cache.global_settings.validation_interval_hours,
        last_full,
        ..ValidationInput::default()
    };
    let Some(since) = last_full else { return v };
    let report = Rules::compile(cfg, &ValidateOptions::default())
        .map(|rules| rules.changed_since(since))
        .and_then(|rules| validate::validate_with(&rules, &cachevault::NoProgress));
    match report {
        Ok(r) => {
            v.checked_since = r.checked;
            v.invalid_since = r
                .invalid
                .iter()
                .map(|f| format!("{} ({}: {})", f.path.display(), f.reason.as_str(), f.detail))
                .collect();
            if !r.errors.is_empty() {
                v.error = Some(r.errors.join("; "));
            }
        }
        Err(e) => v.error = Some(e.to_string()),
    }
    v
}

/// Everything health's checks judge, at `now`: free space measured here, the rest from `g`.
pub fn input(ctx: &Ctx, now: DateTime<Utc>, g: &Gathered) -> Result<Input> {
    let cfg = ctx.config.as_ref();
    let repo_path = ctx.repo_path().map_err(|_| {
        anyhow!("health needs a repository or a config: pass --repo DIR or --config FILE")
    })?;

    let mut disks = Vec::new();
    if let Some(cfg) = cfg {
        disks.push(Disk {
            role: "cache".into(),
            path: cfg.root.clone(),
            space: fsutil::disk_space(&cfg.root).map_err(|e| e.to_string()),
        });
    }
    // A repository in object storage has no disk here to fill.
    if !cachevault::backend::is_url(&repo_path.to_string_lossy()) {
        disks.push(Disk {
            role: "repository".into(),
            path: repo_path.clone(),
            space: fsutil::disk_space(&repo_path).map_err(|e| e.to_string()),
        });
    }

    let mut sizes = Vec::new();
    if let Some((types, total)) = &g.cache {
        for (name, t) in types {
            sizes.push(SizeUsage {
                name: name.clone(),
                bytes: t.bytes,
                limit_bytes: t.limit_bytes,
            });
        }
        sizes.push(SizeUsage {
            name: "total".into(),
            bytes: total.bytes,
            limit_bytes: total.limit_bytes,
        });
    }

    let backup = cfg
        .filter(|c| c.raw.cache.strategies.backup.enabled)
        .and_then(|c| {
            let frequency = Frequency::parse(&c.raw.cache.strategies.backup.frequency)?;
            // Snapshots record the canonical root; the config's may name it through a link.
            let root = c.root_text();
            Some(BackupInput {
                frequency,
                last_success: health::last_backup(&g.snapshots, &g.journal, Some(&root), now),
                copies: c
                    .copy_to
                    .iter()
                    .map(|to| (to.clone(), health::last_copy(&g.journal, to)))
                    .collect(),
            })
        });

    let validation = cfg.map(|c| validation_input(c, &g.journal));

    Ok(Input {
        validation,
        now,
        disks,
        sizes,
        invalid_files: invalid_cache_files(&g.journal),
        backup,
        future_snapshots: health::future_snapshots(&g.snapshots, now),
        damage: g.damage.clone(),
        journal: g.journal.clone(),
        repository_error: g.repository_error.clone(),
        same_disk: cfg.and_then(|c| {
            let repo = &c.repository;
            let local = !cachevault::backend::is_url(&repo.to_string_lossy());
            let one_disk = |a: &std::path::Path, b: &std::path::Path| {
                use std::os::unix::fs::MetadataExt;
                // A repository not made yet would live in its parent.
                let dev = |p: &std::path::Path| {
                    p.ancestors()
                        .find_map(|p| std::fs::metadata(p).ok())
                        .map(|m| m.dev())
                };
                matches!((dev(a), dev(b)), (Some(x), Some(y)) if x == y)
            };
            (local && c.copy_to.is_empty() && one_disk(&c.root, repo))
                .then(|| (c.root.clone(), repo.clone()))
        }),
    })
}

pub fn health(ctx: &Ctx, a: &HealthArgs) -> Result<Outcome> {
    let now = now_or(&a.now)?;
    let gathered = gather(ctx, now);
    let input = input(ctx, now, &gathered)?;
    let report = health::evaluate(&input, &Thresholds::default());
    let doc = serde_json::to_value(&report)?;
    let mut human = format!(
        "{}: {}\n",
        super::terminal::paint(
            report.status.as_str(),
            &report.status.as_str().to_uppercase()
        ),
        if report.reasons.is_empty() {
            format!("all checks passed ({})", report.checks.join(", "))
        } else {
            format!(
                "{} finding(s); checks run: {}",
                report.reasons.len(),
                report.checks.join(", ")
            )
        }
    );
    if !report.reasons.is_empty() {
        let rows: Vec<Vec<String>> = report
            .reasons
            .iter()
            .map(|r| {
                vec![
                    super::terminal::paint(r.level.as_str(), r.level.as_str()),
                    r.check.clone(),
                    r.message.clone(),
                ]
            })
            .collect();
        human.push_str(&table(&["Level", "Check", "Message"], &rows));
    }
    Ok(Outcome::new(doc, human, report.status.exit_code()))
}
