//! Reading one snapshot back without restoring it: the entries at or below a path (`ls`,
//! `dump`), one file's bytes streamed verified (every blob re-hashed as it is read, the whole
//! file's size and hash checked at the end), a folder as a tar stream, and byte ranges of a
//! file for the read-only mount. Never writes to the cache tree or the repository; the
//! caller owns the output stream.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{Entry, EntryKind, Manifest, RelPath};
use crate::repo::{layout, Repository};
use crate::store::{BlobIndex, BlobReader};

/// The path `query` names inside snapshot `m`, relative to its root: a relative query is
/// relative to the snapshot root, an absolute one must lie under the recorded root. `.`
/// components and trailing slashes are ignored; the root itself (`.`, `/`, or the recorded
/// root) is the empty path.
///
/// # Errors
/// [`Error::Invalid`] for `..` components or an absolute path outside the snapshot's root.
pub fn rel_in(m: &Manifest, query: &Path) -> Result<RelPath> {
    let rel = if query.is_absolute() && query != Path::new("/") {
        query.strip_prefix(Path::new(&m.root)).map_err(|_| {
            Error::Invalid(format!(
                "{} is not under the snapshot's root {}",
                query.display(),
                m.root
            ))
        })?
    } else {
        query
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.as_bytes()),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: '..' is not allowed in a path of a snapshot",
                    query.display()
                )))
            }
        }
    }
    Ok(RelPath(parts.join(&b'/')))
}

/// The entries of `m` at or below `path` (relative, see [`rel_in`]), in manifest order
/// (folders before what they hold); every entry for the empty path.
///
/// # Errors
/// [`Error::PathNotFound`] when the snapshot holds nothing at `path`.
pub fn subtree<'m>(m: &'m Manifest, id: &BlobId, path: &RelPath) -> Result<Vec<&'m Entry>> {
    let out: Vec<&Entry> = m
        .entries
        .iter()
        .filter(|e| e.path.starts_with(path))
        .collect();
    if out.is_empty() && !path.0.is_empty() {
        return Err(Error::PathNotFound {
            path: path.display(),
            snapshot: id.short(),
            root: m.root.clone(),
        });
    }
    Ok(out)
}

/// The blob lengths of file entry `e`, checked to add up to its size before anything is
/// read: a manifest whose size disagrees with its blobs is damage, not a short file.
fn blob_lengths(reader: &BlobReader<'_>, e: &Entry) -> Result<Vec<u64>> {
    let mut lengths = Vec::with_capacity(e.blobs.len());
    for b in &e.blobs {
        let loc = reader
            .locate(b)
            .ok_or_else(|| Error::corrupt(format!("blob {b} is referenced but not indexed")))?;
        lengths.push(loc.length);
    }
    let stored = lengths.iter().fold(0u64, |a, l| a.saturating_add(*l));
    if stored != e.size {
        return Err(Error::corrupt(format!(
            "the manifest gives {} a size of {} bytes, but its blobs hold {stored}",
            e.path.display(),
            e.size
        )));
    }
    Ok(lengths)
}

/// Names the archive a damaged blob was read from: the blob's id alone does not tell the
/// operator which object on disk is bad.
fn name_archive(repo: &Repository, index: &BlobIndex, e: &Entry, err: Error) -> Error {
    match err {
        Error::CorruptBlob { expected, actual } => {
            let archive = index
                .get(&expected)
                .and_then(|l| index.archives.get(l.archive as usize))
                .map(|a| repo.describe(ObjectKind::Archive, &layout::archive(a)))
                .unwrap_or_else(|| "an unknown archive".into());
            Error::corrupt(format!(
                "{}: blob {expected} in archive {archive} is corrupt (content hashes to {actual})",
                e.path.display()
            ))
        }
        err => err,
    }
}

fn check_whole(e: &Entry, size: u64, actual: BlobId) -> Result<()> {
    // An empty file has no blobs; its hash is that of no bytes.
    let expected = e.hash.unwrap_or_else(|| BlobId::of(b""));
    if size != e.size || actual != expected {
        return Err(Error::corrupt(format!(
            "content of {} does not match the manifest ({size} bytes, hash {})",
            e.path.display(),
            actual.short()
        )));
    }
    Ok(())
}

/// A file's content as a [`Read`], each blob verified before any of its bytes are handed
/// out and the whole file's hash checked once its last byte is read. A failure is kept
/// typed in `failure` (the `io::Error` handed to the consumer only says that it happened).
struct VerifiedRead<'r, 'a> {
    repo: &'a Repository,
    index: &'a BlobIndex,
    reader: &'r mut BlobReader<'a>,
    entry: &'r Entry,
    next: usize,
    buf: Vec<u8>,
    at: usize,
    hasher: blake3::Hasher,
    size: u64,
    failure: Option<Error>,
}

