//! Snapshot manifests: the stored JSON types, their encoding (a small JSON header named by its
//! blake3, whose entries live as JSON Lines in content-defined blobs, whole or as the changes
//! to an earlier whole list) and the safety checks every decoded manifest passes.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Manifest version written by this build (docs/FORMAT.md). Version 2 added `kind`; version 3
/// added `changes` (an entry list stored as the changes to an earlier one) and entry lines
/// that leave out `blobs` when the file is its one blob, named by its hash. Readers take
/// version 1 manifests too, deriving their kind from their tags.
pub const MANIFEST_VERSION: u32 = 3;
/// File suffix of manifests in `snapshots/`.
pub const MANIFEST_SUFFIX: &str = ".json";
/// FastCDC sizes (min, avg, max) for cutting the entry list into blobs; frozen for format v1,
/// because changing them would stop consecutive snapshots sharing their tree blobs.
pub const TREE_CHUNKS: (u32, u32, u32) = (16 << 10, 64 << 10, 256 << 10);
/// A manifest larger than this once decompressed is refused as hostile (4 GiB).
const MAX_MANIFEST_BYTES: usize = 4 << 30;

/// A path relative to the snapshot root, `/`-separated, kept as raw bytes so that names
/// which are not UTF-8 survive exactly. JSON: a string, or `{"bytes": "<hex>"}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(pub Vec<u8>);

impl RelPath {
    /// The path as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as an OS path (exact bytes).
    pub fn to_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }

    /// Lossy text, for messages and tables.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// Components split on `/`.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/')
    }

    /// Number of `/`-separated components (0 for the empty path).
    pub fn depth(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            self.components().count()
        }
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        self.0.rsplit(|&b| b == b'/').next().unwrap_or_default()
    }

    /// Whether this path equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &RelPath) -> bool {
        prefix.0.is_empty()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0) && self.0.get(prefix.0.len()) == Some(&b'/'))
    }

    /// Refuses anything that could leave the restore target: empty, absolute, `.`/`..`
    /// components, empty components, NUL bytes.
    ///
    /// # Errors
    /// [`Error::UnsafePath`].
    pub fn check_safe(&self) -> Result<()> {
        let reason = if self.0.is_empty() {
            Some("empty path")
        } else if self.0[0] == b'/' {
            Some("absolute path")
        } else if self.0.contains(&0) {
            Some("NUL byte in name")
        } else if self
            .components()
            .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            Some("'.', '..' or empty component")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::UnsafePath {
                path: self.display(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.display())
    }
}

impl From<&str> for RelPath {
    fn from(s: &str) -> Self {
        RelPath(s.as_bytes().to_vec())
    }
}

#[derive(Serialize)]
struct RelPathBytes {
    bytes: String,
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(t) => s.serialize_str(t),
            Err(_) => {
                let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
                RelPathBytes { bytes: hex }.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // A hand-written visitor: serde's untagged enums buffer every value first, and paths
        // are the bulk of a manifest.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RelPath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path string or {\"bytes\": \"<hex>\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<RelPath, E> {
                Ok(RelPath(v.as_bytes().to_vec()))
            }
            fn visit_string<E: serde::de::Error>(
                self,
                v: String,
            ) -> std::result::Result<RelPath, E> {
                Ok(RelPath(v.into_bytes()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RelPath, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key != "bytes" {
                        return Err(serde::de::Error::unknown_field(&key, &["bytes"]));
                    }
                    let hex: std::borrow::Cow<'de, str> = map.next_value()?;
                    if !hex.len().is_multiple_of(2) {
                        return Err(serde::de::Error::custom("odd-length hex path"));
                    }
                    // Byte pairs, not string slices: a multi-byte character must be an
                    // error, not a slice through the middle of a character.
                    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                    let bytes = hex
                        .as_bytes()
                        .chunks_exact(2)
                        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| serde::de::Error::custom("invalid hex in path bytes"))?;
                    out = Some(RelPath(bytes));
                }
                out.ok_or_else(|| serde::de::Error::missing_field("bytes"))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a snapshot is for. `latest`, `--at`, health's last backup and the retention policy
/// mean [`SnapshotKind::Backup`]; the safety kinds hold what an operation was about to
/// replace or remove and expire after `backup_retention_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// A snapshot of a root or PATH taken by `snapshot` or run-due.
    Backup,
    /// What a clear was about to delete or rewrite.
    PreClear,
    /// What a repair was about to overwrite or move.
    PreRepair,
    /// What a restore in place (or a forced undo) was about to overwrite or remove.
    PreRestore,
    /// What `archive_old` moved out of the live tree.
    Archive,
}

impl SnapshotKind {
    /// Every kind, in display order.
    pub const ALL: [SnapshotKind; 5] = [
        SnapshotKind::Backup,
        SnapshotKind::PreClear,
        SnapshotKind::PreRepair,
        SnapshotKind::PreRestore,
        SnapshotKind::Archive,
    ];

    /// The kind's name as written in manifests and accepted by `--kind`.
    pub fn name(&self) -> &'static str {
        match self {
            SnapshotKind::Backup => "backup",
            SnapshotKind::PreClear => "pre-clear",
            SnapshotKind::PreRepair => "pre-repair",
            SnapshotKind::PreRestore => "pre-restore",
            SnapshotKind::Archive => "archive",
        }
    }

    /// Whether this is a safety snapshot (taken before a destructive step, expiring after
    /// `backup_retention_days`).
    pub fn is_safety(&self) -> bool {
        matches!(
            self,
            SnapshotKind::PreClear | SnapshotKind::PreRepair | SnapshotKind::PreRestore
        )
    }

    /// The kind of a version 1 manifest, which recorded it only in its tags.
    pub fn from_tags(tags: &[String]) -> SnapshotKind {
        let has = |t: &str| tags.iter().any(|x| x == t);
        if has("archive") {
            SnapshotKind::Archive
        } else if has("pre-clear") {
            SnapshotKind::PreClear
        } else if has("pre-repair") {
            SnapshotKind::PreRepair
        } else if has("pre-restore") {
            SnapshotKind::PreRestore
        } else {
            SnapshotKind::Backup
        }
    }
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SnapshotKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<SnapshotKind> {
        SnapshotKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown snapshot kind {s:?}; expected one of {}",
                    SnapshotKind::ALL.map(|k| k.name()).join(", ")
                ))
            })
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// The blobs of one entry, in order: inline when there is one (nearly every cache file).
pub type Blobs = SmallVec<[BlobId; 1]>;

