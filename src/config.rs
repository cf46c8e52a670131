//! The user's config file (the cache agent's schema): cache root, repository, cache types and
//! their policies. Unknown keys and impossible values are errors naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole file: `{"cache": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Everything lives under `cache`.
    pub cache: CacheConfig,
}

/// `cache`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Master switch.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cache root, relative to the config file's folder.
    pub root: PathBuf,
    /// Repository, relative to the config file's folder.
    pub repository: PathBuf,
    /// Where repair moves files it cannot restore, relative to the config file's folder.
    #[serde(default = "default_quarantine")]
    pub quarantine: PathBuf,
    /// `global_settings`.
    #[serde(default)]
    pub global_settings: GlobalSettings,
    /// `strategies`.
    #[serde(default)]
    pub strategies: Strategies,
    /// `cache_types`, by name.
    #[serde(default)]
    pub cache_types: BTreeMap<String, CacheType>,
    /// `repair`: the guard against mass repairs.
    #[serde(default)]
    pub repair: RepairSettings,
    /// `outputs`: files run-due writes for people and other programs after each run.
    #[serde(default)]
    pub outputs: Outputs,
}

/// `repair`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepairSettings {
    /// When more than this share (0 to 1) of a type's checked files is invalid, `repair`
    /// refuses without `--force`: that looks like a schema or version change, not damage.
    pub max_invalid_share: f64,
}

impl Default for RepairSettings {
    fn default() -> Self {
        RepairSettings {
            max_invalid_share: 0.2,
        }
    }
}

/// `cache.outputs`: what run-due writes after each run. Room is kept here for further
/// outputs (a Prometheus textfile, say) beside the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// The HTML report, relative to the config file's folder; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_html: Option<PathBuf>,
    /// Days the report's charts cover.
    #[serde(default = "default_report_days")]
    pub report_days: u32,
    /// The Prometheus textfile (node_exporter's textfile collector), relative to the config
    /// file's folder, rewritten atomically after every run-due; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_textfile: Option<PathBuf>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            report_html: None,
            report_days: default_report_days(),
            metrics_textfile: None,
        }
    }
}

fn default_report_days() -> u32 {
    30
}

/// Longest span a report covers: ten years.
pub const MAX_REPORT_DAYS: u32 = 3660;

fn yes() -> bool {
    true
}
fn default_quarantine() -> PathBuf {
    PathBuf::from("quarantine")
}

/// `global_settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalSettings {
    /// Size limit of all types together.
    pub max_total_size_gb: f64,
    /// TTL of types that name none.
    pub default_ttl_hours: i64,
    /// Pre-clear snapshots are kept at least this long.
    pub backup_retention_days: i64,
    /// How often validation runs.
    pub validation_interval_hours: i64,
    /// How often optimisation (forget, prune, size limits) runs.
    pub optimization_interval_hours: i64,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        GlobalSettings {
            max_total_size_gb: 5.0,
            default_ttl_hours: 336,
            backup_retention_days: 7,
            validation_interval_hours: 6,
            optimization_interval_hours: 24,
        }
    }
}

/// `strategies`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategies {
    /// `clearing`.
    #[serde(default)]
    pub clearing: Clearing,
    /// `backup`.
    #[serde(default)]
    pub backup: Backup,
}

/// `strategies.clearing`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Clearing {
    /// Strategy when none is given.
    pub default: String,
    /// Strategies allowed.
    pub available: Vec<String>,
    /// Scheduled clearing.
    #[serde(default)]
    pub schedule: Schedule,
    /// Types the `selective` strategy preserves (the seed's `selective_clear_config`), and
    /// that size-based eviction never empties.
    /// Unset: `ai_category_cache` and `linking_map` where they exist.
    #[serde(default)]
    pub preserve: Option<Vec<String>>,
    /// `performance_aware`: defer while the 1-minute load average per core is above this.
    #[serde(default = "default_load_threshold")]
    pub load_threshold_per_core: f64,
    /// `performance_aware`: files per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `performance_aware`: pause between batches, milliseconds.
    #[serde(default = "default_batch_pause")]
    pub batch_pause_ms: u64,
    /// `warm`: paths (relative to the cache root, or prefixes of them) restored first.
    #[serde(default)]
    pub warm_priority: Vec<String>,
}

