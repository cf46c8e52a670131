//! Walking a cache tree: folder by folder (getdents, then fstatat relative to the open
//! folder, in parallel), never following symlinks, into entries in path order with the
//! metadata change detection needs. Skips the repository if it lies inside.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::manifest::{Entry, EntryKind, RelPath};

/// The metadata fields snapshots record and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Permission bits.
    pub mode: u32,
    /// Size.
    pub size: u64,
    /// mtime ns.
    pub mtime_ns: i64,
    /// ctime ns.
    pub ctime_ns: i64,
    /// inode.
    pub ino: u64,
}

impl Stat {
    /// The fields as a walked entry holds them ([`ScanResult::entries`]).
    pub fn of_entry(e: &Entry) -> Stat {
        Stat {
            mode: e.mode,
            size: e.size,
            mtime_ns: e.mtime_ns,
            ctime_ns: e.ctime_ns,
            ino: e.ino,
        }
    }

    /// Extracts the fields from std metadata.
    pub fn of(m: &std::fs::Metadata) -> Stat {
        Stat {
            mode: m.mode() & 0o7777,
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
        }
    }
}

/// Result of a walk: entries in walk order plus problems met.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Every item walked, sorted bytewise by path, as the entry a snapshot records: its
    /// metadata as walked in `mode`, `mtime_ns`, `size`, `ino` and `ctime_ns` (for every
    /// kind; [`Stat::of_entry`]), and nothing read (no `hash`, no `blobs`). Entries already,
    /// so a snapshot takes them over in place.
    pub entries: Vec<Entry>,
    /// (device, inode) of each regular file with more than one link, by path, sorted: paths
    /// of a snapshot that share one are hard links of one file.
    pub link_keys: Vec<(RelPath, (u64, u64))>,
    /// Unreadable folders or entries: the snapshot is incomplete.
    pub errors: Vec<String>,
    /// Entries skipped by design (sockets, FIFOs, devices, the repository).
    pub ignored: Vec<String>,
}

/// Walks `includes` (paths relative to `root`; empty = the whole root), adding the ancestor
/// folders of each include so a restore can recreate them. `exclude` (the repository) is
/// skipped with its contents.
pub fn scan(root: &Path, includes: &[RelPath], exclude: Option<&Path>) -> ScanResult {
    let (mut out, tree) = walk_all(root, includes, exclude);
    // Bytewise path order: deterministic, and every folder precedes its contents. Includes
    // that overlap (a folder and one inside it) walk a path twice: sorted whole, and kept
    // once.
    sort_by_path(&mut out.entries, tree.as_deref());
    drop(tree);
    out.entries
        .dedup_by(|later, first| later.path == first.path);
    out.entries.shrink_to_fit();
    out.link_keys.sort_unstable();
    out.link_keys.dedup();
    out
}

