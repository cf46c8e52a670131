//! Taking a snapshot: scan -> reuse unchanged files from the parent -> read, chunk, hash and
//! compress the rest in parallel (bounded memory) -> hard links take the content of their
//! group's first path -> archives -> indexes -> manifest.
//! Also lists and resolves existing snapshots.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;

use crate::archive::{CompressedFrame, FrameBuilder};
use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::{BlobId, IdSet};
use crate::manifest::{
    Entry, EntryKind, Manifest, RelPath, SnapshotKind, SnapshotStats, Tree, MANIFEST_VERSION,
};
use crate::progress::Progress;
use crate::repo::{layout, Repository};
use crate::scan::{self, ScannedEntry, Stat};
use crate::store::{BlobIndex, BlobReader, PackWriter};

/// What to snapshot and how.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Folder the entry paths are relative to.
    pub root: PathBuf,
    /// Sub-paths of `root` to include; empty = all of it.
    pub includes: Vec<RelPath>,
    /// What the snapshot is for.
    pub kind: SnapshotKind,
    /// Cache types and their folders (relative to `root`), to record files and bytes per
    /// type; empty without a config.
    pub types: Vec<(String, RelPath)>,
    /// Tags to record.
    pub tags: Vec<String>,
    /// Time to record.
    pub time: DateTime<FixedOffset>,
    /// Host name to record.
    pub hostname: String,
    /// Re-read every file instead of trusting unchanged metadata.
    pub rehash: bool,
    /// Read and hash, but write nothing.
    pub dry_run: bool,
    /// Use this parent instead of the newest snapshot of the same root and paths.
    pub parent: Option<BlobId>,
}

/// What a snapshot did.
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    /// Id of the written manifest (None on a dry run).
    pub id: Option<BlobId>,
    /// The manifest (entries included).
    pub manifest: Manifest,
    /// Files that could not be read: the snapshot is incomplete, exit code 1.
    pub skipped: Vec<String>,
    /// Things worth telling (vanished files, ignored special files).
    pub warnings: Vec<String>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// What a snapshot starts from: the index of present archives, the parent's entries as
/// they are decoded, and warnings about damage met on the way.
type Loaded = (std::sync::Arc<BlobIndex>, ParentStream, Vec<String>);

/// Reads a file this many times before reporting it as changing during the read.
const READ_ATTEMPTS: usize = 3;
/// A batch of files handed to one worker: bounded so memory stays bounded.
const BATCH_BYTES: u64 = 8 << 20;

struct Shared<'a> {
    repo: &'a Repository,
    /// The snapshot root: entry paths are relative to it.
    root: &'a Path,
    known: &'a BlobIndex,
    pending: Mutex<IdSet>,
    dry_run: bool,
    progress: &'a dyn Progress,
}

/// Outcome of reading one file.
enum FileOutcome {
    Stored {
        stat: Stat,
        hash: BlobId,
        blobs: Vec<BlobId>,
    },
    Vanished,
    Failed(String),
}

