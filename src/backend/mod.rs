//! Storage backends: where a repository's objects live. A backend stores opaque named
//! objects by kind (archives, indexes, manifests, ...) and knows nothing of what is in them;
//! the repository above it knows nothing of folders, files or buckets. Every object name is
//! spelled in [`crate::repo::layout`], never here.
//!
//! Guarantees every backend gives: [`Backend::write`] and [`Backend::publish`] are atomic
//! (a reader sees the whole object or none) and durable once [`Backend::sync`] returns;
//! [`Backend::remove`] of a missing object succeeds; errors name the object.

pub mod local;
pub mod lock;
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
pub use lock::LockKind;

/// The name of the config object: the one name every backend knows, since finding it is how a
/// repository is told from an empty place.
pub const CONFIG_NAME: &str = "config.json";

/// What an object is; each kind is a namespace of names (a folder, a key prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// `config.json`: format version, repository id, parameters.
    Config,
    /// Pack archives of blobs.
    Archive,
    /// The index (seek table) of one archive.
    Index,
    /// Snapshot manifests.
    Snapshot,
    /// The operation journal.
    Journal,
    /// Records of undoable operations.
    Record,
    /// Small state files (`schedule.json`).
    State,
    /// Files set aside by the recovery commands.
    Damaged,
    /// Lock holder descriptions.
    Lock,
    /// Key files of an encrypted repository.
    Key,
}

impl ObjectKind {
    /// Every kind.
    pub const ALL: [ObjectKind; 10] = [
        ObjectKind::Config,
        ObjectKind::Archive,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Journal,
        ObjectKind::Record,
        ObjectKind::State,
        ObjectKind::Damaged,
        ObjectKind::Lock,
        ObjectKind::Key,
    ];

    /// The folder (key prefix) of the kind; empty for objects at the top.
    pub fn folder(self) -> &'static str {
        match self {
            ObjectKind::Config | ObjectKind::State => "",
            ObjectKind::Archive => "archives",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Journal => "journal",
            ObjectKind::Record => "clears",
            ObjectKind::Damaged => "damaged",
            ObjectKind::Lock => "locks",
            ObjectKind::Key => "keys",
        }
    }

    /// The object's path relative to the repository, for messages (`archives/<id>.tar.zst`).
    pub fn path_of(self, name: &str) -> String {
        match self.folder() {
            "" => name.to_string(),
            f => format!("{f}/{name}"),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Archive => "archive",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "manifest",
            ObjectKind::Journal => "journal",
            ObjectKind::Record => "operation record",
            ObjectKind::State => "state",
            ObjectKind::Damaged => "set-aside file",
            ObjectKind::Lock => "lock",
            ObjectKind::Key => "key file",
        })
    }
}