/// One file, directory or symlink of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the snapshot root.
    pub path: RelPath,
    /// File, dir or symlink.
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky as found).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files), else 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Inode number when read (change detection only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ino: u64,
    /// Status-change time when read, ns (change detection only).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ctime_ns: i64,
    /// blake3 of the whole content (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<BlobId>,
    /// Content blobs in order (files); empty for an empty file.
    #[serde(default, skip_serializing_if = "SmallVec::is_empty")]
    pub blobs: Blobs,
    /// Link target (symlinks), exact bytes. Boxed: one pointer in every entry, since most
    /// entries are files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Box<RelPath>>,
    /// Hard link (files; added in manifest version 2, optional): the path of the first entry
    /// of this file's group of hard links. The entry still carries its own size, hash and
    /// blobs, the same as that entry's, so a reader that ignores `link` restores a copy.
    /// Boxed: one pointer in every entry, since few files have hard links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Box<RelPath>>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Counts recorded with each snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Files not in the parent.
    pub files_new: u64,
    /// Files whose metadata changed since the parent, re-read.
    pub files_changed: u64,
    /// Files taken from the parent without reading.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content in the snapshot.
    pub bytes_total: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Blobs added to the repository.
    pub blobs_added: u64,
    /// Compressed bytes added to the repository.
    pub bytes_added: u64,
    /// Files and bytes per cache type, when the snapshot was taken with a config (added in
    /// manifest version 2; absent otherwise). State files belong to no type.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub types: std::collections::BTreeMap<String, TypeTotals>,
}

/// One cache type's share of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeTotals {
    /// Files of the type.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// When the snapshot was taken (or `--time`), with the local UTC offset.
    pub time: DateTime<FixedOffset>,
    /// What the snapshot is for (added in manifest version 2; version 1 manifests get it
    /// from their tags when decoded, so it is always set on a decoded manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SnapshotKind>,
    /// Host that took it.
    pub hostname: String,
    /// Absolute folder the entry paths are relative to.
    pub root: String,
    /// Absolute paths included (the root itself, or the backed-up type folders).
    pub paths: Vec<String>,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot whose unchanged files were reused.
    #[serde(default)]
    pub parent: Option<BlobId>,
    /// The damaged snapshot this one was repaired from by `repair-snapshots` (manifest
    /// version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_from: Option<BlobId>,
    /// False when files were unreadable or changed during the walk: such a snapshot cannot
    /// authorise deleting anything.
    pub complete: bool,
    /// Problems met while taking it.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Counts.
    pub summary: SnapshotStats,
    /// Where the entry list is stored: the whole list, or with `changes` the list they
    /// apply to (an earlier snapshot's, shared with it).
    pub tree: Tree,
    /// Manifest version 3: the changes that make the entry list from `tree`'s, sorted by
    /// path: [`Change`] lines. Absent when `tree` is the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Tree>,
    /// Entries in walk order; stored in the tree blobs, not in the header.
    #[serde(skip)]
    pub entries: Vec<Entry>,
}

/// The entry list of a snapshot: JSON Lines (one [`Entry`] per line) cut into blobs. The
/// same shape holds a change list ([`Change`] lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Blobs holding the JSON Lines, in order.
    pub blobs: Vec<BlobId>,
    /// blake3 of the whole JSON Lines text.
    pub hash: Option<BlobId>,
    /// Number of lines.
    pub entries: u64,
    /// Length of the JSON Lines text.
    pub size: u64,
}

/// One line of a change list: an entry put in (new, or replacing the entry of its path),
/// or a path taken out. JSON: the entry's own line, or `{"gone": path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The entry at its path.
    Put(Entry),
    /// No entry at this path.
    Gone(RelPath),
}

impl Change {
    /// The path the change is about.
    pub fn path(&self) -> &RelPath {
        match self {
            Change::Put(e) => &e.path,
            Change::Gone(p) => p,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct GoneLine<T> {
    gone: T,
}

/// An entry as a stored line: `blobs` is left out when the file is one blob whose id is
/// its content hash (every file of one chunk in a repository of plain ids), and a reader
/// puts it back ([`restore_blobs`]). A third of an entry line is that id, and it is the
/// part that does not compress.
#[derive(Serialize)]
struct StoredEntry<'a> {
    path: &'a RelPath,
    kind: EntryKind,
    mode: u32,
    mtime_ns: i64,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    ino: u64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    ctime_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: &'a Option<BlobId>,
    #[serde(skip_serializing_if = "<[BlobId]>::is_empty")]
    blobs: &'a [BlobId],
    #[serde(skip_serializing_if = "Option::is_none")]
    target: &'a Option<Box<RelPath>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: &'a Option<Box<RelPath>>,
}

impl<'a> StoredEntry<'a> {
    fn of(e: &'a Entry) -> StoredEntry<'a> {
        let implied = e.size > 0 && e.hash.is_some() && e.blobs.as_slice() == [e.hash.unwrap()];
        StoredEntry {
            path: &e.path,
            kind: e.kind,
            mode: e.mode,
            mtime_ns: e.mtime_ns,
            size: e.size,
            ino: e.ino,
            ctime_ns: e.ctime_ns,
            hash: &e.hash,
            blobs: if implied { &[] } else { &e.blobs },
            target: &e.target,
            link: &e.link,
        }
    }
}

/// Puts back the `blobs` a stored line leaves out: a file with content and a hash but no
/// blob listed is the one blob its hash names. (No writer ever stored a file with content
/// and no blobs: before manifest version 3 such a line was refused as inconsistent.)
fn restore_blobs(e: &mut Entry) {
    if e.kind == EntryKind::File && e.size > 0 && e.blobs.is_empty() {
        if let Some(h) = e.hash {
            e.blobs.push(h);
        }
    }
}

/// A line of the stored text, as [`chunk_lines`] writes it.
pub trait Line: Sized + Send {
    /// Appends the line's JSON (without the newline).
    fn write(&self, out: &mut Vec<u8>);
    /// Parses one line.
    ///
    /// # Errors
    /// Why the line does not parse.
    fn parse(line: &[u8]) -> std::result::Result<Self, String>;
    /// What a list of such lines is called in messages.
    const LIST: &'static str;
    /// What one line is called in messages.
    const ITEM: &'static str;
}

impl Line for Entry {
    fn write(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &StoredEntry::of(self)).expect("entry serialises");
    }
    fn parse(line: &[u8]) -> std::result::Result<Self, String> {
        let mut e: Entry = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        restore_blobs(&mut e);
        Ok(e)
    }
    const LIST: &'static str = "entry list";
    const ITEM: &'static str = "entry";
}

impl Line for Change {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Change::Put(e) => e.write(out),
            Change::Gone(p) => {
                serde_json::to_writer(out, &GoneLine { gone: p }).expect("path serialises")
            }
        }
    }
    fn parse(line: &[u8]) -> std::result::Result<Self, String> {
        if line.starts_with(b"{\"gone\":") {
            let g: GoneLine<RelPath> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            Ok(Change::Gone(g.gone))
        } else {
            Entry::parse(line).map(Change::Put)
        }
    }
    const LIST: &'static str = "change list";
    const ITEM: &'static str = "change";
}

