//! `prune`: removes data no snapshot references. Archives with no live blob are deleted;
//! archives whose unused share is above a threshold are repacked (live blobs copied into new
//! archives, new index written and synced) before the old index and archive go. Fails closed:
//! if any manifest cannot be read, nothing is deleted.

use std::collections::HashSet;

use serde::Serialize;

use crate::archive::{ArchiveIndex, FrameBuilder};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::IdSet;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::store::{self, BlobIndex, BlobReader, PackWriter};

/// How to prune.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Repack archives whose unused share (by bytes) exceeds this fraction (0.10 = 10%).
    pub max_unused: f64,
    /// Report only.
    pub dry_run: bool,
}

/// What prune did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    /// Snapshots whose blobs were kept.
    pub snapshots: usize,
    /// Archives examined.
    pub archives: usize,
    /// Archives deleted because nothing in them is used.
    pub archives_deleted: usize,
    /// Archives rewritten without their unused blobs.
    pub archives_repacked: usize,
    /// New archives written by repacking.
    pub archives_written: usize,
    /// Archives left behind by interrupted operations, removed.
    pub leftovers_removed: usize,
    /// Blobs no longer referenced, dropped.
    pub blobs_removed: usize,
    /// Live blobs copied by repacking.
    pub blobs_repacked: usize,
    /// Repository bytes freed (net of what repacking wrote).
    pub bytes_freed: i64,
    /// Bytes of unused data left in archives under the threshold.
    pub bytes_unused_kept: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Prunes the repository. The caller holds the exclusive lock.
