//! Verified restore: plan the entries, create folders beneath the target without following
//! symlinks, write each file to a temp name while hashing it, compare with the manifest,
//! and only then rename into place; folder metadata last.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{Entry, EntryKind, Manifest, RelPath};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::store::{BlobIndex, BlobReader};

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
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("paths", &self.paths)
            .field("exact", &self.exact)
            .field("dry_run", &self.dry_run)
            .field("guard", &self.guard.is_some())
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
    /// Bytes written.
    pub bytes: u64,
    /// Per-entry failures (corrupt blobs, unsafe destinations); exit code != 0.
    pub errors: Vec<String>,
    /// Whether any failure was corruption of repository data.
    pub corruption: bool,
    /// Paths that would be restored (dry run) or were restored.
    pub restored: Vec<RelPath>,
    /// Files the guard left alone (their destination changed since it was judged).
    pub skipped: Vec<RelPath>,
}

/// What one work unit did: bytes written, failures (message, corruption), files the guard
/// left alone.
type UnitResult = (u64, Vec<(String, bool)>, Vec<RelPath>);

/// Files per parallel work unit: neighbours share frames, so a unit decompresses each frame once.
const FILES_PER_UNIT: usize = 64;

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
    // An entry is selected when it, or one of its folders, is named: a set lookup per
    // component, so naming tens of thousands of files costs no more than naming one.
    let named: HashSet<&[u8]> = opts.paths.iter().map(|p| p.as_bytes()).collect();
    let selected: Vec<&Entry> = manifest
        .entries
        .iter()
        .filter(|e| {
            named.is_empty()
                || named.contains(e.path.as_bytes())
                || (!opts.exact && named.contains(&b""[..]))
                || !opts.exact
                    && e.path
                        .as_bytes()
                        .iter()
                        .enumerate()
                        .any(|(i, &b)| b == b'/' && named.contains(&e.path.as_bytes()[..i]))
        })
        .collect();
    if !opts.paths.is_empty() && selected.is_empty() {
        let wanted: Vec<String> = opts.paths.iter().map(|p| p.display()).collect();
        return Err(Error::Invalid(format!(
            "no entry of the snapshot matches {}",
            wanted.join(", ")
        )));
    }
    for e in &selected {
        e.path.check_safe()?;
    }
    let mut summary = RestoreSummary {
        restored: selected.iter().map(|e| e.path.clone()).collect(),
        ..Default::default()
    };
    if opts.dry_run {
        for e in &selected {
            match e.kind {
                EntryKind::File => {
                    summary.files += 1;
                    summary.bytes += e.size;
                }
                EntryKind::Dir => summary.dirs += 1,
                EntryKind::Symlink => summary.symlinks += 1,
            }
        }
        return Ok(summary);
    }
    if let Ok(m) = fs::symlink_metadata(target) {
        if !m.is_dir() && !m.file_type().is_symlink() {
            return Err(Error::Invalid(format!(
                "restore target {} exists and is not a folder",
                target.display()
            )));
        }
    } else {
        crate::fsutil::create_private_dir(target)?;
    }
    let target = target.canonicalize().map_err(Error::io(target))?;

    // Folders first (manifest order is pre-order), then the parents of everything else;
    // each folder is created or checked once, refusing symlinks, and remembered.
    let mut dirs: Vec<&Entry> = Vec::new();
    let mut verified: HashSet<Vec<u8>> = HashSet::new();
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
                let r = ensure_dirs(&target, &RelPath(p.to_vec()));
                if r.is_ok() {
                    verified.insert(p.to_vec());
                }
                r
            }
            _ => Ok(()),
        };
        let result = parent_ok.and_then(|()| {
            if e.kind == EntryKind::Dir {
                ensure_dirs(&target, &e.path)?;
                verified.insert(e.path.0.clone());
                dirs.push(e);
                summary.dirs += 1;
            }
            Ok(())
        });
        if let Err(err) = result {
            summary.errors.push(format!("{}: {err}", e.path.display()));
            unsafe_parent.insert(&e.path);
        }
    }

    let index = BlobIndex::load(repo)?;
    let mut files: Vec<&Entry> = selected
        .iter()
        .copied()
        .filter(|e| e.kind == EntryKind::File && !unsafe_parent.contains(&e.path))
        .collect();
    // Read in storage order so each work unit walks its frames front to back.
    files.sort_by_key(|e| {
        e.blobs
            .first()
            .and_then(|b| index.blobs.get(b))
            .map(|l| (l.archive, l.frame.offset, l.offset))
            .unwrap_or((0, 0, 0))
    });
    progress.start("restore", files.iter().map(|e| e.size).sum());
    let results: Vec<UnitResult> = files
        .par_chunks(FILES_PER_UNIT)
        .map(|unit| {
            let mut reader = BlobReader::new(repo, &index);
            let mut bytes = 0;
            let mut errs = Vec::new();
            let mut skipped = Vec::new();
            for e in unit {
                // A signal: stop between files; the caller reports the interruption.
                if crate::cancel::requested().is_some() {
                    break;
                }
                match restore_file(&mut reader, &target, e, opts.guard.as_ref()) {
                    Ok(true) => bytes += e.size,
                    Ok(false) => skipped.push(e.path.clone()),
                    Err(err) => {
                        errs.push((format!("{}: {err}", e.path.display()), err.is_corruption()))
                    }
                }
                progress.inc(e.size);
                crate::fault::pause("restore.writing");
            }
            (bytes, errs, skipped)
        })
        .collect();
    progress.finish();
    // Every file written so far is complete and verified; no temp file is left.
    crate::cancel::check()?;
    let mut failed_files = 0;
    for (bytes, errs, skipped) in results {
        summary.bytes += bytes;
        failed_files += errs.len() as u64 + skipped.len() as u64;
        summary.skipped.extend(skipped);
        for (msg, corrupt) in errs {
            summary.corruption |= corrupt;
            summary.errors.push(msg);
        }
    }
    summary.files = files.len() as u64 - failed_files;

    for e in selected
        .iter()
        .filter(|e| e.kind == EntryKind::Symlink && !unsafe_parent.contains(&e.path))
    {
        match restore_symlink(&target, e) {
            Ok(()) => summary.symlinks += 1,
            Err(err) => summary.errors.push(format!("{}: {err}", e.path.display())),
        }
    }
    // Folder modes and times last, deepest first, so writing inside them does not change them.
    for e in dirs.iter().rev() {
        let p = target.join(e.path.to_path());
        if let Err(err) = set_meta(&p, e) {
            summary.errors.push(format!("{}: {err}", e.path.display()));
        }
    }
    Ok(summary)
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
fn restore_file(
    reader: &mut BlobReader<'_>,
    target: &Path,
    e: &Entry,
    guard: Option<&Guard>,
) -> Result<bool> {
    // A size that disagrees with the blobs is refused before anything is written.
    let mut stored = 0u64;
    for b in &e.blobs {
        let loc = reader
            .locate(b)
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
    let (mut f, named_tmp) = match create_unnamed(&dir) {
        Some(f) => (f, None),
        None => {
            let tmp = temp_in(&dir, &name);
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(Error::io(&tmp))?;
            (f, Some(tmp))
        }
    };
    let shown = named_tmp.clone().unwrap_or_else(|| dir.clone());
    let result = (|| {
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        for b in &e.blobs {
            let data = reader.read(b)?;
            hasher.update(&data);
            written += data.len() as u64;
            f.write_all(&data).map_err(Error::io(&shown))?;
        }
        let actual = BlobId::from(hasher.finalize());
        if written != e.size || Some(actual) != e.hash {
            return Err(Error::corrupt(format!(
                "restored content of {} does not match the manifest ({} bytes, hash {})",
                e.path.display(),
                written,
                actual.short()
            )));
        }
        f.set_permissions(fs::Permissions::from_mode(safe_mode(e.mode)))
            .map_err(Error::io(&shown))?;
        f.set_modified(time_of(e.mtime_ns))
            .map_err(Error::io(&shown))?;
        // The last moment before the destination is replaced: is it still what the caller
        // judged it to be?
        if let Some(g) = guard {
            if !g(&e.path, &dest)? {
                return Ok(false);
            }
        }
        match &named_tmp {
            Some(tmp) => fs::rename(tmp, &dest).map_err(Error::io(&dest))?,
            None => publish(&f, &dir, &name, &dest)?,
        }
        Ok(true)
    })();
    if let (Ok(false) | Err(_), Some(tmp)) = (&result, &named_tmp) {
        let _ = fs::remove_file(tmp);
    }
    result
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
