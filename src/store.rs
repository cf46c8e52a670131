//! Content-addressed blob store over pack archives: which blobs exist and where (from the
//! index files), reading a blob with verification, and writing new blobs into archives.

use crate::archive::{self, ArchiveIndex, ArchiveWriter, CompressedFrame, FrameEntry};
use crate::backend::{ObjectKind, ObjectRead};
use crate::error::{Error, Result};
use crate::id::{BlobId, IdMap, IdSet};
use crate::repo::layout;
use crate::repo::{Damaged, Repository};

/// Where a blob lies.
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    /// Position of the archive in [`BlobIndex::archives`].
    pub archive: u32,
    /// The frame holding the blob.
    pub frame: FrameEntry,
    /// Offset of the blob in the decompressed frame.
    pub offset: u64,
    /// Blob length.
    pub length: u64,
}

/// One blob of [`BlobIndex`]: fixed size, no pointers, 44 bytes. Its place in the
/// decompressed frame fits 32 bits: a frame holds at most [`crate::archive::MAX_FRAME_RAW`]
/// bytes, which every index is checked against as it is read. Its archive is its frame's.
#[derive(Debug, Clone, Copy)]
struct IndexedBlob {
    id: BlobId,
    /// Position in [`BlobIndex::frames`].
    frame: u32,
    offset: u32,
    length: u32,
}

impl IndexedBlob {
    /// The blob `b` of an archive's index; None when its place does not fit 32 bits (no
    /// index that was checked has one).
    fn of(b: &crate::archive::BlobEntry, first_frame: u32) -> Option<IndexedBlob> {
        Some(IndexedBlob {
            id: b.id,
            frame: first_frame + b.frame,
            offset: u32::try_from(b.offset).ok()?,
            length: u32::try_from(b.length).ok()?,
        })
    }
}

/// Every blob of the repository and where it lies, loaded from `index/`: only blobs whose
/// archive is present count, so nothing is trusted that is not there to be read.
#[derive(Debug, Default)]
pub struct BlobIndex {
    /// Archive ids, in the order their indexes were loaded.
    pub archives: Vec<BlobId>,
    /// Each archive's size, as its index says (parallel to `archives`).
    pub sizes: Vec<u64>,
    /// Each sealed archive's salt (parallel to `archives`).
    pub salts: Vec<Option<crate::archive::Salt>>,
    /// Every frame of the indexed archives: a blob names its frame by position here.
    frames: Vec<FrameEntry>,
    /// The archive of each frame (parallel to `frames`), by position in `archives`.
    frame_archives: Vec<u32>,
    /// Blob id to location, sorted by id, one per id (the first archive holding it wins):
    /// 44 bytes a blob, searched by the id's first bits then by halves.
    blobs: Vec<IndexedBlob>,
    /// `buckets[k]..buckets[k + 1]`: where the ids whose first `bits` bits are `k` lie in
    /// `blobs`. About one blob a bucket: a lookup touches the table and a blob or two.
    buckets: Vec<u32>,
    /// Bits of an id that pick its bucket.
    bits: u32,
    /// Blobs added after the sorted list was built ([`BlobIndex::add`]), by id.
    recent: IdMap<IndexedBlob>,
    /// Index files that could not be used (they do not parse or verify): set aside, their
    /// archives counted as unindexed. `rebuild-index` rewrites them.
    pub damaged: Vec<Damaged>,
    /// Archives an index describes but that are not in `archives/`: their blobs count as
    /// absent (a snapshot then reads and stores those files again).
    pub missing_archives: Vec<BlobId>,
    /// Archives present without a usable index.
    pub unindexed_archives: Vec<BlobId>,
}

