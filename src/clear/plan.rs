//! Clearing strategies as pure planning: given a view of the cache tree (and, for
//! `smart_selective`, the linking map and supplier pages), decide what to delete or rewrite.
//! No clock (`now` is a parameter), no I/O; deterministic for the same input.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};

/// A clearing strategy (DESIGN.md, seed section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Everything of the selected types.
    Full,
    /// Everything except the preserved types.
    Selective,
    /// Entries older than their type's TTL.
    Ttl,
    /// Least recently used first, down to 90% of each limit.
    SizeBased,
    /// Processed supplier products and stale unreferenced amazon entries.
    SmartSelective,
    /// Entries past the horizon go to an `archive` snapshot and leave the tree.
    ArchiveOld,
    /// Each type by its own strategy, deferred under load, in throttled batches.
    PerformanceAware,
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Strategy> {
        Ok(match s {
            "full" => Strategy::Full,
            "selective" => Strategy::Selective,
            "ttl" => Strategy::Ttl,
            "size_based" => Strategy::SizeBased,
            "smart_selective" => Strategy::SmartSelective,
            "archive_old" => Strategy::ArchiveOld,
            "performance_aware" => Strategy::PerformanceAware,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown strategy {other:?}; expected one of {}",
                    crate::config::STRATEGIES.join(", ")
                )))
            }
        })
    }
}

impl Strategy {
    /// The config/CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Full => "full",
            Strategy::Selective => "selective",
            Strategy::Ttl => "ttl",
            Strategy::SizeBased => "size_based",
            Strategy::SmartSelective => "smart_selective",
            Strategy::ArchiveOld => "archive_old",
            Strategy::PerformanceAware => "performance_aware",
        }
    }
}

/// One cache file as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheFile {
    /// Path relative to the cache root.
    pub path: String,
    /// Its cache type.
    pub cache_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Access time, ns since the epoch.
    pub atime_ns: i64,
    /// Inode (a file replaced since planning is never deleted).
    pub ino: u64,
}

/// A supplier page parsed for `smart_selective`.
#[derive(Debug, Clone)]
pub struct SupplierPage {
    /// Path relative to the cache root.
    pub path: String,
    /// The whole document.
    pub doc: serde_json::Value,
}

/// One linking-map record, as far as clearing needs it.
#[derive(Debug, Clone)]
pub struct Link {
    /// Supplier EAN.
    pub supplier_ean: String,
    /// Amazon ASIN.
    pub asin: String,
    /// When the link was made (None when missing or unparsable: treated as recent).
    pub linked_at: Option<DateTime<Utc>>,
}

/// What `smart_selective` reads besides file metadata.
#[derive(Debug, Clone, Default)]
pub struct SmartInput {
    /// Every record of the linking map.
    pub links: Vec<Link>,
    /// Every supplier page (files that fail to parse are left alone and reported).
    pub pages: Vec<SupplierPage>,
}

/// What to do with one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Delete the file.
    Delete {
        /// The file.
        file: CacheFile,
        /// Why.
        reason: String,
    },
    /// Replace the file's content (a supplier page with processed products removed).
    Rewrite {
        /// The file.
        file: CacheFile,
        /// Why.
        reason: String,
        /// The new content.
        #[serde(skip)]
        content: Vec<u8>,
        /// Products removed from the page.
        removed_products: usize,
    },
}

impl Action {
    /// The file acted on.
    pub fn file(&self) -> &CacheFile {
        match self {
            Action::Delete { file, .. } | Action::Rewrite { file, .. } => file,
        }
    }

    /// Bytes this action frees (a rewrite frees the difference).
    pub fn bytes_freed(&self) -> u64 {
        match self {
            Action::Delete { file, .. } => file.size,
            Action::Rewrite { file, content, .. } => file.size.saturating_sub(content.len() as u64),
        }
    }
}

/// A clearing plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClearPlan {
    /// Actions in path order.
    pub actions: Vec<Action>,
    /// Things worth telling (preserved types over their limit, unparsable pages).
    pub warnings: Vec<String>,
}

