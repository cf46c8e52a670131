//! Encryption at rest: the master key of an encrypted repository, the password-wrapped key
//! files that hold it, the AEAD (AES-256-GCM, or XChaCha20-Poly1305) that seals every object,
//! keyed blob ids, and where passwords come from.
//!
//! A master key is two random 256-bit keys: one seals objects, one keys the blake3 that names
//! blobs and snapshots (equal content still deduplicates; an id says nothing of the content to
//! whoever lacks the key). It is stored only inside key files, each sealing it under a key
//! derived from one password with Argon2id, the parameters recorded in the key file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// How blob and snapshot ids are made in an encrypted repository.
pub const KEYED_IDS: &str = "blake3-keyed";
/// The password hash of key files.
pub const KDF: &str = "argon2id";
/// Key file format version.
pub const KEY_FILE_VERSION: u32 = 1;
/// Nonce length of XChaCha20-Poly1305 (key files always use it).
const XNONCE_LEN: usize = 24;
/// Nonce length of AES-256-GCM.
const GCM_NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Context of the blake3 key derivation that gives each archive its own AES-256-GCM key.
const FRAME_KEY_CONTEXT: &str = "cachevault 2026-11-30 archive frame key v1";

/// The AEADs objects are sealed with, as config.json's `encryption.cipher` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256-GCM (the default): hardware AES and carry-less multiply make it the faster
    /// of the two on any current x86-64 or ARMv8 machine. Each archive seals its frames under
    /// a key of its own, derived from the master key and the archive's random salt, so that
    /// no single key seals more than one archive's frames under random 96-bit nonces.
    Aes256Gcm,
    /// XChaCha20-Poly1305: faster where the CPU has no AES instructions.
    XChaCha20Poly1305,
}

impl Cipher {
    /// The cipher of new repositories.
    pub const DEFAULT: Cipher = Cipher::Aes256Gcm;
    /// Every cipher, for help texts and errors.
    pub const ALL: [Cipher; 2] = [Cipher::Aes256Gcm, Cipher::XChaCha20Poly1305];

    /// The name config.json and `init --cipher` use.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
        }
    }

    /// The cipher called `name`.
    pub fn from_name(name: &str) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Bytes a sealed object adds to what it seals: the nonce before, the tag after.
    pub fn overhead(self) -> usize {
        TAG_LEN
            + match self {
                Cipher::Aes256Gcm => GCM_NONCE_LEN,
                Cipher::XChaCha20Poly1305 => XNONCE_LEN,
            }
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One AEAD key, ready to seal and open.
enum Sealer {
    Aes(Box<ring::aead::LessSafeKey>),
    XChaCha(XChaCha20Poly1305),
}

impl Sealer {
    fn new(cipher: Cipher, key: &[u8; 32]) -> Sealer {
        match cipher {
            Cipher::Aes256Gcm => Sealer::Aes(Box::new(ring::aead::LessSafeKey::new(
                ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key)
                    .expect("a 32-byte key is an AES-256 key"),
            ))),
            Cipher::XChaCha20Poly1305 => Sealer::XChaCha(XChaCha20Poly1305::new(&(*key).into())),
        }
    }

    fn cipher(&self) -> Cipher {
        match self {
            Sealer::Aes(_) => Cipher::Aes256Gcm,
            Sealer::XChaCha(_) => Cipher::XChaCha20Poly1305,
        }
    }

    /// A fresh random nonce, then the ciphertext and its tag.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        match self {
            Sealer::Aes(key) => {
                let nonce = random::<GCM_NONCE_LEN>().expect("the system's random source");
                let mut out = Vec::with_capacity(plain.len() + self.cipher().overhead());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(plain);
                let tag = key
                    .seal_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::from(aad),
                        &mut out[GCM_NONCE_LEN..],
                    )
                    .expect("AES-256-GCM seals any length this program writes");
                out.extend_from_slice(tag.as_ref());
                out
            }
            Sealer::XChaCha(key) => {
                let nonce = random::<XNONCE_LEN>().expect("the system's random source");
                let mut out = Vec::with_capacity(plain.len() + self.cipher().overhead());
                out.extend_from_slice(&nonce);
                let ct = key
                    .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
                    .expect("XChaCha20-Poly1305 seals any length this program writes");
                out.extend_from_slice(&ct);
                out
            }
        }
    }

    /// What [`Sealer::seal`] sealed with the same `aad`, or `None`.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < self.cipher().overhead() {
            return None;
        }
        match self {
            Sealer::Aes(key) => {
                let (nonce, ct) = sealed.split_at(GCM_NONCE_LEN);
                let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut buf = ct.to_vec();
                let len = key
                    .open_in_place(nonce, ring::aead::Aad::from(aad), &mut buf)
                    .ok()?
                    .len();
                buf.truncate(len);
                Some(buf)
            }
            Sealer::XChaCha(key) => {
                let (nonce, ct) = sealed.split_at(XNONCE_LEN);
                key.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
                    .ok()
            }
        }
    }
}

