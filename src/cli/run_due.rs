//! `run-due`: runs each scheduled job of the config that is due, at most once per period,
//! recording the last run in the repository (idempotent: a second call at the same time
//! does nothing). Each job that runs is journaled on an entry of its own (`run-due:<job>`,
//! linked to the run's entry by `run_id`); with `cache.outputs.report_html` the HTML report
//! is written after the run.

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use cachevault::clear::{self, ClearOptions, Strategy};
use cachevault::config::Config;
use cachevault::forget::{self, ForgetRules, GroupBy};
use cachevault::journal::{self, JournalEntry};
use cachevault::manifest::SnapshotKind;
use cachevault::prune::{self, PruneOptions};
use cachevault::schedule::{self, Job};
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::{LockKind, NoProgress, Repository};

use super::args::RunDueArgs;
use super::{exit, parse_time, Ctx, Outcome};

pub fn run_due(ctx: &Ctx, a: &RunDueArgs) -> Result<Outcome> {
    let cfg = ctx
        .need_config("run-due", "the schedule is in the config")?
        .clone();
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
    let run = Run {
        id: run_id(),
        now,
        now_given: a.now.is_some(),
        load_average: a.load_average,
    };
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
        if !d.types.is_empty() {
            doc["types"] = json!(d.types);
        }
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
        let started = super::now();
        let clock = std::time::Instant::now();
        let result = run_job(&repo, &cfg, d, &run);
        let seconds = clock.elapsed().as_secs_f64();
        doc["seconds"] = json!(seconds);
        let entry = job_entry(&cfg, &run, d.job, started, seconds, &result);
        if let Err(e) = journal::record(&repo, &entry) {
            ctx.note(&format!(
                "warning: could not journal the {} job: {e}",
                d.job.name()
            ));
        }
        match result {
            Ok((ran, summary)) => {
                doc["ran"] = json!(ran);
                doc["ok"] = json!(true);
                doc["summary"] = summary;
                if ran && d.job == Job::TypeBackup {
                    for t in &d.types {
                        state.type_last_run.insert(t.clone(), now);
                    }
                    schedule::save_state(&repo, &state)?;
                } else if ran {
                    state.last_run.insert(d.job, now);
                    // Saved after each job: a crash later does not make it run twice.
                    schedule::save_state(&repo, &state)?;
                }
                human.push_str(&format!(
                    "{:<12} {}  {}\n",
                    d.job.name(),
                    {
                        let word = if ran { "ran" } else { "deferred" };
                        super::terminal::paint(word, word)
                    },
                    d.reason
                ));
            }
            Err(e) => {
                failed += 1;
                doc["ran"] = json!(true);
                doc["ok"] = json!(false);
                doc["error"] = json!(format!("{e:#}"));
                human.push_str(&format!(
                    "{:<12} {}  {e:#}\n",
                    d.job.name(),
                    super::terminal::paint("failed", "FAILED")
                ));
            }
        }
        let backed_up = matches!(d.job, Job::Backup | Job::TypeBackup) && doc["ok"] == json!(true);
        jobs.push(doc);
        // After a backup: copies to each of strategies.backup.copy_to, each its own job.
        if backed_up {
            for to in &cfg.copy_to {
                let started = super::now();
                let clock = std::time::Instant::now();
                let result = copy_job(ctx, &repo, &cfg, to);
                let seconds = clock.elapsed().as_secs_f64();
                let mut doc = json!({"job": "copy", "to": to, "due": true, "reason": "after the backup", "ran": true, "seconds": seconds});
                let entry = copy_entry(&cfg, &run, to, started, seconds, &result);
                if let Err(e) = journal::record(&repo, &entry) {
                    ctx.note(&format!("warning: could not journal the copy to {to}: {e}"));
                }
                match result {
                    Ok(summary) => {
                        human.push_str(&format!(
                            "{:<12} ran  to {to}: {} snapshot(s)\n",
                            "copy", summary["snapshots_copied"]
                        ));
                        doc["ok"] = json!(true);
                        doc["summary"] = summary;
                    }
                    Err(e) => {
                        failed += 1;
                        doc["ok"] = json!(false);
                        doc["error"] = json!(format!("{e:#}"));
                        human.push_str(&format!(
                            "{:<12} {}  to {to}: {e:#}\n",
                            "copy",
                            super::terminal::paint("failed", "FAILED")
                        ));
                    }
                }
                jobs.push(doc);
            }
        }
    }
    let mut warnings: Vec<String> = warnings.into_iter().cloned().collect();
    // Deferred clears in a row, this run's included: a machine never idle at the scheduled
    // time never clears, and that must not go unnoticed.
    let deferrals = journal::read(&repo)
        .map(|j| journal::deferrals_in_a_row(&j))
        .unwrap_or(0);
    if deferrals >= journal::DEFERRALS_WARNING {
        let w = format!(
            "the scheduled clear was deferred {deferrals} times in a row (the machine was busy each time)"
        );
        ctx.note(&format!("warning: {w}"));
        human.push_str(&format!("warning: {w}\n"));
        warnings.push(w);
    }
    let mut code = if failed > 0 { exit::PARTIAL } else { exit::OK };
    let mut doc = json!({"now": now.to_rfc3339(), "run_id": run.id, "dry_run": a.dry_run, "jobs": jobs, "failed": failed, "warnings": warnings, "deferrals_in_a_row": deferrals});
    if let (Some(path), false) = (&cfg.report_html, a.dry_run) {
        let days = cfg.raw.cache.outputs.report_days;
        match super::report::write_html(ctx, &repo, now.with_timezone(&Utc), days, path) {
            Ok(_) => {
                doc["report"] = json!(path);
                human.push_str(&format!("report written to {}\n", path.display()));
            }
            Err(e) => {
                // Not a job: the jobs' work stands, but a stale report must not go unnoticed.
                ctx.note(&format!("warning: {e:#}"));
                doc["report_error"] = json!(format!("{e:#}"));
                human.push_str(&format!("report NOT written: {e:#}\n"));
                code = exit::PARTIAL;
            }
        }
    }
    if let (Some(path), false) = (&cfg.metrics_textfile, a.dry_run) {
        // The clock, not `now`: the collector compares the file's timestamps with its own.
        let written = super::stats::gather(ctx, super::now().with_timezone(&Utc))
            .and_then(|stats| super::stats::write_metrics(ctx, &stats, path));
        match written {
            Ok(()) => {
                doc["metrics_textfile"] = json!(path);
                human.push_str(&format!("metrics written to {}\n", path.display()));
            }
            Err(e) => {
                ctx.note(&format!("warning: {e:#}"));
                doc["metrics_error"] = json!(format!("{e:#}"));
                human.push_str(&format!("metrics NOT written: {e:#}\n"));
                code = exit::PARTIAL;
            }
        }
    }
    Ok(Outcome::new(doc, human, code))
}