///
/// # Errors
/// Any unreadable manifest or index (nothing is deleted then), I/O errors.
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneSummary> {
    let mut summary = PruneSummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let indexes = store::load_indexes(repo)?;
    let mut index = BlobIndex::default();
    for idx in &indexes {
        index.add(idx);
    }
    // Live set: every blob of every manifest. One unreadable manifest stops everything.
    let mut live = IdSet::default();
    let ids = crate::snapshot::list_ids(repo)?;
    for id in &ids {
        let m = crate::snapshot::load_with(repo, &index, id).map_err(|e| {
            Error::Invalid(format!(
                "prune refuses to delete anything: snapshot {} cannot be read ({e}); run check",
                id.short()
            ))
        })?;
        live.extend(m.blob_ids().copied());
    }
    summary.snapshots = ids.len();
    summary.archives = indexes.len();

    // Which archive keeps each live blob: the first one holding it. Other copies are unused.
    let mut owner: IdSet = IdSet::default();
    let mut to_delete: Vec<&ArchiveIndex> = Vec::new();
    let mut to_repack: Vec<(&ArchiveIndex, Vec<usize>)> = Vec::new();
    for idx in &indexes {
        let mut keep = Vec::new();
        let mut used_bytes = 0u64;
        let mut total_bytes = 0u64;
        for (i, b) in idx.blobs.iter().enumerate() {
            total_bytes += b.length;
            if live.contains(&b.id) && owner.insert(b.id) {
                keep.push(i);
                used_bytes += b.length;
            }
        }
        summary.blobs_removed += idx.blobs.len() - keep.len();
        if keep.is_empty() {
            to_delete.push(idx);
        } else if keep.len() < idx.blobs.len() {
            let unused = 1.0 - used_bytes as f64 / total_bytes.max(1) as f64;
            if unused > opts.max_unused {
                to_repack.push((idx, keep));
            } else {
                let share = (total_bytes - used_bytes) as f64 / total_bytes.max(1) as f64;
                summary.bytes_unused_kept += (share * idx.size as f64) as u64;
            }
        }
    }
    summary.archives_deleted = to_delete.len();
    summary.archives_repacked = to_repack.len();
    let freed_old: u64 = to_delete.iter().map(|i| i.size).sum::<u64>()
        + to_repack.iter().map(|(i, _)| i.size).sum::<u64>();

    // Leftovers: archives without an index, temp files of dead writers (we hold the
    // exclusive lock, so no live writer exists).
    let indexed: HashSet<String> = indexes
        .iter()
        .map(|i| format!("{}.tar.zst", i.archive.to_hex()))
        .collect();
    let mut leftovers = Vec::new();
    let mut leftover_bytes = 0u64;
    for dir in [repo.archives_dir(), repo.index_dir(), repo.snapshots_dir()] {
        for e in std::fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let e = e.map_err(Error::io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let is_tmp = name.starts_with('.') && name.ends_with(fsutil::TMP_SUFFIX);
            let orphan = dir == repo.archives_dir()
                && name.ends_with(".tar.zst")
                && !indexed.contains(&name);
            if is_tmp || orphan {
                leftover_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                leftovers.push(e.path());
            }
        }
    }
    summary.leftovers_removed = leftovers.len();

    if opts.dry_run {
        let live_repack: u64 = to_repack
            .iter()
            .map(|(i, keep)| {
                let used: u64 = keep.iter().map(|&k| i.blobs[k].length).sum();
                let total: u64 = i.blobs.iter().map(|b| b.length).sum::<u64>().max(1);
                (i.size as f64 * used as f64 / total as f64) as u64
            })
            .sum();
        summary.blobs_repacked = to_repack.iter().map(|(_, k)| k.len()).sum();
        summary.bytes_freed = (freed_old + leftover_bytes) as i64 - live_repack as i64;
        return Ok(summary);
    }

    // 1. Repack: new archives and their indexes are durable before anything is deleted.
    let mut written = 0u64;
    let mut new_ids = IdSet::default();
    if !to_repack.is_empty() {
        let total: u64 = to_repack.iter().map(|(i, _)| i.size).sum();
        progress.start("repack", total);
        let level = repo.config().zstd_level;
        let mut pack = PackWriter::new(repo);
        let mut builder = FrameBuilder::default();
        let mut reader = BlobReader::new(repo, &index);
        let result = (|| -> Result<()> {
            for (idx, keep) in &to_repack {
                for &k in keep {
                    let b = &idx.blobs[k];
                    let data = reader.read(&b.id)?;
                    builder.push(b.id, &data);
                    summary.blobs_repacked += 1;
                    if builder.is_full() {
                        pack.add(builder.compress(level)?)?;
                    }
                }
                progress.inc(idx.size);
            }
            if !builder.is_empty() {
                pack.add(builder.compress(level)?)?;
            }
            Ok(())
        })();
        progress.finish();
        if let Err(e) = result {
            pack.abandon();
            return Err(e);
        }
        let new = pack.finish()?;
        written = new.iter().map(|i| i.size).sum();
        summary.archives_written = new.len();
        new_ids.extend(new.iter().map(|i| i.archive));
        crate::fault::point("prune.after_repack");
    }
    // 2. Old indexes go first, then their archives (a crash in between leaves an unindexed
    //    archive, which check reports as a leftover and the next prune removes).
    //    Archives are named by their content, so a repack can rewrite an archive that is
    //    also on the delete list (an earlier prune was interrupted after its repack): such
    //    an archive is the new home of live blobs and must stay.
    let old: Vec<&ArchiveIndex> = to_delete
        .iter()
        .copied()
        .chain(to_repack.iter().map(|(i, _)| *i))
        .filter(|i| !new_ids.contains(&i.archive))
        .collect();
    for idx in &old {
        let p = repo.index_path(&idx.archive);
        std::fs::remove_file(&p).map_err(Error::io(&p))?;
    }
    fsutil::sync_dir(&repo.index_dir())?;
    crate::fault::point("prune.after_index_delete");
    for idx in &old {
        let p = repo.archive_path(&idx.archive);
        std::fs::remove_file(&p).map_err(Error::io(&p))?;
    }
    let fresh: HashSet<String> = new_ids
        .iter()
        .map(|id| format!("{}.tar.zst", id.to_hex()))
        .collect();
    for p in &leftovers {
        // A leftover archive can have just been rewritten, identical, by the repack above.
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| fresh.contains(&n)) {
            continue;
        }
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(p)(e));
            }
        }
    }
    fsutil::sync_dir(&repo.archives_dir())?;
    summary.bytes_freed = (freed_old + leftover_bytes) as i64 - written as i64;
    Ok(summary)
}
