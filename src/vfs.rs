//! A read-only tree of the repository's snapshots, as `mount` shows it: inode numbers,
//! attributes, folder listings and verified reads. Layout:
//!
//! ```text
//! snapshots/<YYYY-MM-DDTHH:MM:SS>_<short id>/...    every snapshot, oldest first
//! by-kind/<kind>/<YYYY-MM-DDTHH:MM:SS>_<short id>/  the same, one folder per kind
//! latest -> snapshots/<...>                         the newest complete backup, if any
//! ```
//!
//! Each snapshot folder holds the snapshot's root; times are the snapshot's own recorded
//! time. Entry lists are read the first time a snapshot folder is used. Knows nothing about
//! FUSE (the binary adapts it) and never writes anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::browse::{self, BlobMap};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{EntryKind, Manifest};
use crate::repo::Repository;
use crate::store::{BlobIndex, BlobReader};

/// Inode number of the top folder (FUSE's root inode).
pub const ROOT: u64 = 1;
/// Files up to this size are read whole and verified against their hash when opened; larger
/// ones are verified blob by blob as they are read.
pub const WHOLE_FILE_LIMIT: u64 = 64 << 20;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A folder.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// One entry of a folder listing: inode, kind, name.
pub type DirEntry = (u64, NodeKind, Vec<u8>);

/// A node's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Folder, file or symlink.
    pub kind: NodeKind,
    /// Bytes (files), target length (symlinks), 0 for folders.
    pub size: u64,
    /// Permission bits, write bits removed.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

#[derive(Debug)]
enum Content {
    /// A folder; `pending` names the snapshot whose entries fill it on first use.
    Dir {
        children: BTreeMap<Vec<u8>, u64>,
        pending: Option<BlobId>,
    },
    /// A file of a loaded snapshot.
    File {
        manifest: Arc<Manifest>,
        entry: usize,
    },
    /// A symlink's target.
    Symlink(Vec<u8>),
}

#[derive(Debug)]
struct Node {
    parent: u64,
    attr: Attr,
    content: Content,
}

/// An open file.
#[derive(Debug, Clone)]
enum Open {
    /// Read whole and verified when opened.
    Whole(Arc<Vec<u8>>),
    /// Verified blob by blob as read.
    Blobs(Arc<BlobMap>),
}

#[derive(Debug, Default)]
struct State {
    nodes: Vec<Node>,
    loaded: HashMap<BlobId, Arc<Manifest>>,
    open: HashMap<u64, Open>,
    next_handle: u64,
}

/// The tree. Shared by the mount's threads; every method takes `&self`.
#[derive(Debug)]
pub struct Tree {
    repo: Repository,
    index: BlobIndex,
    state: Mutex<State>,
}

fn dir_attr(ino: u64, mtime_ns: i64) -> Attr {
    Attr {
        ino,
        kind: NodeKind::Dir,
        size: 0,
        mode: 0o555,
        mtime_ns,
    }
}

/// A snapshot's folder name: its recorded time, then its short id (unique, and sorted by
/// time in a listing).
pub fn folder_name(id: &BlobId, m: &Manifest) -> String {
    format!("{}_{}", m.time.format("%Y-%m-%dT%H:%M:%S"), id.short())
}

fn time_ns(m: &Manifest) -> i64 {
    m.time.timestamp_nanos_opt().unwrap_or(0)
}