/// The types a strategy applies to: `requested` when given (validated), else its default set.
///
/// # Errors
/// [`Error::Invalid`] naming an unknown type.
pub fn select_types(cfg: &Config, strategy: Strategy, requested: &[String]) -> Result<Vec<String>> {
    let types = &cfg.raw.cache.cache_types;
    for t in requested {
        if !types.contains_key(t) {
            return Err(Error::Invalid(format!(
                "--type {t:?}: no such cache type; the config has {}",
                types.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if !requested.is_empty() {
        return Ok(requested.to_vec());
    }
    let preserved = cfg.preserved_types();
    Ok(types
        .keys()
        .filter(|t| match strategy {
            Strategy::Selective | Strategy::SizeBased => !preserved.contains(t),
            Strategy::SmartSelective => *t == "supplier_cache" || *t == "amazon_cache",
            _ => true,
        })
        .cloned()
        .collect())
}

fn age_hours(now: DateTime<Utc>, mtime_ns: i64) -> f64 {
    (now.timestamp_nanos_opt().unwrap_or(i64::MAX) - mtime_ns) as f64 / 3.6e12
}

/// Plans a clear. `files` are the regular cache files (state files excluded), `smart` is read
/// only by `smart_selective` (and `performance_aware` for types whose own strategy is it).
///
/// # Errors
/// [`Error::Invalid`] for unknown types or a config `smart_selective` cannot work with.
pub fn plan(
    cfg: &Config,
    strategy: Strategy,
    types: &[String],
    files: &[CacheFile],
    smart: Option<&SmartInput>,
    now: DateTime<Utc>,
) -> Result<ClearPlan> {
    let mut out = ClearPlan::default();
    let selected: HashSet<&str> = types.iter().map(String::as_str).collect();
    let mine: Vec<&CacheFile> = files
        .iter()
        .filter(|f| selected.contains(f.cache_type.as_str()))
        .collect();
    let ty = |name: &str| cfg.raw.cache.cache_types.get(name);
    let delete = |f: &CacheFile, reason: String| Action::Delete {
        file: f.clone(),
        reason,
    };
    match strategy {
        Strategy::Full => {
            out.actions = mine
                .iter()
                .map(|f| delete(f, "full clear".into()))
                .collect();
        }
        Strategy::Selective => {
            out.actions = mine
                .iter()
                .map(|f| delete(f, format!("selective clear of {}", f.cache_type)))
                .collect();
        }
        Strategy::Ttl | Strategy::ArchiveOld => {
            for f in &mine {
                let Some(t) = ty(&f.cache_type) else { continue };
                if t.ttl_hours < 0 {
                    continue;
                }
                let age = age_hours(now, f.mtime_ns);
                if age > t.ttl_hours as f64 {
                    out.actions.push(delete(
                        f,
                        format!("{:.0} h old, past the {} h TTL", age, t.ttl_hours),
                    ));
                }
            }
        }
        Strategy::SizeBased => plan_size_based(cfg, &mine, files, &mut out),
        Strategy::SmartSelective => {
            let smart = smart.ok_or_else(|| {
                Error::Invalid("smart_selective needs the linking map and supplier pages".into())
            })?;
            plan_smart(cfg, &selected, &mine, smart, now, &mut out)?;
        }
        Strategy::PerformanceAware => {
            for t in types {
                let own: Strategy = ty(t)
                    .map(|c| c.cleanup_strategy.parse())
                    .transpose()?
                    .unwrap_or(Strategy::Ttl);
                let own = if own == Strategy::PerformanceAware {
                    Strategy::Ttl
                } else {
                    own
                };
                // Selective on its own type preserves it when the type is preserved.
                if own == Strategy::Selective && cfg.preserved_types().contains(t) {
                    continue;
                }
                let sub = plan(cfg, own, std::slice::from_ref(t), files, smart, now)?;
                out.actions.extend(sub.actions);
                out.warnings.extend(sub.warnings);
            }
        }
    }
    out.actions
        .sort_by(|a, b| a.file().path.cmp(&b.file().path));
    out.actions.dedup_by(|a, b| a.file().path == b.file().path);
    Ok(out)
}

fn plan_size_based(cfg: &Config, mine: &[&CacheFile], all: &[CacheFile], out: &mut ClearPlan) {
    let preserved = cfg.preserved_types();
    let mut evicted: HashSet<&str> = HashSet::new();
    let lru = |v: &mut Vec<&CacheFile>| {
        v.sort_by(|a, b| (a.atime_ns, a.mtime_ns, &a.path).cmp(&(b.atime_ns, b.mtime_ns, &b.path)))
    };
    let mut by_type: BTreeMap<&str, Vec<&CacheFile>> = BTreeMap::new();
    for f in mine {
        by_type.entry(f.cache_type.as_str()).or_default().push(f);
    }
    let mb = 1024.0 * 1024.0;
    for (name, mut files) in by_type {
        let Some(t) = cfg.raw.cache.cache_types.get(name) else {
            continue;
        };
        let mut bytes: u64 = files.iter().map(|f| f.size).sum();
        let limit = (t.max_size_mb * mb) as u64;
        if bytes <= limit {
            continue;
        }
        if preserved.iter().any(|p| p == name) {
            out.warnings.push(format!(
                "{name} is over its {} MB limit but is preserved; not evicting it",
                t.max_size_mb
            ));
            continue;
        }
        let target = (t.max_size_mb * 0.9 * mb) as u64;
        lru(&mut files);
        for f in files {
            if bytes <= target {
                break;
            }
            bytes -= f.size;
            evicted.insert(&f.path);
            out.actions.push(Action::Delete {
                file: f.clone(),
                reason: format!(
                    "least recently used; {name} over 90% of {} MB",
                    t.max_size_mb
                ),
            });
        }
    }
    // All types together: evict LRU across the selected types until below the global limit.
    let max_total = (cfg.raw.cache.global_settings.max_total_size_gb * 1024.0 * mb) as u64;
    let mut total: u64 = all
        .iter()
        .filter(|f| !evicted.contains(f.path.as_str()))
        .map(|f| f.size)
        .sum();
    if total > max_total {
        let target = (max_total as f64 * 0.9) as u64;
        let mut rest: Vec<&CacheFile> = mine
            .iter()
            .copied()
            .filter(|f| !evicted.contains(f.path.as_str()))
            .collect();
        lru(&mut rest);
        for f in rest {
            if total <= target {
                break;
            }
            total -= f.size;
            out.actions.push(Action::Delete {
                file: f.clone(),
                reason: format!(
                    "least recently used; all types over {} GB",
                    cfg.raw.cache.global_settings.max_total_size_gb
                ),
            });
        }
    }
}

fn plan_smart(
    cfg: &Config,
    selected: &HashSet<&str>,
    mine: &[&CacheFile],
    smart: &SmartInput,
    now: DateTime<Utc>,
    out: &mut ClearPlan,
) -> Result<()> {
    let types = &cfg.raw.cache.cache_types;
    if selected.contains("supplier_cache") {
        let linked: HashSet<&str> = smart
            .links
            .iter()
            .map(|l| l.supplier_ean.as_str())
            .collect();
        let files: BTreeMap<&str, &CacheFile> = mine
            .iter()
            .filter(|f| f.cache_type == "supplier_cache")
            .map(|f| (f.path.as_str(), *f))
            .collect();
        for page in &smart.pages {
            let Some(file) = files.get(page.path.as_str()) else {
                continue;
            };
            let Some(products) = page.doc.get("products").and_then(|p| p.as_array()) else {
                out.warnings
                    .push(format!("{}: no products array; left alone", page.path));
                continue;
            };
            let processed = |p: &serde_json::Value| {
                p.get("ean")
                    .and_then(|e| e.as_str())
                    .is_some_and(|e| linked.contains(e))
            };
            let kept: Vec<serde_json::Value> =
                products.iter().filter(|p| !processed(p)).cloned().collect();
            let removed = products.len() - kept.len();
            if removed == 0 {
                continue;
            }
            if kept.is_empty() {
                out.actions.push(Action::Delete {
                    file: (*file).clone(),
                    reason: format!("all {removed} products processed (EAN in the linking map)"),
                });
            } else {
                let mut doc = page.doc.clone();
                doc["products"] = serde_json::Value::Array(kept);
                let mut content = serde_json::to_vec_pretty(&doc).expect("JSON serialises");
                content.push(b'\n');
                out.actions.push(Action::Rewrite {
                    file: (*file).clone(),
                    reason: format!(
                        "{removed} processed products removed (EAN in the linking map)"
                    ),
                    content,
                    removed_products: removed,
                });
            }
        }
    }
    if selected.contains("amazon_cache") {
        let ttl = types.get("amazon_cache").map(|t| t.ttl_hours).unwrap_or(-1);
        if ttl >= 0 {
            // A TTL beyond chrono's range reaches back to the beginning of time.
            let horizon = chrono::Duration::try_hours(ttl)
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let recent: HashSet<&str> = smart
                .links
                .iter()
                .filter(|l| l.linked_at.is_none_or(|t| t > horizon))
                .map(|l| l.asin.as_str())
                .collect();
            for f in mine.iter().filter(|f| f.cache_type == "amazon_cache") {
                let age = age_hours(now, f.mtime_ns);
                if age <= ttl as f64 {
                    continue;
                }
                let Some(asin) = asin_of(&f.path) else {
                    continue;
                };
                if recent.contains(asin) {
                    continue;
                }
                out.actions.push(Action::Delete {
                    file: (*f).clone(),
                    reason: format!(
                        "{age:.0} h old, past the {ttl} h TTL, no recent link to {asin}"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The ASIN of an amazon cache file named `amazon_<ASIN>.json`.
pub fn asin_of(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    name.strip_prefix("amazon_")?.strip_suffix(".json")
}