impl BlobIndex {
    /// Loads every usable index of an archive that is present. One damaged index or one
    /// missing archive costs only the blobs it describes: they are listed in
    /// [`BlobIndex::damaged`] and [`BlobIndex::missing_archives`], not fatal.
    ///
    /// # Errors
    /// I/O errors listing or reading the folders.
    pub fn load(repo: &Repository) -> Result<BlobIndex> {
        // Indexes are listed before archives: writers go archive -> index, so every index
        // listed has its archive in the later listing, whatever snapshot runs beside us (an
        // archive written in between merely shows without its index).
        let (indexes, damaged) = load_indexes(repo)?;
        let present: IdSet = repo
            .list_archives()?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut out = BlobIndex {
            damaged,
            ..BlobIndex::default()
        };
        let mut indexed = IdSet::default();
        let mut usable = Vec::with_capacity(indexes.len());
        for idx in indexes {
            indexed.insert(idx.archive);
            if present.contains(&idx.archive) {
                usable.push(idx);
            } else {
                out.missing_archives.push(idx.archive);
            }
        }
        // By value: each index's blob list is freed once it is copied into the sorted list,
        // so the two are never held whole at once.
        out.build(usable);
        out.unindexed_archives = present
            .into_iter()
            .filter(|a| !indexed.contains(a))
            .collect();
        out.unindexed_archives.sort();
        Ok(out)
    }

    /// An index of `indexes` (in that order: the first archive holding a blob wins).
    pub fn of<I: std::borrow::Borrow<ArchiveIndex>>(
        indexes: impl IntoIterator<Item = I>,
    ) -> BlobIndex {
        let mut out = BlobIndex::default();
        out.build(indexes);
        out
    }

    /// Builds the sorted list from `indexes` (borrowed or owned), replacing what it held.
    fn build<I: std::borrow::Borrow<ArchiveIndex>>(
        &mut self,
        indexes: impl IntoIterator<Item = I>,
    ) {
        let indexes: Vec<I> = indexes.into_iter().collect();
        // Sized once: growing by doubling would hold up to twice the list at its peak.
        let total = indexes.iter().map(|i| i.borrow().blobs.len()).sum();
        let mut blobs: Vec<IndexedBlob> = Vec::with_capacity(total);
        for idx in indexes {
            let idx = idx.borrow();
            let first_frame = self.frames.len() as u32;
            self.push_archive(idx);
            blobs.extend(
                idx.blobs
                    .iter()
                    .filter_map(|b| IndexedBlob::of(b, first_frame)),
            );
        }
        // Among copies of one blob, the first archive's comes first and stays. Sorted in
        // place: a stable sort would take a scratch copy as large as the list.
        // The first eight bytes as a number settle nearly every comparison without a
        // byte-by-byte compare of the whole id.
        blobs.sort_unstable_by(|a, b| {
            crate::id::id_order(&a.id, &b.id)
                .then_with(|| (a.frame, a.offset).cmp(&(b.frame, b.offset)))
        });
        blobs.dedup_by(|later, first| later.id == first.id);
        blobs.shrink_to_fit();
        let bits = (usize::BITS - blobs.len().leading_zeros()).clamp(4, 24);
        let mut buckets = vec![0u32; (1 << bits) + 1];
        for b in &blobs {
            buckets[bucket_of(&b.id, bits) + 1] += 1;
        }
        for k in 1..buckets.len() {
            buckets[k] += buckets[k - 1];
        }
        self.blobs = blobs;
        self.buckets = buckets;
        self.bits = bits;
        self.recent.clear();
    }

    /// Records an archive and its frames.
    fn push_archive(&mut self, idx: &ArchiveIndex) {
        let archive = self.archives.len() as u32;
        self.archives.push(idx.archive);
        self.sizes.push(idx.size);
        self.salts.push(idx.salt());
        self.frames.extend_from_slice(&idx.frames);
        self.frame_archives.resize(self.frames.len(), archive);
    }

    /// Adds one archive's index (an archive just written): its blobs not already indexed.
    pub fn add(&mut self, idx: &ArchiveIndex) {
        let first_frame = self.frames.len() as u32;
        self.push_archive(idx);
        for b in &idx.blobs {
            if self.find(&b.id).is_none() {
                if let Some(blob) = IndexedBlob::of(b, first_frame) {
                    self.recent.insert(b.id, blob);
                }
            }
        }
    }

    fn find(&self, id: &BlobId) -> Option<&IndexedBlob> {
        self.slot(id)
            .map(|i| &self.blobs[i])
            .or_else(|| self.recent.get(id))
    }