/// Applies the config's retention policy to the snapshots of its root in `repo`, then
/// prunes: all or nothing (nothing is forgotten when prune would refuse). Returns how many
/// snapshots were forgotten and what prune did.
fn apply_retention(
    repo: &Repository,
    cfg: &Config,
    utc: DateTime<Utc>,
    referenced: std::collections::BTreeMap<cachevault::BlobId, String>,
    steps: &mut dyn FnMut(Step),
) -> Result<(usize, prune::PruneSummary)> {
    let forget_started = super::now();
    let forget_clock = std::time::Instant::now();
    // Only this config's root: another root's snapshots follow its own config.
    let root = cfg.root_text();
    let all: Vec<_> = snapshot::list(repo)?
        .snapshots
        .into_iter()
        .filter(|(_, m)| m.root == root)
        .collect();
    let rules = ForgetRules {
        policy: forget::config_policy(cfg),
        group_by: GroupBy {
            host: true,
            tags: false,
        },
        now: utc,
        safety_days: cfg.raw.cache.global_settings.backup_retention_days,
        referenced,
    };
    // Type backups (tagged `type:T`) hold less than the regular backups beside them: the
    // policy applies to each set of types apart, as if `forget --tag` were run for each, so
    // that an hourly type backup never stands in for the day's regular backup.
    let mut sets: std::collections::BTreeMap<Vec<String>, Vec<_>> = Default::default();
    for s in all {
        let mut key: Vec<String> =
            s.1.tags
                .iter()
                .filter(|t| t.starts_with("type:"))
                .cloned()
                .collect();
        key.sort();
        sets.entry(key).or_default().push(s);
    }
    let mut doomed = Vec::new();
    for set in sets.values() {
        doomed.extend(forget::removals(&forget::plan(set, &rules)));
    }
    let forgotten: cachevault::id::IdSet = doomed.iter().copied().collect();
    let forget_step = |result: std::result::Result<Value, String>| Step {
        name: "forget",
        started: forget_started,
        seconds: forget_clock.elapsed().as_secs_f64(),
        bytes: 0,
        result,
    };
    if let Err(e) = prune::preflight_without(repo, &forgotten) {
        let e = anyhow::Error::from(e)
            .context("nothing was forgotten, because prune would refuse afterwards");
        steps(forget_step(Err(format!("{e:#}"))));
        return Err(e);
    }
    let r = forget::remove(repo, &doomed);
    if let Some(e) = r.error {
        let e = super::changed_before(
            e.into(),
            format!("forgot {} snapshot(s) before the error", r.removed.len()),
        );
        steps(forget_step(Err(format!("{e:#}"))));
        return Err(e);
    }
    steps(forget_step(Ok(json!({"forgotten": r.removed.len()}))));
    let prune_started = super::now();
    let prune_clock = std::time::Instant::now();
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
    });
    steps(Step {
        name: "prune",
        started: prune_started,
        seconds: prune_clock.elapsed().as_secs_f64(),
        bytes: pruned.as_ref().map_or(0, |p| -p.bytes_freed),
        result: match &pruned {
            Ok(p) => Ok(json!({"bytes_freed": p.bytes_freed})),
            Err(e) => Err(format!("{e:#}")),
        },
    });
    Ok((r.removed.len(), pruned?))
}