/// The walk of [`scan`], its entries in the order walked, and the folders they make when
/// they make one tree: the folders walked, and those the includes' entries sit in.
fn walk_all(
    root: &Path,
    includes: &[RelPath],
    exclude: Option<&Path>,
) -> (ScanResult, Option<Vec<Folder>>) {
    let mut out = ScanResult::default();
    // The repository, as a path below the root, when it lies inside.
    let exclude_rel = exclude
        .and_then(|x| x.strip_prefix(root).ok())
        .filter(|r| !r.as_os_str().is_empty())
        .map(|r| RelPath(r.as_os_str().as_bytes().to_vec()));
    let whole = [RelPath::default()];
    // Each folder walked: its names' entries, as the walk recorded them.
    let mut folders: Vec<Folder> = Vec::new();
    let includes = if includes.is_empty() {
        &whole[..]
    } else {
        includes
    };
    // Entries put in by the list of includes, not read from a folder: ancestors (each
    // once) and the includes themselves.
    let mut listed: Vec<u32> = Vec::new();
    let mut ancestors: std::collections::HashSet<Vec<u8>> = Default::default();
    for inc in includes {
        // Ancestor folders of the include (not the root itself).
        let comps: Vec<&[u8]> = if inc.0.is_empty() {
            Vec::new()
        } else {
            inc.components().collect()
        };
        for i in 1..comps.len() {
            let rel = RelPath(comps[..i].join(&b'/'));
            if !ancestors.insert(rel.0.clone()) {
                continue;
            }
            if let Ok(m) = std::fs::symlink_metadata(root.join(rel.to_path())) {
                listed.push(position(out.entries.len()));
                out.entries
                    .push(walked(rel, EntryKind::Dir, Stat::of(&m), None));
            }
        }
        let mut walk = Walk {
            root,
            exclude: exclude_rel.as_ref(),
            out: &mut out,
            folders: &mut folders,
        };
        if inc.0.is_empty() {
            match open_dir(rustix::fs::CWD, root) {
                Ok(fd) => walk.folder(&fd, &RelPath::default(), None),
                Err(e) => walk.problem(&RelPath::default(), e),
            }
        } else {
            // The include itself (any kind), then its contents when it is a folder.
            let (parent, name) = match inc.0.iter().rposition(|&b| b == b'/') {
                Some(i) => (RelPath(inc.0[..i].to_vec()), &inc.0[i + 1..]),
                None => (RelPath::default(), &inc.0[..]),
            };
            let opened = open_dir(rustix::fs::CWD, root.join(parent.to_path()));
            let at = walk.out.entries.len();
            match opened {
                Ok(fd) => walk.names(&fd, &parent, &[name.to_vec()]),
                Err(e) => walk.problem(inc, e),
            }
            if out.entries.get(at).is_some_and(|e| e.path == *inc) {
                listed.push(position(at));
            }
        }
    }
    drop(ancestors);
    // The list grew by doubling: up to half of it is room never used, held for the whole
    // snapshot. Returning it is a remap of the same pages, not a copy.
    out.entries.shrink_to_fit();
    let tree = if listed.is_empty() {
        Some(folders)
    } else {
        listed_folders(&out.entries, listed).map(|mut tree| {
            tree.extend(folders);
            tree
        })
    };
    (out, tree)
}

/// One folder walked: the entry of the folder itself (none for the root), and the entries
/// that are its names.
struct Folder {
    dir: Option<u32>,
    names: Names,
}

/// A folder's entries: a range of them (a folder read whole), or the positions of those the
/// list of includes put there (ancestors and includes).
enum Names {
    Read(Range<usize>),
    Listed(Vec<u32>),
}

impl Names {
    fn positions(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        let (read, listed) = match self {
            Names::Read(r) => (r.clone(), &[][..]),
            Names::Listed(l) => (0..0, &l[..]),
        };
        read.chain(listed.iter().map(|&i| i as usize))
    }
}

/// An entry's position, as the sort keeps it.
fn position(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 entries")
}

/// The folders that the entries put in by a list of includes (`listed`: ancestors and the
/// includes themselves) sit in, the root first. None when one is not below a listed folder
/// or two share a path: not one tree.
fn listed_folders(entries: &[Entry], listed: Vec<u32>) -> Option<Vec<Folder>> {
    let mut dirs: HashMap<&[u8], u32> = HashMap::new();
    for &i in &listed {
        let e = &entries[i as usize];
        if e.kind == EntryKind::Dir && dirs.insert(&e.path.0, i).is_some() {
            return None;
        }
    }
    let mut groups: HashMap<Option<u32>, Vec<u32>> = HashMap::new();
    for &i in &listed {
        let path = &entries[i as usize].path.0;
        let parent = &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
        let dir = if parent.is_empty() {
            None
        } else {
            Some(*dirs.get(parent)?)
        };
        groups.entry(dir).or_default().push(i);
    }
    let root = groups.remove(&None)?;
    let mut folders = vec![Folder {
        dir: None,
        names: Names::Listed(root),
    }];
    folders.extend(groups.into_iter().map(|(dir, names)| Folder {
        dir,
        names: Names::Listed(names),
    }));
    Some(folders)
}

