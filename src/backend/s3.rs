//! S3-compatible object storage (AWS S3, MinIO, Garage, Ceph RGW, Backblaze B2, Cloudflare R2,
//! Wasabi, ...) through opendal's blocking operator over one shared runtime: repository URLs,
//! create-only writes, ranged reads, multipart uploads, retries, and lock objects.
//!
//! Object keys are `PREFIX/<folder>/<name>`, the same names as on disk. S3 has no rename and no
//! append: a rename is a copy then a delete (only damaged objects are ever renamed), and an
//! append (the journal) is a read, then a write conditional on the object being unchanged.

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use opendal::blocking;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ReadOptions, StatOptions, WriteOptions};
use opendal::services::S3;
use opendal::ErrorKind;
use serde::{Deserialize, Serialize};

use super::{Backend, LockGuard, LockKind, ObjectInfo, ObjectKind, ObjectRead, Staged};
use crate::error::{Error, Result};

/// Uploads larger than this go in parts of this size, several at once.
const PART_SIZE: usize = 16 << 20;
/// Parts in flight at once for one upload.
const PARTS_AT_ONCE: usize = 4;
/// How long a lock object stays valid without a refresh.
pub const LOCK_TTL: Duration = Duration::from_secs(30 * 60);
/// How often a held lock object is rewritten with a later expiry.
const LOCK_REFRESH: Duration = Duration::from_secs(5 * 60);

