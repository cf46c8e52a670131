//! Recovering a damaged repository: `rebuild-index` (indexes rewritten from the archives'
//! own frames and tar headers; the readable blobs of a damaged archive salvaged into a new
//! one) and `repair-snapshots` (snapshots that reference missing data rewritten without the
//! unrecoverable files, or with the same content found elsewhere, tagged `repaired`).
//!
//! Nothing is deleted: every file these commands replace (a damaged archive, an index that
//! does not parse, a damaged manifest) moves into `REPO/damaged/`, and everything that
//! cannot be read is listed, never dropped silently. Both run under the exclusive lock.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::archive::{self, ArchiveIndex, FrameBuilder, INDEX_VERSION};
use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IdSet};
use crate::manifest::{EntryKind, Manifest, RelPath, MANIFEST_VERSION};
use crate::progress::Progress;
use crate::repo::{layout, Repository};
use crate::store::{BlobIndex, PackWriter};

/// How to rebuild indexes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebuildOptions {
    /// Read every archive whole and compare it with its index, not only archives whose index
    /// is missing, damaged or of the wrong size (finds bit flips; slower).
    pub read_data: bool,
    /// Report only.
    pub dry_run: bool,
}

/// One archive whose index was (or would be) written.
#[derive(Debug, Clone, Serialize)]
pub struct IndexWritten {
    /// The archive.
    pub archive: String,
    /// Why: `missing`, `damaged` or `disagreeing`.
    pub reason: String,
    /// Blobs the new index lists.
    pub blobs: usize,
}

/// A damaged archive whose readable blobs were copied into new archives.
#[derive(Debug, Clone, Serialize)]
pub struct Salvage {
    /// The damaged archive.
    pub archive: String,
    /// Blobs kept (verified against their names).
    pub blobs_kept: usize,
    /// Blobs the old index listed that could not be read back (when it was readable).
    pub blobs_lost: Vec<String>,
    /// Compressed bytes that could not be read.
    pub bytes_lost: u64,
    /// What could not be read, in words.
    pub problems: Vec<String>,
    /// Archives written with the kept blobs.
    pub new_archives: Vec<String>,
    /// Where the damaged archive (and its index) went.
    pub moved_to: Vec<String>,
}

/// What `rebuild-index` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildSummary {
    /// Archives examined.
    pub archives: usize,
    /// Archives whose index was already right.
    pub indexes_ok: usize,
    /// Indexes written for intact archives.
    pub indexes_written: Vec<IndexWritten>,
    /// Damaged archives salvaged.
    pub salvaged: Vec<Salvage>,
    /// Index files set aside: they describe archives that are gone, or do not parse and
    /// describe nothing present. (`file` -> where it went.)
    pub indexes_set_aside: BTreeMap<String, String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl RebuildSummary {
    /// Whether something was lost for good (blobs or bytes that could not be read).
    pub fn lost_anything(&self) -> bool {
        self.salvaged
            .iter()
            .any(|s| !s.blobs_lost.is_empty() || s.bytes_lost > 0 || !s.problems.is_empty())
    }
}

