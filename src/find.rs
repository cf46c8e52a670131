//! Every version of one path across snapshots, newest first, with the versions where the
//! content changed marked; the path may also be a glob or a bare file name, which match in
//! any folder. Pure: takes loaded manifests, reads nothing.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::id::BlobId;
use crate::manifest::{EntryKind, Manifest, RelPath};

/// One snapshot's version of the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// The snapshot holding it.
    pub snapshot: BlobId,
    /// The snapshot's recorded time.
    pub time: DateTime<FixedOffset>,
    /// The path relative to that snapshot's root.
    pub path: RelPath,
    /// File, dir or symlink.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Content hash (files).
    pub hash: Option<BlobId>,
    /// Link target (symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<RelPath>,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// True when the content (kind, hash, link target) differs from the next older version
    /// listed, or when this is the oldest version listed.
    pub changed: bool,
}

/// The path `query` names inside snapshot `m`: a relative query is taken as relative to the
/// snapshot root; an absolute one must lie under the snapshot's recorded root. `.` components
/// and trailing slashes are ignored; `..` never matches. `None` when it names nothing
/// representable in `m` (another root, or the root itself).
pub fn path_in(m: &Manifest, query: &Path) -> Option<RelPath> {
    let rel = if query.is_absolute() {
        query.strip_prefix(Path::new(&m.root)).ok()?
    } else {
        query
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.as_bytes()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(RelPath(parts.join(&b'/')))
}

/// What `find` looks for.
#[derive(Debug, Clone)]
pub enum Query {
    /// One path, relative to the snapshot root or absolute under it (a query with a `/`
    /// and no glob character).
    Exact(std::path::PathBuf),
    /// A bare file name (no `/`, no glob character): that name in any folder.
    Name(Vec<u8>),
    /// A glob (`*`, `?`, `[...]`, `{a,b}`; `*` stays within one folder, `**` crosses
    /// folders). Without a `/` it is matched against file names, in any folder; with one,
    /// against whole paths relative to the snapshot root (or absolute paths, for a pattern
    /// that starts with `/`).
    Glob {
        /// The compiled pattern.
        matcher: globset::GlobMatcher,
        /// Matched against file names only.
        name_only: bool,
        /// Matched against absolute paths (root + relative path).
        absolute: bool,
    },
}

impl Query {
    /// Reads `find`'s argument: a glob when it holds a glob character, a bare name when it
    /// holds no `/`, else an exact path.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] for a glob that does not parse, naming it.
    pub fn parse(query: &Path) -> crate::Result<Query> {
        let bytes = query.as_os_str().as_bytes();
        let text = query.to_string_lossy();
        let is_glob = bytes.iter().any(|b| b"*?[{".contains(b));
        let has_slash = bytes.contains(&b'/');
        if is_glob {
            let glob = globset::GlobBuilder::new(&text)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| crate::Error::Invalid(format!("find pattern {text:?}: {e}")))?;
            return Ok(Query::Glob {
                matcher: glob.compile_matcher(),
                name_only: !has_slash,
                absolute: query.is_absolute(),
            });
        }
        if !has_slash && !bytes.is_empty() && bytes != b"." && bytes != b".." {
            return Ok(Query::Name(bytes.to_vec()));
        }
        Ok(Query::Exact(query.to_path_buf()))
    }

    /// Whether the snapshot's entries need reading at all: an exact path outside its root
    /// cannot be in it.
    pub fn may_match(&self, m: &Manifest) -> bool {
        match self {
            Query::Exact(p) => path_in(m, p).is_some(),
            _ => true,
        }
    }

    /// The entries of `m` the query names, in manifest order.
    pub fn entries<'m>(&self, m: &'m Manifest) -> Vec<&'m crate::manifest::Entry> {
        match self {
            Query::Exact(p) => match path_in(m, p) {
                Some(path) => m.entries.iter().filter(|e| e.path == path).collect(),
                None => Vec::new(),
            },
            Query::Name(name) => m
                .entries
                .iter()
                .filter(|e| e.path.file_name() == name.as_slice())
                .collect(),
            Query::Glob {
                matcher,
                name_only,
                absolute,
            } => m
                .entries
                .iter()
                .filter(|e| {
                    if *name_only {
                        matcher.is_match(Path::new(std::ffi::OsStr::from_bytes(e.path.file_name())))
                    } else if *absolute {
                        matcher.is_match(Path::new(&m.root).join(e.path.to_path()))
                    } else {
                        matcher.is_match(e.path.to_path())
                    }
                })
                .collect(),
        }
    }
}

/// Every version of `query` in `snapshots` (loaded with their entries, any order), newest
/// first (ties by id). One row per snapshot that holds the path. Pure.
pub fn versions(snapshots: &[(BlobId, Manifest)], query: &Path) -> Vec<Version> {
    versions_of(snapshots, &Query::Exact(query.to_path_buf()))
}