/// Takes a snapshot.
///
/// # Errors
/// Repository I/O errors (a full disk included) abort the snapshot and write no manifest;
/// per-file problems are reported in the summary instead.
pub fn create(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotSummary> {
    let started = Instant::now();
    let root = opts.root.canonicalize().map_err(Error::io(&opts.root))?;
    if !root.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a folder",
            opts.root.display()
        )));
    }
    let repo_abs = repo.local_path().and_then(|p| p.canonicalize().ok());
    let root_text = root.to_string_lossy().into_owned();
    let paths: Vec<String> = if opts.includes.is_empty() {
        vec![root_text.clone()]
    } else {
        opts.includes
            .iter()
            .map(|i| root.join(i.to_path()).to_string_lossy().into_owned())
            .collect()
    };

    // The walk (system calls) and loading the index and the parent's header overlap; the
    // parent's entry list is then decoded on a thread of its own, a few thousand entries
    // ahead at most, and met in path order: neither list is ever whole in memory. The
    // index counts only archives that are present: a blob whose archive is gone is absent,
    // and a file whose data it held is read and stored again.
    let load_parent = || -> Result<Loaded> {
        let index = BlobIndex::load(repo)?;
        let mut warnings = index.warnings();
        let parent_id = match opts.parent {
            Some(p) => Some(p),
            None => find_parent(repo, &opts.hostname, &root_text, &paths)?,
        };
        let header = match parent_id {
            Some(id) => match load_header(repo, &id) {
                Ok(m) => Some((id, m)),
                // A damaged parent costs only the time to read every file again.
                Err(e) if e.is_corruption() => {
                    warnings.push(format!(
                        "the parent snapshot {} cannot be read ({e}); every file is read again",
                        id.short()
                    ));
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let index = std::sync::Arc::new(index);
        let parent = match header {
            Some((id, m)) => ParentStream::start(repo, index.clone(), id, m),
            None => ParentStream::default(),
        };
        Ok((index, parent, warnings))
    };
    let (scanned, loaded) = rayon::join(
        || scan::scan(&root, &opts.includes, repo_abs.as_deref()),
        load_parent,
    );
    let (known, mut parent, index_warnings) = loaded?;
    let known: &BlobIndex = &known;

    let mut stats = SnapshotStats::default();
    let mut entries: Vec<Option<Entry>> = Vec::with_capacity(scanned.entries.len());
    let mut to_read: Vec<ReadJob> = Vec::new();
    // Hard links: the first path of each (device, inode) in path order, and the later ones,
    // which take its content instead of reading the file again.
    let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
    let mut followers: Vec<Follower> = Vec::new();
    let mut healed = 0u64;
    // Whether every entry is the parent's, unchanged: then so is the entry list, and its
    // stored tree is named as it is instead of being encoded and hashed again.
    let mut same = true;
    let scan::ScanResult {
        entries: walked,
        errors: scan_errors,
        ignored,
    } = scanned;
    // Each walked entry moves into the snapshot's entry: no path is held twice.
    for se in walked {
        let ScannedEntry {
            path,
            kind,
            stat,
            target,
            link_key,
        } = se;
        let idx = entries.len();
        let mut entry = Entry {
            path,
            kind,
            mode: stat.mode,
            mtime_ns: stat.mtime_ns,
            size: 0,
            ino: 0,
            ctime_ns: 0,
            hash: None,
            blobs: Default::default(),
            target,
            link: None,
        };
        // Set for regular files with more than one link only.
        let first = link_key.and_then(|key| match first_of.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(idx);
                None
            }
        });
        let prev = parent.at(&entry.path);
        match (kind, first) {
            (EntryKind::Dir, _) => {
                stats.dirs += 1;
                same &= prev.as_ref() == Some(&entry);
            }
            (EntryKind::Symlink, _) => {
                stats.symlinks += 1;
                same &= prev.as_ref() == Some(&entry);
            }
            (EntryKind::File, Some(first)) => {
                same = false;
                followers.push(Follower {
                    idx,
                    first,
                    stat,
                    prev: prev.filter(usable_file).map(|p| Prev::of(&p)),
                });
            }
            (EntryKind::File, None) => {
                let prev = prev.filter(usable_file);
                let unchanged = prev
                    .as_ref()
                    .is_some_and(|p| !opts.rehash && Prev::of(p).matches(&stat));
                // Never reference a blob not proven present: unchanged files whose data is
                // gone are read again, whatever the parent says.
                let present = unchanged
                    && prev
                        .as_ref()
                        .is_some_and(|p| p.blobs.iter().all(|b| known.contains(b)));
                match prev {
                    Some(p) if present => {
                        entry.size = p.size;
                        entry.ino = p.ino;
                        entry.ctime_ns = p.ctime_ns;
                        entry.hash = p.hash;
                        if same {
                            // Nearly always one blob, inline: the copy costs nothing.
                            entry.blobs = p.blobs.clone();
                            same = entry == p;
                        } else {
                            entry.blobs = p.blobs;
                        }
                        stats.files_unchanged += 1;
                        stats.bytes_total += entry.size;
                    }
                    prev => {
                        same = false;
                        healed += u64::from(unchanged);
                        to_read.push(ReadJob {
                            idx,
                            stat,
                            had_prev: prev.is_some(),
                        });
                    }
                }
            }
        }
        entries.push(Some(entry));
    }
    // The parent is read to its end, so that its whole list is checked.
    let (parent_id, parent_tree, parent_warning) = match parent.finish() {
        Ok((id, tree)) => (id, tree.filter(|_| same), None),
        Err((id, e)) if e.is_corruption() => (
            None,
            None,
            Some(format!(
                "the parent snapshot {} cannot be read whole ({e}); the files past the damage were read again",
                id.short()
            )),
        ),
        Err((_, e)) => return Err(e),
    };

    let mut skipped: Vec<String> = scan_errors;
    let mut warnings: Vec<String> = index_warnings;
    warnings.extend(parent_warning);
    if healed > 0 {
        warnings.push(format!(
            "{healed} unchanged file(s) were read and stored again: their data was in a missing or unindexed archive"
        ));
    }
    warnings.extend(ignored);
    let mut sink: Option<Sink> = None;
    // One set of blobs pending for both rounds of reading, so neither stores one twice.
    let shared = Shared {
        repo,
        root: &root,
        known,
        pending: Mutex::new(IdSet::default()),
        dry_run: opts.dry_run,
        progress,
    };
    let mut outcomes = Outcomes {
        entries: &mut entries,
        stats: &mut stats,
        warnings: &mut warnings,
        skipped: &mut skipped,
    };
    read_round(&shared, &mut sink, &to_read, &mut outcomes)?;
    // A hard link whose first path vanished or could not be read is read on its own.
    let orphans = link_followers(&followers, opts.rehash, &mut outcomes);
    read_round(&shared, &mut sink, &orphans, &mut outcomes)?;
    // The reading plan is done with: freed before the entry list is written.
    drop((orphans, followers, to_read));
    // In place (an `Option<Entry>` is the size of an `Entry`): no second list.
    entries.retain(Option::is_some);
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(|e| e.expect("kept above"))
        .collect();
    stats.types = type_totals(&entries, &opts.types);

    // The entry list, stored as content-defined blobs: when nothing changed they are the
    // parent's, byte for byte, already stored, and cost nothing.
    let stored = match parent_tree {
        Some(tree) => Ok(tree),
        None => store_tree(repo, known, &mut sink, &entries, opts.dry_run),
    };
    let tree = match stored {
        Ok(tree) => tree,
        // The writer may have failed after taking the last file frame: its error (a full
        // disk, say) is the one worth reporting, not "writer stopped".
        Err(e) => {
            return Err(match sink.as_mut() {
                Some(sink) => sink.fail(e),
                None => e,
            })
        }
    };
    if let Some(mut sink) = sink {
        let (written, nblobs) = sink.finish()?;
        stats.bytes_added = written;
        stats.blobs_added = nblobs;
    }

    let manifest = Manifest {
        version: MANIFEST_VERSION,
        time: opts.time,
        kind: Some(opts.kind),
        hostname: opts.hostname.clone(),
        root: root_text,
        paths,
        tags: opts.tags.clone(),
        parent: parent_id,
        repaired_from: None,
        complete: skipped.is_empty(),
        warnings: skipped.iter().chain(warnings.iter()).cloned().collect(),
        summary: stats,
        tree,
        entries,
    };
    let id = if opts.dry_run {
        None
    } else {
        // The last safe point: a signal now leaves stored blobs for prune, no manifest.
        crate::cancel::check()?;
        crate::fault::point("snapshot.before_manifest");
        Some(write_manifest(repo, &manifest)?)
    };
    Ok(SnapshotSummary {
        id,
        manifest,
        skipped,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A file to read: the position of its entry, its metadata as walked, and whether the
/// parent has its path.
#[derive(Debug, Clone, Copy)]
struct ReadJob {
    idx: usize,
    stat: Stat,
    had_prev: bool,
}

/// What the parent says of a file, to tell whether it changed.
#[derive(Debug, Clone, Copy)]
struct Prev {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    hash: Option<BlobId>,
}

impl Prev {
    fn of(e: &Entry) -> Prev {
        Prev {
            size: e.size,
            mtime_ns: e.mtime_ns,
            ctime_ns: e.ctime_ns,
            ino: e.ino,
            hash: e.hash,
        }
    }

    /// Whether the file is as the parent saw it.
    fn matches(&self, stat: &Stat) -> bool {
        self.size == stat.size
            && self.mtime_ns == stat.mtime_ns
            && self.ctime_ns == stat.ctime_ns
            && self.ino == stat.ino
    }
}

/// A later path of a group of hard links, and the index of the group's first path.
struct Follower {
    idx: usize,
    first: usize,
    stat: Stat,
    /// What the parent says of it.
    prev: Option<Prev>,
}

/// The parent's entry list, decoded blob by blob on a thread of its own and met in path
/// order ([`ParentStream::file`]): a bounded channel keeps it a few thousand entries ahead,
/// so memory does not grow with the parent. The default stream has no parent.
#[derive(Default)]
struct ParentStream {
    id: Option<BlobId>,
    /// The parent's stored entry list, when it is of the current version.
    tree: Option<Tree>,
    /// Whether an entry of the parent was passed over: met by no walked path.
    unmatched: bool,
    rx: Option<std::sync::mpsc::Receiver<Result<Vec<Entry>>>>,
    batch: std::vec::IntoIter<Entry>,
    next: Option<Entry>,
    failed: Option<Error>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// Batches of decoded parent entries waiting in the channel.
const PARENT_AHEAD: usize = 2;

/// Whether a parent's entry is a self-consistent regular file: the only kind worth
/// comparing a walked file with.
fn usable_file(e: &Entry) -> bool {
    e.kind == EntryKind::File && e.hash.is_some() && (e.size > 0) != e.blobs.is_empty()
}

impl ParentStream {
    fn start(
        repo: &Repository,
        index: std::sync::Arc<BlobIndex>,
        id: BlobId,
        header: Manifest,
    ) -> ParentStream {
        let (tx, rx) = sync_channel(PARENT_AHEAD);
        let repo = repo.clone();
        let tree = (header.version == MANIFEST_VERSION).then(|| header.tree.clone());
        let handle = std::thread::spawn(move || {
            if let Err(e) = stream_entries(&repo, &index, &id, &header, &tx) {
                let _ = tx.send(Err(e));
            }
        });
        ParentStream {
            id: Some(id),
            tree,
            rx: Some(rx),
            handle: Some(handle),
            ..ParentStream::default()
        }
    }

    /// The next entry of the parent, or None at its end or at damage (kept for
    /// [`ParentStream::finish`]).
    fn pull(&mut self) -> Option<Entry> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            match self.rx.as_ref()?.recv() {
                Ok(Ok(batch)) => self.batch = batch.into_iter(),
                Ok(Err(e)) => {
                    self.failed = Some(e);
                    self.rx = None;
                }
                Err(_) => self.rx = None,
            }
        }
    }

    /// The parent's entry at `path`, passing over the entries before it. Calls come in
    /// path order (the walk's), as the parent's entries are sorted.
    fn at(&mut self, path: &RelPath) -> Option<Entry> {
        loop {
            let next = match self.next.take() {
                Some(e) => e,
                None => self.pull()?,
            };
            match next.path.cmp(path) {
                std::cmp::Ordering::Less => self.unmatched = true,
                std::cmp::Ordering::Equal => return Some(next),
                std::cmp::Ordering::Greater => {
                    self.next = Some(next);
                    return None;
                }
            }
        }
    }

    /// Reads the parent to its end, so its whole list is checked: Ok(its id, or None
    /// without a parent; its stored tree when every one of its entries was met), or
    /// Err(its id, what was wrong).
    #[allow(clippy::type_complexity)]
    fn finish(mut self) -> std::result::Result<(Option<BlobId>, Option<Tree>), (BlobId, Error)> {
        if self.next.take().is_some() || self.pull().is_some() {
            self.unmatched = true;
            while self.pull().is_some() {}
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        match (self.id, self.failed.take()) {
            (Some(id), Some(e)) => Err((id, e)),
            (id, None) => Ok((id, self.tree.filter(|_| !self.unmatched))),
            (None, Some(_)) => Ok((None, None)),
        }
    }
}

/// The body of [`ParentStream`]'s thread: reads and decodes the tree blobs of `header`,
/// sending the entries on as each blob is decoded; checks the whole list at its end.
/// Returns quietly when the receiver is gone.
fn stream_entries(
    repo: &Repository,
    index: &BlobIndex,
    id: &BlobId,
    header: &Manifest,
    tx: &SyncSender<Result<Vec<Entry>>>,
) -> Result<()> {
    let mut reader = BlobReader::new(repo, index);
    let mut decoder = crate::manifest::EntryDecoder::streaming(header, id);
    for b in &header.tree.blobs {
        let read = reader
            .read_with(b, |data| decoder.feed(data))
            .map_err(|e| tree_error(id, e))
            .and_then(|fed| fed);
        if let Err(e) = read {
            // The entries of the blobs read so far are sound: they go on before the error.
            if decoder.flush().is_ok() {
                let _ = tx.send(Ok(decoder.take()));
            }
            return Err(e);
        }
        let batch = decoder.take();
        if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
            return Ok(());
        }
    }
    let last = decoder.end(header)?;
    if !last.is_empty() {
        let _ = tx.send(Ok(last));
    }
    Ok(())
}

/// An error reading a snapshot's entry list, naming the snapshot when it is damage.
fn tree_error(id: &BlobId, e: Error) -> Error {
    if e.is_corruption() {
        Error::corrupt(format!(
            "snapshot {}: its entry list cannot be read: {e}",
            id.short()
        ))
    } else {
        e
    }
}

/// What reading files changes in a snapshot being built.
struct Outcomes<'a> {
    entries: &'a mut Vec<Option<Entry>>,
    stats: &'a mut SnapshotStats,
    warnings: &'a mut Vec<String>,
    skipped: &'a mut Vec<String>,
}

/// Reads, chunks, hashes and stores the files of `to_read` in parallel batches, and
/// records each outcome.
fn read_round(
    shared: &Shared<'_>,
    sink: &mut Option<Sink>,
    to_read: &[ReadJob],
    out: &mut Outcomes<'_>,
) -> Result<()> {
    if to_read.is_empty() {
        return Ok(());
    }
    let sink = match sink {
        Some(s) => s,
        None => sink.insert(Sink::start(shared.repo, shared.dry_run)),
    };
    let progress = shared.progress;
    let total: u64 = to_read.iter().map(|j| j.stat.size).sum();
    progress.start("snapshot", total);
    let batches = batches(to_read);
    // Each batch's outcomes go into the entries as soon as it is read, so what is pending
    // stays bounded by the batches in flight. Messages keep their place in the plan, so
    // they read in path order whichever batch ends first.
    let applied = Mutex::new((&mut *out, Vec::<(usize, bool, String)>::new()));
    let lock = || applied.lock().expect("outcome lock is never poisoned");
    let result = batches.par_iter().try_for_each(|batch| -> Result<()> {
        let paths: Vec<std::path::PathBuf> = {
            let guard = lock();
            batch
                .iter()
                .map(|&r| {
                    let e = guard.0.entries[to_read[r].idx]
                        .as_ref()
                        .expect("entry exists");
                    shared.root.join(e.path.to_path())
                })
                .collect()
        };
        let outcomes = read_batch(shared, &paths, to_read, batch, sink.tx.clone())?;
        let mut guard = lock();
        let (out, notes) = &mut *guard;
        for ((read_no, outcome), abs) in outcomes.into_iter().zip(&paths) {
            let job = to_read[read_no];
            match outcome {
                FileOutcome::Stored { stat, hash, blobs } => {
                    let e = out.entries[job.idx].as_mut().expect("entry exists");
                    set_content(e, &stat, Some(hash), blobs.into());
                    out.stats.bytes_total += stat.size;
                    out.stats.bytes_read += stat.size;
                    if job.had_prev {
                        out.stats.files_changed += 1;
                    } else {
                        out.stats.files_new += 1;
                    }
                }
                FileOutcome::Vanished => {
                    out.entries[job.idx] = None;
                    notes.push((
                        read_no,
                        false,
                        format!("{}: vanished during the snapshot", abs.display()),
                    ));
                }
                FileOutcome::Failed(msg) => {
                    out.entries[job.idx] = None;
                    notes.push((read_no, true, msg));
                }
            }
        }
        Ok(())
    });
    progress.finish();
    let (out, mut notes) = applied
        .into_inner()
        .expect("outcome lock is never poisoned");
    if let Err(e) = result {
        // The writer's own error (a full disk, say) is the one worth reporting; the
        // unfinished archive is dropped.
        return Err(sink.fail(e));
    }
    notes.sort_unstable_by_key(|(read_no, _, _)| *read_no);
    for (_, skipped, msg) in notes {
        if skipped {
            out.skipped.push(msg);
        } else {
            out.warnings.push(msg);
        }
    }
    Ok(())
}

/// Records a file's metadata and content in its entry.
fn set_content(e: &mut Entry, stat: &Stat, hash: Option<BlobId>, blobs: crate::manifest::Blobs) {
    e.mode = stat.mode;
    e.mtime_ns = stat.mtime_ns;
    e.size = stat.size;
    e.ino = stat.ino;
    e.ctime_ns = stat.ctime_ns;
    e.hash = hash;
    e.blobs = blobs;
}

/// Gives each later path of a group of hard links the content and metadata of the group's
/// first path (one inode: read once) and a `link` to it. Returns the files to read on their
/// own instead: those whose first path vanished or could not be read.
fn link_followers(followers: &[Follower], rehash: bool, out: &mut Outcomes<'_>) -> Vec<ReadJob> {
    let mut orphans = Vec::new();
    for f in followers {
        let Some(first) = out.entries[f.first].clone() else {
            orphans.push(ReadJob {
                idx: f.idx,
                stat: f.stat,
                had_prev: f.prev.is_some(),
            });
            continue;
        };
        let e = out.entries[f.idx].as_mut().expect("entry exists");
        let stat = Stat {
            mode: first.mode,
            size: first.size,
            mtime_ns: first.mtime_ns,
            ctime_ns: first.ctime_ns,
            ino: first.ino,
        };
        set_content(e, &stat, first.hash, first.blobs);
        e.link = Some(Box::new(first.path));
        let e = &*e;
        let unchanged = f.prev.is_some_and(|p| {
            !rehash
                && p.size == e.size
                && p.mtime_ns == e.mtime_ns
                && p.ctime_ns == e.ctime_ns
                && p.ino == e.ino
                && p.hash == e.hash
        });
        out.stats.bytes_total += e.size;
        if unchanged {
            out.stats.files_unchanged += 1;
        } else if f.prev.is_some() {
            out.stats.files_changed += 1;
        } else {
            out.stats.files_new += 1;
        }
    }
    orphans
}

/// Files and bytes per cache type: a file belongs to the type with the most specific folder
/// holding it; state files (`*_state.json`) belong to none. Every named type appears.
pub fn type_totals(
    entries: &[Entry],
    types: &[(String, RelPath)],
) -> std::collections::BTreeMap<String, crate::manifest::TypeTotals> {
    let mut out: std::collections::BTreeMap<String, crate::manifest::TypeTotals> = types
        .iter()
        .map(|(n, _)| (n.clone(), Default::default()))
        .collect();
    for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
        if crate::config::is_state_file(e.path.file_name()) {
            continue;
        }
        let owner = types
            .iter()
            .filter(|(_, dir)| e.path.starts_with(dir))
            .max_by_key(|(_, dir)| dir.depth());
        if let Some((name, _)) = owner {
            let t = out.entry(name.clone()).or_default();
            t.files += 1;
            t.bytes += e.size;
        }
    }
    out
}

