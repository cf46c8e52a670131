//! Verified restore: work through the entries in windows (the list whole, or read as it
//! goes), create folders beneath the target without following symlinks, write each file to
//! a temp name while hashing it, compare with the manifest, and only then rename into place;
//! hard links of a file restored in the same run are linked to it; folder metadata last.
//! Aligned blocks of zeros are never written, so sparse files stay sparse. Into an empty
//! target, files are created at their names (O_EXCL) under a marker that only a crash
//! leaves behind.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{Entry, EntryKind, Manifest, RelPath};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::store::{BlobIndex, BlobLocation, BlobReader, Verify};

/// Decides, right before a restored file replaces what is at its destination, whether it
/// may: `Ok(false)` leaves the destination as it is (reported in
/// [`RestoreSummary::skipped`]). Operations that overwrite cache files use it to check that
/// each file is still the one their safety snapshot holds.
pub type Guard = std::sync::Arc<dyn Fn(&RelPath, &Path) -> Result<bool> + Send + Sync>;

/// What to restore.
#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Only these paths (and what lies below them); empty = everything.
    pub paths: Vec<RelPath>,
    /// `paths` name exactly the entries to restore, not what lies below them.
    pub exact: bool,
    /// Plan only.
    pub dry_run: bool,
    /// Checked right before each file replaces its destination.
    pub guard: Option<Guard>,
    /// Entries a streamed restore ([`restore_streamed`]) works through at once: more holds
    /// more in memory, fewer gives the readers less to share; 0 is [`WINDOW_ENTRIES`].
    pub window: usize,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("paths", &self.paths)
            .field("exact", &self.exact)
            .field("dry_run", &self.dry_run)
            .field("guard", &self.guard.is_some())
            .field("window", &self.window)
            .finish()
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    /// Files written and verified.
    pub files: u64,
    /// Folders created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Files restored as hard links to a file restored in the same run (counted in `files`
    /// too; their bytes are not written again).
    pub links: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Per-entry failures (corrupt blobs, unsafe destinations); exit code != 0.
    pub errors: Vec<String>,
    /// Whether any failure was corruption of repository data.
    pub corruption: bool,
    /// Files the guard left alone (their destination changed since it was judged).
    pub skipped: Vec<RelPath>,
}

/// A parallel work unit is a run of neighbouring files (in storage order) of about this many
/// bytes: neighbours share frames, so a unit decompresses each frame once, and across a
/// network a unit's frames arrive in one ranged request. Units stay small enough that a
/// tree of a few hundred MiB still spreads over every reader.
const UNIT_BYTES: u64 = 16 << 20;
/// ... and at most this many files, so progress and cancellation stay fine-grained.
const UNIT_FILES: usize = 1024;
/// Restore leaves a hole wherever a block of this size, aligned to it in the file, is all
/// zeros: the block size of the usual file systems (ext4, xfs, tmpfs pages), the smallest
/// hole they keep. A zero run that covers no such block is written, unless it touches the
/// edge of a blob (see [`SparseWriter::write`]).
const HOLE_BLOCK: usize = 4096;

/// (device, inode) of a restored file, so that its hard links can check what they link to.
type FileId = (u64, u64);

/// Outcome of one work unit: bytes written, per-file failures (message, corruption), the
/// identity of the files whose hard links follow, and the files the guard left alone.
type UnitResult<'a> = (
    u64,
    Vec<(String, bool)>,
    Vec<(&'a RelPath, FileId)>,
    Vec<RelPath>,
);

/// What writing one file did.
enum Written {
    /// Written and verified; its identity when its hard links follow.
    Done(Option<FileId>),
    /// The guard said the destination changed: left as it is.
    Skipped,
}

/// Restores `manifest` into `target`.
///
/// # Errors
/// Errors that stop the whole restore (target unusable, index unreadable); per-entry failures
/// are reported in the summary.
pub fn restore(
    repo: &Repository,
    manifest: &Manifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    restore_from(repo, None, manifest, target, opts, progress)
}

/// As [`restore`], reading through `index`: the one the manifest was loaded with, instead
/// of loading it a second time.
///
/// # Errors
/// As [`restore`].
pub fn restore_with(
    repo: &Repository,
    index: &BlobIndex,
    manifest: &Manifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    restore_from(repo, Some(index), manifest, target, opts, progress)
}

/// Entries a streamed restore works through at once ([`restore_streamed`]): their folders
/// are made, their files written in storage order in parallel, their hard links linked,
/// before the next are decoded. About 1.5 MiB of entries, and room for a dozen work units.
pub const WINDOW_ENTRIES: usize = 8_192;

/// Restores snapshot `id`, whose header is `header`, into `target`, decoding its entry list
/// as it goes, a window of [`RestoreOptions::window`] entries at a time: memory does not grow
/// with the list. Each entry is checked as a whole list is before its window is written.
/// Damage found in the list stops the restore at the window it lies in: every file written
/// before is complete and verified (folder metadata and the marker are settled as at a
/// normal end), and the damage is the error. A signal between windows stops it the same way.
///
/// # Errors
/// As [`restore`], and damage to the entry list ([`Error::Corrupt`]).
pub fn restore_streamed(
    repo: &Repository,
    index: std::sync::Arc<BlobIndex>,
    id: BlobId,
    header: &Manifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let mut stream = crate::snapshot::EntryStream::start(repo, index.clone(), id, header)?;
    // The bar's total, when the whole snapshot is restored; a filtered one counts up.
    let total = if opts.paths.is_empty() {
        header.summary.bytes_total
    } else {
        0
    };
    let mut run = Run::new(repo, &index, target, opts, progress, total);
    let size = if opts.window == 0 {
        WINDOW_ENTRIES
    } else {
        opts.window
    };
    let mut window: Vec<Entry> = Vec::new();
    let failed = loop {
        match stream.next_batch() {
            Some(Ok(batch)) => {
                if window.is_empty() {
                    window = batch;
                } else {
                    window.extend(batch);
                }
                let mut done = 0;
                let mut stop = None;
                while window.len() - done >= size {
                    if let Err(e) = run.window(&window[done..done + size], false) {
                        stop = Some(e);
                        break;
                    }
                    done += size;
                    // A signal: stop between windows, settling what was written.
                    if let Err(e) = crate::cancel::check() {
                        stop = Some(e);
                        break;
                    }
                }
                if stop.is_some() {
                    break stop;
                }
                window.drain(..done);
            }
            Some(Err(e)) => break Some(e),
            None => match run.window(&window, true) {
                Ok(()) => break None,
                Err(e) => break Some(e),
            },
        }
    };
    drop(window);
    match failed {
        None => run.finish(true),
        Some(e) => {
            // What was written is settled; the damage (or the signal) is what is reported.
            let _ = run.finish(false);
            Err(e)
        }
    }
}