fn default_load_threshold() -> f64 {
    0.75
}
fn default_batch_size() -> usize {
    500
}
fn default_batch_pause() -> u64 {
    100
}

impl Default for Clearing {
    fn default() -> Self {
        Clearing {
            preserve: None,
            load_threshold_per_core: default_load_threshold(),
            batch_size: default_batch_size(),
            batch_pause_ms: default_batch_pause(),
            warm_priority: Vec::new(),
            default: "smart_selective".into(),
            available: STRATEGIES.iter().map(|s| s.to_string()).collect(),
            schedule: Schedule::default(),
        }
    }
}

/// `strategies.clearing.schedule`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Whether scheduled clearing runs.
    pub enabled: bool,
    /// Five-field cron expression.
    pub cron: String,
    /// Strategy of scheduled clears.
    pub strategy: String,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            enabled: true,
            cron: "0 2 * * *".into(),
            strategy: "performance_aware".into(),
        }
    }
}

/// `strategies.backup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    /// Whether scheduled backups run.
    pub enabled: bool,
    /// `hourly`, `daily` or `weekly`.
    pub frequency: String,
    /// Compress archives (always true; kept for the schema).
    #[serde(default = "yes")]
    pub compression: bool,
    /// Retention of backups.
    #[serde(default)]
    pub retention_policy: RetentionPolicy,
    /// Repositories (folders or `s3:` URLs) every new backup is copied to by run-due; the
    /// retention policy applies there too, in the optimization job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy_to: Vec<String>,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            enabled: true,
            frequency: "daily".into(),
            compression: true,
            retention_policy: RetentionPolicy::default(),
            copy_to: Vec::new(),
        }
    }
}

/// `strategies.backup.retention_policy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// keep-daily.
    pub daily_backups: i64,
    /// keep-weekly.
    pub weekly_backups: i64,
    /// keep-monthly.
    pub monthly_backups: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            daily_backups: 7,
            weekly_backups: 4,
            monthly_backups: 3,
        }
    }
}

/// One entry of `cache_types`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheType {
    /// Folder relative to the cache root.
    pub path: PathBuf,
    /// Hours before an entry expires; -1 never.
    pub ttl_hours: i64,
    /// Size limit.
    pub max_size_mb: f64,
    /// Whether backups include this type.
    pub backup_enabled: bool,
    /// Whether validate checks this type.
    pub validation_enabled: bool,
    /// The type's own clearing strategy.
    pub cleanup_strategy: String,
    /// JSON Schema file, relative to the config file's folder.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Required `cache_version` value of records, if the type carries one.
    #[serde(default)]
    pub cache_version: Option<i64>,
    /// `hourly`, `daily` or `weekly`: run-due backs this type up on its own at this
    /// frequency (a type backup) instead of in the regular backup. Unset: the regular
    /// backup, at `strategies.backup.frequency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_frequency: Option<String>,
}

/// Every clearing strategy.
pub const STRATEGIES: [&str; 7] = [
    "full",
    "selective",
    "ttl",
    "size_based",
    "smart_selective",
    "archive_old",
    "performance_aware",
];

/// A loaded, checked config with paths resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub file: PathBuf,
    /// As parsed.
    pub raw: ConfigFile,
    /// Absolute cache root.
    pub root: PathBuf,
    /// Absolute repository path.
    pub repository: PathBuf,
    /// Absolute quarantine folder.
    pub quarantine: PathBuf,
    /// Absolute folder of the config file; relative paths in it start here.
    pub base: PathBuf,
    /// Absolute path of `cache.outputs.report_html`, when set.
    pub report_html: Option<PathBuf>,
    /// Absolute path of `cache.outputs.metrics_textfile`, when set.
    pub metrics_textfile: Option<PathBuf>,
    /// `strategies.backup.copy_to`, folders resolved against the config's folder.
    pub copy_to: Vec<String>,
}