/// Writes a manifest header whose tree blobs are already stored; returns its id.
///
/// # Errors
/// I/O errors.
pub fn write_manifest(repo: &Repository, manifest: &Manifest) -> Result<BlobId> {
    let (id, json) = manifest.encode_header(repo.ids());
    repo.write_manifest(&id, &json)?;
    Ok(id)
}

/// Stores `entries` as a snapshot's tree (when not already stored) and writes its manifest:
/// the way to record a manifest built outside [`create`] (tests, tools).
///
/// # Errors
/// I/O errors.
pub fn store_manifest(repo: &Repository, manifest: &mut Manifest) -> Result<BlobId> {
    let index = BlobIndex::load(repo)?;
    let mut sink = None;
    let stored = store_tree(repo, &index, &mut sink, &manifest.entries, false);
    // The writer's own error (a full disk, say) comes first, as in `create`.
    match (stored, sink) {
        (Ok(tree), sink) => {
            if let Some(mut sink) = sink {
                sink.finish()?;
            }
            manifest.tree = tree;
        }
        (Err(e), Some(mut sink)) => return Err(sink.fail(e)),
        (Err(e), None) => return Err(e),
    }
    write_manifest(repo, manifest)
}

/// Stores the entry list as JSON Lines cut into content-defined blobs, streaming: the text
/// is never whole in memory. Blobs already indexed are not stored again; the archive
/// writer starts only when a blob is new.
fn store_tree(
    repo: &Repository,
    index: &BlobIndex,
    sink: &mut Option<Sink>,
    entries: &[Entry],
    dry_run: bool,
) -> Result<Tree> {
    let level = if dry_run { 1 } else { repo.config().zstd_level };
    let mut builder = FrameBuilder::default();
    let mut blobs = Vec::new();
    let mut seen = IdSet::default();
    let ids = repo.ids();
    let mut store = |data: &[u8]| -> Result<()> {
        let id = ids.of(data);
        blobs.push(id);
        if !index.contains(&id) && seen.insert(id) {
            builder.push(id, data);
            if builder.is_full() {
                let sink = sink.get_or_insert_with(|| Sink::start(repo, dry_run));
                sink.send(builder.compress(level)?)?;
            }
        }
        Ok(())
    };
    let (hash, size) = crate::manifest::chunk_entries(entries, &mut store)?;
    if !builder.is_empty() {
        let sink = sink.get_or_insert_with(|| Sink::start(repo, dry_run));
        sink.send(builder.compress(level)?)?;
    }
    Ok(Tree {
        blobs,
        hash: Some(hash),
        entries: entries.len() as u64,
        size,
    })
}