fn restore_from(
    repo: &Repository,
    index: Option<&BlobIndex>,
    manifest: &Manifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let loaded;
    let index = match index {
        Some(index) => index,
        None if opts.dry_run => {
            loaded = BlobIndex::default();
            &loaded
        }
        None => {
            loaded = BlobIndex::load(repo)?;
            &loaded
        }
    };
    let named = named_set(opts);
    let total = manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && selects(&named, opts.exact, &e.path))
        .map(|e| e.size)
        .sum();
    // The whole list is one window: nothing is written before every entry is checked.
    let mut run = Run::new(repo, index, target, opts, progress, total);
    run.window(&manifest.entries, true)?;
    run.finish(true)
}

/// The paths a restore is limited to, as bytes.
fn named_set(opts: &RestoreOptions) -> HashSet<Vec<u8>> {
    opts.paths.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// Whether a restore limited to `named` (all when empty) takes `path`: named itself, or,
/// unless `exact`, lying below a named folder. A set lookup per component, so naming tens of
/// thousands of files costs no more than naming one.
fn selects(named: &HashSet<Vec<u8>>, exact: bool, path: &RelPath) -> bool {
    let p = path.as_bytes();
    named.is_empty()
        || named.contains(p)
        || !exact
            && (named.contains(&b""[..])
                || p.iter()
                    .enumerate()
                    .any(|(i, &b)| b == b'/' && named.contains(&p[..i])))
}

/// Whether the folder holding `path` is one this run created or checked (no symlink on the
/// way); the target itself always is.
fn parent_checked(verified: &HashSet<Vec<u8>>, path: &RelPath) -> bool {
    let p = path.as_bytes();
    p.iter()
        .rposition(|&b| b == b'/')
        .is_none_or(|i| verified.contains(&p[..i]))
}

/// Whether `path` is the restore marker or lies below it.
fn names_marker(path: &[u8]) -> bool {
    let m = RESTORE_MARKER.as_bytes();
    path.starts_with(m) && (path.len() == m.len() || path[m.len()] == b'/')
}

/// The target of a restore, once its first entry is to be written.
struct Place {
    target: PathBuf,
    fresh: bool,
    umask: Option<u32>,
    marker: PathBuf,
}

/// A restore under way: what it has done, and what it must still settle at its end (folder
/// metadata, symlinks, the marker). Entries come in windows in path order.
struct Run<'a> {
    repo: &'a Repository,
    index: &'a BlobIndex,
    target: &'a Path,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    total: u64,
    named: HashSet<Vec<u8>>,
    summary: RestoreSummary,
    /// Whether any entry was selected.
    any: bool,
    /// Whether an entry selected is the marker's path or lies below it: what is there at the
    /// end is the snapshot's, not a mark to clear.
    holds_marker: bool,
    place: Option<Place>,
    /// Folders created or checked (no symlink on the way), each once.
    verified: HashSet<Vec<u8>>,
    /// Folder entries, in path order: their modes and times are set last, deepest first.
    dirs: Vec<Entry>,
    /// Symlinks, made once every file is written.
    symlinks: Vec<Entry>,
}