impl Read for VerifiedRead<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            if self.next == self.entry.blobs.len() {
                return Ok(0);
            }
            let id = self.entry.blobs[self.next];
            self.next += 1;
            let result = self.reader.read(&id).and_then(|data| {
                self.hasher.update(&data);
                self.size += data.len() as u64;
                if self.next == self.entry.blobs.len() {
                    check_whole(self.entry, self.size, BlobId::from(self.hasher.finalize()))?;
                }
                Ok(data)
            });
            match result {
                Ok(data) => {
                    self.buf = data;
                    self.at = 0;
                }
                Err(e) => {
                    let e = name_archive(self.repo, self.index, self.entry, e);
                    let text = e.to_string();
                    self.failure = Some(e);
                    return Err(std::io::Error::other(text));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Streams the content of file entry `e` into `out`, each blob verified before it is
/// written and the whole file's size and hash compared with the manifest at the end.
/// Returns the bytes written. A blob that fails verification is never written (those before
/// it already are: the caller reports the failure, and its exit code says so).
///
/// # Errors
/// [`Error::Corrupt`] naming the file and the archive for damaged data; [`Error::Invalid`]
/// when `e` is not a file; write errors as [`Error::Io`] on `shown` (what `out` is).
pub fn write_file(
    repo: &Repository,
    index: &BlobIndex,
    e: &Entry,
    out: &mut dyn Write,
    shown: &Path,
) -> Result<u64> {
    if e.kind != EntryKind::File {
        return Err(Error::Invalid(format!(
            "{} is not a file",
            e.path.display()
        )));
    }
    let mut reader = BlobReader::new(repo, index);
    blob_lengths(&reader, e)?;
    reader.prefetch(e.blobs.iter());
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    for b in &e.blobs {
        let data = reader
            .read(b)
            .map_err(|err| name_archive(repo, index, e, err))?;
        hasher.update(&data);
        out.write_all(&data).map_err(Error::io(shown))?;
        written += data.len() as u64;
    }
    check_whole(e, written, BlobId::from(hasher.finalize()))?;
    Ok(written)
}

/// One file's blobs and where each starts, for reading ranges of it (the mount).
#[derive(Debug, Clone)]
pub struct BlobMap {
    /// `(offset in the file, length, blob)`, in file order.
    pub parts: Vec<(u64, u64, BlobId)>,
}

impl BlobMap {
    /// The blobs of file entry `e`, checked to add up to its size.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a blob is not indexed or the sizes disagree.
    pub fn of(repo: &Repository, index: &BlobIndex, e: &Entry) -> Result<BlobMap> {
        let lengths = blob_lengths(&BlobReader::new(repo, index), e)?;
        let mut at = 0;
        let parts = e
            .blobs
            .iter()
            .zip(lengths)
            .map(|(b, len)| {
                let part = (at, len, *b);
                at += len;
                part
            })
            .collect();
        Ok(BlobMap { parts })
    }

    /// Bytes `offset..offset + size` of the file (fewer at its end); every blob touched is
    /// read whole and verified.
    ///
    /// # Errors
    /// As [`BlobReader::read`].
    pub fn read_range(
        &self,
        reader: &mut BlobReader<'_>,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let end = offset.saturating_add(size);
        let mut out = Vec::new();
        for (start, len, id) in &self.parts {
            let stop = start + len;
            if stop <= offset || *start >= end {
                continue;
            }
            let data = reader.read(id)?;
            let from = offset.saturating_sub(*start) as usize;
            let to = (end.min(stop) - start) as usize;
            out.extend_from_slice(&data[from..to]);
        }
        Ok(out)
    }
}

/// Reads the whole content of file entry `e`, verified as [`write_file`] does.
///
/// # Errors
/// As [`write_file`].
pub fn read_file(repo: &Repository, index: &BlobIndex, e: &Entry) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(e.size.min(1 << 30) as usize);
    write_file(repo, index, e, &mut out, Path::new("(memory)"))?;
    Ok(out)
}

/// What a tar stream held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarSummary {
    /// Files written with their content.
    pub files: u64,
    /// Files written as hard links to an earlier file of the stream.
    pub links: u64,
    /// Folders.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Content bytes.
    pub bytes: u64,
}

