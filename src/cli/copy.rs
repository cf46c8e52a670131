//! `copy` (snapshots from another repository) and `unlock` (locks nobody holds).

use anyhow::{Context, Result};
use serde_json::json;

use cachevault::manifest::SnapshotKind;
use cachevault::{snapshot, BlobId, LockKind, Repository};

use super::args::{CopyArgs, UnlockArgs};
use super::{bytes, exit, Ctx, Outcome};

pub fn copy(ctx: &Ctx, a: &CopyArgs) -> Result<Outcome> {
    let dst_location = ctx.repo_location()?;
    if a.from_repo == dst_location {
        anyhow::bail!("--from-repo {:?} is the repository itself", a.from_repo);
    }
    let src = Repository::open_at_as(&a.from_repo, cachevault::crypto::Role::From)
        .with_context(|| format!("opening the source repository {}", a.from_repo))?;
    let dst = ctx.open_repo()?;
    let _src_lock = ctx.lock(&src, LockKind::Shared, "copy (source)")?;
    let _dst_lock = ctx.lock(&dst, LockKind::Shared, "copy")?;

    // Which snapshots: those named, else every one the filters keep (by default every
    // complete backup), oldest first.
    let ids = if a.snapshots.is_empty() {
        let mut filter = ctx.filter(&a.filter, false)?;
        let default_kinds = filter.kinds.is_empty();
        if default_kinds {
            filter.kinds = vec![SnapshotKind::Backup];
        }
        let listing = snapshot::list(&src)?;
        for d in &listing.damaged {
            ctx.note(&format!(
                "warning: source manifest {} cannot be read, not copied: {}",
                d.file, d.error
            ));
        }
        listing
            .snapshots
            .into_iter()
            .filter(|(_, m)| filter.matches(m) && (!default_kinds || m.complete))
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
    } else {
        a.snapshots
            .iter()
            .map(|s| snapshot::resolve(&src, s).with_context(|| format!("snapshot {s:?}")))
            .collect::<Result<Vec<_>>>()?
    };
    if a.dry_run {
        let have: std::collections::HashSet<_> = dst.list_manifests()?.0.into_iter().collect();
        let (there, to_copy): (Vec<&BlobId>, Vec<&BlobId>) =
            ids.iter().partition(|id| have.contains(id));
        let human = format!(
            "would copy {} snapshot(s) from {} to {dst_location} ({} already there)\n{}",
            to_copy.len(),
            a.from_repo,
            there.len(),
            to_copy
                .iter()
                .map(|id| format!("  {}\n", id.short()))
                .collect::<String>()
        );
        return Ok(Outcome::new(
            json!({
                "dry_run": true,
                "from": a.from_repo,
                "to": dst_location,
                "would_copy": to_copy,
                "already_there": there,
            }),
            human,
            exit::OK,
        ));
    }
    let bars = ctx.progress();
    let started = super::now();
    let s = cachevault::copy::copy(&src, &dst, &ids, &bars)?;
    // The source's journal says where its snapshots went (health judges copies by it); the
    // destination's records the copy as its own operation.
    let entry = cachevault::journal::JournalEntry {
        time: started,
        now: None,
        run_id: None,
        operation: "copy".into(),
        root: None,
        seconds: s.seconds,
        result: "ok".into(),
        exit_code: exit::OK,
        bytes: s.bytes_written as i64,
        error: None,
        details: json!({"to": dst_location, "snapshots_copied": s.copied.len(), "blobs": s.blobs}),
    };
    if let Err(e) = cachevault::journal::record(&src, &entry) {
        ctx.note(&format!(
            "warning: could not journal the copy in {}: {e}",
            a.from_repo
        ));
    }
    let human = format!(
        "copied {} snapshot(s) from {} to {dst_location} ({} already there): {} blobs, {} sent ({} written) in {:.1}s\n",
        s.copied.len(),
        a.from_repo,
        s.already_there.len(),
        s.blobs,
        bytes(s.bytes),
        bytes(s.bytes_written),
        s.seconds
    );
    Ok(Outcome::new(
        json!({
            "from": a.from_repo,
            "to": dst_location,
            "snapshots_copied": s.copied.len(),
            "copied": s.copied,
            "already_there": s.already_there,
            "blobs": s.blobs,
            "bytes_sent": s.bytes,
            "bytes_written": s.bytes_written,
            "seconds": s.seconds,
            "ids": s.ids,
        }),
        human,
        exit::OK,
    ))
}

pub fn unlock(ctx: &Ctx, a: &UnlockArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    if a.all {
        ctx.note("warning: --all removes locks that may still be held; run it only when no cachevault is working on this repository");
    }
    let removed = repo.backend().unlock(a.all)?;
    let human = if removed.is_empty() {
        "no stale locks\n".to_string()
    } else {
        removed.iter().map(|r| format!("removed {r}\n")).collect()
    };
    Ok(Outcome::new(
        json!({"removed": removed, "all": a.all}),
        human,
        exit::OK,
    ))
}