/// Where an S3 repository is: endpoint, bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `https://host[:port]`; `None` for the service's default (AWS, or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses restic's spellings: `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` (also `http://`),
    /// `s3:HOST/BUCKET[/PREFIX]` (https), and `s3://BUCKET[/PREFIX]` with the endpoint from
    /// `AWS_ENDPOINT_URL` (or the AWS default).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the URL and what is wrong with it.
    pub fn parse(url: &str) -> Result<S3Location> {
        let bad = |why: &str| Error::Invalid(format!("repository URL {url:?}: {why}"));
        let (endpoint, path) = if let Some(rest) = url.strip_prefix("s3://") {
            let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
                .filter(|e| !e.is_empty())
                .map(|e| e.trim_end_matches('/').to_string());
            (endpoint, rest)
        } else if let Some(rest) = url.strip_prefix("s3:") {
            let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
                ("https", r)
            } else if let Some(r) = rest.strip_prefix("http://") {
                ("http", r)
            } else if rest.contains("://") {
                return Err(bad("the endpoint must be http:// or https://"));
            } else {
                ("https", rest)
            };
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.is_empty() {
                return Err(bad("no host"));
            }
            (Some(format!("{scheme}://{host}")), path)
        } else {
            return Err(bad("not an s3: URL"));
        };
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad(
                "no bucket (s3:https://HOST/BUCKET/PREFIX or s3://BUCKET/PREFIX)",
            ));
        }
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid_bucket {
            return Err(bad(&format!(
                "{bucket:?} is not a valid bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..")
            || prefix.contains("//")
            || prefix.contains('\\')
        {
            return Err(bad("the prefix has empty, '.' or '..' parts"));
        }
        Ok(S3Location {
            endpoint,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The location in restic's spelling.
    pub fn url(&self) -> String {
        let tail = if self.prefix.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{}", self.bucket, self.prefix)
        };
        match &self.endpoint {
            Some(e) => format!("s3:{e}/{tail}"),
            None => format!("s3://{tail}"),
        }
    }
}

/// Requests in flight at once for commands that read many objects: `CACHEVAULT_S3_CONNECTIONS`,
/// default 8.
fn connections() -> usize {
    std::env::var("CACHEVAULT_S3_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(8)
        .min(64)
}

/// The one runtime every S3 backend's requests run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        opendal::install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cachevault-s3")
            .enable_all()
            .build()
            .expect("a runtime for S3 requests")
    })
}

/// Whether the server honours create-only writes: not yet probed, yes, no.
const PROBE_UNKNOWN: u8 = 0;
const PROBE_YES: u8 = 1;
const PROBE_NO: u8 = 2;

/// A repository in an S3 bucket.
#[derive(Debug)]
pub struct S3Backend {
    location: S3Location,
    op: blocking::Operator,
    create_only: AtomicU8,
    lock_seal: std::sync::OnceLock<std::sync::Arc<dyn super::LockSeal>>,
}

impl S3Backend {
    /// Connects to the repository at `url` (no request is sent yet). Credentials and region
    /// come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION` and the shared credentials file.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed URL or configuration.
    pub fn open(url: &str) -> Result<S3Backend> {
        let location = S3Location::parse(url)?;
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into());
        let mut b = S3::default()
            .bucket(&location.bucket)
            .root(&format!("/{}", location.prefix))
            .region(&region);
        if let Some(e) = &location.endpoint {
            b = b.endpoint(e);
        }
        let retries: usize = std::env::var("CACHEVAULT_S3_RETRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6);
        let invalid = |e: opendal::Error| Error::Invalid(format!("repository {url:?}: {e}"));
        let _rt = runtime().enter();
        let op = opendal::Operator::new(b)
            .map_err(invalid)?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(60)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(retries)
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_factor(2.0)
                    .with_jitter(),
            );
        let op = blocking::Operator::new(op).map_err(invalid)?;
        Ok(S3Backend {
            location,
            op,
            create_only: AtomicU8::new(PROBE_UNKNOWN),
            lock_seal: std::sync::OnceLock::new(),
        })
    }

    fn key(kind: ObjectKind, name: &str) -> String {
        kind.path_of(name)
    }

    fn err(&self, kind: ObjectKind, name: &str, e: opendal::Error) -> Error {
        storage_error(self.describe(kind, name), e)
    }

    /// Whether create-only writes are honoured, probed once per process: an object written
    /// twice with `If-None-Match: *` must be refused the second time.
    pub fn create_only_writes(&self) -> Result<bool> {
        match self.create_only.load(Ordering::Relaxed) {
            PROBE_YES => return Ok(true),
            PROBE_NO => return Ok(false),
            _ => {}
        }
        let name = format!("probe-{}.tmp", unique());
        let key = Self::key(ObjectKind::Lock, &name);
        let once = WriteOptions {
            if_not_exists: true,
            ..Default::default()
        };
        self.op
            .write_options(&key, b"1".to_vec(), once.clone())
            .map_err(|e| self.err(ObjectKind::Lock, &name, e))?;
        let honoured = matches!(
            self.op.write_options(&key, b"2".to_vec(), once),
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch
        );
        let _ = self.op.delete(&key);
        self.create_only.store(
            if honoured { PROBE_YES } else { PROBE_NO },
            Ordering::Relaxed,
        );
        Ok(honoured)
    }

    /// Content-addressed objects (same name, same bytes) are written create-only: a second
    /// writer of the same object, or a damaged one, never replaces what is there.
    fn create_only_kind(kind: ObjectKind) -> bool {
        matches!(
            kind,
            ObjectKind::Archive | ObjectKind::Index | ObjectKind::Snapshot
        )
    }

    fn put(&self, kind: ObjectKind, name: &str, data: Vec<u8>) -> Result<()> {
        let create_only = Self::create_only_kind(kind) && self.create_only_writes()?;
        let opts = WriteOptions {
            if_not_exists: create_only,
            ..Default::default()
        };
        match self.op.write_options(&Self::key(kind, name), data, opts) {
            Ok(_) => Ok(()),
            // Already there: the same name holds the same content.
            Err(e) if create_only && e.kind() == ErrorKind::ConditionNotMatch => Ok(()),
            Err(e) => Err(self.err(kind, name, e)),
        }
    }

    /// Every lock object, parsed; those that do not parse are returned as `None`.
    fn lock_objects(&self) -> Result<Vec<(String, Option<LockObject>)>> {
        let mut out = Vec::new();
        for o in self.list(ObjectKind::Lock)? {
            if !o.name.ends_with(".json") {
                continue;
            }
            let parsed = match self.read(ObjectKind::Lock, &o.name) {
                Ok(b) => super::unseal_lock(self.lock_seal.get(), &b)
                    .and_then(|b| serde_json::from_slice::<LockObject>(&b).ok()),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            out.push((o.name, parsed));
        }
        Ok(out)
    }

    /// Removes lock objects past their expiry (or unreadable), or every one with `all`;
    /// returns what each was, in words.
    ///
    /// # Errors
    /// Service errors.
    pub fn unlock(&self, all: bool, now: DateTime<Utc>) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for (name, lock) in self.lock_objects()? {
            let stale = lock.as_ref().is_none_or(|l| l.is_stale(now));
            if all || stale {
                self.remove(ObjectKind::Lock, &name)?;
                removed.push(match lock {
                    Some(l) => l.describe(now),
                    None => format!("{name} (unreadable)"),
                });
            }
        }
        Ok(removed)
    }
}