impl<'a> Run<'a> {
    fn new(
        repo: &'a Repository,
        index: &'a BlobIndex,
        target: &'a Path,
        opts: &'a RestoreOptions,
        progress: &'a dyn Progress,
        total: u64,
    ) -> Run<'a> {
        Run {
            repo,
            index,
            target,
            opts,
            progress,
            total,
            named: named_set(opts),
            summary: RestoreSummary::default(),
            any: false,
            holds_marker: false,
            place: None,
            verified: HashSet::new(),
            dirs: Vec::new(),
            symlinks: Vec::new(),
        }
    }

    /// Readies the target for the first entry to write, `selected` being the window it
    /// lies in (the last when `last`).
    fn prepare(&self, entries: &[Entry], selected: &[&Entry], last: bool) -> Result<Place> {
        let target = self.target;
        // Files go straight to their names only into an empty folder, and only when no
        // entry to restore is the marker or lies below it: known once a window reaches past
        // every path that could.
        let mut past_marker = RESTORE_MARKER.as_bytes().to_vec();
        past_marker.push(b'/');
        let past = last
            || entries.last().is_some_and(|e| {
                e.path.as_bytes() > past_marker.as_slice() && !names_marker(e.path.as_bytes())
            });
        let mut fresh = self.opts.guard.is_none()
            && past
            && !selected.iter().any(|e| names_marker(e.path.as_bytes()));
        if let Ok(m) = fs::symlink_metadata(target) {
            if !m.is_dir() && !m.file_type().is_symlink() {
                return Err(Error::Invalid(format!(
                    "restore target {} exists and is not a folder",
                    target.display()
                )));
            }
            fresh &= m.is_dir()
                && fs::read_dir(target)
                    .map_err(Error::io(target))?
                    .next()
                    .is_none();
        } else {
            crate::fsutil::create_private_dir(target)?;
        }
        let target = target.canonicalize().map_err(Error::io(target))?;
        let umask = if fresh { creation_umask(&target) } else { None };
        let marker = target.join(RESTORE_MARKER);
        if fresh {
            // Into an empty folder files are created at their own names (see
            // `restore_file`); until the run ends, this file says that one of them may be
            // cut short by a crash.
            fs::write(
                &marker,
                "a cachevault restore into this folder has not finished: a file here may be incomplete. \
                 Restore again into this folder: every file is then written anew and verified.\n",
            )
            .map_err(Error::io(&marker))?;
        }
        self.progress.start("restore", self.total);
        Ok(Place {
            target,
            fresh,
            umask,
            marker,
        })
    }

    /// Restores the selected entries of `entries`, the next window of the list (the last
    /// when `last`).
    fn window<'e>(&mut self, entries: &'e [Entry], last: bool) -> Result<()> {
        let (named, exact) = (&self.named, self.opts.exact);
        let selected: Vec<&'e Entry> = entries
            .iter()
            .filter(|e| selects(named, exact, &e.path))
            .collect();
        if selected.is_empty() {
            return Ok(());
        }
        for e in &selected {
            e.path.check_safe()?;
        }
        self.any = true;
        self.holds_marker |= selected.iter().any(|e| names_marker(e.path.as_bytes()));
        if self.opts.dry_run {
            self.plan(&selected);
            return Ok(());
        }
        if self.place.is_none() {
            self.place = Some(self.prepare(entries, &selected, last)?);
        }
        let Run {
            repo,
            index,
            opts,
            progress,
            named,
            summary,
            place,
            verified,
            dirs,
            symlinks,
            ..
        } = self;
        let place = place.as_ref().expect("prepared above");
        let target = place.target.as_path();

        // Folders first (path order is pre-order), then the parents of everything else;
        // each folder is created or checked once, refusing symlinks, and remembered.
        let mut unsafe_parent: HashSet<&RelPath> = HashSet::new();
        for e in &selected {
            let parent = e
                .path
                .0
                .iter()
                .rposition(|&b| b == b'/')
                .map(|i| &e.path.0[..i]);
            let parent_ok = match parent {
                Some(p) if !verified.contains(p) => {
                    let r = ensure_dirs(target, &RelPath(p.to_vec()));
                    if r.is_ok() {
                        verified.insert(p.to_vec());
                    }
                    r
                }
                _ => Ok(()),
            };
            let result = parent_ok.and_then(|()| {
                if e.kind == EntryKind::Dir {
                    ensure_dirs(target, &e.path)?;
                    verified.insert(e.path.0.clone());
                    dirs.push((*e).clone());
                    summary.dirs += 1;
                }
                Ok(())
            });
            if let Err(err) = result {
                summary.errors.push(format!("{}: {err}", e.path.display()));
                unsafe_parent.insert(&e.path);
            }
        }
        let usable = selected.iter().filter(|e| !unsafe_parent.contains(&e.path));
        symlinks.extend(
            usable
                .clone()
                .filter(|e| e.kind == EntryKind::Symlink)
                .map(|e| (*e).clone()),
        );
        // Hard links whose first file is restored too become links to it, once it is
        // written; the rest are written as any file.
        let (linked, mut files): (Vec<&Entry>, Vec<&Entry>) =
            usable.filter(|e| e.kind == EntryKind::File).partition(|e| {
                e.link
                    .as_deref()
                    .is_some_and(|l| selects(named, opts.exact, l))
            });
        // Read in storage order so each work unit walks its frames front to back.
        files.sort_by_cached_key(|e| {
            e.blobs
                .first()
                .and_then(|b| index.get(b))
                .map(|l| (l.archive, l.frame.offset, l.offset))
                .unwrap_or((0, 0, 0))
        });
        // The files of this window whose hard links follow: their identity is kept to
        // check each link.
        let link_targets: HashSet<&RelPath> =
            linked.iter().filter_map(|e| e.link.as_deref()).collect();
        let to = Destination {
            target,
            guard: opts.guard.as_ref(),
            fresh: place.fresh,
            umask: place.umask,
        };
        let write = |files: &[&'e Entry]| -> Vec<UnitResult<'e>> {
            write_files(repo, index, &to, &link_targets, *progress, files)
        };
        let mut restored_ids: HashMap<&'e RelPath, FileId> = HashMap::new();
        tally(summary, &mut restored_ids, write(&files), files.len());
        // A hard link of a file written and verified above becomes a link to it, checked to
        // be that very file; of a file of an earlier window, a link to it checked to hold
        // its content. Any other (its first file failed, or linking failed) is written as a
        // copy, as any file.
        let first_path = &entries[0].path;
        let mut copies = Vec::new();
        for e in linked {
            let first = e
                .link
                .as_deref()
                .expect("partitioned on entries with a link");
            let check = match restored_ids.get(first) {
                Some(id) => Some(LinkCheck::Same(*id)),
                // Only where this run checked every folder on the way: never through a
                // symlink in the target.
                None if first < first_path && parent_checked(verified, first) => {
                    Some(LinkCheck::Content)
                }
                None => None,
            };
            let linked = check.map(|c| link_file(target, e, first, c, opts.guard.as_ref()));
            match linked {
                Some(Ok(true)) => {
                    summary.files += 1;
                    summary.links += 1;
                    progress.inc(e.size);
                }
                Some(Ok(false)) => summary.skipped.push(e.path.clone()),
                _ => copies.push(e),
            }
        }
        if !copies.is_empty() {
            tally(summary, &mut restored_ids, write(&copies), copies.len());
        }
        Ok(())
    }

    /// What a dry run counts of a window.
    fn plan(&mut self, selected: &[&Entry]) {
        let s = &mut self.summary;
        for e in selected {
            match e.kind {
                EntryKind::File => {
                    s.files += 1;
                    if e.link
                        .as_deref()
                        .is_some_and(|l| selects(&self.named, self.opts.exact, l))
                    {
                        s.links += 1;
                    } else {
                        s.bytes += e.size;
                    }
                }
                EntryKind::Dir => s.dirs += 1,
                EntryKind::Symlink => s.symlinks += 1,
            }
        }
    }

    /// Settles the restore once its windows are done (every one of them when `complete`):
    /// the marker, symlinks, folder metadata.
    fn finish(mut self, complete: bool) -> Result<RestoreSummary> {
        if complete && !self.any && !self.opts.paths.is_empty() {
            let wanted: Vec<String> = self.opts.paths.iter().map(|p| p.display()).collect();
            return Err(Error::Invalid(format!(
                "no entry of the snapshot matches {}",
                wanted.join(", ")
            )));
        }
        if self.opts.dry_run || (!complete && self.place.is_none()) {
            return Ok(self.summary);
        }
        let place = match self.place.take() {
            Some(p) => p,
            // An empty snapshot: its target is still made.
            None => self.prepare(&[], &[], true)?,
        };
        let summary = &mut self.summary;
        self.progress.finish();
        if place.fresh {
            // Every file is complete and verified, or absent.
            remove_marker(&place.marker, summary);
        }
        // Every file written so far is complete and verified; no temp file is left.
        crate::cancel::check()?;
        for e in &self.symlinks {
            match restore_symlink(&place.target, e) {
                Ok(()) => summary.symlinks += 1,
                Err(err) => summary.errors.push(format!("{}: {err}", e.path.display())),
            }
        }
        // A whole restore that wrote everything clears the mark an earlier, crashed one
        // left.
        if complete
            && !place.fresh
            && !self.holds_marker
            && self.opts.paths.is_empty()
            && summary.errors.is_empty()
            && summary.skipped.is_empty()
        {
            remove_marker(&place.marker, summary);
        }
        // Folder modes and times last, deepest first, so writing inside them does not
        // change them.
        for e in self.dirs.iter().rev() {
            let p = place.target.join(e.path.to_path());
            if let Err(err) = set_meta(&p, e) {
                summary.errors.push(format!("{}: {err}", e.path.display()));
            }
        }
        Ok(self.summary)
    }
}

