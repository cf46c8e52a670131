//! `restore`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use cachevault::inplace::{self, InPlaceOptions};
use cachevault::restore::{self, RestoreOptions};
use cachevault::{select, snapshot, LockKind, RelPath};

use super::args::RestoreArgs;
use super::{bytes, exit, parse_time, table, Ctx, Outcome};

pub fn restore(ctx: &Ctx, a: &RestoreArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    // In place, files of the cache tree are overwritten: no snapshot may interleave.
    let kind = if a.in_place && !a.dry_run {
        LockKind::Exclusive
    } else {
        LockKind::Shared
    };
    let _lock = ctx.lock(&repo, kind, "restore")?;
    let mut filter = ctx.filter_of(&a.tags, &a.kinds, &a.snapshot_paths, &a.hosts, true)?;
    // `--type T`: the type's folder, from a backup that holds it whole.
    let types = ctx.types_of(&a.types, "restore")?;
    filter.holds = types.iter().map(|(_, _, abs)| abs.clone()).collect();
    let sel = match (&a.snapshot, &a.at) {
        (Some(s), _) => select::resolve(&repo, s, &filter, super::now())?,
        (None, Some(t)) => {
            select::resolve_at(&repo, parse_time("--at", t)?, &filter, super::now())?
        }
        (None, None) => select::resolve(&repo, "latest", &filter, super::now())?,
    };
    ctx.note_selection(&sel);
    let id = sel.id;
    if let (Some(root), false) = (&filter.root, types.is_empty()) {
        if sel.manifest.root != *root {
            bail!(
                "snapshot {} is of {}, not of the config's root {root}: --type restores the config's own cache types",
                id.short(),
                sel.manifest.root
            );
        }
    }
    for (name, _, abs) in &types {
        if !select::holds(&sel.manifest, abs) {
            bail!(
                "snapshot {} does not hold cache type {name:?} (its folder {abs}): it includes {}",
                id.short(),
                sel.manifest.paths.join(", ")
            );
        }
    }
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
    // One index serves reading the entry list and the files.
    let index = std::sync::Arc::new(cachevault::store::BlobIndex::load(&repo)?);
    let m = &sel.manifest;
    let target: PathBuf = match &a.target {
        Some(t) => t.clone(),
        None => PathBuf::from(&m.root),
    };
    let type_paths: Vec<String> = types.iter().map(|(_, rel, _)| rel.display()).collect();
    let paths = a
        .paths
        .iter()
        .chain(type_paths.iter())
        .map(|p| {
            let trimmed = p.trim_matches('/');
            let rel = RelPath::from(trimmed);
            rel.check_safe()
                .map(|_| rel)
                .with_context(|| format!("--path {p:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let bars = ctx.progress();
    if a.in_place {
        let m = snapshot::load_entries(&repo, &index, &id, sel.manifest.clone())?;
        return in_place(ctx, a, &repo, &m, id, paths);
    }
    let opts = RestoreOptions {
        paths,
        exact: false,
        dry_run: a.dry_run,
        guard: None,
        window: 0,
    };
    // The entry list is read as the restore goes, a window at a time: never whole.
    let s = restore::restore_streamed(&repo, index, id, m, &target, &opts, &bars)
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

/// `restore --in-place`: under the safety net, with a preview on `--dry-run`.
fn in_place(
    ctx: &Ctx,
    a: &RestoreArgs,
    repo: &cachevault::Repository,
    m: &cachevault::Manifest,
    id: cachevault::BlobId,
    paths: Vec<RelPath>,
) -> Result<Outcome> {
    let bars = ctx.progress();
    let (p, s) = inplace::restore_in_place(
        repo,
        m,
        &InPlaceOptions {
            paths,
            dry_run: a.dry_run,
            now: super::now(),
            hostname: super::hostname(),
            types: ctx
                .config
                .as_ref()
                .map(|c| c.type_folders())
                .unwrap_or_default(),
        },
        &bars,
    )
    .with_context(|| format!("restoring {} in place into {}", id.short(), m.root))?;
    for e in &s.errors {
        ctx.note(&format!("failed: {e}"));
    }
    let code = if !s.errors.is_empty() {
        if s.corruption {
            exit::CORRUPT
        } else {
            exit::FAILED
        }
    } else if !p.conflicts.is_empty() {
        exit::PARTIAL
    } else {
        exit::OK
    };
    let mut doc = serde_json::to_value(&p)?;
    doc["snapshot"] = json!(id.to_hex());
    doc["snapshot_time"] = json!(m.time.to_rfc3339());
    doc["snapshot_kind"] = json!(m.kind());
    doc["snapshot_root"] = json!(m.root);
    doc["target"] = json!(m.root);
    doc["files"] = json!(s.files);
    doc["bytes"] = json!(s.bytes);
    doc["errors"] = json!(s.errors);
    let mut human = String::new();
    let shown = if ctx.cli.verbose > 0 || a.dry_run {
        usize::MAX
    } else {
        20
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (what, list) in [("overwrite", &p.overwrite), ("create", &p.create)] {
        rows.extend(
            list.iter()
                .take(shown)
                .map(|x| vec![what.to_string(), x.clone()]),
        );
    }
    if !rows.is_empty() {
        human.push_str(&table(
            &[if a.dry_run { "Would" } else { "Did" }, "Path"],
            &rows,
        ));
    }
    for c in &p.conflicts {
        human.push_str(&format!("left alone: {} ({})\n", c.path, c.reason));
    }
    human.push_str(&format!(
        "{} snapshot {} ({}, {}) in place into {}: {} overwritten, {} created, {} already as in the snapshot{}\n",
        if a.dry_run { "would restore" } else { "restored" },
        id.short(),
        m.kind(),
        m.time.format("%Y-%m-%d %H:%M:%S %:z"),
        m.root,
        p.overwrite.len(),
        p.create.len(),
        p.unchanged,
        match (&p.operation_id, &p.safety_snapshot) {
            (Some(op), Some(snap)) => format!(
                "; what it overwrote is in pre-restore snapshot {}: `cachevault undo {op}` puts it back",
                &snap[..8]
            ),
            (Some(op), None) => format!("; `cachevault undo {op}` removes what it created"),
            _ => String::new(),
        }
    ));
    Ok(Outcome::new(doc, human, code))
}