/// Sorts entries bytewise by path.
///
/// A walk of one tree (`folders`, every folder's names as walked, the first the root's)
/// is ordered folder by folder ([`tree_order`]): no path is compared with one of another
/// folder. The result is checked to be strictly sorted; anything else (no folders, or an
/// order that fails the check) is sorted whole. Either way each entry is moved once
/// ([`permute`]): sorting the entries themselves would move a whole entry (over 150 bytes)
/// at every step of the sort.
fn sort_by_path(entries: &mut [Entry], folders: Option<&[Folder]>) {
    if let Some(mut order) = folders.and_then(|f| tree_order(entries, f)) {
        permute(entries, &mut order);
        if entries.windows(2).all(|w| w[0].path < w[1].path) {
            return;
        }
    }
    let mut order: Vec<u32> =
        (0..u32::try_from(entries.len()).expect("fewer than 2^32 entries")).collect();
    order.sort_unstable_by(|&a, &b| entries[a as usize].path.cmp(&entries[b as usize].path));
    permute(entries, &mut order);
}

/// The path order of a walked tree, as positions: `order[i]` is the position of the entry
/// that sorts `i`th. None when `folders` do not make one tree that covers every entry.
///
/// Every path below a folder `d` starts with `d/`, and no name holds a `/`. So among one
/// folder's names, a sub-folder `d` stands for two items: its own entry, which sorts as
/// `d`, and all that lies below it, which sorts together as `d/` (after `d-x` and `d.json`,
/// which sort between: `-` and `.` come before `/`). Each folder's items are sorted by name
/// alone, and the items below a folder are put out where its `d/` item stands.
fn tree_order(entries: &[Entry], folders: &[Folder]) -> Option<Vec<u32>> {
    let root = folders.first().filter(|f| f.dir.is_none())?;
    let below: HashMap<u32, u32> = folders
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((f.dir?, u32::try_from(i).ok()?)))
        .collect();
    let mut order: Vec<u32> = Vec::with_capacity(entries.len());
    let mut stack = vec![folder_items(entries, &root.names, &below).into_iter()];
    while let Some(items) = stack.last_mut() {
        match items.next() {
            None => {
                stack.pop();
            }
            Some(Item {
                below: NOT_BELOW,
                at,
                ..
            }) => order.push(at),
            Some(Item { below: f, .. }) => {
                let names = &folders.get(f as usize)?.names;
                stack.push(folder_items(entries, names, &below).into_iter());
            }
        }
        // A folder listed below two entries would be put out twice.
        if order.len() > entries.len() {
            return None;
        }
    }
    (order.len() == entries.len()).then_some(order)
}

/// An item among a folder's names: an entry (`below` is [`NOT_BELOW`]), or all that lies
/// below the folder entry `at` (`below`, the folder's index in the walk's list). 16 bytes:
/// a folder of 100,000 files holds as many at once.
struct Item {
    key: u64,
    at: u32,
    below: u32,
}

/// [`Item::below`] of an item that is an entry.
const NOT_BELOW: u32 = u32::MAX;

impl Item {
    /// The item's path as it sorts: `d/` for what lies below the folder `d`.
    fn sort_path<'a>(&self, entries: &'a [Entry]) -> impl Iterator<Item = &'a u8> {
        let slash: &[u8] = if self.below == NOT_BELOW { b"" } else { b"/" };
        entries[self.at as usize].path.0.iter().chain(slash)
    }
}

/// The items of the folder whose names are `names`, sorted. They are ordered first by the
/// eight bytes of their paths after the part all share, read as a number: a small array
/// that stays in cache, with a whole path compared only where those bytes are equal.
fn folder_items(entries: &[Entry], names: &Names, below: &HashMap<u32, u32>) -> Vec<Item> {
    let Some(first) = names.positions().next().and_then(|i| entries.get(i)) else {
        return Vec::new();
    };
    let shared = names.positions().fold(first.path.0.len(), |n, i| {
        first.path.0[..n]
            .iter()
            .zip(&entries[i].path.0)
            .take_while(|(a, b)| a == b)
            .count()
    });
    let mut items = Vec::with_capacity(names.positions().size_hint().0);
    for at in names.positions() {
        let path = &entries[at].path.0;
        let at = at as u32;
        items.push(Item {
            key: key_at(path, shared, b""),
            at,
            below: NOT_BELOW,
        });
        if let Some(&f) = below.get(&at) {
            items.push(Item {
                key: key_at(path, shared, b"/"),
                at,
                below: f,
            });
        }
    }
    items.sort_unstable_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then_with(|| a.sort_path(entries).cmp(b.sort_path(entries)))
    });
    items
}

