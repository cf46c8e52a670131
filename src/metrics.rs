//! The Prometheus textfile: the `stats` gauges, the health verdict, and what the journal says
//! of run-due's jobs and every operation's duration, in the text exposition format that
//! node_exporter's textfile collector reads. Pure: every input is a parameter; writing the
//! file is the caller's business.

use std::collections::BTreeMap;

use crate::health::{Level, Report};
use crate::journal::{self, JournalEntry, RUN_DUE_JOB_PREFIX};
use crate::stats::{self, Stats};

/// Renders the metrics file: [`stats::prometheus`], then health (when judged) and the
/// journal's families. Every family has `# HELP` and `# TYPE`; names use base units
/// (seconds, bytes) as their last word and counters end in `_total`.
pub fn render(stats: &Stats, health: Option<&Report>, journal: &[JournalEntry]) -> String {
    let mut out = stats::prometheus(stats);
    if let Some(h) = health {
        family(
            &mut out,
            "health_status",
            "gauge",
            "Health verdict: 0 ok, 1 warning, 2 critical (the exit code of `cachevault health`).",
            vec![(String::new(), level(h.status))],
        );
        let mut worst: BTreeMap<&str, Level> =
            h.checks.iter().map(|c| (c.as_str(), Level::Ok)).collect();
        for r in &h.reasons {
            let l = worst.entry(r.check.as_str()).or_insert(Level::Ok);
            *l = (*l).max(r.level);
        }
        family(
            &mut out,
            "health_check_status",
            "gauge",
            "Worst finding of one health check: 0 ok, 1 warning, 2 critical.",
            worst
                .iter()
                .map(|(c, l)| (labels(&[("check", c)]), level(*l)))
                .collect(),
        );
    }
    let jobs: Vec<(&str, &JournalEntry)> = journal
        .iter()
        .filter_map(|e| {
            e.operation
                .strip_prefix(RUN_DUE_JOB_PREFIX)
                .map(|job| (job, e))
        })
        .collect();
    let last = |pred: &dyn Fn(&JournalEntry) -> bool| -> Vec<(String, f64)> {
        let mut by_job: BTreeMap<&str, f64> = BTreeMap::new();
        for (job, e) in &jobs {
            if pred(e) {
                let t = seconds(e);
                let v = by_job.entry(job).or_insert(t);
                *v = v.max(t);
            }
        }
        by_job
            .into_iter()
            .map(|(j, t)| (labels(&[("job", j)]), t))
            .collect()
    };
    family(
        &mut out,
        "run_due_last_success_timestamp_seconds",
        "gauge",
        "Wall-clock start of the last successful run of each run-due job (Unix seconds).",
        last(&|e| e.result == "ok"),
    );
    family(
        &mut out,
        "run_due_last_failure_timestamp_seconds",
        "gauge",
        "Wall-clock start of the last failed (or partial, or interrupted) run of each run-due job (Unix seconds).",
        last(&|e| !matches!(e.result.as_str(), "ok" | "deferred")),
    );
    family(
        &mut out,
        "run_due_last_deferral_timestamp_seconds",
        "gauge",
        "Wall-clock start of the last deferred run of each run-due job (Unix seconds).",
        last(&|e| e.result == "deferred"),
    );
    family(
        &mut out,
        "run_due_clear_deferrals_in_a_row",
        "gauge",
        "Scheduled clears deferred in a row under load, up to the newest (0 once one runs).",
        vec![(String::new(), journal::deferrals_in_a_row(journal) as f64)],
    );
    let mut runs: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for (job, e) in &jobs {
        *runs.entry((job, e.result.as_str())).or_default() += 1.0;
    }
    family(
        &mut out,
        "run_due_job_runs_total",
        "counter",
        "Runs of each run-due job journaled, by result (ok, partial, failed, deferred, interrupted).",
        runs.into_iter()
            .map(|((j, r), n)| (labels(&[("job", j), ("result", r)]), n))
            .collect(),
    );
    let mut durations: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for e in journal {
        let t = seconds(e);
        let d = durations
            .entry(e.operation.as_str())
            .or_insert((f64::MIN, 0.0));
        if t >= d.0 {
            *d = (t, e.seconds);
        }
    }
    family(
        &mut out,
        "operation_last_duration_seconds",
        "gauge",
        "Wall time of the last run of each journaled operation (run-due's jobs as run-due:<job>).",
        durations
            .iter()
            .map(|(op, (_, secs))| (labels(&[("operation", op)]), *secs))
            .collect(),
    );
    out
}

fn level(l: Level) -> f64 {
    f64::from(l.exit_code())
}

/// The journal's wall-clock time of an entry, in Unix seconds.
fn seconds(e: &JournalEntry) -> f64 {
    e.time.timestamp() as f64 + f64::from(e.time.timestamp_subsec_millis()) / 1000.0
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", stats::label_value(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>) {
    if samples.is_empty() {
        return;
    }
    out.push_str(&format!("# HELP cachevault_{name} {help}\n"));
    out.push_str(&format!("# TYPE cachevault_{name} {kind}\n"));
    for (labels, v) in samples {
        out.push_str(&format!("cachevault_{name}{labels} {}\n", stats::number(v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op: &str, minute: u32, result: &str, seconds: f64) -> JournalEntry {
        JournalEntry {
            time: chrono::DateTime::parse_from_rfc3339(&format!(
                "2026-11-20T02:{minute:02}:00+00:00"
            ))
            .unwrap(),
            now: None,
            run_id: None,
            operation: op.into(),
            root: None,
            seconds,
            result: result.into(),
            exit_code: 0,
            bytes: 0,
            error: None,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn journal_families() {
        let stats = Stats {
            now: chrono::Utc::now(),
            cache_types: BTreeMap::new(),
            total: None,
            repository: None,
        };
        let journal = [
            entry("run-due:clearing", 1, "ok", 1.0),
            entry("run-due:clearing", 2, "deferred", 0.1),
            entry("run-due:clearing", 3, "deferred", 0.2),
            entry("run-due:backup", 4, "failed", 2.5),
            entry("run-due:backup", 5, "ok", 3.5),
            entry("snapshot", 6, "ok", 0.5),
        ];
        let text = render(&stats, None, &journal);
        let t0 = 1_795_140_000.0; // 2026-11-20T02:00:00Z
        assert!(text.contains(&format!(
            "cachevault_run_due_last_success_timestamp_seconds{{job=\"backup\"}} {}\n",
            t0 + 300.0
        )));
        assert!(text.contains(&format!(
            "cachevault_run_due_last_failure_timestamp_seconds{{job=\"backup\"}} {}\n",
            t0 + 240.0
        )));
        assert!(text.contains("cachevault_run_due_clear_deferrals_in_a_row 2\n"));
        assert!(text.contains(
            "cachevault_run_due_job_runs_total{job=\"clearing\",result=\"deferred\"} 2\n"
        ));
        assert!(text.contains("# TYPE cachevault_run_due_job_runs_total counter\n"));
        assert!(text.contains(
            "cachevault_operation_last_duration_seconds{operation=\"run-due:backup\"} 3.5\n"
        ));
        assert!(!text.contains("health_status"), "no verdict without health");
    }
}