    /// The blob's place in the sorted list, `0..`[`BlobIndex::slots`]: a dense number a
    /// caller can keep one bit for. None when the blob is not indexed, or was added after
    /// the list was built ([`BlobIndex::add`]).
    pub fn slot(&self, id: &BlobId) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let k = bucket_of(id, self.bits);
        let start = self.buckets[k] as usize;
        let span = &self.blobs[start..self.buckets[k + 1] as usize];
        // The first eight bytes as a number settle nearly every comparison.
        span.binary_search_by(|b| crate::id::id_order(&b.id, id))
            .ok()
            .map(|i| start + i)
    }

    /// How many slots the sorted list has.
    pub fn slots(&self) -> usize {
        self.blobs.len()
    }

    /// Every blob of the sorted list in slot order, and where it lies.
    pub fn iter_slots(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.blobs.iter().map(|b| (b.id, self.location(b)))
    }

    fn location(&self, b: &IndexedBlob) -> BlobLocation {
        BlobLocation {
            archive: self.frame_archives[b.frame as usize],
            frame: self.frames[b.frame as usize],
            offset: u64::from(b.offset),
            length: u64::from(b.length),
        }
    }

    /// Where the blob lies, if it is indexed.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.find(id).map(|b| self.location(b))
    }

    /// Whether the blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.find(id).is_some()
    }

    /// Number of blobs indexed.
    pub fn len(&self) -> usize {
        self.blobs.len() + self.recent.len()
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every blob and where it lies.
    pub fn iter(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.blobs
            .iter()
            .chain(self.recent.values())
            .map(|b| (b.id, self.location(b)))
    }

    /// Why a blob may be missing from this index, in words (damaged indexes, missing or
    /// unindexed archives), for the error that says it is; empty when nothing is known.
    pub fn why_unindexed(&self) -> String {
        let mut why: Vec<String> = self
            .damaged
            .iter()
            .map(|d| format!("{} cannot be used: {}", d.file, d.error))
            .collect();
        why.extend(
            self.missing_archives
                .iter()
                .map(|a| format!("archive {} is missing", a.to_hex())),
        );
        why.extend(
            self.unindexed_archives
                .iter()
                .map(|a| format!("archive {} has no index", a.to_hex())),
        );
        if why.is_empty() {
            String::new()
        } else {
            format!(
                " (perhaps because {}; run `cachevault rebuild-index`)",
                why.join("; ")
            )
        }
    }

    /// Warnings a writer should give: data it cannot trust and will store again.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .missing_archives
            .iter()
            .map(|a| {
                format!(
                    "archive {} is missing: files whose data it held are read and stored again",
                    a.to_hex()
                )
            })
            .collect();
        out.extend(self.damaged.iter().map(|d| {
            format!(
                "{} cannot be used ({}); its archive counts as unindexed: run `cachevault rebuild-index`",
                d.file, d.error
            )
        }));
        out
    }
}

/// The bucket of `id` in [`BlobIndex`]: its first `bits` bits.
fn bucket_of(id: &BlobId, bits: u32) -> usize {
    (id.head() >> (64 - bits)) as usize
}