/// Every version of every path `query` names in `snapshots` (any order): by path, then
/// newest first (ties by id); `changed` is judged per path. Pure.
pub fn versions_of(snapshots: &[(BlobId, Manifest)], query: &Query) -> Vec<Version> {
    let mut out: Vec<Version> = snapshots
        .iter()
        .flat_map(|(id, m)| {
            query.entries(m).into_iter().map(|e| Version {
                snapshot: *id,
                time: m.time,
                path: e.path.clone(),
                kind: e.kind,
                size: e.size,
                hash: e.hash,
                target: e.target.as_deref().cloned(),
                mode: e.mode,
                mtime_ns: e.mtime_ns,
                changed: false,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then(a.time.cmp(&b.time))
            .then(a.snapshot.cmp(&b.snapshot))
    });
    let mut previous: Option<(&RelPath, EntryKind, Option<BlobId>, Option<RelPath>)> = None;
    let mut changed = Vec::with_capacity(out.len());
    for v in &out {
        let content = (&v.path, v.kind, v.hash, v.target.clone());
        changed.push(previous.as_ref() != Some(&content));
        previous = Some(content);
    }
    for (v, c) in out.iter_mut().zip(changed) {
        v.changed = c;
    }
    // Newest first within each path, paths in order.
    let mut grouped: Vec<Vec<Version>> = Vec::new();
    for v in out {
        match grouped.last_mut() {
            Some(g) if g[0].path == v.path => g.push(v),
            _ => grouped.push(vec![v]),
        }
    }
    grouped
        .into_iter()
        .flat_map(|mut g| {
            g.reverse();
            g
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Entry, SnapshotStats, Tree, MANIFEST_VERSION};

    fn snap(n: u8, time: &str, content: Option<&str>) -> (BlobId, Manifest) {
        let entries = content
            .map(|c| Entry {
                path: RelPath::from("d/x.json"),
                kind: EntryKind::File,
                mode: 0o644,
                mtime_ns: 1,
                size: c.len() as u64,
                ino: 0,
                ctime_ns: 0,
                hash: Some(BlobId::of(c.as_bytes())),
                blobs: smallvec::smallvec![BlobId::of(c.as_bytes())],
                target: None,
                link: None,
            })
            .into_iter()
            .collect();
        (
            BlobId([n; 32]),
            Manifest {
                version: MANIFEST_VERSION,
                time: DateTime::parse_from_rfc3339(time).unwrap(),
                kind: None,
                hostname: "h".into(),
                root: "/cache/root".into(),
                paths: vec!["/cache/root".into()],
                tags: vec![],
                parent: None,
                repaired_from: None,
                complete: true,
                warnings: vec![],
                summary: SnapshotStats::default(),
                tree: Tree::default(),
                changes: None,
                entries,
            },
        )
    }

    #[test]
    fn globs_and_bare_names_match_in_any_folder() {
        let mut a = snap(1, "2026-11-01T00:00:00Z", Some("a"));
        let mut extra = a.1.entries[0].clone();
        extra.path = RelPath::from("e/x.json");
        a.1.entries.push(extra);
        let mut other = a.1.entries[0].clone();
        other.path = RelPath::from("d/sub/linking_map.json");
        a.1.entries.push(other);
        let b = snap(2, "2026-11-02T00:00:00Z", Some("b"));
        let snaps = vec![a, b];
        let paths = |q: &str| -> Vec<(String, u8, bool)> {
            versions_of(&snaps, &Query::parse(Path::new(q)).unwrap())
                .iter()
                .map(|v| (v.path.display(), v.snapshot.0[0], v.changed))
                .collect()
        };
        assert_eq!(
            paths("x.json"),
            [
                ("d/x.json".to_string(), 2, true),
                ("d/x.json".to_string(), 1, true),
                ("e/x.json".to_string(), 1, true)
            ]
        );
        assert_eq!(paths("**/linking_map.json").len(), 1);
        assert_eq!(paths("*.json").len(), 4);
        assert_eq!(paths("d/*.json").len(), 2, "* stays within one folder");
        assert_eq!(paths("/cache/root/e/*").len(), 1);
        assert_eq!(paths("d/x.json").len(), 2);
        assert!(paths("nothing.json").is_empty());
        assert!(Query::parse(Path::new("a[")).is_err());
    }

    #[test]
    fn newest_first_with_changes_marked() {
        let snaps = vec![
            snap(3, "2026-11-03T00:00:00Z", Some("b")),
            snap(1, "2026-11-01T00:00:00Z", Some("a")),
            snap(2, "2026-11-02T00:00:00Z", Some("a")),
            snap(4, "2026-11-04T00:00:00Z", None),
            snap(5, "2026-11-05T00:00:00Z", Some("b")),
        ];
        let v = versions(&snaps, Path::new("d/x.json"));
        let got: Vec<(u8, bool)> = v.iter().map(|v| (v.snapshot.0[0], v.changed)).collect();
        assert_eq!(got, [(5, false), (3, true), (2, false), (1, true)]);
        let abs = versions(&snaps, Path::new("/cache/root/d/./x.json/"));
        assert_eq!(abs, v);
        assert!(versions(&snaps, Path::new("/elsewhere/d/x.json")).is_empty());
        assert!(versions(&snaps, Path::new("d/../d/x.json")).is_empty());
    }
}