/// One step of a job, journaled on an entry of its own (`run-due:<name>`) beside the job's:
/// the optimization job's forget, prune and size-limit clear.
struct Step {
    name: &'static str,
    started: DateTime<FixedOffset>,
    seconds: f64,
    bytes: i64,
    result: std::result::Result<Value, String>,
}

/// The journal entry of one [`Step`].
fn step_entry(cfg: &Config, run: &Run, step: Step) -> JournalEntry {
    let (code, error, details) = match step.result {
        Ok(v) => (exit::OK, None, v),
        Err(e) => (exit::FAILED, Some(e), Value::Null),
    };
    JournalEntry {
        time: step.started,
        now: run.now_given.then_some(run.now),
        run_id: Some(run.id.clone()),
        operation: journal::job_operation(step.name),
        root: Some(cfg.root_text()),
        seconds: step.seconds,
        result: super::result_name(code).into(),
        exit_code: code,
        bytes: step.bytes,
        error,
        details: super::summarize(&details),
    }
}

/// Copies every complete backup of the config's root that `to` lacks (the new one, and any
/// an earlier failed copy left behind).
fn copy_job(ctx: &Ctx, repo: &Repository, cfg: &Config, to: &str) -> Result<Value> {
    let dst = Repository::open_at(to).with_context(|| {
        format!("opening the copy repository {to} (create it with `cachevault --repo {to} init`)")
    })?;
    let _lock = ctx.lock(&dst, LockKind::Shared, "run-due copy")?;
    let root = cfg.root_text();
    let ids: Vec<_> = snapshot::list(repo)?
        .snapshots
        .into_iter()
        .filter(|(_, m)| m.root == root && m.kind() == SnapshotKind::Backup && m.complete)
        .map(|(id, _)| id)
        .collect();
    let s = cachevault::copy::copy(repo, &dst, &ids, &NoProgress)?;
    Ok(
        json!({"to": to, "snapshots_copied": s.copied.len(), "blobs": s.blobs, "bytes_sent": s.bytes, "bytes_written": s.bytes_written}),
    )
}