/// The eight bytes of `path` then `tail` from `at` on, big-endian, zeros after a shorter
/// one. A path holds no NUL, so among paths equal before `at` a smaller key is a smaller
/// path, and equal keys leave the order to the whole path.
fn key_at(path: &[u8], at: usize, tail: &[u8]) -> u64 {
    let mut key = [0u8; 8];
    let rest = path.get(at..).unwrap_or_default().iter().chain(tail);
    for (k, b) in key.iter_mut().zip(rest) {
        *k = *b;
    }
    u64::from_be_bytes(key)
}

/// Moves each entry once along the cycles of the permutation `order`: afterwards
/// `entries[i]` is the entry that was at `order[i]`. A position is marked done by
/// pointing it at itself.
fn permute(entries: &mut [Entry], order: &mut [u32]) {
    for start in 0..order.len() {
        let mut cur = start;
        loop {
            let next = order[cur] as usize;
            order[cur] = cur as u32;
            if next == start || next == cur {
                break;
            }
            entries.swap(cur, next);
            cur = next;
        }
    }
}

/// A walked item's entry and, for a file of more than one link, its (device, inode).
pub type Stated = (Entry, Option<(u64, u64)>);

/// The entry of a walked item.
fn walked(path: RelPath, kind: EntryKind, stat: Stat, target: Option<RelPath>) -> Entry {
    Entry {
        path,
        kind,
        mode: stat.mode,
        mtime_ns: stat.mtime_ns,
        size: stat.size,
        ino: stat.ino,
        ctime_ns: stat.ctime_ns,
        hash: None,
        blobs: Default::default(),
        target: target.map(Box::new),
        link: None,
    }
}

/// Names of a folder stated at once, in parallel: the stat calls are most of a walk's
/// cost, and a cache folder holds tens of thousands of files.
const STAT_CHUNK: usize = 4096;

/// One walk: a folder at a time, its names read (getdents) then stated relative to the
/// open folder (fstatat: no path lookup from the root per file), then its sub-folders,
/// opened without following symlinks.
struct Walk<'a> {
    root: &'a Path,
    exclude: Option<&'a RelPath>,
    out: &'a mut ScanResult,
    /// Every folder walked: the sort's tree.
    folders: &'a mut Vec<Folder>,
}

