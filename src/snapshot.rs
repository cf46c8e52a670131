//! Taking a snapshot, a window of entries at a time in path order: walk -> reuse unchanged
//! files from the parent (its list streamed beside the walk) -> read, chunk, hash and
//! compress the rest in parallel -> hard links take the content of their group's first path
//! -> the new list written as it is made (or kept as its few changes to the parent's) ->
//! archives -> indexes -> manifest. Memory does not grow with the tree's entries.
//! Also lists and resolves existing snapshots, and reads their entry lists: whole, or
//! streamed without being held (lists built on one base read together).

use std::collections::HashMap;
use std::ops::Range;
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
    Change, ChangeMerge, Entry, EntryKind, Manifest, RelPath, SnapshotKind, SnapshotStats, Tree,
    MANIFEST_VERSION,
};
use crate::progress::Progress;
use crate::repo::{layout, Repository};
use crate::scan::{self, Stat};
use crate::store::{BlobIndex, BlobReader, PackWriter};
use crate::walk::Walker;

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
    /// The manifest's header; its entries too from [`create_listed`].
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
/// The smallest batch, when a round has little to read: one frame.
const MIN_BATCH_BYTES: u64 = crate::archive::FRAME_TARGET as u64;

struct Shared<'a> {
    repo: &'a Repository,
    /// The snapshot root: entry paths are relative to it.
    root: &'a Path,
    known: &'a BlobIndex,
    pending: Mutex<crate::id::GrowingIdSet>,
    dry_run: bool,
    progress: &'a dyn Progress,
}

/// Outcome of reading one file.
enum FileOutcome {
    Stored {
        stat: Stat,
        hash: BlobId,
        /// Inline for a one-blob file: no allocation kept per entry.
        blobs: crate::manifest::Blobs,
    },
    Vanished(std::path::PathBuf),
    Failed(String),
}

