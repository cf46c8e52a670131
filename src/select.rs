//! Choosing snapshots: the filters every listing and resolving command shares (`--tag`,
//! `--kind`, `--path`, `--host`, the config's root) and what `latest` and `--at` mean: the
//! newest *complete* `backup` of one root, never a partial or safety snapshot, never one dated
//! in the future without saying so. Pure over snapshot headers, apart from [`resolve`].

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, FixedOffset};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{Manifest, SnapshotKind};
use crate::repo::Repository;

/// How far ahead of the clock a snapshot may be dated before it counts as "in the future"
/// (a clock that was wrong when it was taken): five minutes, for clocks a little apart.
pub const CLOCK_SLACK_SECONDS: i64 = 300;

/// Which snapshots a command considers. An empty filter matches every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Only snapshots of this root (with `--config`, the config's cache root, canonical).
    pub root: Option<String>,
    /// `--path`: the snapshot's root, or one of its included paths, is one of these.
    pub paths: Vec<String>,
    /// `--kind`: one of these kinds. Empty: any kind (but `latest` and `--at` then mean
    /// `backup`).
    pub kinds: Vec<SnapshotKind>,
    /// `--tag`, as restic has it: each item is a list of tags that must all be present; a
    /// snapshot matches when any item does.
    pub tags: Vec<Vec<String>>,
    /// `--host`: taken on one of these hosts.
    pub hosts: Vec<String>,
    /// `--type`: the snapshot holds each of these absolute folders ([`holds`]).
    pub holds: Vec<String>,
}

/// Whether `m` is a type backup (`snapshot --type`, tagged `type:T`): `latest` and `--at`
/// pass over these unless a type (`--type`) or a tag is asked for, since each holds some
/// cache types only.
pub fn is_type_backup(m: &Manifest) -> bool {
    m.tags.iter().any(|t| t.starts_with("type:"))
}

/// Whether snapshot `m` holds the absolute folder `folder` whole: one of its included paths
/// (or its root, when it names none) is the folder or lies above it.
pub fn holds(m: &Manifest, folder: &str) -> bool {
    let covers = |p: &str| {
        let p = p.trim_end_matches('/');
        folder == p || (folder.starts_with(p) && folder.as_bytes().get(p.len()) == Some(&b'/'))
    };
    if m.paths.is_empty() {
        covers(&m.root)
    } else {
        m.paths.iter().any(|p| covers(p))
    }
}

impl SnapshotFilter {
    /// Whether `m` passes every given condition.
    pub fn matches(&self, m: &Manifest) -> bool {
        self.root.as_ref().is_none_or(|r| &m.root == r)
            && (self.paths.is_empty()
                || self
                    .paths
                    .iter()
                    .any(|p| &m.root == p || m.paths.iter().any(|q| q == p)))
            && (self.kinds.is_empty() || self.kinds.contains(&m.kind()))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|all| all.iter().all(|t| m.tags.contains(t))))
            && (self.hosts.is_empty() || self.hosts.contains(&m.hostname))
            && self.holds.iter().all(|f| holds(m, f))
    }

    /// Parses `--tag` values: `a,b` means both a and b.
    pub fn parse_tags(values: &[String]) -> Vec<Vec<String>> {
        values
            .iter()
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// The kinds `latest` and `--at` consider: the given ones, or `backup`.
    fn latest_kinds(&self) -> Vec<SnapshotKind> {
        if self.kinds.is_empty() {
            vec![SnapshotKind::Backup]
        } else {
            self.kinds.clone()
        }
    }

    /// In plain words, for messages ("complete backup of /srv/OUTPUTS tagged nightly").
    pub fn describe(&self) -> String {
        let mut s = format!(
            "complete {}",
            self.latest_kinds()
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(" or ")
        );
        s.push_str(" snapshot");
        if let Some(r) = &self.root {
            s.push_str(&format!(" of {r}"));
        }
        if !self.paths.is_empty() {
            s.push_str(&format!(" including {}", self.paths.join(" or ")));
        }
        if !self.tags.is_empty() {
            let t: Vec<String> = self.tags.iter().map(|a| a.join("+")).collect();
            s.push_str(&format!(" tagged {}", t.join(" or ")));
        }
        if !self.hosts.is_empty() {
            s.push_str(&format!(" from host {}", self.hosts.join(" or ")));
        }
        if !self.holds.is_empty() {
            s.push_str(&format!(" holding {}", self.holds.join(" and ")));
        }
        s
    }
}

