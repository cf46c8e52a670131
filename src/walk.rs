//! Walking a tree as a stream: windows of entries in path order, so a snapshot never holds
//! the whole tree's entries. A folder's names are read (getdents) and put in the order
//! their paths sort among all paths before any is stated; they are then stated a window
//! at a time (fstatat relative to the open folder, in parallel) and a sub-folder's
//! contents are walked where its `name/` sorts.

use std::cmp::Ordering;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::fs::FileType;

use crate::manifest::{EntryKind, RelPath};
use crate::scan::{self, Stated};

/// Entries put out at once, and stated at once in parallel.
pub const WINDOW: usize = 4096;

/// A walk of a tree, a window of entries at a time in path order ([`Walker::next_window`]).
pub struct Walker(Source);

enum Source {
    /// The whole root, streamed folder by folder.
    Stream(Box<Stream>),
    /// A list of includes: walked whole first ([`scan::scan`]), then handed out in windows.
    Whole {
        entries: std::vec::IntoIter<crate::manifest::Entry>,
        link_keys: std::iter::Peekable<std::vec::IntoIter<(RelPath, (u64, u64))>>,
        errors: Vec<String>,
        ignored: Vec<String>,
    },
}

impl Walker {
    /// Starts walking `includes` of `root` (empty: the whole root, streamed), skipping
    /// `exclude` (the repository) with its contents.
    pub fn start(root: &Path, includes: &[RelPath], exclude: Option<&Path>) -> Walker {
        if includes.is_empty() {
            return Walker(Source::Stream(Box::new(Stream::start(root, exclude))));
        }
        let all = scan::scan(root, includes, exclude);
        Walker(Source::Whole {
            entries: all.entries.into_iter(),
            link_keys: all.link_keys.into_iter().peekable(),
            errors: all.errors,
            ignored: all.ignored,
        })
    }

    /// The next entries in path order, each with its (device, inode) when it is a regular
    /// file of more than one link; None at the end.
    pub fn next_window(&mut self) -> Option<Vec<Stated>> {
        match &mut self.0 {
            Source::Stream(s) => s.next_window(),
            Source::Whole {
                entries, link_keys, ..
            } => {
                let out: Vec<Stated> = entries
                    .take(WINDOW)
                    .map(|e| {
                        while link_keys.next_if(|(p, _)| *p < e.path).is_some() {}
                        let key = link_keys.next_if(|(p, _)| *p == e.path).map(|(_, k)| k);
                        (e, key)
                    })
                    .collect();
                (!out.is_empty()).then_some(out)
            }
        }
    }

    /// What the walk met so far: (unreadable folders and entries, which make a snapshot
    /// incomplete; entries skipped by design).
    pub fn problems(&mut self) -> (Vec<String>, Vec<String>) {
        match &mut self.0 {
            Source::Stream(s) => (
                std::mem::take(&mut s.errors),
                std::mem::take(&mut s.ignored),
            ),
            Source::Whole {
                errors, ignored, ..
            } => (std::mem::take(errors), std::mem::take(ignored)),
        }
    }
}

/// The streamed walk of a whole root.
struct Stream {
    root: std::path::PathBuf,
    exclude: Option<RelPath>,
    /// The folders being walked, the root first, the deepest last.
    stack: Vec<Frame>,
    errors: Vec<String>,
    ignored: Vec<String>,
}

/// A folder being walked: its names in order and how far the walk has come.
struct Frame {
    fd: OwnedFd,
    rel: RelPath,
    /// The bytes every name begins with (`amazon_B0` of `amazon_B0…json`), held once.
    prefix: Vec<u8>,
    /// The rest of every name, one after the other.
    names: Vec<u8>,
    items: Vec<Item>,
    next: usize,
    /// Names stated as folders whose contents' item has not come yet (their places in
    /// `names`: start and length, as the name that is the prefix itself has an empty rest
    /// that starts where the next one's does): a few at most, as `d/` follows `d` closely.
    /// A folder's contents are walked only when its name is here.
    found: Vec<(u32, u16)>,
}

