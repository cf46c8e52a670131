//! Repository verification: structure (manifests parse, referenced blobs indexed in archives
//! that are present, indexes inside their archives) and, with read-data, every archive
//! re-hashed and every blob decompressed and re-hashed. Every damaged item is reported once,
//! with the snapshots and files it affects and the command that helps (`rebuild-index`,
//! `repair-snapshots`, `forget ID`).

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use crate::archive::{ArchiveIndex, BlobEntry, FrameEntry};
use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IdMap, IdSet};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::repo::layout;
use crate::repo::Repository;
use crate::store::{self, BlobIndex};

/// How much data to read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// Structure only.
    None,
    /// Every archive.
    All,
    /// A random share of the archives, in percent.
    Subset(f64),
}

/// One damaged (or suspicious) item and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `damaged_index`, `missing_archive`, `archive_size`, `unindexed_archive`,
    /// `damaged_manifest`, `missing_data`, `size_mismatch`, `damaged_archive`.
    pub kind: &'static str,
    /// The repository file or snapshot concerned.
    pub object: String,
    /// What was found.
    pub message: String,
    /// What the user can do.
    pub advice: String,
    /// Short ids of the snapshots affected.
    pub snapshots: Vec<String>,
    /// Number of file versions affected.
    pub files: usize,
    /// Some of them, as `snapshot:path`.
    pub examples: Vec<String>,
    /// Whether this is damage (`false`: a harmless leftover, a warning).
    pub error: bool,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Manifests checked.
    pub snapshots: usize,
    /// Indexed archives.
    pub archives: usize,
    /// Indexed blobs.
    pub blobs: usize,
    /// Archives whose data was read.
    pub archives_read: usize,
    /// Compressed bytes read.
    pub bytes_read: u64,
    /// Problems that mean data is damaged or missing.
    pub errors: Vec<String>,
    /// Harmless findings (leftovers of interrupted operations).
    pub warnings: Vec<String>,
    /// Archives found damaged.
    pub damaged_archives: Vec<String>,
    /// Files (as `snapshot:path`) whose content is affected by damage.
    pub affected_files: Vec<String>,
    /// Every finding, with what it affects and what to do.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether no error was found.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn add(&mut self, p: Problem) {
        let line = if p.advice.is_empty() {
            p.message.clone()
        } else {
            format!("{} ({})", p.message, p.advice)
        };
        if p.error {
            self.errors.push(line);
        } else {
            self.warnings.push(line);
        }
        self.problems.push(p);
    }
}

const EXAMPLES: usize = 10;

/// What checking one manifest found: its problems, and its files whose data is not indexed.
type ManifestCheck = (CheckReport, Vec<String>);

const ADVICE_INDEX: &str = "run `cachevault rebuild-index`";
const ADVICE_MISSING: &str = "run `cachevault rebuild-index`, then `cachevault repair-snapshots --forget`; the next snapshot stores again what is still on disk";
const ADVICE_MANIFEST: &str =
    "run `cachevault repair-snapshots --forget`, or `cachevault forget ID` to remove it";
const ADVICE_DAMAGED_ARCHIVE: &str = "run `cachevault rebuild-index --read-data` (it keeps every readable blob), then `cachevault repair-snapshots --forget`";

fn problem(
    kind: &'static str,
    object: String,
    message: String,
    advice: &str,
    error: bool,
) -> Problem {
    Problem {
        kind,
        object,
        message,
        advice: advice.to_string(),
        snapshots: Vec::new(),
        files: 0,
        examples: Vec::new(),
        error,
    }
}