/// Writes `entries` (manifest order: folders before what they hold) as a tar stream into
/// `out`, paths relative to the snapshot root, each header carrying the entry's mode and
/// mtime (owner 0, no names looked up on this machine); symlinks as symlinks, hard links as
/// links to the first file of their group when it is in the stream. Contents are verified
/// as [`write_file`] verifies them; the stream stops at the first damaged file, which
/// leaves it without its end-of-archive blocks, so `tar` reports it truncated too.
///
/// # Errors
/// Damaged data, as [`write_file`]; unsafe paths; write errors as [`Error::Io`] on `shown`.
pub fn write_tar(
    repo: &Repository,
    index: &BlobIndex,
    entries: &[&Entry],
    out: &mut dyn Write,
    shown: &Path,
) -> Result<TarSummary> {
    let mut reader = BlobReader::new(repo, index);
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let written: HashSet<&RelPath> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && e.link.is_none())
        .map(|e| &e.path)
        .collect();
    let mut summary = TarSummary::default();
    for e in entries {
        e.path.check_safe()?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_mtime(e.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        let result = match e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                summary.dirs += 1;
                tar.append_data(&mut h, e.path.to_path(), std::io::empty())
            }
            EntryKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                summary.symlinks += 1;
                let target = e.target.clone().unwrap_or_default();
                tar.append_link(&mut h, e.path.to_path(), target.to_path())
            }
            EntryKind::File => {
                if let Some(first) = e.link.as_deref().filter(|l| written.contains(l)) {
                    h.set_entry_type(tar::EntryType::Link);
                    summary.links += 1;
                    tar.append_link(&mut h, e.path.to_path(), first.to_path())
                } else {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(e.size);
                    blob_lengths(&reader, e)?;
                    reader.prefetch(e.blobs.iter());
                    let mut content = VerifiedRead {
                        repo,
                        index,
                        reader: &mut reader,
                        entry: e,
                        next: 0,
                        buf: Vec::new(),
                        at: 0,
                        hasher: blake3::Hasher::new(),
                        size: 0,
                        failure: None,
                    };
                    let r = tar.append_data(&mut h, e.path.to_path(), &mut content);
                    if let Some(failure) = content.failure.take() {
                        return Err(failure);
                    }
                    summary.files += 1;
                    summary.bytes += e.size;
                    r
                }
            }
        };
        result.map_err(Error::io(shown))?;
    }
    tar.finish().map_err(Error::io(shown))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SnapshotStats, Tree, MANIFEST_VERSION};
    use chrono::DateTime;

    fn manifest(paths: &[&str]) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            time: DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap(),
            kind: None,
            hostname: "h".into(),
            root: "/cache/root".into(),
            paths: vec![],
            tags: vec![],
            parent: None,
            repaired_from: None,
            complete: true,
            warnings: vec![],
            summary: SnapshotStats::default(),
            tree: Tree::default(),
            changes: None,
            entries: paths
                .iter()
                .map(|p| Entry {
                    path: RelPath::from(*p),
                    kind: if p.ends_with(".json") {
                        EntryKind::File
                    } else {
                        EntryKind::Dir
                    },
                    mode: 0o644,
                    mtime_ns: 0,
                    size: 0,
                    ino: 0,
                    ctime_ns: 0,
                    hash: None,
                    blobs: smallvec::smallvec![],
                    target: None,
                    link: None,
                })
                .collect(),
        }
    }

    #[test]
    fn paths_resolve_relative_to_the_root() {
        let m = manifest(&[]);
        let rel = |q: &str| rel_in(&m, Path::new(q)).map(|p| p.display());
        assert_eq!(rel("a/./b/").unwrap(), "a/b");
        assert_eq!(rel("/cache/root/a/b").unwrap(), "a/b");
        assert_eq!(rel(".").unwrap(), "");
        assert_eq!(rel("/").unwrap(), "");
        assert_eq!(rel("/cache/root").unwrap(), "");
        assert!(rel("a/../b").is_err());
        assert!(rel("/elsewhere/a").is_err());
    }

    #[test]
    fn a_subtree_is_the_path_and_what_lies_below_it() {
        let m = manifest(&["d", "d/x.json", "dd", "dd/y.json", "e.json"]);
        let id = BlobId([7; 32]);
        let names = |p: &str| -> Vec<String> {
            subtree(&m, &id, &RelPath::from(p))
                .unwrap()
                .iter()
                .map(|e| e.path.display())
                .collect()
        };
        assert_eq!(names("d"), ["d", "d/x.json"]);
        assert_eq!(names("d/x.json"), ["d/x.json"]);
        assert_eq!(names("").len(), 5);
        let err = subtree(&m, &id, &RelPath::from("nothing.json")).unwrap_err();
        assert!(matches!(err, Error::PathNotFound { .. }), "{err}");
        assert!(err.to_string().contains("nothing.json"), "{err}");
    }
}
