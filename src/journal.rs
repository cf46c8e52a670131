//! The operation journal: one JSON line per operation (what, when, how long, result, bytes)
//! appended to `journal/<YYYY-MM>.jsonl`. Appends are single `write`s with O_APPEND, so
//! concurrent writers never interleave inside a line. `run-due` journals each job it runs on
//! an entry of its own (`run-due:<job>`), linked to the run's entry by `run_id`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::repo::Repository;

/// Operation name of the entry run-due writes for one job: `run-due:backup`,
/// `run-due:clearing`, `run-due:validation`, `run-due:optimization`.
pub fn job_operation(job: &str) -> String {
    format!("{RUN_DUE_JOB_PREFIX}{job}")
}

/// Prefix of the operation names of run-due's per-job entries.
pub const RUN_DUE_JOB_PREFIX: &str = "run-due:";

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When the operation started, by the wall clock (never `--now`).
    pub time: DateTime<FixedOffset>,
    /// The time the operation acted as if it were (`--now`), when one was given; added in
    /// cachevault 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<DateTime<FixedOffset>>,
    /// Links run-due's per-job entries to the entry of their run (same value on both);
    /// added in cachevault 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Operation name (`snapshot`, `forget`, `prune`, `clear`, ...).
    pub operation: String,
    /// The cache root the operation acted on; absent for repository-wide operations (check,
    /// prune) and in entries written before roots were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// `ok`, `partial`, `failed`, or `deferred` (a `performance_aware` clear that found the
    /// machine busy and changed nothing).
    pub result: String,
    /// Exit code the command returned.
    pub exit_code: u8,
    /// Bytes the operation added (positive) or freed (negative), when it knows.
    #[serde(default)]
    pub bytes: i64,
    /// Error message, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Operation-specific details (ids, counts).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl JournalEntry {
    /// The time the operation acted for: `now` when `--now` was given, else `time`.
    pub fn effective_time(&self) -> DateTime<FixedOffset> {
        self.now.unwrap_or(self.time)
    }
}

/// Appends one entry durably.
///
/// # Errors
/// I/O errors.
pub fn record(repo: &Repository, entry: &JournalEntry) -> Result<()> {
    let dir = repo.journal_dir();
    fsutil::create_private_dir(&dir)?;
    let path = dir.join(format!("{}.jsonl", entry.time.format("%Y-%m")));
    let mut line = serde_json::to_vec(entry).expect("journal entry serialises");
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(fsutil::FILE_MODE)
        .open(&path)
        .map_err(Error::io(&path))?;
    f.write_all(&line).map_err(Error::io(&path))?;
    f.sync_all().map_err(Error::io(&path))
}

/// Reads every entry, oldest first. A torn last line (a crash mid-append) is skipped.
///
/// # Errors
/// I/O errors.
pub fn read(repo: &Repository) -> Result<Vec<JournalEntry>> {
    let dir = repo.journal_dir();
    let mut out = Vec::new();
    for name in fsutil::list_names(&dir, ".jsonl")? {
        let path = dir.join(name);
        let text = fsutil::read(&path)?;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(e) = serde_json::from_slice::<JournalEntry>(line) {
                out.push(e);
            }
        }
    }
    out.sort_by_key(|e| e.time);
    Ok(out)
}