/// Checks the repository. `seed` picks the subset for `ReadData::Subset`.
///
/// # Errors
/// Only errors that stop the check itself (unreadable folders); damage is reported.
pub fn check(repo: &Repository, read: ReadData, seed: u64) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // Manifests, then indexes, then archives: writers go archive -> index -> manifest, so
    // every manifest listed has its indexes in place and every index listed has its archive,
    // while a snapshot writing during the check (they share the lock) adds objects we either
    // skip or, at worst, see as an archive whose index is not yet there (a warning).
    let ids = crate::snapshot::list_ids(repo)?;
    let (indexes, damaged_indexes) = store::load_indexes(repo)?;
    let present: HashMap<BlobId, u64> = repo.list_archives()?.into_iter().collect();
    let mut indexed = IdSet::default();
    for d in &damaged_indexes {
        if let Some(id) = d
            .file
            .trim_start_matches("index/")
            .trim_end_matches(".json")
            .parse::<BlobId>()
            .ok()
            .filter(|id| present.contains_key(id))
        {
            // Its archive is there but unindexed: reported here, not again below.
            indexed.insert(id);
        }
        report.add(problem(
            "damaged_index",
            d.file.clone(),
            format!("{} cannot be used: {}", d.file, d.error),
            ADVICE_INDEX,
            true,
        ));
    }
    let mut usable: Vec<ArchiveIndex> = Vec::new();
    for idx in indexes {
        indexed.insert(idx.archive);
        let name = format!("archives/{}.tar.zst", idx.archive.to_hex());
        match present.get(&idx.archive) {
            None => report.add(problem(
                "missing_archive",
                name.clone(),
                format!("archive {name} is missing ({} blobs indexed)", idx.blobs.len()),
                ADVICE_MISSING,
                true,
            )),
            Some(&size) if size != idx.size => report.add(problem(
                "archive_size",
                name.clone(),
                format!(
                    "archive {name} is {size} bytes, its index says {}",
                    idx.size
                ),
                "run `cachevault rebuild-index` (it reads the archive again and keeps every readable blob)",
                true,
            )),
            Some(_) => usable.push(idx),
        }
    }
    // Only the ids are kept: the indexes themselves are freed once the blob index is
    // built, and each is read again when its archive is read.
    let usable_ids: Vec<BlobId> = usable.iter().map(|idx| idx.archive).collect();
    let mut unindexed: Vec<&BlobId> = present.keys().filter(|a| !indexed.contains(a)).collect();
    unindexed.sort();
    for a in unindexed {
        let name = format!("archives/{}.tar.zst", a.to_hex());
        report.add(problem(
            "unindexed_archive",
            name.clone(),
            format!("archive {name} has no index (left by an interrupted write, or its index was lost)"),
            "run `cachevault rebuild-index`: the archive may hold data a snapshot needs, and prune never deletes it blind",
            false,
        ));
    }
    let index = BlobIndex::of(usable);
    report.archives = usable_ids.len();
    report.blobs = index.len();

    // Manifests: parse, verify, every blob indexed in a present archive. Each list streams
    // through its check and is never held whole; lists stored as changes to one base are
    // read together, the base decoded once for all of them.
    let headers: Vec<(BlobId, Result<Manifest>)> = repo.reading(|| {
        ids.par_iter()
            .map(|id| (*id, crate::snapshot::load_header(repo, id)))
            .collect()
    });
    let mut found: IdMap<Result<ManifestCheck>> = IdMap::default();
    let mut readable = Vec::with_capacity(headers.len());
    for (id, header) in headers {
        match header {
            Ok(m) => readable.push((id, m)),
            Err(e) => {
                found.insert(id, Err(e));
            }
        }
    }
    let streamed = repo.reading(|| {
        crate::snapshot::stream_shared(repo, &index, readable, |id, _| EntryChecker {
            index: &index,
            id: *id,
            report: CheckReport::default(),
            missing: Vec::new(),
        })
    });
    for (id, checked) in streamed {
        found.insert(id, checked.map(|c| (c.report, c.missing)));
    }
    let checked: Vec<(BlobId, Result<ManifestCheck>)> = ids
        .iter()
        .filter_map(|id| found.remove(id).map(|r| (*id, r)))
        .collect();
    let mut live = Vec::new();
    let mut missing_by_snapshot: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, found) in checked {
        match found {
            Ok((local, missing)) => {
                for p in local.problems {
                    report.add(p);
                }
                if !missing.is_empty() {
                    missing_by_snapshot.insert(id.short(), missing);
                }
                live.push(id);
            }
            // Forgotten since the listing.
            Err(Error::SnapshotNotFound(_)) => {}
            Err(e) => report.add(problem(
                "damaged_manifest",
                format!("snapshots/{}.json", id.to_hex()),
                format!("snapshot {} cannot be read: {e}", id.short()),
                ADVICE_MANIFEST,
                true,
            )),
        }
    }
    for (snap, files) in missing_by_snapshot {
        let mut p = problem(
            "missing_data",
            snap.clone(),
            format!(
                "snapshot {snap}: {} file(s) reference data that is in no index of a present archive",
                files.len()
            ),
            ADVICE_MISSING,
            true,
        );
        p.snapshots = vec![snap];
        p.files = files.len();
        p.examples = files.into_iter().take(EXAMPLES).collect();
        report.add(p);
    }
    report.snapshots = live.len();

    let selected: Vec<BlobId> = match read {
        ReadData::None => Vec::new(),
        ReadData::All => usable_ids.clone(),
        ReadData::Subset(pct) => {
            let want = ((usable_ids.len() as f64) * pct / 100.0).ceil() as usize;
            let mut keyed: Vec<(BlobId, BlobId)> = usable_ids
                .iter()
                .map(|a| {
                    let mut k = a.0.to_vec();
                    k.extend_from_slice(&seed.to_le_bytes());
                    (BlobId::of(&k), *a)
                })
                .collect();
            keyed.sort_by_key(|(k, _)| *k);
            keyed.into_iter().take(want).map(|(_, a)| a).collect()
        }
    };
    let results: Vec<(u64, Vec<String>, Vec<BlobId>, bool)> = repo.reading(|| {
        selected
            .par_iter()
            .map(|archive| read_archive(repo, archive))
            .collect()
    });
    crate::cancel::check()?;
    let mut bad_by_archive: IdMap<(Vec<String>, IdSet)> = IdMap::default();
    for ((bytes, errs, bad, damaged), archive) in results.into_iter().zip(&selected) {
        report.bytes_read += bytes;
        report.archives_read += 1;
        if damaged {
            report
                .damaged_archives
                .push(repo.describe(ObjectKind::Archive, &layout::archive(archive)));
            bad_by_archive.insert(*archive, (errs, bad.into_iter().collect()));
        }
    }
    let mut damaged: Vec<(BlobId, (Vec<String>, IdSet))> = bad_by_archive.into_iter().collect();
    damaged.sort_by_key(|(a, _)| *a);
    for (archive_id, (errs, bad)) in damaged {
        let mut snapshots = Vec::new();
        let mut files = Vec::new();
        for id in &live {
            // Read again, one at a time: only a damaged archive costs this.
            let Ok(m) = crate::snapshot::load_with(repo, &index, id) else {
                continue;
            };
            let mut hit = false;
            for e in &m.entries {
                if e.blobs.iter().any(|b| bad.contains(b)) {
                    files.push(format!("{}:{}", id.short(), e.path.display()));
                    hit = true;
                }
            }
            if m.tree_blobs().any(|b| bad.contains(b)) {
                files.push(format!("{}:(its entry list)", id.short()));
                hit = true;
            }
            if hit {
                snapshots.push(id.short());
            }
        }
        report.affected_files.extend(files.iter().cloned());
        let name = format!("archives/{}.tar.zst", archive_id.to_hex());
        let mut p = problem(
            "damaged_archive",
            name.clone(),
            format!(
                "archive {name} is damaged: {} blob(s) unreadable, affecting {} file version(s) in {} snapshot(s){}",
                bad.len(),
                files.len(),
                snapshots.len(),
                errs.first().map(|e| format!("; {e}")).unwrap_or_default()
            ),
            ADVICE_DAMAGED_ARCHIVE,
            true,
        );
        p.snapshots = snapshots;
        p.files = files.len();
        p.examples = files.into_iter().take(EXAMPLES).collect();
        report.add(p);
    }
    Ok(report)
}