impl Config {
    /// Loads and checks a config file.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the file, the key and what was expected.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = crate::fsutil::read(path)?;
        let problem = |key: String, message: String| Error::ConfigProblems {
            file: path.to_path_buf(),
            problems: vec![ConfigProblem { key, message }],
        };
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| problem(String::new(), format!("not valid JSON: {e}")))?;
        let mut problems = parse_sections(&mut value);
        let raw: Option<ConfigFile> = match serde_path_to_error::deserialize(value) {
            Ok(raw) => Some(raw),
            Err(e) => {
                problems.push(ConfigProblem {
                    key: e.path().to_string().trim_start_matches('.').to_string(),
                    message: e.into_inner().to_string(),
                });
                None
            }
        };
        let Some(raw) = raw else {
            return Err(Error::ConfigProblems {
                file: path.to_path_buf(),
                problems,
            });
        };
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = base.canonicalize().map_err(Error::io(base))?;
        let cfg = Config {
            file: path.to_path_buf(),
            root: lexical_join(&base, &raw.cache.root),
            // A URL is kept as written; a folder is resolved against the config's folder.
            repository: if crate::backend::is_url(&raw.cache.repository.to_string_lossy()) {
                raw.cache.repository.clone()
            } else {
                lexical_join(&base, &raw.cache.repository)
            },
            quarantine: lexical_join(&base, &raw.cache.quarantine),
            report_html: raw
                .cache
                .outputs
                .report_html
                .as_ref()
                .map(|p| lexical_join(&base, p)),
            metrics_textfile: raw
                .cache
                .outputs
                .metrics_textfile
                .as_ref()
                .map(|p| lexical_join(&base, p)),
            copy_to: raw
                .cache
                .strategies
                .backup
                .copy_to
                .iter()
                .map(|to| {
                    if to.is_empty() || crate::backend::is_url(to) {
                        to.clone()
                    } else {
                        lexical_join(&base, Path::new(to)).display().to_string()
                    }
                })
                .collect(),
            base: base.clone(),
            raw,
        };
        problems.extend(cfg.problems());
        if !problems.is_empty() {
            return Err(Error::ConfigProblems {
                file: path.to_path_buf(),
                problems,
            });
        }
        Ok(cfg)
    }

    /// The cache root as snapshots record it: canonical (symlinks resolved) when it exists,
    /// else as the config names it. Snapshots and clear records of this root carry this text.
    pub fn root_text(&self) -> String {
        self.root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone())
            .to_string_lossy()
            .into_owned()
    }

    /// Every problem of a parsed config, each naming its key; none when it is sound.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        self.check_settings(&mut p);
        self.check_outputs(&mut p);
        p.0
    }

    fn check_settings(&self, p: &mut Problems) {
        let share = self.raw.cache.repair.max_invalid_share;
        if !(0.0..=1.0).contains(&share) {
            p.bad(
                "cache.repair.max_invalid_share",
                "a share between 0 and 1 (0.2 is 20%)",
            );
        }
        let g = &self.raw.cache.global_settings;
        if !(g.max_total_size_gb > 0.0 && g.max_total_size_gb.is_finite()) {
            p.bad(
                "cache.global_settings.max_total_size_gb",
                "a positive number",
            );
        }
        for (key, v, max) in [
            ("backup_retention_days", g.backup_retention_days, MAX_DAYS),
            (
                "validation_interval_hours",
                g.validation_interval_hours,
                MAX_HOURS,
            ),
            (
                "optimization_interval_hours",
                g.optimization_interval_hours,
                MAX_HOURS,
            ),
        ] {
            if v <= 0 || v > max {
                p.bad(
                    &format!("cache.global_settings.{key}"),
                    &format!("a positive integer up to {max} (100 years), not {v}"),
                );
            }
        }
        if !valid_ttl(g.default_ttl_hours) {
            p.bad(
                "cache.global_settings.default_ttl_hours",
                &ttl_expected(g.default_ttl_hours),
            );
        }
        let c = &self.raw.cache.strategies.clearing;
        for (key, s) in [
            ("cache.strategies.clearing.default", &c.default),
            (
                "cache.strategies.clearing.schedule.strategy",
                &c.schedule.strategy,
            ),
        ] {
            if !STRATEGIES.contains(&s.as_str()) {
                p.bad(key, &format!("one of {}", STRATEGIES.join(", ")));
            }
        }
        for s in &c.available {
            if !STRATEGIES.contains(&s.as_str()) {
                p.bad(
                    "cache.strategies.clearing.available",
                    &format!("only strategies among {}, not {s:?}", STRATEGIES.join(", ")),
                );
            }
        }
        if let Err(e) = parse_cron(&c.schedule.cron) {
            p.bad(
                "cache.strategies.clearing.schedule.cron",
                &format!("a five-field cron expression that fires ({e})"),
            );
        }
        for name in c.preserve.iter().flatten() {
            if !self.raw.cache.cache_types.contains_key(name) {
                p.bad(
                    "cache.strategies.clearing.preserve",
                    &format!("names of cache types, not {name:?}"),
                );
            }
        }
        if !(c.load_threshold_per_core > 0.0 && c.load_threshold_per_core.is_finite()) {
            p.bad(
                "cache.strategies.clearing.load_threshold_per_core",
                "a positive number",
            );
        }
        if c.batch_size == 0 {
            p.bad("cache.strategies.clearing.batch_size", "a positive integer");
        }
        if c.batch_pause_ms > MAX_BATCH_PAUSE_MS {
            p.bad(
                "cache.strategies.clearing.batch_pause_ms",
                &format!(
                    "a pause of at most {MAX_BATCH_PAUSE_MS} ms (one hour), not {}",
                    c.batch_pause_ms
                ),
            );
        }
        let b = &self.raw.cache.strategies.backup;
        if !["hourly", "daily", "weekly"].contains(&b.frequency.as_str()) {
            p.bad(
                "cache.strategies.backup.frequency",
                "\"hourly\", \"daily\" or \"weekly\"",
            );
        }
        for (i, to) in self.copy_to.iter().enumerate() {
            let key = format!("cache.strategies.backup.copy_to[{i}]");
            if to.is_empty() {
                p.bad(&key, "a folder or an s3: URL, not an empty string");
                continue;
            }
            #[cfg(feature = "s3")]
            if to.starts_with("s3:") {
                if let Err(e) = crate::backend::s3::S3Location::parse(to) {
                    p.bad(&key, &format!("a valid s3: URL ({e})"));
                }
            }
            if !to.starts_with("s3:") && crate::backend::is_url(to) {
                p.bad(
                    &key,
                    "a folder or an s3: URL (no other kind of URL is supported)",
                );
            }
            if Path::new(to) == self.repository {
                p.bad(&key, "another repository than cache.repository");
            }
            if !crate::backend::is_url(to)
                && (Path::new(to).starts_with(&self.root) || self.root.starts_with(to))
            {
                p.bad(
                    &key,
                    "a folder that neither is, holds nor lies in the cache root",
                );
            }
        }
        let r = &b.retention_policy;
        for (key, v) in [
            ("daily_backups", r.daily_backups),
            ("weekly_backups", r.weekly_backups),
            ("monthly_backups", r.monthly_backups),
        ] {
            if v < -1 {
                p.bad(
                    &format!("cache.strategies.backup.retention_policy.{key}"),
                    "a count >= 0, or -1 for unlimited",
                );
            }
        }
        let mut folders: BTreeMap<PathBuf, &String> = BTreeMap::new();
        for (name, t) in &self.raw.cache.cache_types {
            let key = |k: &str| format!("cache.cache_types.{name}.{k}");
            if !valid_ttl(t.ttl_hours) {
                p.bad(&key("ttl_hours"), &ttl_expected(t.ttl_hours));
            }
            if !(t.max_size_mb > 0.0 && t.max_size_mb.is_finite()) {
                p.bad(&key("max_size_mb"), "a positive number of megabytes");
            }
            if !STRATEGIES.contains(&t.cleanup_strategy.as_str()) {
                p.bad(
                    &key("cleanup_strategy"),
                    &format!("one of {}", STRATEGIES.join(", ")),
                );
            }
            if let Some(f) = &t.backup_frequency {
                if !["hourly", "daily", "weekly"].contains(&f.as_str()) {
                    p.bad(
                        &key("backup_frequency"),
                        &format!("\"hourly\", \"daily\" or \"weekly\", not {f:?}"),
                    );
                }
                if !t.backup_enabled {
                    p.bad(
                        &key("backup_frequency"),
                        "no frequency while backup_enabled is false (the type is never backed up)",
                    );
                }
            }
            if t.path.is_absolute()
                || t.path
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                p.bad(
                    &key("path"),
                    "a relative path inside the cache root without '..'",
                );
            }
            // Each file belongs to the type with the most specific folder: two types with one
            // folder would make one of them (and its policies, `preserve` included) vanish.
            let folder: PathBuf = t.path.components().collect();
            if let Some(other) = folders.insert(folder, name) {
                p.bad(
                    &key("path"),
                    &format!(
                        "a folder of its own ({other} uses {} already)",
                        t.path.display()
                    ),
                );
            }
            if let Some(schema) = &t.schema {
                let file = self.schema_path(schema);
                if let Err(e) = load_schema(&file) {
                    p.bad(
                        &key("schema"),
                        &format!("a readable JSON Schema file ({e})"),
                    );
                }
            }
            let dir = self.root.join(&t.path);
            if self.repository.starts_with(&dir) {
                p.bad(
                    "cache.repository",
                    &format!(
                        "a folder outside every cache folder (it lies inside {name}'s {})",
                        dir.display()
                    ),
                );
            }
        }
        if self.root.parent().is_none() {
            p.bad("cache.root", "a cache folder, not the file system root");
        }
        if self.repository == self.root || self.root.starts_with(&self.repository) {
            p.bad(
                "cache.repository",
                "a folder that neither is nor contains the cache root",
            );
        }
    }

    fn check_outputs(&self, p: &mut Problems) {
        let mut bad = |key: &str, expected: String| {
            p.bad(&format!("cache.outputs.{key}"), &expected);
        };
        let o = &self.raw.cache.outputs;
        if !(1..=MAX_REPORT_DAYS).contains(&o.report_days) {
            bad(
                "report_days",
                format!(
                    "a number of days from 1 to {MAX_REPORT_DAYS}, not {}",
                    o.report_days
                ),
            );
        }
        let outputs = [
            ("report_html", &o.report_html, &self.report_html),
            (
                "metrics_textfile",
                &o.metrics_textfile,
                &self.metrics_textfile,
            ),
        ];
        for (key, raw, path) in outputs {
            let (Some(raw), Some(path)) = (raw, path) else {
                continue;
            };
            if raw.as_os_str().is_empty()
                || path.file_name().is_none()
                || raw.as_os_str().as_encoded_bytes().ends_with(b"/")
            {
                bad(key, format!("a file name, not {raw:?}"));
            }
            // An output is not cache data: inside a cache folder it would be backed up,
            // cleared and undone with it; inside the repository, prune's business.
            let inside = |dir: &Path| path.starts_with(dir);
            if inside(&self.repository) {
                bad(
                    key,
                    format!(
                        "a file outside the repository {}",
                        self.repository.display()
                    ),
                );
            }
            if let Some((name, t)) = self
                .raw
                .cache
                .cache_types
                .iter()
                .find(|(_, t)| inside(&self.type_dir(t)))
            {
                bad(
                    key,
                    format!(
                        "a file outside every cache folder (it lies inside {name}'s {})",
                        self.type_dir(t).display()
                    ),
                );
            }
        }
    }

    /// Types the `selective` strategy preserves and size-based eviction never empties.
    pub fn preserved_types(&self) -> Vec<String> {
        match &self.raw.cache.strategies.clearing.preserve {
            Some(list) => list.clone(),
            None => ["ai_category_cache", "linking_map"]
                .iter()
                .filter(|t| self.raw.cache.cache_types.contains_key(**t))
                .map(|t| t.to_string())
                .collect(),
        }
    }

    /// Absolute path of a schema file named in the config (relative to the config's folder).
    pub fn schema_path(&self, p: &Path) -> PathBuf {
        lexical_join(&self.base, p)
    }

    /// The cache type whose folder holds `rel` (a path relative to the root), if any: the
    /// type with the longest matching folder wins.
    pub fn type_of(&self, rel: &Path) -> Option<(&str, &CacheType)> {
        self.raw
            .cache
            .cache_types
            .iter()
            .filter(|(_, t)| rel.starts_with(&t.path))
            .max_by_key(|(_, t)| t.path.components().count())
            .map(|(n, t)| (n.as_str(), t))
    }

    /// Every cache type's folder relative to the root, for per-type totals in snapshots.
    pub fn type_folders(&self) -> Vec<(String, crate::manifest::RelPath)> {
        use std::os::unix::ffi::OsStrExt;
        self.raw
            .cache
            .cache_types
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    crate::manifest::RelPath(t.path.as_os_str().as_bytes().to_vec()),
                )
            })
            .collect()
    }

    /// The cache type called `name`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the unknown type and the types the config has.
    pub fn type_named(&self, name: &str) -> Result<&CacheType> {
        self.raw.cache.cache_types.get(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .raw
                .cache
                .cache_types
                .keys()
                .map(String::as_str)
                .collect();
            Error::Invalid(format!(
                "unknown cache type {name:?}; the config {} has: {}",
                self.file.display(),
                known.join(", ")
            ))
        })
    }

    /// The folders (relative to the root) and names of the types called `names`, for a type
    /// backup or restore: deduplicated, in the order given.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming an unknown type.
    pub fn types_named(&self, names: &[String]) -> Result<Vec<(String, crate::manifest::RelPath)>> {
        use std::os::unix::ffi::OsStrExt;
        let mut out: Vec<(String, crate::manifest::RelPath)> = Vec::new();
        for n in names {
            let t = self.type_named(n)?;
            if out.iter().any(|(m, _)| m == n) {
                continue;
            }
            let folder: PathBuf = t.path.components().collect();
            out.push((
                n.clone(),
                crate::manifest::RelPath(folder.as_os_str().as_bytes().to_vec()),
            ));
        }
        Ok(out)
    }

    /// What a type backup of `names` includes, relative to the root: the types' folders
    /// (a folder inside another chosen one is left to it). State files count only inside them.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming an unknown type, or a type whose folder does not exist.
    pub fn type_includes(&self, names: &[String]) -> Result<Vec<crate::manifest::RelPath>> {
        let named = self.types_named(names)?;
        let mut out: Vec<crate::manifest::RelPath> = Vec::new();
        for (n, rel) in &named {
            let dir = self.root.join(rel.to_path());
            if !dir.is_dir() {
                return Err(Error::Invalid(format!(
                    "cache type {n:?}: its folder {} does not exist",
                    dir.display()
                )));
            }
            if named
                .iter()
                .any(|(m, other)| m != n && other != rel && rel.starts_with(other))
            {
                continue;
            }
            out.push(rel.clone());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// What run-due's regular backup includes and the types it records: [`backup_includes`]
    /// and [`type_folders`] without the types that have a `backup_frequency` of their own
    /// (their type backups hold them, state files inside their folders included).
    ///
    /// [`backup_includes`]: Config::backup_includes
    /// [`type_folders`]: Config::type_folders
    pub fn regular_backup(
        &self,
    ) -> (
        Vec<crate::manifest::RelPath>,
        Vec<(String, crate::manifest::RelPath)>,
    ) {
        let own: Vec<String> = self
            .own_frequency_types()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let types = self.type_folders();
        let (own_folders, rest): (Vec<_>, Vec<_>) =
            types.into_iter().partition(|(n, _)| own.contains(n));
        let includes = self
            .backup_includes()
            .into_iter()
            .filter(|i| !own_folders.iter().any(|(_, f)| f == i))
            .collect();
        (includes, rest)
    }

    /// Backup-enabled types with a `backup_frequency` of their own, by name.
    pub fn own_frequency_types(&self) -> Vec<(String, String)> {
        self.raw
            .cache
            .cache_types
            .iter()
            .filter(|(_, t)| t.backup_enabled)
            .filter_map(|(n, t)| t.backup_frequency.clone().map(|f| (n.clone(), f)))
            .collect()
    }

    /// Folder of a cache type.
    pub fn type_dir(&self, t: &CacheType) -> PathBuf {
        self.root.join(&t.path)
    }
}

/// Longest TTL or interval in hours: 100 years. Larger values are typos, and time arithmetic
/// on them would overflow.
const MAX_HOURS: i64 = 100 * 366 * 24;
/// Longest retention in days: 100 years.
const MAX_DAYS: i64 = 100 * 366;
/// Longest pause between clearing batches: an hour.
const MAX_BATCH_PAUSE_MS: u64 = 3_600_000;

/// One thing wrong in a config file: the key path (`cache.cache_types.amazon_cache.ttl_hours`)
/// and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// Dotted path of the key; empty for the file as a whole.
    pub key: String,
    /// What is wrong, in words (`expected ...`).
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// The problems found so far: every check adds to it instead of stopping at the first.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn bad(&mut self, key: &str, expected: &str) {
        self.0.push(ConfigProblem {
            key: key.to_string(),
            message: format!("expected {expected}"),
        });
    }
}