/// Takes a snapshot. The summary's manifest is the header: the entry list is written as it
/// is made and never held whole ([`load`] reads it back).
///
/// # Errors
/// Repository I/O errors (a full disk included) abort the snapshot and write no manifest;
/// per-file problems are reported in the summary instead.
pub fn create(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotSummary> {
    create_with(repo, opts, progress, false)
}

/// [`create`], with the entry list as it was made also in the summary's manifest (held
/// whole in memory: for small trees, tools and tests).
///
/// # Errors
/// As [`create`].
pub fn create_listed(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotSummary> {
    create_with(repo, opts, progress, true)
}

fn create_with(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
    listed: bool,
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
            Some((id, m)) => match ParentStream::start(repo, index.clone(), id, m) {
                Ok(p) => p,
                Err(e) if e.is_corruption() => {
                    warnings.push(format!(
                        "the parent snapshot {} cannot be read ({e}); every file is read again",
                        id.short()
                    ));
                    ParentStream::default()
                }
                Err(e) => return Err(e),
            },
            None => ParentStream::default(),
        };
        Ok((index, parent, warnings))
    };
    // The walk runs on a thread of its own, a window ahead of the reading (and beside
    // the loading of the index and the parent's header): neither the walk nor the new list
    // is ever whole in memory.
    let (windows_tx, windows) = sync_channel::<Vec<scan::Stated>>(1);
    let walking = {
        let (root, includes, exclude) = (root.clone(), opts.includes.clone(), repo_abs.clone());
        std::thread::spawn(move || {
            let mut walker = Walker::start(&root, &includes, exclude.as_deref());
            while let Some(win) = walker.next_window() {
                if windows_tx.send(win).is_err() {
                    break;
                }
            }
            walker.problems()
        })
    };
    let stop_walk = |windows: std::sync::mpsc::Receiver<_>| {
        drop(windows);
        walking
            .join()
            .map_err(|_| Error::Invalid("the walk's thread panicked".into()))
    };
    let (known, mut parent, index_warnings) = match load_parent() {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = stop_walk(windows);
            return Err(e);
        }
    };
    let known: &BlobIndex = &known;

    let mut build = Build {
        stats: SnapshotStats::default(),
        types: TypeCounter::new(&opts.types),
        links: HashMap::new(),
        healed: 0,
        same: true,
        skipped: Vec::new(),
        notes: Vec::new(),
        gone: Vec::new(),
        listed: listed.then(Vec::new),
        kept_done: 0,
    };
    let mut sink: Option<Sink> = None;
    // One set of blobs pending for the whole snapshot, so no blob is stored twice.
    let shared = Shared {
        repo,
        root: &root,
        known,
        pending: Mutex::new(crate::id::GrowingIdSet::default()),
        dry_run: opts.dry_run,
        progress,
    };
    // The new list: kept as its changes to the parent's tree while they are few enough to
    // be stored so, else written out whole as it is made.
    let mut list = if parent.takes_changes() {
        List::Changes(Vec::new())
    } else {
        List::Whole(Box::new(TreeStore::new(repo, opts.dry_run)))
    };
    progress.start("snapshot", 0);
    // Windows are planned (matched with the parent) in path order and their files handed to
    // the readers in batches; a window goes into the new list once all its files are read.
    // Two windows in flight: the readers start on the next while the last batch of one ends.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<BatchJob>();
    let jobs_rx = Mutex::new(jobs_rx);
    let walked = std::thread::scope(|scope| -> Result<()> {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<BatchDone>();
        let readers: Vec<_> = (0..rayon::current_num_threads().max(1))
            .map(|_| {
                let (shared, jobs, done, stop) = (&shared, &jobs_rx, done_tx.clone(), &stop);
                scope.spawn(move || reader(shared, jobs, &done, stop))
            })
            .collect();
        drop(done_tx);
        let run = (|| -> Result<()> {
            let mut flight: std::collections::VecDeque<Window> = Default::default();
            let mut walk = windows.iter();
            let (mut walking, mut no) = (true, 0u64);
            loop {
                while walking && flight.len() < IN_FLIGHT {
                    let Some(win) = walk.next() else {
                        walking = false;
                        break;
                    };
                    let mut w = plan_window(no, win, &mut parent, &mut build, opts, known);
                    no += 1;
                    submit(&mut w, &jobs_tx, &mut sink, &shared)?;
                    flight.push_back(w);
                }
                let Some(front) = flight.front() else {
                    break;
                };
                if front.unread > 0 {
                    let (at, got) = done_rx
                        .recv()
                        .map_err(|_| Error::Invalid("the snapshot's readers stopped".into()))?;
                    let w = flight
                        .iter_mut()
                        .find(|w| w.no == at)
                        .expect("a batch's window is in flight");
                    w.apply(got?, &mut build);
                    continue;
                }
                let w = flight.pop_front().expect("a window is in flight");
                complete(w, &shared, &mut sink, &mut build, &mut list, opts)?;
                if let List::Changes(puts) = &mut list {
                    if parent.too_many_changes(puts.len() + build.gone.len()) {
                        let puts = std::mem::take(puts);
                        let mut store = TreeStore::new(repo, opts.dry_run);
                        parent.rebuild(puts, build.kept_done, &mut store, known, &mut sink)?;
                        list = List::Whole(Box::new(store));
                    }
                }
            }
            Ok(())
        })();
        if run.is_err() {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        drop(jobs_tx);
        // Each reader stores the last frame of its files as it ends.
        let mut result = run;
        for r in readers {
            let ended = r
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("a snapshot reader panicked".into())));
            if let (Ok(()), Err(e)) = (&result, ended) {
                result = Err(e);
            }
        }
        result
    });
    // Batches never taken (after an error) hold the archive writer's channel open: gone
    // before the writer is told to finish.
    drop(jobs_rx);
    progress.finish();
    let problems = stop_walk(windows);
    if let Err(e) = walked {
        // The writer's own error (a full disk, say) is the one worth reporting.
        return Err(match sink.as_mut() {
            Some(sink) => sink.fail(e),
            None => e,
        });
    }
    drop(shared);
    // The parent is read to its end, so that its whole list is checked.
    let (parent_end, parent_warning) = match parent.finish() {
        Ok(end) => (end, None),
        Err((id, e)) if e.is_corruption() => (
            ParentEnd::default(),
            Some(format!(
                "the parent snapshot {} cannot be read whole ({e}); the files past the damage were read again",
                id.short()
            )),
        ),
        Err((_, e)) => return Err(e),
    };

    let Build {
        mut stats,
        types,
        healed,
        same,
        skipped: unread,
        notes,
        mut gone,
        listed,
        ..
    } = build;
    let (mut skipped, ignored) = problems?;
    skipped.extend(unread);
    let mut warnings: Vec<String> = index_warnings;
    warnings.extend(parent_warning);
    if healed > 0 {
        warnings.push(format!(
            "{healed} unchanged file(s) were read and stored again: their data was in a missing or unindexed archive"
        ));
    }
    warnings.extend(ignored);
    warnings.extend(notes);
    stats.types = types.finish();

    // The entry list, stored as content-defined blobs: when nothing changed they are the
    // parent's, byte for byte, already stored, and cost nothing; when little changed, as
    // the changes to the parent's tree; else whole.
    let ParentEnd {
        id: parent_id,
        stored: parent_stored,
        base,
    } = parent_end;
    let stored = match list {
        List::Whole(store) => store.finish(known, &mut sink).map(|t| (t, None)),
        List::Changes(puts) => match parent_stored.filter(|_| same) {
            Some(both) => Ok(both),
            None => {
                gone.sort_unstable();
                let mut store = TreeStore::new(repo, opts.dry_run);
                let composed = match &base {
                    Some(b) => {
                        compose_changes(b, &mut || b.changes(repo, known), &puts, gone, &mut |c| {
                            store.push(c, known, &mut sink)
                        })
                    }
                    None => Ok(None),
                };
                let composed = match composed {
                    Ok(c) => c,
                    // The parent's changes were read and checked as its list streamed by:
                    // damage now costs only storing the new list whole (which reads them
                    // again, and reports it). What was stored of the changes is left for
                    // prune.
                    Err(e) if e.is_corruption() => None,
                    Err(e) => return Err(e),
                };
                match (composed, base) {
                    (Some(0), Some(b)) => Ok((b.tree, None)),
                    (Some(_), Some(b)) => store.finish(known, &mut sink).map(|c| (b.tree, Some(c))),
                    _ => {
                        // What composing stored, if anything, is not this list.
                        drop(store);
                        let mut store = TreeStore::new(repo, opts.dry_run);
                        parent
                            .rebuild(puts, build.kept_done, &mut store, known, &mut sink)
                            .and_then(|()| store.finish(known, &mut sink))
                            .map(|t| (t, None))
                    }
                }
            }
        },
    };
    drop(parent);
    let (tree, changes) = match stored {
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
        changes,
        entries: listed.unwrap_or_default(),
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

/// What a snapshot gathers as its windows go by.
struct Build {
    stats: SnapshotStats,
    types: TypeCounter,
    /// Hard links: by (device, inode), the group's first path in path order, whose content
    /// the later paths take instead of reading the file again.
    links: HashMap<(u64, u64), LinkFirst>,
    /// Unchanged files read again because their data was not present.
    healed: u64,
    /// Whether every entry so far is the parent's, unchanged: then so is the entry list,
    /// and its stored tree is named as it is instead of being encoded and hashed again.
    same: bool,
    /// Files that could not be read.
    skipped: Vec<String>,
    /// Files that vanished while read.
    notes: Vec<String>,
    /// Paths walked whose file vanished or could not be read: not in the new list.
    gone: Vec<RelPath>,
    /// The new list, when asked for ([`create_listed`]).
    listed: Option<Vec<Entry>>,
    /// Entries of the parent put in the new list unchanged so far.
    kept_done: u64,
}

/// The first path of a group of hard links: in a window being read (the window's number
/// and the position in it), or done, with the entry it made (None when it vanished or
/// could not be read).
enum LinkFirst {
    Here(u64, usize),
    Done(Option<Box<Entry>>),
}

/// The new entry list as it is made.
enum List {
    /// Written out whole, entry by entry.
    Whole(Box<TreeStore>),
    /// Kept as the entries that are not the parent's unchanged (the paths taken out are in
    /// [`Build::gone`] and the parent's stream).
    Changes(Vec<Entry>),
}

impl List {
    /// Takes the next entry of the new list; `kept` when it is the parent's unchanged.
    fn push(
        &mut self,
        e: Entry,
        kept: bool,
        index: &BlobIndex,
        sink: &mut Option<Sink>,
    ) -> Result<()> {
        match self {
            List::Whole(store) => store.push(&e, index, sink),
            List::Changes(puts) => {
                if !kept {
                    puts.push(e);
                }
                Ok(())
            }
        }
    }
}

/// Windows planned and not yet in the new list, at most.
const IN_FLIGHT: usize = 2;

/// A window of entries between its walk and its place in the new list.
struct Window {
    no: u64,
    entries: Vec<Option<Entry>>,
    /// Per entry, whether it is the parent's entry unchanged: what a change list leaves out.
    kept: Vec<bool>,
    to_read: Vec<ReadJob>,
    followers: Vec<Follower>,
    /// Link groups whose first path is in this window.
    firsts: Vec<(u64, u64)>,
    /// Batches of its files not read yet.
    unread: usize,
    /// Files that vanished or could not be read: (position in `to_read`, whether it makes
    /// the snapshot incomplete, message).
    notes: Vec<(usize, bool, String)>,
}

/// A batch of files for a reader: its window, positions in the window's `to_read`, each
/// file's path, and where the frames go.
struct BatchJob {
    window: u64,
    reads: Range<usize>,
    files: Vec<std::path::PathBuf>,
    frames: SyncSender<CompressedFrame>,
}

/// A batch read: its window and each file's outcome by position in `to_read`.
type BatchDone = (u64, Result<Vec<(usize, FileOutcome)>>);

/// Matches a walked window with the parent: what is unchanged takes the parent's content,
/// the rest is to read (hard links after their group's first path take its content later).
fn plan_window(
    no: u64,
    win: Vec<scan::Stated>,
    parent: &mut ParentStream,
    build: &mut Build,
    opts: &SnapshotOptions,
    known: &BlobIndex,
) -> Window {
    let mut w = Window {
        no,
        entries: Vec::with_capacity(win.len()),
        kept: Vec::with_capacity(win.len()),
        to_read: Vec::new(),
        followers: Vec::new(),
        firsts: Vec::new(),
        unread: 0,
        notes: Vec::new(),
    };
    for (idx, (mut entry, link_key)) in win.into_iter().enumerate() {
        let stat = Stat::of_entry(&entry);
        let kind = entry.kind;
        // A file keeps its walked metadata until its content is known (from the parent or
        // read): the files to read take it from there. Folders and symlinks record none of
        // these.
        if kind != EntryKind::File {
            (entry.size, entry.ino, entry.ctime_ns) = (0, 0, 0);
        }
        // Set for the later paths of a group of hard links only.
        let later = link_key.filter(|&key| match build.links.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => true,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(LinkFirst::Here(no, idx));
                w.firsts.push(key);
                false
            }
        });
        let prev = parent.at(&entry.path);
        let mut equal = false;
        match (kind, later) {
            (EntryKind::Dir, _) => {
                build.stats.dirs += 1;
                equal = prev.as_ref() == Some(&entry);
            }
            (EntryKind::Symlink, _) => {
                build.stats.symlinks += 1;
                equal = prev.as_ref() == Some(&entry);
            }
            (EntryKind::File, Some(key)) => {
                w.followers.push(Follower {
                    idx,
                    key,
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
                        // Nearly always one blob, inline: the copy costs nothing.
                        entry.blobs = p.blobs.clone();
                        equal = entry == p;
                        build.stats.files_unchanged += 1;
                        build.stats.bytes_total += entry.size;
                    }
                    prev => {
                        build.healed += u64::from(unchanged);
                        w.to_read.push(ReadJob {
                            idx,
                            had_prev: prev.is_some(),
                        });
                    }
                }
            }
        }
        if equal {
            parent.keep();
        }
        build.same &= equal;
        w.kept.push(equal);
        w.entries.push(Some(entry));
    }
    w
}

/// Hands a window's files to the readers in batches of neighbouring files, so that files
/// that sit together share frames (good compression, cheap restores): small enough that
/// every reader has one even when a window has little to read.
fn submit(
    w: &mut Window,
    jobs: &std::sync::mpsc::Sender<BatchJob>,
    sink: &mut Option<Sink>,
    shared: &Shared<'_>,
) -> Result<()> {
    if w.to_read.is_empty() {
        return Ok(());
    }
    let frames = sink
        .get_or_insert_with(|| Sink::start(shared.repo, shared.dry_run))
        .tx
        .clone();
    let size = |j: &ReadJob| w.entries[j.idx].as_ref().map_or(0, |e| e.size);
    let total: u64 = w.to_read.iter().map(size).sum();
    let threads = rayon::current_num_threads() as u64;
    let batch_bytes = (total / (2 * threads)).clamp(MIN_BATCH_BYTES, BATCH_BYTES);
    for reads in batches(&w.to_read, size, batch_bytes) {
        let files = reads
            .clone()
            .map(|r| {
                let e = w.entries[w.to_read[r].idx]
                    .as_ref()
                    .expect("a file to read has its entry");
                shared.root.join(e.path.to_path())
            })
            .collect();
        let job = BatchJob {
            window: w.no,
            reads,
            files,
            frames: frames.clone(),
        };
        jobs.send(job)
            .map_err(|_| Error::Invalid("the snapshot's readers stopped".into()))?;
        w.unread += 1;
    }
    Ok(())
}

