//! `prune`: removes data no snapshot references. Archives with no live blob are deleted;
//! archives whose unused share is above a threshold are repacked (live blobs copied into new
//! archives, new index written and synced) before the old index and archive go.
//!
//! Fails closed, before changing anything ([`preflight`]): every manifest must be readable,
//! every blob a snapshot references must be indexed in an archive that is present, and no
//! index may be damaged; otherwise prune cannot know what is referenced and deletes nothing
//! (an [`Error::Corrupt`], exit code 3). An archive without an index (a crash between
//! writing the archive and its index, or a lost index) is never deleted blind: its index is
//! rebuilt from the archive itself and written first.

use serde::Serialize;

use crate::archive::{ArchiveIndex, FrameBuilder};
use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IdMap, IdSet};
use crate::progress::Progress;
use crate::repo::layout;
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
    /// Archives found without an index whose index was rebuilt from the archive.
    pub indexes_rebuilt: usize,
    /// Temp files of interrupted writers and indexes of archives that are gone, removed.
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

/// What [`preflight`] proved: the indexes to prune by and every live blob.
pub struct Preflight {
    /// Indexes of present archives: those read from `index/`, then those rebuilt.
    pub indexes: Vec<ArchiveIndex>,
    /// How many of `indexes` were rebuilt from archives without an index (not yet written).
    pub rebuilt: usize,
    /// Indexes whose archive is gone (nothing references their blobs).
    pub stale_indexes: Vec<BlobId>,
    /// Every blob a snapshot references.
    pub live: IdSet,
    /// Snapshots read.
    pub snapshots: usize,
}

/// Proves that prune can know what is referenced, changing nothing: every index usable,
/// every archive without an index readable, every manifest readable, every referenced blob
/// indexed in an archive that is present.
///
/// # Errors
/// [`Error::Corrupt`] naming what is damaged and what to run; I/O errors.
pub fn preflight(repo: &Repository) -> Result<Preflight> {
    preflight_without(repo, &IdSet::default())
}

/// [`preflight`] as if the snapshots `forgotten` were already gone: what `forget --prune`
/// proves before it forgets anything.
///
/// # Errors
/// As [`preflight`].
pub fn preflight_without(repo: &Repository, forgotten: &IdSet) -> Result<Preflight> {
    let refuse = |what: String| {
        Error::corrupt(format!(
            "prune refuses to delete anything: {what}. Nothing was changed; see `cachevault check`"
        ))
    };
    let present: IdSet = repo
        .list_archives()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (mut indexes, damaged) = store::load_indexes(repo)?;
    if let Some(d) = damaged.first() {
        return Err(refuse(format!(
            "{} is damaged ({}); run `cachevault rebuild-index`",
            d.file, d.error
        )));
    }
    let mut stale_indexes = Vec::new();
    indexes.retain(|i| {
        let there = present.contains(&i.archive);
        if !there {
            stale_indexes.push(i.archive);
        }
        there
    });
    let indexed: IdSet = indexes.iter().map(|i| i.archive).collect();
    let mut unindexed: Vec<BlobId> = present.difference(&indexed).copied().collect();
    unindexed.sort();
    let mut rebuilt = 0;
    for id in unindexed {
        let what = repo.describe(ObjectKind::Archive, &layout::archive(&id));
        let idx = crate::archive::scan_archive(&repo.read_archive(&id)?, &what, &repo.frame_codec()).map_err(|e| {
            refuse(format!(
                "archive {} has no index and cannot be read whole ({e}); run `cachevault rebuild-index`",
                id.to_hex()
            ))
        })?;
        if idx.archive != id {
            return Err(refuse(format!(
                "archive {} has no index and its content hashes to {}; run `cachevault rebuild-index`",
                id.to_hex(),
                idx.archive
            )));
        }
        indexes.push(idx);
        rebuilt += 1;
    }
    let index = BlobIndex::of(&indexes);
    let mut listing = crate::snapshot::list(repo)?;
    let id_of = |file: &str| -> Option<BlobId> {
        file.trim_start_matches("snapshots/")
            .trim_end_matches(".json")
            .parse()
            .ok()
    };
    listing
        .damaged
        .retain(|d| id_of(&d.file).is_none_or(|id| !forgotten.contains(&id)));
    listing.snapshots.retain(|(id, _)| !forgotten.contains(id));
    if let Some(d) = listing.damaged.first() {
        return Err(refuse(format!(
            "{} cannot be read ({}); run `cachevault repair-snapshots --forget` or `cachevault forget {}`",
            d.file,
            d.error,
            d.file.trim_start_matches("snapshots/").trim_end_matches(".json")
        )));
    }
    // Every list streams by once (lists built on one base read it together); no list is
    // held whole, only the set of live blobs.
    let unindexed_blob = |id: &BlobId, b: &BlobId| {
        refuse(format!(
            "snapshot {} references blob {} that is in no index of a present archive; run `cachevault rebuild-index`, then `cachevault repair-snapshots`",
            id.short(),
            b.short()
        ))
    };
    let snapshots = listing.snapshots.len();
    let order: Vec<BlobId> = listing.snapshots.iter().map(|(id, _)| *id).collect();
    // Sized once for every indexed blob, the most it can hold: growing by doubling would
    // hold the old table beside the new one at the peak.
    let live = std::sync::Mutex::new(IdSet::with_capacity_and_hasher(
        index.len(),
        Default::default(),
    ));
    let unindexed = std::sync::Mutex::new(IdMap::default());
    for (id, header) in &listing.snapshots {
        if let Some(b) = header.tree_blobs().find(|b| !index.contains(b)) {
            return Err(unindexed_blob(id, b));
        }
        live.lock()
            .expect("live set lock is never poisoned")
            .extend(header.tree_blobs().copied());
    }
    let streamed = repo.reading(|| {
        crate::snapshot::stream_shared(repo, &index, listing.snapshots, |id, _| LiveBlobs {
            id: *id,
            index: &index,
            live: &live,
            unindexed: &unindexed,
            held: Vec::new(),
        })
    });
    let mut failed: IdMap<Error> = IdMap::default();
    for (id, done) in streamed {
        match done {
            Ok(mut sink) => sink.flush(),
            Err(e) => {
                failed.insert(id, e);
            }
        }
    }
    let unindexed = unindexed
        .into_inner()
        .expect("unindexed lock is never poisoned");
    if let Some((id, e)) = order
        .iter()
        .find_map(|id| failed.remove(id).map(|e| (id, e)))
    {
        return Err(match unindexed.get(id) {
            Some(b) => unindexed_blob(id, b),
            None => refuse(format!(
                "snapshot {} cannot be read ({e}); run `cachevault repair-snapshots`",
                id.short()
            )),
        });
    }
    let live = live.into_inner().expect("live set lock is never poisoned");
    Ok(Preflight {
        indexes,
        rebuilt,
        stale_indexes,
        live,
        snapshots,
    })
}

