//! `run-due`: runs each scheduled job of the config that is due, at most once per period,
//! recording the last run in the repository (idempotent: a second call at the same time
//! does nothing).

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use cachevault::clear::{self, ClearOptions, Strategy};
use cachevault::config::Config;
use cachevault::forget::{self, ForgetRules, GroupBy};
use cachevault::manifest::SnapshotKind;
use cachevault::prune::{self, PruneOptions};
use cachevault::schedule::{self, Job};
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::{LockKind, NoProgress, Repository};

use super::args::RunDueArgs;
use super::{exit, parse_time, Ctx, Outcome};

pub fn run_due(ctx: &Ctx, a: &RunDueArgs) -> Result<Outcome> {
    let cfg = ctx.config.clone().ok_or_else(|| {
        anyhow!("run-due needs --config FILE (or CACHEVAULT_CONFIG): the schedule is in the config")
    })?;
    let repo = ctx.open_repo()?;
    let now = match &a.now {
        Some(t) => parse_time("--now", t)?,
        None => super::now(),
    };
    // One exclusive lock for the whole run: jobs that delete (clearing, prune) need it, and
    // holding it throughout keeps the schedule state consistent between concurrent timers.
    let kind = if a.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = ctx.lock(&repo, kind, "run-due")?;
    let (mut state, state_warning) = schedule::load_state(&repo)?;
    let decisions = schedule::due(&cfg, &state, now)?;
    let mut jobs = Vec::new();
    let mut failed = 0;
    let mut human = String::new();
    let warnings: Vec<&String> = state_warning
        .iter()
        .chain(decisions.iter().filter_map(|d| d.warning.as_ref()))
        .collect();
    for w in &warnings {
        ctx.note(&format!("warning: {w}"));
    }
    for d in &decisions {
        let mut doc = json!({"job": d.job.name(), "due": d.due, "reason": d.reason});
        if !d.due || a.dry_run {
            human.push_str(&format!(
                "{:<12} {}  {}\n",
                d.job.name(),
                if d.due { "due" } else { "not due" },
                d.reason
            ));
            jobs.push(doc);
            continue;
        }
        let result = run_job(ctx, &repo, &cfg, d.job, now);
        match result {
            Ok((ran, summary)) => {
                doc["ran"] = json!(ran);
                doc["ok"] = json!(true);
                doc["summary"] = summary;
                if ran {
                    state.last_run.insert(d.job, now);
                    // Saved after each job: a crash later does not make it run twice.
                    schedule::save_state(&repo, &state)?;
                }
                human.push_str(&format!(
                    "{:<12} {}  {}\n",
                    d.job.name(),
                    if ran { "ran" } else { "deferred" },
                    d.reason
                ));
            }
            Err(e) => {
                failed += 1;
                doc["ran"] = json!(true);
                doc["ok"] = json!(false);
                doc["error"] = json!(format!("{e:#}"));
                human.push_str(&format!("{:<12} FAILED  {e:#}\n", d.job.name()));
            }
        }
        jobs.push(doc);
    }
    let code = if failed > 0 { exit::PARTIAL } else { exit::OK };
    Ok(Outcome::new(
        json!({"now": now.to_rfc3339(), "dry_run": a.dry_run, "jobs": jobs, "failed": failed, "warnings": warnings}),
        human,
        code,
    ))
}

