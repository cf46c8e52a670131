//! Content-addressed blob store over pack archives: which blobs exist and where (from the
//! index files), reading a blob with verification, and writing new blobs into archives.

use std::fs::File;
use std::path::PathBuf;

use crate::archive::{self, ArchiveIndex, ArchiveWriter, CompressedFrame, FrameEntry};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::{BlobId, IdMap};
use crate::repo::Repository;

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

/// Every blob of the repository and where it lies, loaded from `index/`.
#[derive(Debug, Default)]
pub struct BlobIndex {
    /// Archive ids, in the order their indexes were loaded.
    pub archives: Vec<BlobId>,
    /// Blob id to location (the first archive holding it wins).
    pub blobs: IdMap<BlobLocation>,
}

impl BlobIndex {
    /// Loads every index file. An index that does not parse is corruption.
    ///
    /// # Errors
    /// I/O errors and [`Error::Corrupt`].
    pub fn load(repo: &Repository) -> Result<BlobIndex> {
        let mut out = BlobIndex::default();
        for idx in load_indexes(repo)? {
            out.add(&idx);
        }
        Ok(out)
    }

    /// Adds one archive's index.
    pub fn add(&mut self, idx: &ArchiveIndex) {
        let archive = self.archives.len() as u32;
        self.archives.push(idx.archive);
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
}

/// Reads and parses every index file, in name order.
///
/// # Errors
/// I/O errors and [`Error::Corrupt`] naming the bad index.
pub fn load_indexes(repo: &Repository) -> Result<Vec<ArchiveIndex>> {
    let dir = repo.index_dir();
    let names = fsutil::list_names(&dir, ".json")?;
    let decode = |name: &String| -> Result<ArchiveIndex> {
        let path = dir.join(name);
        let idx = ArchiveIndex::decode(&fsutil::read(&path)?, &path.display().to_string())?;
        if format!("{}.json", idx.archive.to_hex()) != *name {
            return Err(Error::corrupt(format!(
                "index {} describes archive {}",
                path.display(),
                idx.archive
            )));
        }
        Ok(idx)
    };
    use rayon::prelude::*;
    names.par_iter().map(decode).collect()
}

/// Reads blobs, keeping the last decompressed frame and open archive so that reading the
/// blobs of one frame in sequence decompresses it once.
pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a BlobIndex,
    open: Option<(u32, File, PathBuf)>,
    frame: Option<(u32, u64, Vec<u8>)>,
}

impl<'a> BlobReader<'a> {
    /// A reader over `index`.
    pub fn new(repo: &'a Repository, index: &'a BlobIndex) -> Self {
        BlobReader {
            repo,
            index,
            open: None,
            frame: None,
        }
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
        let loc = self
            .locate(id)
            .ok_or_else(|| Error::corrupt(format!("blob {id} is referenced but not indexed")))?;
        let frame = self.frame_data(loc.archive, &loc.frame)?;
        let start = loc.offset as usize;
        let data = &frame[start..start + loc.length as usize];
        let actual = BlobId::of(data);
        if actual != *id {
            return Err(Error::CorruptBlob {
                expected: *id,
                actual,
            });
        }
        Ok(data.to_vec())
    }

    fn frame_data(&mut self, archive: u32, frame: &FrameEntry) -> Result<&[u8]> {
        let cached =
            matches!(&self.frame, Some((a, off, _)) if *a == archive && *off == frame.offset);
        if !cached {
            if !matches!(&self.open, Some((a, _, _)) if *a == archive) {
                let id = self.index.archives[archive as usize];
                let path = self.repo.archive_path(&id);
                let file = File::open(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Error::corrupt(format!("archive {} is missing", path.display()))
                    } else {
                        Error::io(&path)(e)
                    }
                })?;
                self.open = Some((archive, file, path));
            }
            let (_, file, path) = self.open.as_mut().expect("archive was just opened");
            let data = archive::read_frame(file, path, frame)?;
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
            self.current = Some(ArchiveWriter::create(&self.repo.archives_dir())?);
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
            write_index(&self.repo, &idx)?;
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

/// Persists one archive's index atomically.
///
/// # Errors
/// I/O errors.
pub fn write_index(repo: &Repository, idx: &ArchiveIndex) -> Result<()> {
    let json = serde_json::to_vec(idx).expect("index serialises");
    fsutil::write_atomic(&repo.index_path(&idx.archive), &json)
}
