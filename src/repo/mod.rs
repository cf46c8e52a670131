//! The repository: init/open, its format version and config, and typed access to its objects
//! (archives, indexes, manifests) through its storage backend. Object names are spelled in
//! [`layout`]; how they are stored is the backend's business.

pub mod layout;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::FrameCodec;
use crate::backend::local::LocalBackend;
use crate::backend::{Backend, LockGuard, ObjectKind, ObjectRead};
use crate::crypto::{Cipher, Crypto, IdHasher, KeyFile, Role};
use crate::error::{Error, Result};
use crate::id::BlobId;

pub use crate::backend::lock::{LockKind, RepoLock};

/// Newest repository format version this build reads; frozen per release, because every
/// repository's config.json records it. See docs/FORMAT.md. Versions 2 and 3 are the
/// encrypted variants (XChaCha20-Poly1305, AES-256-GCM); a plain repository is still written
/// as version 1, which every reader takes.
pub const FORMAT_VERSION: u32 = 3;
/// The format version of a plain (unencrypted) repository.
pub const PLAIN_FORMAT_VERSION: u32 = 1;
/// zstd level of a new repository's frames (recorded in its config; a repository keeps
/// its own). With frames of [`crate::archive::FRAME_TARGET`], level 1 stores the FBA tree
/// about as small as level 3 did with frames half the size, in 0.84x the time.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// config.json's `encryption`: how an encrypted repository's objects are sealed and named.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// The AEAD ([`crate::crypto::Cipher::name`]).
    pub cipher: String,
    /// How blob and snapshot ids are made ([`crate::crypto::KEYED_IDS`]).
    pub ids: String,
    /// The key files' password hash ([`crate::crypto::KDF`]).
    pub kdf: String,
}

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
    /// Present in an encrypted repository (format version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionConfig>,
}

/// One key of an encrypted repository, as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// The key file's id (the blake3 of its bytes).
    pub id: String,
    /// When it was added.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Host it was added on.
    pub host: String,
    /// User who added it.
    pub username: String,
    /// Whether this process opened the repository with it.
    pub current: bool,
}