/// The archive-writing thread: frames in through a bounded channel (bounded memory),
/// archives and indexes out.
struct Sink {
    tx: SyncSender<CompressedFrame>,
    handle: Option<std::thread::JoinHandle<Result<(u64, u64)>>>,
    /// Set when the snapshot failed: the unfinished archive is dropped, not finished.
    abort: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    fn start(repo: &Repository, dry_run: bool) -> Sink {
        let (tx, rx) = sync_channel::<CompressedFrame>(4);
        let repo = repo.clone();
        let abort = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let aborted = abort.clone();
        let handle = std::thread::spawn(move || -> Result<(u64, u64)> {
            let mut pack = PackWriter::storing_only(&repo);
            let mut blobs = 0u64;
            for frame in rx {
                blobs += frame.blobs.len() as u64;
                if dry_run {
                    pack.bytes_written += frame.raw_length;
                    continue;
                }
                if let Err(e) = pack.add(frame) {
                    pack.abandon();
                    return Err(e);
                }
            }
            if aborted.load(std::sync::atomic::Ordering::SeqCst) {
                pack.abandon();
                return Ok((0, 0));
            }
            let written = pack.bytes_written;
            pack.finish()?;
            Ok((written, blobs))
        });
        Sink {
            tx,
            handle: Some(handle),
            abort,
        }
    }

