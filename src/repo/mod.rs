//! The repository on disk: init/open, format version, and every path derivation.
//! Other modules ask this one where things live; none of them joins paths themselves.

pub mod lock;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BlobId;

pub use lock::{LockKind, RepoLock};

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

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
    config: RepoConfig,
}

const SUBDIRS: [&str; 5] = ["archives", "index", "snapshots", "journal", "locks"];

/// A repository file that could not be used: a manifest or index that does not parse or
/// verify. It costs only what depends on it; commands name it and go on with the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damaged {
    /// The file, relative to the repository (`snapshots/<id>.json`, `index/<id>.json`).
    pub file: String,
    /// What is wrong with it.
    pub error: String,
}

impl Repository {
    /// Creates a new, empty repository at `root` (which must be absent or empty).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when `root` holds anything; I/O errors.
    pub fn init(root: &Path) -> Result<Repository> {
        if let Ok(mut rd) = std::fs::read_dir(root) {
            if rd.next().is_some() {
                return Err(Error::AlreadyExists(root.to_path_buf()));
            }
        }
        fsutil::create_private_dir(root)?;
        for sub in SUBDIRS {
            fsutil::create_private_dir(&root.join(sub))?;
        }
        let seed = format!(
            "{:?}{}{:?}",
            std::time::SystemTime::now(),
            std::process::id(),
            root
        );
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            id: BlobId::of(seed.as_bytes()).to_hex(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            archive_target_size: 32 << 20,
        };
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        fsutil::write_atomic(&root.join("config.json"), &json)?;
        fsutil::sync_dir(root)?;
        Ok(Repository {
            root: root.to_path_buf(),
            config,
        })
    }

    /// Opens an existing repository, refusing unknown format versions.
    ///
    /// # Errors
    /// [`Error::NotARepository`], [`Error::UnsupportedFormat`], [`Error::Corrupt`] for a
    /// config.json that does not parse.
    pub fn open(root: &Path) -> Result<Repository> {
        let path = root.join("config.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARepository(root.to_path_buf()))
            }
            Err(e) => return Err(Error::io(&path)(e)),
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{} does not parse: {e}", path.display())))?;
        if v.format_version > FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found: v.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let config: RepoConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{} does not parse: {e}", path.display())))?;
        Ok(Repository {
            root: root.to_path_buf(),
            config,
        })
    }

    /// The repository's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository's config.json.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Folder of pack archives.
    pub fn archives_dir(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// Folder of archive indexes.
    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    /// Folder of snapshot manifests.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Folder of the operation journal.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// Folder of lock files.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Path of one archive.
    pub fn archive_path(&self, id: &BlobId) -> PathBuf {
        crate::archive::archive_path(&self.archives_dir(), id)
    }

    /// Path of one archive's index.
    pub fn index_path(&self, id: &BlobId) -> PathBuf {
        self.index_dir().join(format!("{}.json", id.to_hex()))
    }

    /// Path of one snapshot manifest.
    pub fn snapshot_path(&self, id: &BlobId) -> PathBuf {
        self.snapshots_dir().join(format!(
            "{}{}",
            id.to_hex(),
            crate::manifest::MANIFEST_SUFFIX
        ))
    }

    /// Folder where damaged files are moved instead of being deleted (`rebuild-index`,
    /// `repair-snapshots`): their bytes stay for whoever wants to look at them.
    pub fn damaged_dir(&self) -> PathBuf {
        self.root.join("damaged")
    }

    /// Every archive file with its size, by id. Names that are not `<64 hex>.tar.zst` are
    /// not archives and are left out (temp files included).
    ///
    /// # Errors
    /// I/O errors listing the folder.
    pub fn list_archives(&self) -> Result<Vec<(BlobId, u64)>> {
        let dir = self.archives_dir();
        let mut out = Vec::new();
        for name in fsutil::list_names(&dir, ".tar.zst")? {
            let Ok(id) = name.trim_end_matches(".tar.zst").parse::<BlobId>() else {
                continue;
            };
            let path = dir.join(&name);
            match std::fs::metadata(&path) {
                Ok(m) => out.push((id, m.len())),
                // Removed since the listing (a concurrent prune): not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path)(e)),
            }
        }
        Ok(out)
    }

    /// Ids of every index file (`index/<id>.json`).
    ///
    /// # Errors
    /// I/O errors listing the folder.
    pub fn list_indexes(&self) -> Result<Vec<BlobId>> {
        Ok(fsutil::list_names(&self.index_dir(), ".json")?
            .into_iter()
            .filter_map(|n| n.trim_end_matches(".json").parse().ok())
            .collect())
    }

    /// Reads and checks one archive's index.
    ///
    /// # Errors
    /// I/O errors; [`Error::Corrupt`] for an index that does not parse, fails its checks or
    /// describes another archive.
    pub fn read_index(&self, id: &BlobId) -> Result<crate::archive::ArchiveIndex> {
        let path = self.index_path(id);
        let idx = crate::archive::ArchiveIndex::decode(
            &fsutil::read(&path)?,
            &format!("index/{}.json", id.to_hex()),
        )?;
        if idx.archive != *id {
            return Err(Error::corrupt(format!(
                "index/{}.json describes archive {}",
                id.to_hex(),
                idx.archive
            )));
        }
        Ok(idx)
    }

    /// Moves a damaged repository file into `damaged/` (never deletes it), under a name that
    /// says where it came from. Returns the new path.
    ///
    /// # Errors
    /// I/O errors.
    pub fn set_aside(&self, path: &Path) -> Result<PathBuf> {
        let dir = self.damaged_dir();
        fsutil::create_private_dir(&dir)?;
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let flat = rel.to_string_lossy().replace('/', "-");
        let mut dest = dir.join(&flat);
        let mut n = 1;
        while dest.exists() {
            dest = dir.join(format!("{flat}.{n}"));
            n += 1;
        }
        std::fs::rename(path, &dest).map_err(Error::io(path))?;
        fsutil::sync_dir(&dir)?;
        if let Some(parent) = path.parent() {
            fsutil::sync_dir(parent)?;
        }
        Ok(dest)
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
    ) -> Result<RepoLock> {
        RepoLock::acquire(&self.locks_dir(), kind, command, wait, on_wait)
    }
}
