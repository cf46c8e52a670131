//! `find PATH|GLOB|NAME`: every version of the files it names across snapshots.

use anyhow::Result;
use rayon::prelude::*;
use serde_json::json;

use cachevault::store::BlobIndex;
use cachevault::{diff, find, snapshot};

use super::args::FindArgs;
use super::{bytes, exit, table, Ctx, Outcome};

pub fn find(ctx: &Ctx, a: &FindArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let (filter, folders) = ctx.filter_typed(&a.filter, &a.types, "find")?;
    let listing = snapshot::list(&repo)?;
    let mut damaged: Vec<String> = listing
        .damaged
        .iter()
        .map(|d| format!("{}: {}", d.file, d.error))
        .collect();
    let headers: Vec<_> = listing
        .snapshots
        .into_iter()
        .filter(|(_, m)| filter.matches(m))
        .collect();
    let total = headers.len();
    let query = find::Query::parse(&a.path)?;
    let kinds: std::collections::HashMap<_, _> =
        headers.iter().map(|(id, m)| (*id, m.kind())).collect();
    // Only snapshots whose root can hold the path need their entries.
    let candidates: Vec<_> = headers
        .into_iter()
        .filter(|(_, m)| query.may_match(m))
        .collect();
    let index = BlobIndex::load(&repo)?;
    let results: Vec<_> = candidates
        .par_iter()
        .map(|(id, h)| (*id, snapshot::load_entries(&repo, &index, id, h.clone())))
        .collect();
    let mut loaded = Vec::with_capacity(results.len());
    for (id, r) in results {
        match r {
            Ok(mut m) => {
                super::keep_under(&mut m.entries, &folders);
                loaded.push((id, m))
            }
            Err(e) if e.is_corruption() => damaged.push(format!("snapshot {}: {e}", id.short())),
            Err(e) => return Err(e.into()),
        }
    }
    for d in &damaged {
        ctx.note(&format!("damaged: {d}"));
    }
    let versions = find::versions_of(&loaded, &query);
    let several = versions.iter().any(|v| v.path != versions[0].path);

    let docs: Vec<_> = versions
        .iter()
        .map(|v| {
            json!({
                "snapshot": v.snapshot.to_hex(),
                "short_id": v.snapshot.short(),
                "time": v.time.to_rfc3339(),
                "kind": kinds.get(&v.snapshot),
                "path": v.path,
                "type": v.kind,
                "size": v.size,
                "hash": v.hash.map(|h| h.to_hex()),
                "target": v.target,
                "mode": format!("{:o}", v.mode),
                "mtime": diff::mtime_text(v.mtime_ns),
                "changed": v.changed,
            })
        })
        .collect();
    let human = if versions.is_empty() {
        format!("{} is in none of the {total} snapshots\n", a.path.display())
    } else {
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|v| {
                let mut row = vec![
                    v.snapshot.short(),
                    v.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                    kinds
                        .get(&v.snapshot)
                        .map(|k| k.name())
                        .unwrap_or("-")
                        .to_string(),
                    bytes(v.size),
                    v.hash
                        .map(|h| h.short())
                        .or_else(|| v.target.as_ref().map(|t| format!("-> {}", t.display())))
                        .unwrap_or_else(|| "-".into()),
                    if v.changed { "*" } else { "" }.to_string(),
                ];
                if several {
                    row.push(v.path.display());
                }
                row
            })
            .collect();
        format!(
            "{}{}in {} of {total} snapshots, {} distinct contents; newest first{}, * marks a change from the version below\n",
            table(
                &["Snapshot", "Time", "Kind", "Size", "Hash", "Changed", "Path"][..if several { 7 } else { 6 }],
                &rows
            ),
            if several {
                let mut paths: Vec<_> = versions.iter().map(|v| &v.path).collect();
                paths.dedup();
                format!("{} paths ", paths.len())
            } else {
                String::new()
            },
            {
                let mut snaps: Vec<_> = versions.iter().map(|v| v.snapshot).collect();
                snaps.sort_unstable();
                snaps.dedup();
                snaps.len()
            },
            versions.iter().filter(|v| v.changed).count(),
            if several { " within each path" } else { "" },
        )
    };
    Ok(Outcome::new(
        json!({"path": a.path, "order": "newest first", "versions": docs, "damaged": damaged}),
        human,
        // Damaged snapshots may hold versions nobody can list: the answer is incomplete.
        if damaged.is_empty() {
            exit::OK
        } else {
            exit::CORRUPT
        },
    ))
}