/// The environment variable that makes new key files cheap to open, for test suites only:
/// a key made so falls to a password guesser far sooner.
pub const TEST_KDF_VAR: &str = "CACHEVAULT_INSECURE_TEST_KDF";

/// How blob ids (and snapshot ids) are computed: plain blake3, or blake3 keyed with the
/// repository's id key.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct IdHasher(Option<[u8; 32]>);

impl std::fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "keyed" } else { "plain" })
    }
}

impl IdHasher {
    /// Plain blake3: the ids of an unencrypted repository.
    pub const PLAIN: IdHasher = IdHasher(None);

    /// The id of `data`.
    pub fn of(&self, data: &[u8]) -> BlobId {
        match &self.0 {
            None => BlobId::of(data),
            Some(k) => BlobId::from(blake3::keyed_hash(k, data)),
        }
    }

    /// A streaming hasher giving the same ids as [`IdHasher::of`].
    pub fn hasher(&self) -> blake3::Hasher {
        match &self.0 {
            None => blake3::Hasher::new(),
            Some(k) => blake3::Hasher::new_keyed(k),
        }
    }

    /// Whether ids are keyed.
    pub fn is_keyed(&self) -> bool {
        self.0.is_some()
    }
}

/// The unlocked master key of one repository.
pub struct Crypto {
    sealer: Sealer,
    /// The sealing key, from which AES-256-GCM derives each archive's frame key.
    encrypt: [u8; 32],
    ids: IdHasher,
    /// The key file that opened it (`key list` marks it current; `key remove` refuses it).
    pub key_id: String,
    raw: MasterKey,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crypto(key {})", short(&self.key_id))
    }
}

/// What a key file seals: both keys and the repository they belong to.
#[derive(Serialize, Deserialize, Clone)]
struct MasterKey {
    repository: String,
    encrypt: String,
    ids: String,
}

impl Crypto {
    /// A new random master key for the repository `repository_id`, sealing with `cipher`.
    ///
    /// # Errors
    /// The system's random source failing.
    pub fn generate(repository_id: &str, cipher: Cipher) -> Result<Crypto> {
        let raw = MasterKey {
            repository: repository_id.to_owned(),
            encrypt: hex(&random::<32>()?),
            ids: hex(&random::<32>()?),
        };
        Crypto::from_master(raw, String::new(), cipher)
    }

    fn from_master(raw: MasterKey, key_id: String, cipher: Cipher) -> Result<Crypto> {
        let bad = || Error::corrupt("the master key in the key file is malformed");
        let enc: [u8; 32] = unhex(&raw.encrypt).ok_or_else(bad)?;
        let ids: [u8; 32] = unhex(&raw.ids).ok_or_else(bad)?;
        Ok(Crypto {
            sealer: Sealer::new(cipher, &enc),
            encrypt: enc,
            ids: IdHasher(Some(ids)),
            key_id,
            raw,
        })
    }

    /// The same key, as opened by the key file `key_id`.
    pub fn with_key_id(mut self, key_id: String) -> Crypto {
        self.key_id = key_id;
        self
    }

    /// How ids are made with this key.
    pub fn ids(&self) -> IdHasher {
        self.ids
    }

    /// The AEAD this key seals with.
    pub fn cipher(&self) -> Cipher {
        self.sealer.cipher()
    }