/// A storage error in words: the object and the service's answer, without request headers.
fn storage_error(object: String, e: opendal::Error) -> Error {
    let not_found = e.kind() == ErrorKind::NotFound;
    let mut message = format!("{}: {}", e.kind(), e.message());
    let full = e.to_string();
    // The service's own code and message (S3Error { code, message }) close the display.
    if let Some(i) = full.rfind("S3Error {") {
        message = format!("{message} ({})", full[i..].trim());
    } else if let Some(i) = full.rfind("=> ") {
        message = format!("{message} ({})", full[i + 3..].trim());
    }
    Error::Storage {
        object,
        message,
        not_found,
    }
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?}{}{}{}",
        std::time::SystemTime::now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        crate::fsutil::hostname()
    );
    crate::id::BlobId::of(seed.as_bytes()).to_hex()[..24].to_string()
}

/// Bytes fetched per range request at least: readers walk an archive's frames front to back,
/// so one request serves many frames instead of one round trip each.
const READ_AHEAD: u64 = 1 << 20;

struct S3Object {
    op: blocking::Operator,
    key: String,
    what: String,
    len: u64,
    /// The last range fetched: its offset and bytes.
    window: Option<(u64, Vec<u8>)>,
}

impl ObjectRead for S3Object {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|e| *e <= self.len);
        let Some(end) = end else {
            return Err(Error::corrupt(format!(
                "{}: {len} bytes at offset {offset} lie beyond its end",
                self.what
            )));
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        if let Some((start, data)) = &self.window {
            if offset >= *start && end <= start + data.len() as u64 {
                let from = (offset - start) as usize;
                return Ok(data[from..from + len as usize].to_vec());
            }
        }
        let fetch_end = end.max(offset.saturating_add(READ_AHEAD)).min(self.len);
        self.fetch(offset, fetch_end)?;
        let (_, data) = self.window.as_ref().expect("just fetched");
        Ok(data[..len as usize].to_vec())
    }

    fn prefetch(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return Ok(());
        }
        if let Some((start, data)) = &self.window {
            if offset >= *start && end <= start + data.len() as u64 {
                return Ok(());
            }
        }
        self.fetch(offset, end)
    }
}

impl S3Object {
    /// Fetches `offset..end` into the window.
    fn fetch(&mut self, offset: u64, end: u64) -> Result<()> {
        let buf = self
            .op
            .read_options(
                &self.key,
                ReadOptions {
                    range: (offset..end).into(),
                    ..Default::default()
                },
            )
            .map_err(|e| storage_error(self.what.clone(), e))?;
        let data = buf.to_vec();
        if data.len() as u64 != end - offset {
            // Shorter than its index says: the object is not what was written.
            return Err(Error::corrupt(format!(
                "{}: asked for {} bytes at offset {offset}, got {}",
                self.what,
                end - offset,
                data.len()
            )));
        }
        self.window = Some((offset, data));
        Ok(())
    }
}

