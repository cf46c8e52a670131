//! `diff A B`.

use anyhow::{Context, Result};
use serde_json::json;

use cachevault::diff;
use cachevault::store::BlobIndex;
use cachevault::{select, snapshot};

use super::args::DiffArgs;
use super::{bytes, exit, Ctx, Outcome};

pub fn diff(ctx: &Ctx, a: &DiffArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let (filter, folders) = ctx.filter_typed(&a.filter, &a.types, "diff")?;
    let now = super::now();
    let b = select::resolve(&repo, a.b.as_deref().unwrap_or("latest"), &filter, now)?;
    ctx.note_selection(&b);
    let sel_a = match &a.a {
        Some(spec) => select::resolve(&repo, spec, &filter, now)?,
        // The backup before B: the two newest backups when no snapshot is named.
        None => {
            let older: Vec<_> = snapshot::list(&repo)?
                .snapshots
                .into_iter()
                .filter(|(id, m)| *id != b.id && m.time <= b.manifest.time)
                .collect();
            select::newest(&older, &filter, Some(b.manifest.time), now)
                .with_context(|| format!("finding the snapshot before {}", b.id.short()))?
        }
    };
    ctx.note_selection(&sel_a);
    let (id_a, id_b) = (sel_a.id, b.id);
    let index = BlobIndex::load(&repo)?;
    let mut ma = snapshot::load_with(&repo, &index, &id_a)
        .with_context(|| format!("loading snapshot {}", id_a.short()))?;
    let mut mb = snapshot::load_with(&repo, &index, &id_b)
        .with_context(|| format!("loading snapshot {}", id_b.short()))?;
    super::keep_under(&mut ma.entries, &folders);
    super::keep_under(&mut mb.entries, &folders);
    let d = diff::diff(&ma, &mb);

    let mut doc = serde_json::to_value(&d)?;
    let side = |id: &cachevault::BlobId, m: &cachevault::Manifest| json!({"id": id.to_hex(), "time": m.time.to_rfc3339(), "kind": m.kind(), "root": m.root});
    doc["a"] = side(&id_a, &ma);
    doc["b"] = side(&id_b, &mb);

    let mut human = format!(
        "comparing snapshot {} ({}) with {} ({})\n",
        id_a.short(),
        ma.time.format("%Y-%m-%d %H:%M:%S"),
        id_b.short(),
        mb.time.format("%Y-%m-%d %H:%M:%S")
    );
    if ma.root != mb.root {
        human.push_str(&format!(
            "note: the snapshots have different roots ({} and {}); paths are compared relative to each\n",
            ma.root, mb.root
        ));
    }
    let suffix = |kind: cachevault::EntryKind| match kind {
        cachevault::EntryKind::Dir => "/",
        _ => "",
    };
    for p in &d.added {
        human.push_str(&format!(
            "+    {}{}  ({})\n",
            p.path.display(),
            suffix(p.kind),
            bytes(p.size)
        ));
    }
    for p in &d.removed {
        human.push_str(&format!(
            "-    {}{}  ({})\n",
            p.path.display(),
            suffix(p.kind),
            bytes(p.size)
        ));
    }
    for m in &d.modified {
        human.push_str(&format!(
            "M    {}{}  ({} -> {})\n",
            m.path.display(),
            suffix(m.kind),
            bytes(m.size_before),
            bytes(m.size_after)
        ));
    }
    for m in &d.metadata_changed {
        let mut what = Vec::new();
        if m.mode_before != m.mode_after {
            what.push(format!("mode {:o} -> {:o}", m.mode_before, m.mode_after));
        }
        if m.mtime_before != m.mtime_after {
            what.push(format!(
                "mtime {} -> {}",
                diff::mtime_text(m.mtime_before),
                diff::mtime_text(m.mtime_after)
            ));
        }
        human.push_str(&format!(
            "U    {}{}  ({})\n",
            m.path.display(),
            suffix(m.kind),
            what.join(", ")
        ));
    }
    let s = &d.summary;
    human.push_str(&format!(
        "{} added ({}), {} removed ({}), {} modified, {} metadata only\n",
        s.added,
        bytes(s.bytes_added),
        s.removed,
        bytes(s.bytes_removed),
        s.modified,
        s.metadata_changed
    ));
    Ok(Outcome::new(doc, human, exit::OK))
}
