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

/// What [`preflight`] proved: the archives to prune, where every blob lies, and which blobs
/// are live.
pub struct Preflight {
    /// Present archives, in the order of `index`'s archives: those with an index in
    /// `index/`, then those whose index was rebuilt.
    pub archives: Vec<ArchiveUse>,
    /// How many of `archives` had their index rebuilt from the archive (not yet written).
    pub rebuilt: usize,
    /// Every blob of `archives`, one copy each: the first archive holding it.
    pub index: BlobIndex,
    /// Indexes whose archive is gone (nothing references their blobs).
    pub stale_indexes: Vec<BlobId>,
    /// Which blobs of `index` a snapshot references.
    pub live: LiveSet,
    /// Snapshots read.
    pub snapshots: usize,
}

/// One present archive as prune weighs it. Its blobs are in [`Preflight::index`]; the
/// index's own list of them is kept only where it is still to be written (rebuilt), so the
/// blobs are held once.
pub struct ArchiveUse {
    /// The archive's index; its `blobs` emptied unless it was rebuilt.
    pub index: ArchiveIndex,
    /// How many blobs its index lists (copies of blobs an earlier archive holds too).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// One bit per slot of a [`BlobIndex`]: whether a snapshot references that blob. Set from
/// many threads at once without a lock; an eighth of a byte a blob, where a set of ids
/// took about seventy.
pub struct LiveSet {
    words: Vec<std::sync::atomic::AtomicU64>,
}

impl LiveSet {
    /// An empty set for `slots` blobs.
    pub fn new(slots: usize) -> LiveSet {
        LiveSet {
            words: (0..slots.div_ceil(64))
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    /// Marks `slot` live.
    pub fn insert(&self, slot: usize) {
        self.words[slot / 64].fetch_or(1 << (slot % 64), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `slot` is live.
    pub fn contains(&self, slot: usize) -> bool {
        self.words[slot / 64].load(std::sync::atomic::Ordering::Relaxed) & (1 << (slot % 64)) != 0
    }

    /// How many slots are live.
    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|w| w.load(std::sync::atomic::Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    /// Whether no slot is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    // The blobs are now in `index`: each index keeps its counts, and its list only where
    // it is still to be written.
    let read = indexes.len() - rebuilt;
    let archives: Vec<ArchiveUse> = indexes
        .into_iter()
        .enumerate()
        .map(|(i, mut idx)| {
            let blobs = idx.blobs.len();
            let bytes = idx.blobs.iter().map(|b| b.length).sum();
            if i < read {
                idx.blobs = Vec::new();
            }
            ArchiveUse {
                index: idx,
                blobs,
                bytes,
            }
        })
        .collect();
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
    // held whole, only a bit per indexed blob.
    let unindexed_blob = |id: &BlobId, b: &BlobId| {
        refuse(format!(
            "snapshot {} references blob {} that is in no index of a present archive; run `cachevault rebuild-index`, then `cachevault repair-snapshots`",
            id.short(),
            b.short()
        ))
    };
    let snapshots = listing.snapshots.len();
    let order: Vec<BlobId> = listing.snapshots.iter().map(|(id, _)| *id).collect();
    let live = LiveSet::new(index.slots());
    let unindexed = std::sync::Mutex::new(IdMap::default());
    for (id, header) in &listing.snapshots {
        for b in header.tree_blobs() {
            live.insert(index.slot(b).ok_or_else(|| unindexed_blob(id, b))?);
        }
    }
    let streamed = repo.reading(|| {
        crate::snapshot::stream_shared(repo, &index, listing.snapshots, |id, _| LiveBlobs {
            id: *id,
            index: &index,
            live: &live,
            unindexed: &unindexed,
        })
    });
    let mut failed: IdMap<Error> = IdMap::default();
    for (id, done) in streamed {
        if let Err(e) = done {
            failed.insert(id, e);
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
    Ok(Preflight {
        archives,
        rebuilt,
        index,
        stale_indexes,
        live,
        snapshots,
    })
}

/// Marks the blobs one snapshot's entries reference in the shared live set; a blob in no
/// index stops the list and is noted.
struct LiveBlobs<'a> {
    id: BlobId,
    index: &'a BlobIndex,
    live: &'a LiveSet,
    unindexed: &'a std::sync::Mutex<IdMap<BlobId>>,
}

impl crate::snapshot::EntrySink for LiveBlobs<'_> {
    fn entry(&mut self, e: &crate::manifest::Entry) -> Result<()> {
        for b in &e.blobs {
            let Some(slot) = self.index.slot(b) else {
                self.unindexed
                    .lock()
                    .expect("unindexed lock is never poisoned")
                    .insert(self.id, *b);
                return Err(Error::corrupt(format!(
                    "{}: blob {} is in no index",
                    e.path.display(),
                    b.short()
                )));
            };
            self.live.insert(slot);
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
        archives,
        rebuilt,
        index,
        stale_indexes,
        live,
        snapshots,
    } = preflight(repo)?;
    let mut summary = PruneSummary {
        dry_run: opts.dry_run,
        snapshots,
        archives: archives.len(),
        indexes_rebuilt: rebuilt,
        ..Default::default()
    };

    // A live blob is kept by the archive the index places it in: the first one holding it.
    // Its other copies, and every blob no snapshot references, are unused.
    let mut used = vec![(0usize, 0u64); archives.len()];
    for (slot, (_, loc)) in index.iter_slots().enumerate() {
        if live.contains(slot) {
            let u = &mut used[loc.archive as usize];
            u.0 += 1;
            u.1 += loc.length;
        }
    }
    let mut to_delete: Vec<&ArchiveUse> = Vec::new();
    let mut to_repack: Vec<(&ArchiveUse, usize, u64)> = Vec::new();
    let mut kept: Vec<&ArchiveUse> = Vec::new();
    for (a, &(keep, used_bytes)) in archives.iter().zip(&used) {
        summary.blobs_removed += a.blobs - keep;
        if keep == 0 {
            to_delete.push(a);
        } else if keep < a.blobs {
            let unused = 1.0 - used_bytes as f64 / a.bytes.max(1) as f64;
            if unused > opts.max_unused {
                to_repack.push((a, keep, used_bytes));
            } else {
                summary.bytes_unused_kept += (unused * a.index.size as f64) as u64;
                kept.push(a);
            }
        } else {
            kept.push(a);
        }
    }
    drop(used);
    summary.archives_deleted = to_delete.len();
    summary.archives_repacked = to_repack.len();
    let freed_old: u64 = to_delete.iter().map(|a| a.index.size).sum::<u64>()
        + to_repack.iter().map(|(a, ..)| a.index.size).sum::<u64>();

    // Leftovers: temp files of dead writers and holder files of dead lock holders (we hold
    // the exclusive lock, so no live writer exists), and indexes whose archive is gone.
    let (stray, leftover_bytes) = repo.backend().remove_leftovers(true)?;
    summary.leftovers_removed = stray + stale_indexes.len();

    if opts.dry_run {
        let live_repack: u64 = to_repack
            .iter()
            .map(|(a, _, used)| (a.index.size as f64 * *used as f64 / a.bytes.max(1) as f64) as u64)
            .sum();
        summary.blobs_repacked = to_repack.iter().map(|(_, keep, _)| keep).sum();
        summary.bytes_freed = (freed_old + leftover_bytes) as i64 - live_repack as i64;
        return Ok(summary);
    }

    // 0. Rebuilt indexes of archives that stay are written before anything else: from now
    //    on those archives are ordinary indexed archives.
    let on_disk: IdSet = repo.list_indexes()?.into_iter().collect();
    let delete_ids: IdSet = to_delete.iter().map(|a| a.index.archive).collect();
    for a in kept.iter().chain(to_repack.iter().map(|(a, ..)| a)) {
        let idx = &a.index;
        if !on_disk.contains(&idx.archive) && !delete_ids.contains(&idx.archive) {
            // Only a rebuilt index kept its list of blobs; an index read from `index/`
            // that is no longer there (nothing else runs: the lock is exclusive) is
            // never written back emptied.
            if idx.blobs.len() != a.blobs {
                return Err(Error::corrupt(format!(
                    "the index of archive {} went from `index/` while prune ran; nothing was changed",
                    idx.archive.to_hex()
                )));
            }
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
        let total: u64 = to_repack.iter().map(|(a, ..)| a.index.size).sum();
        progress.start("repack", total);
        let level = repo.config().zstd_level;
        let mut pack = PackWriter::new(repo);
        let mut builder = FrameBuilder::default();
        // The live blobs of the archives to repack, in storage order: each archive is read
        // front to back.
        let mut repacked = vec![false; archives.len()];
        for (a, ..) in &to_repack {
            let at = archives
                .iter()
                .position(|b| std::ptr::eq(b, *a))
                .expect("an archive to repack is one of the archives");
            repacked[at] = true;
        }
        let mut copies: Vec<(u32, u64, u64, BlobId)> = index
            .iter_slots()
            .enumerate()
            .filter(|(slot, (_, loc))| repacked[loc.archive as usize] && live.contains(*slot))
            .map(|(_, (id, loc))| (loc.archive, loc.frame.offset, loc.offset, id))
            .collect();
        copies.sort_unstable();
        drop(live);
        let mut reader = BlobReader::new(repo, &index);
        let result = (|| -> Result<()> {
            for (n, &(archive, _, _, id)) in copies.iter().enumerate() {
                if n % 256 == 0 {
                    crate::cancel::check()?;
                }
                let data = reader.read(&id)?;
                builder.push(id, &data);
                summary.blobs_repacked += 1;
                if builder.is_full() {
                    pack.add(builder.compress(level)?)?;
                }
                if copies.get(n + 1).is_none_or(|next| next.0 != archive) {
                    progress.inc(index.sizes[archive as usize]);
                }
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
        .map(|a| &a.index)
        .chain(to_repack.iter().map(|(a, ..)| &a.index))
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