/// One of a folder's names in path order: the name's own entry, or (`below`) everything
/// below it, which sorts as `name/`. 8 bytes: a folder of 100,000 names holds as many.
/// `start` and `len` place the name's rest after the folder's common prefix.
#[derive(Clone, Copy)]
struct Item {
    start: u32,
    len: u16,
    below: bool,
}

impl Item {
    fn name(self, names: &[u8]) -> &[u8] {
        &names[self.start as usize..self.start as usize + usize::from(self.len)]
    }

    /// What follows the name as the item sorts: `/` for what lies below a folder.
    fn tail(self) -> &'static [u8] {
        if self.below {
            b"/"
        } else {
            b""
        }
    }
}

impl Frame {
    /// The whole name of item `it` (on the stack unless longer than 64 bytes).
    fn name(&self, it: Item) -> smallvec::SmallVec<[u8; 64]> {
        let mut name = smallvec::SmallVec::from_slice(&self.prefix);
        name.extend_from_slice(it.name(&self.names));
        name
    }

    /// Whether item `it` is named `name`.
    fn is_named(&self, it: Item, name: &[u8]) -> bool {
        name.strip_prefix(self.prefix.as_slice()) == Some(it.name(&self.names))
    }
}

/// A folder's names as they are read: the bytes they all begin with, once, and the rest of
/// each; an item for each name (and one for what lies below a folder). Names of one
/// folder mostly share a head (`amazon_B0` in a folder of 100,000 `amazon_B0…json`): held
/// once, the names take 13 bytes each instead of 22. Only the head is taken out, so the
/// rests sort as the whole names do.
#[derive(Default)]
struct Names {
    prefix: Vec<u8>,
    rests: Vec<u8>,
    items: Vec<Item>,
}

impl Names {
    /// Adds `name` (and, when it `may_hold` contents, the item of what lies below it);
    /// false when the folder has more names than the items' 32-bit places can hold.
    fn push(&mut self, name: &[u8], may_hold: bool) -> bool {
        if self.items.is_empty() {
            self.prefix = name.to_vec();
        }
        let common = self
            .prefix
            .iter()
            .zip(name)
            .take_while(|(a, b)| a == b)
            .count();
        if common < self.prefix.len() && !self.shorten_prefix(common) {
            return false;
        }
        let rest = &name[common..];
        let (Ok(start), Ok(len)) = (u32::try_from(self.rests.len()), u16::try_from(rest.len()))
        else {
            return false;
        };
        self.rests.extend_from_slice(rest);
        self.items.push(Item {
            start,
            len,
            below: false,
        });
        if may_hold {
            self.items.push(Item {
                start,
                len,
                below: true,
            });
        }
        true
    }

    /// Keeps the first `keep` bytes of the prefix: the bytes after them go back to the head
    /// of every rest. Each name read puts at most one byte back per byte of the first name,
    /// so this is done a few times per folder, mostly while few names are read. False, with
    /// nothing changed, when the rests would no longer fit the items' places.
    fn shorten_prefix(&mut self, keep: usize) -> bool {
        let moved = &self.prefix[keep..];
        let names = self.items.iter().filter(|it| !it.below).count();
        let longest = self.items.iter().map(|it| it.len).max().unwrap_or(0);
        let fits = self
            .rests
            .len()
            .checked_add(moved.len() * names)
            .is_some_and(|n| u32::try_from(n).is_ok())
            && usize::from(longest) + moved.len() <= usize::from(u16::MAX);
        if !fits {
            return false;
        }
        let mut rests = Vec::with_capacity(self.rests.len() + moved.len() * names);
        // A folder's item of what lies below follows its name's item, and shares its rest.
        let mut start = 0;
        for it in &mut self.items {
            if !it.below {
                start = rests.len() as u32;
                rests.extend_from_slice(moved);
                rests.extend_from_slice(it.name(&self.rests));
            }
            it.start = start;
            it.len += moved.len() as u16;
        }
        self.rests = rests;
        self.prefix.truncate(keep);
        true
    }
}

