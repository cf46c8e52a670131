//! `copy`: snapshots from one repository into another (restic's `copy`), sending only the
//! blobs the destination lacks, each verified against its id on arrival.
//!
//! Write order in the destination is the same as a snapshot's: archives, their indexes, then
//! the manifest, so a copy cut short leaves no snapshot that points at missing data, and the
//! next copy finishes the job. Between repositories that name blobs alike (two plain ones),
//! manifests are copied as they are and a snapshot keeps its id. Otherwise (plain and
//! encrypted, or two encrypted repositories, whose blob ids are keyed differently) every blob
//! is re-encoded: read and verified in the source, named by the destination's ids, and the
//! entry list written anew, so the copy has an id of its own (`ids` maps them).

use std::time::Instant;

use serde::Serialize;

use crate::archive::FrameBuilder;
use crate::error::{Error, Result};
use crate::id::{BlobId, IdSet};
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::store::{BlobIndex, BlobReader, PackWriter};

/// What a copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopySummary {
    /// Snapshots written to the destination.
    pub copied: Vec<BlobId>,
    /// Snapshots the destination already had.
    pub already_there: Vec<BlobId>,
    /// Blobs sent.
    pub blobs: u64,
    /// Blob bytes sent (before compression).
    pub bytes: u64,
    /// Compressed bytes written to the destination.
    pub bytes_written: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Snapshot ids in the destination where they differ from the source's (re-encoded
    /// copies): source id to destination id.
    pub ids: std::collections::BTreeMap<String, String>,
}

/// Copies the snapshots `ids` of `src` into `dst`; the caller holds a shared lock on both.
/// Snapshots `dst` already has are left alone, so a copy can be run again after any failure.
///
/// # Errors
/// A snapshot or blob of `src` that cannot be read or does not verify (nothing of that
/// snapshot is written), storage errors of either side, [`Error::Interrupted`].
pub fn copy(
    src: &Repository,
    dst: &Repository,
    ids: &[BlobId],
    progress: &dyn Progress,
) -> Result<CopySummary> {
    let start = Instant::now();
    let mut summary = CopySummary::default();
    let have: std::collections::HashSet<BlobId> = dst.list_manifests()?.0.into_iter().collect();
    let src_index = BlobIndex::load(src)?;
    let mut dst_index = BlobIndex::load(dst)?;
    let re_encode = src.ids() != dst.ids();
    progress.start("copying", ids.len() as u64);
    for id in ids {
        if re_encode {
            crate::cancel::check()?;
            let header = src.read_manifest(id)?;
            let m = Manifest::decode_header(src.ids(), id, &header)?;
            let m = crate::snapshot::load_entries(src, &src_index, id, m)?;
            let new_id = re_encoded(src, dst, &src_index, &mut dst_index, m, &mut summary)?;
            if have.contains(&new_id) {
                summary.already_there.push(*id);
            } else {
                summary.copied.push(*id);
            }
            summary.ids.insert(id.to_hex(), new_id.to_hex());
            progress.inc(1);
            continue;
        }
        if have.contains(id) {
            summary.already_there.push(*id);
            progress.inc(1);
            continue;
        }
        crate::cancel::check()?;
        let header = src.read_manifest(id)?;
        let m = Manifest::decode_header(src.ids(), id, &header)?;
        let m = crate::snapshot::load_entries(src, &src_index, id, m)?;
        let mut reader = BlobReader::new(src, &src_index);
        // Every blob the destination lacks, once, in the snapshot's order.
        let mut seen = IdSet::default();
        let missing: Vec<BlobId> = m
            .blob_ids()
            .filter(|b| !dst_index.contains(b) && seen.insert(**b))
            .copied()
            .collect();
        let mut out = Sender::new(dst);
        let sent = (|| -> Result<()> {
            for b in &missing {
                crate::cancel::check()?;
                // BlobReader::read verifies the content against its id.
                out.push(*b, &reader.read(b)?, &mut summary)?;
            }
            Ok(())
        })();
        out.finish(sent, &mut dst_index, &mut summary)?;
        // Only once every blob is in place does the snapshot exist in the destination.
        dst.write_manifest(id, &header)?;
        summary.copied.push(*id);
        progress.inc(1);
    }
    progress.finish();
    summary.seconds = start.elapsed().as_secs_f64();
    if summary.copied.len() + summary.already_there.len() != ids.len() {
        return Err(Error::Invalid("copy lost count of its snapshots".into()));
    }
    Ok(summary)
}

/// Copies one snapshot (entries loaded) into a repository that names blobs otherwise: each
/// blob read and verified in `src`, named by `dst`'s ids, sent when `dst` lacks it; then the
/// entry list and manifest written anew.
/// Returns the snapshot's id in `dst`.
fn re_encoded(
    src: &Repository,
    dst: &Repository,
    src_index: &BlobIndex,
    dst_index: &mut BlobIndex,
    mut m: Manifest,
    summary: &mut CopySummary,
) -> Result<BlobId> {
    let ids = dst.ids();
    let mut reader = BlobReader::new(src, src_index);
    let mut renamed: crate::id::IdMap<BlobId> = crate::id::IdMap::default();
    let mut out = Sender::new(dst);
    let sent = (|| -> Result<()> {
        for e in &m.entries {
            for b in &e.blobs {
                if renamed.contains_key(b) {
                    continue;
                }
                crate::cancel::check()?;
                // BlobReader::read verifies the content against its id in the source.
                let data = reader.read(b)?;
                let nb = ids.of(&data);
                renamed.insert(*b, nb);
                // Equal content has one id in the source: a blob met again was renamed above.
                if !dst_index.contains(&nb) {
                    out.push(nb, &data, summary)?;
                }
            }
        }
        Ok(())
    })();
    out.finish(sent, dst_index, summary)?;
    for e in &mut m.entries {
        for b in &mut e.blobs {
            *b = renamed[b];
        }
    }
    // The parent is a snapshot of the source; the copy stands alone. The same snapshot
    // re-encoded again gives the same manifest, so a second copy writes nothing new.
    m.parent = None;
    crate::snapshot::store_manifest(dst, &mut m)
}

/// Blobs on their way into the destination: gathered into frames, packed into archives.
struct Sender {
    pack: PackWriter,
    frame: FrameBuilder,
    level: i32,
}

impl Sender {
    fn new(dst: &Repository) -> Sender {
        Sender {
            pack: PackWriter::new(dst),
            frame: FrameBuilder::default(),
            level: dst.config().zstd_level,
        }
    }

    /// Adds one verified blob under its id in the destination.
    fn push(&mut self, id: BlobId, data: &[u8], summary: &mut CopySummary) -> Result<()> {
        summary.blobs += 1;
        summary.bytes += data.len() as u64;
        self.frame.push(id, data);
        if self.frame.is_full() {
            self.pack.add(self.frame.compress(self.level)?)?;
        }
        Ok(())
    }

    /// After the blobs were `sent`: on success, writes what is left and indexes every new
    /// archive; on failure, drops the unfinished archive and returns the failure.
    fn finish(
        mut self,
        sent: Result<()>,
        dst_index: &mut BlobIndex,
        summary: &mut CopySummary,
    ) -> Result<()> {
        let last = sent.and_then(|()| {
            if self.frame.is_empty() {
                Ok(())
            } else {
                self.pack.add(self.frame.compress(self.level)?)
            }
        });
        if let Err(e) = last {
            self.pack.abandon();
            return Err(e);
        }
        summary.bytes_written += self.pack.bytes_written;
        for idx in self.pack.finish()? {
            dst_index.add(&idx);
        }
        Ok(())
    }
}