/// A reader: reads the batches it is handed, its frames filled across batches, and stores
/// its last frame when there are no more.
fn reader(
    shared: &Shared<'_>,
    jobs: &Mutex<std::sync::mpsc::Receiver<BatchJob>>,
    done: &std::sync::mpsc::Sender<BatchDone>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    let mut builder = FrameBuilder::default();
    let mut frames: Option<SyncSender<CompressedFrame>> = None;
    loop {
        let job = jobs
            .lock()
            .expect("job queue lock is never poisoned")
            .recv();
        let Ok(job) = job else { break };
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let got = read_batch(shared, &job.files, job.reads, &job.frames, &mut builder);
        frames = Some(job.frames);
        let failed = got.is_err();
        if done.send((job.window, got)).is_err() || failed {
            return Ok(());
        }
    }
    match frames {
        Some(tx) if !builder.is_empty() => send_frame(shared, &mut builder, &tx),
        _ => Ok(()),
    }
}

impl Window {
    /// Records the outcomes of a batch of this window's files.
    fn apply(&mut self, outcomes: Vec<(usize, FileOutcome)>, build: &mut Build) {
        self.unread -= 1;
        for (read_no, outcome) in outcomes {
            let job = self.to_read[read_no];
            let slot = &mut self.entries[job.idx];
            match outcome {
                FileOutcome::Stored { stat, hash, blobs } => {
                    let e = slot.as_mut().expect("a file read has its entry");
                    set_content(e, &stat, Some(hash), blobs);
                    build.stats.bytes_total += stat.size;
                    build.stats.bytes_read += stat.size;
                    if job.had_prev {
                        build.stats.files_changed += 1;
                    } else {
                        build.stats.files_new += 1;
                    }
                }
                FileOutcome::Vanished(abs) => {
                    build.gone.extend(slot.take().map(|e| e.path));
                    let msg = format!("{}: vanished during the snapshot", abs.display());
                    self.notes.push((read_no, false, msg));
                }
                FileOutcome::Failed(msg) => {
                    build.gone.extend(slot.take().map(|e| e.path));
                    self.notes.push((read_no, true, msg));
                }
            }
        }
    }
}

/// Puts a window whose files are read into the new list: its messages in path order, its
/// hard links given their first path's content (or read on their own when that path could
/// not be read), then each entry.
fn complete(
    mut w: Window,
    shared: &Shared<'_>,
    sink: &mut Option<Sink>,
    build: &mut Build,
    list: &mut List,
    opts: &SnapshotOptions,
) -> Result<()> {
    let orphans = link_followers(&mut w, opts.rehash, build);
    if !orphans.is_empty() {
        let frames = sink
            .get_or_insert_with(|| Sink::start(shared.repo, shared.dry_run))
            .tx
            .clone();
        let files: Vec<std::path::PathBuf> = orphans
            .iter()
            .map(|j| {
                let e = w.entries[j.idx].as_ref().expect("a link has its entry");
                shared.root.join(e.path.to_path())
            })
            .collect();
        let mut builder = FrameBuilder::default();
        let base = w.to_read.len();
        w.to_read.extend(orphans);
        let got = read_batch(shared, &files, base..w.to_read.len(), &frames, &mut builder)?;
        if !builder.is_empty() {
            send_frame(shared, &mut builder, &frames)?;
        }
        w.unread += 1;
        w.apply(got, build);
    }
    w.notes.sort_unstable_by_key(|(read_no, _, _)| *read_no);
    for (_, skipped, msg) in w.notes {
        if skipped {
            build.skipped.push(msg);
        } else {
            build.notes.push(msg);
        }
    }
    for key in w.firsts {
        if let Some(first) = build.links.get_mut(&key) {
            if let LinkFirst::Here(_, i) = *first {
                *first = LinkFirst::Done(w.entries[i].clone().map(Box::new));
            }
        }
    }
    for (e, kept) in w.entries.into_iter().zip(w.kept) {
        if let Some(e) = e {
            build.types.add(&e);
            build.kept_done += u64::from(kept);
            if let Some(l) = &mut build.listed {
                l.push(e.clone());
            }
            list.push(e, kept, shared.known, sink)?;
        }
    }
    Ok(())
}

/// A file to read: the position of its entry (which holds its metadata as walked until it
/// is read), and whether the parent has its path. 16 bytes a file to read.
#[derive(Debug, Clone, Copy)]
struct ReadJob {
    idx: usize,
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

/// A later path of a group of hard links, and the group's (device, inode).
struct Follower {
    idx: usize,
    key: (u64, u64),
    /// What the parent says of it.
    prev: Option<Prev>,
}

/// The parent's entry list, decoded blob by blob on a thread of its own and met in path
/// order ([`ParentStream::at`]): a bounded channel keeps it a few thousand entries ahead,
/// so memory does not grow with the parent. The default stream has no parent.
#[derive(Default)]
struct ParentStream {
    id: Option<BlobId>,
    /// The parent's stored list (tree and changes), when it is of the current version.
    stored: Option<(Tree, Option<Tree>)>,
    /// Whether the parent is of the current version: a new list can then be stored as
    /// changes to its tree.
    current: bool,
    /// Paths of the parent met by no walked path, while they are few enough to be worth
    /// storing as changes (at most `removed_cap`).
    removed: Option<Vec<RelPath>>,
    removed_cap: usize,
    /// Whether an entry of the parent was passed over: met by no walked path.
    unmatched: bool,
    rx: Option<std::sync::mpsc::Receiver<Result<Vec<Entry>>>>,
    batch: std::vec::IntoIter<Entry>,
    /// The entry after the last one met, and its position in the list.
    next: Option<(u64, Entry)>,
    failed: Option<Error>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// What a second read of the list needs ([`ParentStream::rebuild`]).
    again: Option<(Repository, std::sync::Arc<BlobIndex>, Box<Manifest>)>,
    /// Entries taken from the channel so far.
    pulled: u64,
    /// Position of the entry [`ParentStream::at`] returned last.
    at_pos: u64,
    /// One bit per entry, by position: whether the new list holds it unchanged.
    kept: Vec<u64>,
}

/// A snapshot's entry list read and decoded on a thread of its own, a few batches ahead at
/// most, and handed out batch by batch in path order, each entry checked as a whole list
/// is ([`crate::manifest::EntryCheck`]): the way to work through a list too long to hold.
/// The list's text is checked whole (hash, size, count) when its last batch is reached.
pub struct EntryStream {
    id: BlobId,
    rx: Option<std::sync::mpsc::Receiver<Result<Vec<Entry>>>>,
    handle: Option<std::thread::JoinHandle<()>>,
    check: crate::manifest::EntryCheck,
    /// Damage found in the middle of a batch: reported once the entries before it are.
    failed: Option<Error>,
}

impl EntryStream {
    /// Starts reading the entry list of manifest `id`, whose header is `header`; its change
    /// list, if any, is read as the list reaches it.
    ///
    /// # Errors
    /// None yet: damage comes with [`EntryStream::next_batch`].
    pub fn start(
        repo: &Repository,
        index: std::sync::Arc<BlobIndex>,
        id: BlobId,
        header: &Manifest,
    ) -> Result<EntryStream> {
        let (rx, handle) = spawn_stream(repo, index, id, header);
        Ok(EntryStream {
            id,
            rx: Some(rx),
            handle: Some(handle),
            check: crate::manifest::EntryCheck::with_capacity(header.entries_hint()),
            failed: None,
        })
    }

    /// The next batch of entries, in path order; None at the list's end. After an error
    /// the stream ends.
    ///
    /// # Errors
    /// Damage to the list, or an entry that breaks its rules ([`Error::Corrupt`]): the
    /// entries before it came in earlier batches.
    pub fn next_batch(&mut self) -> Option<Result<Vec<Entry>>> {
        if let Some(e) = self.failed.take() {
            self.stop();
            return Some(Err(e));
        }
        let got = match self.rx.as_ref()?.recv() {
            Ok(Ok(mut batch)) => {
                let mut why = String::new();
                let check = &mut self.check;
                let bad = batch.iter().position(|e| match check.push(e) {
                    Ok(()) => false,
                    Err(w) => {
                        why = w;
                        true
                    }
                });
                match bad {
                    None => Ok(batch),
                    Some(i) => {
                        let e = Error::corrupt(format!("manifest {}: {why}", self.id.short()));
                        if i == 0 {
                            Err(e)
                        } else {
                            // The sound entries before it first; the damage next.
                            batch.truncate(i);
                            self.failed = Some(e);
                            return Some(Ok(batch));
                        }
                    }
                }
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.stop();
                return None;
            }
        };
        if got.is_err() {
            self.stop();
        }
        Some(got)
    }