/// An open repository: its config and the backend its objects live in. Every module reaches
/// the repository's objects through these methods, never through the file system.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: RepoConfig,
    crypto: Option<Arc<Crypto>>,
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
        Repository::init_with(backend, None)
    }

    /// Creates a new, empty encrypted repository in `backend`: a random master key, stored
    /// only in a key file sealed under `password`.
    ///
    /// # Errors
    /// As [`Repository::init`].
    pub fn init_encrypted_in(
        backend: Box<dyn Backend>,
        password: &str,
        cipher: Cipher,
    ) -> Result<Repository> {
        if password.is_empty() {
            return Err(Error::Password("an empty password encrypts nothing".into()));
        }
        Repository::init_with(backend, Some((password, cipher)))
    }

    fn init_with(
        backend: Box<dyn Backend>,
        password: Option<(&str, Cipher)>,
    ) -> Result<Repository> {
        backend.create()?;
        let seed = format!(
            "{:?}{}{}",
            std::time::SystemTime::now(),
            std::process::id(),
            backend.location()
        );
        let mut config = RepoConfig {
            format_version: PLAIN_FORMAT_VERSION,
            id: BlobId::of(seed.as_bytes()).to_hex(),
            chunker: ChunkerParams::default(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            archive_target_size: 32 << 20,
            encryption: None,
        };
        let mut crypto = None;
        if let Some((password, cipher)) = password {
            config.format_version = format_version_of(cipher);
            config.encryption = Some(EncryptionConfig {
                cipher: cipher.name().into(),
                ids: crate::crypto::KEYED_IDS.into(),
                kdf: crate::crypto::KDF.into(),
            });
            let master = Crypto::generate(&config.id, cipher)?;
            let (key_id, bytes) = KeyFile::wrap(&master, password)?;
            // The key before the config: a repository exists once its config does, and an
            // encrypted one is useless without a key.
            backend.write(ObjectKind::Key, &layout::key(&key_id), &bytes)?;
            backend.sync(ObjectKind::Key)?;
            let master = Arc::new(master.with_key_id(key_id));
            crate::crypto::remember(&config.id, master.clone());
            crypto = Some(master);
        }
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        backend.write(ObjectKind::Config, layout::CONFIG, &json)?;
        backend.sync(ObjectKind::Config)?;
        if let Some(c) = &crypto {
            backend.set_lock_seal(Arc::new(LockSealer(c.clone())));
        }
        Ok(Repository {
            backend: Arc::from(backend),
            config,
            crypto,
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
        Repository::open_as(backend, Role::Main)
    }

    /// Opens the existing repository at `location` with the password of `role`.
    ///
    /// # Errors
    /// As [`Repository::open`]; [`Error::Password`] when an encrypted repository's password
    /// is missing or opens no key.
    pub fn open_at_as(location: &str, role: Role) -> Result<Repository> {
        Repository::open_as(crate::backend::open(location)?, role)
    }

    /// Opens the existing repository in `backend` with the password of `role`.
    ///
    /// # Errors
    /// As [`Repository::open_at_as`].
    pub fn open_as(backend: Box<dyn Backend>, role: Role) -> Result<Repository> {
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
        let keys = backend.list(ObjectKind::Key)?;
        let crypto = match &config.encryption {
            None if keys.is_empty() => None,
            // Someone rewrote the config to read as plain: new snapshots would go out in
            // clear. Refused while any key says otherwise.
            None => {
                return Err(Error::corrupt(format!(
                    "{what} says the repository is not encrypted, but it holds key files: the config was altered"
                )))
            }
            Some(enc) => {
                let cipher = Cipher::from_name(&enc.cipher)
                    .filter(|c| format_version_of(*c) == config.format_version);
                let Some(cipher) = cipher.filter(|_| {
                    enc.ids == crate::crypto::KEYED_IDS && enc.kdf == crate::crypto::KDF
                }) else {
                    return Err(Error::corrupt(format!(
                        "{what}: unknown encryption {enc:?} for format version {}",
                        config.format_version
                    )));
                };
                Some(unlock(&*backend, &config.id, cipher, role)?)
            }
        };
        if let Some(c) = &crypto {
            backend.set_lock_seal(Arc::new(LockSealer(c.clone())));
        }
        Ok(Repository {
            backend: Arc::from(backend),
            config,
            crypto,
        })
    }

    /// The master key of an encrypted repository.
    pub fn crypto(&self) -> Option<&Arc<Crypto>> {
        self.crypto.as_ref()
    }

    /// Whether objects are sealed.
    pub fn is_encrypted(&self) -> bool {
        self.crypto.is_some()
    }

    /// How blob and snapshot ids are made: plain blake3, or keyed in an encrypted repository.
    pub fn ids(&self) -> IdHasher {
        self.crypto.as_ref().map_or(IdHasher::PLAIN, |c| c.ids())
    }

    /// How archive frames are stored.
    pub fn frame_codec(&self) -> FrameCodec {
        self.crypto
            .as_ref()
            .map_or_else(FrameCodec::plain, |c| FrameCodec::sealed(c.clone()))
    }

    fn aad(kind: ObjectKind, name: &str) -> Vec<u8> {
        format!("cachevault object v1\0{}", kind.path_of(name)).into_bytes()
    }

    /// Seals a whole object (index, manifest, record, state) for where it goes; a plain
    /// repository stores the bytes as they are.
    pub fn seal<'a>(
        &self,
        kind: ObjectKind,
        name: &str,
        plain: &'a [u8],
    ) -> std::borrow::Cow<'a, [u8]> {
        match &self.crypto {
            // Stored as it is: no copy of a large index or list.
            None => std::borrow::Cow::Borrowed(plain),
            Some(c) => std::borrow::Cow::Owned(c.seal(&Self::aad(kind, name), plain)),
        }
    }

    /// Opens what [`Repository::seal`] made.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the object when it does not authenticate.
    pub fn unseal(&self, kind: ObjectKind, name: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        match &self.crypto {
            None => Ok(stored),
            Some(c) => c.open(&Self::aad(kind, name), &stored, &self.describe(kind, name)),
        }
    }

    /// Reads one whole object and opens it.
    ///
    /// # Errors
    /// I/O and service errors; [`Error::Corrupt`] when it does not authenticate.
    pub fn read_object(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.unseal(kind, name, self.backend.read(kind, name)?)
    }

    /// Seals and writes one whole object atomically.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn write_object(&self, kind: ObjectKind, name: &str, plain: &[u8]) -> Result<()> {
        self.backend
            .write(kind, name, &self.seal(kind, name, plain))
    }

    /// One journal line as stored: the JSON itself, or sealed and base64 in an encrypted
    /// repository (bound to the month's object).
    pub fn seal_line(&self, name: &str, json: &[u8]) -> Vec<u8> {
        match &self.crypto {
            None => json.to_vec(),
            Some(c) => crate::crypto::b64(&c.seal(&Self::aad(ObjectKind::Journal, name), json))
                .into_bytes(),
        }
    }

    /// Opens one stored journal line.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it does not authenticate.
    pub fn unseal_line(&self, name: &str, line: &[u8]) -> Result<Vec<u8>> {
        match &self.crypto {
            None => Ok(line.to_vec()),
            Some(c) => {
                let what = self.describe(ObjectKind::Journal, name);
                let sealed = std::str::from_utf8(line)
                    .ok()
                    .and_then(crate::crypto::unb64)
                    .ok_or_else(|| Error::corrupt(format!("{what}: a line is not base64")))?;
                c.open(&Self::aad(ObjectKind::Journal, name), &sealed, &what)
            }
        }
    }

    /// The keys of an encrypted repository (empty for a plain one).
    ///
    /// # Errors
    /// I/O and service errors; a key file that does not parse.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for o in self.backend.list(ObjectKind::Key)? {
            let Some(id) = layout::key_id(&o.name) else {
                continue;
            };
            let what = self.describe(ObjectKind::Key, &o.name);
            let f = KeyFile::decode(&id, &self.backend.read(ObjectKind::Key, &o.name)?, &what)?;
            out.push(KeyInfo {
                current: self.crypto.as_ref().is_some_and(|c| c.key_id == id),
                id,
                created: f.created,
                host: f.host,
                username: f.username,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Adds a key opening this repository with `password`; returns its id.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a plain repository; I/O and service errors.
    pub fn add_key(&self, password: &str) -> Result<String> {
        let c = self.crypto.as_ref().ok_or_else(|| {
            Error::Invalid("the repository is not encrypted: it has no keys".into())
        })?;
        if password.is_empty() {
            return Err(Error::Password("an empty password encrypts nothing".into()));
        }
        let (id, bytes) = KeyFile::wrap(c, password)?;
        self.backend
            .write(ObjectKind::Key, &layout::key(&id), &bytes)?;
        self.backend.sync(ObjectKind::Key)?;
        Ok(id)
    }

    /// Removes the key `id` (a unique prefix will do); refuses the key in use and the last.
    ///
    /// # Errors
    /// [`Error::Invalid`] for the key in use, the last key, or no such key.
    pub fn remove_key(&self, id: &str) -> Result<String> {
        let keys = self.keys()?;
        let matching: Vec<&KeyInfo> = keys.iter().filter(|k| k.id.starts_with(id)).collect();
        let key = match matching.as_slice() {
            [k] => *k,
            [] => return Err(Error::Invalid(format!("no key {id:?} in this repository"))),
            _ => return Err(Error::Invalid(format!("key prefix {id:?} is ambiguous"))),
        };
        if key.current {
            return Err(Error::Invalid(format!(
                "key {} is the one in use: open the repository with another key's password to remove it",
                crate::crypto::short(&key.id)
            )));
        }
        if keys.len() == 1 {
            return Err(Error::Invalid("refusing to remove the last key".into()));
        }
        self.backend
            .remove(ObjectKind::Key, &layout::key(&key.id))?;
        self.backend.sync(ObjectKind::Key)?;
        Ok(key.id.clone())
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
            &self.read_object(ObjectKind::Index, &name)?,
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
        let name = layout::index(&idx.archive);
        if self.crypto.is_some() {
            // Sealed whole: the text is needed in one piece.
            let json = serde_json::to_vec(idx).expect("index serialises");
            return self.write_object(ObjectKind::Index, &name, &json);
        }
        // Written as it is encoded: an index of 31k blobs is 3.6 MB of text, which was
        // held whole at the moment a snapshot's memory peaked (an archive being closed).
        let mut staged = self.backend.stage(ObjectKind::Index)?;
        let path = staged.path.clone();
        let mut out = std::io::BufWriter::with_capacity(64 << 10, staged.file());
        serde_json::to_writer(&mut out, idx)
            .map_err(std::io::Error::from)
            .and_then(|()| std::io::Write::flush(&mut out))
            .map_err(Error::io(&path))?;
        drop(out);
        self.backend.publish(staged, &name)
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
        self.read_object(ObjectKind::Snapshot, &layout::manifest(id))
    }

    /// Writes one manifest header (the snapshot exists from then on); durable.
    ///
    /// # Errors
    /// I/O and service errors.
    pub fn write_manifest(&self, id: &BlobId, json: &[u8]) -> Result<()> {
        self.write_object(ObjectKind::Snapshot, &layout::manifest(id), json)
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

/// The master key of the encrypted repository `repository_id`: one this process already
/// unlocked, else the first key file the password of `role` opens.
/// Seals what lock objects and holder files say with the repository's master key.
#[derive(Debug)]
struct LockSealer(Arc<Crypto>);

const LOCK_AAD: &[u8] = b"cachevault lock v1";

impl crate::backend::LockSeal for LockSealer {
    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.0.seal(LOCK_AAD, plain)
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open(LOCK_AAD, sealed, "lock").ok()
    }
}

/// The format version of a repository sealed with `cipher`.
fn format_version_of(cipher: Cipher) -> u32 {
    match cipher {
        Cipher::XChaCha20Poly1305 => 2,
        Cipher::Aes256Gcm => 3,
    }
}

fn unlock(
    backend: &dyn Backend,
    repository_id: &str,
    cipher: Cipher,
    role: Role,
) -> Result<Arc<Crypto>> {
    if let Some(c) = crate::crypto::unlocked(repository_id) {
        return Ok(c);
    }
    let location = backend.location();
    let source = crate::crypto::password_source(role).ok_or_else(|| {
        Error::Password(format!(
            "{location} is encrypted: give its password with CACHEVAULT_PASSWORD, --password-file FILE or --password-command CMD{}",
            if role == Role::From {
                " (for --from-repo: CACHEVAULT_FROM_PASSWORD, --from-password-file or --from-password-command)"
            } else {
                ""
            }
        ))
    })?;
    let password = source.read()?;
    let mut damaged = Vec::new();
    for o in backend.list(ObjectKind::Key)? {
        let Some(id) = layout::key_id(&o.name) else {
            continue;
        };
        let what = backend.describe(ObjectKind::Key, &o.name);
        let opened = backend
            .read(ObjectKind::Key, &o.name)
            .and_then(|bytes| KeyFile::decode(&id, &bytes, &what))
            .and_then(|f| f.unwrap(&id, &password, repository_id, cipher, &what));
        match opened {
            Ok(Some(c)) => {
                let c = Arc::new(c);
                crate::crypto::remember(repository_id, c.clone());
                return Ok(c);
            }
            Ok(None) => {}
            Err(e) if e.is_corruption() => damaged.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if !damaged.is_empty() {
        return Err(Error::corrupt(format!(
            "no key of {location} opens with this password, and some key files are damaged: {}",
            damaged.join("; ")
        )));
    }
    Err(Error::Password(format!(
        "wrong password: no key of {location} opens with it"
    )))
}
