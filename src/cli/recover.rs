//! `rebuild-index` and `repair-snapshots`: the commands that bring a damaged repository back.

use anyhow::Result;

use cachevault::recover::{self, RebuildOptions, RepairSnapshotsOptions};
use cachevault::LockKind;

use super::args::{RebuildIndexArgs, RepairSnapshotsArgs};
use super::{exit, Ctx, Outcome};

pub fn rebuild_index(ctx: &Ctx, a: &RebuildIndexArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Exclusive, "rebuild-index")?;
    let bars = ctx.progress();
    let s = recover::rebuild_index(
        &repo,
        &RebuildOptions {
            read_data: a.read_data,
            dry_run: a.dry_run,
        },
        &bars,
    )?;
    let verb = if a.dry_run { "would write" } else { "wrote" };
    let mut human = format!(
        "{} archives examined, {} indexes already right\n",
        s.archives, s.indexes_ok
    );
    for w in &s.indexes_written {
        human.push_str(&format!(
            "{verb} the index of archive {} ({} index, {} blobs)\n",
            &w.archive[..8],
            w.reason,
            w.blobs
        ));
    }
    for (file, to) in &s.indexes_set_aside {
        human.push_str(&format!(
            "set aside {file}: its archive is gone (moved to {to})\n"
        ));
    }
    for v in &s.salvaged {
        human.push_str(&format!(
            "archive {} is damaged: {} readable blob(s) {} into {}; {} blob(s) and {} byte(s) could not be read\n",
            &v.archive[..8],
            v.blobs_kept,
            if a.dry_run { "would be copied" } else { "copied" },
            if v.new_archives.is_empty() { "a new archive".to_string() } else { v.new_archives.iter().map(|n| n[..8].to_string()).collect::<Vec<_>>().join(", ") },
            v.blobs_lost.len(),
            v.bytes_lost
        ));
        for p in &v.problems {
            human.push_str(&format!("  {p}\n"));
        }
        for m in &v.moved_to {
            human.push_str(&format!("  moved to {m}\n"));
        }
    }
    if !s.salvaged.is_empty() {
        human.push_str(
            "snapshots that used the unreadable blobs: run `cachevault repair-snapshots --forget`\n",
        );
    }
    // Something could not be read: the repository is usable again, but data was lost.
    let code = if s.lost_anything() {
        exit::PARTIAL
    } else {
        exit::OK
    };
    Ok(Outcome::new(serde_json::to_value(&s)?, human, code))
}

pub fn repair_snapshots(ctx: &Ctx, a: &RepairSnapshotsArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Exclusive, "repair-snapshots")?;
    let s = recover::repair_snapshots(
        &repo,
        &RepairSnapshotsOptions {
            forget: a.forget,
            dry_run: a.dry_run,
        },
    )?;
    let mut human = format!(
        "{} snapshots examined, {} damaged\n",
        s.snapshots,
        s.repaired.len()
    );
    for r in &s.repaired {
        let short = r.original.trim_start_matches("snapshots/");
        let short = &short[..short.len().min(8)];
        match (&r.unrepairable, &r.repaired) {
            (Some(why), _) => human.push_str(&format!(
                "snapshot {short} cannot be repaired: {why}{}\n",
                if r.forgotten {
                    "; removed (moved into damaged/)"
                } else {
                    "; `--forget` or `cachevault forget ID` removes it"
                }
            )),
            (None, new) => {
                human.push_str(&format!(
                    "snapshot {short} ({}, {}): {} file(s) lost, {} restored from identical content{}{}\n",
                    r.kind.as_deref().unwrap_or("?"),
                    r.time.as_deref().unwrap_or("?"),
                    r.lost.len(),
                    r.substituted,
                    new.as_ref()
                        .map(|n| format!("; repaired as {}", &n[..8]))
                        .unwrap_or_else(|| " (dry run)".into()),
                    if r.forgotten { "; original removed" } else { "" }
                ));
                for p in r
                    .lost
                    .iter()
                    .take(if ctx.cli.verbose > 0 { usize::MAX } else { 10 })
                {
                    human.push_str(&format!("  lost: {p}\n"));
                }
                if r.lost.len() > 10 && ctx.cli.verbose == 0 {
                    human.push_str(&format!(
                        "  ... and {} more (-v lists all)\n",
                        r.lost.len() - 10
                    ));
                }
            }
        }
    }
    for id in &s.records_updated {
        human.push_str(&format!(
            "clear {id} now undoes from the repaired snapshot\n"
        ));
    }
    let lost = s
        .repaired
        .iter()
        .any(|r| !r.lost.is_empty() || r.unrepairable.is_some());
    let code = if lost { exit::PARTIAL } else { exit::OK };
    Ok(Outcome::new(serde_json::to_value(&s)?, human, code))
}