    fn stop(&mut self) {
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for EntryStream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the thread that decodes the entry list of `header` (manifest `id`) and sends it
/// on batch by batch, with its changes merged in; damage goes down the channel as an error.
fn spawn_stream(
    repo: &Repository,
    index: std::sync::Arc<BlobIndex>,
    id: BlobId,
    header: &Manifest,
) -> (
    std::sync::mpsc::Receiver<Result<Vec<Entry>>>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = sync_channel(PARENT_AHEAD);
    let repo = repo.clone();
    let header = header.clone();
    let handle = std::thread::spawn(move || {
        if let Err(e) = stream_entries(&repo, &index, &id, &header, &tx) {
            let _ = tx.send(Err(e));
        }
    });
    (rx, handle)
}

/// How a parent read to its end can be built on ([`ParentStream::finish`]).
#[derive(Default)]
struct ParentEnd {
    /// The parent's id; None without a parent.
    id: Option<BlobId>,
    /// Its stored list, when every one of its entries was met by the walk.
    stored: Option<(Tree, Option<Tree>)>,
    /// What a new list can be stored as changes to.
    base: Option<Base>,
}

/// The parent's tree as a base for a change list: the tree, the parent's change list to it
/// (read again when the new one is composed: it is not held while the walk runs), and the
/// parent's paths the walk did not meet.
struct Base {
    tree: Tree,
    changes: Option<Tree>,
    /// The parent's id.
    id: BlobId,
    removed: Vec<RelPath>,
}

impl Base {
    /// The most changes a list built on this base may hold.
    fn limit(&self) -> usize {
        usize::try_from(self.tree.entries / CHANGES_PER_ENTRY).unwrap_or(0)
    }

    /// The parent's change list, read again from `repo` (whose blobs `index` holds) blob
    /// by blob as it is taken: never whole.
    fn changes<'r>(&'r self, repo: &'r Repository, index: &'r BlobIndex) -> ChangeStream<'r> {
        ChangeStream {
            source: self
                .changes
                .as_ref()
                .map(|tree| StoredChanges::new(repo, index, &self.id, tree)),
            piece: Vec::new().into_iter(),
        }
    }
}

/// A stored change list as an iterator of changes, read a piece at a time; the first
/// error ends it.
struct ChangeStream<'r> {
    source: Option<StoredChanges<'r>>,
    piece: std::vec::IntoIter<Change>,
}

