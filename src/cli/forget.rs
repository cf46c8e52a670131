//! `forget` and `prune`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use cachevault::forget::{self, ForgetRules, GroupBy};
use cachevault::prune::{self, PruneOptions, PruneSummary};
use cachevault::retention::{Duration, KeepPolicy};
use cachevault::{snapshot, BlobId, LockKind, Repository};

use super::args::{ForgetArgs, PruneArgs};
use super::{bytes, exit, parse_time, table, Ctx, Outcome};

fn duration(flag: &str, v: &Option<String>) -> Result<Option<Duration>> {
    v.as_ref()
        .map(|s| s.parse::<Duration>().with_context(|| format!("--{flag}")))
        .transpose()
}

fn policy_from_args(a: &ForgetArgs) -> Result<KeepPolicy> {
    let p = KeepPolicy {
        last: a.keep_last.unwrap_or(0),
        hourly: a.keep_hourly.unwrap_or(0),
        daily: a.keep_daily.unwrap_or(0),
        weekly: a.keep_weekly.unwrap_or(0),
        monthly: a.keep_monthly.unwrap_or(0),
        yearly: a.keep_yearly.unwrap_or(0),
        within: duration("keep-within", &a.keep_within)?,
        within_hourly: duration("keep-within-hourly", &a.keep_within_hourly)?,
        within_daily: duration("keep-within-daily", &a.keep_within_daily)?,
        within_weekly: duration("keep-within-weekly", &a.keep_within_weekly)?,
        within_monthly: duration("keep-within-monthly", &a.keep_within_monthly)?,
        within_yearly: duration("keep-within-yearly", &a.keep_within_yearly)?,
        tags: a
            .keep_tags
            .iter()
            .map(|t| KeepPolicy::parse_tag_list(t))
            .collect(),
    };
    p.validate()?;
    Ok(p)
}

pub fn parse_pct(flag: &str, s: &str) -> Result<f64> {
    s.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|v| (0.0..=100.0).contains(v))
        .map(|v| v / 100.0)
        .ok_or_else(|| anyhow!("{flag} {s:?}: expected a percentage between 0 and 100, e.g. 10%"))
}

pub fn forget(ctx: &Ctx, a: &ForgetArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let mut policy = policy_from_args(a)?;
    if !a.snapshots.is_empty() && !policy.is_empty() {
        bail!("forget takes snapshot ids or keep rules, not both: the ids are removed as named");
    }
    let by_id = !a.snapshots.is_empty();
    let mut source = "flags";
    if policy.is_empty() && !by_id {
        match &ctx.config {
            Some(cfg) => {
                policy = forget::config_policy(cfg);
                source = "config";
            }
            None => bail!(
                "no keep rule given (--keep-last, --keep-daily, ...) and no --config with a retention policy: refusing to remove every snapshot"
            ),
        }
        if policy.is_empty() {
            bail!("the config's retention policy keeps nothing: refusing to remove every snapshot");
        }
    }
    let group_by: GroupBy = a.group_by.parse()?;
    let now = match &a.now {
        Some(t) => parse_time("--now", t)?,
        None => super::now(),
    };
    let max_unused = parse_pct("--max-unused", &a.max_unused)?;
    let kind = if a.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = ctx.lock(&repo, kind, "forget")?;

    let mut human = String::new();
    let mut groups = Vec::new();
    let mut damaged = Vec::new();
    let to_remove: Vec<BlobId> = if by_id {
        let ids = forget::resolve_ids(&repo, &a.snapshots)?;
        human.push_str(&format!(
            "{} {} snapshot(s) by id: {}\n",
            if a.dry_run {
                "would remove"
            } else {
                "removing"
            },
            ids.len(),
            ids.iter().map(|i| i.short()).collect::<Vec<_>>().join(", ")
        ));
        ids
    } else {
        let (filter, _) = ctx.filter_typed(&a.filter, &a.types, "forget")?;
        let listing = snapshot::list(&repo)?;
        // A manifest that cannot be read is neither kept nor removed by a policy: its time
        // and kind are unknown. It is named, and `forget ID` removes it.
        for d in &listing.damaged {
            ctx.note(&format!(
                "damaged: {}: {}; left as it is (`cachevault forget ID` or `repair-snapshots --forget`)",
                d.file, d.error
            ));
        }
        damaged = listing.damaged;
        let all: Vec<_> = listing
            .snapshots
            .into_iter()
            .filter(|(_, m)| filter.matches(m))
            .collect();
        let utc_now = now.with_timezone(&chrono::Utc);
        let safety_days = match (a.safety_days, &ctx.config) {
            (Some(d), _) => d,
            (None, Some(c)) => c.raw.cache.global_settings.backup_retention_days,
            (None, None) => cachevault::config::GlobalSettings::default().backup_retention_days,
        };
        let rules = ForgetRules {
            policy: policy.clone(),
            group_by,
            now: utc_now,
            safety_days,
            referenced: cachevault::clear::referenced_snapshots(&repo, utc_now, safety_days)?,
        };
        let plan = forget::plan(&all, &rules);
        human.push_str(&format!(
            "applying policy ({source}): {policy}; safety snapshots kept {safety_days}d\n"
        ));
        for g in &plan {
            let (keep, remove): (Vec<_>, Vec<_>) = g.decisions.iter().partition(|d| d.keep);
            groups.push(json!({
                "group": g.key,
                "keep": keep.iter().map(|d| json!({"id": d.id, "time": d.time.to_rfc3339(), "reasons": d.reasons})).collect::<Vec<_>>(),
                "remove": remove.iter().map(|d| json!({"id": d.id, "time": d.time.to_rfc3339()})).collect::<Vec<_>>(),
            }));
            human.push_str(&group_text(&g.key.to_string(), &keep, &remove, a.dry_run));
        }
        forget::removals(&plan)
    };

    // All or nothing: with --prune, prove first that prune will be able to run on what is
    // left; if it would refuse, nothing is forgotten.
    if a.prune {
        let forgotten: cachevault::id::IdSet = to_remove.iter().copied().collect();
        prune::preflight_without(&repo, &forgotten).context(
            "forget --prune: nothing was forgotten, because prune would refuse afterwards",
        )?;
    }
    let removed = if a.dry_run {
        Vec::new()
    } else {
        let r = forget::remove(&repo, &to_remove);
        if let Some(e) = r.error {
            return Err(super::changed_before(
                anyhow::Error::from(e),
                format!(
                    "forget removed {} of {} snapshot(s) before the error: {}",
                    r.removed.len(),
                    to_remove.len(),
                    ids_text(&r.removed)
                ),
            ));
        }
        r.removed
    };
    let mut doc = json!({
        "groups": groups,
        "dry_run": a.dry_run,
        "removed": removed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "damaged": damaged,
    });
    if by_id {
        doc["would_remove"] = json!(to_remove.iter().map(|i| i.to_hex()).collect::<Vec<_>>());
    }
    if a.prune {
        let s = run_prune(ctx, &repo, max_unused, a.dry_run).map_err(|e| {
            if removed.is_empty() {
                e
            } else {
                super::changed_before(
                    e,
                    format!(
                        "forget removed {} snapshot(s) ({}) before prune failed",
                        removed.len(),
                        ids_text(&removed)
                    ),
                )
            }
        })?;
        human.push_str(&prune_text(&s));
        doc["prune"] = serde_json::to_value(&s)?;
    }
    let code = if damaged.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    };
    Ok(Outcome::new(doc, human, code))
}