impl Walk<'_> {
    /// Walks the contents of the open folder at `rel` (whose own entry is `dir`). Its names
    /// are stated a chunk at a time as they are read: a folder of 100,000 files never holds
    /// all its names at once beside their entries.
    fn folder(&mut self, fd: &rustix::fd::OwnedFd, rel: &RelPath, dir: Option<u32>) {
        let listing = match rustix::fs::Dir::read_from(fd) {
            Ok(d) => d,
            Err(e) => return self.problem(rel, e),
        };
        let first = self.out.entries.len();
        let mut names = Vec::with_capacity(STAT_CHUNK);
        for item in listing {
            match item {
                Ok(de) => {
                    let name = de.file_name().to_bytes();
                    if name != b"." && name != b".." {
                        names.push(name.to_vec());
                        if names.len() == STAT_CHUNK {
                            self.stat_chunk(fd, rel, &names);
                            names.clear();
                        }
                    }
                }
                Err(e) => {
                    self.problem(rel, e);
                    break;
                }
            }
        }
        self.stat_chunk(fd, rel, &names);
        drop(names);
        self.folders.push(Folder {
            dir,
            names: Names::Read(first..self.out.entries.len()),
        });
        self.descend(fd, first);
    }

    /// States `names` of the open folder at `rel`, records them, and walks the folders
    /// among them.
    fn names(&mut self, fd: &rustix::fd::OwnedFd, rel: &RelPath, names: &[Vec<u8>]) {
        let first = self.out.entries.len();
        for chunk in names.chunks(STAT_CHUNK) {
            self.stat_chunk(fd, rel, chunk);
        }
        self.descend(fd, first);
    }

    /// States `chunk`, names of the open folder at `rel`, in parallel, and records them.
    fn stat_chunk(&mut self, fd: &rustix::fd::OwnedFd, rel: &RelPath, chunk: &[Vec<u8>]) {
        use rayon::prelude::*;
        let problems = std::sync::Mutex::new(Vec::new());
        let stated: Vec<Stated> = chunk
            .par_iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let path = child(rel, name);
                if self.exclude == Some(&path) {
                    let msg = format!("{}: the repository itself", self.abs(&path).display());
                    problems
                        .lock()
                        .expect("problem list lock is never poisoned")
                        .push((i, (true, msg)));
                    return None;
                }
                match stat_at(fd, self.root, path, name) {
                    Ok(e) => Some(e),
                    Err(p) => {
                        problems
                            .lock()
                            .expect("problem list lock is never poisoned")
                            .push((i, p));
                        None
                    }
                }
            })
            .collect();
        for (e, key) in stated {
            if let Some(key) = key {
                self.out.link_keys.push((e.path.clone(), key));
            }
            self.out.entries.push(e);
        }
        let mut problems = problems
            .into_inner()
            .expect("problem list lock is never poisoned");
        problems.sort_unstable_by_key(|(i, _)| *i);
        for (_, (ignored, msg)) in problems {
            if ignored {
                self.out.ignored.push(msg);
            } else {
                self.out.errors.push(msg);
            }
        }
    }

    /// Walks the folders among the entries recorded from `first` on: those of the open
    /// folder `fd`.
    fn descend(&mut self, fd: &rustix::fd::OwnedFd, first: usize) {
        let folders: Vec<(u32, RelPath)> = self.out.entries[first..]
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == EntryKind::Dir)
            .map(|(i, e)| ((first + i) as u32, e.path.clone()))
            .collect();
        for (at, path) in folders {
            let name = &path.0[path.0.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
            match open_dir(fd, name) {
                Ok(sub) => self.folder(&sub, &path, Some(at)),
                Err(e) => self.problem(&path, e),
            }
        }
    }

    fn abs(&self, rel: &RelPath) -> std::path::PathBuf {
        self.root.join(rel.to_path())
    }

    /// A folder that could not be opened or read: gone (ignored) or an error that makes
    /// the snapshot incomplete.
    fn problem(&mut self, rel: &RelPath, e: rustix::io::Errno) {
        match folder_problem(self.root, rel, e) {
            (true, msg) => self.out.ignored.push(msg),
            (false, msg) => self.out.errors.push(msg),
        }
    }
}

/// A folder at `rel` that could not be opened or read: (whether it is only gone, which a
/// walk notes and goes on from; the message). Anything else makes the snapshot incomplete.
pub(crate) fn folder_problem(root: &Path, rel: &RelPath, e: rustix::io::Errno) -> (bool, String) {
    let path = root.join(rel.to_path());
    if e == rustix::io::Errno::NOENT {
        (
            true,
            format!("{}: vanished during the walk", path.display()),
        )
    } else {
        let e = std::io::Error::from(e);
        (false, format!("{}: {e}", path.display()))
    }
}

/// `rel/name`.
pub(crate) fn child(rel: &RelPath, name: &[u8]) -> RelPath {
    if rel.0.is_empty() {
        return RelPath(name.to_vec());
    }
    let mut p = Vec::with_capacity(rel.0.len() + 1 + name.len());
    p.extend_from_slice(&rel.0);
    p.push(b'/');
    p.extend_from_slice(name);
    RelPath(p)
}