impl Tree {
    /// The tree of `snapshots` (headers, any order), `latest` linking to the folder of the
    /// one given (when it is among them); `now_ns` dates the folders that are no snapshot's.
    pub fn new(
        repo: Repository,
        index: BlobIndex,
        snapshots: &[(BlobId, Manifest)],
        latest: Option<BlobId>,
        now_ns: i64,
    ) -> Tree {
        let mut st = State::default();
        let add = Tree::insert;
        let empty = || Content::Dir {
            children: BTreeMap::new(),
            pending: None,
        };
        // The root is its own parent, as `..` of the mount's top folder.
        st.nodes.push(Node {
            parent: ROOT,
            attr: dir_attr(ROOT, now_ns),
            content: empty(),
        });
        let root = ROOT;
        let all = add(&mut st, root, b"snapshots", dir_attr(0, now_ns), empty());
        let by_kind = add(&mut st, root, b"by-kind", dir_attr(0, now_ns), empty());
        let mut sorted: Vec<&(BlobId, Manifest)> = snapshots.iter().collect();
        sorted.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, m) in sorted {
            let name = folder_name(id, m);
            let kind = m.kind().name();
            let attr = dir_attr(0, time_ns(m));
            let pending = || Content::Dir {
                children: BTreeMap::new(),
                pending: Some(*id),
            };
            add(&mut st, all, name.as_bytes(), attr, pending());
            let folder = match kinds.get(kind) {
                Some(f) => *f,
                None => {
                    let f = add(
                        &mut st,
                        by_kind,
                        kind.as_bytes(),
                        dir_attr(0, now_ns),
                        empty(),
                    );
                    kinds.insert(kind, f);
                    f
                }
            };
            add(&mut st, folder, name.as_bytes(), attr, pending());
        }
        if let Some((id, m)) = latest.and_then(|l| snapshots.iter().find(|(id, _)| *id == l)) {
            let target = format!("snapshots/{}", folder_name(id, m)).into_bytes();
            let attr = Attr {
                ino: 0,
                kind: NodeKind::Symlink,
                size: target.len() as u64,
                mode: 0o777,
                mtime_ns: time_ns(m),
            };
            add(&mut st, root, b"latest", attr, Content::Symlink(target));
        }
        Tree {
            repo,
            index,
            state: Mutex::new(st),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves nodes that are still whole (each change is
        // one push or insert): go on with them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fills a snapshot folder from its entry list the first time it is used.
    fn load(&self, st: &mut State, ino: u64) -> Result<()> {
        let Some(Node {
            content: Content::Dir {
                pending: Some(id), ..
            },
            ..
        }) = st.nodes.get(ino as usize - 1)
        else {
            return Ok(());
        };
        let id = *id;
        let manifest = match st.loaded.get(&id) {
            Some(m) => m.clone(),
            None => {
                let m = Arc::new(crate::snapshot::load_with(&self.repo, &self.index, &id)?);
                st.loaded.insert(id, m.clone());
                m
            }
        };
        let mut by_path: HashMap<&[u8], u64> = HashMap::new();
        for (i, e) in manifest.entries.iter().enumerate() {
            e.path.check_safe()?;
            let bytes = e.path.as_bytes();
            let (parent_path, name) = match bytes.iter().rposition(|&b| b == b'/') {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (&bytes[..0], bytes),
            };
            let parent = self.folder_of(st, ino, &mut by_path, parent_path, time_ns(&manifest));
            let attr = Attr {
                ino: 0,
                kind: match e.kind {
                    EntryKind::Dir => NodeKind::Dir,
                    EntryKind::File => NodeKind::File,
                    EntryKind::Symlink => NodeKind::Symlink,
                },
                size: match e.kind {
                    EntryKind::File => e.size,
                    EntryKind::Symlink => e.target.as_ref().map_or(0, |t| t.0.len() as u64),
                    EntryKind::Dir => 0,
                },
                mode: (e.mode & 0o7777) & !0o222,
                mtime_ns: e.mtime_ns,
            };
            let content = match e.kind {
                EntryKind::Dir => Content::Dir {
                    children: BTreeMap::new(),
                    pending: None,
                },
                EntryKind::File => Content::File {
                    manifest: manifest.clone(),
                    entry: i,
                },
                EntryKind::Symlink => Content::Symlink(e.target.clone().unwrap_or_default().0),
            };
            let child = Self::insert(st, parent, name, attr, content);
            if e.kind == EntryKind::Dir {
                by_path.insert(bytes, child);
            }
        }
        if let Some(Node {
            content: Content::Dir { pending, .. },
            ..
        }) = st.nodes.get_mut(ino as usize - 1)
        {
            *pending = None;
        }
        Ok(())
    }

    /// The node of folder `path` under snapshot folder `top`, made (read-only, dated like
    /// the snapshot) when the entry list does not hold it.
    fn folder_of<'p>(
        &self,
        st: &mut State,
        top: u64,
        by_path: &mut HashMap<&'p [u8], u64>,
        path: &'p [u8],
        mtime_ns: i64,
    ) -> u64 {
        if path.is_empty() {
            return top;
        }
        if let Some(ino) = by_path.get(path) {
            return *ino;
        }
        let (parent_path, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(at) => (&path[..at], &path[at + 1..]),
            None => (&path[..0], path),
        };
        let parent = self.folder_of(st, top, by_path, parent_path, mtime_ns);
        let ino = match Self::child(st, parent, name) {
            Some(existing) => existing,
            None => Self::insert(
                st,
                parent,
                name,
                dir_attr(0, mtime_ns),
                Content::Dir {
                    children: BTreeMap::new(),
                    pending: None,
                },
            ),
        };
        by_path.insert(path, ino);
        ino
    }

    fn child(st: &State, parent: u64, name: &[u8]) -> Option<u64> {
        match &st.nodes.get(parent as usize - 1)?.content {
            Content::Dir { children, .. } => children.get(name).copied(),
            _ => None,
        }
    }

    fn insert(st: &mut State, parent: u64, name: &[u8], attr: Attr, content: Content) -> u64 {
        let ino = st.nodes.len() as u64 + 1;
        st.nodes.push(Node {
            parent,
            attr: Attr { ino, ..attr },
            content,
        });
        if let Some(Node {
            content: Content::Dir { children, .. },
            ..
        }) = st.nodes.get_mut(parent as usize - 1)
        {
            children.insert(name.to_vec(), ino);
        }
        ino
    }

    fn valid(st: &State, ino: u64) -> bool {
        ino >= 1 && (ino as usize) <= st.nodes.len()
    }

    /// The attributes of `ino`, if it exists.
    pub fn attr(&self, ino: u64) -> Option<Attr> {
        let st = self.state();
        Self::valid(&st, ino).then(|| st.nodes[ino as usize - 1].attr)
    }

    /// The child `name` of folder `parent`.
    ///
    /// # Errors
    /// A snapshot whose entry list cannot be read.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Attr>> {
        let mut st = self.state();
        if !Self::valid(&st, parent) {
            return Ok(None);
        }
        self.load(&mut st, parent)?;
        Ok(Self::child(&st, parent, name).map(|ino| st.nodes[ino as usize - 1].attr))
    }

