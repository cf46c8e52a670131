//! Pack archives: a standard tar stream whose entries (one per blob, named by blob id) are
//! compressed as independent zstd frames closed on entry boundaries, plus the index that
//! says where each frame and blob lies. Knows nothing about snapshots; writes and reads
//! through a storage backend.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ObjectKind, ObjectRead, Staged};
use crate::crypto::{Crypto, IdHasher};
use crate::error::{Error, Result};
use crate::id::BlobId;

/// Index format version; frozen, because every repository's index files carry it.
pub const INDEX_VERSION: u32 = 1;
/// Tar block size; frozen by POSIX.
const BLOCK: usize = 512;
/// Raw bytes gathered before a frame is closed: big enough for zstd to find the repetition
/// between neighbouring JSON files, small enough that reading one blob stays cheap and a
/// damaged frame loses few files. At 512 KiB the FBA tree stores in 0.84x the time at level
/// 1 that 256 KiB took at level 3, within 0.3% of its size; 1 MiB was 1% smaller still,
/// for twice the files lost to a damaged frame.
pub const FRAME_TARGET: usize = 512 * 1024;
/// Largest decompression window accepted (128 MiB): a hostile frame cannot demand more.
const WINDOW_LOG_MAX: u32 = 27;
/// Largest decompressed frame accepted (128 MiB). The writer closes a frame at 512 KiB plus
/// one blob (at most the chunker's 1 MiB), so this is far above anything it produces, and it
/// bounds the buffer a hostile index can make a reader allocate; frozen for format v1.
pub const MAX_FRAME_RAW: u64 = 128 << 20;

/// The random salt a sealed archive's frames are bound to.
pub type Salt = [u8; 16];
/// The first bytes of a sealed archive, before its salt.
pub const SEALED_MAGIC: &[u8; 8] = b"CVSEALA1";
/// Magic and salt: where a sealed archive's first frame begins.
pub const SEALED_HEADER: u64 = 24;

fn parse_salt(s: Option<&str>) -> Option<Salt> {
    crate::crypto::unb64(s?)?.try_into().ok()
}

/// How frames are stored: as bare zstd frames (a plain repository, readable by `tar --zstd`),
/// or sealed (an encrypted one): `u32` little-endian length, then the zstd frame sealed with
/// the archive's salt and the frame's offset as associated data, so that a frame moved to
/// another archive or another place in this one fails to authenticate.
#[derive(Clone, Debug, Default)]
pub struct FrameCodec {
    crypto: Option<std::sync::Arc<Crypto>>,
}

impl FrameCodec {
    /// The codec of a plain repository.
    pub fn plain() -> FrameCodec {
        FrameCodec::default()
    }

    /// The codec of an encrypted repository.
    pub fn sealed(crypto: std::sync::Arc<Crypto>) -> FrameCodec {
        FrameCodec {
            crypto: Some(crypto),
        }
    }

    /// How blob ids are made.
    pub fn ids(&self) -> IdHasher {
        self.crypto.as_ref().map_or(IdHasher::PLAIN, |c| c.ids())
    }

    fn aad(salt: &Salt, offset: u64) -> Vec<u8> {
        let mut aad = b"cachevault frame v1\0".to_vec();
        aad.extend_from_slice(salt);
        aad.extend_from_slice(&offset.to_le_bytes());
        aad
    }

    /// Decodes the stored bytes of frame `f` of an archive with `salt` into its raw tar bytes,
    /// bounded as [`decompress_frame`] is.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming `what` when the frame does not authenticate or decompress.
    pub fn decode(
        &self,
        salt: Option<Salt>,
        f: &FrameEntry,
        stored: &[u8],
        what: &str,
    ) -> Result<Vec<u8>> {
        let opened;
        let compressed = match &self.crypto {
            None => stored,
            Some(c) => {
                let salt = salt.ok_or_else(|| {
                    Error::corrupt(format!("archive {what}: its index holds no salt"))
                })?;
                let (len, sealed) = stored.split_at(stored.len().min(4));
                if len.len() < 4
                    || u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize != sealed.len()
                {
                    return Err(Error::corrupt(format!(
                        "archive {what}: frame at offset {} has a wrong length",
                        f.offset
                    )));
                }
                opened = c.frame_key(&salt).open(
                    &Self::aad(&salt, f.offset),
                    sealed,
                    &format!("archive {what} frame at offset {}", f.offset),
                )?;
                &opened
            }
        };
        decompress_frame(compressed, f.raw_length).map_err(|e| {
            Error::corrupt(format!(
                "archive {what} frame at offset {} does not decompress: {e}",
                f.offset
            ))
        })
    }
}