/// The journal entry of one copy (`run-due:copy`, its destination in `details.to`).
fn copy_entry(
    cfg: &Config,
    run: &Run,
    to: &str,
    started: DateTime<FixedOffset>,
    seconds: f64,
    result: &Result<Value>,
) -> JournalEntry {
    let (code, error, details) = match result {
        Ok(summary) => (exit::OK, None, summary.clone()),
        Err(e) => (exit::FAILED, Some(format!("{e:#}")), json!({"to": to})),
    };
    JournalEntry {
        time: started,
        now: run.now_given.then_some(run.now),
        run_id: Some(run.id.clone()),
        operation: journal::job_operation("copy"),
        root: Some(cfg.root_text()),
        seconds,
        result: super::result_name(code).into(),
        exit_code: code,
        bytes: details
            .get("bytes_written")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        error,
        details: super::summarize(&details),
    }
}

/// What every job of one run shares.
struct Run {
    /// Links the jobs' journal entries to the run's.
    id: String,
    /// The time the jobs run for (`--now` or the clock).
    now: DateTime<FixedOffset>,
    /// Whether `now` came from `--now` (then journaled beside the wall clock).
    now_given: bool,
    /// `--load-average`.
    load_average: Option<f64>,
}

/// A run id: short, and unique enough across the runs of one repository (wall clock in
/// nanoseconds, process id, host).
fn run_id() -> String {
    let t = super::now();
    let seed = format!(
        "{}-{}-{}",
        t.timestamp_nanos_opt().unwrap_or_default(),
        std::process::id(),
        super::hostname()
    );
    cachevault::BlobId::of(seed.as_bytes()).to_hex()[..16].to_string()
}

/// The journal entry of one job: wall-clock start, `now` when `--now` was given, its result
/// (`ok`, `failed`, or `deferred` for a clear put off under load), bytes and scalar details.
fn job_entry(
    cfg: &Config,
    run: &Run,
    job: Job,
    started: DateTime<FixedOffset>,
    seconds: f64,
    result: &Result<(bool, Value)>,
) -> JournalEntry {
    let (code, error, details) = match result {
        Ok((true, summary)) => (exit::OK, None, summary.clone()),
        Ok((false, summary)) => (exit::DEFERRED, None, summary.clone()),
        Err(e) => (exit::FAILED, Some(format!("{e:#}")), Value::Null),
    };
    let neg = |v: Option<&Value>| -v.and_then(Value::as_i64).unwrap_or(0);
    let bytes = match job {
        Job::Backup | Job::TypeBackup => details
            .get("bytes_added")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        Job::Clearing => neg(details.get("bytes_freed")),
        Job::Validation => 0,
        // Repository bytes, as `forget --prune` journals them; the size-limit clear's cache
        // bytes are in the details.
        Job::Optimization => neg(details.get("prune_bytes_freed")),
    };
    JournalEntry {
        time: started,
        now: run.now_given.then_some(run.now),
        run_id: Some(run.id.clone()),
        operation: journal::job_operation(job.name()),
        root: Some(cfg.root_text()),
        seconds,
        result: super::result_name(code).into(),
        exit_code: code,
        bytes,
        error,
        details: super::summarize(&details),
    }
}