/// Checks each entry of one snapshot as its list streams by: every blob indexed, and file
/// sizes that match their blobs.
struct EntryChecker<'a> {
    index: &'a BlobIndex,
    id: BlobId,
    report: CheckReport,
    /// Files (`snapshot:path`) with a blob in no index of a present archive.
    missing: Vec<String>,
}

impl crate::snapshot::EntrySink for EntryChecker<'_> {
    fn entry(&mut self, e: &Entry) -> Result<()> {
        let id = &self.id;
        let mut stored = Some(0u64);
        for b in &e.blobs {
            match self.index.get(b) {
                Some(loc) => stored = stored.map(|s| s.saturating_add(loc.length)),
                None => stored = None,
            }
        }
        if stored.is_none() {
            self.missing
                .push(format!("{}:{}", id.short(), e.path.display()));
        }
        // A size that lies would make restore refuse the file: say so here.
        let is_file = e.kind == EntryKind::File;
        if let Some(stored) = stored.filter(|s| is_file && *s != e.size) {
            let mut p = problem(
                "size_mismatch",
                format!("snapshots/{}.json", id.to_hex()),
                format!(
                    "snapshot {}: {}: the manifest gives a size of {} bytes, but its blobs hold {stored}",
                    id.short(),
                    e.path.display(),
                    e.size
                ),
                ADVICE_MANIFEST,
                true,
            );
            p.snapshots = vec![id.short()];
            p.files = 1;
            p.examples = vec![format!("{}:{}", id.short(), e.path.display())];
            self.report.add(p);
        }
        Ok(())
    }
}