/// Reads and parses every index file, in name order: the usable ones, and the damaged ones
/// with what is wrong.
///
/// # Errors
/// I/O errors listing the folder; a damaged index is not an error.
pub fn load_indexes(repo: &Repository) -> Result<(Vec<ArchiveIndex>, Vec<Damaged>)> {
    let ids = repo.list_indexes()?;
    use rayon::prelude::*;
    let results: Vec<(BlobId, Result<ArchiveIndex>)> = repo.reading(|| {
        ids.par_iter()
            .map(|id| (*id, repo.read_index(id)))
            .collect()
    });
    let mut good = Vec::with_capacity(results.len());
    let mut bad = Vec::new();
    for (id, r) in results {
        match r {
            Ok(idx) => good.push(idx),
            // Gone since the listing (a concurrent prune holds no lock we conflict with
            // only when we are a reader): not there, not damaged.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            // A newer format is not damage: it is refused (upgrade cachevault), never rewritten.
            Err(e) if e.is_corruption() => bad.push(Damaged {
                file: ObjectKind::Index.path_of(&layout::index(&id)),
                error: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((good, bad))
}

/// Who verifies the bytes [`BlobReader::read_located`] hands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The reader, against the blob's id.
    Blob,
    /// The caller, who hashes every byte against a hash it trusts before using them.
    ByCaller,
}

/// Reads blobs, keeping the last decompressed frame and open archive so that reading the
/// blobs of one frame in sequence decompresses it once.
pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a BlobIndex,
    open: Option<(u32, Box<dyn ObjectRead>, String)>,
    frame: Option<(u32, u64, Vec<u8>)>,
    /// Spans of archives the next reads lie in ([`BlobReader::prefetch`]).
    spans: Vec<(u32, u64, u64)>,
    codec: archive::FrameCodec,
    ids: crate::crypto::IdHasher,
}

/// The largest span of one archive [`BlobReader::prefetch`] asks for at once.
const PREFETCH_MAX: u64 = 16 << 20;

impl<'a> BlobReader<'a> {
    /// A reader over `index`.
    pub fn new(repo: &'a Repository, index: &'a BlobIndex) -> Self {
        BlobReader {
            repo,
            index,
            open: None,
            frame: None,
            spans: Vec::new(),
            codec: repo.frame_codec(),
            ids: repo.ids(),
        }
    }

    /// Says which blobs are read next: per archive, the span of their frames is fetched in
    /// one request when the archive is opened (for repositories across a network; a local
    /// file ignores it). Spans larger than 16 MiB are left to frame-by-frame reads.
    pub fn prefetch<'b>(&mut self, ids: impl IntoIterator<Item = &'b BlobId>) {
        let index = self.index;
        self.prefetch_located(ids.into_iter().filter_map(|id| index.get(id)));
    }

    /// As [`BlobReader::prefetch`], for blobs already located.
    pub fn prefetch_located(&mut self, locations: impl IntoIterator<Item = BlobLocation>) {
        let mut spans: Vec<(u32, u64, u64)> = Vec::new();
        for l in locations {
            let (start, end) = (l.frame.offset, l.frame.offset + l.frame.length);
            match spans.iter_mut().find(|s| s.0 == l.archive) {
                Some(s) => {
                    s.1 = s.1.min(start);
                    s.2 = s.2.max(end);
                }
                None => spans.push((l.archive, start, end)),
            }
        }
        spans.retain(|s| s.2 - s.1 <= PREFETCH_MAX);
        self.spans = spans;
        // The archive already open serves its span now.
        if let Some((a, obj, _)) = self.open.as_mut() {
            if let Some(s) = self.spans.iter().find(|s| s.0 == *a) {
                let _ = obj.prefetch(s.1, s.2 - s.1);
            }
        }
    }

    /// Whether blob ids are keyed (an encrypted repository): then no id is the plain hash of
    /// its content.
    pub fn keyed(&self) -> bool {
        self.ids.is_keyed()
    }

    /// Where the blob lies, if stored.
    pub fn locate(&self, id: &BlobId) -> Option<BlobLocation> {
        self.index.get(id)
    }

    /// Reads one blob and verifies that its content hashes to `id`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the blob is not indexed or its frame does not decompress,
    /// [`Error::CorruptBlob`] when the content does not match, I/O errors.
    pub fn read(&mut self, id: &BlobId) -> Result<Vec<u8>> {
        self.read_with(id, <[u8]>::to_vec)
    }

    /// As [`BlobReader::read`], handing the verified bytes to `f` where they lie, uncopied.
    ///
    /// # Errors
    /// As [`BlobReader::read`].
    pub fn read_with<R>(&mut self, id: &BlobId, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let loc = self.locate(id).ok_or_else(|| {
            Error::corrupt(format!(
                "blob {id} is referenced but not indexed{}",
                self.index.why_unindexed()
            ))
        })?;
        self.read_located(id, &loc, Verify::Blob, f)
    }

    /// As [`BlobReader::read_with`], for a blob already located at `loc`. With
    /// [`Verify::ByCaller`] the bytes are handed on unchecked: the caller hashes every one
    /// of them against a hash it trusts (a whole file's) before it makes any use of them.
    ///
    /// # Errors
    /// As [`BlobReader::read`].
    pub fn read_located<R>(
        &mut self,
        id: &BlobId,
        loc: &BlobLocation,
        verify: Verify,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let ids = self.ids;
        let frame = self.frame_data(loc.archive, &loc.frame)?;
        let start = loc.offset as usize;
        let data = frame
            .get(start..start.saturating_add(loc.length as usize))
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "blob {id} lies past the end of its frame ({} bytes)",
                    frame.len()
                ))
            })?;
        if verify == Verify::Blob {
            let actual = ids.of(data);
            if actual != *id {
                return Err(Error::CorruptBlob {
                    expected: *id,
                    actual,
                });
            }
        }
        Ok(f(data))
    }

    fn frame_data(&mut self, archive: u32, frame: &FrameEntry) -> Result<&[u8]> {
        let cached =
            matches!(&self.frame, Some((a, off, _)) if *a == archive && *off == frame.offset);
        if !cached {
            if !matches!(&self.open, Some((a, _, _)) if *a == archive) {
                let id = self.index.archives[archive as usize];
                let what = self
                    .repo
                    .describe(ObjectKind::Archive, &layout::archive(&id));
                let size = self.index.sizes[archive as usize];
                let obj = self.repo.open_archive_sized(&id, size).map_err(|e| {
                    if e.is_not_found() {
                        Error::corrupt(format!("archive {what} is missing"))
                    } else {
                        e
                    }
                })?;
                let mut obj = obj;
                if let Some(s) = self.spans.iter().find(|s| s.0 == archive) {
                    // Only a hint: a failure here shows again, named, on the read itself.
                    let _ = obj.prefetch(s.1, s.2 - s.1);
                }
                self.open = Some((archive, obj, what));
            }
            let (_, obj, what) = self.open.as_mut().expect("archive was just opened");
            let salt = self.index.salts.get(archive as usize).copied().flatten();
            let data = archive::read_frame(obj.as_mut(), what, frame, &self.codec, salt)?;
            self.frame = Some((archive, frame.offset, data));
        }
        Ok(&self.frame.as_ref().expect("frame was just read").2)
    }
}

