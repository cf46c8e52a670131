//! `dump SNAP PATH`: one file's bytes, or a folder as a tar stream, on stdout, verified while
//! read. stdout carries the data only: `--json` is ignored there and errors go to stderr.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use cachevault::manifest::EntryKind;
use cachevault::store::BlobIndex;
use cachevault::{browse, select, snapshot, LockKind, RelPath};

use super::args::DumpArgs;
use super::{exit, Ctx, Outcome};

pub fn dump(ctx: &Ctx, a: &DumpArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.lock(&repo, LockKind::Shared, "dump")?;
    let (filter, folders) = ctx.filter_typed(&a.filter, &a.types, "dump")?;
    let sel = select::resolve(&repo, &a.snapshot, &filter, super::now())?;
    ctx.note_selection(&sel);
    let id = sel.id;
    // A named snapshot must hold the type too, as restore --type requires.
    for abs in &filter.holds {
        if !select::holds(&sel.manifest, abs) {
            bail!(
                "snapshot {} does not hold the folder {abs}: it includes {}",
                id.short(),
                sel.manifest.paths.join(", ")
            );
        }
    }
    let index = BlobIndex::load(&repo)?;
    let m = snapshot::load_with(&repo, &index, &id)?;
    let rel = match &a.path {
        Some(p) => browse::rel_in(&m, p)?,
        None => folders.first().cloned().unwrap_or_default(),
    };
    if !folders.is_empty() && !folders.iter().any(|f| rel.starts_with(f)) {
        let names: Vec<String> = folders.iter().map(RelPath::display).collect();
        bail!(
            "{} is not in the folder of the cache type asked for ({})",
            rel.display(),
            names.join(", ")
        );
    }
    let entries = browse::subtree(&m, &id, &rel)?;
    ctx.note(&format!(
        "dumping {} of snapshot {} ({}, {})",
        if rel.0.is_empty() {
            ".".to_string()
        } else {
            rel.display()
        },
        id.short(),
        sel.manifest.time.format("%Y-%m-%d %H:%M:%S %:z"),
        sel.manifest.kind(),
    ));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let shown = Path::new("stdout");
    let single = entries
        .first()
        .filter(|e| !rel.0.is_empty() && e.path == rel && e.kind != EntryKind::Dir);
    let written = match single {
        Some(e) if e.kind == EntryKind::File => {
            browse::write_file(&repo, &index, e, &mut out, shown)
                .with_context(|| format!("dumping {} of snapshot {}", rel.display(), id.short()))
        }
        Some(e) => {
            // A symlink: its target, as `readlink` prints it.
            let target = e.target.clone().unwrap_or_default();
            out.write_all(&target.0)
                .map(|()| target.0.len() as u64)
                .context("writing to stdout")
        }
        None => browse::write_tar(&repo, &index, &entries, &mut out, shown)
            .map(|s| s.bytes)
            .with_context(|| {
                format!(
                    "dumping {} of snapshot {} as tar",
                    rel.display(),
                    id.short()
                )
            }),
    };
    match written.and_then(|n| out.flush().map(|()| n).context("writing to stdout")) {
        Ok(_) => Ok(Outcome::raw(exit::OK)),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(Outcome::raw(exit::OK))
        }
        Err(e) => Err(e),
    }
}
