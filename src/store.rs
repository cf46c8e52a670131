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
    /// Blob id to location (the first archive holding it wins).
    pub blobs: IdMap<BlobLocation>,
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
        for idx in &indexes {
            indexed.insert(idx.archive);
            if present.contains(&idx.archive) {
                out.add(idx);
            } else {
                out.missing_archives.push(idx.archive);
            }
        }
        out.unindexed_archives = present
            .into_iter()
            .filter(|a| !indexed.contains(a))
            .collect();
        out.unindexed_archives.sort();
        Ok(out)
    }

    /// Adds one archive's index.
    pub fn add(&mut self, idx: &ArchiveIndex) {
        let archive = self.archives.len() as u32;
        self.archives.push(idx.archive);
        self.sizes.push(idx.size);
        self.salts.push(idx.salt());
        self.blobs.reserve(idx.blobs.len());
        for b in &idx.blobs {
            self.blobs.entry(b.id).or_insert(BlobLocation {
                archive,
                frame: idx.frames[b.frame as usize],
                offset: b.offset,
                length: b.length,
            });
        }
    }

    /// Whether the blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
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
        let mut spans: Vec<(u32, u64, u64)> = Vec::new();
        for id in ids {
            let Some(l) = self.index.blobs.get(id) else {
                continue;
            };
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
        self.index.blobs.get(id).copied()
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
        let ids = self.ids;
        let frame = self.frame_data(loc.archive, &loc.frame)?;
        let start = loc.offset as usize;
        let data = &frame[start..start + loc.length as usize];
        let actual = ids.of(data);
        if actual != *id {
            return Err(Error::CorruptBlob {
                expected: *id,
                actual,
            });
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
            bytes_written: 0,
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
            self.written.push(idx);
        }
        Ok(())
    }

    /// Closes the last archive and returns the indexes of every archive written.
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