/// Rewrites the index of every archive whose index is missing, does not parse, or disagrees
/// with the archive, from the archive's own frames and tar headers, verifying each blob's
/// hash. A damaged archive's readable blobs go into a new archive first; the damaged one then
/// moves to `damaged/`. The caller holds the exclusive lock.
///
/// # Errors
/// I/O errors (the repository is left sound: new archives and indexes are durable before
/// anything is moved).
pub fn rebuild_index(
    repo: &Repository,
    opts: &RebuildOptions,
    progress: &dyn Progress,
) -> Result<RebuildSummary> {
    let mut summary = RebuildSummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let archives = repo.list_archives()?;
    let present: HashMap<BlobId, u64> = archives.iter().copied().collect();
    let index_ids = repo.list_indexes()?;
    let mut current: HashMap<BlobId, Result<ArchiveIndex>> = HashMap::new();
    for id in &index_ids {
        current.insert(*id, repo.read_index(id));
    }
    // Indexes of archives that are gone describe nothing: set aside.
    for id in index_ids.iter().filter(|id| !present.contains_key(id)) {
        let name = layout::index(id);
        let file = repo.describe(ObjectKind::Index, &name);
        let moved = if opts.dry_run {
            "(dry run)".to_string()
        } else {
            repo.set_aside(ObjectKind::Index, &name)?
        };
        summary.indexes_set_aside.insert(file, moved);
    }
    summary.archives = archives.len();
    let total: u64 = archives.iter().map(|(_, s)| *s).sum();
    progress.start("rebuild-index", total);
    let mut sorted = archives.clone();
    sorted.sort();
    for (id, size) in sorted {
        crate::cancel::check()?;
        let reason = match current.get(&id) {
            None => Some("missing"),
            Some(Err(_)) => Some("damaged"),
            Some(Ok(idx)) if idx.size != size => Some("disagreeing"),
            Some(Ok(_)) if opts.read_data => None,
            Some(Ok(_)) => {
                summary.indexes_ok += 1;
                progress.inc(size);
                continue;
            }
        };
        let bytes = repo.read_archive(&id)?;
        let name = repo.describe(ObjectKind::Archive, &layout::archive(&id));
        let codec = repo.frame_codec();
        let scan = archive::salvage_archive(&bytes, &name, &codec);
        let intact = scan.problems.is_empty() && BlobId::of(&bytes) == id;
        let scanned = ArchiveIndex {
            version: INDEX_VERSION,
            archive: id,
            size: bytes.len() as u64,
            frames: scan.frames.clone(),
            blobs: scan.blobs.clone(),
            salt: scan.salt.map(|s| crate::crypto::b64(&s)),
        };
        if intact {
            let agrees = matches!(current.get(&id), Some(Ok(idx)) if *idx == scanned);
            if reason.is_none() && agrees {
                summary.indexes_ok += 1;
            } else {
                if !opts.dry_run {
                    // An index that is there (damaged, or disagreeing with its archive) is
                    // set aside first: indexes are written create-only where the backend can.
                    if current.contains_key(&id) {
                        repo.set_aside(ObjectKind::Index, &layout::index(&id))?;
                    }
                    repo.write_index(&scanned)?;
                }
                summary.indexes_written.push(IndexWritten {
                    archive: id.to_hex(),
                    reason: reason.unwrap_or("disagreeing").to_string(),
                    blobs: scanned.blobs.len(),
                });
            }
        } else {
            summary
                .salvaged
                .push(salvage(repo, &id, &bytes, scan, current.get(&id), opts)?);
        }
        progress.inc(size);
    }
    progress.finish();
    Ok(summary)
}

/// Copies the readable blobs of a damaged archive into new archives (verified), then moves
/// the damaged archive and its index into `damaged/`.
fn salvage(
    repo: &Repository,
    id: &BlobId,
    bytes: &[u8],
    scan: archive::ArchiveScan,
    old: Option<&Result<ArchiveIndex>>,
    opts: &RebuildOptions,
) -> Result<Salvage> {
    let kept: IdSet = scan.blobs.iter().map(|b| b.id).collect();
    let blobs_lost: Vec<String> = match old {
        Some(Ok(idx)) => idx
            .blobs
            .iter()
            .filter(|b| !kept.contains(&b.id))
            .map(|b| b.id.to_hex())
            .collect(),
        _ => Vec::new(),
    };
    let mut problems = scan.problems.clone();
    if problems.is_empty() {
        problems.push(format!(
            "archive {} content hashes to {}, not to its name",
            id.to_hex(),
            BlobId::of(bytes).short()
        ));
    }
    let mut out = Salvage {
        archive: id.to_hex(),
        blobs_kept: scan.blobs.len(),
        blobs_lost,
        bytes_lost: scan.bytes_lost,
        problems,
        new_archives: Vec::new(),
        moved_to: Vec::new(),
    };
    if opts.dry_run {
        return Ok(out);
    }
    // Copy the readable blobs: each frame decompressed again and each blob re-verified on
    // the way into the new archive.
    let level = repo.config().zstd_level;
    let (codec, ids) = (repo.frame_codec(), repo.ids());
    let mut pack = PackWriter::new(repo);
    let mut builder = FrameBuilder::default();
    let copied = (|| -> Result<()> {
        for (n, f) in scan.frames.iter().enumerate() {
            let frame_blobs = scan.blobs.iter().filter(|b| b.frame as usize == n);
            let stored = &bytes[f.offset as usize..(f.offset + f.length) as usize];
            let raw = codec.decode(scan.salt, f, stored, &id.to_hex())?;
            for b in frame_blobs {
                let data = &raw[b.offset as usize..(b.offset + b.length) as usize];
                if ids.of(data) != b.id {
                    return Err(Error::corrupt(format!(
                        "archive {}: blob {} changed while salvaging",
                        id.to_hex(),
                        b.id
                    )));
                }
                builder.push(b.id, data);
                if builder.is_full() {
                    pack.add(builder.compress(level)?)?;
                }
            }
        }
        if !builder.is_empty() {
            pack.add(builder.compress(level)?)?;
        }
        Ok(())
    })();
    if let Err(e) = copied {
        pack.abandon();
        return Err(e);
    }
    let written = pack.finish()?;
    out.new_archives = written.iter().map(|i| i.archive.to_hex()).collect();
    // Only now that the copies are durable does the damaged archive leave its place.
    if repo.list_indexes()?.contains(id) {
        out.moved_to
            .push(repo.set_aside(ObjectKind::Index, &layout::index(id))?);
    }
    out.moved_to
        .push(repo.set_aside(ObjectKind::Archive, &layout::archive(id))?);
    Ok(out)
}

