//! The safety net under every operation that overwrites, moves or removes cache files (clear,
//! repair, restore in place, a forced undo): a safety snapshot of exactly the files about to
//! change, refused when incomplete, verified by reading back and re-hashing every blob it
//! references. The [`Receipt`] it returns is the only thing that authorises a change, and
//! only while the file on disk is still the one the snapshot holds (size, mtime, ctime and
//! inode compared right before each change).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{EntryKind, RelPath, SnapshotKind};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::{self, SnapshotOptions};
use crate::store::{BlobIndex, BlobReader};

/// What the verified snapshot holds for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Size.
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Status-change time, ns: any write (even one that puts the mtime back) moves it.
    pub ctime_ns: i64,
    /// Inode.
    pub ino: u64,
    /// Content hash.
    pub hash: Option<BlobId>,
}

/// A verified safety snapshot of the files an operation is about to change.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The safety snapshot.
    pub snapshot: BlobId,
    /// Its root (canonical).
    pub root: String,
    /// Compressed bytes the safety snapshot added to the repository.
    pub bytes_added: u64,
    /// Each file it holds, by path relative to the root.
    held: BTreeMap<String, Held>,
}

impl Receipt {
    /// What the snapshot holds for `path`.
    pub fn held(&self, path: &str) -> Option<&Held> {
        self.held.get(path)
    }

    /// Whether the file at `abs` is still exactly the one the snapshot holds for `path`:
    /// a regular file with the same size, mtime, ctime and inode. Call it right before each
    /// change; `Ok(false)` means "changed since the snapshot": leave it.
    ///
    /// # Errors
    /// I/O errors other than "not found" (which is `Ok(false)`).
    pub fn still_matches(&self, path: &str, abs: &Path) -> Result<bool> {
        let Some(held) = self.held.get(path) else {
            return Ok(false);
        };
        still_matches(held, abs)
    }
}

/// Whether the file at `abs` is a regular file matching `held` (size, mtime, ctime, inode).
///
/// # Errors
/// I/O errors other than "not found".
pub fn still_matches(held: &Held, abs: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(abs) {
        Ok(m) => Ok(m.is_file()
            && m.len() == held.size
            && m.mtime() * 1_000_000_000 + m.mtime_nsec() == held.mtime_ns
            && m.ctime() * 1_000_000_000 + m.ctime_nsec() == held.ctime_ns
            && m.ino() == held.ino),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(abs)(e)),
    }
}

/// How to take a safety snapshot.
#[derive(Debug, Clone)]
pub struct SafetyOptions {
    /// The cache root.
    pub root: PathBuf,
    /// `pre-clear`, `pre-repair`, `pre-restore` or `archive`.
    pub kind: SnapshotKind,
    /// Tags to record besides the kind's name.
    pub tags: Vec<String>,
    /// The time to record.
    pub time: DateTime<FixedOffset>,
    /// Host name to record.
    pub hostname: String,
    /// Cache type folders, for per-type totals.
    pub types: Vec<(String, RelPath)>,
    /// What is about to happen, for messages ("nothing was deleted").
    pub what: &'static str,
}

/// Takes a safety snapshot of exactly `paths` (relative to the root; every file read again,
/// nothing trusted from a parent), refuses it when incomplete, and verifies it by reading
/// back and re-hashing every blob of every file. Only this function builds a [`Receipt`].
///
/// # Errors
/// Anything that fails (a full disk, an unreadable file, a blob that does not read back):
/// nothing may be changed then, and the message says so.
pub fn protect(
    repo: &Repository,
    paths: &[String],
    opts: &SafetyOptions,
    progress: &dyn Progress,
) -> Result<Receipt> {
    let includes: Vec<RelPath> = paths.iter().map(|p| RelPath::from(p.as_str())).collect();
    let mut tags = vec![opts.kind.name().to_string()];
    tags.extend(opts.tags.iter().cloned());
    tags.dedup();
    let snap = snapshot::create(
        repo,
        &SnapshotOptions {
            root: opts.root.clone(),
            includes,
            kind: opts.kind,
            types: opts.types.clone(),
            tags,
            time: opts.time,
            hostname: opts.hostname.clone(),
            rehash: true,
            dry_run: false,
            parent: None,
        },
        progress,
    )?;
    let id = snap.id.expect("a snapshot that is not a dry run has an id");
    if !snap.skipped.is_empty() || !snap.manifest.complete {
        return Err(Error::Invalid(format!(
            "the {} snapshot {} is incomplete ({}); {}",
            opts.kind,
            id.short(),
            snap.skipped.join("; "),
            opts.what
        )));
    }
    crate::fault::point("net.before_verify");
    crate::fault::pause("net.before_verify");
    let mut receipt = verify(repo, id, paths, opts)?;
    receipt.bytes_added = snap.manifest.summary.bytes_added;
    Ok(receipt)
}

/// Re-reads and re-hashes every blob of every file of `paths` from the snapshot `id`.
fn verify(
    repo: &Repository,
    id: BlobId,
    paths: &[String],
    opts: &SafetyOptions,
) -> Result<Receipt> {
    let index = BlobIndex::load(repo)?;
    let m = snapshot::load_with(repo, &index, &id)?;
    let mut reader = BlobReader::new(repo, &index);
    let entries: BTreeMap<&RelPath, &crate::manifest::Entry> =
        m.entries.iter().map(|e| (&e.path, e)).collect();
    let mut held = BTreeMap::new();
    for path in paths {
        crate::cancel::check()?;
        let rel = RelPath::from(path.as_str());
        let e = entries
            .get(&rel)
            .filter(|e| e.kind == EntryKind::File)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{} snapshot {} does not hold {path}; {}",
                    opts.kind,
                    id.short(),
                    opts.what
                ))
            })?;
        let mut hasher = blake3::Hasher::new();
        for b in &e.blobs {
            hasher.update(&reader.read(b)?);
        }
        if Some(BlobId::from(hasher.finalize())) != e.hash {
            return Err(Error::corrupt(format!(
                "{} snapshot {}: {path} does not read back as stored; {}",
                opts.kind,
                id.short(),
                opts.what
            )));
        }
        held.insert(
            path.clone(),
            Held {
                size: e.size,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
                ino: e.ino,
                hash: e.hash,
            },
        );
    }
    Ok(Receipt {
        snapshot: id,
        root: m.root,
        bytes_added: 0,
        held,
    })
}