/// Opens a folder for reading its names, never through a symlink at its last component.
pub(crate) fn open_dir<Fd: rustix::fd::AsFd, P: rustix::path::Arg>(
    at: Fd,
    path: P,
) -> rustix::io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// States `name` in the open folder `fd` (its path `path` below `root`).
/// Err((ignored, message)): `ignored` for special files and files that vanished,
/// otherwise an error that makes the snapshot incomplete.
// The stat fields' types differ by architecture: the conversions are not useless on all.
#[allow(clippy::useless_conversion)]
pub(crate) fn stat_at(
    fd: &rustix::fd::OwnedFd,
    root: &Path,
    path: RelPath,
    name: &[u8],
) -> std::result::Result<Stated, (bool, String)> {
    use rustix::fs::{AtFlags, FileType};
    let abs = || root.join(path.to_path());
    let name = std::ffi::OsStr::from_bytes(name);
    let st = match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => {
            return Err((
                true,
                format!("{}: vanished during the walk", abs().display()),
            ))
        }
        Err(e) => {
            let e = std::io::Error::from(e);
            return Err((false, format!("{}: {e}", abs().display())));
        }
    };
    let (kind, target) = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => (EntryKind::File, None),
        FileType::Directory => (EntryKind::Dir, None),
        FileType::Symlink => match rustix::fs::readlinkat(fd, name, Vec::new()) {
            Ok(t) => (EntryKind::Symlink, Some(RelPath(t.into_bytes()))),
            Err(e) => {
                let e = std::io::Error::from(e);
                return Err((false, format!("{}: {e}", abs().display())));
            }
        },
        _ => {
            return Err((
                true,
                format!("{}: not a file, folder or symlink", abs().display()),
            ))
        }
    };
    let link_key = (kind == EntryKind::File && st.st_nlink > 1)
        .then_some((u64::from(st.st_dev), u64::from(st.st_ino)));
    let ns = |s: i64, n| s * 1_000_000_000 + i64::try_from(n).unwrap_or(0);
    let stat = Stat {
        mode: st.st_mode & 0o7777,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns: ns(i64::from(st.st_mtime), st.st_mtime_nsec),
        ctime_ns: ns(i64::from(st.st_ctime), st.st_ctime_nsec),
        ino: u64::from(st.st_ino),
    };
    Ok((walked(path, kind, stat, target), link_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn paths(r: &ScanResult) -> Vec<String> {
        r.entries.iter().map(|e| e.path.display()).collect()
    }

    proptest::proptest! {
        /// Sorting by moving each entry along its permutation's cycles gives the order a
        /// plain sort gives, each entry whole (its other fields travel with its path).
        #[test]
        fn sorting_by_path_moves_each_entry_whole_into_path_order(
            names in proptest::collection::vec("[ab/.-]{0,6}", 0..200)
        ) {
            let entries: Vec<Entry> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let stat = Stat { mode: 0o644, size: i as u64, mtime_ns: i as i64, ctime_ns: 0, ino: i as u64 };
                    walked(RelPath(n.clone().into_bytes()), EntryKind::File, stat, None)
                })
                .collect();
            let mut want = entries.clone();
            want.sort_by(|a, b| a.path.cmp(&b.path).then(a.size.cmp(&b.size)));
            let mut got = entries;
            sort_by_path(&mut got, None);
            // Equal paths may come in any order: compare them as sets of whole entries.
            proptest::prop_assert!(got.windows(2).all(|w| w[0].path <= w[1].path));
            got.sort_by(|a, b| a.path.cmp(&b.path).then(a.size.cmp(&b.size)));
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// Lays `paths` (with every ancestor folder added) out as a walk of the whole root does:
    /// a folder's names together, in the order given, then each sub-folder's in turn.
    fn as_walked(paths: &[String]) -> (Vec<Entry>, Vec<Folder>) {
        let mut children: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut seen = std::collections::HashSet::new();
        for p in paths {
            let parts: Vec<&str> = p.split('/').collect();
            for n in 1..=parts.len() {
                let path = parts[..n].join("/");
                if seen.insert(path.clone()) {
                    children
                        .entry(parts[..n - 1].join("/"))
                        .or_default()
                        .push(path);
                }
            }
        }
        let (mut entries, mut folders) = (Vec::new(), Vec::new());
        fn walk(
            rel: &str,
            dir: Option<u32>,
            children: &std::collections::BTreeMap<String, Vec<String>>,
            entries: &mut Vec<Entry>,
            folders: &mut Vec<Folder>,
        ) {
            let first = entries.len();
            for path in &children[rel] {
                let kind = if children.contains_key(path) {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                };
                let stat = Stat {
                    mode: 0o644,
                    size: 0,
                    mtime_ns: 0,
                    ctime_ns: 0,
                    ino: 0,
                };
                entries.push(walked(RelPath(path.as_bytes().to_vec()), kind, stat, None));
            }
            folders.push(Folder {
                dir,
                names: Names::Read(first..entries.len()),
            });
            for at in first..entries.len() {
                if entries[at].kind == EntryKind::Dir {
                    let path = entries[at].path.display();
                    walk(&path, Some(at as u32), children, entries, folders);
                }
            }
        }
        children.entry(String::new()).or_default();
        walk("", None, &children, &mut entries, &mut folders);
        (entries, folders)
    }

    proptest::proptest! {
        /// A walked tree ordered folder by folder is in path order, with no fallback to a
        /// sort of the whole: sub-folders beside names that sort between `d` and `d/`
        /// (`d-x`, `d.json`), names that share more than eight bytes, deep folders.
        #[test]
        fn a_walked_tree_is_ordered_folder_by_folder(
            paths in proptest::collection::vec(
                "[ab0.-]{1,3}|[ab]{1,2}(/[ab0.-]{1,3}){1,3}|aaaaaaaa[ab0.-]{0,3}(/[ab0-]{1,2})?",
                0..80,
            ),
            reverse in proptest::bool::ANY,
        ) {
            let mut paths = paths;
            if reverse {
                paths.reverse();
            }
            let (entries, folders) = as_walked(&paths);
            let mut want: Vec<RelPath> = entries.iter().map(|e| e.path.clone()).collect();
            want.sort();
            let order = tree_order(&entries, &folders);
            proptest::prop_assert!(order.is_some(), "one tree covers every entry");
            let got: Vec<RelPath> = order
                .unwrap()
                .iter()
                .map(|&i| entries[i as usize].path.clone())
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn folders_that_are_not_one_tree_are_sorted_whole() {
        let (entries, mut folders) =
            as_walked(&["b/x".to_string(), "a-b".to_string(), "a/y".to_string()]);
        let mut want: Vec<RelPath> = entries.iter().map(|e| e.path.clone()).collect();
        want.sort();
        // A sub-folder's names listed under no folder entry: not one tree.
        folders[1].dir = None;
        assert!(tree_order(&entries, &folders).is_none());
        let mut sorted = entries.clone();
        sort_by_path(&mut sorted, Some(&folders));
        let got: Vec<RelPath> = sorted.iter().map(|e| e.path.clone()).collect();
        assert_eq!(got, want);
        // A folder whose names were not all walked: an entry is left out, sorted whole.
        let (entries, mut folders) = as_walked(&["b/x".to_string(), "b/z".to_string()]);
        if let Names::Read(names) = &mut folders[1].names {
            names.end -= 1;
        }
        assert!(tree_order(&entries, &folders).is_none());
    }

    #[test]
    fn a_walk_records_every_kind_in_path_order_and_skips_what_it_must() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("a-b")).unwrap();
        fs::create_dir_all(root.join("repo/data")).unwrap();
        fs::write(root.join("a/b/x.json"), b"{}").unwrap();
        fs::write(root.join("a-b/y.json"), b"[1]").unwrap();
        fs::write(root.join("repo/data/pack"), b"not walked").unwrap();
        fs::hard_link(root.join("a/b/x.json"), root.join("a/x-link.json")).unwrap();
        std::os::unix::fs::symlink("b", root.join("a/to-b")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("a/fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let r = scan(root, &[], Some(&root.join("repo")));
        assert_eq!(
            paths(&r),
            [
                "a",
                "a-b",
                "a-b/y.json",
                "a/b",
                "a/b/x.json",
                "a/to-b",
                "a/x-link.json",
                "dangling"
            ],
            "bytewise path order, the symlink not followed, the repository and the fifo left out"
        );
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let ignored = r.ignored.join("\n");
        assert!(ignored.contains("repo: the repository itself"), "{ignored}");
        assert!(
            ignored.contains("fifo: not a file, folder or symlink"),
            "{ignored}"
        );
        let get = |p: &str| r.entries.iter().find(|e| e.path.display() == p).unwrap();
        assert_eq!(get("a/to-b").kind, EntryKind::Symlink);
        assert_eq!(get("a/to-b").target.as_ref().unwrap().display(), "b");
        assert_eq!(
            get("dangling").target.as_ref().unwrap().display(),
            "/nowhere"
        );
        let x = get("a/b/x.json");
        let meta = fs::symlink_metadata(root.join("a/b/x.json")).unwrap();
        assert_eq!(Stat::of_entry(x), Stat::of(&meta), "the stat matches std's");
        assert_eq!(x.kind, EntryKind::File);
        let key = |p: &str| {
            r.link_keys
                .iter()
                .find(|(path, _)| path.display() == p)
                .map(|(_, k)| *k)
        };
        assert!(key("a/b/x.json").is_some(), "two links: a link key");
        assert_eq!(key("a/b/x.json"), key("a/x-link.json"));
        assert_eq!(key("a-b/y.json"), None);
        assert_eq!(r.link_keys.len(), 2);
        assert_eq!(get("a").kind, EntryKind::Dir);
    }

    /// The paths of `entries` in the order `tree` gives, and sorted.
    fn tree_and_sorted(entries: &[Entry], tree: &[Folder]) -> (Vec<String>, Vec<String>) {
        let order = tree_order(entries, tree).expect("one tree covers every entry");
        let got = order
            .iter()
            .map(|&i| entries[i as usize].path.display())
            .collect();
        let mut want: Vec<String> = entries.iter().map(|e| e.path.display()).collect();
        want.sort();
        (got, want)
    }

    #[test]
    fn includes_that_do_not_overlap_are_ordered_folder_by_folder() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["F/amazon", "F/ai", "F/ai-x", "F/a", "cached/s1", "cached-b"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "F/amazon/p1.json",
            "F/amazon/p-2.json",
            "F/ai/a.json",
            "F/ai-x/b.json",
            "F/a/c.json",
            "cached/s1/page.json",
            "cached-b/q.json",
            "x_state.json",
            "F/map.json",
        ] {
            fs::write(root.join(f), b"{}").unwrap();
        }
        let inc = |p: &str| RelPath(p.as_bytes().to_vec());
        let includes = [
            inc("F/amazon"),
            inc("F/ai"),
            inc("F/ai-x"),
            inc("F/map.json"),
            inc("cached"),
            inc("cached-b"),
            inc("x_state.json"),
        ];
        let (walked, tree) = walk_all(root, &includes, None);
        let tree = tree.expect("includes that do not overlap make one tree");
        let (got, want) = tree_and_sorted(&walked.entries, &tree);
        assert_eq!(got, want);
        assert_eq!(
            walked
                .entries
                .iter()
                .filter(|e| e.path.display() == "F")
                .count(),
            1,
            "an ancestor of several includes is walked once"
        );
        assert!(
            !got.iter().any(|p| p.starts_with("F/a/")),
            "F/a is not included"
        );
        let r = scan(root, &includes, None);
        assert_eq!(paths(&r), want);
        // Overlapping includes walk a path twice: no tree, sorted whole and kept once.
        let overlapping = [inc("F"), inc("F/ai/a.json")];
        let (walked, tree) = walk_all(root, &overlapping, None);
        assert!(tree.is_none_or(|t| tree_order(&walked.entries, &t).is_none()));
        let r = scan(root, &overlapping, None);
        let ps = paths(&r);
        assert!(ps.windows(2).all(|w| w[0] < w[1]), "{ps:?}");
        assert!(ps.contains(&"F/ai/a.json".to_string()));
    }

    #[test]
    fn includes_add_their_folders_once_and_a_missing_one_is_told() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::write(root.join("a/b/c/z.json"), b"{}").unwrap();
        fs::write(root.join("a/b/w.json"), b"{}").unwrap();
        fs::write(root.join("a/other.json"), b"{}").unwrap();
        let inc = |p: &str| RelPath(p.as_bytes().to_vec());
        let r = scan(
            root,
            &[inc("a/b"), inc("a/b/c/z.json"), inc("a/gone")],
            None,
        );
        assert_eq!(
            paths(&r),
            ["a", "a/b", "a/b/c", "a/b/c/z.json", "a/b/w.json"],
            "overlapping includes walk a path twice, kept once; a/other.json is not included"
        );
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(
            r.ignored
                .iter()
                .any(|m| m.contains("a/gone: vanished during the walk")),
            "{:?}",
            r.ignored
        );
        // A file given as the include is recorded on its own.
        let one = scan(root, &[inc("a/other.json")], None);
        assert_eq!(paths(&one), ["a", "a/other.json"]);
    }
}