/// How to repair snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairSnapshotsOptions {
    /// Remove (move into `damaged/`) each damaged original once its repaired version is
    /// durable, and manifests that cannot be repaired at all.
    pub forget: bool,
    /// Report only.
    pub dry_run: bool,
}

/// What happened to one damaged snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRepair {
    /// The damaged snapshot (its id, or its manifest file when the header is unreadable).
    pub original: String,
    /// The repaired snapshot written (None on a dry run or when it cannot be repaired).
    pub repaired: Option<String>,
    /// Its time, when known.
    pub time: Option<String>,
    /// Its kind, when known.
    pub kind: Option<String>,
    /// Files left out because their data is nowhere in the repository.
    pub lost: Vec<String>,
    /// Files whose missing data was found in another snapshot's identical content.
    pub substituted: usize,
    /// Why it cannot be repaired (an unreadable header or entry list).
    pub unrepairable: Option<String>,
    /// Whether the original was removed (moved into `damaged/`).
    pub forgotten: bool,
}

/// What `repair-snapshots` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSnapshotsSummary {
    /// Snapshots examined.
    pub snapshots: usize,
    /// Damaged snapshots and what happened to each.
    pub repaired: Vec<SnapshotRepair>,
    /// Clear records pointed at the repaired version of their pre-clear snapshot.
    pub records_updated: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// For each snapshot that references data missing from the repository, writes a new one