    /// Seals `plain`: a fresh random nonce, then the ciphertext and its tag. `aad` binds the
    /// sealed bytes to where they belong (the kind of object, its name or position): opened
    /// with any other `aad` they fail to authenticate.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.sealer.seal(aad, plain)
    }

    /// Opens what [`Crypto::seal`] made with the same `aad`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming `what` when the bytes were altered, truncated, belong
    /// elsewhere or were sealed with another key.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        opened(self.sealer.open(aad, sealed), sealed, what)
    }

    /// The key that seals the frames of the archive with `salt`: under AES-256-GCM, one of
    /// its own (blake3 `derive_key` of the sealing key and the salt); under
    /// XChaCha20-Poly1305, whose 192-bit random nonces need no such care, the master key.
    pub fn frame_key(&self, salt: &[u8; 16]) -> FrameKey<'_> {
        match self.sealer.cipher() {
            Cipher::XChaCha20Poly1305 => FrameKey(FrameSealer::Master(&self.sealer)),
            cipher => {
                let mut material = self.encrypt.to_vec();
                material.extend_from_slice(salt);
                let key = blake3::derive_key(FRAME_KEY_CONTEXT, &material);
                FrameKey(FrameSealer::Derived(Sealer::new(cipher, &key)))
            }
        }
    }
}

/// The key sealing one archive's frames ([`Crypto::frame_key`]).
pub struct FrameKey<'a>(FrameSealer<'a>);

enum FrameSealer<'a> {
    /// The master key itself.
    Master(&'a Sealer),
    /// A key of the archive's own.
    Derived(Sealer),
}

impl FrameKey<'_> {
    fn sealer(&self) -> &Sealer {
        match &self.0 {
            FrameSealer::Master(s) => s,
            FrameSealer::Derived(s) => s,
        }
    }

    /// As [`Crypto::seal`], for one frame.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.sealer().seal(aad, plain)
    }

    /// As [`Crypto::open`], for one frame.
    ///
    /// # Errors
    /// As [`Crypto::open`].
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        opened(self.sealer().open(aad, sealed), sealed, what)
    }
}

fn opened(plain: Option<Vec<u8>>, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    plain.ok_or_else(|| {
        if sealed.len() < TAG_LEN + GCM_NONCE_LEN {
            Error::corrupt(format!(
                "{what}: {} bytes is too short to be a sealed object",
                sealed.len()
            ))
        } else {
            Error::corrupt(format!(
                "{what} does not authenticate: it was altered or damaged, or belongs elsewhere"
            ))
        }
    })
}

/// Argon2id parameters of one key file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Random salt, base64.
    pub salt: String,
}

impl KdfParams {
    /// Parameters for a new key: 64 MiB, 3 passes and 4 lanes, the second of RFC 9106's two
    /// recommended settings (the lanes run on threads: about 0.3 s of CPU and 0.2 s on two
    /// cores here), or the cheapest Argon2id allows when [`TEST_KDF_VAR`] is set.
    ///
    /// # Errors
    /// The system's random source failing.
    pub fn new_key() -> Result<KdfParams> {
        let cheap = std::env::var_os(TEST_KDF_VAR).is_some_and(|v| !v.is_empty() && v != "0");
        Ok(KdfParams {
            algorithm: KDF.into(),
            memory_kib: if cheap { 64 } else { 64 * 1024 },
            iterations: if cheap { 1 } else { 3 },
            parallelism: if cheap { 1 } else { 4 },
            salt: b64(&random::<16>()?),
        })
    }

    /// The key `password` gives under these parameters. Parameters beyond what any key this
    /// program makes could hold (a hostile key file asking for terabytes) are refused.
    fn derive(&self, password: &[u8], what: &str) -> Result<[u8; 32]> {
        let bad = |why: &str| Error::corrupt(format!("{what}: {why}"));
        if self.algorithm != KDF {
            return Err(bad(&format!("unknown key derivation {:?}", self.algorithm)));
        }
        if self.memory_kib > 4 << 20 || self.iterations > 100 || self.parallelism > 64 {
            return Err(bad("key derivation parameters beyond any sane key"));
        }
        let salt = unb64(&self.salt).ok_or_else(|| bad("the salt is not base64"))?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| bad(&format!("key derivation parameters: {e}")))?;
        let mut out = [0u8; 32];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(password, &salt, &mut out)
            .map_err(|e| bad(&format!("key derivation: {e}")))?;
        Ok(out)
    }
}