fn ids_text(ids: &[BlobId]) -> String {
    ids.iter().map(|i| i.short()).collect::<Vec<_>>().join(", ")
}

fn group_text(
    title: &str,
    keep: &[&cachevault::retention::Decision],
    remove: &[&cachevault::retention::Decision],
    dry_run: bool,
) -> String {
    let mut human = format!("\n{title}:\n");
    let rows: Vec<Vec<String>> = keep
        .iter()
        .map(|d| {
            vec![
                d.id[..8].to_string(),
                d.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                d.reasons.join(", "),
            ]
        })
        .collect();
    human.push_str(&format!(
        "keep {} snapshots:\n{}",
        keep.len(),
        table(&["ID", "Time", "Reasons"], &rows)
    ));
    if !remove.is_empty() {
        let rows: Vec<Vec<String>> = remove
            .iter()
            .map(|d| {
                vec![
                    d.id[..8].to_string(),
                    d.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]
            })
            .collect();
        human.push_str(&format!(
            "{} {} snapshots:\n{}",
            if dry_run { "would remove" } else { "removed" },
            remove.len(),
            table(&["ID", "Time"], &rows)
        ));
    }
    human
}

fn run_prune(ctx: &Ctx, repo: &Repository, max_unused: f64, dry_run: bool) -> Result<PruneSummary> {
    let bars = ctx.progress();
    Ok(prune::prune(
        repo,
        &PruneOptions {
            max_unused,
            dry_run,
        },
        &bars,
    )?)
}

fn prune_text(s: &PruneSummary) -> String {
    format!(
        "{}: {} archives deleted, {} repacked into {}, {} leftovers removed, {} unused blobs dropped, {} freed\n",
        if s.dry_run { "prune (dry run)" } else { "prune" },
        s.archives_deleted,
        s.archives_repacked,
        s.archives_written,
        s.leftovers_removed,
        s.blobs_removed,
        bytes(s.bytes_freed.max(0) as u64)
    )
}

pub fn prune(ctx: &Ctx, a: &PruneArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let max_unused = parse_pct("--max-unused", &a.max_unused)?;
    let kind = if a.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = ctx.lock(&repo, kind, "prune")?;
    let s = run_prune(ctx, &repo, max_unused, a.dry_run)?;
    Ok(Outcome::new(
        serde_json::to_value(&s)?,
        prune_text(&s),
        exit::OK,
    ))
}
