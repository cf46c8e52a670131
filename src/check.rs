//! Repository verification: structure (manifests parse, referenced blobs indexed, indexes
//! inside their archives) and, with read-data, every archive re-hashed and every blob
//! decompressed and re-hashed, naming the archives and the files damage affects.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::archive::{self, ArchiveIndex};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::{BlobId, IdMap, IdSet};
use crate::repo::Repository;

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

/// What `check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
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
}

impl CheckReport {
    /// Whether no error was found.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks the repository. `seed` picks the subset for `ReadData::Subset`.
///
/// # Errors
/// Only errors that stop the check itself (unreadable folders); damage is reported.
pub fn check(repo: &Repository, read: ReadData, seed: u64) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // Manifests are listed before indexes are read: writers go archive -> index -> manifest,
    // so every manifest listed now has its indexes in place, while a snapshot finishing
    // during the check (they share the lock) adds a manifest whose index we did not read.
    let ids = crate::snapshot::list_ids(repo)?;
    let index_dir = repo.index_dir();
    let mut indexes: Vec<ArchiveIndex> = Vec::new();
    for name in fsutil::list_names(&index_dir, ".json")? {
        let path = index_dir.join(&name);
        match fsutil::read(&path)
            .and_then(|b| ArchiveIndex::decode(&b, &path.display().to_string()))
        {
            Ok(idx) if format!("{}.json", idx.archive.to_hex()) == name => indexes.push(idx),
            Ok(idx) => report.errors.push(format!(
                "index {} describes archive {}",
                path.display(),
                idx.archive
            )),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let archive_names: HashSet<String> = fsutil::list_names(&repo.archives_dir(), ".tar.zst")?
        .into_iter()
        .collect();
    let mut indexed: HashSet<String> = HashSet::new();
    let mut blob_archive: IdMap<Vec<BlobId>> = IdMap::default();
    for idx in &indexes {
        let name = format!("{}.tar.zst", idx.archive.to_hex());
        let path = repo.archive_path(&idx.archive);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == idx.size => {}
            Ok(m) => report.errors.push(format!(
                "archive {} is {} bytes, its index says {}",
                path.display(),
                m.len(),
                idx.size
            )),
            Err(_) => report
                .errors
                .push(format!("archive {} is missing", path.display())),
        }
        indexed.insert(name);
        for b in &idx.blobs {
            blob_archive.entry(b.id).or_default().push(idx.archive);
        }
    }
    for name in archive_names.difference(&indexed) {
        report.warnings.push(format!(
            "archive {name} has no index (left by an interrupted operation; prune removes it)"
        ));
    }
    report.archives = indexes.len();
    report.blobs = blob_archive.len();

    // Manifests: parse, verify, every blob indexed.
    let mut index = crate::store::BlobIndex::default();
    for idx in &indexes {
        index.add(idx);
    }
    let manifests: Vec<(BlobId, Result<crate::manifest::Manifest>)> = ids
        .par_iter()
        .map(|id| (*id, crate::snapshot::load_with(repo, &index, id)))
        .collect();
    let mut live = Vec::new();
    for (id, m) in manifests {
        match m {
            Ok(m) => {
                for e in &m.entries {
                    let mut stored = Some(0u64);
                    for b in &e.blobs {
                        match index.blobs.get(b) {
                            Some(loc) => stored = stored.map(|s| s.saturating_add(loc.length)),
                            None => {
                                stored = None;
                                report.errors.push(format!(
                                    "snapshot {}: {}: blob {} is not in any index",
                                    id.short(),
                                    e.path.display(),
                                    b.short()
                                ));
                            }
                        }
                    }
                    // A size that lies would make restore refuse the file: say so here.
                    let is_file = e.kind == crate::manifest::EntryKind::File;
                    if let Some(stored) = stored.filter(|s| is_file && *s != e.size) {
                        report.errors.push(format!(
                            "snapshot {}: {}: the manifest gives a size of {} bytes, but its blobs hold {stored}",
                            id.short(),
                            e.path.display(),
                            e.size
                        ));
                    }
                }
                live.push((id, m));
            }
            Err(e) => report
                .errors
                .push(format!("snapshot {} cannot be read: {e}", id.short())),
        }
    }
    report.snapshots = live.len();

    let selected: Vec<&ArchiveIndex> = match read {
        ReadData::None => Vec::new(),
        ReadData::All => indexes.iter().collect(),
        ReadData::Subset(pct) => {
            let want = ((indexes.len() as f64) * pct / 100.0).ceil() as usize;
            let mut keyed: Vec<(BlobId, &ArchiveIndex)> = indexes
                .iter()
                .map(|i| {
                    let mut k = i.archive.0.to_vec();
                    k.extend_from_slice(&seed.to_le_bytes());
                    (BlobId::of(&k), i)
                })
                .collect();
            keyed.sort_by_key(|(k, _)| *k);
            keyed.into_iter().take(want).map(|(_, i)| i).collect()
        }
    };
    let results: Vec<(u64, Vec<String>, Vec<BlobId>, bool)> = selected
        .par_iter()
        .map(|idx| read_archive(repo, idx))
        .collect();
    let mut bad_blobs: IdSet = IdSet::default();
    for ((bytes, errs, bad, damaged), idx) in results.into_iter().zip(&selected) {
        report.bytes_read += bytes;
        report.archives_read += 1;
        report.errors.extend(errs);
        if damaged {
            report
                .damaged_archives
                .push(repo.archive_path(&idx.archive).display().to_string());
        }
        bad_blobs.extend(bad);
    }
    if !bad_blobs.is_empty() {
        for (id, m) in &live {
            for e in &m.entries {
                if e.blobs.iter().any(|b| bad_blobs.contains(b)) {
                    report
                        .affected_files
                        .push(format!("{}:{}", id.short(), e.path.display()));
                }
            }
        }
        let shown: Vec<&str> = report
            .affected_files
            .iter()
            .take(10)
            .map(String::as_str)
            .collect();
        report.errors.push(format!(
            "{} blob(s) damaged, affecting {} file version(s): {}{}",
            bad_blobs.len(),
            report.affected_files.len(),
            shown.join(", "),
            if report.affected_files.len() > shown.len() {
                ", ... (all in affected_files)"
            } else {
                ""
            }
        ));
    }
    Ok(report)
}

/// Reads one archive whole: file hash, every frame, every blob.
/// Returns (bytes read, errors, damaged blobs, archive damaged).
fn read_archive(repo: &Repository, idx: &ArchiveIndex) -> (u64, Vec<String>, Vec<BlobId>, bool) {
    let path = repo.archive_path(&idx.archive);
    let mut errors = Vec::new();
    let mut bad = Vec::new();
    let bytes = match fsutil::read(&path) {
        Ok(b) => b,
        Err(e) => {
            errors.push(e.to_string());
            return (0, errors, idx.blobs.iter().map(|b| b.id).collect(), true);
        }
    };
    let mut damaged = false;
    let actual = BlobId::of(&bytes);
    if actual != idx.archive {
        damaged = true;
        errors.push(format!(
            "archive {} content hashes to {} (damaged)",
            path.display(),
            actual.short()
        ));
    }
    // One frame at a time: memory stays at one archive plus one frame.
    let mut blobs = idx.blobs.iter().peekable();
    for (n, f) in idx.frames.iter().enumerate() {
        let slice = bytes.get(f.offset as usize..(f.offset + f.length) as usize);
        let raw = match slice.map(|s| archive::decompress_frame(s, f.raw_length)) {
            Some(Ok(raw)) => Some(raw),
            Some(Err(e)) => {
                errors.push(format!(
                    "archive {}: frame at offset {} is damaged: {e}",
                    path.display(),
                    f.offset
                ));
                None
            }
            None => None,
        };
        damaged |= raw.is_none();
        while let Some(b) = blobs.next_if(|b| b.frame as usize == n) {
            let ok = raw.as_ref().is_some_and(|raw| {
                BlobId::of(&raw[b.offset as usize..(b.offset + b.length) as usize]) == b.id
            });
            if !ok {
                damaged = true;
                bad.push(b.id);
            }
        }
    }
    // Blobs listed out of frame order are a damaged index.
    for b in blobs {
        damaged = true;
        bad.push(b.id);
    }
    (bytes.len() as u64, errors, bad, damaged)
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