/// Runs one job; Ok((false, _)) when it chose not to run (a clear deferred under load).
fn run_job(repo: &Repository, cfg: &Config, d: &schedule::Due, run: &Run) -> Result<(bool, Value)> {
    let now = run.now;
    let utc: DateTime<Utc> = now.with_timezone(&Utc);
    match d.job {
        Job::Backup | Job::TypeBackup => {
            let mut tags = vec!["scheduled".to_string()];
            let (includes, types) = if d.job == Job::TypeBackup {
                tags.extend(d.types.iter().map(|t| format!("type:{t}")));
                let types = cfg.types_named(&d.types)?;
                (cfg.type_includes(&d.types)?, types)
            } else {
                cfg.regular_backup()
            };
            if includes.is_empty() && !cfg.own_frequency_types().is_empty() {
                // Every backed-up type has a frequency of its own and no state file lies
                // outside their folders: nothing is left for the regular backup.
                return Ok((
                    true,
                    json!({"snapshot": null, "note": "every backed-up type has its own backup_frequency"}),
                ));
            }
            let s = snapshot::create(
                repo,
                &SnapshotOptions {
                    root: cfg.root.clone(),
                    includes,
                    types,
                    kind: SnapshotKind::Backup,
                    tags,
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
            let s = clear_with(repo, cfg, strategy, run)?;
            Ok((!s.deferred, clear_summary(&s)))
        }
        Job::Validation => validation_job(repo, cfg, run),
        Job::Optimization => {
            let referenced = clear::referenced_snapshots(
                repo,
                utc,
                cfg.raw.cache.global_settings.backup_retention_days,
            )?;
            // Retention is all or nothing (nothing is forgotten when prune would refuse);
            // the size limits are enforced whatever happened to it.
            let mut record = |step: Step| {
                // A journal failure never changes the job's outcome.
                let _ = journal::record(repo, &step_entry(cfg, run, step));
            };
            let retention = apply_retention(repo, cfg, utc, referenced, &mut record);
            let sized_started = super::now();
            let sized_clock = std::time::Instant::now();
            let sized = clear_with(repo, cfg, Strategy::SizeBased, run);
            record(Step {
                name: "size_limits",
                started: sized_started,
                seconds: sized_clock.elapsed().as_secs_f64(),
                bytes: sized.as_ref().map_or(0, |c| -(c.bytes_freed as i64)),
                result: match &sized {
                    Ok(c) => Ok(clear_summary(c)),
                    Err(e) => Err(format!("{e:#}")),
                },
            });
            let sized = sized?;
            let (removed, pruned) = retention
                .with_context(|| format!("retention (size limits: {})", clear_summary(&sized)))?;
            // The same policy in every copy repository (snapshots of this root only).
            let mut copy_errors = Vec::new();
            let mut copies_forgotten = 0;
            for to in &cfg.copy_to {
                let r = (|| -> Result<usize> {
                    let dst = Repository::open_at(to)?;
                    let _lock = dst.lock(
                        LockKind::Exclusive,
                        "run-due optimization",
                        std::time::Duration::from_secs(60),
                        &mut |_| {},
                    )?;
                    Ok(apply_retention(&dst, cfg, utc, Default::default(), &mut |_| {})?.0)
                })();
                match r {
                    Ok(n) => copies_forgotten += n,
                    Err(e) => copy_errors.push(format!("retention in {to}: {e:#}")),
                }
            }
            if !copy_errors.is_empty() {
                return Err(super::changed_before(
                    anyhow!("{}", copy_errors.join("; ")),
                    format!(
                        "retention here forgot {removed} snapshot(s) and pruned; {copies_forgotten} forgotten in copies"
                    ),
                ));
            }
            // The journal keeps scalars only: the figures its readers need are repeated flat.
            Ok((
                true,
                json!({"forgotten": removed, "prune": pruned, "size_limits": clear_summary(&sized),
                       "copies_forgotten": copies_forgotten,
                       "prune_bytes_freed": pruned.bytes_freed,
                       "size_limits_clear_id": sized.clear_id,
                       "size_limits_bytes_freed": sized.bytes_freed,
                       "size_limits_snapshot": sized.snapshot.map(|i| i.to_hex()),
                       "size_limits_snapshot_bytes_added": sized.snapshot_bytes_added}),
            ))
        }
    }
}

fn clear_with(
    repo: &Repository,
    cfg: &Config,
    strategy: Strategy,
    run: &Run,
) -> Result<clear::ClearSummary> {
    let now = run.now;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = run.load_average.or_else(|| {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
    });
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
        "snapshot": s.snapshot.map(|i| i.to_hex()),
        "snapshot_bytes_added": s.snapshot_bytes_added,
        "deferred": s.deferred,
        "deferred_reason": s.deferred_reason,
        "done": s.done.len(),
        "skipped": s.skipped.len(),
        "bytes_freed": s.bytes_freed,
    })
}

/// Validates every cache file and journals the result as a `validate` operation (health reads
/// it). Invalid files fail the job, so the next run-due tries again.
fn validation_job(repo: &Repository, cfg: &Config, run: &Run) -> Result<(bool, Value)> {
    use cachevault::cache::validate::{self, ValidateOptions};
    let wall = super::now();
    let started = std::time::Instant::now();
    let r = validate::validate(cfg, &ValidateOptions::default(), &NoProgress)?;
    let summary = json!({"checked": r.checked, "invalid_count": r.invalid.len(), "ok": r.ok()});
    let entry = JournalEntry {
        root: Some(cfg.root_text()),
        time: wall,
        now: run.now_given.then_some(run.now),
        run_id: Some(run.id.clone()),
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
