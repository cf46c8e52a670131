//! `report`: gathers what the operator's report shows (statistics, health through the same
//! functions as `health`, snapshot headers, a dry-run retention plan, the journal), has the
//! library build and render it, and writes the HTML file or prints the JSON. run-due writes
//! it through [`write_html`].

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};

use cachevault::config::MAX_REPORT_DAYS;
use cachevault::forget::{self, ForgetRules, GroupBy};
use cachevault::health::{self as verdict, Thresholds};
use cachevault::report::{self, html, Report, ReportInput, RetentionInput};
use cachevault::stats::{self, Stats};
use cachevault::{clear, fsutil, Repository};

use super::args::ReportArgs;
use super::health;
use super::stats::now_or;
use super::{exit, Ctx, Outcome};

/// Mode of the HTML file: it is for people, and a web server may serve it.
const REPORT_MODE: u32 = 0o644;

pub fn report(ctx: &Ctx, a: &ReportArgs) -> Result<Outcome> {
    let now = now_or(&a.now)?;
    if !(1..=MAX_REPORT_DAYS).contains(&a.days) {
        bail!(
            "--days {}: expected a number of days from 1 to {MAX_REPORT_DAYS}",
            a.days
        );
    }
    let repo = ctx.open_repo()?;
    let started = std::time::Instant::now();
    let r = gather(ctx, &repo, now, a.days)?;
    let mut human = String::new();
    for (title, reading) in [
        ("Health", &r.health.reading),
        ("Cache", &r.cache.reading),
        ("Snapshots", &r.snapshots.reading),
        ("Repository", &r.storage.reading),
        ("Runs", &r.runs.reading),
    ] {
        human.push_str(&format!("{title}: {reading}\n"));
    }
    if let Some(path) = &a.html {
        write(&r, path)?;
        human.push_str(&format!(
            "report written to {} in {:.2} s\n",
            path.display(),
            started.elapsed().as_secs_f64()
        ));
    }
    // `--json` is the report itself: the data the page draws, nothing added.
    Ok(Outcome::new(serde_json::to_value(&r)?, human, exit::OK))
}

/// Builds the report of `repo` at `now` over the last `days` days.
pub fn gather(ctx: &Ctx, repo: &Repository, now: DateTime<Utc>, days: u32) -> Result<Report> {
    let gathered = health::gather(ctx, now);
    if let Some(e) = &gathered.repository_error {
        bail!("reading repository {}: {e}", repo.location());
    }
    let input = health::input(ctx, now, &gathered)?;
    let verdict = verdict::evaluate(&input, &Thresholds::default());
    let repository = stats::gather_repo_with(repo, &gathered.snapshots, now, None)
        .with_context(|| format!("measuring repository {}", repo.location()))?;
    let (cache_types, total) = match gathered.cache {
        Some((types, total)) => (types, Some(total)),
        None => (Default::default(), None),
    };
    let s = Stats {
        now,
        cache_types,
        total,
        repository: Some(repository),
    };
    // What `forget --config ... --dry-run` would decide now: the config's policy, its root.
    let mut plan = Vec::new();
    let mut retention = None;
    if let Some(cfg) = &ctx.config {
        let policy = forget::config_policy(cfg);
        if !policy.is_empty() {
            let root = cfg.root_text();
            let ours: Vec<_> = gathered
                .snapshots
                .iter()
                .filter(|(_, m)| m.root == root)
                .cloned()
                .collect();
            let safety_days = cfg.raw.cache.global_settings.backup_retention_days;
            plan = forget::plan(
                &ours,
                &ForgetRules {
                    policy: policy.clone(),
                    group_by: GroupBy {
                        host: true,
                        tags: false,
                    },
                    now,
                    safety_days,
                    referenced: clear::referenced_snapshots(repo, now, safety_days)?,
                },
            );
            retention = Some((policy.to_string(), safety_days));
        }
    }
    Ok(report::build(&ReportInput {
        now,
        days,
        config: ctx.config.as_ref(),
        root: ctx.config.as_ref().map(|c| c.root_text()),
        repository: ctx
            .repo_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        stats: &s,
        health: &verdict,
        snapshots: &gathered.snapshots,
        retention: retention.map(|(policy, safety_days)| RetentionInput {
            plan: &plan,
            policy,
            safety_days,
        }),
        journal: &gathered.journal,
    }))
}

fn write(r: &Report, path: &Path) -> Result<()> {
    let page = html::render(r);
    fsutil::write_atomic_with_mode(path, page.as_bytes(), REPORT_MODE)
        .with_context(|| format!("writing the report to {}", path.display()))
}

/// Builds the report and writes it to `path` (run-due's `cache.outputs.report_html`).
pub fn write_html(
    ctx: &Ctx,
    repo: &Repository,
    now: DateTime<Utc>,
    days: u32,
    path: &Path,
) -> Result<Report> {
    let r = gather(ctx, repo, now, days).map_err(|e| anyhow!("building the report: {e:#}"))?;
    write(&r, path)?;
    Ok(r)
}