/// Where one frame lies in an archive.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrameEntry {
    /// Byte offset of the compressed frame in the archive file.
    pub offset: u64,
    /// Compressed length.
    pub length: u64,
    /// Decompressed length (tar headers, data and padding).
    pub raw_length: u64,
}

/// Where one blob lies: inside which frame, and at which offset of the decompressed frame.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobEntry {
    /// The blob's id (blake3 of its content).
    pub id: BlobId,
    /// Index into [`ArchiveIndex::frames`].
    pub frame: u32,
    /// Offset of the blob's data within the decompressed frame.
    pub offset: u64,
    /// Length of the blob's data.
    pub length: u64,
}

/// The seek table of one archive, stored as `index/<archive id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveIndex {
    /// [`INDEX_VERSION`].
    pub version: u32,
    /// blake3 of the whole archive file, which is also its name.
    pub archive: BlobId,
    /// Size of the archive file in bytes.
    pub size: u64,
    /// Frames in file order; the last one holds the tar end-of-archive marker.
    pub frames: Vec<FrameEntry>,
    /// Blobs in file order.
    pub blobs: Vec<BlobEntry>,
    /// Sealed archives (encrypted repositories): the archive's random salt, base64, which
    /// every frame's seal is bound to with its offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

impl ArchiveIndex {
    /// The salt of a sealed archive.
    pub fn salt(&self) -> Option<Salt> {
        parse_salt(self.salt.as_deref())
    }

    /// Parses and sanity-checks an index: versions, frames inside the file and in order,
    /// blobs inside their frames. `what` names the file for error messages.
    pub fn decode(bytes: &[u8], what: &str) -> Result<ArchiveIndex> {
        let idx: ArchiveIndex = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("index {what} does not parse: {e}")))?;
        if idx.version > INDEX_VERSION {
            return Err(Error::UnsupportedFormat {
                found: idx.version,
                supported: INDEX_VERSION,
            });
        }
        let mut end = 0u64;
        for (i, f) in idx.frames.iter().enumerate() {
            let frame_end = f.offset.checked_add(f.length);
            if f.offset < end || frame_end.is_none_or(|e| e > idx.size) {
                return Err(Error::corrupt(format!(
                    "index {what}: frame {i} lies outside the archive or overlaps another"
                )));
            }
            if f.raw_length > MAX_FRAME_RAW {
                return Err(Error::corrupt(format!(
                    "index {what}: frame {i} claims {} decompressed bytes, more than the {MAX_FRAME_RAW} a frame may hold",
                    f.raw_length
                )));
            }
            end = frame_end.unwrap_or(u64::MAX);
        }
        for b in &idx.blobs {
            let frame = idx.frames.get(b.frame as usize).ok_or_else(|| {
                Error::corrupt(format!("index {what}: blob {} names a missing frame", b.id))
            })?;
            if b.offset
                .checked_add(b.length)
                .is_none_or(|e| e > frame.raw_length)
            {
                return Err(Error::corrupt(format!(
                    "index {what}: blob {} lies outside its frame",
                    b.id
                )));
            }
        }
        Ok(idx)
    }
}

/// Gathers tar entries for one frame before compression.
#[derive(Default)]
pub struct FrameBuilder {
    raw: Vec<u8>,
    blobs: Vec<(BlobId, u64, u64)>,
    /// Where the entry [`FrameBuilder::stage`] read in begins, until it is kept or dropped.
    staged: Option<usize>,
}

/// The most room a [`FrameBuilder`] keeps from one frame to the next: a frame of small
/// entries and one of the largest the default chunker makes.
const ROOM_KEPT: usize = FRAME_TARGET + (1 << 20) + 4 * BLOCK;

/// A compressed frame ready to be appended to an archive.
pub struct CompressedFrame {
    /// zstd frame bytes.
    pub data: Vec<u8>,
    /// Decompressed length.
    pub raw_length: u64,
    /// Blobs in the frame: id, offset in the decompressed frame, length.
    pub blobs: Vec<(BlobId, u64, u64)>,
}