/// A chosen snapshot: its id, header, and anything the user should hear about the choice.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The snapshot id.
    pub id: BlobId,
    /// Its header (no entries).
    pub manifest: Manifest,
    /// Warnings about the choice (snapshots dated in the future passed over).
    pub warnings: Vec<String>,
}

fn in_future(m: &Manifest, now: DateTime<FixedOffset>) -> bool {
    m.time > now + Duration::seconds(CLOCK_SLACK_SECONDS)
}

/// The newest complete snapshot of the filter's kinds (`backup` by default) taken at or
/// before `at` (any time when `None`). Snapshots dated in the future are passed over with a
/// warning unless nothing else matches. Without a root or path in the filter, the candidates
/// must all share one root, or the choice would be a guess. `snapshots` is any order.
///
/// # Errors
/// [`Error::SnapshotNotFound`] when nothing matches; [`Error::Invalid`] when the candidates
/// span several roots and the filter names none.
pub fn newest(
    snapshots: &[(BlobId, Manifest)],
    filter: &SnapshotFilter,
    at: Option<DateTime<FixedOffset>>,
    now: DateTime<FixedOffset>,
) -> Result<Selection> {
    let kinds = filter.latest_kinds();
    let mut candidates: Vec<&(BlobId, Manifest)> = snapshots
        .iter()
        .filter(|(_, m)| {
            m.complete
                && kinds.contains(&m.kind())
                && filter.matches(m)
                && at.is_none_or(|t| m.time <= t)
                && (!filter.holds.is_empty() || !filter.tags.is_empty() || !is_type_backup(m))
        })
        .collect();
    let what = || match at {
        Some(t) => format!(
            "{} taken at or before {}",
            filter.describe(),
            t.to_rfc3339()
        ),
        None => filter.describe(),
    };
    if candidates.is_empty() {
        return Err(Error::SnapshotNotFound(what()));
    }
    if filter.root.is_none() && filter.paths.is_empty() {
        let roots: BTreeSet<&str> = candidates.iter().map(|(_, m)| m.root.as_str()).collect();
        if roots.len() > 1 {
            return Err(Error::Invalid(format!(
                "the repository holds backups of {} roots ({}); say which with --config FILE or a path filter (--path, or --snapshot-path for restore)",
                roots.len(),
                roots.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    candidates.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let (future, present): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|(_, m)| in_future(m, now));
    let dated = |id: &BlobId, m: &Manifest| {
        format!(
            "snapshot {} is dated {}, in the future (was the clock wrong when it was taken?)",
            id.short(),
            m.time.to_rfc3339()
        )
    };
    let (id, m, warnings) = match (present.last(), future.last()) {
        (Some(c), _) => (
            c.0,
            c.1.clone(),
            future
                .iter()
                .map(|(id, m)| format!("{}; passed over: name it by id to use it", dated(id, m)))
                .collect(),
        ),
        (None, Some(c)) => (
            c.0,
            c.1.clone(),
            vec![format!(
                "{}; no other snapshot matches, so it is used",
                dated(&c.0, &c.1)
            )],
        ),
        (None, None) => return Err(Error::SnapshotNotFound(what())),
    };
    Ok(Selection {
        id,
        manifest: m,
        warnings,
    })
}

/// Resolves `spec` (a full id, a unique prefix, or `latest`) against the repository:
/// `latest` is [`newest`] under `filter`; an id names its snapshot whatever the filter says.
///
/// # Errors
/// As [`newest`]; [`Error::AmbiguousSnapshot`]; I/O errors and corruption of manifests.
pub fn resolve(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
    now: DateTime<FixedOffset>,
) -> Result<Selection> {
    if spec == "latest" {
        return newest_listed(repo, filter, None, now);
    }
    let id = crate::snapshot::resolve(repo, spec)?;
    let manifest = crate::snapshot::load_header(repo, &id)?;
    Ok(Selection {
        id,
        manifest,
        warnings: Vec::new(),
    })
}

/// The newest snapshot at or before `at` under `filter` ([`newest`]).
///
/// # Errors
/// As [`newest`].
pub fn resolve_at(
    repo: &Repository,
    at: DateTime<FixedOffset>,
    filter: &SnapshotFilter,
    now: DateTime<FixedOffset>,
) -> Result<Selection> {
    newest_listed(repo, filter, Some(at), now)
}

/// [`newest`] over the repository's readable manifests; unreadable ones are named in the
/// warnings (the choice is made among the others).
fn newest_listed(
    repo: &Repository,
    filter: &SnapshotFilter,
    at: Option<DateTime<FixedOffset>>,
    now: DateTime<FixedOffset>,
) -> Result<Selection> {
    let listing = crate::snapshot::list(repo)?;
    let mut sel = newest(&listing.snapshots, filter, at, now)?;
    sel.warnings.extend(listing.damaged.iter().map(|d| {
        format!(
            "{} cannot be read ({}); the choice was made among the other snapshots",
            d.file, d.error
        )
    }));
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SnapshotStats, Tree, MANIFEST_VERSION};

    fn snap(
        n: u8,
        time: &str,
        root: &str,
        kind: SnapshotKind,
        complete: bool,
    ) -> (BlobId, Manifest) {
        (
            BlobId([n; 32]),
            Manifest {
                version: MANIFEST_VERSION,
                time: DateTime::parse_from_rfc3339(time).unwrap(),
                kind: Some(kind),
                hostname: "h".into(),
                root: root.into(),
                paths: vec![root.into()],
                tags: Vec::new(),
                parent: None,
                repaired_from: None,
                complete,
                warnings: Vec::new(),
                summary: SnapshotStats::default(),
                tree: Tree::default(),
                changes: None,
                entries: Vec::new(),
            },
        )
    }

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap()
    }

    #[test]
    fn latest_is_the_newest_complete_backup() {
        let all = vec![
            snap(1, "2026-11-28T02:00:00Z", "/r", SnapshotKind::Backup, true),
            snap(2, "2026-11-29T02:00:00Z", "/r", SnapshotKind::Backup, false),
            snap(
                3,
                "2026-11-29T03:00:00Z",
                "/r",
                SnapshotKind::PreClear,
                true,
            ),
            snap(4, "2026-11-29T04:00:00Z", "/r", SnapshotKind::Archive, true),
        ];
        let f = SnapshotFilter::default();
        assert_eq!(newest(&all, &f, None, now()).unwrap().id, BlobId([1; 32]));
        let pre = SnapshotFilter {
            kinds: vec![SnapshotKind::PreClear],
            ..f.clone()
        };
        assert_eq!(newest(&all, &pre, None, now()).unwrap().id, BlobId([3; 32]));
        let at = DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z").unwrap();
        assert!(matches!(
            newest(&all, &f, Some(at), now()),
            Err(Error::SnapshotNotFound(_))
        ));
    }

    #[test]
    fn future_snapshots_are_passed_over_with_a_warning() {
        let all = vec![
            snap(1, "2026-11-29T02:00:00Z", "/r", SnapshotKind::Backup, true),
            snap(2, "2030-01-01T00:00:00Z", "/r", SnapshotKind::Backup, true),
        ];
        let s = newest(&all, &SnapshotFilter::default(), None, now()).unwrap();
        assert_eq!(s.id, BlobId([1; 32]));
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("2030-01-01"), "{:?}", s.warnings);
        // Alone, it is used, and still named.
        let s = newest(&all[1..], &SnapshotFilter::default(), None, now()).unwrap();
        assert_eq!(s.id, BlobId([2; 32]));
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn roots_never_cross() {
        let all = vec![
            snap(1, "2026-11-29T02:00:00Z", "/a", SnapshotKind::Backup, true),
            snap(2, "2026-11-29T03:00:00Z", "/b", SnapshotKind::Backup, true),
        ];
        let err = newest(&all, &SnapshotFilter::default(), None, now()).unwrap_err();
        assert!(err.to_string().contains("/a, /b"), "{err}");
        let a = SnapshotFilter {
            root: Some("/a".into()),
            ..SnapshotFilter::default()
        };
        assert_eq!(newest(&all, &a, None, now()).unwrap().id, BlobId([1; 32]));
        let b = SnapshotFilter {
            paths: vec!["/b".into()],
            ..SnapshotFilter::default()
        };
        assert_eq!(newest(&all, &b, None, now()).unwrap().id, BlobId([2; 32]));
    }

    #[test]
    fn tags_are_lists_of_alternatives() {
        let mut s = snap(1, "2026-11-29T02:00:00Z", "/a", SnapshotKind::Backup, true);
        s.1.tags = vec!["a".into(), "b".into()];
        let f = |t: &[&str]| SnapshotFilter {
            tags: SnapshotFilter::parse_tags(&t.iter().map(|x| x.to_string()).collect::<Vec<_>>()),
            ..SnapshotFilter::default()
        };
        assert!(f(&["a,b"]).matches(&s.1));
        assert!(f(&["c", "b"]).matches(&s.1));
        assert!(!f(&["a,c"]).matches(&s.1));
        assert!(f(&[]).matches(&s.1));
    }

    #[test]
    fn holding_a_folder_means_an_included_path_covers_it() {
        let mut full = snap(1, "2026-11-29T02:00:00Z", "/r", SnapshotKind::Backup, true);
        assert!(holds(&full.1, "/r/a/b"));
        full.1.paths = vec!["/r/a".into(), "/r/x_state.json".into()];
        assert!(holds(&full.1, "/r/a"));
        assert!(holds(&full.1, "/r/a/b"));
        assert!(!holds(&full.1, "/r/ab"));
        assert!(!holds(&full.1, "/r/c"));
        full.1.paths.clear();
        assert!(holds(&full.1, "/r/c"));
        assert!(!holds(&full.1, "/other/c"));
        let f = SnapshotFilter {
            holds: vec!["/r/a".into(), "/r/c".into()],
            ..SnapshotFilter::default()
        };
        assert!(f.matches(&full.1));
        full.1.paths = vec!["/r/a".into()];
        assert!(!f.matches(&full.1));
    }

    #[test]
    fn latest_passes_over_type_backups_unless_asked() {
        let mut typed = snap(2, "2026-11-29T03:00:00Z", "/r", SnapshotKind::Backup, true);
        typed.1.tags = vec!["type:a".into()];
        typed.1.paths = vec!["/r/a".into()];
        let all = vec![
            snap(1, "2026-11-29T02:00:00Z", "/r", SnapshotKind::Backup, true),
            typed,
        ];
        let f = SnapshotFilter::default();
        assert_eq!(newest(&all, &f, None, now()).unwrap().id, BlobId([1; 32]));
        let holds = SnapshotFilter {
            holds: vec!["/r/a".into()],
            ..f.clone()
        };
        assert_eq!(
            newest(&all, &holds, None, now()).unwrap().id,
            BlobId([2; 32])
        );
        let tagged = SnapshotFilter {
            tags: vec![vec!["type:a".into()]],
            ..f.clone()
        };
        assert_eq!(
            newest(&all, &tagged, None, now()).unwrap().id,
            BlobId([2; 32])
        );
    }
}
