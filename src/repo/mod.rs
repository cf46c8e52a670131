//! The repository: init/open, its format version and config, and typed access to its objects
//! (archives, indexes, manifests) through its storage backend. Object names are spelled in
//! [`layout`]; how they are stored is the backend's business.

pub mod layout;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::local::LocalBackend;
use crate::backend::{Backend, LockGuard, ObjectKind, ObjectRead};
use crate::error::{Error, Result};
use crate::id::BlobId;

pub use crate::backend::lock::{LockKind, RepoLock};

/// Repository format version this build writes and reads; frozen per release, because
/// every repository's config.json records it. See docs/FORMAT.md.
pub const FORMAT_VERSION: u32 = 1;

/// Content-defined chunking parameters; fixed per repository at init so that the same
/// content always cuts the same way (changing them would defeat deduplication).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Files smaller than this are one blob.
    pub threshold: u32,
    /// FastCDC minimum chunk size.
    pub min_size: u32,
    /// FastCDC average chunk size.
    pub avg_size: u32,
    /// FastCDC maximum chunk size.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            threshold: 1 << 20,
            min_size: 64 << 10,
            avg_size: 256 << 10,
            max_size: 1 << 20,
        }
    }
}

/// `config.json`: what every reader must know before touching anything else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoConfig {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Random repository id.
    pub id: String,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// zstd level for new frames.
    pub zstd_level: i32,
    /// Archives are closed once they reach this many compressed bytes.
    pub archive_target_size: u64,
}

/// An open repository: its config and the backend its objects live in. Every module reaches
/// the repository's objects through these methods, never through the file system.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: RepoConfig,
}

/// A repository object that could not be used: a manifest or index that does not parse or
/// verify. It costs only what depends on it; commands name it and go on with the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damaged {
    /// The object, relative to the repository (`snapshots/<id>.json`, `index/<id>.json`).
    pub file: String,
    /// What is wrong with it.
    pub error: String,
}

impl Repository {
    /// Creates a new, empty repository in the local folder `root` (absent or empty).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `root` holds anything; I/O errors.
    pub fn init(root: &Path) -> Result<Repository> {
        Repository::init_in(Box::new(LocalBackend::new(root)))
    }

    /// Creates a new, empty repository at `location` (a folder or a URL).
    ///
    /// # Errors
    /// As [`Repository::init`]; a location of an unsupported kind.
    pub fn init_at(location: &str) -> Result<Repository> {
        Repository::init_in(crate::backend::open(location)?)
    }

    /// Creates a new, empty repository in `backend`.
    ///
    /// # Errors
    /// As [`Repository::init`].
    pub fn init_in(backend: Box<dyn Backend>) -> Result<Repository> {
        backend.create()?;
        let seed = format!(
            "{:?}{}{}",
            std::time::SystemTime::now(),
            std::process::id(),
            backend.location()
        );
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            id: BlobId::of(seed.as_bytes()).to_hex(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            archive_target_size: 32 << 20,
        };
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        backend.write(ObjectKind::Config, layout::CONFIG, &json)?;
        backend.sync(ObjectKind::Config)?;
        Ok(Repository {
            backend: Arc::from(backend),
            config,
        })
    }

    /// Opens the existing repository in the local folder `root`.
    ///
    /// # Errors
    /// [`Error::NotARepository`], [`Error::UnsupportedFormat`], [`Error::Corrupt`] for a
    /// config.json that does not parse.
    pub fn open(root: &Path) -> Result<Repository> {
        Repository::open_in(Box::new(LocalBackend::new(root)))
    }

    /// Opens the existing repository at `location` (a folder or a URL).
    ///
    /// # Errors
    /// As [`Repository::open`]; a location of an unsupported kind.
    pub fn open_at(location: &str) -> Result<Repository> {
        Repository::open_in(crate::backend::open(location)?)
    }