impl FrameBuilder {
    /// Appends one tar entry named by `id` holding `data`.
    pub fn push(&mut self, id: BlobId, data: &[u8]) {
        self.discard();
        self.make_room(data.len());
        self.raw
            .extend_from_slice(&tar_header(&id.to_hex(), data.len() as u64));
        let offset = self.raw.len() as u64;
        self.raw.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.raw.resize(self.raw.len() + pad, 0);
        self.blobs.push((id, offset, data.len() as u64));
    }

    /// Room for an entry of `len` bytes. Room for a whole frame at once, grown to exactly
    /// what a large entry needs past it, and kept from one frame to the next: growing by
    /// doubling copied as many bytes again as the frame holds, and a room that grew was
    /// dropped and grown again for the next frame, on fresh pages each time.
    fn make_room(&mut self, len: usize) {
        let want = (self.raw.len() + 2 * BLOCK + len).max(FRAME_TARGET + 2 * BLOCK);
        if self.raw.capacity() < want {
            self.raw.reserve_exact(want - self.raw.len());
        }
    }

    /// Reads `reader` to its end, at most `limit` bytes, straight into the frame after room
    /// for its tar header: no buffer of its own and no copy. `expect` (its size when
    /// stated) is read in one call when it is right. The caller looks at what was read,
    /// then keeps it as blob `id` ([`FrameBuilder::commit`]) or drops it
    /// ([`FrameBuilder::discard`]); a read that fails leaves nothing staged.
    ///
    /// # Errors
    /// The reader's.
    pub fn stage(
        &mut self,
        mut reader: impl std::io::Read,
        expect: u64,
        limit: u64,
    ) -> std::io::Result<&[u8]> {
        self.discard();
        let want = usize::try_from(expect.min(limit)).unwrap_or(usize::MAX);
        self.make_room(want.saturating_add(1));
        let start = self.raw.len();
        let data = start + BLOCK;
        self.staged = Some(start);
        self.raw.resize(data + want, 0);
        let mut got = 0;
        let read = loop {
            if got == want {
                // Read on to the end: a file may have grown since it was stated (its
                // caller's second look at it then tells).
                let rest = limit - got as u64;
                self.raw.truncate(data + got);
                break (&mut reader)
                    .take(rest)
                    .read_to_end(&mut self.raw)
                    .map(|_| ());
            }
            match reader.read(&mut self.raw[data + got..]) {
                Ok(0) => {
                    self.raw.truncate(data + got);
                    break Ok(());
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match read {
            Ok(()) => Ok(&self.raw[data..]),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Keeps what [`FrameBuilder::stage`] read as the entry of blob `id`.
    ///
    /// # Panics
    /// Nothing is staged.
    pub fn commit(&mut self, id: BlobId) {
        let start = self.staged.take().expect("commit follows stage");
        let len = self.raw.len() - start - BLOCK;
        self.raw[start..start + BLOCK].copy_from_slice(&tar_header(&id.to_hex(), len as u64));
        let pad = (BLOCK - len % BLOCK) % BLOCK;
        self.raw.resize(self.raw.len() + pad, 0);
        self.blobs.push((id, (start + BLOCK) as u64, len as u64));
    }

    /// Drops what [`FrameBuilder::stage`] read, if anything.
    pub fn discard(&mut self) {
        if let Some(start) = self.staged.take() {
            self.raw.truncate(start);
        }
    }

    /// Whether the frame has reached its target size.
    pub fn is_full(&self) -> bool {
        self.raw.len() >= FRAME_TARGET
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Compresses the gathered entries into one zstd frame (with content checksum) and
    /// leaves the builder empty.
    pub fn compress(&mut self, level: i32) -> Result<CompressedFrame> {
        self.discard();
        let data = compress_frame(&self.raw, level)?;
        let raw_length = self.raw.len() as u64;
        self.raw.clear();
        // Room past a frame and the largest entry of the default chunker (a chunk, or a
        // file read whole below the chunking threshold, at most 1 MiB) is not kept.
        if self.raw.capacity() > ROOM_KEPT {
            self.raw = Vec::new();
        }
        Ok(CompressedFrame {
            data,
            raw_length,
            blobs: std::mem::take(&mut self.blobs),
        })
    }
}

fn compress_frame(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level).map_err(zstd_error)?;
            c.include_checksum(true).map_err(zstd_error)?;
            *slot = Some((level, c));
        }
        let (_, c) = slot.as_mut().expect("compressor was just created");
        c.compress(raw).map_err(zstd_error)
    })
}

fn zstd_error(e: std::io::Error) -> Error {
    Error::Io {
        path: PathBuf::from("<zstd>"),
        source: e,
    }
}

fn tar_header(name: &str, size: u64) -> [u8; BLOCK] {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .expect("a 64-character hex name always fits");
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    *h.as_bytes()
}

/// Writes one archive: frames appended to a staged object (a spool file), hashed as written;
/// `finish` closes the tar stream and publishes it under its content hash.
pub struct ArchiveWriter {
    backend: std::sync::Arc<dyn Backend + 'static>,
    codec: FrameCodec,
    salt: Option<Salt>,
    staged: Option<Staged>,
    file: std::io::BufWriter<File>,
    hasher: blake3::Hasher,
    size: u64,
    frames: Vec<FrameEntry>,
    blobs: Vec<BlobEntry>,
}

impl ArchiveWriter {
    /// Starts a new archive in `backend`.
    ///
    /// # Errors
    /// I/O errors creating the spool file.
    pub fn create(
        backend: std::sync::Arc<dyn Backend + 'static>,
        codec: FrameCodec,
    ) -> Result<ArchiveWriter> {
        let mut staged = backend.stage(ObjectKind::Archive)?;
        let file = staged.file().try_clone().map_err(Error::io(&staged.path))?;
        let mut w = ArchiveWriter {
            backend,
            salt: None,
            staged: Some(staged),
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            size: 0,
            frames: Vec::new(),
            blobs: Vec::new(),
            codec,
        };
        if w.codec.crypto.is_some() {
            let mut salt = [0u8; 16];
            getrandom::getrandom(&mut salt)
                .map_err(|e| Error::Invalid(format!("the system's random source failed: {e}")))?;
            let mut header = SEALED_MAGIC.to_vec();
            header.extend_from_slice(&salt);
            w.write_raw(&header)?;
            w.salt = Some(salt);
        }
        Ok(w)
    }

    fn write_raw(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io(&self.spool())(e))?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    fn spool(&self) -> PathBuf {
        self.staged
            .as_ref()
            .map(|s| s.path.clone())
            .unwrap_or_default()
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of blobs written so far.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends a compressed frame.
    ///
    /// # Errors
    /// I/O errors (a full disk included).
    pub fn add(&mut self, frame: CompressedFrame) -> Result<()> {
        let offset = self.size;
        let stored = match (&self.codec.crypto, &self.salt) {
            (Some(c), Some(salt)) => {
                let sealed = c
                    .frame_key(salt)
                    .seal(&FrameCodec::aad(salt, offset), &frame.data);
                let mut rec = (sealed.len() as u32).to_le_bytes().to_vec();
                rec.extend_from_slice(&sealed);
                rec
            }
            _ => frame.data,
        };
        self.write_raw(&stored)?;
        let index = self.frames.len() as u32;
        self.frames.push(FrameEntry {
            offset,
            length: stored.len() as u64,
            raw_length: frame.raw_length,
        });
        self.blobs.extend(
            frame
                .blobs
                .into_iter()
                .map(|(id, offset, length)| BlobEntry {
                    id,
                    frame: index,
                    offset,
                    length,
                }),
        );
        Ok(())
    }

    /// Writes the tar end-of-archive frame and publishes the archive as `<hash>.tar.zst`,
    /// durably. Returns the index, which the caller must then persist. On failure (a full
    /// disk, say) the spool file is removed.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn finish(mut self, level: i32) -> Result<ArchiveIndex> {
        let end = compress_frame(&[0u8; 2 * BLOCK], level)?;
        self.add(CompressedFrame {
            data: end,
            raw_length: (2 * BLOCK) as u64,
            blobs: Vec::new(),
        })?;
        let spool = self.spool();
        self.file.flush().map_err(Error::io(&spool))?;
        let id = BlobId::from(self.hasher.finalize());
        crate::fault::point("archive.before_rename");
        let staged = self
            .staged
            .take()
            .expect("an unfinished writer holds its spool");
        // Dropped on failure, which removes the spool file: a leftover would keep holding
        // the space whose lack made us fail.
        self.backend
            .publish(staged, &crate::repo::layout::archive(&id))?;
        Ok(ArchiveIndex {
            version: INDEX_VERSION,
            archive: id,
            size: self.size,
            frames: std::mem::take(&mut self.frames),
            blobs: std::mem::take(&mut self.blobs),
            salt: self.salt.map(|s| crate::crypto::b64(&s)),
        })
    }

    /// Removes the unfinished spool file.
    pub fn abandon(self) {
        drop(self);
    }
}

/// Reads and decompresses one frame of an archive opened with `open` (`what` names it).
/// The output is capped at the size the index declares and the window at 128 MiB, so a
/// hostile frame ends in an error, not an OOM.
///
/// # Errors
/// [`Error::Corrupt`] for a frame beyond the end of the archive or one that does not
/// decompress; I/O errors.
pub fn read_frame(
    obj: &mut dyn ObjectRead,
    what: &str,
    frame: &FrameEntry,
    codec: &FrameCodec,
    salt: Option<Salt>,
) -> Result<Vec<u8>> {
    // The index was checked against the size it declares, not against the object: a frame
    // beyond the end must not turn into a huge allocation or a plain I/O error.
    let len = obj.len();
    if frame
        .offset
        .checked_add(frame.length)
        .is_none_or(|end| end > len)
    {
        return Err(Error::corrupt(format!(
            "archive {what}: frame at offset {} (length {}) lies beyond the end of the file ({len} bytes)",
            frame.offset, frame.length
        )));
    }
    let stored = obj.read_at(frame.offset, frame.length)?;
    codec.decode(salt, frame, &stored, what)
}

/// Decompresses a frame that must be exactly `raw_length` bytes (at most [`MAX_FRAME_RAW`]).
/// The output buffer is `raw_length` bytes: a frame that holds more (a zstd bomb) fails as
/// soon as it fills it.
///
/// The frame's own checksum (XXH64 of its content) is not checked here: every caller checks
/// each blob it takes from the frame against the blob's id, which covers every byte it
/// hands on (the checksum was 2.7% of a restore's CPU). A damaged frame shows as blobs that
/// do not match, or as a frame that does not decompress. [`salvage_archive`], which reads
/// headers no blob id covers, keeps the checksum.
pub fn decompress_frame(compressed: &[u8], raw_length: u64) -> std::io::Result<Vec<u8>> {
    if raw_length > MAX_FRAME_RAW {
        return Err(std::io::Error::other(format!(
            "a frame of {raw_length} bytes is larger than the {MAX_FRAME_RAW} allowed"
        )));
    }
    thread_local! {
        /// The thread's decompression context, kept from one frame to the next: a new
        /// one for every frame cost a restore 3-4% of its CPU (its workspace mapped,
        /// zeroed and unmapped each time).
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let out = CONTEXT.with_borrow_mut(|kept| {
        let d = match kept {
            Some(d) => d,
            None => {
                let mut d = zstd::bulk::Decompressor::new()?;
                d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
                d.set_parameter(zstd::zstd_safe::DParameter::ForceIgnoreChecksum(true))?;
                kept.insert(d)
            }
        };
        let out = d.decompress(compressed, raw_length as usize);
        if out.is_err() {
            // Not kept after a failure: the next frame starts from a new context.
            *kept = None;
        }
        out
    })?;
    if out.len() as u64 != raw_length {
        return Err(std::io::Error::other(format!(
            "frame holds {} bytes, index says {raw_length}",
            out.len()
        )));
    }
    Ok(out)
}

/// Rebuilds an archive's index from the archive alone by walking its frames and tar headers,
/// refusing anything damaged (see [`salvage_archive`] for the forgiving walk).
///
/// # Errors
/// I/O errors; [`Error::Corrupt`] at the first damaged frame, header or blob.
pub fn scan_archive(bytes: &[u8], what: &str, codec: &FrameCodec) -> Result<ArchiveIndex> {
    let scan = salvage_archive(bytes, what, codec);
    if let Some(problem) = scan.problems.first() {
        return Err(Error::corrupt(problem.clone()));
    }
    Ok(ArchiveIndex {
        version: INDEX_VERSION,
        archive: BlobId::of(bytes),
        size: bytes.len() as u64,
        frames: scan.frames,
        blobs: scan.blobs,
        salt: scan.salt.map(|s| crate::crypto::b64(&s)),
    })
}

/// What a forgiving walk of an archive found: the frames that decompress, the blobs in them
/// that hash to their names, and every problem met on the way.
#[derive(Debug, Clone, Default)]
pub struct ArchiveScan {
    /// Frames that decompressed, in file order.
    pub frames: Vec<FrameEntry>,
    /// Blobs whose content hashes to their name, in file order; `frame` indexes `frames`.
    pub blobs: Vec<BlobEntry>,
    /// Everything unreadable, in words (empty for an intact archive).
    pub problems: Vec<String>,
    /// Compressed bytes that could not be read.
    pub bytes_lost: u64,
    /// A sealed archive's salt.
    pub salt: Option<Salt>,
}

/// zstd's frame magic number, little-endian on disk; frozen by RFC 8878.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Walks an archive without trusting any index: each zstd frame is decompressed (bounded),
/// each tar header parsed and each blob re-hashed against its name. A damaged frame is
/// skipped; where frame boundaries are lost the walk resumes at the next zstd magic number.
/// Nothing unreadable is dropped without a line in [`ArchiveScan::problems`].
pub fn salvage_archive(bytes: &[u8], name: &str, codec: &FrameCodec) -> ArchiveScan {
    if codec.crypto.is_some() {
        return salvage_sealed(bytes, name, codec);
    }
    let mut scan = ArchiveScan::default();
    let ids = IdHasher::PLAIN;
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let len = match zstd::zstd_safe::find_frame_compressed_size(rest) {
            Ok(len) if len > 0 => len,
            _ => {
                let next = rest
                    .windows(4)
                    .skip(1)
                    .position(|w| w == ZSTD_MAGIC)
                    .map(|p| p + 1);
                let skipped = next.unwrap_or(rest.len());
                scan.problems.push(format!(
                    "archive {name}: {skipped} bytes at offset {offset} are not a zstd frame{}",
                    if next.is_some() {
                        "; resuming at the next frame"
                    } else {
                        " (to the end of the file)"
                    }
                ));
                scan.bytes_lost += skipped as u64;
                offset += skipped;
                continue;
            }
        };
        match decompress_bounded(&rest[..len]) {
            Ok(raw) => {
                let frame_no = scan.frames.len() as u32;
                walk_tar(&raw, name, offset, frame_no, ids, &mut scan);
                scan.frames.push(FrameEntry {
                    offset: offset as u64,
                    length: len as u64,
                    raw_length: raw.len() as u64,
                });
            }
            Err(e) => {
                scan.problems.push(format!(
                    "archive {name}: frame at offset {offset} ({len} bytes) does not decompress: {e}"
                ));
                scan.bytes_lost += len as u64;
            }
        }
        offset += len;
    }
    scan
}

/// The walk of [`salvage_archive`] over a sealed archive: frame records one after the other,
/// each authenticated, decompressed and walked; a record that does not authenticate is lost
/// and the walk goes on after it while its length stays inside the file.
fn salvage_sealed(bytes: &[u8], name: &str, codec: &FrameCodec) -> ArchiveScan {
    let mut scan = ArchiveScan::default();
    if bytes.len() < SEALED_HEADER as usize || &bytes[..8] != SEALED_MAGIC {
        scan.problems
            .push(format!("archive {name}: not a sealed archive (no header)"));
        scan.bytes_lost = bytes.len() as u64;
        return scan;
    }
    let salt: Salt = bytes[8..24].try_into().expect("16 bytes");
    scan.salt = Some(salt);
    let mut offset = SEALED_HEADER as usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let len = rest
            .get(..4)
            .map(|l| u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize + 4);
        let Some(len) = len.filter(|&l| l <= rest.len()) else {
            scan.problems.push(format!(
                "archive {name}: {} bytes at offset {offset} are not a whole frame (to the end of the file)",
                rest.len()
            ));
            scan.bytes_lost += rest.len() as u64;
            break;
        };
        let crypto = codec.crypto.as_ref().expect("a sealed codec");
        let opened = crypto
            .frame_key(&salt)
            .open(
                &FrameCodec::aad(&salt, offset as u64),
                &rest[4..len],
                &format!("archive {name} frame at offset {offset}"),
            )
            .and_then(|z| {
                decompress_bounded(&z).map_err(|e| {
                    Error::corrupt(format!(
                        "archive {name}: frame at offset {offset} does not decompress: {e}"
                    ))
                })
            });
        match opened {
            Ok(raw) => {
                let frame_no = scan.frames.len() as u32;
                walk_tar(&raw, name, offset, frame_no, codec.ids(), &mut scan);
                scan.frames.push(FrameEntry {
                    offset: offset as u64,
                    length: len as u64,
                    raw_length: raw.len() as u64,
                });
            }
            Err(e) => {
                scan.problems.push(e.to_string());
                scan.bytes_lost += len as u64;
            }
        }
        offset += len;
    }
    scan
}

/// Parses the tar entries of one decompressed frame into `scan`.
fn walk_tar(
    raw: &[u8],
    name: &str,
    frame_offset: usize,
    frame_no: u32,
    ids: IdHasher,
    scan: &mut ArchiveScan,
) {
    let mut pos = 0usize;
    while pos + BLOCK <= raw.len() {
        let header = &raw[pos..pos + BLOCK];
        if header.iter().all(|&b| b == 0) {
            pos += BLOCK;
            continue;
        }
        let h = tar::Header::from_byte_slice(header);
        let entry = (|| -> std::result::Result<(BlobId, u64), String> {
            let stored = h.cksum().map_err(|e| format!("tar header: {e}"))?;
            let computed: u32 = header
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        u32::from(b' ')
                    } else {
                        u32::from(b)
                    }
                })
                .sum();
            if stored != computed {
                return Err("tar header checksum does not match".into());
            }
            let size = h.size().map_err(|e| format!("tar header: {e}"))?;
            let id: BlobId = String::from_utf8_lossy(&h.path_bytes())
                .parse()
                .map_err(|e| format!("tar entry name: {e}"))?;
            Ok((id, size))
        })();
        let (id, size) = match entry {
            Ok(v) => v,
            Err(e) => {
                scan.problems.push(format!(
                    "archive {name}: frame at offset {frame_offset}: {e} at {pos}; the rest of the frame is unreadable"
                ));
                return;
            }
        };
        let data_at = pos + BLOCK;
        if size > (raw.len() - data_at) as u64 {
            scan.problems.push(format!(
                "archive {name}: frame at offset {frame_offset}: entry {} crosses the end of its frame",
                id.short()
            ));
            return;
        }
        let data = &raw[data_at..data_at + size as usize];
        if ids.of(data) == id {
            scan.blobs.push(BlobEntry {
                id,
                frame: frame_no,
                offset: data_at as u64,
                length: size,
            });
        } else {
            scan.problems.push(format!(
                "archive {name}: blob {id} does not hash to its name (damaged)"
            ));
        }
        pos = data_at + (size as usize).div_ceil(BLOCK) * BLOCK;
    }
}