/// How two items of one folder sort: by name, and `name/` where the item is what lies below
/// a folder (`-` and `.` sort before `/`, so `d-x` and `d.json` come between `d` and its
/// contents).
fn item_order(names: &[u8], a: Item, b: Item) -> Ordering {
    let (x, y) = (a.name(names), b.name(names));
    if !a.below && !b.below {
        return x.cmp(y);
    }
    x.iter().chain(a.tail()).cmp(y.iter().chain(b.tail()))
}

impl Stream {
    fn start(root: &Path, exclude: Option<&Path>) -> Stream {
        let exclude = exclude
            .and_then(|x| x.strip_prefix(root).ok())
            .filter(|r| !r.as_os_str().is_empty())
            .map(|r| RelPath(r.as_os_str().as_bytes().to_vec()));
        let mut s = Stream {
            root: root.to_path_buf(),
            exclude,
            stack: Vec::new(),
            errors: Vec::new(),
            ignored: Vec::new(),
        };
        match scan::open_dir(rustix::fs::CWD, root) {
            Ok(fd) => s.enter(fd, RelPath::default()),
            Err(e) => s.problem(&RelPath::default(), e),
        }
        s
    }

    /// Reads the names of the open folder `fd` (at `rel`) and puts them in order.
    fn enter(&mut self, fd: OwnedFd, rel: RelPath) {
        let listing = match rustix::fs::Dir::read_from(&fd) {
            Ok(d) => d,
            Err(e) => return self.problem(&rel, e),
        };
        let mut read = Names::default();
        for de in listing {
            let de = match de {
                Ok(de) => de,
                Err(e) => {
                    self.problem(&rel, e);
                    break;
                }
            };
            let name = de.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // A folder (or a name whose kind the file system does not say) may have
            // contents: their place is kept; a name that is no folder puts out none.
            let may_hold = matches!(de.file_type(), FileType::Directory | FileType::Unknown);
            if !read.push(name, may_hold) {
                self.errors.push(format!(
                    "{}: too many names to walk",
                    self.root.join(rel.to_path()).display()
                ));
                break;
            }
        }
        let Names {
            prefix,
            rests: mut names,
            mut items,
        } = read;
        items.sort_unstable_by(|&a, &b| item_order(&names, a, b));
        names.shrink_to_fit();
        items.shrink_to_fit();
        self.stack.push(Frame {
            fd,
            rel,
            prefix,
            names,
            items,
            next: 0,
            found: Vec::new(),
        });
    }

