//! Validation of a cache tree: every `.json` file of a validated cache type must be
//! non-empty UTF-8 JSON that satisfies its type's JSON Schema and carries the configured
//! `cache_version`; state files (`*_state.json`) belong to no type and need only be valid
//! JSON. Files are read in parallel with `O_NOATIME` (LRU eviction relies on access times);
//! this module never changes the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::config::{is_state_file, Config};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::RelPath;
use crate::progress::Progress;
use crate::scan::Stat;

/// What to validate.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// Only these cache types (and the state files inside their folders); empty = every type
    /// with `validation_enabled`, plus every state file under the cache root.
    pub types: Vec<String>,
}

/// Why a file is invalid; the `reason` scripts match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Zero bytes, or only whitespace.
    Empty,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// The content stops early: JSON (or a UTF-8 sequence) ends before it is complete.
    Truncated,
    /// Not JSON (a syntax error, or trailing garbage after a document).
    InvalidJson,
    /// JSON that does not satisfy the type's schema.
    Schema,
    /// `cache_version` missing or not the configured one.
    CacheVersion,
}

impl Problem {
    /// The stable name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Empty => "empty",
            Problem::NotUtf8 => "not_utf8",
            Problem::Truncated => "truncated",
            Problem::InvalidJson => "invalid_json",
            Problem::Schema => "schema",
            Problem::CacheVersion => "cache_version",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem and what exactly was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The kind of problem.
    pub problem: Problem,
    /// Details for people (the parser's or the schema's message, the offending byte).
    pub detail: String,
}

impl Finding {
    fn new(problem: Problem, detail: impl Into<String>) -> Finding {
        Finding {
            problem,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.problem, self.detail)
    }
}

/// One invalid file.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidFile {
    /// Path relative to the cache root.
    pub path: RelPath,
    /// The file's cache type; `None` for state files.
    pub cache_type: Option<String>,
    /// Why it is invalid.
    pub reason: Problem,
    /// What exactly was found.
    pub detail: String,
    /// Metadata when it was read: repair replaces the file only if it is still this one.
    #[serde(skip)]
    pub stat: Stat,
}

/// What validation found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationReport {
    /// Files read and checked.
    pub checked: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Invalid files, by path.
    pub invalid: Vec<InvalidFile>,
    /// Files or folders that could not be read (permissions, I/O errors): not judged.
    pub errors: Vec<String>,
    /// Per cache type (state files under [`STATE_FILES`]): files checked, invalid, and the
    /// invalid ones by reason.
    pub by_type: BTreeMap<String, TypeSummary>,
}

/// The key of state files in [`ValidationReport::by_type`].
pub const STATE_FILES: &str = "(state files)";

/// One cache type's share of a validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeSummary {
    /// Files checked.
    pub checked: u64,
    /// Of them, invalid.
    pub invalid: u64,
    /// Invalid files by reason.
    pub reasons: BTreeMap<Problem, u64>,
}

/// Fewest invalid files of a type that can look like a layout change rather than damage.
const MASS_MIN: u64 = 5;

impl TypeSummary {
    /// Whether this looks like a schema or version change rather than damage: more than
    /// `max_share` of the checked files invalid, or most invalid files failing the schema or
    /// `cache_version` check. The message says why and what to do.
    pub fn mass_change(&self, name: &str, max_share: f64) -> Option<String> {
        if self.invalid < MASS_MIN || self.checked == 0 {
            return None;
        }
        let share = self.invalid as f64 / self.checked as f64;
        let (top, count) = self
            .reasons
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(r, n)| (*r, *n))?;
        let layout = matches!(top, Problem::Schema | Problem::CacheVersion)
            && count * 2 > self.invalid
            && count >= MASS_MIN;
        if share <= max_share && !layout {
            return None;
        }
        Some(format!(
            "{name}: {} of {} checked files ({:.0}%) are invalid, {count} of them for {top}: this looks like a schema or version change, not damage. If the agent changed its record layout, update the type's schema or cache_version in the config; to replace the files with their last valid snapshot versions anyway, run `cachevault repair --force` (what it replaces is kept in a pre-repair snapshot; `cachevault undo` puts it back)",
            self.invalid,
            self.checked,
            share * 100.0
        ))
    }
}

impl ValidationReport {
    /// Whether every file checked is valid and none was left unread.
    pub fn ok(&self) -> bool {
        self.invalid.is_empty() && self.errors.is_empty()
    }

