//! `forget`: groups snapshots by root and kind (and optionally host and tags), applies the
//! keep policy to each `backup` and `archive` group with [`retention::plan`], expires safety
//! snapshots (`pre-clear`, `pre-repair`, `pre-restore`) by age, and removes the manifests of
//! the snapshots that go. Data goes only with `prune`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::{Manifest, SnapshotKind};
use crate::repo::Repository;
use crate::retention::{self, Decision, KeepPolicy, SnapshotMeta};

/// What snapshots are grouped by besides their root and kind, which always apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    /// Separate groups per host name.
    pub host: bool,
    /// Separate groups per tag set.
    pub tags: bool,
}

impl std::str::FromStr for GroupBy {
    type Err = Error;
    fn from_str(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "tags" => g.tags = true,
                // The root always applies: included paths vary with every clear.
                "paths" | "root" | "kind" => {}
                other => {
                    return Err(Error::Invalid(format!(
                        "--group-by {s:?}: unknown field {other:?}; expected a comma list of host, paths, tags"
                    )))
                }
            }
        }
        Ok(g)
    }
}

/// A group's identity: root and kind, plus host and tags when grouping by them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// The snapshots' root.
    pub root: String,
    /// Their kind.
    pub kind: SnapshotKind,
    /// Host (when grouping by host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Tags (when grouping by tags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} snapshots of {}", self.kind, self.root)?;
        if let Some(h) = &self.host {
            write!(f, " on {h}")?;
        }
        if let Some(t) = &self.tags {
            write!(f, " tagged [{}]", t.join(", "))?;
        }
        Ok(())
    }
}

/// The plan for one group: decisions newest first.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The group.
    pub key: GroupKey,
    /// One decision per snapshot of the group, newest first.
    pub decisions: Vec<Decision>,
}

/// Everything [`plan`] decides by.
#[derive(Debug, Clone)]
pub struct ForgetRules {
    /// The keep policy of `backup` and `archive` groups.
    pub policy: KeepPolicy,
    /// Extra grouping.
    pub group_by: GroupBy,
    /// The time of planning.
    pub now: DateTime<Utc>,
    /// Safety snapshots are kept while younger than this many days and go after; `archive`
    /// snapshots are kept at least this long whatever the policy says
    /// (`backup_retention_days`).
    pub safety_days: i64,
    /// Snapshots an undoable operation still refers to, with that operation's id: kept
    /// whatever their age.
    pub referenced: BTreeMap<BlobId, String>,
}

/// Plans which snapshots to keep. Pure: no clock, no I/O.
pub fn plan(snapshots: &[(BlobId, Manifest)], rules: &ForgetRules) -> Vec<GroupPlan> {
    let mut groups: BTreeMap<GroupKey, Vec<&(BlobId, Manifest)>> = BTreeMap::new();
    for s in snapshots {
        let m = &s.1;
        let key = GroupKey {
            root: m.root.clone(),
            kind: m.kind(),
            host: rules.group_by.host.then(|| m.hostname.clone()),
            tags: rules.group_by.tags.then(|| {
                let mut t = m.tags.clone();
                t.sort();
                t
            }),
        };
        groups.entry(key).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(key, members)| {
            let decisions = if key.kind.is_safety() {
                expire_by_age(&members, rules)
            } else {
                by_policy(&members, rules, key.kind == SnapshotKind::Archive)
            };
            GroupPlan { key, decisions }
        })
        .collect()
}

fn age_days_text(days: i64) -> String {
    format!("younger than {days}d")
}

fn is_young(m: &Manifest, rules: &ForgetRules) -> bool {
    let age = rules.now.signed_duration_since(m.time);
    chrono::Duration::try_days(rules.safety_days).is_none_or(|d| age < d)
}