    fn next_window(&mut self) -> Option<Vec<Stated>> {
        let mut out: Vec<Stated> = Vec::with_capacity(WINDOW);
        while out.len() < WINDOW {
            let Some(frame) = self.stack.last_mut() else {
                break;
            };
            // The names up to the next item that is a folder's contents, at most as many as
            // the window has room for.
            let from = frame.next;
            let room = WINDOW - out.len();
            let upto = frame.items[from..]
                .iter()
                .take(room)
                .position(|it| it.below)
                .map_or((from + room).min(frame.items.len()), |i| from + i);
            if upto > from {
                frame.next = upto;
                self.stat_items(from..upto, &mut out);
                continue;
            }
            let Some(&item) = frame.items.get(from) else {
                // The folder is done.
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            // The contents of a folder: walked now if its name was stated a folder.
            let Some(at) = frame
                .found
                .iter()
                .position(|&s| s == (item.start, item.len))
            else {
                continue;
            };
            frame.found.swap_remove(at);
            let name = frame.name(item);
            let path = scan::child(&frame.rel, &name);
            let opened = scan::open_dir(&frame.fd, std::ffi::OsStr::from_bytes(&name));
            match opened {
                Ok(fd) => self.enter(fd, path),
                Err(e) => self.problem(&path, e),
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// States the items `range` of the deepest folder (names, not contents) in parallel,
    /// and puts their entries out in order.
    fn stat_items(&mut self, range: std::ops::Range<usize>, out: &mut Vec<Stated>) {
        use rayon::prelude::*;
        let frame = self.stack.last_mut().expect("a frame is there");
        let exclude = self.exclude.as_ref();
        let root = &self.root;
        let frame_ref = &*frame;
        let results: Vec<std::result::Result<Stated, (bool, String)>> = frame_ref.items[range]
            .par_iter()
            .map(|&it| {
                let name = frame_ref.name(it);
                let path = scan::child(&frame_ref.rel, &name);
                if exclude == Some(&path) {
                    let msg = format!(
                        "{}: the repository itself",
                        root.join(path.to_path()).display()
                    );
                    return Err((true, msg));
                }
                scan::stat_at(&frame_ref.fd, root, path, &name)
            })
            .collect();
        for got in results {
            match got {
                Ok(stated) => {
                    if stated.0.kind == EntryKind::Dir {
                        let path = &stated.0.path;
                        let name_start = path.0.len() - path.file_name().len();
                        let name = &path.0[name_start..];
                        // The item of its contents, if the listing kept one.
                        let start = frame
                            .items
                            .iter()
                            .skip(frame.next)
                            .take_while(|it| frame_name_le(frame, **it, name))
                            .find(|it| it.below && frame.is_named(**it, name))
                            .map(|it| (it.start, it.len));
                        match start {
                            Some(s) => frame.found.push(s),
                            None => self.errors.push(format!(
                                "{}: became a folder during the walk; its contents are not in this snapshot",
                                root.join(path.to_path()).display()
                            )),
                        }
                    }
                    out.push(stated);
                }
                Err((true, msg)) => self.ignored.push(msg),
                Err((false, msg)) => self.errors.push(msg),
            }
        }
    }

    /// A folder that could not be opened or read: gone (ignored) or an error that makes
    /// the snapshot incomplete.
    fn problem(&mut self, rel: &RelPath, e: rustix::io::Errno) {
        match scan::folder_problem(&self.root, rel, e) {
            (true, msg) => self.ignored.push(msg),
            (false, msg) => self.errors.push(msg),
        }
    }
}

/// Whether item `it` of `frame` sorts no later than `name/`: where the search for the
/// contents' item of `name` may stop.
fn frame_name_le(frame: &Frame, it: Item, name: &[u8]) -> bool {
    let whole = frame.prefix.iter().chain(it.name(&frame.names));
    whole.chain(it.tail()).cmp(name.iter().chain(b"/")) != Ordering::Greater
}

#[cfg(test)]
mod tests {
    //! The streamed walk: windows in path order that make exactly the whole walk's list,
    //! on real trees with names that sort between a folder and its contents.
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// Every window of a walk, joined, with the link keys.
    fn streamed(root: &Path, exclude: Option<&Path>) -> (Vec<scan::Stated>, usize, Vec<String>) {
        let mut w = Walker::start(root, &[], exclude);
        let mut all = Vec::new();
        let mut windows = 0;
        while let Some(win) = w.next_window() {
            assert!(!win.is_empty() && win.len() <= WINDOW);
            windows += 1;
            all.extend(win);
        }
        let (errors, ignored) = w.problems();
        assert!(errors.is_empty(), "{errors:?}");
        (all, windows, ignored)
    }

    fn assert_same_as_scan(root: &Path, exclude: Option<&Path>) -> usize {
        let whole = scan::scan(root, &[], exclude);
        let (got, windows, ignored) = streamed(root, exclude);
        let paths: Vec<String> = got.iter().map(|(e, _)| e.path.display()).collect();
        let want: Vec<String> = whole.entries.iter().map(|e| e.path.display()).collect();
        assert_eq!(paths, want);
        for ((e, _), w) in got.iter().zip(&whole.entries) {
            assert_eq!(e, w, "{}", e.path.display());
        }
        let keys: Vec<(RelPath, (u64, u64))> = got
            .iter()
            .filter_map(|(e, k)| k.map(|k| (e.path.clone(), k)))
            .collect();
        assert_eq!(keys, whole.link_keys);
        assert_eq!(ignored, whole.ignored);
        windows
    }

    /// Names read one by one keep their common head once, whatever order they come in and
    /// however late a name that shares less of it comes: each name is its head and its
    /// rest, a folder's item of contents follows its name's, and the rests sort as the
    /// whole names do.
    #[test]
    fn a_folders_names_keep_their_common_head_once() {
        let mut names: Vec<String> = (0..500)
            .map(|i| format!("amazon_B0{:07}.json", i * 7_919_993 % 9_999_991))
            .collect();
        names.push("amazon_B1.json".into());
        names.push("amazon_".into());
        names.push("amazon_B0".into());
        names.insert(300, "index.json".into());
        names.push("a".into());
        let mut read = Names::default();
        let mut heads = Vec::new();
        for (i, n) in names.iter().enumerate() {
            assert!(read.push(n.as_bytes(), i % 50 == 0));
            heads.push(read.prefix.len());
        }
        // The head shrinks as names that share less of it come, and never grows.
        assert!(heads.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(heads[298], "amazon_B0".len());
        assert_eq!(read.prefix, b"");
        let whole = |it: Item| [read.prefix.as_slice(), it.name(&read.rests)].concat();
        let mut at = 0;
        for (i, n) in names.iter().enumerate() {
            assert_eq!(whole(read.items[at]), n.as_bytes(), "name {i}");
            assert!(!read.items[at].below);
            at += 1;
            if i % 50 == 0 {
                assert!(read.items[at].below && whole(read.items[at]) == n.as_bytes());
                at += 1;
            }
        }
        assert_eq!(at, read.items.len());
        // With a head kept (no odd name), the rests sort as the whole names.
        let mut read = Names::default();
        for n in names.iter().filter(|n| n.starts_with("amazon_B0")) {
            assert!(read.push(n.as_bytes(), false));
        }
        assert_eq!(read.prefix, b"amazon_B0");
        let mut items = read.items.clone();
        items.sort_unstable_by(|&a, &b| item_order(&read.rests, a, b));
        let sorted: Vec<Vec<u8>> = items
            .iter()
            .map(|&it| [read.prefix.as_slice(), it.name(&read.rests)].concat())
            .collect();
        let mut want: Vec<Vec<u8>> = names
            .iter()
            .filter(|n| n.starts_with("amazon_B0"))
            .map(|n| n.as_bytes().to_vec())
            .collect();
        want.sort();
        assert_eq!(sorted, want);
    }

    /// Folders whose names are each other's heads (`d` is the head of every name here, so
    /// its rest is empty and starts where the next name's does): each folder's contents
    /// are walked under it, as the whole walk lists them, whatever order the names are
    /// read in.
    #[test]
    fn folders_named_by_the_common_head_are_walked_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for order in [["d", "d-x", "dd", "d.json"], ["dd", "d.json", "d-x", "d"]] {
            let _ = fs::remove_dir_all(&root);
            fs::create_dir(&root).unwrap();
            for name in order {
                if name.ends_with(".json") {
                    fs::write(root.join(name), name).unwrap();
                } else {
                    fs::create_dir(root.join(name)).unwrap();
                    fs::write(root.join(name).join("in"), name).unwrap();
                    fs::create_dir(root.join(name).join("sub")).unwrap();
                }
            }
            assert_same_as_scan(&root, None);
            let (got, _, _) = streamed(&root, None);
            let files = got
                .iter()
                .filter(|(e, _)| e.kind == EntryKind::File)
                .count();
            assert_eq!(files, 4, "{order:?}");
        }
    }

    #[test]
    fn names_that_sort_between_a_folder_and_its_contents_keep_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["d", "d/e", "d-x", "d.x", "d0", "a", "a/b/c", "a.b", "z"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "d/1.json",
            "d-x/f",
            "d.json",
            "d/e/g",
            "d0/h",
            "a/b/c/deep",
            "a/b.json",
            "a.b/i",
            "a-",
            "d/e-f",
            "z/last",
            "zz",
        ] {
            fs::write(r.join(f), f.as_bytes()).unwrap();
        }
        fs::hard_link(r.join("d.json"), r.join("d/e/link")).unwrap();
        symlink("d/1.json", r.join("sym")).unwrap();
        symlink("nowhere", r.join("d/dangling")).unwrap();
        assert_same_as_scan(r, None);
    }

    #[test]
    fn a_folder_larger_than_a_window_streams_in_order_and_the_repository_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let big = r.join("amazon_cache");
        fs::create_dir(&big).unwrap();
        for i in 0..(WINDOW * 2 + 37) {
            // Names whose order differs from their creation order.
            fs::write(
                big.join(format!("B{:08}.json", (i * 7919) % 100_000)),
                b"{}",
            )
            .unwrap();
        }
        fs::create_dir_all(r.join("amazon_cache.d/sub")).unwrap();
        fs::write(r.join("amazon_cache.d/sub/x"), b"x").unwrap();
        fs::create_dir_all(r.join("repo/data")).unwrap();
        fs::write(r.join("repo/data/pack"), b"p").unwrap();
        let windows = assert_same_as_scan(r, Some(&r.join("repo")));
        assert!(windows >= 3, "{windows} windows");
        let (got, _, ignored) = streamed(r, Some(&r.join("repo")));
        assert!(got
            .iter()
            .all(|(e, _)| !e.path.starts_with(&RelPath::from("repo"))));
        assert_eq!(ignored.len(), 1, "{ignored:?}");
    }

    #[test]
    fn an_unreadable_folder_is_an_error_and_the_rest_is_walked() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("ok")).unwrap();
        fs::write(r.join("ok/f"), b"f").unwrap();
        fs::create_dir_all(r.join("shut")).unwrap();
        fs::write(r.join("shut/hidden"), b"h").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(r.join("shut"), fs::Permissions::from_mode(0o000)).unwrap();
        let mut w = Walker::start(r, &[], None);
        let mut paths = Vec::new();
        while let Some(win) = w.next_window() {
            paths.extend(win.into_iter().map(|(e, _)| e.path.display()));
        }
        let (errors, _) = w.problems();
        fs::set_permissions(r.join("shut"), fs::Permissions::from_mode(0o755)).unwrap();
        // Root reads any folder: the check holds only for other users.
        if paths.iter().any(|p| p == "shut/hidden") {
            assert!(errors.is_empty());
        } else {
            assert_eq!(paths, ["ok", "ok/f", "shut"]);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("shut"), "{errors:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any tree of short names over the bytes that sort around `/` walks the same streamed
        /// as whole.
        #[test]
        fn any_tree_streams_as_the_whole_walk_lists_it(
            paths in proptest::collection::vec("[ab.-]{1,3}(/[ab.-]{1,3}){0,3}", 1..60)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let r = dir.path();
            for p in &paths {
                let parts: Vec<&str> = p.split('/').filter(|c| *c != "." && *c != "..").collect();
                if parts.is_empty() {
                    continue;
                }
                let path = r.join(parts.join("/"));
                // A name already taken as a file cannot be a folder: such paths are left out.
                if let Some(parent) = path.parent() {
                    if fs::create_dir_all(parent).is_err() {
                        continue;
                    }
                }
                if !path.exists() {
                    let _ = fs::write(&path, p.as_bytes());
                }
            }
            assert_same_as_scan(r, None);
        }
    }
}