/// Decompresses one frame whose size no index vouches for, refusing output beyond
/// [`MAX_FRAME_RAW`] and windows beyond 128 MiB (a zstd bomb ends in an error, not an OOM).
fn decompress_bounded(compressed: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut d = zstd::stream::read::Decoder::with_buffer(compressed)?.single_frame();
    d.window_log_max(WINDOW_LOG_MAX)?;
    let mut out = Vec::new();
    d.take(MAX_FRAME_RAW + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FRAME_RAW {
        return Err(std::io::Error::other(format!(
            "frame decompresses to more than {MAX_FRAME_RAW} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives `data` in pieces of at most `piece` bytes, then fails if `fail`.
    struct Pieces<'a> {
        data: &'a [u8],
        piece: usize,
        fail: bool,
    }

    impl std::io::Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.data.is_empty() && self.fail {
                return Err(std::io::Error::other("disk went away"));
            }
            let n = self.data.len().min(self.piece).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Frames of large chunks reuse one room: it grows once to what a frame and the largest
    /// chunk need, stays from frame to frame (no new pages for each), and every frame
    /// still decompresses to its entries. A room grown past that by an entry larger than
    /// any chunk is let go.
    #[test]
    fn a_frame_builders_room_is_kept_for_large_chunks() {
        let mut b = FrameBuilder::default();
        let chunk: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
        let mut room = None;
        for frame in 0..4u8 {
            let small = &chunk[frame as usize..300 << 10];
            b.push(BlobId::of(small), small);
            let large = &chunk[frame as usize..];
            b.push(BlobId::of(large), large);
            assert!(b.is_full());
            let at = b.raw.as_ptr();
            let f = b.compress(1).unwrap();
            let raw = decompress_frame(&f.data, f.raw_length).unwrap();
            for (id, offset, length) in &f.blobs {
                let data = &raw[*offset as usize..(*offset + *length) as usize];
                assert_eq!(BlobId::of(data), *id, "frame {frame}");
            }
            // Kept, and no larger than a frame and the chunk need.
            assert!((FRAME_TARGET + 2 * BLOCK + 1..=ROOM_KEPT).contains(&b.raw.capacity()));
            if frame > 0 {
                assert_eq!(room, Some(at), "frame {frame} took a new room");
            }
            room = Some(at);
        }
        b.push(BlobId::of(b"huge"), &vec![7u8; 4 << 20]);
        b.compress(1).unwrap();
        assert_eq!(b.raw.capacity(), 0);
    }

    /// The context a thread keeps between frames: a frame that fails (garbage, or more
    /// than its index says) leaves nothing that spoils the next one.
    #[test]
    fn a_failed_frame_leaves_the_next_one_whole() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        let frame = zstd::bulk::compress(&data, 3).unwrap();
        let n = data.len() as u64;
        for _ in 0..2 {
            assert_eq!(decompress_frame(&frame, n).unwrap(), data);
            assert!(decompress_frame(&frame[..frame.len() / 2], n).is_err());
            assert!(decompress_frame(&frame, n - 1).is_err());
            assert!(decompress_frame(b"not a zstd frame", 16).is_err());
        }
        assert_eq!(decompress_frame(&frame, n).unwrap(), data);
    }

    fn raw_of(b: &mut FrameBuilder) -> (Vec<u8>, Vec<(BlobId, u64, u64)>) {
        let f = b.compress(1).expect("compresses");
        let raw = decompress_frame(&f.data, f.raw_length).expect("decompresses");
        (raw, f.blobs)
    }

    /// What is staged and kept is the very frame a push of the same bytes makes; what is
    /// dropped, or fails to read, leaves no trace.
    #[test]
    fn a_staged_entry_is_the_pushed_one_and_a_dropped_one_leaves_nothing() {
        let a: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let b = b"{\"asin\": \"B000TEST\"}".to_vec();
        let (ia, ib) = (BlobId::of(&a), BlobId::of(&b));

        let mut pushed = FrameBuilder::default();
        pushed.push(ia, &a);
        pushed.push(ib, &b);
        let want = raw_of(&mut pushed);

        let mut staged = FrameBuilder::default();
        // Read in small pieces, with a stated size too small (the file grew): all is read.
        let got = staged
            .stage(
                Pieces {
                    data: &a,
                    piece: 700,
                    fail: false,
                },
                1000,
                1 << 20,
            )
            .expect("reads")
            .to_vec();
        assert_eq!(got, a);
        staged.commit(ia);
        // Dropped: a blob some other reader stores.
        staged
            .stage(
                Pieces {
                    data: b"elsewhere",
                    piece: 4,
                    fail: false,
                },
                9,
                1 << 20,
            )
            .expect("reads");
        staged.discard();
        // A read that fails midway stages nothing.
        let failed = staged.stage(
            Pieces {
                data: &b[..5],
                piece: 2,
                fail: true,
            },
            20,
            1 << 20,
        );
        assert!(failed.is_err());
        // Stated larger than it is (the file shrank): what there is.
        let got = staged
            .stage(
                Pieces {
                    data: &b,
                    piece: 64,
                    fail: false,
                },
                4096,
                1 << 20,
            )
            .expect("reads")
            .to_vec();
        assert_eq!(got, b);
        staged.commit(ib);
        assert_eq!(raw_of(&mut staged), want);

        // At most `limit` bytes are read.
        let mut limited = FrameBuilder::default();
        let got = limited
            .stage(
                Pieces {
                    data: &a,
                    piece: 1000,
                    fail: false,
                },
                100,
                2500,
            )
            .expect("reads");
        assert_eq!(got, &a[..2500]);
        // Staged and not committed: a push or a compress drops it.
        limited.push(ib, &b);
        let (raw, blobs) = raw_of(&mut limited);
        assert_eq!(blobs.len(), 1);
        assert_eq!(&raw[blobs[0].1 as usize..][..b.len()], b.as_slice());
    }
}