/// Writes `files` (in storage order) in parallel work units; keeps the identity of those in
/// `link_targets`.
fn write_files<'m>(
    repo: &Repository,
    index: &BlobIndex,
    to: &Destination<'_>,
    link_targets: &HashSet<&RelPath>,
    progress: &dyn Progress,
    files: &[&'m Entry],
) -> Vec<UnitResult<'m>> {
    let units = || -> Vec<UnitResult<'m>> {
        units(files)
            .into_par_iter()
            .map(|unit| {
                let mut reader = BlobReader::new(repo, index);
                let mut bytes = 0;
                let mut errs = Vec::new();
                let mut ids = Vec::new();
                let mut skipped = Vec::new();
                // Each blob is looked up once: for the prefetch and for the reads.
                let located: Vec<Option<BlobLocation>> = unit
                    .iter()
                    .flat_map(|e| e.blobs.iter())
                    .map(|b| reader.locate(b))
                    .collect();
                reader.prefetch_located(located.iter().flatten().copied());
                let mut at = 0;
                let mut opened = OpenDir::default();
                for e in unit {
                    // A signal: stop between files; the caller reports the interruption.
                    if crate::cancel::requested().is_some() {
                        break;
                    }
                    let locs = &located[at..at + e.blobs.len()];
                    at += e.blobs.len();
                    let keep_id = !link_targets.is_empty() && link_targets.contains(&e.path);
                    match restore_file(&mut reader, to, e, locs, &mut opened, keep_id) {
                        Ok(Written::Done(id)) => {
                            bytes += e.size;
                            ids.extend(id.map(|id| (&e.path, id)));
                        }
                        Ok(Written::Skipped) => skipped.push(e.path.clone()),
                        Err(err) => {
                            errs.push((format!("{}: {err}", e.path.display()), err.is_corruption()))
                        }
                    }
                    progress.inc(e.size);
                    crate::fault::pause("restore.writing");
                }
                (bytes, errs, ids, skipped)
            })
            .collect()
    };
    repo.reading(units)
}

fn remove_marker(marker: &Path, summary: &mut RestoreSummary) {
    match fs::remove_file(marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => summary
            .errors
            .push(format!("{}: {}", marker.display(), Error::io(marker)(e))),
    }
}

/// Left in the target of a restore into an empty folder while it runs: only a crash leaves
/// it, and with it perhaps a file cut short.
pub const RESTORE_MARKER: &str = ".cachevault-restore-incomplete";

/// Where and how files are written.
struct Destination<'a> {
    target: &'a Path,
    guard: Option<&'a Guard>,
    /// The target was empty: files are created at their names (O_EXCL), without the
    /// unnamed-file-then-link dance that makes each new file cost two journal updates of the
    /// orphan list on ext4. A file that fails is removed; only a crash can leave one cut
    /// short, and [`RESTORE_MARKER`] says so.
    fresh: bool,
    /// With `fresh`: the process umask, when it alone decides a new file's mode (the
    /// target has no default ACL). A file whose mode it leaves whole is created with that
    /// mode instead of being given it after.
    umask: Option<u32>,
}

