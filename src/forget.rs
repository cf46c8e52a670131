//! `forget`: groups snapshots (by host, paths and optionally tags; different roots never share
//! a group), applies a keep policy to each group with [`retention::plan`], and removes the
//! manifests of the snapshots the policy drops. Data goes only with `prune`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::manifest::Manifest;
use crate::repo::Repository;
use crate::retention::{self, Decision, KeepPolicy, SnapshotMeta};

/// What snapshots are grouped by; `paths` (with the root) is always part of the key.
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
                "paths" => {}
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

/// A group's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Host (when grouping by host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Root and included paths (always).
    pub paths: Vec<String>,
    /// Tags (when grouping by tags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// The plan for one group: decisions newest first.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The group.
    pub key: GroupKey,
    /// One decision per snapshot of the group, newest first.
    pub decisions: Vec<Decision>,
}

/// Plans which snapshots to keep. Pure: no clock, no I/O. `extra` lets callers add a rule
/// retention policies cannot express (pre-clear snapshots kept for `backup_retention_days`):
/// it is called per snapshot and returns a reason to keep it, if any.
pub fn plan(
    snapshots: &[(BlobId, Manifest)],
    policy: &KeepPolicy,
    group_by: GroupBy,
    now: DateTime<Utc>,
    extra: &dyn Fn(&Manifest) -> Option<String>,
) -> Vec<GroupPlan> {
    let mut groups: BTreeMap<GroupKey, Vec<&(BlobId, Manifest)>> = BTreeMap::new();
    for s in snapshots {
        let m = &s.1;
        let mut paths = vec![m.root.clone()];
        paths.extend(m.paths.iter().cloned());
        let key = GroupKey {
            host: group_by.host.then(|| m.hostname.clone()),
            paths,
            tags: group_by.tags.then(|| {
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
            let metas: Vec<SnapshotMeta> = members
                .iter()
                .map(|(id, m)| SnapshotMeta {
                    id: id.to_hex(),
                    time: m.time,
                    tags: m.tags.clone(),
                })
                .collect();
            let by_id: BTreeMap<String, &Manifest> =
                members.iter().map(|(id, m)| (id.to_hex(), m)).collect();
            let mut decisions = retention::plan(&metas, policy, now);
            for d in &mut decisions {
                if let Some(reason) = by_id.get(&d.id).and_then(|m| extra(m)) {
                    d.keep = true;
                    d.reasons.push(reason);
                }
            }
            GroupPlan { key, decisions }
        })
        .collect()
}

/// Removes the manifests of every snapshot the plan does not keep (the caller holds the
/// exclusive lock). Returns the ids removed.
///
/// # Errors
/// I/O errors; what was removed before the error stays removed.
pub fn apply(repo: &Repository, plan: &[GroupPlan]) -> Result<Vec<BlobId>> {
    let mut removed = Vec::new();
    for d in plan
        .iter()
        .flat_map(|g| g.decisions.iter())
        .filter(|d| !d.keep)
    {
        let id: BlobId =
            d.id.parse()
                .map_err(|e| Error::Invalid(format!("internal: {e}")))?;
        let path = repo.snapshot_path(&id);
        std::fs::remove_file(&path).map_err(Error::io(&path))?;
        removed.push(id);
    }
    if !removed.is_empty() {
        crate::fsutil::sync_dir(&repo.snapshots_dir())?;
    }
    Ok(removed)
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

/// The rule retention policies cannot express: `pre-clear` and `archive` snapshots younger
/// than `backup_retention_days` are kept, so a burst of clears on one day is not thinned
/// away by keep-daily before anyone can undo them.
pub fn preclear_rule(
    cfg: &crate::config::Config,
    now: DateTime<Utc>,
) -> impl Fn(&Manifest) -> Option<String> {
    let days = cfg.raw.cache.global_settings.backup_retention_days;
    move |m: &Manifest| {
        let protected = m.tags.iter().any(|t| t == "pre-clear" || t == "archive");
        let age = now.signed_duration_since(m.time);
        (protected && chrono::Duration::try_days(days).is_none_or(|d| age < d))
            .then(|| format!("pre-clear within {days}d"))
    }
}