/// Fills in the per-type keys that have a default (`ttl_hours` from
/// `global_settings.default_ttl_hours`, `backup_enabled` and `validation_enabled` true,
/// `cleanup_strategy` from `strategies.clearing.default`), then reads each section of `cache`
/// and each cache type on its own: one that does not read is reported under its key and
/// left out, so that one run names every problem instead of the first. Sections left out
/// take their defaults for the checks that follow; the load fails all the same.
fn parse_sections(value: &mut serde_json::Value) -> Vec<ConfigProblem> {
    use serde_json::Value;
    fn try_section<T: serde::de::DeserializeOwned>(
        v: &Value,
        prefix: &str,
        out: &mut Vec<ConfigProblem>,
    ) -> bool {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(_) => true,
            Err(e) => {
                let inner = e.path().to_string();
                let key = if inner.is_empty() || inner == "." {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{inner}")
                };
                out.push(ConfigProblem {
                    key,
                    message: e.into_inner().to_string(),
                });
                false
            }
        }
    }
    let mut out = Vec::new();
    let Some(cache) = value.get_mut("cache").and_then(Value::as_object_mut) else {
        return out;
    };
    let ttl = cache
        .get("global_settings")
        .and_then(|g| g.get("default_ttl_hours"))
        .filter(|v| v.is_i64())
        .cloned()
        .unwrap_or_else(|| GlobalSettings::default().default_ttl_hours.into());
    let strategy = cache
        .get("strategies")
        .and_then(|s| s.get("clearing"))
        .and_then(|c| c.get("default"))
        .filter(|v| v.is_string())
        .cloned()
        .unwrap_or_else(|| Clearing::default().default.into());
    if let Some(types) = cache.get_mut("cache_types").and_then(Value::as_object_mut) {
        let mut broken = Vec::new();
        for (name, t) in types.iter_mut() {
            if let Some(t) = t.as_object_mut() {
                t.entry("ttl_hours").or_insert_with(|| ttl.clone());
                t.entry("backup_enabled").or_insert(Value::Bool(true));
                t.entry("validation_enabled").or_insert(Value::Bool(true));
                t.entry("cleanup_strategy")
                    .or_insert_with(|| strategy.clone());
            }
            if !try_section::<CacheType>(t, &format!("cache.cache_types.{name}"), &mut out) {
                broken.push(name.clone());
            }
        }
        for name in broken {
            types.remove(&name);
        }
    }
    let mut broken = Vec::new();
    for (key, v) in cache.iter() {
        let prefix = format!("cache.{key}");
        let ok = match key.as_str() {
            "global_settings" => try_section::<GlobalSettings>(v, &prefix, &mut out),
            "strategies" => try_section::<Strategies>(v, &prefix, &mut out),
            "repair" => try_section::<RepairSettings>(v, &prefix, &mut out),
            "outputs" => try_section::<Outputs>(v, &prefix, &mut out),
            _ => true,
        };
        if !ok {
            broken.push(key.clone());
        }
    }
    for key in broken {
        cache.remove(&key);
    }
    out
}