/// without the unrecoverable files (or with the same content found in another snapshot),
/// with the same time and kind, tagged `repaired`, its warnings listing what was lost. With
/// `forget`, the damaged original goes once the repaired one is durable. The caller holds the
/// exclusive lock.
///
/// # Errors
/// I/O errors.
pub fn repair_snapshots(
    repo: &Repository,
    opts: &RepairSnapshotsOptions,
) -> Result<RepairSnapshotsSummary> {
    let mut summary = RepairSnapshotsSummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let index = BlobIndex::load(repo)?;
    let listing = crate::snapshot::list(repo)?;
    summary.snapshots = listing.snapshots.len() + listing.damaged.len();
    let mut loaded: Vec<(BlobId, Manifest)> = Vec::new();
    for (id, header) in &listing.snapshots {
        match crate::snapshot::load_entries(repo, &index, id, header.clone()) {
            Ok(m) => loaded.push((*id, m)),
            Err(e) if e.is_corruption() => {
                let mut r = unrepairable(
                    format!("snapshots/{}.json", id.to_hex()),
                    format!("its entry list cannot be read: {e}"),
                );
                r.original = id.to_hex();
                r.time = Some(header.time.to_rfc3339());
                r.kind = Some(header.kind().name().to_string());
                summary.repaired.push(r);
            }
            Err(e) => return Err(e),
        }
    }
    for d in &listing.damaged {
        summary.repaired.push(unrepairable(
            d.file.clone(),
            format!("it cannot be read: {}", d.error),
        ));
    }
    // Content whose data is all present, by hash: what a damaged file can be rebuilt from.
    let mut intact: HashMap<BlobId, (u64, Vec<BlobId>)> = HashMap::new();
    for (_, m) in &loaded {
        for e in m.entries.iter().filter(|e| e.kind == EntryKind::File) {
            if let Some(h) = e.hash {
                if e.blobs.iter().all(|b| index.contains(b)) {
                    intact.entry(h).or_insert((e.size, e.blobs.to_vec()));
                }
            }
        }
    }
    let mut repaired_ids: HashMap<BlobId, BlobId> = HashMap::new();
    for (id, m) in &loaded {
        let broken = |e: &crate::manifest::Entry| !e.blobs.iter().all(|b| index.contains(b));
        if !m.entries.iter().any(broken) {
            continue;
        }
        let mut fixed = m.clone();
        let mut lost: Vec<RelPath> = Vec::new();
        let mut substituted = 0;
        fixed.entries.retain_mut(|e| {
            if !broken(e) {
                return true;
            }
            match e.hash.and_then(|h| intact.get(&h)) {
                Some((size, blobs)) if *size == e.size => {
                    e.blobs = blobs.as_slice().into();
                    substituted += 1;
                    true
                }
                _ => {
                    lost.push(e.path.clone());
                    false
                }
            }
        });
        let mut r = SnapshotRepair {
            original: id.to_hex(),
            repaired: None,
            time: Some(m.time.to_rfc3339()),
            kind: Some(m.kind().name().to_string()),
            lost: lost.iter().map(RelPath::display).collect(),
            substituted,
            unrepairable: None,
            forgotten: false,
        };
        if !opts.dry_run {
            let new_id = write_repaired(repo, id, &mut fixed, &lost)?;
            r.repaired = Some(new_id.to_hex());
            repaired_ids.insert(*id, new_id);
        }
        summary.repaired.push(r);
    }
    if opts.dry_run || !opts.forget {
        return Ok(summary);
    }
    // The repaired versions are durable: clear records move to them, then the originals go.
    let (records, _) = crate::operation::load_records(repo)?;
    for mut rec in records {
        if let Some(new) = rec.snapshot.and_then(|s| repaired_ids.get(&s)) {
            rec.snapshot = Some(*new);
            crate::operation::write_record(repo, &rec)?;
            summary.records_updated.push(rec.id.clone());
        }
    }
    let present: std::collections::HashSet<String> = repo
        .backend()
        .list(ObjectKind::Snapshot)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    for r in &mut summary.repaired {
        let name = match r.original.strip_prefix("snapshots/") {
            Some(n) => n.to_string(),
            None => match r.original.parse::<BlobId>() {
                Ok(id) => layout::manifest(&id),
                Err(_) => continue,
            },
        };
        if present.contains(&name) {
            repo.set_aside(ObjectKind::Snapshot, &name)?;
        }
        r.forgotten = true;
    }
    Ok(summary)
}

fn unrepairable(original: String, why: String) -> SnapshotRepair {
    SnapshotRepair {
        original,
        repaired: None,
        time: None,
        kind: None,
        lost: Vec::new(),
        substituted: 0,
        unrepairable: Some(why),
        forgotten: false,
    }
}

/// Stores the repaired manifest: same time, kind and root; tagged `repaired`; counts
/// recomputed; every lost file named in its warnings.
fn write_repaired(
    repo: &Repository,
    original: &BlobId,
    m: &mut Manifest,
    lost: &[RelPath],
) -> Result<BlobId> {
    m.version = MANIFEST_VERSION;
    m.kind = Some(m.kind());
    if !m.tags.iter().any(|t| t == "repaired") {
        m.tags.push("repaired".into());
    }
    m.repaired_from = Some(*original);
    m.complete = m.complete && lost.is_empty();
    m.warnings.extend(
        lost.iter()
            .map(|p| format!("lost in repair of {}: {}", original.short(), p.display())),
    );
    let files: Vec<&crate::manifest::Entry> = m
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    m.summary.files_new = 0;
    m.summary.files_changed = 0;
    m.summary.files_unchanged = files.len() as u64;
    m.summary.bytes_total = files.iter().map(|e| e.size).sum();
    m.summary.bytes_read = 0;
    m.summary.blobs_added = 0;
    m.summary.bytes_added = 0;
    // Per-type totals cannot be recomputed without the config; what was lost is taken off
    // nowhere rather than guessed, so they are dropped.
    m.summary.types.clear();
    crate::snapshot::store_manifest(repo, m)
}