/// One object found by [`Backend::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name within its kind.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Random access to one object (a pack archive read frame by frame).
pub trait ObjectRead: Send {
    /// The object's size.
    fn len(&self) -> u64;
    /// Whether the object is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Exactly `len` bytes from `offset`.
    ///
    /// # Errors
    /// I/O errors naming the object; a range beyond the end.
    fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// A hint: the reads that follow lie in `offset..offset + len`. A remote object fetches
    /// that span in one request and serves the reads from it; a local file ignores it.
    ///
    /// # Errors
    /// As [`ObjectRead::read_at`].
    fn prefetch(&mut self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// A large object being written: a local spool file, published under its name when done.
/// Dropping it unpublished removes the spool file.
#[derive(Debug)]
pub struct Staged {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The spool file.
    pub file: Option<File>,
    /// Where it is.
    pub path: PathBuf,
}

impl Staged {
    /// Creates a private spool file at `path` (which must not exist).
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(kind: ObjectKind, path: PathBuf) -> Result<Staged> {
        let file = crate::fsutil::create_new_private(&path)?;
        Ok(Staged {
            kind,
            file: Some(file),
            path,
        })
    }

    /// The spool file to write to.
    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("a staged object has its file until published")
    }

    /// Closes the spool file, returning its path; the caller then owns the file on disk.
    pub fn into_path(mut self) -> PathBuf {
        self.file = None;
        std::mem::take(&mut self.path)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file = None;
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A held repository lock; dropping it releases the lock (and removes what describes it).
pub trait LockGuard: Send + fmt::Debug {}

/// Where a repository's objects live.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The location in words (`/srv/repo`, `s3:https://host/bucket/prefix`).
    fn location(&self) -> String;

    /// One object in words, for messages and reports: the location and the object's path
    /// in the repository (`/srv/repo/archives/<id>.tar.zst`).
    fn describe(&self, kind: ObjectKind, name: &str) -> String {
        format!(
            "{}/{}",
            self.location().trim_end_matches('/'),
            kind.path_of(name)
        )
    }

    /// The local folder, for a repository on this machine's file system.
    fn local_path(&self) -> Option<&Path> {
        None
    }

    /// How many reads are worth having in flight at once: a remote service answers after a
    /// round trip, so commands that read many objects keep that many going; 0 means as many
    /// as the machine has cores (a local disk).
    fn parallel_reads(&self) -> usize {
        0
    }

    /// Prepares an empty repository (folders, a bucket prefix); refuses a place that
    /// already holds something.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], I/O and service errors.
    fn create(&self) -> Result<()>;

    /// Every object of `kind` (temporary files of interrupted writers left out).
    ///
    /// # Errors
    /// I/O and service errors.
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>>;

    /// A whole object.
    ///
    /// # Errors
    /// A missing object ([`Error::is_not_found`]), I/O and service errors.
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>>;

    /// Opens an object for reading ranges of it.
    ///
    /// # Errors
    /// As [`Backend::read`].
    fn open(&self, kind: ObjectKind, name: &str) -> Result<Box<dyn ObjectRead>>;

    /// Opens an object whose size the caller already knows (from an index); a backend that
    /// must ask for the size otherwise skips that request. Reads past the real end fail.
    ///
    /// # Errors
    /// As [`Backend::read`].
    fn open_sized(&self, kind: ObjectKind, name: &str, len: u64) -> Result<Box<dyn ObjectRead>> {
        let _ = len;
        self.open(kind, name)
    }

    /// Writes a whole object atomically and durably, replacing one of the same name; except
    /// that archives, indexes and manifests (named by what they hold) are written
    /// create-only where the backend can, keeping an existing object: a caller that means to
    /// replace one removes or sets it aside first.
    ///
    /// # Errors
    /// I/O and service errors (a full disk included).
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()>;

    /// A spool file for a large object of `kind`, to [`Backend::publish`] when complete.
    ///
    /// # Errors
    /// I/O errors.
    fn stage(&self, kind: ObjectKind) -> Result<Staged>;

    /// Publishes a staged object under `name`, atomically and durably; the spool file goes.
    ///
    /// # Errors
    /// I/O and service errors; the staged object is then dropped.
    fn publish(&self, staged: Staged, name: &str) -> Result<()>;

    /// Appends `data` to an object (created when missing), durably. Concurrent appends never
    /// interleave inside one call's data.
    ///
    /// # Errors
    /// I/O and service errors.
    fn append(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()>;

    /// Removes an object; a missing one is not an error.
    ///
    /// # Errors
    /// I/O and service errors.
    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()>;

    /// Moves an object to another kind and name (setting damaged files aside).
    ///
    /// # Errors
    /// A missing object, I/O and service errors.
    fn rename(&self, from: (ObjectKind, &str), to: (ObjectKind, &str)) -> Result<()>;

    /// A durability barrier: names written or removed in `kind` so far survive a crash.
    ///
    /// # Errors
    /// I/O errors.
    fn sync(&self, kind: ObjectKind) -> Result<()>;

    /// Takes the repository lock, waiting up to `wait`; `on_wait` is told once, in words,
    /// who holds it.
    ///
    /// # Errors
    /// [`Error::Locked`] when the wait ran out.
    fn lock(
        &self,
        kind: LockKind,
        command: &str,
        wait: Duration,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn LockGuard>>;

    /// Removes what interrupted writers and dead lock holders left (temp files, spool
    /// files, holder descriptions of processes that are gone); the caller holds the
    /// exclusive lock. Returns how many things, and how many bytes, went.
    ///
    /// # Errors
    /// I/O and service errors.
    fn remove_leftovers(&self, dry_run: bool) -> Result<(usize, u64)>;

    /// In an encrypted repository: what lock objects and holder files say (host, process,
    /// command, times) is sealed with `seal` from now on, and read through it.
    fn set_lock_seal(&self, seal: std::sync::Arc<dyn LockSeal>) {
        let _ = seal;
    }

    /// Removes locks nobody holds any more (every lock with `all`); returns each in words.
    ///
    /// # Errors
    /// I/O and service errors.
    fn unlock(&self, all: bool) -> Result<Vec<String>> {
        let _ = all;
        Ok(Vec::new())
    }
}

/// Seals and opens the descriptions of lock holders in an encrypted repository.
pub trait LockSeal: Send + Sync + std::fmt::Debug {
    /// `plain`, sealed.
    fn seal(&self, plain: &[u8]) -> Vec<u8>;
    /// What `seal` sealed, or `None` for bytes that do not authenticate.
    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>>;
}

/// Reads a lock holder's description: opened with `seal` when there is one.
pub(crate) fn unseal_lock(
    seal: Option<&std::sync::Arc<dyn LockSeal>>,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    match seal {
        Some(s) => s.open(bytes),
        None => Some(bytes.to_vec()),
    }
}

/// Writes a lock holder's description: sealed with `seal` when there is one.
pub(crate) fn seal_lock(seal: Option<&std::sync::Arc<dyn LockSeal>>, plain: Vec<u8>) -> Vec<u8> {
    match seal {
        Some(s) => s.seal(&plain),
        None => plain,
    }
}

/// Whether a repository location is a URL (as opposed to a folder name).
pub fn is_url(location: &str) -> bool {
    let Some((scheme, rest)) = location.split_once(':') else {
        return false;
    };
    scheme.len() > 1
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        && (rest.starts_with("//")
            || matches!(
                scheme,
                "s3" | "sftp" | "rest" | "b2" | "azure" | "gs" | "swift" | "rclone"
            ))
}

/// Opens the backend a repository location names: a local folder or an `s3:` URL. A
/// location that looks like a URL of an unsupported kind is an error, never a folder name.
///
/// # Errors
/// [`Error::Invalid`] naming the location.
pub fn open(location: &str) -> Result<Box<dyn Backend>> {
    if location.is_empty() {
        return Err(Error::Invalid("an empty repository location".into()));
    }
    if location.starts_with("s3:") {
        #[cfg(feature = "s3")]
        return Ok(Box::new(s3::S3Backend::open(location)?));
        #[cfg(not(feature = "s3"))]
        return Err(Error::Invalid(format!(
            "repository {location:?}: this cachevault was built without S3 support (cargo feature `s3`)"
        )));
    }
    if is_url(location) {
        let scheme = location.split(':').next().unwrap_or_default();
        return Err(Error::Invalid(format!(
            "repository {location:?}: {scheme:?} repositories are not supported; give a folder or an s3: URL"
        )));
    }
    Ok(Box::new(local::LocalBackend::new(Path::new(location))))
}