    /// [`TypeSummary::mass_change`] for every type, in name order.
    pub fn mass_changes(&self, max_share: f64) -> Vec<String> {
        self.by_type
            .iter()
            .filter(|(name, _)| name.as_str() != STATE_FILES)
            .filter_map(|(name, t)| t.mass_change(name, max_share))
            .collect()
    }
}

/// How a file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind<'a> {
    /// A file of this cache type: JSON, schema, `cache_version`.
    Typed(&'a str),
    /// A state file: valid JSON only.
    State,
}

impl FileKind<'_> {
    /// The cache type name, if any.
    pub fn cache_type(&self) -> Option<&str> {
        match self {
            FileKind::Typed(t) => Some(t),
            FileKind::State => None,
        }
    }
}

struct TypeRules {
    folder: PathBuf,
    schema: Option<jsonschema::Validator>,
    cache_version: Option<i64>,
}

/// The config's validation rules, compiled once: which files are checked and how.
pub struct Rules<'a> {
    cfg: &'a Config,
    types: BTreeMap<String, TypeRules>,
    /// Whether every validated type was selected (state files anywhere are checked then).
    all: bool,
    /// Only files whose mtime or ctime is later than this (nanoseconds since the epoch).
    changed_since_ns: Option<i128>,
}

impl<'a> Rules<'a> {
    /// Compiles the schemas of the selected types.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming an unknown cache type, a type whose validation is disabled,
    /// or a schema that does not compile.
    pub fn compile(cfg: &'a Config, opts: &ValidateOptions) -> Result<Rules<'a>> {
        let all_types = &cfg.raw.cache.cache_types;
        for name in &opts.types {
            match all_types.get(name) {
                None => {
                    let known: Vec<&str> = all_types.keys().map(String::as_str).collect();
                    return Err(Error::Invalid(format!(
                        "unknown cache type {name:?}; the config {} has: {}",
                        cfg.file.display(),
                        known.join(", ")
                    )));
                }
                Some(t) if !t.validation_enabled => {
                    return Err(Error::Invalid(format!(
                        "cache type {name:?} has validation_enabled: false in {}",
                        cfg.file.display()
                    )));
                }
                Some(_) => {}
            }
        }
        let mut types = BTreeMap::new();
        for (name, t) in all_types {
            if !t.validation_enabled || !(opts.types.is_empty() || opts.types.contains(name)) {
                continue;
            }
            let schema =
                match &t.schema {
                    Some(p) => Some(crate::config::load_schema(&cfg.schema_path(p)).map_err(
                        |e| Error::Invalid(format!("cache.cache_types.{name}.schema: {e}")),
                    )?),
                    None => None,
                };
            types.insert(
                name.clone(),
                TypeRules {
                    folder: t.path.clone(),
                    schema,
                    cache_version: t.cache_version,
                },
            );
        }
        Ok(Rules {
            cfg,
            types,
            all: opts.types.is_empty(),
            changed_since_ns: None,
        })
    }

    /// The names of the cache types checked.
    pub fn type_names(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }

    /// Restricts validation to the files modified (mtime) or changed (ctime: a rename, a
    /// `touch -m` back in time) after `t`: health's cheap check of what appeared since the
    /// last full validation.
    pub fn changed_since(mut self, t: chrono::DateTime<chrono::Utc>) -> Rules<'a> {
        self.changed_since_ns = Some(
            i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos()),
        );
        self
    }

    /// The config the rules come from.
    pub fn config(&self) -> &Config {
        self.cfg
    }

    /// How the file at `rel` (relative to the cache root) is checked; `None` when it is not:
    /// not `.json`, or outside the selected types (state files anywhere when all types are
    /// selected).
    pub fn classify(&self, rel: &Path) -> Option<FileKind<'_>> {
        let name = rel.file_name()?.as_bytes();
        if !name.ends_with(b".json") {
            return None;
        }
        if is_state_file(name) {
            let selected = self.all || self.types.values().any(|t| rel.starts_with(&t.folder));
            return selected.then_some(FileKind::State);
        }
        // The type with the longest folder owns the file, even if it is not selected.
        let (name, _) = self.cfg.type_of(rel)?;
        let (name, _) = self.types.get_key_value(name)?;
        Some(FileKind::Typed(name))
    }

    /// Checks one file's content.
    ///
    /// # Errors
    /// The first problem found.
    pub fn check(&self, kind: FileKind<'_>, data: &[u8]) -> std::result::Result<(), Finding> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(if data.is_empty() {
                Finding::new(Problem::Empty, "the file is empty (0 bytes)")
            } else {
                Finding::new(
                    Problem::Empty,
                    format!("the file holds only whitespace ({} bytes)", data.len()),
                )
            });
        }
        let text = std::str::from_utf8(data).map_err(|e| match e.error_len() {
            // An incomplete multi-byte sequence at the very end: the file was cut short.
            None => Finding::new(
                Problem::Truncated,
                format!(
                    "the file ends inside a UTF-8 sequence at byte {}",
                    e.valid_up_to()
                ),
            ),
            Some(_) => Finding::new(
                Problem::NotUtf8,
                format!(
                    "byte {} (0x{:02x}) is not valid UTF-8",
                    e.valid_up_to(),
                    data[e.valid_up_to()]
                ),
            ),
        })?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            if e.is_eof() {
                Finding::new(Problem::Truncated, format!("the JSON ends early: {e}"))
            } else {
                Finding::new(Problem::InvalidJson, e.to_string())
            }
        })?;
        let FileKind::Typed(name) = kind else {
            return Ok(());
        };
        let Some(rules) = self.types.get(name) else {
            return Ok(());
        };
        if let Some(schema) = &rules.schema {
            // is_valid is the fast path; the first error is only worth computing when invalid.
            if !schema.is_valid(&value) {
                if let Err(e) = schema.validate(&value) {
                    let at = e.instance_path().to_string();
                    let msg = clip(&e.to_string());
                    return Err(Finding::new(
                        Problem::Schema,
                        if at.is_empty() {
                            msg
                        } else {
                            format!("{at}: {msg}")
                        },
                    ));
                }
            }
        }
        if let (Some(want), serde_json::Value::Object(fields)) = (rules.cache_version, &value) {
            match fields.get("cache_version") {
                Some(v) if v.as_i64() == Some(want) => {}
                Some(v) => {
                    return Err(Finding::new(
                        Problem::CacheVersion,
                        format!("cache_version is {}, expected {want}", clip(&v.to_string())),
                    ))
                }
                None => {
                    return Err(Finding::new(
                        Problem::CacheVersion,
                        format!("no cache_version field, expected {want}"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The files to check under the cache root, sorted by path, and the folders that could
    /// not be listed. Symlinks are not followed; the repository and the quarantine folder are
    /// skipped when they lie inside the root.
    fn files(&self) -> Result<(Vec<Candidate<'_>>, Vec<String>)> {
        let root = &self.cfg.root;
        if !root.is_dir() {
            return Err(Error::Invalid(format!(
                "cache root {} is not a folder (cache.root in {})",
                root.display(),
                self.cfg.file.display()
            )));
        }
        let starts: BTreeSet<PathBuf> = if self.all {
            BTreeSet::from([root.clone()])
        } else {
            self.types.values().map(|t| root.join(&t.folder)).collect()
        };
        let skip = [&self.cfg.repository, &self.cfg.quarantine];
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for start in &starts {
            // A selected folder inside another selected folder is walked once, as part of
            // the outer one: the walks are disjoint.
            if starts.iter().any(|s| s != start && start.starts_with(s)) || !start.exists() {
                continue;
            }
            let mut it = walkdir::WalkDir::new(start).follow_links(false).into_iter();
            while let Some(next) = it.next() {
                let de = match next {
                    Ok(de) => de,
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                };
                if de.file_type().is_dir() {
                    if skip.iter().any(|s| de.path() == s.as_path()) {
                        it.skip_current_dir();
                    }
                    continue;
                }
                if !de.file_type().is_file() {
                    continue;
                }
                let Ok(rel) = de.path().strip_prefix(root) else {
                    continue;
                };
                let Some(kind) = self.classify(rel) else {
                    continue;
                };
                out.push(Candidate {
                    abs: de.path().to_path_buf(),
                    rel: RelPath(rel.as_os_str().as_bytes().to_vec()),
                    kind,
                    size: 0,
                });
            }
        }
        // Sizes (for scheduling and progress) are fetched in parallel: tens of thousands of
        // stats in the walking thread would be a serial part of the run.
        let since = self.changed_since_ns;
        let changed: Vec<bool> = out
            .par_iter_mut()
            .map(|c| {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::symlink_metadata(&c.abs).ok();
                c.size = meta.as_ref().map_or(0, |m| m.len());
                let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
                match (since, meta) {
                    (None, _) => true,
                    // Gone since the walk: nothing to check.
                    (Some(_), None) => false,
                    (Some(t), Some(m)) => {
                        ns(m.mtime(), m.mtime_nsec()) > t || ns(m.ctime(), m.ctime_nsec()) > t
                    }
                }
            })
            .collect();
        let mut keep = changed.into_iter();
        out.retain(|_| keep.next().unwrap_or(false));
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok((out, errors))
    }
}

/// A file found by the walk.
struct Candidate<'r> {
    abs: PathBuf,
    rel: RelPath,
    kind: FileKind<'r>,
    size: u64,
}

enum Checked {
    /// Valid; the type name ([`STATE_FILES`] for state files).
    Valid(String),
    Invalid(InvalidFile),
    /// Removed between the walk and the read: not a file any more, not counted.
    Vanished,
    Unreadable(String),
}

/// Validates the cache tree of `cfg`.
///
/// # Errors
/// An unknown or disabled type in `opts`, a schema that does not compile, a missing cache
/// root. Unreadable files are listed in [`ValidationReport::errors`] instead.
pub fn validate(
    cfg: &Config,
    opts: &ValidateOptions,
    progress: &dyn Progress,
) -> Result<ValidationReport> {
    let rules = Rules::compile(cfg, opts)?;
    validate_with(&rules, progress)
}

/// Validates with rules compiled before (repair checks snapshot versions with the same rules).
///
/// # Errors
/// A missing cache root.
pub fn validate_with(rules: &Rules<'_>, progress: &dyn Progress) -> Result<ValidationReport> {
    let (files, mut errors) = rules.files()?;
    // Largest first, so that the one huge linking map does not start last and leave the other
    // workers idle; results are put back in path order below.
    let mut order: Vec<&Candidate<'_>> = files.iter().collect();
    order.sort_by_key(|c| std::cmp::Reverse(c.size));
    progress.start("validate", files.iter().map(|c| c.size).sum());
    let results: Vec<(Checked, u64)> = order
        .par_iter()
        // One read buffer per worker, reused: a fresh buffer per file costs more in the
        // allocator than the read itself.
        .map_init(Vec::new, |buf, c| {
            let r = check_file(rules, c, buf);
            progress.inc(c.size);
            r
        })
        .collect();
    progress.finish();
    let mut report = ValidationReport::default();
    for t in rules.type_names() {
        report.by_type.entry(t).or_default();
    }
    for (checked, bytes) in results {
        match checked {
            Checked::Valid(kind) => {
                report.checked += 1;
                report.by_type.entry(kind).or_default().checked += 1;
            }
            Checked::Invalid(f) => {
                report.checked += 1;
                let t = report
                    .by_type
                    .entry(f.cache_type.clone().unwrap_or_else(|| STATE_FILES.into()))
                    .or_default();
                t.checked += 1;
                t.invalid += 1;
                *t.reasons.entry(f.reason).or_default() += 1;
                report.invalid.push(f);
            }
            Checked::Vanished => continue,
            Checked::Unreadable(e) => errors.push(e),
        }
        report.bytes += bytes;
    }
    report.invalid.sort_by(|a, b| a.path.cmp(&b.path));
    errors.sort();
    report.errors = errors;
    Ok(report)
}

fn check_file(rules: &Rules<'_>, c: &Candidate<'_>, data: &mut Vec<u8>) -> (Checked, u64) {
    let stat = match read_noatime(&c.abs, data) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Checked::Vanished, 0),
        Err(e) => return (Checked::Unreadable(format!("{}: {e}", c.rel.display())), 0),
    };
    let bytes = data.len() as u64;
    match rules.check(c.kind, data) {
        Ok(()) => (
            Checked::Valid(c.kind.cache_type().unwrap_or(STATE_FILES).to_string()),
            bytes,
        ),
        Err(f) => (
            Checked::Invalid(InvalidFile {
                path: c.rel.clone(),
                cache_type: c.kind.cache_type().map(str::to_string),
                reason: f.problem,
                detail: f.detail,
                stat,
            }),
            bytes,
        ),
    }
}

/// Reads a whole file into `buf` (replacing its content) without touching the file's access
/// time; returns its metadata.
pub(crate) fn read_noatime(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<Stat> {
    let mut f = fsutil::open_noatime(path)?;
    let meta = f.metadata()?;
    // Sized from the metadata just read (`read_to_end` would stat the file again); one byte
    // more, so that a file that grew is noticed.
    buf.clear();
    buf.resize(meta.len() as usize + 1, 0);
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2 + 4096, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(Stat::of(&meta))
}

/// Messages can quote a whole document (a schema error on the root value): keep them short.
fn clip(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        std::fs::create_dir_all(dir.join("OUTPUTS")).unwrap();
        std::fs::write(
            dir.join("item.schema.json"),
            r#"{"type": "object", "required": ["id", "cache_version"],
                "properties": {"id": {"type": "string"}, "cache_version": {"type": "integer"}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("cachevault.json"),
            r#"{"cache": {"root": "OUTPUTS", "repository": "repo", "cache_types": {
                "items": {"path": "items", "ttl_hours": 1, "max_size_mb": 1,
                          "backup_enabled": true, "validation_enabled": true,
                          "cleanup_strategy": "ttl", "cache_version": 3,
                          "schema": "item.schema.json"},
                "notes": {"path": "items/notes", "ttl_hours": 1, "max_size_mb": 1,
                          "backup_enabled": true, "validation_enabled": false,
                          "cleanup_strategy": "ttl"}}}}"#,
        )
        .unwrap();
        Config::load(&dir.join("cachevault.json")).unwrap()
    }

    fn reason(rules: &Rules<'_>, kind: FileKind<'_>, data: &[u8]) -> Option<Problem> {
        rules.check(kind, data).err().map(|f| f.problem)
    }

    #[test]
    fn each_problem_has_its_own_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let rules = Rules::compile(&cfg, &ValidateOptions::default()).unwrap();
        let item = FileKind::Typed("items");
        let cases: [(&[u8], Option<Problem>); 12] = [
            (br#"{"id": "a", "cache_version": 3}"#, None),
            (br#"{"id": "a", "cache_version": 3, "extra": [1]}"#, None),
            (b"", Some(Problem::Empty)),
            (b" \n\t", Some(Problem::Empty)),
            (br#"{"id": "a", "cache_ver"#, Some(Problem::Truncated)),
            (b"{\"id\": \"caf\xc3", Some(Problem::Truncated)),
            (
                b"{\"id\": \"caf\xe9\", \"cache_version\": 3}",
                Some(Problem::NotUtf8),
            ),
            (
                br#"{"id": "a", "cache_version": 3} x"#,
                Some(Problem::InvalidJson),
            ),
            (br#"{"cache_version": 3}"#, Some(Problem::Schema)),
            (br#"{"id": 7, "cache_version": 3}"#, Some(Problem::Schema)),
            (
                br#"{"id": "a", "cache_version": 2}"#,
                Some(Problem::CacheVersion),
            ),
            (b"[1, 2", Some(Problem::Truncated)),
        ];
        for (data, want) in cases {
            assert_eq!(
                reason(&rules, item, data),
                want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        // State files need only be JSON.
        assert_eq!(reason(&rules, FileKind::State, b"[1]"), None);
        assert_eq!(
            reason(&rules, FileKind::State, b"{\"a\": "),
            Some(Problem::Truncated)
        );
    }

    #[test]
    fn classification_follows_folders_state_files_and_selection() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let all = Rules::compile(&cfg, &ValidateOptions::default()).unwrap();
        let p = Path::new;
        assert_eq!(
            all.classify(p("items/a.json")),
            Some(FileKind::Typed("items"))
        );
        assert_eq!(all.classify(p("items/a.txt")), None);
        // The nested type owns its folder, and its validation is disabled.
        assert_eq!(all.classify(p("items/notes/n.json")), None);
        // State files belong to no type, wherever they are.
        assert_eq!(
            all.classify(p("items/run_state.json")),
            Some(FileKind::State)
        );
        assert_eq!(all.classify(p("top_state.json")), Some(FileKind::State));
        assert_eq!(all.classify(p("other/x.json")), None);

        let some = Rules::compile(
            &cfg,
            &ValidateOptions {
                types: vec!["items".into()],
            },
        )
        .unwrap();
        assert_eq!(
            some.classify(p("items/run_state.json")),
            Some(FileKind::State)
        );
        assert_eq!(some.classify(p("top_state.json")), None);

        let err = Rules::compile(
            &cfg,
            &ValidateOptions {
                types: vec!["nope".into()],
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("\"nope\""), "{err}");
        let err = Rules::compile(
            &cfg,
            &ValidateOptions {
                types: vec!["notes".into()],
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("validation_enabled"), "{err}");
    }

    #[test]
    fn long_messages_are_clipped_on_a_char_boundary() {
        let s = "é".repeat(400);
        let c = clip(&s);
        assert!(c.len() <= 303 && c.ends_with("..."));
    }
}