/// Runs one job; Ok((false, _)) when it chose not to run (a clear deferred under load).
fn run_job(
    ctx: &Ctx,
    repo: &Repository,
    cfg: &Config,
    job: Job,
    now: DateTime<FixedOffset>,
) -> Result<(bool, Value)> {
    let utc: DateTime<Utc> = now.with_timezone(&Utc);
    match job {
        Job::Backup => {
            let s = snapshot::create(
                repo,
                &SnapshotOptions {
                    root: cfg.root.clone(),
                    includes: cfg.backup_includes(),
                    types: cfg.type_folders(),
                    kind: SnapshotKind::Backup,
                    tags: vec!["scheduled".into()],
                    time: now,
                    hostname: super::hostname(),
                    rehash: false,
                    dry_run: false,
                    parent: None,
                },
                &NoProgress,
            )?;
            if !s.skipped.is_empty() {
                return Err(anyhow!("backup incomplete: {}", s.skipped.join("; ")));
            }
            Ok((
                true,
                json!({"snapshot": s.id.map(|i| i.to_hex()), "files_new": s.manifest.summary.files_new, "files_changed": s.manifest.summary.files_changed, "bytes_added": s.manifest.summary.bytes_added}),
            ))
        }
        Job::Clearing => {
            let strategy: Strategy = cfg
                .raw
                .cache
                .strategies
                .clearing
                .schedule
                .strategy
                .parse()?;
            let s = clear_with(ctx, repo, cfg, strategy, now)?;
            Ok((!s.deferred, clear_summary(&s)))
        }
        Job::Validation => validation_job(repo, cfg, now),
        Job::Optimization => {
            // Only this config's root: another root's snapshots follow its own config.
            let root = cfg.root_text();
            let all: Vec<_> = snapshot::list(repo)?
                .snapshots
                .into_iter()
                .filter(|(_, m)| m.root == root)
                .collect();
            let safety_days = cfg.raw.cache.global_settings.backup_retention_days;
            let plan = forget::plan(
                &all,
                &ForgetRules {
                    policy: forget::config_policy(cfg),
                    group_by: GroupBy {
                        host: true,
                        tags: false,
                    },
                    now: utc,
                    safety_days,
                    referenced: clear::referenced_snapshots(repo, utc, safety_days)?,
                },
            );
            // Retention is all or nothing (nothing is forgotten when prune would refuse);
            // the size limits are enforced whatever happened to it.
            let retention = (|| -> Result<(usize, prune::PruneSummary)> {
                let doomed = forget::removals(&plan);
                let forgotten: cachevault::id::IdSet = doomed.iter().copied().collect();
                prune::preflight_without(repo, &forgotten)
                    .context("nothing was forgotten, because prune would refuse afterwards")?;
                let r = forget::remove(repo, &doomed);
                if let Some(e) = r.error {
                    return Err(super::changed_before(
                        e.into(),
                        format!("forgot {} snapshot(s) before the error", r.removed.len()),
                    ));
                }
                let pruned = prune::prune(
                    repo,
                    &PruneOptions {
                        max_unused: 0.10,
                        dry_run: false,
                    },
                    &NoProgress,
                )
                .map_err(|e| {
                    super::changed_before(
                        e.into(),
                        format!("forgot {} snapshot(s) before prune failed", r.removed.len()),
                    )
                })?;
                Ok((r.removed.len(), pruned))
            })();
            let sized = clear_with(ctx, repo, cfg, Strategy::SizeBased, now)?;
            let (removed, pruned) = retention
                .with_context(|| format!("retention (size limits: {})", clear_summary(&sized)))?;
            Ok((
                true,
                json!({"forgotten": removed, "prune": pruned, "size_limits": clear_summary(&sized)}),
            ))
        }
    }
}

fn clear_with(
    ctx: &Ctx,
    repo: &Repository,
    cfg: &Config,
    strategy: Strategy,
    now: DateTime<FixedOffset>,
) -> Result<clear::ClearSummary> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()));
    let _ = ctx;
    Ok(clear::run(
        repo,
        cfg,
        &ClearOptions {
            strategy,
            types: Vec::new(),
            now,
            hostname: super::hostname(),
            dry_run: false,
            load: load.map(|l| (l, cores)),
        },
        &NoProgress,
    )?)
}

fn clear_summary(s: &clear::ClearSummary) -> Value {
    json!({
        "strategy": s.strategy.name(),
        "clear_id": s.clear_id,
        "deferred": s.deferred,
        "deferred_reason": s.deferred_reason,
        "done": s.done.len(),
        "skipped": s.skipped.len(),
        "bytes_freed": s.bytes_freed,
    })
}

/// Validates every cache file and journals the result as a `validate` operation (health reads
/// it). Invalid files fail the job, so the next run-due tries again.
fn validation_job(
    repo: &Repository,
    cfg: &Config,
    now: DateTime<FixedOffset>,
) -> Result<(bool, Value)> {
    use cachevault::cache::validate::{self, ValidateOptions};
    let started = std::time::Instant::now();
    let r = validate::validate(cfg, &ValidateOptions::default(), &NoProgress)?;
    let summary = json!({"checked": r.checked, "invalid_count": r.invalid.len(), "ok": r.ok()});
    let entry = cachevault::journal::JournalEntry {
        root: Some(cfg.root_text()),
        time: now,
        operation: "validate".into(),
        seconds: started.elapsed().as_secs_f64(),
        result: if r.ok() { "ok" } else { "partial" }.into(),
        exit_code: if r.ok() { exit::OK } else { exit::PARTIAL },
        bytes: 0,
        error: None,
        details: summary.clone(),
    };
    cachevault::journal::record(repo, &entry)?;
    if !r.ok() {
        let names: Vec<String> = r.invalid.iter().take(5).map(|f| f.path.display()).collect();
        return Err(anyhow!(
            "{} invalid cache file(s), e.g. {}; run `cachevault repair`",
            r.invalid.len(),
            names.join(", ")
        ));
    }
    Ok((true, summary))
}
