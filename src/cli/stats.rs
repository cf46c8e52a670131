//! `stats`: per cache type and repository statistics as a table, JSON, or a node_exporter
//! textfile.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Local, Utc};

use cachevault::stats::{self, Stats};
use cachevault::{fsutil, Error};
use cachevault::{health, metrics};

use super::args::StatsArgs;
use super::{bytes, exit, parse_time, table, Ctx, Outcome};

/// Mode of the metrics file: node_exporter usually runs as another user and must read it.
const PROMETHEUS_MODE: u32 = 0o644;

/// Whether the error says the repository has not been created.
pub fn is_not_a_repository(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::NotARepository(_))))
}

/// The time to compute for: `--now`, or the clock.
pub fn now_or(flag: &Option<String>) -> Result<DateTime<Utc>> {
    Ok(match flag {
        Some(t) => parse_time("--now", t)?,
        None => super::now(),
    }
    .with_timezone(&Utc))
}

fn local(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

fn ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

pub fn stats(ctx: &Ctx, a: &StatsArgs) -> Result<Outcome> {
    let now = now_or(&a.now)?;
    if a.this_root && ctx.config.is_none() {
        anyhow::bail!("--this-root needs --config FILE: the root is the config's");
    }
    let (cache_types, total) = match &ctx.config {
        Some(cfg) => {
            let (types, total) = stats::cache_stats(cfg, now);
            (types, Some(total))
        }
        None => (BTreeMap::new(), None),
    };
    let repository = match ctx.open_repo() {
        Ok(repo) => Some(
            stats::gather_repo(
                &repo,
                now,
                ctx.config
                    .as_ref()
                    .filter(|_| a.this_root)
                    .map(|c| c.root_text())
                    .as_deref(),
            )
            .with_context(|| format!("measuring repository {}", repo.location()))?,
        ),
        // Cache statistics are worth having before the repository exists.
        Err(e) if ctx.config.is_some() && is_not_a_repository(&e) => {
            ctx.note(&format!("{e:#}: repository statistics left out"));
            None
        }
        Err(e) => return Err(e),
    };
    let s = Stats {
        now,
        cache_types,
        total,
        repository,
    };
    let mut code = exit::OK;
    for (name, t) in &s.cache_types {
        for e in &t.errors {
            ctx.note(&format!("warning: {name}: {e}"));
            code = exit::PARTIAL;
        }
    }
    let mut doc = serde_json::to_value(&s)?;
    let mut human = render(ctx, &s);
    if let Some(path) = &a.prometheus {
        write_metrics(ctx, &s, path)?;
        doc["prometheus"] = serde_json::json!(path);
        human.push_str(&format!("metrics written to {}\n", path.display()));
    }
    Ok(Outcome::new(doc, human, code))
}

/// The metrics file of `s`, with health's verdict at `s.now` and the journal's families,
/// written atomically (temp file, fsync, rename) and world-readable.
pub fn write_metrics(ctx: &Ctx, s: &Stats, path: &std::path::Path) -> Result<()> {
    let gathered = super::health::gather(ctx, s.now);
    let report = super::health::input(ctx, s.now, &gathered)
        .map(|i| health::evaluate(&i, &health::Thresholds::default()))
        .ok();
    let text = metrics::render(s, report.as_ref(), &gathered.journal);
    fsutil::write_atomic_with_mode(path, text.as_bytes(), PROMETHEUS_MODE)
        .with_context(|| format!("writing metrics to {}", path.display()))
}

/// Statistics of the config's cache types and of the whole repository at `now`, as `stats`
/// gathers them without flags.
pub fn gather(ctx: &Ctx, now: DateTime<Utc>) -> Result<Stats> {
    let (cache_types, total) = match &ctx.config {
        Some(cfg) => {
            let (types, total) = stats::cache_stats(cfg, now);
            (types, Some(total))
        }
        None => (BTreeMap::new(), None),
    };
    let repo = ctx.open_repo()?;
    let repository = Some(
        stats::gather_repo(&repo, now, None)
            .with_context(|| format!("measuring repository {}", repo.location()))?,
    );
    Ok(Stats {
        now,
        cache_types,
        total,
        repository,
    })
}

fn render(ctx: &Ctx, s: &Stats) -> String {
    let mut out = String::new();
    if !s.cache_types.is_empty() {
        let mut rows: Vec<Vec<String>> = s
            .cache_types
            .iter()
            .map(|(name, t)| {
                let past_ttl = if t.ttl_hours < 0 {
                    "never expires".to_string()
                } else {
                    format!("{} ({}h)", t.past_ttl, t.ttl_hours)
                };
                vec![
                    name.clone(),
                    if t.exists {
                        t.files.to_string()
                    } else {
                        "no folder".into()
                    },
                    bytes(t.bytes),
                    bytes(t.limit_bytes),
                    format!(
                        "{:.1}%{}",
                        t.used_pct,
                        if t.over_limit { " OVER" } else { "" }
                    ),
                    t.oldest.as_ref().map(local).unwrap_or_else(|| "-".into()),
                    t.newest.as_ref().map(local).unwrap_or_else(|| "-".into()),
                    past_ttl,
                ]
            })
            .collect();
        if let Some(total) = &s.total {
            let types = s.cache_types.values();
            rows.push(vec![
                "total".into(),
                total.files.to_string(),
                bytes(total.bytes),
                bytes(total.limit_bytes),
                format!(
                    "{:.1}%{}",
                    total.used_pct,
                    if total.over_limit { " OVER" } else { "" }
                ),
                types
                    .clone()
                    .filter_map(|t| t.oldest)
                    .min()
                    .as_ref()
                    .map(local)
                    .unwrap_or_else(|| "-".into()),
                types
                    .clone()
                    .filter_map(|t| t.newest)
                    .max()
                    .as_ref()
                    .map(local)
                    .unwrap_or_else(|| "-".into()),
                types.map(|t| t.past_ttl).sum::<u64>().to_string(),
            ]);
        }
        out.push_str(&table(
            &[
                "Cache type",
                "Files",
                "Size",
                "Limit",
                "Used",
                "Oldest",
                "Newest",
                "Past TTL",
            ],
            &rows,
        ));
    }
    if let Some(r) = &s.repository {
        if !out.is_empty() {
            out.push('\n');
        }
        let path = ctx
            .repo_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let when = |l: &Option<stats::LastSnapshot>| {
            l.as_ref()
                .map(|l| {
                    format!(
                        "{} ({})",
                        l.time.format("%Y-%m-%d %H:%M:%S %:z"),
                        l.id.short()
                    )
                })
                .unwrap_or_else(|| "none".into())
        };
        let mut windows: Vec<_> = r.growth.values().collect();
        windows.sort_by_key(|g| g.days);
        let growth: Vec<String> = windows
            .iter()
            .map(|g| {
                format!(
                    "{}/day over {} days ({} snapshots)",
                    bytes(g.bytes_per_day.round() as u64),
                    g.days,
                    g.snapshots
                )
            })
            .collect();
        let rows = vec![
            vec!["snapshots".into(), r.snapshots.to_string()],
            vec!["last backup".into(), when(&r.last_backup)],
            vec!["last pre-clear snapshot".into(), when(&r.last_pre_clear)],
            vec!["last snapshot (any kind)".into(), when(&r.last_snapshot)],
            vec![
                "stored on disk".into(),
                format!(
                    "{} (archives {}, index {}, manifests {})",
                    bytes(r.stored_bytes),
                    bytes(r.stored.archives),
                    bytes(r.stored.index),
                    bytes(r.stored.snapshots)
                ),
            ],
            vec![
                "before dedup and compression".into(),
                bytes(r.bytes_before_dedup),
            ],
            vec![
                "after dedup".into(),
                format!(
                    "{} (+ {} of entry lists)",
                    bytes(r.unique_bytes),
                    bytes(r.entry_list_bytes)
                ),
            ],
            vec!["dedup ratio".into(), ratio(r.dedup_ratio)],
            vec!["compression ratio".into(), ratio(r.compression_ratio)],
            vec!["overall ratio".into(), ratio(r.total_ratio)],
            vec!["growth".into(), growth.join(", ")],
        ];
        out.push_str(&format!(
            "repository {path}\n{}",
            table(&["Repository", "Value"], &rows)
        ));
    }
    out
}