/// Encodes `lines` (entries or changes) as JSON Lines and cuts the text into content-defined
/// chunks ([`TREE_CHUNKS`]) handed to `chunk` in order, without ever holding the whole text:
/// the cuts are exactly those of FastCDC over the whole text (a chunk is cut only once at least
/// the maximum chunk size follows its start, so what comes later cannot move its end).
/// Returns the blake3 hash and the length of the text.
///
/// # Errors
/// Whatever `chunk` returns.
pub fn chunk_lines<T: Line>(
    lines: &[T],
    chunk: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<(BlobId, u64)> {
    let mut chunker = LineChunker::default();
    for l in lines {
        chunker.push(l, chunk)?;
    }
    chunker.finish(chunk)
}

/// [`chunk_lines`] a line at a time, for a list that is never whole in memory: the same
/// text, the same cuts.
pub struct LineChunker {
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    size: u64,
    lines: u64,
}

impl Default for LineChunker {
    fn default() -> Self {
        LineChunker {
            buf: Vec::with_capacity(4 * TREE_CHUNKS.2 as usize + (64 << 10)),
            hasher: blake3::Hasher::new(),
            size: 0,
            lines: 0,
        }
    }
}

impl LineChunker {
    /// Appends one line; hands `chunk` the chunks it completes.
    ///
    /// # Errors
    /// Whatever `chunk` returns.
    pub fn push<T: Line>(
        &mut self,
        line: &T,
        chunk: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let start = self.buf.len();
        line.write(&mut self.buf);
        self.buf.push(b'\n');
        self.hasher.update(&self.buf[start..]);
        self.size += (self.buf.len() - start) as u64;
        self.lines += 1;
        if self.buf.len() >= 4 * TREE_CHUNKS.2 as usize {
            self.cut(false, chunk)?;
        }
        Ok(())
    }

    /// Lines pushed so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Hands `chunk` the last chunks; returns the blake3 hash and the length of the text.
    ///
    /// # Errors
    /// Whatever `chunk` returns.
    pub fn finish(mut self, chunk: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<(BlobId, u64)> {
        self.cut(true, chunk)?;
        Ok((BlobId::from(self.hasher.finalize()), self.size))
    }

    fn cut(&mut self, last: bool, chunk: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let (min, avg, max) = TREE_CHUNKS;
        let mut done = 0;
        for c in fastcdc::v2020::FastCDC::new(&self.buf, min, avg, max) {
            if !last && c.offset + max as usize > self.buf.len() {
                break;
            }
            chunk(&self.buf[c.offset..c.offset + c.length])?;
            done = c.offset + c.length;
        }
        self.buf.drain(..done);
        Ok(())
    }
}

/// How many lines of `tree` to make room for before decoding it: the header's count, but no
/// more than its blobs can hold (each at most the tree chunker's maximum; a line is well over
/// 32 bytes), or a hostile header could demand any allocation.
fn lines_hint(tree: &Tree) -> u64 {
    let most = (tree.blobs.len() as u64)
        .saturating_mul(u64::from(TREE_CHUNKS.2))
        .min(tree.size);
    tree.entries.min(most / 32)
}

/// Decodes a stored list as its text arrives, blob by blob: lines are parsed (in parallel)
/// a few MiB at a time, so the whole text is never held, only what it decodes to. Nothing
/// decoded counts until [`LineDecoder::end`] has checked the text's hash, length and count.
pub struct LineDecoder<T: Line> {
    what: String,
    hasher: blake3::Hasher,
    size: u64,
    limit: u64,
    pending: Vec<u8>,
    lines: Vec<T>,
    /// Lines decoded so far, taken or not.
    count: u64,
    /// Text parsed at once.
    batch: usize,
}

/// The decoder of a snapshot's entry list.
pub type EntryDecoder = LineDecoder<Entry>;

/// Text parsed at once by [`LineDecoder::new`].
const DECODE_BATCH: usize = 1 << 20;
/// Text parsed at once by [`LineDecoder::streaming`], whose lines are handed on as they
/// come: less held at a time. A batch of 256 KiB is about 1,200 entries (180 KiB); a stream
/// holds four or five of them at once (the text, the batch decoded, the batch merged, two in
/// its channel), which at 1 MiB took 5 MiB.
const STREAM_BATCH: usize = 256 << 10;

impl<T: Line> LineDecoder<T> {
    /// A decoder for the list `tree` describes, of manifest `id`.
    pub fn new(tree: &Tree, id: &BlobId) -> LineDecoder<T> {
        let mut d = LineDecoder::streaming(tree, id);
        d.batch = DECODE_BATCH;
        d.lines
            .reserve(usize::try_from(lines_hint(tree)).unwrap_or(0));
        d
    }

    /// A decoder whose lines are taken as they come ([`LineDecoder::take`]): nothing is
    /// reserved for the whole list.
    pub fn streaming(tree: &Tree, id: &BlobId) -> LineDecoder<T> {
        LineDecoder {
            what: format!("manifest {}", id.short()),
            hasher: blake3::Hasher::new(),
            size: 0,
            limit: tree.size,
            // A batch and the largest blob that can complete it: never grown.
            pending: Vec::with_capacity(STREAM_BATCH + TREE_CHUNKS.2 as usize),
            lines: Vec::new(),
            count: 0,
            batch: STREAM_BATCH,
        }
    }

    /// The lines decoded since the last call, in order. They come from blobs that were
    /// verified on reading; the whole list is only checked by [`LineDecoder::end`].
    pub fn take(&mut self) -> Vec<T> {
        std::mem::take(&mut self.lines)
    }

    /// The next piece of the text.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for text beyond the size the header gives, or a line that does
    /// not parse.
    pub fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(self.mismatch());
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    /// Parses every whole line received so far (the text of verified blobs whose lines
    /// are wanted now, before the rest arrives, say because the rest cannot be read).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a line that does not parse.
    pub fn flush(&mut self) -> Result<()> {
        let end = memchr::memrchr(b'\n', &self.pending).map_or(0, |i| i + 1);
        // Parsed where it lies; the piece of a line after the last newline moves to the
        // front, so the buffer keeps its room.
        let mut pending = std::mem::take(&mut self.pending);
        self.parse(&pending[..end])?;
        pending.drain(..end);
        self.pending = pending;
        Ok(())
    }

    fn mismatch(&self) -> Error {
        Error::corrupt(format!(
            "{}: {} does not match its hash",
            self.what,
            T::LIST
        ))
    }

    fn parse(&mut self, text: &[u8]) -> Result<()> {
        use rayon::prelude::*;
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + (self.batch / 4).max(64 << 10)).min(text.len());
            while end < text.len() && text[end - 1] != b'\n' {
                end += 1;
            }
            pieces.push(&text[start..end]);
            start = end;
        }
        let what = &self.what;
        let parsed: Vec<Vec<T>> = pieces
            .par_iter()
            .map(|piece| {
                // Sized once: a line is over 150 bytes decoded, and a piece holds a thousand.
                let mut lines = Vec::with_capacity(memchr::memchr_iter(b'\n', piece).count());
                let mut start = 0;
                let ends = memchr::memchr_iter(b'\n', piece).chain([piece.len()]);
                for line in ends.map(|end| &piece[std::mem::replace(&mut start, end + 1)..end]) {
                    if line.is_empty() {
                        continue;
                    }
                    lines.push(T::parse(line).map_err(|e| {
                        Error::corrupt(format!("{what}: {} does not parse: {e}", T::ITEM))
                    })?);
                }
                Ok(lines)
            })
            .collect::<Result<_>>()?;
        self.lines.reserve(parsed.iter().map(Vec::len).sum());
        for p in parsed {
            self.count += p.len() as u64;
            self.lines.extend(p);
        }
        Ok(())
    }

    /// Checks the whole text's hash, length and line count against `tree`; returns the
    /// lines not yet taken. Entry-level invariants are left to the caller.
    ///
    /// # Errors
    /// [`Error::Corrupt`].
    pub fn end(mut self, tree: &Tree) -> Result<Vec<T>> {
        let hash = BlobId::from(self.hasher.finalize());
        if Some(hash) != tree.hash || self.size != tree.size {
            return Err(self.mismatch());
        }
        let rest = std::mem::take(&mut self.pending);
        self.parse(&rest)?;
        if self.count != tree.entries {
            return Err(Error::corrupt(format!(
                "{}: {} count mismatch",
                self.what,
                T::ITEM
            )));
        }
        Ok(self.lines)
    }
}