    /// Opens the existing repository in `backend`, refusing unknown format versions.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub fn open_in(backend: Box<dyn Backend>) -> Result<Repository> {
        let bytes = match backend.read(ObjectKind::Config, layout::CONFIG) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::NotARepository(backend.location().into()))
            }
            Err(e) => return Err(e),
        };
        let what = ObjectKind::Config.path_of(layout::CONFIG);
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{what} does not parse: {e}")))?;
        if v.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found: v.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let config: RepoConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{what} does not parse: {e}")))?;
        Ok(Repository {
            backend: Arc::from(backend),
            config,
        })
    }

    /// Where the repository is, in words (a folder, a URL).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Runs `work`, whose parallel iterators read repository objects, with as many threads as
    /// reads worth having in flight: the cores for a local disk, more for a remote service
    /// (the threads wait on round trips, not on the CPU).
    pub fn reading<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        let wanted = self.backend.parallel_reads();
        if wanted <= rayon::current_num_threads() {
            return work();
        }
        static POOLS: std::sync::Mutex<Vec<(usize, &'static rayon::ThreadPool)>> =
            std::sync::Mutex::new(Vec::new());
        let pool = {
            let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
            match pools.iter().find(|(n, _)| *n == wanted) {
                Some((_, pool)) => *pool,
                None => {
                    let built = rayon::ThreadPoolBuilder::new()
                        .num_threads(wanted)
                        .thread_name(|i| format!("cachevault-read-{i}"))
                        .build();
                    match built {
                        // One per width for the life of the process, like rayon's own pool.
                        Ok(p) => {
                            let p: &'static rayon::ThreadPool = Box::leak(Box::new(p));
                            pools.push((wanted, p));
                            p
                        }
                        Err(_) => return work(),
                    }
                }
            }
        };
        pool.install(work)
    }

    /// One object in words: where it is, for messages and reports.
    pub fn describe(&self, kind: ObjectKind, name: &str) -> String {
        self.backend.describe(kind, name)
    }

    /// The repository's folder when it is on this machine's file system.
    pub fn local_path(&self) -> Option<&Path> {
        self.backend.local_path()
    }

    /// The backend (for the few operations that work on raw objects: copy, tests).
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The backend, shared (an archive writer keeps it while it writes).
    pub fn shared_backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// The repository's config.json.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Every archive with its size, by id (names that are not archives left out).
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn list_archives(&self) -> Result<Vec<(BlobId, u64)>> {
        Ok(self
            .backend
            .list(ObjectKind::Archive)?
            .into_iter()
            .filter_map(|o| layout::archive_id(&o.name).map(|id| (id, o.size)))
            .collect())
    }

    /// Ids of every index.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn list_indexes(&self) -> Result<Vec<BlobId>> {
        let mut out: Vec<BlobId> = self
            .backend
            .list(ObjectKind::Index)?
            .into_iter()
            .filter_map(|o| layout::index_id(&o.name))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Reads and checks one archive's index.
    ///
    /// # Errors
    /// I/O errors; [`Error::Corrupt`] for an index that does not parse, fails its checks or
    /// describes another archive.
    pub fn read_index(&self, id: &BlobId) -> Result<crate::archive::ArchiveIndex> {
        let name = layout::index(id);
        let what = self.describe(ObjectKind::Index, &name);
        let idx = crate::archive::ArchiveIndex::decode(
            &self.backend.read(ObjectKind::Index, &name)?,
            &what,
        )?;
        if idx.archive != *id {
            return Err(Error::corrupt(format!(
                "{what} describes archive {}",
                idx.archive
            )));
        }
        Ok(idx)
    }

    /// Persists one archive's index atomically.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn write_index(&self, idx: &crate::archive::ArchiveIndex) -> Result<()> {
        let json = serde_json::to_vec(idx).expect("index serialises");
        self.backend
            .write(ObjectKind::Index, &layout::index(&idx.archive), &json)
    }

    /// Removes one archive's index.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn remove_index(&self, archive: &BlobId) -> Result<()> {
        self.backend
            .remove(ObjectKind::Index, &layout::index(archive))
    }

    /// Reads a whole archive.
    ///
    /// # Errors
    /// I/O and service errors; a missing archive.
    pub fn read_archive(&self, id: &BlobId) -> Result<Vec<u8>> {
        self.backend.read(ObjectKind::Archive, &layout::archive(id))
    }

    /// Opens an archive to read frames of it.
    ///
    /// # Errors
    /// As [`Repository::read_archive`].
    pub fn open_archive(&self, id: &BlobId) -> Result<Box<dyn ObjectRead>> {
        self.backend.open(ObjectKind::Archive, &layout::archive(id))
    }

    /// Opens an archive whose size its index gives (object stores then skip asking for it).
    ///
    /// # Errors
    /// As [`Repository::open_archive`].
    pub fn open_archive_sized(&self, id: &BlobId, size: u64) -> Result<Box<dyn ObjectRead>> {
        self.backend
            .open_sized(ObjectKind::Archive, &layout::archive(id), size)
    }

    /// Removes an archive.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn remove_archive(&self, id: &BlobId) -> Result<()> {
        self.backend
            .remove(ObjectKind::Archive, &layout::archive(id))
    }

    /// Ids of every manifest, and the names in the manifests' namespace that are not ids.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn list_manifests(&self) -> Result<(Vec<BlobId>, Vec<String>)> {
        let mut ids = Vec::new();
        let mut odd = Vec::new();
        for o in self.backend.list(ObjectKind::Snapshot)? {
            match layout::manifest_id(&o.name) {
                Some(id) => ids.push(id),
                None if layout::is_manifest_name(&o.name) => odd.push(o.name),
                None => {}
            }
        }
        ids.sort();
        odd.sort();
        Ok((ids, odd))
    }

    /// Reads one manifest header.
    ///
    /// # Errors
    /// I/O and service errors; a missing manifest ([`Error::is_not_found`]).
    pub fn read_manifest(&self, id: &BlobId) -> Result<Vec<u8>> {
        self.backend
            .read(ObjectKind::Snapshot, &layout::manifest(id))
    }

    /// Writes one manifest header (the snapshot exists from then on); durable.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn write_manifest(&self, id: &BlobId, json: &[u8]) -> Result<()> {
        self.backend
            .write(ObjectKind::Snapshot, &layout::manifest(id), json)
    }

    /// Removes one manifest (forgets the snapshot; a missing one is not an error).
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn remove_manifest(&self, id: &BlobId) -> Result<()> {
        self.backend
            .remove(ObjectKind::Snapshot, &layout::manifest(id))
    }

    /// Moves an object into `damaged/` (never deletes it) under a name that says where it came
    /// from. Returns where it went, relative to the repository.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn set_aside(&self, kind: ObjectKind, name: &str) -> Result<String> {
        let taken: std::collections::HashSet<String> = self
            .backend
            .list(ObjectKind::Damaged)?
            .into_iter()
            .map(|o| o.name)
            .collect();
        let path = kind.path_of(name);
        let dest = (0..)
            .map(|n| layout::set_aside(&path, n))
            .find(|n| !taken.contains(n))
            .expect("some numbered name is free");
        self.backend
            .rename((kind, name), (ObjectKind::Damaged, &dest))?;
        Ok(ObjectKind::Damaged.path_of(&dest))
    }

    /// Objects (and total bytes) of one kind.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn usage(&self, kind: ObjectKind) -> Result<u64> {
        Ok(self.backend.list(kind)?.iter().map(|o| o.size).sum())
    }

    /// Takes the repository lock, waiting up to `wait` while another process holds it.
    /// `on_wait` is called once with a plain-words description of the holder.
    ///
    /// # Errors
    /// [`Error::Locked`] when the wait ran out.
    pub fn lock(
        &self,
        kind: LockKind,
        command: &str,
        wait: std::time::Duration,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn LockGuard>> {
        self.backend.lock(kind, command, wait, on_wait)
    }
}