/// Safety snapshots: kept while young or referenced, removed after.
fn expire_by_age(members: &[&(BlobId, Manifest)], rules: &ForgetRules) -> Vec<Decision> {
    let mut sorted: Vec<&&(BlobId, Manifest)> = members.iter().collect();
    sorted.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(a.0.cmp(&b.0)));
    sorted
        .into_iter()
        .map(|(id, m)| {
            let mut reasons = Vec::new();
            if is_young(m, rules) {
                reasons.push(format!(
                    "{} snapshot {}",
                    m.kind(),
                    age_days_text(rules.safety_days)
                ));
            }
            // Named only when age alone would not keep it.
            if let Some(op) = rules.referenced.get(id).filter(|_| reasons.is_empty()) {
                reasons.push(format!("undoable operation {op} refers to it"));
            }
            Decision {
                id: id.to_hex(),
                time: m.time,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// `backup` and `archive` groups: the keep policy; archives also while young.
fn by_policy(members: &[&(BlobId, Manifest)], rules: &ForgetRules, archive: bool) -> Vec<Decision> {
    let metas: Vec<SnapshotMeta> = members
        .iter()
        .map(|(id, m)| SnapshotMeta {
            id: id.to_hex(),
            time: m.time,
            tags: m.tags.clone(),
        })
        .collect();
    let by_id: BTreeMap<String, &(BlobId, Manifest)> =
        members.iter().map(|s| (s.0.to_hex(), *s)).collect();
    let mut decisions = retention::plan(&metas, &rules.policy, rules.now);
    for d in &mut decisions {
        let Some((id, m)) = by_id.get(&d.id).copied() else {
            continue;
        };
        if archive && is_young(m, rules) {
            d.keep = true;
            d.reasons
                .push(format!("archive {}", age_days_text(rules.safety_days)));
        }
        if let Some(op) = rules.referenced.get(id).filter(|_| !d.keep) {
            d.keep = true;
            d.reasons
                .push(format!("undoable operation {op} refers to it"));
        }
    }
    decisions
}

/// The snapshots a plan removes.
pub fn removals(plan: &[GroupPlan]) -> Vec<BlobId> {
    plan.iter()
        .flat_map(|g| g.decisions.iter())
        .filter(|d| !d.keep)
        .filter_map(|d| d.id.parse().ok())
        .collect()
}

/// What removing manifests did: the ids removed, and the error that stopped it, if any
/// (what was removed before the error stays removed, and the caller must say so).
#[derive(Debug, Default)]
pub struct Removal {
    /// Manifests removed.
    pub removed: Vec<BlobId>,
    /// The error that stopped the removal.
    pub error: Option<Error>,
}

/// Removes the manifests of `ids` (the caller holds the exclusive lock). Manifests already
/// gone count as removed.
pub fn remove(repo: &Repository, ids: &[BlobId]) -> Removal {
    let mut out = Removal::default();
    for id in ids {
        match repo.remove_manifest(id) {
            Ok(()) => out.removed.push(*id),
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    if !out.removed.is_empty() {
        if let Err(e) = repo.backend().sync(crate::backend::ObjectKind::Snapshot) {
            out.error.get_or_insert(e);
        }
    }
    out
}

/// Resolves ids or unique prefixes against every manifest file, damaged ones included.
///
/// # Errors
/// [`Error::SnapshotNotFound`], [`Error::AmbiguousSnapshot`], I/O errors.
pub fn resolve_ids(repo: &Repository, specs: &[String]) -> Result<Vec<BlobId>> {
    let all = crate::snapshot::list_ids(repo)?;
    let mut out = Vec::new();
    for spec in specs {
        let l = spec.to_ascii_lowercase();
        let m: Vec<&BlobId> = all
            .iter()
            .filter(|id| id.to_hex().starts_with(&l))
            .collect();
        match m.as_slice() {
            [one] if !spec.is_empty() => {
                if !out.contains(*one) {
                    out.push(**one)
                }
            }
            [] => return Err(Error::SnapshotNotFound(spec.clone())),
            _ => return Err(Error::AmbiguousSnapshot(spec.clone())),
        }
    }
    Ok(out)
}

/// The config's retention policy (`strategies.backup.retention_policy`).
pub fn config_policy(cfg: &crate::config::Config) -> KeepPolicy {
    let r = &cfg.raw.cache.strategies.backup.retention_policy;
    KeepPolicy {
        daily: r.daily_backups,
        weekly: r.weekly_backups,
        monthly: r.monthly_backups,
        ..KeepPolicy::default()
    }
}