/// Bytes of an archive asked for at once by `check --read-data`: a remote archive arrives in
/// requests of this size, and a reader holds no more than this of it (not the whole archive).
const CHECK_WINDOW: u64 = 8 << 20;

/// Compressed bytes of frames an archive's reader gathers before they are decompressed and
/// verified in parallel: enough frames for every core, little memory beside the window.
const VERIFY_AT_ONCE: u64 = 2 << 20;

/// Reads one archive front to back: its file hash, every frame, every blob. Memory holds one
/// window of the archive and one frame, whatever the archive's size.
/// Returns (bytes read, errors, damaged blobs, archive damaged).
fn read_archive(repo: &Repository, archive: &BlobId) -> (u64, Vec<String>, Vec<BlobId>, bool) {
    let path = repo.describe(ObjectKind::Archive, &layout::archive(archive));
    if crate::cancel::requested().is_some() {
        return (0, Vec::new(), Vec::new(), false);
    }
    // Read again: it parsed and verified moments ago, and index files are never rewritten
    // in place. Failing now, it is reported with the archive.
    let idx = match repo.read_index(archive) {
        Ok(idx) => idx,
        Err(e) => {
            return (
                0,
                vec![format!("{path}: its index cannot be read again: {e}")],
                Vec::new(),
                true,
            )
        }
    };
    let idx = &idx;
    let mut errors = Vec::new();
    let mut bad = Vec::new();
    let all_bad = |errors: Vec<String>| (0, errors, idx.blobs.iter().map(|b| b.id).collect(), true);
    let mut obj = match repo.open_archive_sized(&idx.archive, idx.size) {
        Ok(o) => o,
        Err(e) => return all_bad(vec![e.to_string()]),
    };
    let len = obj.len();
    let mut window_end = 0u64;
    // Reads `from..to`, asking a remote object for a whole window ahead.
    let mut read = |from: u64, to: u64| {
        if to > window_end {
            window_end = (from + CHECK_WINDOW.max(to - from)).min(len);
            let _ = obj.prefetch(from, window_end - from);
        }
        obj.read_at(from, to - from)
    };
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    let mut damaged = false;
    let mut blobs = idx.blobs.iter().peekable();
    let (codec, ids, salt) = (repo.frame_codec(), repo.ids(), idx.salt());
    // Frames are read (and the file hashed) in order, a window at a time; the frames of a
    // window are then decompressed and their blobs hashed in parallel, so that one large
    // archive keeps every core busy, not one.
    type Read<'i> = (Option<Vec<u8>>, &'i FrameEntry, Vec<&'i BlobEntry>);
    let verify = |window: &mut Vec<Read<'_>>, errors: &mut Vec<String>, bad: &mut Vec<BlobId>| {
        let checked: Vec<(Option<String>, Vec<BlobId>, bool)> = window
            .par_drain(..)
            .map(|(stored, f, in_frame)| {
                let (raw, error) = match stored.map(|s| codec.decode(salt, f, &s, &path)) {
                    Some(Ok(raw)) => (Some(raw), None),
                    Some(Err(e)) => (None, Some(format!("{e} (damaged)"))),
                    None => (None, None),
                };
                let bad: Vec<BlobId> = in_frame
                    .iter()
                    .filter(|b| {
                        !raw.as_ref().is_some_and(|raw| {
                            raw.get(b.offset as usize..(b.offset + b.length) as usize)
                                .is_some_and(|data| ids.of(data) == b.id)
                        })
                    })
                    .map(|b| b.id)
                    .collect();
                let damaged = raw.is_none() || !bad.is_empty();
                (error, bad, damaged)
            })
            .collect();
        let mut damaged = false;
        for (error, b, d) in checked {
            errors.extend(error);
            bad.extend(b);
            damaged |= d;
        }
        damaged
    };
    let mut window: Vec<Read<'_>> = Vec::new();
    let mut held = 0u64;
    for (n, f) in idx.frames.iter().enumerate() {
        let end = f.offset.saturating_add(f.length);
        let stored = if end > len {
            None
        } else if f.offset >= pos {
            // In file order: what lies before the frame is hashed on the way.
            if let Err(e) = hash_through(&mut read, &mut hasher, &mut pos, f.offset) {
                errors.push(e.to_string());
                return all_bad(errors);
            }
            let got = read(f.offset, end);
            if let Ok(b) = &got {
                hasher.update(b);
                pos = end;
            }
            got.map_err(|e| errors.push(e.to_string())).ok()
        } else {
            // A frame out of file order (a damaged index): read on its own.
            read(f.offset, end)
                .map_err(|e| errors.push(e.to_string()))
                .ok()
        };
        held += stored.as_ref().map_or(0, |s| s.len() as u64);
        let mut in_frame = Vec::new();
        while let Some(b) = blobs.next_if(|b| b.frame as usize == n) {
            in_frame.push(b);
        }
        window.push((stored, f, in_frame));
        if held >= VERIFY_AT_ONCE {
            damaged |= verify(&mut window, &mut errors, &mut bad);
            held = 0;
        }
    }
    damaged |= verify(&mut window, &mut errors, &mut bad);
    // The rest of the file, for its hash.
    if let Err(e) = hash_through(&mut read, &mut hasher, &mut pos, len) {
        errors.push(e.to_string());
        damaged = true;
    }
    let actual = BlobId::from(hasher.finalize());
    if pos == len && actual != idx.archive {
        damaged = true;
        errors.insert(
            0,
            format!(
                "archive {path} content hashes to {} (damaged)",
                actual.short()
            ),
        );
    }
    // Blobs listed out of frame order are a damaged index.
    for b in blobs {
        damaged = true;
        bad.push(b.id);
    }
    (len, errors, bad, damaged)
}

/// Hashes an archive from `*pos` up to `to`, a window at a time, moving `*pos` along.
fn hash_through(
    read: &mut dyn FnMut(u64, u64) -> Result<Vec<u8>>,
    hasher: &mut blake3::Hasher,
    pos: &mut u64,
    to: u64,
) -> Result<()> {
    while *pos < to {
        let step = (to - *pos).min(CHECK_WINDOW);
        hasher.update(&read(*pos, *pos + step)?);
        *pos += step;
    }
    Ok(())
}

/// Convenience: `Err(Corrupt)` when the report holds errors.
///
/// # Errors
/// [`Error::Corrupt`] summarising the report.
pub fn into_result(report: &CheckReport) -> Result<()> {
    if report.ok() {
        Ok(())
    } else {
        Err(Error::corrupt(report.errors.join("; ")))
    }
}
