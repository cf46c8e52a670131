//! The operation journal: one JSON line per operation (what, when, how long, result, bytes)
//! appended to the journal object of its month (see `repo::layout`). Appends never
//! interleave inside a line (the backend's promise). `run-due` journals each job it runs on
//! an entry of its own (`run-due:<job>`), linked to the run's entry by `run_id`.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::error::Result;
use crate::repo::{layout, Repository};

/// Operation name of the entry run-due writes for one job: `run-due:backup`,
/// `run-due:clearing`, `run-due:validation`, `run-due:optimization`.
pub fn job_operation(job: &str) -> String {
    format!("{RUN_DUE_JOB_PREFIX}{job}")
}

/// Steps of the optimization job, journaled beside it (`run-due:forget`, ...): parts of the
/// `run-due:optimization` entry, not jobs of their own.
pub const RUN_DUE_STEPS: [&str; 3] = ["forget", "prune", "size_limits"];

/// Whether `operation` is one of [`RUN_DUE_STEPS`].
pub fn is_run_due_step(operation: &str) -> bool {
    operation
        .strip_prefix(RUN_DUE_JOB_PREFIX)
        .is_some_and(|s| RUN_DUE_STEPS.contains(&s))
}

/// Prefix of the operation names of run-due's per-job entries.
pub const RUN_DUE_JOB_PREFIX: &str = "run-due:";

/// How many of run-due's scheduled clears in a row, up to the newest, were deferred (the
/// machine was busy each time): 0 when the newest ran or failed, or none was journaled.
/// `entries` in any order.
pub fn deferrals_in_a_row(entries: &[JournalEntry]) -> usize {
    let clearing = job_operation("clearing");
    let mut clears: Vec<&JournalEntry> =
        entries.iter().filter(|e| e.operation == clearing).collect();
    clears.sort_by_key(|e| e.time);
    clears
        .iter()
        .rev()
        .take_while(|e| e.result == "deferred")
        .count()
}

/// After this many deferred scheduled clears in a row, health warns and run-due says so: the
/// machine is never idle at the scheduled time, and the cache only grows.
pub const DEFERRALS_WARNING: usize = 3;

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
    let name = layout::journal(&entry.time);
    let json = serde_json::to_vec(entry).expect("journal entry serialises");
    let mut line = repo.seal_line(&name, &json);
    line.push(b'\n');
    repo.backend().append(ObjectKind::Journal, &name, &line)
}

/// Reads every entry, oldest first. A torn last line (a crash mid-append) is skipped.
///
/// # Errors
/// I/O errors; in an encrypted repository, [`crate::Error::Corrupt`] naming the month's object
/// when a line other than its last does not authenticate.
pub fn read(repo: &Repository) -> Result<Vec<JournalEntry>> {
    let mut out = Vec::new();
    let mut names: Vec<String> = repo
        .backend()
        .list(ObjectKind::Journal)?
        .into_iter()
        .map(|o| o.name)
        .filter(|n| layout::is_journal(n))
        .collect();
    names.sort();
    for name in names {
        let text = match repo.backend().read(ObjectKind::Journal, &name) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let lines: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (n, line) in lines.iter().enumerate() {
            let json = match repo.unseal_line(&name, line) {
                Ok(j) => j,
                // A torn last line: the crash of an append.
                Err(_) if n + 1 == lines.len() => continue,
                Err(e) => return Err(e),
            };
            if let Ok(e) = serde_json::from_slice::<JournalEntry>(&json) {
                out.push(e);
            }
        }
    }
    out.sort_by_key(|e| e.time);
    Ok(out)
}
