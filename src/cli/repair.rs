//! `repair`.

use anyhow::{Context, Result};

use cachevault::cache::repair::{self, RepairOptions};
use cachevault::LockKind;

use super::args::RepairArgs;
use super::{exit, table, Ctx, Outcome};

pub fn repair(ctx: &Ctx, a: &RepairArgs) -> Result<Outcome> {
    let cfg = ctx.need_config(
        "repair",
        "the cache root, the cache types, their schemas and the quarantine folder come from it",
    )?;
    let repo = ctx.open_repo()?;
    // Repair rewrites and moves files of the cache tree: no snapshot of it may interleave.
    // A dry run changes nothing and only reads the repository.
    let kind = if a.dry_run {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let _lock = ctx.lock(&repo, kind, "repair")?;
    let opts = RepairOptions {
        types: a.types.clone(),
        dry_run: a.dry_run,
        force: a.force,
        now: super::now(),
        hostname: super::hostname(),
    };
    let bars = ctx.progress();
    let s = repair::repair(&repo, cfg, &opts, &bars)
        .with_context(|| format!("repairing {}", cfg.root.display()))?;
    for w in &s.warnings {
        ctx.note(&format!("warning: {w}"));
    }
    for e in &s.errors {
        ctx.note(&format!("not readable, not validated: {e}"));
    }
    let code = if s.ok() { exit::OK } else { exit::PARTIAL };
    let mut doc = serde_json::to_value(&s)?;
    doc["repaired_count"] = s.repaired.len().into();
    doc["quarantined_count"] = s.quarantined.len().into();
    doc["failed_count"] = s.failed.len().into();

    let (repaired, quarantined) = if a.dry_run {
        ("would repair", "would quarantine")
    } else {
        ("repaired", "quarantined")
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &s.repaired {
        rows.push(vec![
            repaired.into(),
            r.path.display(),
            r.reason.to_string(),
            format!(
                "from snapshot {} ({})",
                r.from_snapshot.short(),
                r.snapshot_time.format("%Y-%m-%d %H:%M:%S")
            ),
        ]);
    }
    for q in &s.quarantined {
        rows.push(vec![
            quarantined.into(),
            q.path.display(),
            q.reason.to_string(),
            format!(
                "no valid version in any snapshot; -> {}",
                q.quarantine_path.display()
            ),
        ]);
    }
    for f in &s.failed {
        rows.push(vec![
            "FAILED".into(),
            f.path.display(),
            f.reason.to_string(),
            f.error.clone(),
        ]);
    }
    let mut human = String::new();
    if !rows.is_empty() {
        human.push_str(&table(&["Action", "Path", "Reason", "Detail"], &rows));
    }
    let invalid = s.repaired.len() + s.quarantined.len() + s.failed.len();
    human.push_str(&format!(
        "checked {} files: {}\n",
        s.checked,
        if invalid == 0 {
            "all valid, nothing to repair".to_string()
        } else {
            format!(
                "{invalid} invalid, {} {repaired}, {} {quarantined}{}",
                s.repaired.len(),
                s.quarantined.len(),
                if s.failed.is_empty() {
                    String::new()
                } else {
                    format!(", {} FAILED (left as they were)", s.failed.len())
                }
            )
        }
    ));
    for w in &s.suspected_changes {
        human.push_str(&format!("warning (repaired anyway, --force): {w}\n"));
    }
    if !s.skipped.is_empty() {
        human.push_str(&format!(
            "{} file(s) changed after the pre-repair snapshot and were left alone\n",
            s.skipped.len()
        ));
    }
    if let (Some(id), Some(snap)) = (&s.operation_id, &s.safety_snapshot) {
        human.push_str(&format!(
            "what repair replaced or moved is in pre-repair snapshot {}: `cachevault undo {id}` puts it back\n",
            snap.short()
        ));
    }
    let code = if s.ok() && s.skipped.is_empty() {
        code
    } else {
        exit::PARTIAL
    };
    Ok(Outcome::new(doc, human, code))
}
