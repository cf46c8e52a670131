//! `restore`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use cachevault::restore::{self, RestoreOptions};
use cachevault::{snapshot, LockKind, RelPath};

use super::args::RestoreArgs;
use super::{bytes, exit, parse_time, Ctx, Outcome};

pub fn restore(ctx: &Ctx, a: &RestoreArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Shared, "restore")?;
    let id = match (&a.snapshot, &a.at) {
        (Some(s), _) => snapshot::resolve(&repo, s)?,
        (None, Some(t)) => snapshot::resolve_at(&repo, parse_time("--at", t)?)?,
        (None, None) => unreachable!("clap requires one of them"),
    };
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
        "target": target,
        "dry_run": a.dry_run,
        "files": s.files,
        "dirs": s.dirs,
        "symlinks": s.symlinks,
        "bytes": s.bytes,
        "errors": s.errors,
    });
    let human = format!(
        "{} snapshot {} into {}: {} files ({}), {} folders, {} symlinks{}\n",
        if a.dry_run {
            "would restore"
        } else {
            "restored"
        },
        id.short(),
        target.display(),
        s.files,
        bytes(s.bytes),
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