/// A lock object: who holds the repository, how, and until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockObject {
    /// The holder's host.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// The command holding it.
    pub command: String,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// When it was taken.
    pub since: DateTime<Utc>,
    /// When it stops counting unless refreshed.
    pub expires: DateTime<Utc>,
}

impl LockObject {
    /// Whether the lock no longer counts: past its expiry, or held by a process of this
    /// host that is gone (killed before it could remove its lock object).
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.expires <= now
            || (self.host == crate::fsutil::hostname()
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }

    fn describe(&self, now: DateTime<Utc>) -> String {
        let state = if self.expires <= now {
            format!(
                "stale since {}",
                self.expires.format("%Y-%m-%d %H:%M:%S UTC")
            )
        } else if self.is_stale(now) {
            "stale: its process is gone".to_string()
        } else {
            format!("until {}", self.expires.format("%Y-%m-%d %H:%M:%S UTC"))
        };
        format!(
            "{} lock of `{}` (pid {} on {}, since {}, {state})",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.command,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
        )
    }
}

/// A held lock object, refreshed by a thread until dropped; dropping removes it.
#[derive(Debug)]
struct S3Lock {
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard for S3Lock {}

impl Drop for S3Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }
}

impl Backend for S3Backend {
    fn parallel_reads(&self) -> usize {
        connections()
    }

    fn location(&self) -> String {
        self.location.url()
    }