/// Gathers the blobs one snapshot's entries reference into the shared live set, a batch
/// at a time; a blob in no index stops the list and is noted.
struct LiveBlobs<'a> {
    id: BlobId,
    index: &'a BlobIndex,
    live: &'a std::sync::Mutex<IdSet>,
    unindexed: &'a std::sync::Mutex<IdMap<BlobId>>,
    held: Vec<BlobId>,
}

impl LiveBlobs<'_> {
    fn flush(&mut self) {
        self.live
            .lock()
            .expect("live set lock is never poisoned")
            .extend(self.held.drain(..));
    }
}

impl crate::snapshot::EntrySink for LiveBlobs<'_> {
    fn entry(&mut self, e: &crate::manifest::Entry) -> Result<()> {
        for b in &e.blobs {
            if !self.index.contains(b) {
                self.unindexed
                    .lock()
                    .expect("unindexed lock is never poisoned")
                    .insert(self.id, *b);
                return Err(Error::corrupt(format!(
                    "{}: blob {} is in no index",
                    e.path.display(),
                    b.short()
                )));
            }
            self.held.push(*b);
        }
        if self.held.len() >= 4096 {
            self.flush();
        }
        Ok(())
    }
}

/// Prunes the repository. The caller holds the exclusive lock.
///
/// # Errors
/// Whatever [`preflight`] refuses (nothing is changed then); I/O errors.
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneSummary> {
    let Preflight {
        indexes,
        rebuilt,
        stale_indexes,
        mut live,
        snapshots,
    } = preflight(repo)?;
    let mut summary = PruneSummary {
        dry_run: opts.dry_run,
        snapshots,
        archives: indexes.len(),
        indexes_rebuilt: rebuilt,
        ..Default::default()
    };

    // Which archive keeps each live blob: the first one holding it, which takes it out of
    // the live set. Other copies are unused.
    let mut to_delete: Vec<&ArchiveIndex> = Vec::new();
    let mut to_repack: Vec<(&ArchiveIndex, Vec<usize>)> = Vec::new();
    let mut kept: Vec<&ArchiveIndex> = Vec::new();
    for idx in &indexes {
        let mut keep = Vec::new();
        let mut used_bytes = 0u64;
        let mut total_bytes = 0u64;
        for (i, b) in idx.blobs.iter().enumerate() {
            total_bytes += b.length;
            if live.remove(&b.id) {
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
                kept.push(idx);
            }
        } else {
            kept.push(idx);
        }
    }
    drop(live);
    summary.archives_deleted = to_delete.len();
    summary.archives_repacked = to_repack.len();
    let freed_old: u64 = to_delete.iter().map(|i| i.size).sum::<u64>()
        + to_repack.iter().map(|(i, _)| i.size).sum::<u64>();

    // Leftovers: temp files of dead writers and holder files of dead lock holders (we hold
    // the exclusive lock, so no live writer exists), and indexes whose archive is gone.
    let (stray, leftover_bytes) = repo.backend().remove_leftovers(true)?;
    summary.leftovers_removed = stray + stale_indexes.len();

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

    // 0. Rebuilt indexes of archives that stay are written before anything else: from now
    //    on those archives are ordinary indexed archives.
    let on_disk: IdSet = repo.list_indexes()?.into_iter().collect();
    let delete_ids: IdSet = to_delete.iter().map(|i| i.archive).collect();
    for idx in kept.iter().chain(to_repack.iter().map(|(i, _)| i)) {
        if !on_disk.contains(&idx.archive) && !delete_ids.contains(&idx.archive) {
            repo.write_index(idx)?;
        }
    }

    // The last safe point before anything is written.
    crate::cancel::check()?;
    // From here on, a failure has changed something: say what.
    let changes = |e: Error, what: String| e.after(format!("prune had {what}"));

    // 1. Repack: new archives and their indexes are durable before anything is deleted.
    let mut written = 0u64;
    let mut new_ids = IdSet::default();
    if !to_repack.is_empty() {
        let total: u64 = to_repack.iter().map(|(i, _)| i.size).sum();
        progress.start("repack", total);
        let level = repo.config().zstd_level;
        let mut pack = PackWriter::new(repo);
        let mut builder = FrameBuilder::default();
        // Built only now, for the repack alone, once the live set is freed.
        let index = BlobIndex::of(&indexes);
        let mut reader = BlobReader::new(repo, &index);
        let result = (|| -> Result<()> {
            for (idx, keep) in &to_repack {
                crate::cancel::check()?;
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
            return Err(e.after(
                "prune had written replacement archives (unused; the next prune removes them)",
            ));
        }
        // Finished archives of a failed repack are unreferenced data for the next prune.
        let new = pack.finish()?;
        written = new.iter().map(|i| i.size).sum();
        summary.archives_written = new.len();
        new_ids.extend(new.iter().map(|i| i.archive));
        crate::fault::point("prune.after_repack");
        crate::fault::pause("prune.after_repack");
        // A safe point still: nothing is deleted yet, the new archives are complete.
        crate::cancel::check().map_err(|e| {
            e.after("prune had written replacement archives (unused; the next prune removes them)")
        })?;
    }
    // 2. Old indexes go first, then their archives (a crash in between leaves an unindexed
    //    archive, whose index the next prune rebuilds before it deletes the archive).
    //    Archives are named by their content, so a repack can rewrite an archive that is
    //    also on the delete list (an earlier prune was interrupted after its repack): such
    //    an archive is the new home of live blobs and must stay.
    let old: Vec<&ArchiveIndex> = to_delete
        .iter()
        .copied()
        .chain(to_repack.iter().map(|(i, _)| *i))
        .filter(|i| !new_ids.contains(&i.archive))
        .collect();
    let on_disk: IdSet = repo.list_indexes()?.into_iter().collect();
    let mut gone = 0usize;
    for idx in old.iter().filter(|i| on_disk.contains(&i.archive)) {
        repo.remove_index(&idx.archive).map_err(|e| {
            changes(
                e,
                format!("removed {gone} index file(s) of unused archives"),
            )
        })?;
        gone += 1;
    }
    repo.backend().sync(ObjectKind::Index)?;
    crate::fault::point("prune.after_index_delete");
    for (deleted, idx) in old.iter().enumerate() {
        repo.remove_archive(&idx.archive).map_err(|e| {
            changes(
                e,
                format!(
                    "removed {gone} index file(s) and {deleted} unused archive(s) (their data is referenced by no snapshot)"
                ),
            )
        })?;
    }
    // Indexes of archives that are gone, unless a repack just wrote that very archive again.
    for id in stale_indexes.iter().filter(|id| !new_ids.contains(id)) {
        repo.remove_index(id)?;
    }
    repo.backend().remove_leftovers(false)?;
    repo.backend().sync(ObjectKind::Archive)?;
    repo.backend().sync(ObjectKind::Index)?;
    summary.bytes_freed = (freed_old + leftover_bytes) as i64 - written as i64;
    Ok(summary)
}