impl LineDecoder<Entry> {
    /// Checks the whole text and the entries, and gives them to `m`.
    ///
    /// # Errors
    /// [`Error::Corrupt`].
    pub fn finish(self, m: &mut Manifest) -> Result<()> {
        let what = self.what.clone();
        m.entries = self.end(&m.tree)?;
        m.check_entries()
            .map_err(|e| Error::corrupt(format!("{what}: {e}")))
    }
}

/// Checks a decoded change list: safe paths, strictly sorted (so each path once).
///
/// # Errors
/// [`Error::Corrupt`] naming manifest `id`.
pub fn check_changes(changes: &[Change], id: &BlobId) -> Result<()> {
    for c in changes {
        c.path()
            .check_safe()
            .map_err(|e| Error::corrupt(format!("manifest {}: change list: {e}", id.short())))?;
    }
    if let Some(w) = changes.windows(2).find(|w| w[0].path() >= w[1].path()) {
        return Err(Error::corrupt(format!(
            "manifest {}: change list is not sorted at {:?}",
            id.short(),
            w[1].path()
        )));
    }
    Ok(())
}

/// Where a [`ChangeMerge`] takes its changes from when they are not held whole: piece by
/// piece in path order, as the merge reaches them, so a long change list is never in memory
/// at once.
pub trait ChangeSource: Send {
    /// The next piece of the list, sorted by path (each piece checked by
    /// [`check_changes`]); empty at the list's end, once the whole list is checked.
    ///
    /// # Errors
    /// The list cannot be read, or does not verify.
    fn more(&mut self) -> Result<Vec<Change>>;
}

/// Applies a sorted change list to a sorted entry list that arrives batch by batch
/// ([`ChangeMerge::apply`], then [`ChangeMerge::finish`]): the entry list of a manifest
/// with `changes`, without holding its base whole, nor its changes when they come from a
/// [`ChangeSource`].
pub struct ChangeMerge<'s> {
    /// The changes held: the whole list, or the piece of it the merge has reached.
    changes: std::sync::Arc<Vec<Change>>,
    next: usize,
    /// Where the pieces after `changes` come from; None once the list is all taken.
    source: Option<Box<dyn ChangeSource + 's>>,
    last: Option<RelPath>,
    what: String,
}