/// One key file (`keys/<id>.json`), in clear: who made it, the KDF, and the master key
/// sealed under the password's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// [`KEY_FILE_VERSION`].
    pub version: u32,
    /// When the key was added.
    pub created: DateTime<Utc>,
    /// The host it was added on.
    pub host: String,
    /// The user who added it.
    pub username: String,
    /// How the password becomes a key.
    pub kdf: KdfParams,
    /// The master key, sealed (base64).
    pub data: String,
}

/// The associated data binding a key file's sealed master key to its repository.
fn key_aad(repository_id: &str) -> Vec<u8> {
    let mut aad = b"cachevault key file v1\0".to_vec();
    aad.extend_from_slice(repository_id.as_bytes());
    aad
}

impl KeyFile {
    /// Wraps `master` under `password`; returns the key file's bytes and its id.
    ///
    /// # Errors
    /// The system's random source failing.
    pub fn wrap(master: &Crypto, password: &str) -> Result<(String, Vec<u8>)> {
        let kdf = KdfParams::new_key()?;
        let wrapping = kdf.derive(password.as_bytes(), "new key")?;
        let sealer = XChaCha20Poly1305::new(&wrapping.into());
        let nonce = random::<XNONCE_LEN>()?;
        let plain = serde_json::to_vec(&master.raw).expect("master key serialises");
        let ct = sealer
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &key_aad(&master.raw.repository),
                },
            )
            .expect("sealing a key");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ct);
        let file = KeyFile {
            version: KEY_FILE_VERSION,
            created: Utc::now(),
            host: crate::fsutil::hostname(),
            username: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_default(),
            kdf,
            data: b64(&sealed),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("key file serialises");
        Ok((BlobId::of(&bytes).to_hex(), bytes))
    }

    /// Parses a key file, checking that its name is the hash of its bytes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming `what` for bytes that do not parse or hash to another name.
    pub fn decode(id: &str, bytes: &[u8], what: &str) -> Result<KeyFile> {
        if BlobId::of(bytes).to_hex() != id {
            return Err(Error::corrupt(format!(
                "{what}: its content does not hash to its name (altered or damaged)"
            )));
        }
        let file: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("{what} does not parse: {e}")))?;
        if file.version != KEY_FILE_VERSION {
            return Err(Error::corrupt(format!(
                "{what}: key file version {} is not one this program knows",
                file.version
            )));
        }
        Ok(file)
    }

    /// The master key, if `password` is this key's. `Ok(None)`: another password.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a key file whose parameters or contents are malformed, or whose
    /// master key belongs to another repository.
    pub fn unwrap(
        &self,
        id: &str,
        password: &str,
        repository_id: &str,
        cipher: Cipher,
        what: &str,
    ) -> Result<Option<Crypto>> {
        let wrapping = self.kdf.derive(password.as_bytes(), what)?;
        let sealed = unb64(&self.data)
            .filter(|s| s.len() >= XNONCE_LEN + TAG_LEN)
            .ok_or_else(|| Error::corrupt(format!("{what}: the sealed key is malformed")))?;
        let (nonce, ct) = sealed.split_at(XNONCE_LEN);
        let Ok(plain) = XChaCha20Poly1305::new(&wrapping.into()).decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &key_aad(repository_id),
            },
        ) else {
            return Ok(None);
        };
        let raw: MasterKey = serde_json::from_slice(&plain)
            .map_err(|_| Error::corrupt(format!("{what}: the sealed key is malformed")))?;
        if raw.repository != repository_id {
            return Err(Error::corrupt(format!(
                "{what} belongs to repository {}",
                raw.repository
            )));
        }
        Crypto::from_master(raw, id.to_owned(), cipher).map(Some)
    }
}

/// Where a password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Given as it is (the library's callers).
    Given(String),
    /// The first line of a file.
    File(PathBuf),
    /// The first line a shell command prints.
    Command(String),
    /// An environment variable.
    Env(&'static str),
}

