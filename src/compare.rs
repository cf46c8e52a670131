//! Comparing two folder trees exactly (content, mode, mtime, symlink targets, empty folders):
//! the oracle behind the demo's and the tests' round-trip checks.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What one side holds at a path.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        mtime_ns: i64,
        hash: [u8; 32],
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: Vec<u8>,
    },
    Other,
}

fn walk(root: &Path, with_dir_mtime: bool) -> std::io::Result<BTreeMap<Vec<u8>, (Node, i64)>> {
    let mut out = BTreeMap::new();
    for de in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let de = de.map_err(std::io::Error::other)?;
        let rel = de
            .path()
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .as_os_str()
            .as_bytes()
            .to_vec();
        let m = de.path().symlink_metadata()?;
        let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
        let node = if m.file_type().is_symlink() {
            Node::Symlink {
                target: std::fs::read_link(de.path())?
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            }
        } else if m.is_dir() {
            Node::Dir {
                mode: m.mode() & 0o7777,
            }
        } else if m.is_file() {
            Node::File {
                mode: m.mode() & 0o7777,
                mtime_ns: mtime,
                // O_NOATIME: comparing must not disturb the access times LRU relies on.
                hash: *blake3::Hasher::new()
                    .update_reader(crate::fsutil::open_noatime(de.path())?)?
                    .finalize()
                    .as_bytes(),
            }
        } else {
            Node::Other
        };
        let dir_mtime = if with_dir_mtime && matches!(node, Node::Dir { .. }) {
            mtime
        } else {
            0
        };
        out.insert(rel, (node, dir_mtime));
    }
    Ok(out)
}

/// Lists every difference between the trees under `a` and `b` (empty when identical).
/// `dir_mtimes` also compares folder modification times.
///
/// # Errors
/// I/O errors while walking either tree.
pub fn compare_trees(a: &Path, b: &Path, dir_mtimes: bool) -> std::io::Result<Vec<String>> {
    let left = walk(a, dir_mtimes)?;
    let right = walk(b, dir_mtimes)?;
    let mut diffs = Vec::new();
    for (path, node) in &left {
        let name = String::from_utf8_lossy(path);
        match right.get(path) {
            None => diffs.push(format!("{name}: only in {}", a.display())),
            Some(other) if other != node => {
                diffs.push(format!("{name}: differs ({:?} vs {:?})", node, other))
            }
            _ => {}
        }
    }
    for path in right.keys() {
        if !left.contains_key(path) {
            diffs.push(format!(
                "{}: only in {}",
                String::from_utf8_lossy(path),
                b.display()
            ));
        }
    }
    Ok(diffs)
}
