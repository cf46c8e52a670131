//! `snapshot`, `snapshots` and `ls`.

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use cachevault::manifest::{EntryKind, SnapshotKind};
use cachevault::select;
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::LockKind;

use super::args::{LsArgs, SnapshotArgs, SnapshotsArgs};
use super::{bytes, exit, parse_time, table, Ctx, Outcome};

pub fn snapshot(ctx: &Ctx, a: &SnapshotArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let mut tags = a.tags.clone();
    let (root, includes, types) = match (&a.path, &ctx.config) {
        (None, Some(cfg)) if !a.types.is_empty() => {
            // A type backup: only those types' folders (state files only inside them).
            let named = ctx.types_of(&a.types, "snapshot")?;
            for (n, _, _) in &named {
                let tag = format!("type:{n}");
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            let types = named.into_iter().map(|(n, rel, _)| (n, rel)).collect();
            (cfg.root.clone(), cfg.type_includes(&a.types)?, types)
        }
        (_, None) if !a.types.is_empty() => {
            ctx.types_of(&a.types, "snapshot")?;
            unreachable!("types_of refuses without a config")
        }
        (Some(p), _) => (p.clone(), Vec::new(), Vec::new()),
        (None, Some(cfg)) => (cfg.root.clone(), cfg.backup_includes(), cfg.type_folders()),
        (None, None) => {
            return Err(anyhow!(
                "nothing to snapshot: give a PATH, or --config FILE to snapshot its cache root"
            ))
        }
    };
    let clock = super::now();
    let time = match &a.time {
        Some(t) => {
            let time = parse_time("--time", t)?;
            let slack = chrono::Duration::seconds(cachevault::select::CLOCK_SLACK_SECONDS);
            if time > clock + slack {
                return Err(anyhow!(
                    "--time {t:?} is {} ahead of the clock ({}): a snapshot dated in the future would pass for the newest backup until then; at most 5 minutes ahead is accepted",
                    cachevault::units::human_duration((time - clock).num_seconds()),
                    clock.to_rfc3339()
                ));
            }
            time
        }
        None => clock,
    };
    let _lock = ctx.lock(&repo, LockKind::Shared, "snapshot")?;
    let opts = SnapshotOptions {
        root: root.clone(),
        includes,
        kind: SnapshotKind::Backup,
        types,
        tags,
        time,
        hostname: super::hostname(),
        rehash: a.rehash,
        dry_run: a.dry_run,
        parent: None,
    };
    let bars = ctx.progress();
    let s = snapshot::create(&repo, &opts, &bars)
        .with_context(|| format!("snapshotting {}", root.display()))?;
    let m = &s.manifest;
    let st = &m.summary;
    for w in &s.warnings {
        ctx.note(&format!("warning: {w}"));
    }
    for w in &s.skipped {
        ctx.note(&format!("skipped: {w}"));
    }
    let code = if s.skipped.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    };
    let id = s.id.map(|i| i.to_hex());
    let doc = json!({
        "id": id,
        "short_id": s.id.map(|i| i.short()),
        "time": m.time.to_rfc3339(),
        "kind": m.kind(),
        "root": m.root,
        "dry_run": a.dry_run,
        "parent": m.parent.map(|p| p.to_hex()),
        "paths": m.paths,
        "tags": m.tags,
        "files_new": st.files_new,
        "files_changed": st.files_changed,
        "files_unchanged": st.files_unchanged,
        "dirs": st.dirs,
        "symlinks": st.symlinks,
        "bytes_total": st.bytes_total,
        "bytes_read": st.bytes_read,
        "blobs_added": st.blobs_added,
        "bytes_added": st.bytes_added,
        "complete": m.complete,
        "types": st.types,
        "skipped": s.skipped,
        "warnings": s.warnings,
        "seconds": s.seconds,
    });
    let human = format!(
        "{} {}\n  files: {} new, {} changed, {} unchanged ({} folders, {} symlinks)\n  data:  {} in snapshot, {} read, {} added to the repository\n  took {:.2}s{}\n",
        if a.dry_run { "would snapshot" } else { "snapshot" },
        s.id.map(|i| i.short()).unwrap_or_else(|| "(dry run)".into()),
        st.files_new,
        st.files_changed,
        st.files_unchanged,
        st.dirs,
        st.symlinks,
        bytes(st.bytes_total),
        bytes(st.bytes_read),
        bytes(st.bytes_added),
        s.seconds,
        if s.skipped.is_empty() { String::new() } else { format!("\n  {} entries skipped: snapshot incomplete", s.skipped.len()) },
    );
    Ok(Outcome::new(doc, human, code))
}