    /// The snapshot failed with `e`: the unfinished archive is dropped (its temp file
    /// removed); returns the writer's own error if it had one (a full disk, say), else `e`.
    fn fail(&mut self, e: Error) -> Error {
        self.abort.store(true, std::sync::atomic::Ordering::SeqCst);
        self.finish().err().unwrap_or(e)
    }

    fn send(&self, frame: CompressedFrame) -> Result<()> {
        self.tx.send(frame).map_err(|_| {
            Error::Invalid("archive writer stopped (see the error it reported)".into())
        })
    }

    /// Closes the channel and waits for the writer: (compressed bytes, blobs) written.
    fn finish(&mut self) -> Result<(u64, u64)> {
        let (tx, _) = sync_channel(0);
        drop(std::mem::replace(&mut self.tx, tx));
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::Invalid("archive writer thread panicked".into()))?,
            None => Ok((0, 0)),
        }
    }
}

/// Splits the files to read into batches of neighbouring files (positions in `to_read`),
/// so that files that sit together on disk share frames (good compression, cheap restores).
fn batches(to_read: &[ReadJob]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0u64;
    for (i, job) in to_read.iter().enumerate() {
        cur.push(i);
        bytes += job.stat.size;
        if bytes >= BATCH_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Reads the files of one batch (`paths` are theirs, in order); returns each outcome with
/// its position in `to_read`.
fn read_batch(
    shared: &Shared<'_>,
    paths: &[std::path::PathBuf],
    to_read: &[ReadJob],
    batch: &[usize],
    tx: SyncSender<CompressedFrame>,
) -> Result<Vec<(usize, FileOutcome)>> {
    let level = shared.repo.config().zstd_level;
    let mut builder = FrameBuilder::default();
    let mut out = Vec::with_capacity(batch.len());
    let send = |builder: &mut FrameBuilder| -> Result<()> {
        let frame = if shared.dry_run {
            let f = builder.compress(1)?;
            CompressedFrame {
                data: Vec::new(),
                ..f
            }
        } else {
            builder.compress(level)?
        };
        tx.send(frame).map_err(|_| {
            Error::Invalid("archive writer stopped (see the error it reported)".into())
        })
    };
    for (&read_no, abs) in batch.iter().zip(paths) {
        crate::cancel::check()?;
        let outcome = read_file(shared, abs, to_read[read_no].stat, &mut builder, &send)?;
        out.push((read_no, outcome));
        crate::fault::pause("snapshot.reading");
    }
    if !builder.is_empty() {
        send(&mut builder)?;
    }
    Ok(out)
}

fn read_file(
    shared: &Shared<'_>,
    abs: &Path,
    walked: Stat,
    builder: &mut FrameBuilder,
    send: &dyn Fn(&mut FrameBuilder) -> Result<()>,
) -> Result<FileOutcome> {
    let params = shared.repo.config().chunker;
    let mut before = walked;
    for attempt in 1..=READ_ATTEMPTS {
        let file = match fsutil::open_noatime(abs) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileOutcome::Vanished),
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
        };
        if let Ok(m) = file.metadata() {
            before = Stat::of(&m);
        }
        let mut hasher = blake3::Hasher::new();
        let mut blobs = Vec::new();
        let ids = shared.repo.ids();
        let read = crate::chunk::for_each_chunk(&file, before.size, &params, |data| {
            hasher.update(data);
            let id = ids.of(data);
            blobs.push(id);
            shared.progress.inc(data.len() as u64);
            if !shared.known.contains(&id)
                && shared
                    .pending
                    .lock()
                    .expect("pending set lock is never poisoned")
                    .insert(id)
            {
                builder.push(id, data);
                if builder.is_full() {
                    send(builder)?;
                }
            }
            Ok(())
        });
        match read {
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        let after = match std::fs::symlink_metadata(abs) {
            Ok(m) => Stat::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileOutcome::Vanished),
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
        };
        let hash = BlobId::from(hasher.finalize());
        if after == before {
            return Ok(FileOutcome::Stored {
                stat: after,
                hash,
                blobs,
            });
        }
        if attempt == READ_ATTEMPTS {
            return Ok(FileOutcome::Failed(format!(
                "{}: changed while being read ({} attempts)",
                abs.display(),
                READ_ATTEMPTS
            )));
        }
    }
    unreachable!("the last attempt always returns")
}

