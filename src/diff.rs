//! Comparing two snapshots entry by entry: what was added, removed, modified (content, kind
//! or symlink target) and what changed only in metadata (mode or mtime with the same
//! content). Pure: takes two loaded manifests, reads nothing.

use std::collections::HashMap;

use chrono::DateTime;
use serde::{Serialize, Serializer};

use crate::id::BlobId;
use crate::manifest::{Entry, EntryKind, Manifest, RelPath};

/// An entry present on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    /// Path relative to the snapshot root.
    pub path: RelPath,
    /// File, dir or symlink (`type` in JSON, as `ls` says).
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes (0 for folders and symlinks).
    pub size: u64,
}

/// An entry whose content, kind or symlink target differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Modification {
    /// Path relative to the snapshot root.
    pub path: RelPath,
    /// Kind in the second snapshot (`type` in JSON).
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Kind in the first snapshot, when it differs (`type_before` in JSON).
    #[serde(rename = "type_before", skip_serializing_if = "Option::is_none")]
    pub kind_before: Option<EntryKind>,
    /// Size in the first snapshot.
    pub size_before: u64,
    /// Size in the second snapshot.
    pub size_after: u64,
    /// Content hash in the first snapshot (files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_before: Option<BlobId>,
    /// Content hash in the second snapshot (files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_after: Option<BlobId>,
    /// Link target in the first snapshot (symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_before: Option<RelPath>,
    /// Link target in the second snapshot (symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_after: Option<RelPath>,
}

/// An entry with the same content whose mode or mtime changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataChange {
    /// Path relative to the snapshot root.
    pub path: RelPath,
    /// File, dir or symlink (`type` in JSON).
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size (unchanged).
    pub size: u64,
    /// Permission bits before, octal.
    #[serde(serialize_with = "octal")]
    pub mode_before: u32,
    /// Permission bits after, octal.
    #[serde(serialize_with = "octal")]
    pub mode_after: u32,
    /// Modification time before (RFC 3339, UTC, nanoseconds).
    #[serde(serialize_with = "rfc3339_ns")]
    pub mtime_before: i64,
    /// Modification time after.
    #[serde(serialize_with = "rfc3339_ns")]
    pub mtime_after: i64,
}

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:o}"))
}

fn rfc3339_ns<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mtime_text(*ns))
}

/// An mtime in nanoseconds as RFC 3339 UTC text.
pub fn mtime_text(ns: i64) -> String {
    DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    .unwrap_or_else(|| ns.to_string())
}

/// Counts of a [`Diff`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Entries added.
    pub added: u64,
    /// Entries removed.
    pub removed: u64,
    /// Entries modified.
    pub modified: u64,
    /// Entries whose metadata alone changed.
    pub metadata_changed: u64,
    /// Bytes of the added files.
    pub bytes_added: u64,
    /// Bytes of the removed files.
    pub bytes_removed: u64,
}

/// What changed from a first snapshot to a second, each list sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// In the second only.
    pub added: Vec<Presence>,
    /// In the first only.
    pub removed: Vec<Presence>,
    /// Content, kind or link target differs.
    pub modified: Vec<Modification>,
    /// Same content, different mode or mtime. Folder mtimes are ignored: they change with
    /// every file added or removed inside, which the other lists already show.
    pub metadata_changed: Vec<MetadataChange>,
    /// Counts.
    pub summary: DiffSummary,
}

fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && match a.kind {
            EntryKind::File => a.hash == b.hash && a.size == b.size,
            EntryKind::Symlink => a.target == b.target,
            EntryKind::Dir => true,
        }
}