impl PasswordSource {
    /// The password.
    ///
    /// # Errors
    /// [`Error::Password`] naming the file, command or variable that gave none.
    pub fn read(&self) -> Result<String> {
        let first_line = |text: &str| text.lines().next().unwrap_or("").to_owned();
        let pw = match self {
            PasswordSource::Given(p) => p.clone(),
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Password(format!("reading the password file {}: {e}", path.display()))
                })?;
                first_line(&text)
            }
            PasswordSource::Command(cmd) => {
                let out = std::process::Command::new("sh")
                    .args(["-c", cmd])
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| {
                        Error::Password(format!("running the password command {cmd:?}: {e}"))
                    })?;
                if !out.status.success() {
                    return Err(Error::Password(format!(
                        "the password command {cmd:?} failed ({})",
                        out.status
                    )));
                }
                first_line(&String::from_utf8_lossy(&out.stdout))
            }
            PasswordSource::Env(var) => std::env::var(var).unwrap_or_default(),
        };
        if pw.is_empty() {
            return Err(Error::Password(format!(
                "{} gave an empty password",
                self.describe()
            )));
        }
        Ok(pw)
    }

    fn describe(&self) -> String {
        match self {
            PasswordSource::Given(_) => "the caller".into(),
            PasswordSource::File(p) => format!("the password file {}", p.display()),
            PasswordSource::Command(c) => format!("the password command {c:?}"),
            PasswordSource::Env(v) => format!("${v}"),
        }
    }
}

/// Which password a repository is opened with: the repository's own, or (for `copy`) the
/// source repository's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `--repo`, `copy_to` destinations.
    Main,
    /// `copy --from-repo`.
    From,
}

/// The password sources the command line set, by role.
static SOURCES: Mutex<Vec<(Role, PasswordSource)>> = Mutex::new(Vec::new());
/// Master keys this process has unlocked, by repository id: Argon2 runs once per repository
/// and process, however many times it is opened.
static UNLOCKED: Mutex<Option<HashMap<String, Arc<Crypto>>>> = Mutex::new(None);

/// Sets where the password of `role` comes from (the command line's flags).
pub fn set_password_source(role: Role, source: PasswordSource) {
    let mut s = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
    s.retain(|(r, _)| *r != role);
    s.push((role, source));
}

/// The password source for `role`: what was set, else `CACHEVAULT_PASSWORD_FILE`,
/// `CACHEVAULT_PASSWORD_COMMAND`, `CACHEVAULT_PASSWORD` (with `FROM_` after `CACHEVAULT_` for
/// [`Role::From`]).
pub fn password_source(role: Role) -> Option<PasswordSource> {
    let set = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = set.iter().find(|(r, _)| *r == role) {
        return Some(s.clone());
    }
    let (file, cmd, var) = match role {
        Role::Main => (
            "CACHEVAULT_PASSWORD_FILE",
            "CACHEVAULT_PASSWORD_COMMAND",
            "CACHEVAULT_PASSWORD",
        ),
        Role::From => (
            "CACHEVAULT_FROM_PASSWORD_FILE",
            "CACHEVAULT_FROM_PASSWORD_COMMAND",
            "CACHEVAULT_FROM_PASSWORD",
        ),
    };
    let env = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(f) = env(file) {
        return Some(PasswordSource::File(f.into()));
    }
    if let Some(c) = env(cmd) {
        return Some(PasswordSource::Command(c.to_string_lossy().into_owned()));
    }
    env(var).map(|_| PasswordSource::Env(var))
}

/// The master key this process already unlocked for `repository_id`.
pub fn unlocked(repository_id: &str) -> Option<Arc<Crypto>> {
    UNLOCKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(repository_id).cloned())
}

/// Remembers an unlocked master key for the rest of the process.
pub fn remember(repository_id: &str, key: Arc<Crypto>) {
    UNLOCKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(repository_id.to_owned(), key);
}