pub fn list(ctx: &Ctx, a: &SnapshotsArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let filter = ctx.filter(&a.filter, false)?;
    let listing = snapshot::list(&repo)?;
    let all: Vec<_> = listing
        .snapshots
        .into_iter()
        .filter(|(_, m)| filter.matches(m))
        .collect();
    let mut docs: Vec<_> = all
        .iter()
        .map(|(id, m)| {
            json!({
                "id": id.to_hex(),
                "short_id": id.short(),
                "time": m.time.to_rfc3339(),
                "kind": m.kind(),
                "hostname": m.hostname,
                "root": m.root,
                "paths": m.paths,
                "tags": m.tags,
                "complete": m.complete,
                "files": m.file_count(),
                "bytes": m.summary.bytes_total,
                "bytes_added": m.summary.bytes_added,
                "types": m.summary.types,
            })
        })
        .collect();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|(id, m)| {
            vec![
                id.short(),
                m.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                m.kind().name().to_string() + if m.complete { "" } else { " (partial)" },
                m.tags.join(","),
                m.file_count().to_string(),
                bytes(m.summary.bytes_total),
                m.root.clone(),
            ]
        })
        .collect();
    let mut human = format!(
        "{}{} snapshots\n",
        table(
            &["ID", "Time", "Kind", "Tags", "Files", "Size", "Root"],
            &rows
        ),
        all.len()
    );
    // A manifest that cannot be read costs only itself: named here, in the same array for
    // `--json` (with `damaged: true`), and the exit code says the listing is not whole.
    for d in &listing.damaged {
        ctx.note(&format!("damaged: {}: {}", d.file, d.error));
        human.push_str(&format!(
            "DAMAGED {}: {}\n  (`cachevault repair-snapshots --forget` or `cachevault forget {}`)\n",
            d.file,
            d.error,
            d.file.trim_start_matches("snapshots/").trim_end_matches(".json")
        ));
        docs.push(json!({
            "id": d.file.trim_start_matches("snapshots/").trim_end_matches(".json"),
            "damaged": true,
            "file": d.file,
            "error": d.error,
        }));
    }
    let code = if listing.damaged.is_empty() {
        exit::OK
    } else {
        exit::CORRUPT
    };
    Ok(Outcome::new(serde_json::Value::Array(docs), human, code))
}

pub fn ls(ctx: &Ctx, a: &LsArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let (filter, folders) = ctx.filter_typed(&a.filter, &a.types, "ls")?;
    let sel = select::resolve(&repo, &a.snapshot, &filter, super::now())?;
    ctx.note_selection(&sel);
    let id = sel.id;
    let mut m = snapshot::load(&repo, &id)?;
    super::keep_under(&mut m.entries, &folders);
    if let Some(p) = &a.path {
        let rel = cachevault::browse::rel_in(&m, p)?;
        // Names the path when the snapshot holds nothing there.
        cachevault::browse::subtree(&m, &id, &rel)?;
        m.entries.retain(|e| e.path.starts_with(&rel));
    }
    let mut human = String::new();
    let mut docs = Vec::with_capacity(m.entries.len());
    for e in &m.entries {
        let kind = match e.kind {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
        };
        docs.push(json!({
            "path": e.path,
            "type": kind,
            "mode": format!("{:o}", e.mode),
            "size": e.size,
            "mtime_ns": e.mtime_ns,
            "hash": e.hash.map(|h| h.to_hex()),
            "target": e.target,
            "link": e.link.as_deref(),
        }));
        human.push_str(&format!(
            "{:<7} {:>5o} {:>10}  {}{}\n",
            kind,
            e.mode,
            e.size,
            e.path.display(),
            e.target
                .as_ref()
                .map(|t| format!(" -> {}", t.display()))
                .or_else(|| e
                    .link
                    .as_deref()
                    .map(|l| format!(" (hard link to {})", l.display())))
                .unwrap_or_default()
        ));
    }
    Ok(Outcome::new(
        json!({"id": id.to_hex(), "time": m.time.to_rfc3339(), "kind": m.kind(), "root": m.root, "entries": docs}),
        human,
        exit::OK,
    ))
}
