//! `health`: gathers the measurements (free space, cache sizes, journal, snapshot headers)
//! and renders the library's verdict; the exit code is the status.

use anyhow::{anyhow, Result};

use cachevault::health::{self, BackupInput, Disk, Frequency, Input, SizeUsage, Thresholds};
use cachevault::{fsutil, journal, snapshot, stats};

use super::args::HealthArgs;
use super::stats::now_or;
use super::{table, Ctx, Outcome};

/// Number of invalid cache files found by the last full validation (`validate` or run-due's
/// validation job, from the journal): health does not re-read every cache file itself.
fn invalid_cache_files(ctx: &Ctx) -> Option<usize> {
    let repo = ctx.open_repo().ok()?;
    let journal = cachevault::journal::read(&repo).ok()?;
    journal
        .iter()
        .rev()
        .find(|e| e.operation == "validate" && e.exit_code <= super::exit::PARTIAL)
        .and_then(|e| e.details.get("invalid_count").and_then(|v| v.as_u64()))
        .map(|n| n as usize)
}

pub fn health(ctx: &Ctx, a: &HealthArgs) -> Result<Outcome> {
    let now = now_or(&a.now)?;
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
    disks.push(Disk {
        role: "repository".into(),
        path: repo_path.clone(),
        space: fsutil::disk_space(&repo_path).map_err(|e| e.to_string()),
    });

    let mut sizes = Vec::new();
    if let Some(cfg) = cfg {
        let (types, total) = stats::cache_stats(cfg, now);
        for (name, t) in types {
            sizes.push(SizeUsage {
                name,
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

    let mut damage = Vec::new();
    let (snapshots, entries, repository_error) = match ctx.open_repo() {
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

    let backup = cfg
        .filter(|c| c.raw.cache.strategies.backup.enabled)
        .and_then(|c| {
            let frequency = Frequency::parse(&c.raw.cache.strategies.backup.frequency)?;
            // Snapshots record the canonical root; the config's may name it through a link.
            let root = c.root_text();
            Some(BackupInput {
                frequency,
                last_success: health::last_backup(&snapshots, &entries, Some(&root), now),
            })
        });

    let input = Input {
        now,
        disks,
        sizes,
        invalid_files: invalid_cache_files(ctx),
        backup,
        future_snapshots: health::future_snapshots(&snapshots, now),
        damage,
        journal: entries,
        repository_error,
    };
    let report = health::evaluate(&input, &Thresholds::default());
    let doc = serde_json::to_value(&report)?;
    let mut human = format!(
        "{}: {}\n",
        report.status.as_str().to_uppercase(),
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
                    r.level.as_str().to_string(),
                    r.check.clone(),
                    r.message.clone(),
                ]
            })
            .collect();
        human.push_str(&table(&["Level", "Check", "Message"], &rows));
    }
    Ok(Outcome::new(doc, human, report.status.exit_code()))
}