/// The first 8 characters of a key id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::Invalid(format!("the system's random source failed: {e}")))?;
    Ok(b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Decodes [`b64`].
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Crypto {
        Crypto::generate("repo-under-test", Cipher::DEFAULT).unwrap()
    }

    #[test]
    fn a_key_file_opens_with_its_password_only() {
        std::env::set_var(TEST_KDF_VAR, "1");
        let k = key();
        let (id, bytes) = KeyFile::wrap(&k, "correct horse").unwrap();
        let f = KeyFile::decode(&id, &bytes, "key").unwrap();
        let opened = f
            .unwrap(
                &id,
                "correct horse",
                "repo-under-test",
                Cipher::DEFAULT,
                "key",
            )
            .unwrap()
            .expect("the right password opens it");
        assert_eq!(opened.ids(), k.ids());
        let sealed = k.seal(b"x", b"hello");
        assert_eq!(opened.open(b"x", &sealed, "obj").unwrap(), b"hello");
        assert!(f
            .unwrap(&id, "wrong", "repo-under-test", Cipher::DEFAULT, "key")
            .unwrap()
            .is_none());
        // Bound to its repository.
        assert!(f
            .unwrap(&id, "correct horse", "other", Cipher::DEFAULT, "key")
            .unwrap()
            .is_none());
        // A flipped byte in the file: its name no longer matches.
        let mut bad = bytes.clone();
        let i = bad.len() / 2;
        bad[i] ^= 1;
        assert!(KeyFile::decode(&id, &bad, "key").is_err());
    }

    #[test]
    fn keyed_ids_differ_from_plain_and_between_keys() {
        let (a, b) = (key(), key());
        let data = b"amazon_B0ZKC80M8P.json";
        assert_ne!(a.ids().of(data), BlobId::of(data));
        assert_ne!(a.ids().of(data), b.ids().of(data));
        assert_eq!(a.ids().of(data), a.ids().of(data));
        let mut h = a.ids().hasher();
        h.update(&data[..5]);
        h.update(&data[5..]);
        assert_eq!(BlobId::from(h.finalize()), a.ids().of(data));
    }

    /// Key files made with one lane (as every key was before lanes ran on threads) open as
    /// before: the parameters come from the file, not from this build.
    #[test]
    fn a_one_lane_key_still_opens() {
        let params = KdfParams {
            algorithm: KDF.into(),
            memory_kib: 256,
            iterations: 2,
            parallelism: 1,
            salt: b64(b"0123456789abcdef"),
        };
        let lanes4 = KdfParams {
            parallelism: 4,
            ..params.clone()
        };
        let one = params.derive(b"pw", "key").unwrap();
        assert_eq!(one, params.derive(b"pw", "key").unwrap());
        assert_ne!(one, lanes4.derive(b"pw", "key").unwrap());
    }

    /// Under AES-256-GCM each archive's frames are sealed with a key of their own: a frame
    /// does not open under another salt's key even with the same associated data.
    #[test]
    fn frame_keys_differ_between_archives() {
        for cipher in Cipher::ALL {
            let k = Crypto::generate("repo", cipher).unwrap();
            let (a, b) = (k.frame_key(&[1; 16]), k.frame_key(&[2; 16]));
            let sealed = a.seal(b"frame", b"tar bytes");
            assert_eq!(a.open(b"frame", &sealed, "f").unwrap(), b"tar bytes");
            let other = b.open(b"frame", &sealed, "f");
            match cipher {
                Cipher::Aes256Gcm => assert!(other.is_err()),
                // One key for all frames; the associated data binds them instead.
                Cipher::XChaCha20Poly1305 => assert!(other.is_ok()),
            }
        }
    }

    proptest! {
        #[test]
        fn open_undoes_seal_and_any_flipped_bit_fails(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            bit in any::<usize>(),
            xchacha in any::<bool>(),
        ) {
            let cipher = if xchacha { Cipher::XChaCha20Poly1305 } else { Cipher::Aes256Gcm };
            let k = Crypto::generate("repo-under-test", cipher).unwrap();
            let frames = k.frame_key(&[7; 16]);
            for frame in [false, true] {
                let open = |a: &[u8], s: &[u8]| {
                    if frame { frames.open(a, s, "frame") } else { k.open(a, s, "obj") }
                };
                let sealed = if frame { frames.seal(&aad, &data) } else { k.seal(&aad, &data) };
                prop_assert_eq!(sealed.len(), data.len() + cipher.overhead());
                prop_assert_eq!(open(&aad, &sealed).unwrap(), data.clone());
                let mut bad = sealed.clone();
                let bit = bit % (bad.len() * 8);
                bad[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(open(&aad, &bad).is_err());
                // The same bytes under other associated data (another object, another place).
                let mut other = aad.clone();
                other.push(1);
                prop_assert!(open(&other, &sealed).is_err());
                // Cut short.
                prop_assert!(open(&aad, &sealed[..sealed.len() - 1]).is_err());
            }
        }
    }
}