/// The umask that will apply to files created beneath `target`, a folder this run made or
/// found empty: None when it cannot be told, or when the folder has a default ACL (which
/// replaces the umask for what is created in it).
fn creation_umask(target: &Path) -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())?;
    let mut buf = [0u8; 256];
    match rustix::fs::getxattr(target, "system.posix_acl_default", &mut buf) {
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => Some(umask),
        _ => None,
    }
}

/// Cuts `files` into work units of about [`UNIT_BYTES`] and at most [`UNIT_FILES`] files.
fn units<'a, 'm>(files: &'a [&'m Entry]) -> Vec<&'a [&'m Entry]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, e) in files.iter().enumerate() {
        bytes += e.size;
        if bytes >= UNIT_BYTES || i + 1 - start >= UNIT_FILES {
            out.push(&files[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

/// Adds the outcome of writing `count` files to the summary.
fn tally<'m>(
    summary: &mut RestoreSummary,
    restored_ids: &mut HashMap<&'m RelPath, FileId>,
    results: Vec<UnitResult<'m>>,
    count: usize,
) {
    let mut failed_files = 0;
    for (bytes, errs, ids, skipped) in results {
        summary.bytes += bytes;
        failed_files += errs.len() as u64 + skipped.len() as u64;
        summary.skipped.extend(skipped);
        for (msg, corrupt) in errs {
            summary.corruption |= corrupt;
            summary.errors.push(msg);
        }
        restored_ids.extend(ids);
    }
    summary.files += count as u64 - failed_files;
}

/// Creates the folders of `rel` beneath `target`, refusing any existing component that is a
/// symlink or not a folder: a target that contains symlinks never redirects a write.
fn ensure_dirs(target: &Path, rel: &RelPath) -> Result<()> {
    let mut cur = target.to_path_buf();
    for comp in rel.components() {
        cur.push(RelPath(comp.to_vec()).to_path());
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::UnsafePath {
                    path: cur.display().to_string(),
                    reason: "an existing symlink in the target would redirect the write",
                })
            }
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "{} exists and is not a folder; not replacing it",
                    cur.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match fs::DirBuilder::new().mode_0700().create(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&cur)(e)),
                }
            }
            Err(e) => return Err(Error::io(&cur)(e)),
        }
    }
    Ok(())
}

trait DirBuilderPrivate {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderPrivate for fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

fn temp_in(dir: &Path, name: &[u8]) -> PathBuf {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = *PID.get_or_init(std::process::id);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut t = b".".to_vec();
    t.extend_from_slice(&name[..name.len().min(100)]);
    t.extend_from_slice(format!(".cvrestore-{pid}-{n}").as_bytes());
    t.extend_from_slice(crate::fsutil::TMP_SUFFIX.as_bytes());
    dir.join(RelPath(t).to_path())
}

fn split(target: &Path, rel: &RelPath) -> (PathBuf, Vec<u8>) {
    let bytes = rel.as_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            target.join(RelPath(bytes[..i].to_vec()).to_path()),
            bytes[i + 1..].to_vec(),
        ),
        None => (target.to_path_buf(), bytes.to_vec()),
    }
}

/// Writes `e` beneath `target`, whose parent folders were checked (no symlinks) before.
/// The content goes into an unnamed file (O_TMPFILE) that gets its name only once verified
/// (one directory update instead of create + rename); where O_TMPFILE is unsupported, into a
/// temp file created with O_EXCL|O_NOFOLLOW and renamed. Renaming onto an existing symlink
/// replaces the link itself, and onto a folder fails, so no write is ever redirected.
///
/// With `keep_id`, returns the restored file's (device, inode) for its hard links.
fn restore_file(
    reader: &mut BlobReader<'_>,
    to: &Destination<'_>,
    e: &Entry,
    located: &[Option<BlobLocation>],
    opened: &mut OpenDir,
    keep_id: bool,
) -> Result<Written> {
    let (target, guard) = (to.target, to.guard);
    // A size that disagrees with the blobs is refused before anything is written.
    let mut stored = 0u64;
    for (b, loc) in e.blobs.iter().zip(located) {
        let loc = loc
            .as_ref()
            .ok_or_else(|| Error::corrupt(format!("blob {b} is referenced but not indexed")))?;
        stored = stored.saturating_add(loc.length);
    }
    if stored != e.size {
        return Err(Error::corrupt(format!(
            "the manifest gives {} a size of {} bytes, but its blobs hold {stored}",
            e.path.display(),
            e.size
        )));
    }
    let (dir, name) = split(target, &e.path);
    let dest = dir.join(RelPath(name.clone()).to_path());
    // The mode given at creation when nothing can change it, saving a call per file.
    let mode = safe_mode(e.mode);
    let exact = to.fresh && mode & !0o777 == 0 && to.umask.is_some_and(|u| mode & u == 0);
    let created = if to.fresh {
        let at = opened.at(&dir)?;
        Some(create_new_in(
            at,
            &name,
            if exact { mode } else { 0o600 },
            &dest,
        )?)
    } else {
        None
    };
    let (f, named_tmp) = match created.or_else(|| create_unnamed(&dir)) {
        Some(f) => (f, None),
        None => {
            let tmp = temp_in(&dir, &name);
            (create_new(&tmp)?, Some(tmp))
        }
    };
    let shown = named_tmp
        .clone()
        .unwrap_or_else(|| if to.fresh { dest.clone() } else { dir.clone() });
    let result = (|| {
        // Every byte is hashed once, zeros included: skipping a block on disk never skips
        // it from verification.
        // A file of one blob is hashed whole when its blob is verified. In a plain
        // repository its id is the plain blake3 of the content, so it must equal the
        // file's hash; in an encrypted one the id is the keyed blake3 of the same bytes the
        // writer hashed for `hash`, and the manifest that pairs them is authenticated.
        // The blobs of any other file are not verified one by one: the file's hash covers
        // every byte, and a file that fails it is not kept.
        let whole = e.blobs.len() == 1 && (reader.keyed() || e.hash == e.blobs.first().copied());
        let verify = if whole {
            Verify::Blob
        } else {
            Verify::ByCaller
        };
        let mut hasher = blake3::Hasher::new();
        let mut out = SparseWriter::new(&f);
        for (b, loc) in e.blobs.iter().zip(located) {
            let loc = loc.as_ref().expect("every blob was located above");
            reader
                .read_located(b, loc, verify, |data| {
                    if !whole {
                        hasher.update(data);
                    }
                    out.write(data)
                })?
                .map_err(Error::io(&shown))?;
        }
        let written = out.finish().map_err(Error::io(&shown))?;
        let actual = if whole {
            e.hash.unwrap_or(e.blobs[0])
        } else {
            BlobId::from(hasher.finalize())
        };
        if written != e.size || Some(actual) != e.hash {
            if verify == Verify::ByCaller {
                // Read again, blob by blob, to name the damaged one.
                for (b, loc) in e.blobs.iter().zip(located.iter().flatten()) {
                    reader.read_located(b, loc, Verify::Blob, |_| ())?;
                }
            }
            return Err(Error::corrupt(format!(
                "restored content of {} does not match the manifest ({} bytes, hash {})",
                e.path.display(),
                written,
                actual.short()
            )));
        }
        if !exact {
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(Error::io(&shown))?;
        }
        f.set_modified(time_of(e.mtime_ns))
            .map_err(Error::io(&shown))?;
        let id = if keep_id {
            let m = f.metadata().map_err(Error::io(&shown))?;
            Some((m.dev(), m.ino()))
        } else {
            None
        };
        // The last moment before the destination is replaced: is it still what the caller
        // judged it to be?
        if let Some(g) = guard {
            if !g(&e.path, &dest)? {
                return Ok(Written::Skipped);
            }
        }
        match &named_tmp {
            Some(tmp) => fs::rename(tmp, &dest).map_err(Error::io(&dest))?,
            None if to.fresh => {}
            None => publish(&f, &dir, &name, &dest)?,
        }
        Ok(Written::Done(id))
    })();
    if let Ok(Written::Skipped) | Err(_) = &result {
        if let Some(tmp) = &named_tmp {
            let _ = fs::remove_file(tmp);
        } else if to.fresh {
            // Created here, at its name, by this run: never a file that was there before.
            let _ = fs::remove_file(&dest);
        }
    }
    result
}