/// Compares the entries of `a` (before) and `b` (after). Pure.
pub fn diff(a: &Manifest, b: &Manifest) -> Diff {
    let before: HashMap<&RelPath, &Entry> = a.entries.iter().map(|e| (&e.path, e)).collect();
    let after: HashMap<&RelPath, &Entry> = b.entries.iter().map(|e| (&e.path, e)).collect();
    let mut d = Diff::default();
    for eb in &b.entries {
        let Some(ea) = before.get(&eb.path) else {
            d.added.push(Presence {
                path: eb.path.clone(),
                kind: eb.kind,
                size: eb.size,
            });
            continue;
        };
        if !same_content(ea, eb) {
            d.modified.push(Modification {
                path: eb.path.clone(),
                kind: eb.kind,
                kind_before: (ea.kind != eb.kind).then_some(ea.kind),
                size_before: ea.size,
                size_after: eb.size,
                hash_before: ea.hash,
                hash_after: eb.hash,
                target_before: ea.target.as_deref().cloned(),
                target_after: eb.target.as_deref().cloned(),
            });
            continue;
        }
        let mtime_counts = eb.kind != EntryKind::Dir;
        if ea.mode != eb.mode || (mtime_counts && ea.mtime_ns != eb.mtime_ns) {
            d.metadata_changed.push(MetadataChange {
                path: eb.path.clone(),
                kind: eb.kind,
                size: eb.size,
                mode_before: ea.mode,
                mode_after: eb.mode,
                mtime_before: ea.mtime_ns,
                mtime_after: eb.mtime_ns,
            });
        }
    }
    for ea in &a.entries {
        if !after.contains_key(&ea.path) {
            d.removed.push(Presence {
                path: ea.path.clone(),
                kind: ea.kind,
                size: ea.size,
            });
        }
    }
    d.added.sort_by(|x, y| x.path.cmp(&y.path));
    d.removed.sort_by(|x, y| x.path.cmp(&y.path));
    d.modified.sort_by(|x, y| x.path.cmp(&y.path));
    d.metadata_changed.sort_by(|x, y| x.path.cmp(&y.path));
    d.summary = DiffSummary {
        added: d.added.len() as u64,
        removed: d.removed.len() as u64,
        modified: d.modified.len() as u64,
        metadata_changed: d.metadata_changed.len() as u64,
        bytes_added: d.added.iter().map(|p| p.size).sum(),
        bytes_removed: d.removed.iter().map(|p| p.size).sum(),
    };
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SnapshotStats, Tree, MANIFEST_VERSION};

    fn file(path: &str, content: &str, mode: u32, mtime_ns: i64) -> Entry {
        Entry {
            path: RelPath::from(path),
            kind: EntryKind::File,
            mode,
            mtime_ns,
            size: content.len() as u64,
            ino: 0,
            ctime_ns: 0,
            hash: Some(BlobId::of(content.as_bytes())),
            blobs: smallvec::smallvec![BlobId::of(content.as_bytes())],
            target: None,
            link: None,
        }
    }

    fn dir(path: &str, mtime_ns: i64) -> Entry {
        Entry {
            path: RelPath::from(path),
            kind: EntryKind::Dir,
            mode: 0o755,
            mtime_ns,
            size: 0,
            ino: 0,
            ctime_ns: 0,
            hash: None,
            blobs: smallvec::smallvec![],
            target: None,
            link: None,
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            time: DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z").unwrap(),
            kind: None,
            hostname: "h".into(),
            root: "/r".into(),
            paths: vec!["/r".into()],
            tags: vec![],
            parent: None,
            repaired_from: None,
            complete: true,
            warnings: vec![],
            summary: SnapshotStats::default(),
            tree: Tree::default(),
            changes: None,
            entries,
        }
    }

    #[test]
    fn each_kind_of_change_lands_in_its_list() {
        let a = manifest(vec![
            dir("d", 1),
            file("d/same.json", "{}", 0o644, 5),
            file("d/gone.json", "{\"x\":1}", 0o644, 5),
            file("d/edit.json", "old", 0o644, 5),
            file("d/chmod.json", "c", 0o644, 5),
            file("d/touch.json", "t", 0o644, 5),
        ]);
        let b = manifest(vec![
            dir("d", 2),
            file("d/same.json", "{}", 0o644, 5),
            file("d/edit.json", "newer", 0o644, 5),
            file("d/chmod.json", "c", 0o600, 5),
            file("d/touch.json", "t", 0o644, 9),
            file("d/new.json", "[1,2]", 0o644, 5),
        ]);
        let d = diff(&a, &b);
        let paths = |v: Vec<&RelPath>| v.iter().map(|p| p.display()).collect::<Vec<_>>();
        assert_eq!(
            paths(d.added.iter().map(|p| &p.path).collect()),
            ["d/new.json"]
        );
        assert_eq!(
            paths(d.removed.iter().map(|p| &p.path).collect()),
            ["d/gone.json"]
        );
        assert_eq!(
            paths(d.modified.iter().map(|p| &p.path).collect()),
            ["d/edit.json"]
        );
        assert_eq!(
            (d.modified[0].size_before, d.modified[0].size_after),
            (3, 5)
        );
        assert_eq!(
            paths(d.metadata_changed.iter().map(|p| &p.path).collect()),
            ["d/chmod.json", "d/touch.json"]
        );
        assert_eq!(d.summary.bytes_added, 5);
        assert_eq!(d.summary.bytes_removed, 7);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["metadata_changed"][0]["mode_before"], "644");
        assert_eq!(json["metadata_changed"][0]["mode_after"], "600");
        assert!(diff(&a, &a).summary == DiffSummary::default());
    }
}