fn valid_ttl(hours: i64) -> bool {
    hours == -1 || (1..=MAX_HOURS).contains(&hours)
}

fn ttl_expected(hours: i64) -> String {
    format!(
        "a positive number of hours up to {MAX_HOURS} (100 years), or -1 for never, not {hours}"
    )
}

/// Joins and removes `.`/`..` without touching the file system (the folders may not exist yet).
fn lexical_join(base: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(p).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl Config {
    /// What a config-driven snapshot includes, relative to the root: the folders of the
    /// backup-enabled types that exist, plus every `*_state.json` outside them (state files
    /// are always backed up, wherever they sit).
    pub fn backup_includes(&self) -> Vec<crate::manifest::RelPath> {
        use std::os::unix::ffi::OsStrExt;
        let mut dirs: Vec<PathBuf> = self
            .raw
            .cache
            .cache_types
            .values()
            .filter(|t| t.backup_enabled)
            .map(|t| t.path.clone())
            .filter(|p| self.root.join(p).exists())
            .collect();
        dirs.sort();
        dirs.dedup();
        let covered: Vec<PathBuf> = dirs.iter().map(|d| self.root.join(d)).collect();
        let mut out: Vec<crate::manifest::RelPath> = dirs
            .iter()
            .map(|d| crate::manifest::RelPath(d.as_os_str().as_bytes().to_vec()))
            .collect();
        let mut it = walkdir::WalkDir::new(&self.root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(Ok(de)) = it.next() {
            if covered.iter().any(|c| c == de.path()) || de.path() == self.repository {
                if de.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            if de.file_type().is_file() && is_state_file(de.file_name().as_bytes()) {
                if let Ok(rel) = de.path().strip_prefix(&self.root) {
                    out.push(crate::manifest::RelPath(
                        rel.as_os_str().as_bytes().to_vec(),
                    ));
                }
            }
        }
        out
    }
}

/// Whether a file name is a state file (`*_state.json`): backed up, never cleared.
pub fn is_state_file(name: &[u8]) -> bool {
    name.ends_with(b"_state.json")
}

/// Parses a five-field cron expression and proves it fires within the next five years
/// (`0 0 30 2 *` never does, and is refused rather than looped on).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_cron(expr: &str) -> std::result::Result<croner::Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "{expr:?} does not have 5 fields (minute hour day-of-month month day-of-week)"
        ));
    }
    let cron: croner::Cron = expr.parse().map_err(|e| format!("{expr:?}: {e}"))?;
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("constant time parses")
        .with_timezone(&chrono::Utc);
    match cron.find_next_occurrence(&start, false) {
        Ok(t) if t < start + chrono::Duration::days(5 * 366) => Ok(cron),
        _ => Err(format!("{expr:?} never fires")),
    }
}

/// Reads and compiles a JSON Schema file.
///
/// # Errors
/// A message naming what failed.
pub fn load_schema(path: &Path) -> std::result::Result<jsonschema::Validator, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    jsonschema::validator_for(&value).map_err(|e| format!("{}: {e}", path.display()))
}