/// A new private file at `path`: never one that exists, never through a symlink.
fn create_new(path: &Path) -> Result<File> {
    create_new_with(path, 0o600)
}

/// A new file at `path` created with `mode` (less the umask): never one that exists, never
/// through a symlink.
fn create_new_with(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(Error::io(path))
}

/// A new file `name` in the folder `at`, created with `mode` (less the umask): never one
/// that exists, never through a symlink. `shown` names it in errors.
fn create_new_in(at: BorrowedFd<'_>, name: &[u8], mode: u32, shown: &Path) -> Result<File> {
    use rustix::fs::{openat, Mode, OFlags};
    openat(
        at,
        std::ffi::OsStr::from_bytes(name),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map(File::from)
    .map_err(|e| Error::io(shown)(e.into()))
}

/// The folder a worker last created a file in, kept open: the next file in it is created
/// relative to it rather than through its whole path again (walking the path was about 2%
/// of a restore's CPU at 110k files). Opened as the path is walked when a file is created
/// by name, so a symlink the path holds is followed as it was then (the folders beneath the
/// target were checked for symlinks before).
#[derive(Default)]
struct OpenDir {
    path: PathBuf,
    fd: Option<OwnedFd>,
}

impl OpenDir {
    fn at(&mut self, dir: &Path) -> Result<BorrowedFd<'_>> {
        use rustix::fs::{openat, Mode, OFlags, CWD};
        if self.fd.is_none() || self.path != dir {
            self.fd = None;
            let fd = openat(
                CWD,
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io(dir)(e.into()))?;
            dir.clone_into(&mut self.path);
            self.fd = Some(fd);
        }
        Ok(self.fd.as_ref().expect("opened above").as_fd())
    }
}

/// An unnamed file in `dir`, or None where the file system does not support O_TMPFILE.
fn create_unnamed(dir: &Path) -> Option<File> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ok()
    .map(File::from)
}

/// Gives a verified unnamed file its name; over an existing file, through a temp name and
/// an atomic rename.
fn publish(f: &File, dir: &Path, name: &[u8], dest: &Path) -> Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
    match linkat(CWD, proc.as_str(), CWD, dest, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::EXIST => {
            let tmp = temp_in(dir, name);
            linkat(CWD, proc.as_str(), CWD, &tmp, AtFlags::SYMLINK_FOLLOW)
                .map_err(|e| Error::io(&tmp)(e.into()))?;
            fs::rename(&tmp, dest).map_err(|err| {
                let _ = fs::remove_file(&tmp);
                Error::io(dest)(err)
            })
        }
        Err(e) => Err(Error::io(dest)(e.into())),
    }
}

/// How a hard link checks the file it is about to be linked to.
#[derive(Debug, Clone, Copy)]
enum LinkCheck {
    /// That very file (device, inode), restored and verified in the same window.
    Same(FileId),
    /// Restored in an earlier window, whose identities are not kept: a regular file of this
    /// process's user, holding exactly the link's content (hashed again).
    Content,
}