    fn create(&self) -> Result<()> {
        let entries = self
            .op
            .list("")
            .map_err(|e| storage_error(self.location(), e))?;
        if entries
            .iter()
            .any(|e| !e.path().is_empty() && e.path() != "/")
        {
            return Err(Error::AlreadyExists(self.location().into()));
        }
        // Learn now whether the server keeps create-only writes (and that we may write).
        self.create_only_writes()?;
        Ok(())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let folder = kind.folder();
        let dir = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        let entries = self
            .op
            .list(&dir)
            .map_err(|e| storage_error(self.describe(kind, ""), e))?;
        let mut out = Vec::new();
        for e in entries {
            let path = e.path();
            if path.ends_with('/') {
                continue;
            }
            let name = path.strip_prefix(&dir).unwrap_or(path).to_string();
            if name.is_empty() || name.contains('/') {
                continue;
            }
            if folder.is_empty() && (kind == ObjectKind::Config) != (name == super::CONFIG_NAME) {
                continue;
            }
            // Probes of create-only writes are not lock objects.
            if kind == ObjectKind::Lock && name.ends_with(".tmp") {
                continue;
            }
            out.push(ObjectInfo {
                name,
                size: e.metadata().content_length(),
            });
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.op
            .read(&Self::key(kind, name))
            .map(|b| b.to_vec())
            .map_err(|e| self.err(kind, name, e))
    }

    fn open(&self, kind: ObjectKind, name: &str) -> Result<Box<dyn ObjectRead>> {
        let key = Self::key(kind, name);
        let meta = self
            .op
            .stat_options(&key, StatOptions::default())
            .map_err(|e| self.err(kind, name, e))?;
        Ok(Box::new(S3Object {
            op: self.op.clone(),
            key,
            what: self.describe(kind, name),
            len: meta.content_length(),
            window: None,
        }))
    }

    fn open_sized(&self, kind: ObjectKind, name: &str, len: u64) -> Result<Box<dyn ObjectRead>> {
        Ok(Box::new(S3Object {
            op: self.op.clone(),
            key: Self::key(kind, name),
            what: self.describe(kind, name),
            len,
            window: None,
        }))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.put(kind, name, data.to_vec())
    }

    fn stage(&self, kind: ObjectKind) -> Result<Staged> {
        let dir = std::env::temp_dir();
        // A process killed in the middle of an upload leaves its spool file behind, and a
        // later process may be given its pid: such a name is taken, so take the next one.
        let mut tries = 0;
        loop {
            let path = crate::fsutil::temp_path_for(&dir.join("cachevault-upload"));
            match Staged::create(kind, path) {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists && tries < 1000 =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn publish(&self, staged: Staged, name: &str) -> Result<()> {
        let kind = staged.kind;
        let path = staged.into_path();
        let result = (|| {
            let mut f = std::fs::File::open(&path).map_err(Error::io(&path))?;
            let size = f.metadata().map_err(Error::io(&path))?.len();
            if size <= PART_SIZE as u64 {
                let mut data = Vec::with_capacity(size as usize);
                f.read_to_end(&mut data).map_err(Error::io(&path))?;
                return self.put(kind, name, data);
            }
            let create_only = Self::create_only_kind(kind) && self.create_only_writes()?;
            let key = Self::key(kind, name);
            let opts = WriteOptions {
                chunk: Some(PART_SIZE),
                concurrent: PARTS_AT_ONCE,
                if_not_exists: create_only,
                ..Default::default()
            };
            let mut w = self
                .op
                .writer_options(&key, opts)
                .map_err(|e| self.err(kind, name, e))?;
            let mut buf = vec![0u8; PART_SIZE];
            loop {
                let n = read_full(&mut f, &mut buf).map_err(Error::io(&path))?;
                if n == 0 {
                    break;
                }
                // An unfinished upload is dropped unclosed: no object appears (the parts
                // already sent expire by the bucket's multipart lifecycle).
                if let Err(e) = w.write(buf[..n].to_vec()) {
                    return Err(self.err(kind, name, e));
                }
                if crate::cancel::requested().is_some() {
                    return Err(Error::Interrupted {
                        signal: crate::cancel::requested().unwrap_or(15),
                    });
                }
            }
            match w.close() {
                Ok(_) => Ok(()),
                Err(e) if create_only && e.kind() == ErrorKind::ConditionNotMatch => Ok(()),
                Err(e) => Err(self.err(kind, name, e)),
            }
        })();
        let _ = std::fs::remove_file(&path);
        result
    }

    fn append(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        let key = Self::key(kind, name);
        // Read, then write only if nobody wrote in between (ETag); a few tries under races.
        for _ in 0..20 {
            let (mut body, etag) = match self.op.stat(&key) {
                Ok(meta) => {
                    let etag = meta.etag().map(str::to_string);
                    let body = self
                        .op
                        .read(&key)
                        .map_err(|e| self.err(kind, name, e))?
                        .to_vec();
                    (body, etag)
                }
                Err(e) if e.kind() == ErrorKind::NotFound => (Vec::new(), None),
                Err(e) => return Err(self.err(kind, name, e)),
            };
            let new = etag.is_none();
            body.extend_from_slice(data);
            let opts = WriteOptions {
                if_not_exists: new,
                if_match: etag,
                ..Default::default()
            };
            match self.op.write_options(&key, body, opts) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(self.err(kind, name, e)),
            }
        }
        Err(Error::Storage {
            object: self.describe(kind, name),
            message: "kept changing under 20 attempts to append to it".into(),
            not_found: false,
        })
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        match self.op.delete(&Self::key(kind, name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(kind, name, e)),
        }
    }

    fn rename(&self, from: (ObjectKind, &str), to: (ObjectKind, &str)) -> Result<()> {
        let (fk, tk) = (Self::key(from.0, from.1), Self::key(to.0, to.1));
        self.op
            .copy(&fk, &tk)
            .map_err(|e| self.err(from.0, from.1, e))?;
        self.remove(from.0, from.1)
    }

    fn sync(&self, _kind: ObjectKind) -> Result<()> {
        // A PUT that returned is durable.
        Ok(())
    }

    fn lock(
        &self,
        kind: LockKind,
        command: &str,
        wait: Duration,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn LockGuard>> {
        let exclusive = kind == LockKind::Exclusive;
        let name = format!("{}.json", unique());
        let since = Utc::now();
        let template = LockObject {
            host: crate::fsutil::hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            exclusive,
            since,
            expires: since,
        };
        let object = move |now: DateTime<Utc>| LockObject {
            expires: now + chrono::Duration::from_std(LOCK_TTL).unwrap_or_default(),
            ..template.clone()
        };
        let mut waiting = super::lock::Waiting::new(wait);
        let mut warned = std::collections::HashSet::new();
        let mut pause = 50u64;
        loop {
            let now = Utc::now();
            let body = super::seal_lock(
                self.lock_seal.get(),
                serde_json::to_vec(&object(now)).expect("a lock object serialises"),
            );
            self.put(ObjectKind::Lock, &name, body)?;
            let mut holders = Vec::new();
            for (other, lock) in self.lock_objects()? {
                if other == name {
                    continue;
                }
                match lock {
                    Some(l) if !l.is_stale(now) => {
                        if exclusive || l.exclusive {
                            holders.push(l.describe(now));
                        }
                    }
                    stale => {
                        if warned.insert(other.clone()) {
                            on_wait(&format!(
                                "ignoring stale lock {}: {} (`cachevault unlock` removes it)",
                                self.describe(ObjectKind::Lock, &other),
                                stale
                                    .map(|l| l.describe(now))
                                    .unwrap_or_else(|| "unreadable".into())
                            ));
                        }
                    }
                }
            }
            if holders.is_empty() {
                break;
            }
            self.remove(ObjectKind::Lock, &name)?;
            waiting.held_by(&holders.join("; "), on_wait)?;
            // Two takers that saw each other both back off; jitter breaks the tie.
            let jitter = u64::from_str_radix(&unique()[..4], 16).unwrap_or(0) % pause.max(1);
            std::thread::sleep(Duration::from_millis(pause + jitter));
            pause = (pause * 2).min(1000);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let op = self.op.clone();
        let key = Self::key(ObjectKind::Lock, &name);
        let seal = self.lock_seal.get().cloned();
        let refresher = std::thread::Builder::new()
            .name("cachevault-lock".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LOCK_REFRESH)
                {
                    let body = super::seal_lock(
                        seal.as_ref(),
                        serde_json::to_vec(&object(Utc::now())).unwrap_or_default(),
                    );
                    if let Err(e) = op.write(&key, body) {
                        eprintln!("cachevault: warning: refreshing lock object {key}: {e}");
                    }
                }
                let _ = op.delete(&key);
            })
            .map_err(|e| Error::Invalid(format!("starting the lock refresher: {e}")))?;
        Ok(Box::new(S3Lock {
            stop: Some(stop),
            refresher: Some(refresher),
        }))
    }

    fn remove_leftovers(&self, dry_run: bool) -> Result<(usize, u64)> {
        let now = Utc::now();
        let mut n = 0;
        for (name, lock) in self.lock_objects()? {
            if lock.is_none_or(|l| l.is_stale(now)) {
                n += 1;
                if !dry_run {
                    self.remove(ObjectKind::Lock, &name)?;
                }
            }
        }
        Ok((n, 0))
    }

    fn unlock(&self, all: bool) -> Result<Vec<String>> {
        S3Backend::unlock(self, all, Utc::now())
    }

    fn set_lock_seal(&self, seal: std::sync::Arc<dyn super::LockSeal>) {
        let _ = self.lock_seal.set(seal);
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_restic_spells_them() {
        let l = S3Location::parse("s3:http://127.0.0.1:9000/bucket/x/y").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("bucket", "x/y"));
        assert_eq!(l.url(), "s3:http://127.0.0.1:9000/bucket/x/y");
        let l = S3Location::parse("s3:s3.example.com/backups").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(l.prefix, "");
        for bad in [
            "s3:http://host",
            "s3:http://host/",
            "s3:ftp://host/bucket",
            "s3:http:///bucket",
            "s3:http://host/B_ad",
            "s3:http://host/ab",
            "s3:http://host/bucket/../x",
            "s3:http://host/bucket/a//b",
        ] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