    /// The entries of folder `ino`, `.` and `..` first; `None` when it is not a folder.
    ///
    /// # Errors
    /// A snapshot whose entry list cannot be read.
    pub fn list(&self, ino: u64) -> Result<Option<Vec<DirEntry>>> {
        let mut st = self.state();
        if !Self::valid(&st, ino) {
            return Ok(None);
        }
        self.load(&mut st, ino)?;
        let node = &st.nodes[ino as usize - 1];
        let Content::Dir { children, .. } = &node.content else {
            return Ok(None);
        };
        let mut out = vec![
            (ino, NodeKind::Dir, b".".to_vec()),
            (node.parent, NodeKind::Dir, b"..".to_vec()),
        ];
        out.extend(
            children
                .iter()
                .map(|(name, c)| (*c, st.nodes[*c as usize - 1].attr.kind, name.clone())),
        );
        Ok(Some(out))
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Option<Vec<u8>> {
        let st = self.state();
        if !Self::valid(&st, ino) {
            return None;
        }
        match &st.nodes[ino as usize - 1].content {
            Content::Symlink(t) => Some(t.clone()),
            _ => None,
        }
    }

    /// Where `ino` lies, for messages: `<snapshot folder>/<path>`.
    pub fn describe(&self, ino: u64) -> String {
        let st = self.state();
        let mut parts: Vec<String> = Vec::new();
        let mut cur = ino;
        while Self::valid(&st, cur) && cur != ROOT {
            let node = &st.nodes[cur as usize - 1];
            let parent = &st.nodes[node.parent as usize - 1];
            if let Content::Dir { children, .. } = &parent.content {
                if let Some((name, _)) = children.iter().find(|(_, c)| **c == cur) {
                    parts.push(String::from_utf8_lossy(name).into_owned());
                }
            }
            cur = node.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Opens file `ino`: files up to [`WHOLE_FILE_LIMIT`] are read and verified whole (blob
    /// hashes, file hash and size) now; larger ones blob by blob as they are read. Returns
    /// a handle for [`Tree::read`].
    ///
    /// # Errors
    /// [`Error::Invalid`] when `ino` is not a file; damaged data.
    pub fn open(&self, ino: u64) -> Result<u64> {
        let (manifest, entry) = {
            let st = self.state();
            match st
                .nodes
                .get((ino as usize).wrapping_sub(1))
                .map(|n| &n.content)
            {
                Some(Content::File { manifest, entry }) => (manifest.clone(), *entry),
                _ => return Err(Error::Invalid(format!("inode {ino} is not a file"))),
            }
        };
        let e = &manifest.entries[entry];
        let open = if e.size <= WHOLE_FILE_LIMIT {
            Open::Whole(Arc::new(browse::read_file(&self.repo, &self.index, e)?))
        } else {
            Open::Blobs(Arc::new(BlobMap::of(&self.repo, &self.index, e)?))
        };
        let mut st = self.state();
        st.next_handle += 1;
        let fh = st.next_handle;
        st.open.insert(fh, open);
        Ok(fh)
    }

    /// Up to `size` bytes at `offset` of the file open as `fh`.
    ///
    /// # Errors
    /// An unknown handle; damaged data.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let open = self
            .state()
            .open
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("no open file has handle {fh}")))?;
        match open {
            Open::Whole(data) => {
                let start = (offset.min(data.len() as u64)) as usize;
                let end = (offset
                    .saturating_add(u64::from(size))
                    .min(data.len() as u64)) as usize;
                Ok(data[start..end].to_vec())
            }
            Open::Blobs(map) => {
                let mut reader = BlobReader::new(&self.repo, &self.index);
                map.read_range(&mut reader, offset, u64::from(size))
            }
        }
    }

    /// Forgets handle `fh`.
    pub fn release(&self, fh: u64) {
        self.state().open.remove(&fh);
    }

    /// Number of snapshots shown.
    pub fn snapshot_count(&self) -> usize {
        let st = self.state();
        match st.nodes.get(1).map(|n| &n.content) {
            Some(Content::Dir { children, .. }) => children.len(),
            _ => 0,
        }
    }
}