/// Restores hard link `e` as a link to `first`, restored and verified in this run: linked
/// under a temp name (never following a symlink), checked as `check` says, then renamed into
/// place. Mode and mtime belong to the file and were set on it.
fn link_file(
    target: &Path,
    e: &Entry,
    first: &RelPath,
    check: LinkCheck,
    guard: Option<&Guard>,
) -> Result<bool> {
    use rustix::fs::{linkat, AtFlags, CWD};
    let (dir, name) = split(target, &e.path);
    let dest = dir.join(RelPath(name.clone()).to_path());
    let src = target.join(first.to_path());
    let tmp = temp_in(&dir, &name);
    linkat(CWD, &src, CWD, &tmp, AtFlags::empty()).map_err(|err| Error::io(&tmp)(err.into()))?;
    let result = (|| {
        let same = match check {
            LinkCheck::Same(id) => {
                let m = fs::symlink_metadata(&tmp).map_err(Error::io(&tmp))?;
                m.is_file() && (m.dev(), m.ino()) == id
            }
            LinkCheck::Content => holds_content(&tmp, e)?,
        };
        if !same {
            return Err(Error::Invalid(format!(
                "{} changed since it was restored; not linking to it",
                src.display()
            )));
        }
        if let Some(g) = guard {
            if !g(&e.path, &dest)? {
                return Ok(false);
            }
        }
        // Over an existing file, the rename replaces it atomically; onto a folder it fails.
        // (`dest` cannot already be this file: paths are unique and the file is new.)
        fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `path` (not followed if a symlink) is a regular file of this process's user
/// holding exactly the content of file entry `e`.
fn holds_content(path: &Path, e: &Entry) -> Result<bool> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(err) => return Err(Error::io(path)(err)),
    };
    let m = f.metadata().map_err(Error::io(path))?;
    if !m.is_file() || m.uid() != rustix::process::geteuid().as_raw() || m.len() != e.size {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&f).map_err(Error::io(path))?;
    Ok(Some(BlobId::from(hasher.finalize())) == e.hash)
}

/// Writes a new, empty file's content front to back, leaving a hole wherever an aligned
/// [`HOLE_BLOCK`] is all zeros. The file starts empty, so bytes never written read back as
/// zeros: skipping zeros is always correct, and doing so per aligned block keeps every hole
/// the file system can keep. Non-zero blocks in a row go out in one positional write.
struct SparseWriter<W: BlockSink> {
    out: W,
    /// Bytes received so far: the logical length.
    len: u64,
    /// End of the last write: when it falls short of `len`, the length is set at the end.
    end: u64,
}

/// Where [`SparseWriter`] writes: a file, or a recorder in tests.
trait BlockSink {
    fn write_all_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()>;
    fn set_len(&mut self, len: u64) -> std::io::Result<()>;
}

impl BlockSink for &File {
    fn write_all_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
        FileExt::write_all_at(*self, data, offset)
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }
}

impl<W: BlockSink> SparseWriter<W> {
    fn new(out: W) -> Self {
        SparseWriter {
            out,
            len: 0,
            end: 0,
        }
    }

    /// Appends `data`.
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let base = self.len;
        // Cells: the part up to the next block boundary, whole blocks, the rest. A cell at
        // either edge of `data` may be a partial block; skipping it when zero is still
        // correct (never-written bytes read as zeros) and keeps a hole across blob edges.
        let first = (HOLE_BLOCK - (base % HOLE_BLOCK as u64) as usize).min(data.len());
        let mut run: Option<usize> = None;
        let mut at = 0;
        while at < data.len() {
            let cell_end = if at == 0 {
                first
            } else {
                (at + HOLE_BLOCK).min(data.len())
            };
            if is_zero_block(&data[at..cell_end]) {
                if let Some(start) = run.take() {
                    self.put(&data[start..at], base + start as u64)?;
                }
            } else if run.is_none() {
                run = Some(at);
            }
            at = cell_end;
        }
        if let Some(start) = run {
            self.put(&data[start..], base + start as u64)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    fn put(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.out.write_all_at(data, offset)?;
        self.end = offset + data.len() as u64;
        Ok(())
    }

    /// Sets the length when the content ends in zeros that were not written; returns it.
    fn finish(mut self) -> std::io::Result<u64> {
        if self.end < self.len {
            self.out.set_len(self.len)?;
        }
        Ok(self.len)
    }
}

/// Whether `block` is all zeros. Real data answers at its first eight bytes (a JSON file
/// never starts a block with eight NULs); only a block that could be zero is scanned, 64
/// bytes at a time as eight words ORed together, which the compiler vectorises.
fn is_zero_block(block: &[u8]) -> bool {
    let head = &block[..block.len().min(8)];
    if head.iter().any(|&b| b != 0) {
        return false;
    }
    let mut wide = block.chunks_exact(64);
    let zero = wide.by_ref().all(|c| {
        c.chunks_exact(8).fold(0u64, |acc, w| {
            acc | u64::from_ne_bytes(w.try_into().expect("chunks of 8 bytes"))
        }) == 0
    });
    zero && wide.remainder().iter().all(|&b| b == 0)
}

fn refuse_folder(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => Err(Error::Invalid(format!(
            "{} is a folder; not replacing it with a file",
            dest.display()
        ))),
        _ => Ok(()),
    }
}

fn restore_symlink(target: &Path, e: &Entry) -> Result<()> {
    let (dir, name) = split(target, &e.path);
    let dest = dir.join(RelPath(name.clone()).to_path());
    refuse_folder(&dest)?;
    let tmp = temp_in(&dir, &name);
    let link = e
        .target
        .as_ref()
        .ok_or_else(|| Error::corrupt("symlink without target"))?;
    std::os::unix::fs::symlink(link.to_path(), &tmp).map_err(Error::io(&tmp))?;
    fs::rename(&tmp, &dest).map_err(|err| {
        let _ = fs::remove_file(&tmp);
        Error::io(&dest)(err)
    })
}

