//! `restore`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use cachevault::restore::{self, RestoreOptions};
use cachevault::{select, snapshot, LockKind, RelPath};

use super::args::RestoreArgs;
use super::{bytes, exit, parse_time, Ctx, Outcome};

pub fn restore(ctx: &Ctx, a: &RestoreArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Shared, "restore")?;
    let filter = ctx.filter_of(&a.tags, &a.kinds, &a.snapshot_paths, &a.hosts, true)?;
    let sel = match (&a.snapshot, &a.at) {
        (Some(s), _) => select::resolve(&repo, s, &filter, super::now())?,
        (None, Some(t)) => {
            select::resolve_at(&repo, parse_time("--at", t)?, &filter, super::now())?
        }
        (None, None) => unreachable!("clap requires one of them"),
    };
    ctx.note_selection(&sel);
    let id = sel.id;
    if a.in_place {
        if let Some(cfg) = &ctx.config {
            let root = cfg.root_text();
            if sel.manifest.root != root {
                bail!(
                    "snapshot {} is of {}, not of the config's root {}: --in-place writes only into the config's own root",
                    id.short(),
                    sel.manifest.root,
                    root
                );
            }
        }
    }
    // Said before the work starts, so that a long restore shows at once what it restores.
    ctx.note(&format!(
        "using snapshot {} of {} ({}, {}{})",
        id.short(),
        sel.manifest.time.format("%Y-%m-%d %H:%M:%S %:z"),
        sel.manifest.kind(),
        sel.manifest.root,
        if sel.manifest.complete {
            ""
        } else {
            ", partial"
        }
    ));
    let m = snapshot::load(&repo, &id)?;
    let target: PathBuf = match &a.target {
        Some(t) => t.clone(),
        None => PathBuf::from(&m.root),
    };
    let paths = a
        .paths
        .iter()
        .map(|p| {
            let trimmed = p.trim_matches('/');
            let rel = RelPath::from(trimmed);
            rel.check_safe()
                .map(|_| rel)
                .with_context(|| format!("--path {p:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = RestoreOptions {
        paths,
        dry_run: a.dry_run,
    };
    let bars = ctx.progress();
    let s = restore::restore(&repo, &m, &target, &opts, &bars)
        .with_context(|| format!("restoring {} into {}", id.short(), target.display()))?;
    for e in &s.errors {
        ctx.note(&format!("failed: {e}"));
    }
    let code = if s.errors.is_empty() {
        exit::OK
    } else if s.corruption {
        exit::CORRUPT
    } else {
        exit::FAILED
    };
    let doc = json!({
        "snapshot": id.to_hex(),
        "snapshot_time": m.time.to_rfc3339(),
        "snapshot_kind": m.kind(),
        "snapshot_root": m.root,
        "target": target,
        "dry_run": a.dry_run,
        "files": s.files,
        "dirs": s.dirs,
        "symlinks": s.symlinks,
        "links": s.links,
        "bytes": s.bytes,
        "errors": s.errors,
    });
    let human = format!(
        "{} snapshot {} ({}, {}) into {}: {} files ({}{}), {} folders, {} symlinks{}\n",
        if a.dry_run {
            "would restore"
        } else {
            "restored"
        },
        id.short(),
        m.kind(),
        m.time.format("%Y-%m-%d %H:%M:%S %:z"),
        target.display(),
        s.files,
        bytes(s.bytes),
        if s.links > 0 {
            format!(", {} as hard links", s.links)
        } else {
            String::new()
        },
        s.dirs,
        s.symlinks,
        if s.errors.is_empty() {
            ", all verified".to_string()
        } else {
            format!(", {} FAILED", s.errors.len())
        }
    );
    Ok(Outcome::new(doc, human, code))
}