/// Appends compressed frames to archives, closing each archive (and writing its index)
/// once it reaches the repository's target size. Write order: archive, fsync, index, fsync.
pub struct PackWriter {
    repo: Repository,
    current: Option<ArchiveWriter>,
    written: Vec<ArchiveIndex>,
    /// Whether [`PackWriter::finish`] returns the indexes written (else each is dropped
    /// once stored: memory does not grow with what is written).
    keep_indexes: bool,
    /// Compressed bytes written.
    pub bytes_written: u64,
}

impl PackWriter {
    /// A writer that creates archives in `repo`.
    pub fn new(repo: &Repository) -> Self {
        PackWriter {
            repo: repo.clone(),
            current: None,
            written: Vec::new(),
            keep_indexes: true,
            bytes_written: 0,
        }
    }

    /// A writer whose [`PackWriter::finish`] returns no indexes: each is dropped once it
    /// is stored.
    pub fn storing_only(repo: &Repository) -> Self {
        PackWriter {
            keep_indexes: false,
            ..PackWriter::new(repo)
        }
    }

    /// Appends one frame.
    ///
    /// # Errors
    /// I/O errors (including a full disk); the unfinished archive is then abandoned.
    pub fn add(&mut self, frame: CompressedFrame) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(ArchiveWriter::create(
                self.repo.shared_backend(),
                self.repo.frame_codec(),
            )?);
        }
        let w = self.current.as_mut().expect("archive writer exists");
        self.bytes_written += frame.data.len() as u64;
        w.add(frame)?;
        if w.size() >= self.repo.config().archive_target_size {
            self.close_current()?;
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let idx = w.finish(self.repo.config().zstd_level)?;
            crate::fault::point("archive.before_index");
            self.repo.write_index(&idx)?;
            if self.keep_indexes {
                self.written.push(idx);
            }
        }
        Ok(())
    }

    /// Closes the last archive and returns the indexes of every archive written (none for
    /// [`PackWriter::storing_only`]).
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish(mut self) -> Result<Vec<ArchiveIndex>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.written))
    }

    /// Drops the unfinished archive (its temp file is removed); finished ones stay as
    /// unreferenced data for prune.
    pub fn abandon(mut self) {
        if let Some(w) = self.current.take() {
            w.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::BlobEntry;

    fn id(n: u32) -> BlobId {
        BlobId::of(&n.to_le_bytes())
    }

    /// An archive index naming `blobs`, one frame per blob, each blob at `offset` `n`.
    fn archive(name: u32, blobs: &[u32]) -> ArchiveIndex {
        ArchiveIndex {
            version: archive::INDEX_VERSION,
            archive: id(1_000_000 + name),
            size: 100,
            frames: blobs
                .iter()
                .map(|&n| FrameEntry {
                    offset: u64::from(n),
                    length: 1,
                    raw_length: 1,
                })
                .collect(),
            blobs: blobs
                .iter()
                .enumerate()
                .map(|(i, &n)| BlobEntry {
                    id: id(n),
                    frame: i as u32,
                    offset: u64::from(n),
                    length: u64::from(name),
                })
                .collect(),
            salt: None,
        }
    }

    /// The index's room per blob: what a snapshot of a large tree holds for the whole run.
    #[test]
    fn an_indexed_blob_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<IndexedBlob>(), 44);
        let b = BlobEntry {
            id: id(1),
            frame: 0,
            offset: u64::from(u32::MAX) + 1,
            length: 1,
        };
        assert!(
            IndexedBlob::of(&b, 0).is_none(),
            "a place past 32 bits is refused"
        );
    }

    #[test]
    fn every_blob_is_found_where_its_first_archive_holds_it() {
        let a = archive(1, &(0..3000).collect::<Vec<_>>());
        let b = archive(2, &(2000..6000).collect::<Vec<_>>());
        let index = BlobIndex::of([&a, &b]);
        assert_eq!(index.len(), 6000);
        for n in 0..6000u32 {
            let l = index
                .get(&id(n))
                .unwrap_or_else(|| panic!("blob {n} not found"));
            // Blobs in both archives belong to the first: archive 0, whose `length` is 1.
            let (archive, length) = if n < 3000 { (0, 1) } else { (1, 2) };
            assert_eq!((l.archive, l.length), (archive, length), "blob {n}");
            assert_eq!((l.offset, l.frame.offset), (u64::from(n), u64::from(n)));
        }
        for n in 6000..7000u32 {
            assert!(!index.contains(&id(n)), "blob {n} is not stored");
        }
        assert_eq!(index.iter().count(), 6000);
        let mut ids: Vec<BlobId> = index.iter().map(|(i, _)| i).collect();
        ids.dedup();
        assert_eq!(ids.len(), 6000, "one location per blob");
    }

    /// Slots number the sorted blobs densely, one each, in the order `iter_slots` gives
    /// them; a blob added later has none.
    #[test]
    fn every_sorted_blob_has_its_own_slot() {
        let a = archive(1, &(0..3000).collect::<Vec<_>>());
        let b = archive(2, &(2000..5000).collect::<Vec<_>>());
        let mut index = BlobIndex::of([&a, &b]);
        assert_eq!(index.slots(), 5000);
        let mut seen = vec![false; index.slots()];
        for n in 0..5000u32 {
            let slot = index
                .slot(&id(n))
                .unwrap_or_else(|| panic!("blob {n} has no slot"));
            assert!(!seen[slot], "slot {slot} given twice");
            seen[slot] = true;
            let (at, loc) = index.iter_slots().nth(slot).expect("slot in range");
            assert_eq!(at, id(n));
            assert_eq!(Some(loc.archive), index.get(&id(n)).map(|l| l.archive));
        }
        assert!(index.slot(&id(5000)).is_none());
        index.add(&archive(3, &[7000]));
        assert!(index.contains(&id(7000)) && index.slot(&id(7000)).is_none());
        assert_eq!(index.slots(), 5000);
    }

    #[test]
    fn blobs_added_later_are_found_and_never_move_a_stored_one() {
        let a = archive(1, &[1, 2, 3]);
        let mut index = BlobIndex::of([&a]);
        index.add(&archive(5, &[3, 4]));
        index.add(&archive(6, &[4, 7]));
        assert_eq!(index.len(), 5);
        assert_eq!(index.get(&id(3)).map(|l| l.archive), Some(0));
        assert_eq!(
            index.get(&id(4)).map(|l| (l.archive, l.length)),
            Some((1, 5))
        );
        assert_eq!(
            index.get(&id(7)).map(|l| (l.archive, l.length)),
            Some((2, 6))
        );
        assert!(!index.contains(&id(8)));
        assert_eq!(index.iter().count(), 5);
        // An empty index answers too.
        let empty = BlobIndex::default();
        assert!(!empty.contains(&id(1)) && empty.is_empty());
    }
}