fn set_meta(path: &Path, e: &Entry) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(safe_mode(e.mode)))
        .map_err(Error::io(path))?;
    let f = File::open(path).map_err(Error::io(path))?;
    f.set_modified(time_of(e.mtime_ns)).map_err(Error::io(path))
}

/// setuid and setgid bits are never restored.
pub(crate) fn safe_mode(mode: u32) -> u32 {
    mode & 0o1777
}

pub(crate) fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A file in memory that records each positional write.
    #[derive(Default)]
    struct Recorder {
        content: Vec<u8>,
        writes: Vec<(u64, usize)>,
        set_len: Option<u64>,
    }

    impl BlockSink for &mut Recorder {
        fn write_all_at(&mut self, data: &[u8], offset: u64) -> std::io::Result<()> {
            let end = offset as usize + data.len();
            if self.content.len() < end {
                self.content.resize(end, 0);
            }
            self.content[offset as usize..end].copy_from_slice(data);
            self.writes.push((offset, data.len()));
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> std::io::Result<()> {
            self.content.resize(len as usize, 0);
            self.set_len = Some(len);
            Ok(())
        }
    }

    /// Writes `data` cut at `cuts` (blob edges) and returns what the file holds.
    fn write_in_pieces(data: &[u8], cuts: &[usize]) -> Recorder {
        let mut rec = Recorder::default();
        let mut w = SparseWriter::new(&mut rec);
        let mut at = 0;
        for &cut in cuts.iter().chain([data.len()].iter()) {
            let cut = cut.clamp(at, data.len());
            w.write(&data[at..cut]).unwrap();
            at = cut;
        }
        assert_eq!(w.finish().unwrap(), data.len() as u64);
        rec
    }

    #[test]
    fn zero_blocks_are_recognised_at_any_position() {
        assert!(is_zero_block(&[]));
        assert!(is_zero_block(&[0; 4096]));
        assert!(is_zero_block(&[0; 100]));
        for at in [0, 7, 8, 63, 64, 4000, 4031, 4095] {
            let mut b = [0u8; 4096];
            b[at] = 1;
            assert!(!is_zero_block(&b), "a 1 at {at} was missed");
        }
        let mut short = [0u8; 77];
        short[76] = 9;
        assert!(!is_zero_block(&short), "the tail after the last 64 bytes");
        assert!(!is_zero_block(b"{\"a\": 1}"));
    }

    #[test]
    fn ordinary_data_is_one_write() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        let rec = write_in_pieces(&data, &[]);
        assert_eq!(rec.writes, vec![(0, 10_000)]);
        assert_eq!(rec.set_len, None);
        assert_eq!(rec.content, data);
    }

    #[test]
    fn aligned_zero_blocks_are_skipped_and_short_runs_written() {
        let mut data = vec![7u8; 5 * HOLE_BLOCK + 100];
        // Block 1 all zeros: skipped. 4096 zeros straddling blocks 3 and 4: written.
        data[HOLE_BLOCK..2 * HOLE_BLOCK].fill(0);
        data[3 * HOLE_BLOCK + 10..4 * HOLE_BLOCK + 10].fill(0);
        let rec = write_in_pieces(&data, &[]);
        assert_eq!(
            rec.writes,
            vec![
                (0, HOLE_BLOCK),
                (2 * HOLE_BLOCK as u64, 3 * HOLE_BLOCK + 100)
            ]
        );
        assert_eq!(rec.content, data);
    }

    #[test]
    fn trailing_zeros_set_the_length() {
        let mut data = vec![0u8; 3 * HOLE_BLOCK + 5];
        data[..10].fill(1);
        let rec = write_in_pieces(&data, &[]);
        assert_eq!(rec.writes, vec![(0, HOLE_BLOCK)]);
        assert_eq!(rec.set_len, Some(data.len() as u64));
        assert_eq!(rec.content, data);
        let zeros = write_in_pieces(&[0u8; 10_000], &[]);
        assert!(zeros.writes.is_empty());
        assert_eq!(zeros.content, vec![0u8; 10_000]);
    }

    #[test]
    fn a_hole_survives_blob_edges_inside_it() {
        let mut data = vec![3u8; 4 * HOLE_BLOCK];
        data[HOLE_BLOCK..3 * HOLE_BLOCK].fill(0);
        let rec = write_in_pieces(&data, &[HOLE_BLOCK + 1000, 2 * HOLE_BLOCK + 17]);
        assert_eq!(rec.content, data);
        let written: usize = rec.writes.iter().map(|w| w.1).sum();
        assert_eq!(written, 2 * HOLE_BLOCK, "{:?}", rec.writes);
    }

    proptest! {
        #[test]
        fn sparse_writes_reproduce_the_content(
            runs in proptest::collection::vec((any::<bool>(), 1usize..3 * HOLE_BLOCK), 0..12),
            cuts in proptest::collection::vec(0usize..40_000, 0..6),
        ) {
            let mut data = Vec::new();
            for (i, (zero, len)) in runs.iter().enumerate() {
                let byte = if *zero { 0 } else { 1 + i as u8 };
                data.extend(std::iter::repeat_n(byte, *len));
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            let rec = write_in_pieces(&data, &cuts);
            prop_assert_eq!(&rec.content, &data);
            // No write covers a whole aligned block of zeros.
            for &(offset, len) in &rec.writes {
                let (start, end) = (offset as usize, offset as usize + len);
                let first_block = start.div_ceil(HOLE_BLOCK);
                for b in first_block..end / HOLE_BLOCK {
                    let block = &data[b * HOLE_BLOCK..(b + 1) * HOLE_BLOCK];
                    prop_assert!(block.iter().any(|&x| x != 0), "block {} written", b);
                }
            }
        }
    }
}