impl<'s> ChangeMerge<'s> {
    /// A merge of `changes` (checked by [`check_changes`]) into the list of manifest `id`.
    pub fn new(changes: std::sync::Arc<Vec<Change>>, id: &BlobId) -> ChangeMerge<'s> {
        ChangeMerge {
            changes,
            next: 0,
            source: None,
            last: None,
            what: format!("manifest {}", id.short()),
        }
    }

    /// A merge of the changes `source` hands out, piece by piece, into the list of manifest
    /// `id`.
    pub fn streamed(source: Box<dyn ChangeSource + 's>, id: &BlobId) -> ChangeMerge<'s> {
        ChangeMerge {
            source: Some(source),
            ..ChangeMerge::new(std::sync::Arc::default(), id)
        }
    }

    /// Makes sure a change is held at `next`, taking the next piece from the source when
    /// the one held is used up; false at the list's end.
    fn fill(&mut self) -> Result<bool> {
        while self.next == self.changes.len() {
            let Some(source) = &mut self.source else {
                return Ok(false);
            };
            let piece = source.more()?;
            if piece.is_empty() {
                self.source = None;
                return Ok(false);
            }
            // Each piece is sorted; the pieces must be in order too.
            if let (Some(a), Some(b)) = (self.changes.last(), piece.first()) {
                if a.path() >= b.path() {
                    return Err(Error::corrupt(format!(
                        "{}: change list is not sorted at {:?}",
                        self.what,
                        b.path()
                    )));
                }
            }
            self.changes = std::sync::Arc::new(piece);
            self.next = 0;
        }
        Ok(true)
    }

    /// The entries of the next batch of the base, with the changes up to its last path
    /// applied.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the base is not strictly sorted: changes could not be
    /// placed in it; the source's errors.
    pub fn apply(&mut self, base: Vec<Entry>) -> Result<Vec<Entry>> {
        self.check_sorted(&base)?;
        let mut out = Vec::with_capacity(base.len());
        self.merge(base, |m| {
            out.push(match m {
                Merged::Base(e) => e,
                Merged::Changed(e) => e.clone(),
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// As [`ChangeMerge::apply`], handing each entry of the result to `f` in order without
    /// copying it: one base read once serves every list built on it.
    ///
    /// # Errors
    /// As [`ChangeMerge::apply`], and whatever `f` returns.
    pub fn apply_with(
        &mut self,
        base: &[Entry],
        f: &mut dyn FnMut(&Entry) -> Result<()>,
    ) -> Result<()> {
        self.check_sorted(base)?;
        self.merge(base, |m| match m {
            Merged::Base(e) => f(e),
            Merged::Changed(e) => f(e),
        })
    }

    fn check_sorted(&mut self, base: &[Entry]) -> Result<()> {
        let unsorted = base.windows(2).any(|w| w[0].path >= w[1].path)
            || matches!((&self.last, base.first()), (Some(l), Some(f)) if *l >= f.path);
        if unsorted {
            return Err(Error::corrupt(format!(
                "{}: the entry list its changes apply to is not sorted",
                self.what
            )));
        }
        if let Some(l) = base.last() {
            self.last = Some(l.path.clone());
        }
        Ok(())
    }

    /// Merges the changes up to the last path of `base` (sorted) into it. A base entry
    /// goes out only once the changes that could replace it are read.
    fn merge<E: std::borrow::Borrow<Entry>>(
        &mut self,
        base: impl IntoIterator<Item = E>,
        mut put: impl FnMut(Merged<'_, E>) -> Result<()>,
    ) -> Result<()> {
        for e in base {
            let path = &e.borrow().path;
            let mut replaced = false;
            while self.fill()? {
                let c = &self.changes[self.next];
                let order = c.path().cmp(path);
                if order == std::cmp::Ordering::Greater {
                    break;
                }
                if let Change::Put(p) = c {
                    put(Merged::Changed(p))?;
                }
                self.next += 1;
                if order == std::cmp::Ordering::Equal {
                    replaced = true;
                    break;
                }
            }
            if !replaced {
                put(Merged::Base(e))?;
            }
        }
        Ok(())
    }

    /// The entries the changes put past the base's last path.
    ///
    /// # Errors
    /// The source's errors.
    pub fn finish(self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.finish_with(&mut |e| {
            out.push(e.clone());
            Ok(())
        })?;
        Ok(out)
    }

    /// As [`ChangeMerge::finish`], handing each entry to `f`.
    ///
    /// # Errors
    /// The source's errors, and whatever `f` returns.
    pub fn finish_with(mut self, f: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()> {
        while self.fill()? {
            if let Change::Put(e) = &self.changes[self.next] {
                f(e)?;
            }
            self.next += 1;
        }
        Ok(())
    }
}

/// One entry of a merged list: the base's own, or one the changes put in.
enum Merged<'c, E> {
    Base(E),
    Changed(&'c Entry),
}

/// The entry-level invariants of an entry list, checked entry by entry as the list streams
/// by, in order, so a list is checked without being held: safe paths, strictly sorted
/// bytewise (so each path once), nothing below a file or symlink, file content consistent
/// with its size, symlinks with targets, and hard links naming an earlier file entry that is
/// not itself a link, with the same size and hash. It holds the file and symlink entries
/// whose descendants could still come (a handful) and 8 bytes per plain file.
#[derive(Default)]
pub struct EntryCheck {
    /// The previous entry's path.
    last: Vec<u8>,
    started: bool,
    /// Paths (with a `/` appended) of file and symlink entries that sort before the current
    /// entry and whose descendants would sort after it. Each lies within the one below it:
    /// `a`, then `a-b` (`-` sorts before `/`).
    not_folders: Vec<Vec<u8>>,
    /// Every file entry without `link` so far, as a key a hard link to it must match.
    files: FileKeys,
}

/// A set of 64-bit keys of file entries (path, size and hash, hashed with this process's
/// random seed, so no list can be made to collide on purpose): a sorted vector and a short
/// unsorted tail merged into it when full. 8 bytes a file, against a hash set's 16 or more.
#[derive(Default)]
struct FileKeys {
    sorted: Vec<u64>,
    tail: Vec<u64>,
    seed: foldhash::fast::RandomState,
}

/// Keys gathered before they are merged into the sorted vector.
const FILE_KEYS_TAIL: usize = 2048;

impl FileKeys {
    fn key(&self, path: &RelPath, size: u64, hash: &Option<BlobId>) -> u64 {
        use std::hash::BuildHasher;
        self.seed
            .hash_one((path.as_bytes(), size, hash.map(|h| h.0)))
    }

    fn insert(&mut self, key: u64) {
        self.tail.push(key);
        if self.tail.len() < FILE_KEYS_TAIL {
            return;
        }
        self.tail.sort_unstable();
        // Merged from the back, in place.
        let (mut i, mut j) = (self.sorted.len(), self.tail.len());
        self.sorted.resize(i + j, 0);
        let mut k = i + j;
        while j > 0 {
            if i > 0 && self.sorted[i - 1] > self.tail[j - 1] {
                self.sorted[k - 1] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k - 1] = self.tail[j - 1];
                j -= 1;
            }
            k -= 1;
        }
        self.tail.clear();
    }

    fn contains(&self, key: u64) -> bool {
        self.sorted.binary_search(&key).is_ok() || self.tail.contains(&key)
    }
}

impl EntryCheck {
    /// A check with room for the plain files of a list of about `entries` entries.
    pub fn with_capacity(entries: usize) -> EntryCheck {
        let mut c = EntryCheck::default();
        c.files.sorted.reserve(entries);
        c
    }

    /// The next entry of the list.
    ///
    /// # Errors
    /// What is wrong with it, naming its path.
    pub fn push(&mut self, e: &Entry) -> std::result::Result<(), String> {
        e.path.check_safe().map_err(|err| err.to_string())?;
        let p = e.path.as_bytes();
        if self.started {
            match self.last.as_slice().cmp(p) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(format!("duplicate entry {:?}", e.path)),
                std::cmp::Ordering::Greater => {
                    return Err(format!("entries are not sorted at {:?}", e.path))
                }
            }
        }
        // `a -> /elsewhere` then `a/x.json`: an entry below a symlink (or a file) could only
        // be restored through it. Every path below `a` sorts after `a/` and before whatever
        // passes `a/` without starting with it.
        while let Some(top) = self.not_folders.last() {
            if p.starts_with(top) {
                return Err(format!(
                    "entry {:?} lies below {:?}, which is not a folder",
                    e.path,
                    String::from_utf8_lossy(&top[..top.len() - 1])
                ));
            }
            if p > top.as_slice() {
                self.not_folders.pop();
            } else {
                break;
            }
        }
        match e.kind {
            EntryKind::File if e.hash.is_none() || (e.size > 0) == e.blobs.is_empty() => {
                return Err(format!("file entry {:?} has inconsistent content", e.path));
            }
            EntryKind::Symlink if e.target.is_none() => {
                return Err(format!("symlink {:?} has no target", e.path));
            }
            _ => {}
        }
        if let Some(link) = e.link.as_deref() {
            if e.kind != EntryKind::File {
                return Err(format!("{:?} has a hard link but is not a file", e.path));
            }
            // Restore then only ever hard-links a file it wrote and verified itself, inside
            // the target, never a folder, a symlink or something outside.
            if !self.files.contains(self.files.key(link, e.size, &e.hash)) {
                return Err(format!(
                    "hard link {:?} names {:?}, which is not an earlier file entry without a link and with the same size and hash",
                    e.path, link
                ));
            }
        } else if e.kind == EntryKind::File {
            let key = self.files.key(&e.path, e.size, &e.hash);
            self.files.insert(key);
        }
        if e.kind != EntryKind::Dir {
            let mut below = p.to_vec();
            below.push(b'/');
            self.not_folders.push(below);
        }
        self.last.clear();
        self.last.extend_from_slice(p);
        self.started = true;
        Ok(())
    }
}

impl Manifest {
    /// Encodes the header: (id, plain JSON bytes). `tree` must already describe the entries.
    /// `ids` makes the snapshot id: the repository's ([`crate::repo::Repository::ids`]).
    pub fn encode_header(&self, ids: crate::crypto::IdHasher) -> (BlobId, Vec<u8>) {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        (ids.of(&json), json)
    }

    /// Encodes the entry list as JSON Lines.
    pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * 200);
        for e in entries {
            e.write(&mut out);
            out.push(b'\n');
        }
        out
    }

    /// Decodes a header, verifying that it hashes to `id`. Entries are left empty.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the manifest, [`Error::UnsupportedFormat`].
    pub fn decode_header(
        ids: crate::crypto::IdHasher,
        id: &BlobId,
        json: &[u8],
    ) -> Result<Manifest> {
        let what = || format!("manifest {}", id.short());
        let actual = ids.of(json);
        if actual != *id {
            return Err(Error::corrupt(format!(
                "{} content hashes to {}",
                what(),
                actual.short()
            )));
        }
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(json)
            .map_err(|e| Error::corrupt(format!("{} does not parse: {e}", what())))?;
        if v.version > MANIFEST_VERSION {
            return Err(Error::UnsupportedFormat {
                found: v.version,
                supported: MANIFEST_VERSION,
            });
        }
        let mut m: Manifest = serde_json::from_slice(json)
            .map_err(|e| Error::corrupt(format!("{} does not parse: {e}", what())))?;
        if m.kind.is_none() {
            m.kind = Some(SnapshotKind::from_tags(&m.tags));
        }
        if m.tree.size > MAX_MANIFEST_BYTES as u64
            || m.changes
                .as_ref()
                .is_some_and(|c| c.size > MAX_MANIFEST_BYTES as u64)
        {
            return Err(Error::corrupt(format!(
                "{}: implausibly large tree",
                what()
            )));
        }
        Ok(m)
    }

    /// Decodes the entry list from its JSON Lines text, verifying its hash, count and that
    /// every entry path is safe and unique and every entry self-consistent.
    ///
    /// # Errors
    /// [`Error::Corrupt`].
    pub fn decode_entries(&mut self, id: &BlobId, text: &[u8]) -> Result<()> {
        if self.changes.is_some() {
            return Err(Error::corrupt(format!(
                "manifest {}: its entry list is stored as changes to another's",
                id.short()
            )));
        }
        let mut d = EntryDecoder::new(&self.tree, id);
        d.feed(text)?;
        d.finish(self)
    }

    /// The entry-level invariants of the entries, as [`LineDecoder::finish`] checks them.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming manifest `id`.
    pub fn verify_entries(&self, id: &BlobId) -> Result<()> {
        self.check_entries()
            .map_err(|e| Error::corrupt(format!("manifest {}: {e}", id.short())))
    }

    /// Entry-level invariants, as [`EntryCheck`] checks them entry by entry.
    fn check_entries(&self) -> std::result::Result<(), String> {
        let mut check = EntryCheck::with_capacity(self.entries.len());
        self.entries.iter().try_for_each(|e| check.push(e))
    }

    /// Every blob the snapshot references: its tree and its files' content.
    pub fn blob_ids(&self) -> impl Iterator<Item = &BlobId> {
        self.tree_blobs()
            .chain(self.entries.iter().flat_map(|e| e.blobs.iter()))
    }

    /// The blobs of its stored entry list: the tree's, then the changes'.
    pub fn tree_blobs(&self) -> impl Iterator<Item = &BlobId> {
        self.tree
            .blobs
            .iter()
            .chain(self.changes.iter().flat_map(|c| c.blobs.iter()))
    }

    /// How many entries to make room for when decoding the list ([`lines_hint`] of both
    /// texts).
    pub fn entries_hint(&self) -> usize {
        let n = lines_hint(&self.tree) + self.changes.as_ref().map_or(0, lines_hint);
        usize::try_from(n).unwrap_or(0)
    }

    /// At most how many entries the list holds, from the header alone.
    pub fn listed_entries(&self) -> u64 {
        self.tree.entries + self.changes.as_ref().map_or(0, |c| c.entries)
    }

    /// What the snapshot is for ([`SnapshotKind::from_tags`] when the manifest predates kinds).
    pub fn kind(&self) -> SnapshotKind {
        self.kind
            .unwrap_or_else(|| SnapshotKind::from_tags(&self.tags))
    }

    /// Number of files.
    pub fn file_count(&self) -> u64 {
        self.summary.files_new + self.summary.files_changed + self.summary.files_unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file_entry(i: usize, pad: usize) -> Entry {
        Entry {
            path: RelPath(
                format!("amazon_cache/amazon_B{i:09}{}.json", "x".repeat(pad)).into_bytes(),
            ),
            kind: EntryKind::File,
            mode: 0o644,
            mtime_ns: 1_700_000_000_000_000_000 + i as i64,
            size: i as u64,
            ino: 0,
            ctime_ns: 0,
            hash: Some(BlobId::of(&i.to_le_bytes())),
            blobs: smallvec::smallvec![BlobId::of(&i.to_le_bytes())],
            target: None,
            link: None,
        }
    }

    /// The streamed cuts are FastCDC's over the whole text, for lists far smaller and far
    /// larger than what is buffered, and the hash and size are the whole text's.
    #[test]
    fn streamed_tree_chunks_match_the_whole_text() {
        for (n, pad) in [(0, 0), (1, 0), (700, 3), (9_000, 0), (25_000, 40)] {
            let entries: Vec<Entry> = (0..n).map(|i| file_entry(i, pad * (i % 7))).collect();
            let text = Manifest::encode_entries(&entries);
            let (min, avg, max) = TREE_CHUNKS;
            let whole: Vec<Vec<u8>> = fastcdc::v2020::FastCDC::new(&text, min, avg, max)
                .map(|c| text[c.offset..c.offset + c.length].to_vec())
                .collect();
            let mut streamed = Vec::new();
            let (hash, size) = chunk_lines(&entries, &mut |c| {
                streamed.push(c.to_vec());
                Ok(())
            })
            .unwrap();
            assert_eq!(streamed, whole, "{n} entries");
            assert_eq!(hash, BlobId::of(&text));
            assert_eq!(size, text.len() as u64);
            assert!(n < 9_000 || whole.len() > 4, "{n}: {} chunks", whole.len());
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "./a",
            "a/\0b",
            "a/",
        ] {
            assert!(RelPath::from(bad).check_safe().is_err(), "{bad:?} accepted");
        }
        for good in [
            "a",
            "a/b.json",
            "Linking map/linking_map.json",
            "..a",
            "a..b",
        ] {
            RelPath::from(good).check_safe().unwrap();
        }
    }

    #[test]
    fn prefix_matches_whole_components() {
        let p = RelPath::from("cached_products/x.json");
        assert!(p.starts_with(&RelPath::from("cached_products")));
        assert!(!p.starts_with(&RelPath::from("cached_prod")));
        assert!(p.starts_with(&RelPath::default()));
    }

    fn line_of<T: Line>(l: &T) -> String {
        let mut out = Vec::new();
        l.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// A file that is one blob named by its hash is stored without `blobs` and read back
    /// whole; every other entry keeps what it has.
    #[test]
    fn one_blob_named_by_its_hash_is_left_out_and_put_back() {
        let one = file_entry(3, 0);
        let line = line_of(&one);
        assert!(!line.contains("\"blobs\""), "{line}");
        assert_eq!(Entry::parse(line.as_bytes()).unwrap(), one);

        // Keyed ids (an encrypted repository): the blob is not the hash.
        let mut keyed = file_entry(4, 0);
        keyed.blobs = smallvec::smallvec![BlobId::of(b"other")];
        let mut two = file_entry(5, 0);
        two.blobs.push(BlobId::of(b"second"));
        let mut empty = file_entry(0, 0);
        empty.blobs.clear();
        empty.hash = Some(BlobId::of(b""));
        let dir = Entry {
            kind: EntryKind::Dir,
            size: 0,
            hash: None,
            blobs: Default::default(),
            ..file_entry(6, 0)
        };
        for e in [keyed, two, empty, dir] {
            let line = line_of(&e);
            assert_eq!(line.contains("\"blobs\""), !e.blobs.is_empty(), "{line}");
            assert_eq!(Entry::parse(line.as_bytes()).unwrap(), e);
        }
        // The whole text decodes to the entries it was made of.
        let entries: Vec<Entry> = (1..50).map(|i| file_entry(i, i % 3)).collect();
        let text = Manifest::encode_entries(&entries);
        let mut m = header(&text, entries.len());
        m.decode_entries(&BlobId::of(b"m"), &text).unwrap();
        assert_eq!(m.entries, entries);
    }

    fn header(text: &[u8], n: usize) -> Manifest {
        let json = serde_json::json!({
            "version": MANIFEST_VERSION, "time": "2026-11-30T12:00:00Z", "hostname": "h",
            "root": "/r", "paths": ["/r"], "complete": true,
            "summary": SnapshotStats::default(),
            "tree": {"blobs": [BlobId::of(text)], "hash": BlobId::of(text),
                     "entries": n, "size": text.len()},
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn change_lines_read_back() {
        let gone = Change::Gone(RelPath::from("amazon_cache/gone.json"));
        let odd = Change::Gone(RelPath(b"caf\xe9.json".to_vec()));
        let put = Change::Put(file_entry(9, 2));
        for c in [gone, odd, put] {
            let line = line_of(&c);
            assert_eq!(Change::parse(line.as_bytes()).unwrap(), c, "{line}");
        }
        assert!(Change::parse(b"{\"gone\": 7}").is_err());
    }

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(|e| e.path.display()).collect()
    }

    fn named(p: &str) -> Entry {
        Entry {
            path: RelPath::from(p),
            ..file_entry(p.len(), 0)
        }
    }

    /// Changes land where their paths sort, across the base's batches: before its first
    /// entry, replacing one, taking one out, between batches, past its last; a path taken
    /// out that the base lacks changes nothing.
    #[test]
    fn changes_merge_into_a_base_that_arrives_in_batches() {
        let base: Vec<Entry> = ["b", "d", "f", "h", "j"].map(named).to_vec();
        let mut replaced = named("d");
        replaced.mode = 0o600;
        let changes = vec![
            Change::Put(named("a")),
            Change::Put(replaced.clone()),
            Change::Gone(RelPath::from("e")),
            Change::Gone(RelPath::from("f")),
            Change::Put(named("g")),
            Change::Put(named("k")),
            Change::Gone(RelPath::from("z")),
        ];
        check_changes(&changes, &BlobId::of(b"m")).unwrap();
        for split in 0..=base.len() {
            let mut m = ChangeMerge::new(std::sync::Arc::new(changes.clone()), &BlobId::of(b"m"));
            let mut out = m.apply(base[..split].to_vec()).unwrap();
            out.extend(m.apply(base[split..].to_vec()).unwrap());
            out.extend(m.finish().unwrap());
            assert_eq!(
                paths(&out),
                ["a", "b", "d", "g", "h", "j", "k"],
                "split {split}"
            );
            assert_eq!(out[2], replaced);
        }
        // A base out of order cannot take changes: damage, not a wrong list.
        let mut m = ChangeMerge::new(std::sync::Arc::new(changes), &BlobId::of(b"m"));
        m.apply(base[2..].to_vec()).unwrap();
        assert!(m.apply(base[..2].to_vec()).unwrap_err().is_corruption());
    }

    /// Changes handed out piece by piece by a source in a test.
    struct Pieces(std::collections::VecDeque<Result<Vec<Change>>>);

    impl ChangeSource for Pieces {
        fn more(&mut self) -> Result<Vec<Change>> {
            self.0.pop_front().unwrap_or_else(|| Ok(Vec::new()))
        }
    }

    /// A change list read piece by piece merges as the same list held whole, wherever the
    /// pieces and the base's batches are cut; pieces out of order are damage, and so is a
    /// piece that cannot be read: no entry of the base past the changes read goes out.
    #[test]
    fn changes_read_piece_by_piece_merge_as_the_whole_list() {
        let base: Vec<Entry> = ["b", "d", "f", "h", "j"].map(named).to_vec();
        let changes = vec![
            Change::Put(named("a")),
            Change::Gone(RelPath::from("d")),
            Change::Put(named("e")),
            Change::Put(named("h")),
            Change::Gone(RelPath::from("j")),
            Change::Put(named("k")),
        ];
        let id = BlobId::of(b"m");
        let whole = {
            let mut m = ChangeMerge::new(std::sync::Arc::new(changes.clone()), &id);
            let mut out = m.apply(base.clone()).unwrap();
            out.extend(m.finish().unwrap());
            out
        };
        assert_eq!(paths(&whole), ["a", "b", "e", "f", "h", "k"]);
        for cut in 0..=changes.len() {
            for split in 0..=base.len() {
                let pieces = [changes[..cut].to_vec(), changes[cut..].to_vec()]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .map(Ok)
                    .collect();
                let mut m = ChangeMerge::streamed(Box::new(Pieces(pieces)), &id);
                let mut out = m.apply(base[..split].to_vec()).unwrap();
                out.extend(m.apply(base[split..].to_vec()).unwrap());
                out.extend(m.finish().unwrap());
                assert_eq!(out, whole, "pieces cut at {cut}, base at {split}");
            }
        }
        // Two pieces, each sorted, out of order with each other.
        let pieces = [changes[3..].to_vec(), changes[..3].to_vec()].map(Ok);
        let mut m = ChangeMerge::streamed(Box::new(Pieces(pieces.into())), &id);
        let err = m.apply(base.clone()).and_then(|_| m.finish()).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        // The second piece cannot be read: the base's entries up to the first piece's last
        // path go out, and then the error; never "h" or "j" as if nothing changed them.
        let pieces = [Ok(changes[..3].to_vec()), Err(Error::corrupt("blob gone"))];
        let mut m = ChangeMerge::streamed(Box::new(Pieces(pieces.into())), &id);
        let mut seen = Vec::new();
        let err = m
            .apply_with(&base, &mut |e| {
                seen.push(e.path.display());
                Ok(())
            })
            .unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert_eq!(seen, ["a", "b", "e"]);
    }

    #[test]
    fn a_change_list_out_of_order_or_unsafe_is_refused() {
        let id = BlobId::of(b"m");
        let twice = vec![Change::Put(named("a")), Change::Gone(RelPath::from("a"))];
        let backwards = vec![Change::Put(named("b")), Change::Put(named("a"))];
        let unsafe_path = vec![Change::Gone(RelPath::from("../etc/passwd"))];
        for bad in [twice, backwards, unsafe_path] {
            assert!(
                check_changes(&bad, &id).unwrap_err().is_corruption(),
                "{bad:?}"
            );
        }
    }

    fn kind_entry(path: &str, kind: EntryKind) -> Entry {
        let mut e = file_entry(1, 0);
        e.path = RelPath::from(path);
        e.kind = kind;
        match kind {
            EntryKind::File => {}
            EntryKind::Dir => {
                (e.size, e.hash) = (0, None);
                e.blobs.clear();
            }
            EntryKind::Symlink => {
                (e.size, e.hash) = (0, None);
                e.blobs.clear();
                e.target = Some(Box::new(RelPath::from("elsewhere")));
            }
        }
        e
    }

    /// What [`EntryCheck`] must find, the slow way: every path against every other.
    fn below_a_non_folder(entries: &[Entry]) -> bool {
        entries.iter().any(|e| {
            entries.iter().any(|up| {
                up.kind != EntryKind::Dir && {
                    let mut prefix = up.path.as_bytes().to_vec();
                    prefix.push(b'/');
                    e.path.as_bytes().starts_with(&prefix)
                }
            })
        })
    }

    /// Hard links: an earlier plain file with the same size and hash is accepted; a later
    /// one, a link to a link, a folder, a symlink, other content or an absent path is not.
    #[test]
    fn hard_links_must_name_an_earlier_plain_copy() {
        let first = kind_entry("a.json", EntryKind::File);
        let link = |p: &str, to: &str| {
            let mut e = kind_entry(p, EntryKind::File);
            e.link = Some(Box::new(RelPath::from(to)));
            e
        };
        let check = |entries: &[Entry]| {
            let mut c = EntryCheck::default();
            entries.iter().try_for_each(|e| c.push(e))
        };
        check(&[first.clone(), link("b.json", "a.json")]).unwrap();
        check(&[
            first.clone(),
            link("b.json", "a.json"),
            link("c.json", "a.json"),
        ])
        .unwrap();
        let mut other = link("b.json", "a.json");
        other.size += 1;
        let mut dir_link = kind_entry("b", EntryKind::Dir);
        dir_link.link = Some(Box::new(RelPath::from("a.json")));
        for (case, entries) in [
            (
                "a later file",
                vec![link("0.json", "a.json"), first.clone()],
            ),
            (
                "a link",
                vec![
                    first.clone(),
                    link("b.json", "a.json"),
                    link("c.json", "b.json"),
                ],
            ),
            (
                "an absent path",
                vec![first.clone(), link("b.json", "x.json")],
            ),
            (
                "a folder",
                vec![kind_entry("a", EntryKind::Dir), link("b.json", "a")],
            ),
            (
                "a symlink",
                vec![kind_entry("a", EntryKind::Symlink), link("b.json", "a")],
            ),
            ("other content", vec![first.clone(), other]),
            ("itself", vec![link("a.json", "a.json")]),
            ("from a folder", vec![first.clone(), dir_link]),
        ] {
            assert!(check(&entries).is_err(), "{case}");
        }
    }

    /// The key set finds every key put in, across many merges of its tail, and no other.
    #[test]
    fn file_keys_hold_exactly_what_was_put_in() {
        let mut keys = FileKeys::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut put = Vec::new();
        for _ in 0..(FILE_KEYS_TAIL * 5 + 77) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x & !1; // even keys go in; odd ones never do
            keys.insert(k);
            put.push(k);
        }
        assert!(keys.sorted.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(keys.sorted.len() + keys.tail.len(), put.len());
        assert!(put.iter().all(|&k| keys.contains(k)));
        assert!(put.iter().all(|&k| !keys.contains(k | 1)));
    }

    proptest! {
        /// On any sorted list of unique paths, the streamed check finds an entry below a file
        /// or symlink exactly when there is one, including siblings like `a-b` that sort
        /// between `a` and `a/x`.
        #[test]
        fn entries_below_a_non_folder_are_found_as_the_list_streams(
            picks in proptest::collection::vec(
                (proptest::collection::vec(0usize..4, 1..4), 0usize..3), 0..30)
        ) {
            const NAMES: [&str; 4] = ["a", "a-b", "a.b", "b"];
            let mut entries: Vec<Entry> = Vec::new();
            for (parts, kind) in picks {
                let path: Vec<&str> = parts.iter().map(|&i| NAMES[i]).collect();
                let kind = [EntryKind::Dir, EntryKind::File, EntryKind::Symlink][kind];
                entries.push(kind_entry(&path.join("/"), kind));
            }
            entries.sort_by(|x, y| x.path.cmp(&y.path));
            entries.dedup_by(|x, y| x.path == y.path);
            let mut c = EntryCheck::default();
            let found = entries.iter().try_for_each(|e| c.push(e));
            prop_assert_eq!(found.is_err(), below_a_non_folder(&entries), "{:?}", found);
            // Out of order, the same list is refused.
            if entries.len() > 1 {
                entries.swap(0, 1);
                let mut c = EntryCheck::default();
                prop_assert!(entries.iter().try_for_each(|e| c.push(e)).is_err());
            }
        }

        #[test]
        fn relpath_json_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let p = RelPath(bytes);
            let json = serde_json::to_string(&p).unwrap();
            let back: RelPath = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, p);
        }
    }
}
