//! `clear`, `undo` and `warm`.

use anyhow::{Context, Result};
use serde_json::json;

use cachevault::clear::{self, Action, ClearOptions, Strategy};
use cachevault::config::Config;
use cachevault::operation::{self, UndoOptions, UndoSummary};
use cachevault::LockKind;

use super::args::{ClearArgs, UndoArgs, WarmArgs};
use super::{bytes, exit, parse_time, table, Ctx, Outcome};

fn config(ctx: &Ctx, what: &str) -> Result<Config> {
    ctx.need_config(what, "it is the config that says what each cache type is")
        .cloned()
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

fn put_back_outcome(s: &UndoSummary, verb: &str, ctx: &Ctx) -> Outcome {
    let code = if !s.errors.is_empty() {
        exit::CORRUPT
    } else if !s.lost.is_empty() || s.unresolved > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    };
    let mut human = String::new();
    if s.dry_run {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (what, list) in [
            ("overwrite", &s.overwrite),
            ("create", &s.create),
            ("remove", &s.remove),
        ] {
            rows.extend(list.iter().map(|p| vec![what.to_string(), p.clone()]));
        }
        if !rows.is_empty() {
            human.push_str(&table(&["Would", "Path"], &rows));
        }
    }
    let shown = if ctx.cli.verbose > 0 { usize::MAX } else { 20 };
    for c in s.conflicts.iter().take(shown) {
        human.push_str(&format!(
            "{}: {} ({})\n",
            if s.unresolved > 0 {
                "left alone"
            } else {
                "overwritten"
            },
            c.path,
            c.reason
        ));
    }
    if s.conflicts.len() > shown {
        human.push_str(&format!(
            "... and {} more (-v lists all)\n",
            s.conflicts.len() - shown
        ));
    }
    human.push_str(&format!(
        "{verb} {} {}: {} restored (verified), {} removed, {} already in place, {} conflicts{}{}{}{}\n",
        s.operation,
        s.clear_id,
        if s.dry_run { s.overwrite.len() + s.create.len() } else { s.restored.len() },
        if s.dry_run { s.remove.len() } else { s.removed.len() },
        s.already.len(),
        s.conflicts.len(),
        if s.unresolved > 0 && !s.dry_run {
            " (left as they are: `--force` overwrites them after a safety snapshot)"
        } else {
            ""
        },
        if s.lost.is_empty() {
            String::new()
        } else {
            format!(
                ", {} lost (their data was lost from the repository; see repair-snapshots)",
                s.lost.len()
            )
        },
        s.safety_snapshot
            .as_ref()
            .map(|id| format!(
                "; what it replaced is in pre-restore snapshot {} (undo {} reverts it)",
                &id[..8],
                s.undo_id.clone().unwrap_or_default()
            ))
            .unwrap_or_default(),
        if s.errors.is_empty() {
            String::new()
        } else {
            format!(", {} FAILED: {}", s.errors.len(), s.errors.join("; "))
        }
    ));
    Outcome::new(
        serde_json::to_value(s).expect("summary serialises"),
        human,
        code,
    )
}

pub fn undo(ctx: &Ctx, a: &UndoArgs) -> Result<Outcome> {
    let cfg = config(ctx, "undo")?;
    let repo = ctx.open_repo()?;
    let root = cfg.root_text();
    if a.list {
        return list_operations(&repo, &root);
    }
    let kind = if a.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = ctx.lock(&repo, kind, "undo")?;
    let record = operation::find_record(&repo, a.clear_id.as_deref(), Some(&root), None)?;
    let bars = ctx.progress();
    let s = operation::undo(
        &repo,
        &cfg.root,
        &record,
        &UndoOptions {
            only: None,
            force: a.force,
            dry_run: a.dry_run,
            now: Some(super::now()),
            hostname: super::hostname(),
            types: cfg.type_folders(),
        },
        &bars,
    )
    .with_context(|| format!("undoing {} {}", record.operation, record.id))?;
    Ok(put_back_outcome(
        &s,
        if a.dry_run { "would undo" } else { "undid" },
        ctx,
    ))
}

/// `undo --list`: the operations of this root that can be undone, newest first.
fn list_operations(repo: &cachevault::Repository, root: &str) -> Result<Outcome> {
    let all: Vec<_> = operation::records(repo)?
        .into_iter()
        .rev()
        .filter(|r| operation::same_root(&r.root, root))
        .collect();
    let docs: Vec<_> = all
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "operation": r.operation,
                "strategy": r.strategy,
                "time": r.time.to_rfc3339(),
                "snapshot": r.snapshot.map(|s| s.to_hex()),
                "files": r.done.as_ref().map_or(r.planned.len(), Vec::len),
                "finished": r.done.is_some(),
                "undone_by": r.undone_by,
            })
        })
        .collect();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                format!("{} {}", r.operation, r.strategy),
                r.done
                    .as_ref()
                    .map_or(r.planned.len(), Vec::len)
                    .to_string(),
                match (&r.undone_by, r.done.is_some()) {
                    (Some(u), _) => format!("undone ({u})"),
                    (None, true) => "undoable".into(),
                    (None, false) => "interrupted; undoable".into(),
                },
            ]
        })
        .collect();
    let human = format!(
        "{}{} operations of {root}, newest first; `undo` takes the newest undoable one\n",
        table(&["Id", "Time", "Operation", "Files", "State"], &rows),
        all.len()
    );
    Ok(Outcome::new(json!({"operations": docs}), human, exit::OK))
}

pub fn warm(ctx: &Ctx, a: &WarmArgs) -> Result<Outcome> {
    let cfg = config(ctx, "warm")?;
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Exclusive, "warm")?;
    let record = operation::find_record(
        &repo,
        a.from.as_deref(),
        Some(&cfg.root_text()),
        Some("clear"),
    )?;
    let chosen = operation::warm_selection(
        &cfg.raw.cache.strategies.clearing.warm_priority,
        &record,
        a.top,
    );
    let bars = ctx.progress();
    // Warming never overwrites: a file the agent already fetched again is newer than ours,
    // and is left as a conflict.
    let s = operation::undo(
        &repo,
        &cfg.root,
        &record,
        &UndoOptions {
            only: Some(chosen),
            force: false,
            dry_run: false,
            now: Some(super::now()),
            hostname: super::hostname(),
            types: cfg.type_folders(),
        },
        &bars,
    )?;
    let mut out = put_back_outcome(&s, "warmed from", ctx);
    // Files fetched again since are expected when warming, not a problem.
    if out.code == exit::PARTIAL && s.lost.is_empty() {
        out.code = exit::OK;
    }
    Ok(out)
}
