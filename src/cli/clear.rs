//! `clear`, `undo` and `warm`.

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use cachevault::clear::{self, Action, ClearOptions, Strategy};
use cachevault::config::Config;
use cachevault::LockKind;

use super::args::{ClearArgs, UndoArgs, WarmArgs};
use super::{bytes, exit, parse_time, table, Ctx, Outcome};

fn config(ctx: &Ctx, what: &str) -> Result<Config> {
    ctx.config
        .clone()
        .ok_or_else(|| anyhow!("{what} needs --config FILE (or CACHEVAULT_CONFIG): it is the config that says what each cache type is"))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn clear(ctx: &Ctx, a: &ClearArgs) -> Result<Outcome> {
    let cfg = config(ctx, "clear")?;
    let repo = ctx.open_repo()?;
    let name = a
        .strategy
        .clone()
        .unwrap_or_else(|| cfg.raw.cache.strategies.clearing.default.clone());
    let strategy: Strategy = name.parse().context(if a.strategy.is_some() {
        "--strategy"
    } else {
        "cache.strategies.clearing.default"
    })?;
    let now = match &a.now {
        Some(t) => parse_time("--now", t)?,
        None => super::now(),
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = a.load_average.or_else(load_average).map(|l| (l, cores));
    let opts = ClearOptions {
        strategy,
        types: a.types.clone(),
        now,
        hostname: super::hostname(),
        dry_run: a.dry_run,
        load,
    };
    let kind = if a.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = ctx.lock(&repo, kind, "clear")?;
    let bars = ctx.progress();
    let s = clear::run(&repo, &cfg, &opts, &bars)
        .with_context(|| format!("clear --strategy {name}: nothing was deleted"))?;
    for w in &s.plan.warnings {
        ctx.note(&format!("warning: {w}"));
    }
    let list = |kind: &str| -> Vec<serde_json::Value> {
        s.plan
            .actions
            .iter()
            .filter(|x| matches!((kind, x), ("delete", Action::Delete { .. }) | ("rewrite", Action::Rewrite { .. })))
            .filter(|x| s.dry_run || s.done.contains(&x.file().path))
            .map(|x| {
                let f = x.file();
                let reason = match x {
                    Action::Delete { reason, .. } | Action::Rewrite { reason, .. } => reason,
                };
                json!({"path": f.path, "cache_type": f.cache_type, "size": f.size, "reason": reason})
            })
            .collect()
    };
    let deleted = list("delete");
    let rewritten = list("rewrite");
    let doc = json!({
        "clear_id": s.clear_id,
        "strategy": strategy.name(),
        "types": s.types,
        "snapshot": s.snapshot.map(|i| i.to_hex()),
        "snapshot_bytes_added": s.snapshot_bytes_added,
        "dry_run": s.dry_run,
        "deferred": s.deferred,
        "deferred_reason": s.deferred_reason,
        "deleted": deleted,
        "rewritten": rewritten,
        "skipped": s.skipped,
        "bytes_freed": s.bytes_freed,
        "warnings": s.plan.warnings,
    });
    let code = if s.deferred {
        exit::DEFERRED
    } else if s.skipped.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    };
    let human = if s.deferred {
        format!(
            "clear deferred: {}\n",
            s.deferred_reason.clone().unwrap_or_default()
        )
    } else {
        let rows: Vec<Vec<String>> = s
            .plan
            .actions
            .iter()
            .take(if ctx.cli.verbose > 0 { usize::MAX } else { 20 })
            .map(|x| {
                let f = x.file();
                let (what, reason) = match x {
                    Action::Delete { reason, .. } => ("delete", reason),
                    Action::Rewrite { reason, .. } => ("rewrite", reason),
                };
                vec![
                    what.to_string(),
                    f.cache_type.clone(),
                    bytes(f.size),
                    f.path.clone(),
                    reason.clone(),
                ]
            })
            .collect();
        let mut h = if rows.is_empty() {
            String::from("nothing to clear\n")
        } else {
            table(&["Action", "Type", "Size", "Path", "Reason"], &rows)
        };
        if s.plan.actions.len() > rows.len() {
            h.push_str(&format!(
                "... and {} more (-v lists all)\n",
                s.plan.actions.len() - rows.len()
            ));
        }
        h.push_str(&format!(
            "{} {}: {} deleted, {} rewritten, {} left (changed since the snapshot), {} freed{}\n",
            if s.dry_run { "would clear" } else { "cleared" },
            strategy.name(),
            deleted.len(),
            rewritten.len(),
            s.skipped.len(),
            bytes(s.bytes_freed),
            s.clear_id
                .as_ref()
                .map(|i| format!("; clear id {i} (undo with `cachevault undo {i}`)"))
                .unwrap_or_default()
        ));
        h
    };
    Ok(Outcome::new(doc, human, code))
}

fn put_back_outcome(s: &clear::PutBackSummary, verb: &str) -> Outcome {
    let code = if s.errors.is_empty() {
        exit::OK
    } else {
        exit::CORRUPT
    };
    let human = format!(
        "{verb} clear {}: {} restored (verified), {} already in place, {} conflicts{}\n",
        s.clear_id,
        s.restored.len(),
        s.already.len(),
        s.conflicts.len(),
        if s.errors.is_empty() {
            String::new()
        } else {
            format!(", {} FAILED: {}", s.errors.len(), s.errors.join("; "))
        }
    );
    Outcome::new(
        serde_json::to_value(s).expect("summary serialises"),
        human,
        code,
    )
}

pub fn undo(ctx: &Ctx, a: &UndoArgs) -> Result<Outcome> {
    let cfg = config(ctx, "undo")?;
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Exclusive, "undo")?;
    let record = clear::find_record(&repo, a.clear_id.as_deref(), Some(&cfg.root_text()))?;
    let bars = ctx.progress();
    let s = clear::put_back(&repo, &cfg, &record, None, a.force, &bars)
        .with_context(|| format!("undoing clear {}", record.id))?;
    Ok(put_back_outcome(&s, "undid"))
}

pub fn warm(ctx: &Ctx, a: &WarmArgs) -> Result<Outcome> {
    let cfg = config(ctx, "warm")?;
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Exclusive, "warm")?;
    let record = clear::find_record(&repo, a.from.as_deref(), Some(&cfg.root_text()))?;
    let chosen = clear::warm_selection(&cfg, &record, a.top);
    let bars = ctx.progress();
    // Warming never overwrites: a file the agent already fetched again is newer than ours.
    let s = clear::put_back(&repo, &cfg, &record, Some(&chosen), false, &bars);
    let s = match s {
        Ok(s) => s,
        Err(_) => {
            // Some chosen files were re-created since the clear: warm the others.
            let free: Vec<String> = chosen
                .into_iter()
                .filter(|p| !cfg.root.join(p).exists())
                .collect();
            clear::put_back(&repo, &cfg, &record, Some(&free), false, &bars)?
        }
    };
    Ok(put_back_outcome(&s, "warmed from"))
}