/// Loads and verifies one manifest header (no entries).
///
/// # Errors
/// [`Error::SnapshotNotFound`], I/O errors and [`Error::Corrupt`].
pub fn load_header(repo: &Repository, id: &BlobId) -> Result<Manifest> {
    let data = match repo.read_manifest(id) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Err(Error::SnapshotNotFound(id.to_hex())),
        Err(e) => return Err(e),
    };
    Manifest::decode_header(repo.ids(), id, &data)
}

/// Loads one manifest with its entries, reading the tree blobs through `index`.
///
/// # Errors
/// As [`load_header`]; a damaged tree blob is [`Error::Corrupt`]/[`Error::CorruptBlob`].
pub fn load_with(repo: &Repository, index: &BlobIndex, id: &BlobId) -> Result<Manifest> {
    load_entries(repo, index, id, load_header(repo, id)?)
}

/// Reads the entries of a manifest whose header is already loaded.
///
/// # Errors
/// A tree blob that is not indexed or damaged: [`Error::Corrupt`]/[`Error::CorruptBlob`].
pub fn load_entries(
    repo: &Repository,
    index: &BlobIndex,
    id: &BlobId,
    mut m: Manifest,
) -> Result<Manifest> {
    let mut reader = BlobReader::new(repo, index);
    let mut decoder = crate::manifest::EntryDecoder::new(&m, id);
    for b in &m.tree.blobs {
        reader
            .read_with(b, |data| decoder.feed(data))
            .map_err(|e| tree_error(id, e))??;
    }
    decoder.finish(&mut m)?;
    Ok(m)
}

