//! Every version of one path across snapshots, newest first, with the versions where the
//! content changed marked. Pure: takes loaded manifests, reads nothing.

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

/// Every version of `query` in `snapshots` (loaded with their entries, any order), newest
/// first (ties by id). One row per snapshot that holds the path. Pure.
pub fn versions(snapshots: &[(BlobId, Manifest)], query: &Path) -> Vec<Version> {
    let mut out: Vec<Version> = snapshots
        .iter()
        .filter_map(|(id, m)| {
            let path = path_in(m, query)?;
            let e = m.entries.iter().find(|e| e.path == path)?;
            Some(Version {
                snapshot: *id,
                time: m.time,
                path,
                kind: e.kind,
                size: e.size,
                hash: e.hash,
                target: e.target.clone(),
                mode: e.mode,
                mtime_ns: e.mtime_ns,
                changed: false,
            })
        })
        .collect();
    out.sort_by(|a, b| a.time.cmp(&b.time).then(a.snapshot.cmp(&b.snapshot)));
    let mut previous: Option<(EntryKind, Option<BlobId>, Option<RelPath>)> = None;
    for v in &mut out {
        let content = (v.kind, v.hash, v.target.clone());
        v.changed = previous.as_ref() != Some(&content);
        previous = Some(content);
    }
    out.reverse();
    out
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
                blobs: vec![BlobId::of(c.as_bytes())],
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
                entries,
            },
        )
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