impl Iterator for ChangeStream<'_> {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        use crate::manifest::ChangeSource;
        loop {
            if let Some(c) = self.piece.next() {
                return Some(Ok(c));
            }
            let source = self.source.as_mut()?;
            match source.more() {
                Ok(piece) if piece.is_empty() => self.source = None,
                Ok(piece) => self.piece = piece.into_iter(),
                Err(e) => {
                    self.source = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Batches of decoded parent entries waiting in the channel.
const PARENT_AHEAD: usize = 2;

/// A new entry list is stored as changes to its parent's tree while they number at most
/// one in this many of the tree's entries; past that, whole. Changes accumulate from one
/// snapshot to the next (each list is its changes to the same tree, never a chain), so this
/// bounds the work of reading a list and sets how often a whole one is written again.
const CHANGES_PER_ENTRY: u64 = 4;

/// Whether a parent's entry is a self-consistent regular file: the only kind worth
/// comparing a walked file with.
fn usable_file(e: &Entry) -> bool {
    e.kind == EntryKind::File && e.hash.is_some() && (e.size > 0) != e.blobs.is_empty()
}

impl ParentStream {
    /// Starts decoding the entry list of parent `id`, with its change list, if any, read
    /// as the list reaches it.
    ///
    /// # Errors
    /// None yet: damage is met as the list is read.
    fn start(
        repo: &Repository,
        index: std::sync::Arc<BlobIndex>,
        id: BlobId,
        header: Manifest,
    ) -> Result<ParentStream> {
        let current = header.version == MANIFEST_VERSION;
        let stored = current.then(|| (header.tree.clone(), header.changes.clone()));
        let removed_cap = usize::try_from(header.tree.entries / CHANGES_PER_ENTRY).unwrap_or(0);
        let (rx, handle) = spawn_stream(repo, index.clone(), id, &header);
        Ok(ParentStream {
            id: Some(id),
            stored,
            current,
            removed: current.then(Vec::new),
            removed_cap,
            rx: Some(rx),
            handle: Some(handle),
            again: Some((repo.clone(), index, Box::new(header))),
            ..ParentStream::default()
        })
    }

    /// Whether a new list may be stored as changes to the parent's tree: there is a parent,
    /// of the current version.
    fn takes_changes(&self) -> bool {
        self.stored.is_some() && self.current && self.removed.is_some()
    }

    /// Whether `ours` changes (entries put in, paths gone while read) with the parent's
    /// paths passed over are too many to store as changes, or the parent can no longer be
    /// built on (damage met, too many paths passed over).
    fn too_many_changes(&self, ours: usize) -> bool {
        match &self.removed {
            Some(r) => self.failed.is_some() || ours + r.len() > self.removed_cap,
            None => true,
        }
    }

    /// The next entry of the parent and its position, or None at its end or at damage
    /// (kept for [`ParentStream::finish`]).
    fn pull(&mut self) -> Option<(u64, Entry)> {
        loop {
            if let Some(e) = self.batch.next() {
                self.pulled += 1;
                return Some((self.pulled - 1, e));
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

    /// Notes an entry of the parent that no walked path met.
    fn pass_over(&mut self, e: Entry) {
        self.unmatched = true;
        if let Some(r) = &mut self.removed {
            if r.len() < self.removed_cap {
                r.push(e.path);
            } else {
                self.removed = None;
            }
        }
    }

    /// The parent's entry at `path`, passing over the entries before it. Calls come in
    /// path order (the walk's), as the parent's entries are sorted.
    fn at(&mut self, path: &RelPath) -> Option<Entry> {
        loop {
            let (pos, next) = match self.next.take() {
                Some(e) => e,
                None => self.pull()?,
            };
            match next.path.cmp(path) {
                std::cmp::Ordering::Less => self.pass_over(next),
                std::cmp::Ordering::Equal => {
                    self.at_pos = pos;
                    return Some(next);
                }
                std::cmp::Ordering::Greater => {
                    self.next = Some((pos, next));
                    return None;
                }
            }
        }
    }

    /// Notes that the new list holds the entry [`ParentStream::at`] returned last,
    /// unchanged.
    fn keep(&mut self) {
        let (word, bit) = ((self.at_pos / 64) as usize, self.at_pos % 64);
        if self.kept.len() <= word {
            self.kept.resize(word + 1, 0);
        }
        self.kept[word] |= 1 << bit;
    }

    fn is_kept(&self, pos: u64) -> bool {
        self.kept
            .get((pos / 64) as usize)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }

    /// Writes to `store` the new list so far: the first `kept` entries the parent marked
    /// kept (those of the windows already in the list), read again from the repository,
    /// and `puts`, the rest, in path order. The way from a change list to a whole one
    /// without having held either.
    ///
    /// # Errors
    /// Damage met before every kept entry was read again, and the store's errors.
    fn rebuild(
        &self,
        puts: Vec<Entry>,
        kept: u64,
        store: &mut TreeStore,
        index: &BlobIndex,
        sink: &mut Option<Sink>,
    ) -> Result<()> {
        let mut puts = puts.into_iter().peekable();
        let mut left = kept;
        if left > 0 {
            let Some((repo, parent_index, header)) = &self.again else {
                return Err(Error::corrupt("the parent's list cannot be read again"));
            };
            let id = self.id.expect("a parent with entries kept has an id");
            let mut again = EntryStream::start(repo, parent_index.clone(), id, header)?;
            let mut pos = 0u64;
            while left > 0 {
                let batch = match again.next_batch() {
                    Some(b) => b?,
                    None => {
                        return Err(Error::corrupt(format!(
                            "snapshot {}: its entry list read again ended early",
                            id.short()
                        )))
                    }
                };
                for e in batch {
                    pos += 1;
                    if !self.is_kept(pos - 1) {
                        continue;
                    }
                    while let Some(p) = puts.next_if(|p| p.path < e.path) {
                        store.push(&p, index, sink)?;
                    }
                    store.push(&e, index, sink)?;
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
        }
        for p in puts {
            store.push(&p, index, sink)?;
        }
        Ok(())
    }

    /// Reads the parent to its end, so its whole list is checked: Ok(what can be built
    /// on), or Err(its id, what was wrong). What it kept stays known for
    /// [`ParentStream::rebuild`].
    fn finish(&mut self) -> std::result::Result<ParentEnd, (BlobId, Error)> {
        while let Some((_, e)) = self.next.take().or_else(|| self.pull()) {
            self.pass_over(e);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        match (self.id, self.failed.take()) {
            (Some(id), Some(e)) => Err((id, e)),
            (id, None) => {
                let base = match (&self.stored, id, self.removed.take()) {
                    (Some((tree, changes)), Some(id), Some(removed)) if self.current => {
                        Some(Base {
                            tree: tree.clone(),
                            changes: changes.clone(),
                            id,
                            removed,
                        })
                    }
                    _ => None,
                };
                Ok(ParentEnd {
                    id,
                    stored: self.stored.clone().filter(|_| !self.unmatched),
                    base,
                })
            }
            (None, Some(_)) => Ok(ParentEnd::default()),
        }
    }
}

/// A manifest's change list read blob by blob as a [`ChangeMerge`] reaches it: a list of
/// tens of thousands of changes is never held whole; checked whole (hash, size, count) at
/// its end.
struct StoredChanges<'r> {
    reader: BlobReader<'r>,
    /// The blob of `tree` read next.
    next: usize,
    decoder: Option<crate::manifest::LineDecoder<Change>>,
    tree: Tree,
    id: BlobId,
    /// The path of the last change handed out: the next piece must sort after it.
    last: Option<RelPath>,
}

impl<'r> StoredChanges<'r> {
    fn new(repo: &'r Repository, index: &'r BlobIndex, id: &BlobId, tree: &Tree) -> Self {
        StoredChanges {
            reader: BlobReader::new(repo, index),
            next: 0,
            decoder: Some(crate::manifest::LineDecoder::streaming(tree, id)),
            tree: tree.clone(),
            id: *id,
            last: None,
        }
    }

    /// Checks `piece` (sorted, safe paths, after the pieces before it) and hands it out.
    fn checked(&mut self, piece: Vec<Change>) -> Result<Vec<Change>> {
        crate::manifest::check_changes(&piece, &self.id)?;
        if let (Some(last), Some(first)) = (&self.last, piece.first()) {
            if last >= first.path() {
                return Err(Error::corrupt(format!(
                    "manifest {}: change list is not sorted at {:?}",
                    self.id.short(),
                    first.path()
                )));
            }
        }
        if let Some(l) = piece.last() {
            self.last = Some(l.path().clone());
        }
        Ok(piece)
    }
}

impl crate::manifest::ChangeSource for StoredChanges<'_> {
    fn more(&mut self) -> Result<Vec<Change>> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(Vec::new());
        };
        while let Some(b) = self.tree.blobs.get(self.next) {
            self.next += 1;
            self.reader
                .read_with(b, |data| decoder.feed(data))
                .map_err(|e| tree_error(&self.id, e))??;
            let piece = decoder.take();
            if !piece.is_empty() {
                return self.checked(piece);
            }
        }
        let decoder = self
            .decoder
            .take()
            .expect("the decoder is held until the end");
        let rest = decoder.end(&self.tree)?;
        self.checked(rest)
    }
}

/// The body of [`ParentStream`]'s thread: reads and decodes the tree blobs of `header`,
/// applies its change list as it reaches it, and sends the entries on as each blob is decoded; checks the
/// whole list at its end. Returns quietly when the receiver is gone.
fn stream_entries(
    repo: &Repository,
    index: &BlobIndex,
    id: &BlobId,
    header: &Manifest,
    tx: &SyncSender<Result<Vec<Entry>>>,
) -> Result<()> {
    let mut reader = BlobReader::new(repo, index);
    let mut decoder = crate::manifest::EntryDecoder::streaming(&header.tree, id);
    let mut merge = header
        .changes
        .as_ref()
        .map(|c| ChangeMerge::streamed(Box::new(StoredChanges::new(repo, index, id, c)), id));
    let mut merged = |batch: Vec<Entry>| match &mut merge {
        Some(m) => m.apply(batch),
        None => Ok(batch),
    };
    for b in &header.tree.blobs {
        let read = reader
            .read_with(b, |data| decoder.feed(data))
            .map_err(|e| tree_error(id, e))
            .and_then(|fed| fed);
        if let Err(e) = read {
            // The entries of the blobs read so far are sound: they go on before the error.
            if decoder.flush().is_ok() {
                if let Ok(batch) = merged(decoder.take()) {
                    let _ = tx.send(Ok(batch));
                }
            }
            return Err(e);
        }
        let batch = merged(decoder.take())?;
        if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
            return Ok(());
        }
    }
    let mut last = merged(decoder.end(&header.tree)?)?;
    if let Some(m) = merge {
        last.extend(m.finish()?);
    }
    if !last.is_empty() {
        let _ = tx.send(Ok(last));
    }
    Ok(())
}

/// The change list that makes the new list from `base`'s tree: `puts` (the entries that
/// are not the parent's unchanged) put in, the parent's paths that are no more (passed over
/// by the walk, or `gone` while read) taken out, and the parent's own changes for the paths
/// it kept, handed to `store` in path order as the sorted lists stream by: none is held
/// whole. `theirs` opens a pass over the parent's change list: it is read once to count
/// the new list and once to store it. Ok(None), with nothing stored, when the new list would
/// hold more than one change in [`CHANGES_PER_ENTRY`] of the tree's entries: it is then
/// stored whole. Ok(Some(n)): `n` changes stored.
///
/// # Errors
/// The parent's change list cannot be read, and `store`'s errors.
fn compose_changes<T: Iterator<Item = Result<Change>>>(
    base: &Base,
    theirs: &mut dyn FnMut() -> T,
    puts: &[Entry],
    gone: Vec<RelPath>,
    store: &mut dyn FnMut(&Change) -> Result<()>,
) -> Result<Option<usize>> {
    let limit = base.limit();
    let mut gones = base.removed.clone();
    gones.extend(gone);
    if puts.len() + gones.len() > limit {
        return Ok(None);
    }
    gones.sort_unstable();
    let mut counting = UntilError::new(theirs());
    let n = merged(puts, &gones, &mut counting).take(limit + 1).count();
    counting.end()?;
    if n > limit {
        return Ok(None);
    }
    let mut storing = UntilError::new(theirs());
    let mut stored = 0;
    for c in merged(puts, &gones, &mut storing) {
        store(&c)?;
        stored += 1;
    }
    storing.end()?;
    Ok(Some(stored))
}

/// Our changes (`puts` and `gones`, sorted) merged with `theirs`: ours first, so where both
/// name a path, this snapshot's change replaces the parent's.
fn merged<'a>(
    puts: &'a [Entry],
    gones: &'a [RelPath],
    theirs: impl Iterator<Item = Change> + 'a,
) -> impl Iterator<Item = Change> + 'a {
    MergeByPath::new(
        MergeByPath::new(
            puts.iter().map(|e| Change::Put(e.clone())),
            gones.iter().cloned().map(Change::Gone),
        ),
        theirs,
    )
}

/// The changes of an iterator of results up to its first error, kept for
/// [`UntilError::end`].
struct UntilError<T> {
    inner: T,
    error: Option<Error>,
}

impl<T: Iterator<Item = Result<Change>>> UntilError<T> {
    fn new(inner: T) -> Self {
        UntilError { inner, error: None }
    }

    /// The error that ended the changes, if one did.
    fn end(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

impl<T: Iterator<Item = Result<Change>>> Iterator for UntilError<T> {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        if self.error.is_some() {
            return None;
        }
        match self.inner.next()? {
            Ok(c) => Some(c),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Two lists of changes sorted by path, merged into one sorted list; where both name a
/// path, the first list's change is kept.
struct MergeByPath<A: Iterator<Item = Change>, B: Iterator<Item = Change>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = Change>, B: Iterator<Item = Change>> MergeByPath<A, B> {
    fn new(a: A, b: B) -> Self {
        MergeByPath {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<A: Iterator<Item = Change>, B: Iterator<Item = Change>> Iterator for MergeByPath<A, B> {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        let order = match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => x.path().cmp(y.path()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return None,
        };
        match order {
            std::cmp::Ordering::Less => self.a.next(),
            std::cmp::Ordering::Greater => self.b.next(),
            std::cmp::Ordering::Equal => {
                self.b.next();
                self.a.next()
            }
        }
    }
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
fn link_followers(w: &mut Window, rehash: bool, build: &mut Build) -> Vec<ReadJob> {
    let mut orphans = Vec::new();
    for f in &w.followers {
        let first = match build.links.get(&f.key) {
            Some(LinkFirst::Here(no, i)) if *no == w.no => w.entries[*i].clone(),
            Some(LinkFirst::Done(e)) => e.as_deref().cloned(),
            _ => None,
        };
        let Some(first) = first else {
            orphans.push(ReadJob {
                idx: f.idx,
                had_prev: f.prev.is_some(),
            });
            continue;
        };
        let e = w.entries[f.idx].as_mut().expect("entry exists");
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
        build.stats.bytes_total += e.size;
        if unchanged {
            build.stats.files_unchanged += 1;
        } else if f.prev.is_some() {
            build.stats.files_changed += 1;
        } else {
            build.stats.files_new += 1;
        }
    }
    orphans
}

/// Files and bytes per cache type, counted an entry at a time: a file belongs to the type
/// with the most specific folder holding it; state files (`*_state.json`) belong to none.
/// Every named type appears.
struct TypeCounter {
    types: Vec<(String, RelPath)>,
    /// Each type's folder depth: the most specific folder holding a file is the deepest,
    /// the last named among equals.
    depths: Vec<usize>,
    /// Counted by the type's position: no name copied, no map searched per file.
    totals: Vec<crate::manifest::TypeTotals>,
}

impl TypeCounter {
    fn new(types: &[(String, RelPath)]) -> TypeCounter {
        TypeCounter {
            types: types.to_vec(),
            depths: types.iter().map(|(_, dir)| dir.depth()).collect(),
            totals: vec![crate::manifest::TypeTotals::default(); types.len()],
        }
    }

    fn add(&mut self, e: &Entry) {
        if e.kind != EntryKind::File || crate::config::is_state_file(e.path.file_name()) {
            return;
        }
        let owner = self
            .types
            .iter()
            .enumerate()
            .filter(|(_, (_, dir))| e.path.starts_with(dir))
            .max_by_key(|(i, _)| self.depths[*i]);
        if let Some((i, _)) = owner {
            self.totals[i].files += 1;
            self.totals[i].bytes += e.size;
        }
    }

    fn finish(self) -> std::collections::BTreeMap<String, crate::manifest::TypeTotals> {
        let mut out = std::collections::BTreeMap::new();
        for ((name, _), t) in self.types.into_iter().zip(self.totals) {
            let sum: &mut crate::manifest::TypeTotals = out.entry(name).or_default();
            sum.files += t.files;
            sum.bytes += t.bytes;
        }
        out
    }
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
            manifest.changes = None;
        }
        (Err(e), Some(mut sink)) => return Err(sink.fail(e)),
        (Err(e), None) => return Err(e),
    }
    write_manifest(repo, manifest)
}

/// Stores the entry list as JSON Lines cut into content-defined blobs, streaming: the text
/// is never whole in memory. Blobs already indexed are not stored again; the archive
/// writer starts only when a blob is new.
fn store_tree<T: crate::manifest::Line>(
    repo: &Repository,
    index: &BlobIndex,
    sink: &mut Option<Sink>,
    entries: &[T],
    dry_run: bool,
) -> Result<Tree> {
    let mut store = TreeStore::new(repo, dry_run);
    for e in entries {
        store.push(e, index, sink)?;
    }
    store.finish(index, sink)
}

/// A list being stored line by line ([`store_tree`] for a list never whole in memory).
struct TreeStore {
    chunker: crate::manifest::LineChunker,
    blobs: TreeBlobs,
}

/// The blobs of a list being stored: their ids in order, and the frame the new ones go in.
struct TreeBlobs {
    repo: Repository,
    level: i32,
    dry_run: bool,
    builder: FrameBuilder,
    ids: Vec<BlobId>,
    seen: IdSet,
}

impl TreeBlobs {
    fn store(&mut self, data: &[u8], index: &BlobIndex, sink: &mut Option<Sink>) -> Result<()> {
        let id = self.repo.ids().of(data);
        self.ids.push(id);
        if !index.contains(&id) && self.seen.insert(id) {
            self.builder.push(id, data);
            if self.builder.is_full() {
                self.send(sink)?;
            }
        }
        Ok(())
    }

    fn send(&mut self, sink: &mut Option<Sink>) -> Result<()> {
        let frame = self.builder.compress(self.level)?;
        let (repo, dry_run) = (&self.repo, self.dry_run);
        sink.get_or_insert_with(|| Sink::start(repo, dry_run))
            .send(frame)
    }
}

impl TreeStore {
    fn new(repo: &Repository, dry_run: bool) -> TreeStore {
        TreeStore {
            chunker: crate::manifest::LineChunker::default(),
            blobs: TreeBlobs {
                repo: repo.clone(),
                level: if dry_run { 1 } else { repo.config().zstd_level },
                dry_run,
                builder: FrameBuilder::default(),
                ids: Vec::new(),
                seen: IdSet::default(),
            },
        }
    }

    fn push<T: crate::manifest::Line>(
        &mut self,
        line: &T,
        index: &BlobIndex,
        sink: &mut Option<Sink>,
    ) -> Result<()> {
        let blobs = &mut self.blobs;
        self.chunker
            .push(line, &mut |data| blobs.store(data, index, sink))
    }

    fn finish(self, index: &BlobIndex, sink: &mut Option<Sink>) -> Result<Tree> {
        let TreeStore { chunker, mut blobs } = self;
        let entries = chunker.lines();
        let (hash, size) = chunker.finish(&mut |data| blobs.store(data, index, sink))?;
        if !blobs.builder.is_empty() {
            blobs.send(sink)?;
        }
        Ok(Tree {
            blobs: blobs.ids,
            hash: Some(hash),
            entries,
            size,
        })
    }
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

/// Splits the files to read into batches of neighbouring files (ranges of positions in
/// `to_read`; `size` gives a file's walked size), so that files that sit together on disk
/// share frames (good compression, cheap restores).
fn batches(
    to_read: &[ReadJob],
    size: impl Fn(&ReadJob) -> u64,
    batch_bytes: u64,
) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, job) in to_read.iter().enumerate() {
        bytes += size(job);
        if bytes >= batch_bytes {
            out.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < to_read.len() {
        out.push(start..to_read.len());
    }
    out
}

/// Reads the files of one batch (`files` are their paths, in order)
/// into `builder`'s frames, sending each full frame to `frames`; returns each outcome with
/// its position in `reads`.
fn read_batch(
    shared: &Shared<'_>,
    files: &[std::path::PathBuf],
    reads: Range<usize>,
    frames: &SyncSender<CompressedFrame>,
    builder: &mut FrameBuilder,
) -> Result<Vec<(usize, FileOutcome)>> {
    let mut out = Vec::with_capacity(files.len());
    let send = |builder: &mut FrameBuilder| send_frame(shared, builder, frames);
    // The folder of the files before, open: its neighbours are opened in it by name.
    let mut folder: Option<(&Path, std::os::fd::OwnedFd)> = None;
    for (read_no, abs) in reads.zip(files) {
        crate::cancel::check()?;
        let (parent, name) = (abs.parent(), abs.file_name());
        if let (Some(parent), Some(_)) = (parent, name) {
            if folder.as_ref().is_none_or(|(p, _)| *p != parent) {
                // Not open (gone, or no longer a folder): the file is opened by its whole
                // path, which says why.
                folder = fsutil::open_folder(parent).ok().map(|fd| (parent, fd));
            }
        }
        let at = match (&folder, name) {
            (Some((p, fd)), Some(name)) if Some(*p) == parent => Some((fd, Path::new(name))),
            _ => None,
        };
        let outcome = read_file(shared, abs, at, builder, &send)?;
        out.push((read_no, outcome));
        crate::fault::pause("snapshot.reading");
    }
    Ok(out)
}

/// Compresses `builder`'s frame and sends it to the archive writer.
fn send_frame(
    shared: &Shared<'_>,
    builder: &mut FrameBuilder,
    frames: &SyncSender<CompressedFrame>,
) -> Result<()> {
    let frame = if shared.dry_run {
        let f = builder.compress(1)?;
        CompressedFrame {
            data: Vec::new(),
            ..f
        }
    } else {
        builder.compress(shared.repo.config().zstd_level)?
    };
    frames
        .send(frame)
        .map_err(|_| Error::Invalid("archive writer stopped (see the error it reported)".into()))
}

fn read_file(
    shared: &Shared<'_>,
    abs: &Path,
    at: Option<(&std::os::fd::OwnedFd, &Path)>,
    builder: &mut FrameBuilder,
    send: &dyn Fn(&mut FrameBuilder) -> Result<()>,
) -> Result<FileOutcome> {
    let params = shared.repo.config().chunker;
    for attempt in 1..=READ_ATTEMPTS {
        let opened = match at {
            Some((folder, name)) => fsutil::open_noatime_at(folder, name),
            None => fsutil::open_noatime(abs),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileOutcome::Vanished(abs.to_path_buf()))
            }
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
        };
        // What was opened is what is read and checked: a path that is no longer a regular
        // file (a FIFO or a device put there since the walk) is not read.
        let before = match file.metadata() {
            Ok(m) if m.is_file() => Stat::of(&m),
            Ok(_) => {
                return Ok(FileOutcome::Failed(format!(
                    "{}: no longer a regular file",
                    abs.display()
                )))
            }
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
        };
        let mut hasher = blake3::Hasher::new();
        let mut blobs = crate::manifest::Blobs::new();
        let ids = shared.repo.ids();
        // Below the chunking threshold a file is one blob (or none); in a plain repository
        // that blob's id is the blake3 of the content, which is the file's hash: hashed once,
        // not twice. (A file that grows past the threshold meanwhile is still one blob of
        // what was read, and the re-stat below reads it again.)
        let one_blob = !ids.is_keyed() && before.size < u64::from(params.threshold);
        // Whether blob `id` is new to the repository and to every other reader: it is then
        // this reader's to store.
        let ours = |id: &BlobId| {
            !shared.known.contains(id)
                && shared
                    .pending
                    .lock()
                    .expect("pending set lock is never poisoned")
                    .insert(*id)
        };
        let read = if one_blob {
            // Read straight into the frame, kept there only if the blob is new.
            let staged = builder
                .stage(&file, before.size, u64::from(params.threshold))
                .map(|data| (!data.is_empty()).then(|| (ids.of(data), data.len() as u64)));
            staged.map(|blob| match blob {
                Some((id, len)) => {
                    blobs.push(id);
                    shared.progress.inc(len);
                    if !ours(&id) {
                        builder.discard();
                        return Ok(());
                    }
                    builder.commit(id);
                    if builder.is_full() {
                        send(builder)?;
                    }
                    Ok(())
                }
                None => {
                    builder.discard();
                    Ok(())
                }
            })
        } else {
            crate::chunk::for_each_chunk(&file, before.size, &params, |data| {
                hasher.update(data);
                let id = ids.of(data);
                blobs.push(id);
                shared.progress.inc(data.len() as u64);
                if ours(&id) {
                    builder.push(id, data);
                    if builder.is_full() {
                        send(builder)?;
                    }
                }
                Ok(())
            })
        };
        match read {
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        // The open file's metadata, not the path's again: no second lookup of the path.
        // A file renamed over meanwhile was read whole as it was; the next snapshot reads
        // the new one (another inode).
        let after = match file.metadata() {
            Ok(m) => Stat::of(&m),
            Err(e) => return Ok(FileOutcome::Failed(format!("{}: {e}", abs.display()))),
        };
        let hash = match blobs.first() {
            Some(id) if one_blob => *id,
            _ => BlobId::from(hasher.finalize()),
        };
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
    let Some(changes) = &m.changes else {
        let mut decoder = crate::manifest::EntryDecoder::new(&m.tree, id);
        for b in &m.tree.blobs {
            reader
                .read_with(b, |data| decoder.feed(data))
                .map_err(|e| tree_error(id, e))??;
        }
        decoder.finish(&mut m)?;
        return Ok(m);
    };
    // The base list is merged with the changes blob by blob: never held twice.
    let changes = read_changes(&mut reader, id, changes)?;
    let mut merge = ChangeMerge::new(std::sync::Arc::new(changes), id);
    let mut decoder = crate::manifest::EntryDecoder::streaming(&m.tree, id);
    let mut entries = Vec::with_capacity(m.entries_hint());
    for b in &m.tree.blobs {
        reader
            .read_with(b, |data| decoder.feed(data))
            .map_err(|e| tree_error(id, e))??;
        entries.extend(merge.apply(decoder.take())?);
    }
    entries.extend(merge.apply(decoder.end(&m.tree)?)?);
    entries.extend(merge.finish()?);
    m.entries = entries;
    m.verify_entries(id)?;
    Ok(m)
}

/// What takes the entries of one snapshot's list, in path order, as
/// [`stream_shared`] reads them.
pub trait EntrySink: Send {
    /// The next entry.
    ///
    /// # Errors
    /// Whatever stops this list (the others go on).
    fn entry(&mut self, e: &Entry) -> Result<()>;
}

/// Change entries held at once by one pass over a base in [`stream_shared`]: the changes of
/// the lists built on it beyond this are read in a further pass. A list streamed rather
/// than held ([`STREAM_CHANGES_OVER`]) counts as that many.
const SHARED_CHANGES_AT_ONCE: u64 = 100_000;

/// A change list of more entries than this is read blob by blob as the base streams by
/// (a reader, its frame and a decoded piece: about 1 MiB), not held whole.
const STREAM_CHANGES_OVER: u64 = 4096;

/// Streams the entry list of each manifest (headers already loaded) into a sink made by
/// `sink`, verified as [`load_entries`] verifies it, without holding any list whole. Lists
/// stored as changes to one base are read together: the base is read and decoded once, and
/// each list's changes are merged into it as it streams by. Returns each manifest's sink, or
/// what made its list unreadable (the damage of a base fails every list built on it).
pub fn stream_shared<S: EntrySink>(
    repo: &Repository,
    index: &BlobIndex,
    manifests: Vec<(BlobId, Manifest)>,
    sink: impl Fn(&BlobId, &Manifest) -> S + Sync,
) -> Vec<(BlobId, Result<S>)> {
    type Key = (Option<BlobId>, u64, u64, Vec<BlobId>);
    let mut groups: std::collections::BTreeMap<Key, Vec<(BlobId, Manifest)>> =
        std::collections::BTreeMap::new();
    for (id, m) in manifests {
        let t = &m.tree;
        let key = (t.hash, t.size, t.entries, t.blobs.clone());
        groups.entry(key).or_default().push((id, m));
    }
    let mut passes = Vec::new();
    for (_, members) in groups {
        let mut pass: Vec<(BlobId, Manifest)> = Vec::new();
        let mut held = 0;
        for (id, m) in members {
            let n = m
                .changes
                .as_ref()
                .map_or(0, |c| c.entries.min(STREAM_CHANGES_OVER));
            if !pass.is_empty() && held + n > SHARED_CHANGES_AT_ONCE {
                passes.push(std::mem::take(&mut pass));
                held = 0;
            }
            held += n;
            pass.push((id, m));
        }
        passes.push(pass);
    }
    passes
        .into_par_iter()
        .flat_map_iter(|pass| stream_pass(repo, index, pass, &sink))
        .collect()
}

/// One list being streamed by [`stream_shared`].
struct Streamed<'r, S> {
    id: BlobId,
    merge: Option<ChangeMerge<'r>>,
    check: crate::manifest::EntryCheck,
    sink: S,
    failed: Option<Error>,
}

impl<S: EntrySink> Streamed<'_, S> {
    fn feed(&mut self, batch: &[Entry]) {
        if self.failed.is_some() {
            return;
        }
        let Streamed {
            id,
            merge,
            check,
            sink,
            failed,
        } = self;
        let mut each = |e: &Entry| next_entry(id, check, sink, e);
        let done = match merge {
            Some(merge) => merge.apply_with(batch, &mut each),
            None => batch.iter().try_for_each(&mut each),
        };
        if let Err(e) = done {
            *failed = Some(e);
        }
    }

    fn finish(mut self) -> (BlobId, Result<S>) {
        if let (None, Some(merge)) = (&self.failed, self.merge.take()) {
            let Streamed {
                id, check, sink, ..
            } = &mut self;
            let done = merge.finish_with(&mut |e: &Entry| next_entry(id, check, sink, e));
            if let Err(e) = done {
                self.failed = Some(e);
            }
        }
        match self.failed {
            Some(e) => (self.id, Err(e)),
            None => (self.id, Ok(self.sink)),
        }
    }
}

/// One entry of list `id`: checked in its place in the list, then given to the sink.
fn next_entry<S: EntrySink>(
    id: &BlobId,
    check: &mut crate::manifest::EntryCheck,
    sink: &mut S,
    e: &Entry,
) -> Result<()> {
    check
        .push(e)
        .map_err(|m| Error::corrupt(format!("manifest {}: {m}", id.short())))?;
    sink.entry(e)
}

/// The same error again, for each list a shared base's damage fails.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Corrupt { what } => Error::corrupt(what.clone()),
        Error::CorruptBlob { expected, actual } => Error::CorruptBlob {
            expected: *expected,
            actual: *actual,
        },
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Storage {
            object,
            message,
            not_found,
        } => Error::Storage {
            object: object.clone(),
            message: message.clone(),
            not_found: *not_found,
        },
        other => Error::corrupt(other.to_string()),
    }
}

/// One read of a base for the lists of `members`, which all name it as their `tree`.
fn stream_pass<'r, S: EntrySink>(
    repo: &'r Repository,
    index: &'r BlobIndex,
    members: Vec<(BlobId, Manifest)>,
    sink: &(impl Fn(&BlobId, &Manifest) -> S + Sync),
) -> Vec<(BlobId, Result<S>)> {
    let mut reader = BlobReader::new(repo, index);
    let tree = members[0].1.tree.clone();
    let named = members[0].0;
    let mut lists: Vec<Streamed<'r, S>> = members
        .iter()
        .map(|(id, m)| {
            let (merge, failed) = match &m.changes {
                None => (None, None),
                Some(changes) if changes.entries > STREAM_CHANGES_OVER => {
                    let source = StoredChanges::new(repo, index, id, changes);
                    (Some(ChangeMerge::streamed(Box::new(source), id)), None)
                }
                Some(changes) => match read_changes(&mut reader, id, changes) {
                    Ok(c) => (Some(ChangeMerge::new(std::sync::Arc::new(c), id)), None),
                    Err(e) => (None, Some(e)),
                },
            };
            Streamed {
                id: *id,
                merge,
                check: crate::manifest::EntryCheck::with_capacity(m.entries_hint()),
                sink: sink(id, m),
                failed,
            }
        })
        .collect();
    drop(members);
    let feed = |lists: &mut Vec<Streamed<'r, S>>, batch: &[Entry]| {
        if lists.len() > 1 {
            lists.par_iter_mut().for_each(|l| l.feed(batch));
        } else {
            lists.iter_mut().for_each(|l| l.feed(batch));
        }
    };
    // The base's own damage is every list's. It is named as the first list's, as a
    // list read alone names it; the others say it is their base.
    let fail_all = |lists: &mut Vec<Streamed<'r, S>>, e: Error, read: bool| {
        for l in lists.iter_mut().filter(|l| l.failed.is_none()) {
            let own = copy_error(&e);
            l.failed = Some(match own {
                _ if read => tree_error(&l.id, own),
                _ if l.id == named => own,
                Error::Corrupt { what } => Error::corrupt(format!(
                    "manifest {}: the entry list its changes apply to: {what}",
                    l.id.short()
                )),
                other => other,
            });
        }
    };
    let mut decoder = crate::manifest::EntryDecoder::streaming(&tree, &named);
    for b in &tree.blobs {
        match reader.read_with(b, |data| decoder.feed(data)) {
            Err(e) => {
                fail_all(&mut lists, e, true);
                return lists.into_iter().map(Streamed::finish).collect();
            }
            Ok(Err(e)) => {
                fail_all(&mut lists, e, false);
                return lists.into_iter().map(Streamed::finish).collect();
            }
            Ok(Ok(())) => {}
        }
        let batch = decoder.take();
        feed(&mut lists, &batch);
    }
    match decoder.end(&tree) {
        Ok(rest) => feed(&mut lists, &rest),
        Err(e) => fail_all(&mut lists, e, false),
    }
    lists.into_iter().map(Streamed::finish).collect()
}

/// Reads and checks the change list `tree` of manifest `id`.
///
/// # Errors
/// A blob that is not indexed or damaged, a list that does not verify or is not sorted:
/// [`Error::Corrupt`]/[`Error::CorruptBlob`].
fn read_changes(reader: &mut BlobReader<'_>, id: &BlobId, tree: &Tree) -> Result<Vec<Change>> {
    let mut decoder = crate::manifest::LineDecoder::<Change>::new(tree, id);
    for b in &tree.blobs {
        reader
            .read_with(b, |data| decoder.feed(data))
            .map_err(|e| tree_error(id, e))??;
    }
    let changes = decoder.end(tree)?;
    crate::manifest::check_changes(&changes, id)?;
    Ok(changes)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk's entries become the snapshot's in place only while an entry fits in the
    /// same room with or without its `Option`.
    #[test]
    fn an_optional_entry_takes_no_more_room_than_an_entry() {
        assert_eq!(
            std::mem::size_of::<Option<Entry>>(),
            std::mem::size_of::<Entry>()
        );
        // Held once per item of the tree by a snapshot and a restore: a symlink's target
        // and a hard link's first path are boxed, since few entries have them.
        assert!(
            std::mem::size_of::<Entry>() <= 152,
            "an entry takes {} bytes",
            std::mem::size_of::<Entry>()
        );
    }
    use proptest::prelude::*;

    fn entry(i: usize, variant: u8) -> Entry {
        Entry {
            path: RelPath(format!("amazon_cache/p{i:02}.json").into_bytes()),
            kind: EntryKind::File,
            mode: 0o644,
            mtime_ns: i64::from(variant),
            size: 1,
            ino: 0,
            ctime_ns: 0,
            hash: Some(BlobId::of(&[variant])),
            blobs: smallvec::smallvec![BlobId::of(&[variant])],
            target: None,
            link: None,
        }
    }

    fn merged(base: Vec<Entry>, changes: Vec<Change>) -> Vec<Entry> {
        let mut m = ChangeMerge::new(std::sync::Arc::new(changes), &BlobId::of(b"m"));
        let mut out = m.apply(base).unwrap();
        out.extend(m.finish().unwrap());
        out
    }

    fn base_of(entries: u64, removed: Vec<RelPath>) -> Base {
        Base {
            tree: Tree {
                entries,
                ..Tree::default()
            },
            changes: None,
            id: BlobId::of(b"m"),
            removed,
        }
    }

    /// The new change list [`compose_changes`] stores, or None when it stores nothing.
    fn composed(
        b: &Base,
        theirs: &[Change],
        puts: &[Entry],
        gone: Vec<RelPath>,
    ) -> Option<Vec<Change>> {
        let mut out = Vec::new();
        let mut passes = 0;
        let n = compose_changes(
            b,
            &mut || {
                passes += 1;
                theirs.iter().cloned().map(Ok)
            },
            puts,
            gone,
            &mut |c| {
                out.push(c.clone());
                Ok(())
            },
        )
        .unwrap();
        match n {
            Some(n) => {
                assert_eq!((n, passes), (out.len(), 2));
                Some(out)
            }
            None => {
                assert!(out.is_empty());
                None
            }
        }
    }

    proptest! {
        /// Whatever the base, the parent's changes to it and the new list, the composed
        /// changes applied to the base give exactly the new list.
        #[test]
        fn composed_changes_rebuild_the_new_list(
            base in proptest::collection::vec(proptest::option::of(0u8..3), 40),
            parent_changes in proptest::collection::vec(0u8..6, 40),
            new in proptest::collection::vec(0u8..6, 40),
            walked in proptest::collection::vec(any::<bool>(), 40),
        ) {
            let base_entries: Vec<Entry> = base
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| entry(i, v)))
                .collect();
            // 0-2: no change; 3: taken out; 4-5: put in.
            let pchanges: Vec<Change> = parent_changes
                .iter()
                .enumerate()
                .filter_map(|(i, &c)| match c {
                    3 => Some(Change::Gone(entry(i, 0).path)),
                    4 | 5 => Some(Change::Put(entry(i, c))),
                    _ => None,
                })
                .collect();
            let parent = merged(base_entries.clone(), pchanges.clone());
            let of_parent = |i: usize| parent.iter().find(|e| e.path == entry(i, 0).path);
            // 0: absent; 1: the parent's entry as it is; 2-5: a variant of its own.
            let mut entries = Vec::new();
            let mut kept = Vec::new();
            let (mut removed, mut gone) = (Vec::new(), Vec::new());
            for (i, &c) in new.iter().enumerate() {
                let e = match c {
                    0 => None,
                    1 => of_parent(i).cloned(),
                    v => Some(entry(i, v - 2)),
                };
                match e {
                    Some(e) => {
                        kept.push(Some(&e) == of_parent(i));
                        entries.push(e);
                    }
                    // A parent's path no longer there: passed over by the walk, or walked
                    // and then gone while read.
                    None if of_parent(i).is_some() && walked[i] => gone.push(entry(i, 0).path),
                    None if of_parent(i).is_some() => removed.push(entry(i, 0).path),
                    None => {}
                }
            }
            let b = base_of(1000, removed);
            let puts: Vec<Entry> = entries
                .iter()
                .zip(&kept)
                .filter(|(_, k)| !**k)
                .map(|(e, _)| e.clone())
                .collect();
            let changes = composed(&b, &pchanges, &puts, gone).unwrap();
            crate::manifest::check_changes(&changes, &BlobId::of(b"m")).unwrap();
            prop_assert_eq!(merged(base_entries, changes), entries);
        }
    }

    /// Past one change in four of the base's entries, the list is stored whole.
    #[test]
    fn too_many_changes_store_the_list_whole() {
        let entries: Vec<Entry> = (0..10).map(|i| entry(i, 1)).collect();
        let puts = [entries[7].clone(), entries[8].clone()];
        assert!(composed(&base_of(10, vec![]), &[], &puts, vec![]).is_some());
        // The parent's own changes count too.
        let parent = vec![Change::Put(entry(20, 0))];
        assert!(composed(&base_of(10, vec![]), &parent, &puts, vec![]).is_none());
        let removed = vec![entry(30, 0).path];
        assert!(composed(&base_of(10, removed), &[], &puts, vec![]).is_none());
    }

    /// The parent's change list failing part-way (damage met on the second read) is an
    /// error, never a shorter list stored as if whole.
    #[test]
    fn a_change_list_that_fails_while_read_is_an_error() {
        let theirs = [Change::Put(entry(1, 0)), Change::Put(entry(5, 0))];
        let puts = [entry(3, 1)];
        for fail_at in [1, 2] {
            let mut pass = 0;
            let mut stored = Vec::new();
            let got = compose_changes(
                &base_of(100, vec![]),
                &mut || {
                    pass += 1;
                    let fail = pass == fail_at;
                    theirs.iter().cloned().enumerate().map(move |(i, c)| {
                        if fail && i == 1 {
                            Err(Error::corrupt("blob gone"))
                        } else {
                            Ok(c)
                        }
                    })
                },
                &puts,
                vec![],
                &mut |c| {
                    stored.push(c.path().display());
                    Ok(())
                },
            );
            assert!(
                got.unwrap_err().is_corruption(),
                "failing on pass {fail_at}"
            );
            // Counting stores nothing; the store pass stopped where the list failed.
            let want: &[&str] = if fail_at == 1 { &[] } else { &["1", "3"] };
            let want: Vec<String> = want
                .iter()
                .map(|p| entry(p.parse().unwrap(), 0).path.display())
                .collect();
            assert_eq!(stored, want);
        }
    }
}