/// Loads one manifest with its entries.
///
/// # Errors
/// As [`load_with`].
pub fn load(repo: &Repository, id: &BlobId) -> Result<Manifest> {
    load_with(repo, &BlobIndex::load(repo)?, id)
}

/// Ids of every snapshot in the repository (names in `snapshots/` that are not ids are left
/// out; [`list`] reports them).
///
/// # Errors
/// I/O errors.
pub fn list_ids(repo: &Repository) -> Result<Vec<BlobId>> {
    Ok(repo.list_manifests()?.0)
}

/// Every snapshot header, and every manifest that could not be read.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Readable headers (no entries), oldest first (by time, then id).
    pub snapshots: Vec<(BlobId, Manifest)>,
    /// Manifests that do not parse or verify, by file: each costs only itself.
    pub damaged: Vec<crate::repo::Damaged>,
}

/// Lists every snapshot header. One unreadable manifest does not stop the listing: it is
/// named in [`Listing::damaged`].
///
/// # Errors
/// I/O errors on the folder or a file; damage is not an error here.
pub fn list(repo: &Repository) -> Result<Listing> {
    let (ids, odd) = repo.list_manifests()?;
    let mut results: Vec<(String, Option<BlobId>, Result<Manifest>)> = repo.reading(|| {
        ids.par_iter()
            .map(|id| (layout::manifest(id), Some(*id), load_header(repo, id)))
            .collect()
    });
    for n in odd {
        let err = Error::corrupt("the name is not a snapshot id");
        results.push((n, None, Err(err)));
    }
    let mut out = Listing::default();
    for (name, id, r) in results {
        match (id, r) {
            (Some(id), Ok(m)) => out.snapshots.push((id, m)),
            (None, Ok(_)) => unreachable!("a name that is not an id is never loaded"),
            // Forgotten since the listing: not there.
            (_, Err(Error::SnapshotNotFound(_))) => {}
            // A newer manifest version is not damage: it is refused (upgrade cachevault).
            (_, Err(e)) if e.is_corruption() => out.damaged.push(crate::repo::Damaged {
                file: ObjectKind::Snapshot.path_of(&name),
                error: e.to_string(),
            }),
            (_, Err(e)) => return Err(e),
        }
    }
    out.snapshots
        .sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok(out)
}

fn find_parent(
    repo: &Repository,
    hostname: &str,
    root: &str,
    paths: &[String],
) -> Result<Option<BlobId>> {
    let all = list(repo)?.snapshots;
    Ok(all
        .iter()
        .rev()
        .find(|(_, m)| m.hostname == hostname && m.root == root && m.paths == paths)
        .map(|(id, _)| *id))
}

/// Resolves a full id or a unique prefix of one. `latest` and times are resolved by
/// [`crate::select`], which knows what a backup is.
///
/// # Errors
/// [`Error::SnapshotNotFound`], [`Error::AmbiguousSnapshot`].
pub fn resolve(repo: &Repository, spec: &str) -> Result<BlobId> {
    let spec_l = spec.to_ascii_lowercase();
    let matches: Vec<BlobId> = list_ids(repo)?
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&spec_l))
        .collect();
    match matches.len() {
        0 => Err(Error::SnapshotNotFound(spec.into())),
        1 if !spec.is_empty() => Ok(matches[0]),
        _ => Err(Error::AmbiguousSnapshot(spec.into())),
    }
}

/// Root folder recorded by a manifest.
pub fn root_of(m: &Manifest) -> &Path {
    Path::new(&m.root)
}
