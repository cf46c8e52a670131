//! Scheduled jobs for `run-due`: which of backup, clearing, validation and optimization are
//! due at `now`, given when each last ran (kept in `REPO/schedule.json`). Pure planning plus
//! the small state file; running the jobs is the caller's business.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::repo::{layout, Repository};

/// A scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Snapshot the backup-enabled types (`strategies.backup.frequency`), but for those with
    /// a `backup_frequency` of their own.
    Backup,
    /// A type backup of the types with a `backup_frequency` of their own that are due.
    TypeBackup,
    /// Clear by the scheduled strategy (`strategies.clearing.schedule.cron`).
    Clearing,
    /// Validate the cache files (`validation_interval_hours`).
    Validation,
    /// Forget by the retention policy, prune, enforce size limits (`optimization_interval_hours`).
    Optimization,
}

impl Job {
    /// Every job, in the order `run-due` runs them.
    pub const ALL: [Job; 5] = [
        Job::Backup,
        Job::TypeBackup,
        Job::Clearing,
        Job::Validation,
        Job::Optimization,
    ];

    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::TypeBackup => "type_backup",
            Job::Clearing => "clearing",
            Job::Validation => "validation",
            Job::Optimization => "optimization",
        }
    }
}

/// When each job last ran successfully.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Last successful run per job.
    #[serde(default)]
    pub last_run: BTreeMap<Job, DateTime<FixedOffset>>,
    /// Last successful type backup per cache type (types with a `backup_frequency`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub type_last_run: BTreeMap<String, DateTime<FixedOffset>>,
}

/// Why a job is (not) due.
#[derive(Debug, Clone, Serialize)]
pub struct Due {
    /// The job.
    pub job: Job,
    /// Whether it runs now.
    pub due: bool,
    /// In plain words.
    pub reason: String,
    /// Something wrong with the clock: the last run is recorded later than now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The type backup job: the types it backs up now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
}

fn same_period(frequency: &str, a: DateTime<FixedOffset>, b: DateTime<FixedOffset>) -> bool {
    // Periods are calendar periods in the time's own offset: a daily backup at 02:00:05
    // yesterday does not stop one at 02:00:01 today.
    match frequency {
        "hourly" => a.date_naive() == b.date_naive() && a.hour() == b.hour(),
        "weekly" => a.iso_week() == b.iso_week(),
        _ => a.date_naive() == b.date_naive(),
    }
}

/// Decides which jobs are due at `now`. Pure.
///
/// # Errors
/// A cron expression that does not parse (the config check refuses those first).
pub fn due(cfg: &Config, state: &ScheduleState, now: DateTime<FixedOffset>) -> Result<Vec<Due>> {
    let c = &cfg.raw.cache;
    let mut out = Vec::new();
    // A last run recorded later than now means the clock went back (or a test's --now): the
    // record cannot be trusted to mean "already ran", so the job is due, and the caller says so.
    let future = |j: Job| state.last_run.get(&j).copied().filter(|l| *l > now);
    let last = |j: Job| state.last_run.get(&j).copied().filter(|l| *l <= now);
    // Backup.
    let b = &c.strategies.backup;
    out.push(match (b.enabled, last(Job::Backup)) {
        (false, _) => Due {
            job: Job::Backup,
            due: false,
            reason: "backups are disabled".into(),
            warning: None,
            types: Vec::new(),
        },
        (true, Some(l)) if same_period(&b.frequency, l, now) => Due {
            job: Job::Backup,
            due: false,
            reason: format!(
                "already ran this {} period, at {}",
                b.frequency,
                l.to_rfc3339()
            ),
            warning: None,
            types: Vec::new(),
        },
        (true, l) => Due {
            job: Job::Backup,
            due: true,
            reason: match l {
                Some(l) => format!("{} backup; last at {}", b.frequency, l.to_rfc3339()),
                None => format!("{} backup; never ran", b.frequency),
            },
            warning: None,
            types: Vec::new(),
        },
    });
    // Types with a frequency of their own: one type backup of those due.
    let own = cfg.own_frequency_types();
    if !own.is_empty() {
        out.push(type_backups_due(b.enabled, &own, state, now));
    }
    // Clearing: due when the cron fired after the last run (first time: within the last day).
    let s = &c.strategies.clearing.schedule;
    out.push(if !s.enabled {
        Due {
            job: Job::Clearing,
            due: false,
            reason: "scheduled clearing is disabled".into(),
            warning: None,
            types: Vec::new(),
        }
    } else {
        let cron = crate::config::parse_cron(&s.cron)
            .map_err(|e| Error::Invalid(format!("cache.strategies.clearing.schedule.cron: {e}")))?;
        let since = last(Job::Clearing).unwrap_or(now - chrono::Duration::days(1));
        let next = cron.find_next_occurrence(&since, false).ok();
        match next {
            Some(t) if t <= now => Due {
                job: Job::Clearing,
                due: true,
                reason: format!(
                    "cron {:?} fired at {} ({})",
                    s.cron,
                    t.to_rfc3339(),
                    s.strategy
                ),
                warning: None,
                types: Vec::new(),
            },
            Some(t) => Due {
                job: Job::Clearing,
                due: false,
                reason: format!("next at {} (cron {:?})", t.to_rfc3339(), s.cron),
                warning: None,
                types: Vec::new(),
            },
            None => Due {
                job: Job::Clearing,
                due: false,
                reason: format!("cron {:?} never fires", s.cron),
                warning: None,
                types: Vec::new(),
            },
        }
    });
    // Interval jobs.
    let g = &c.global_settings;
    for (job, hours) in [
        (Job::Validation, g.validation_interval_hours),
        (Job::Optimization, g.optimization_interval_hours),
    ] {
        out.push(match last(job) {
            Some(l) if now < l + chrono::Duration::hours(hours) => Due {
                job,
                due: false,
                reason: format!(
                    "every {hours} h; next after {}",
                    (l + chrono::Duration::hours(hours)).to_rfc3339()
                ),
                warning: None,
                types: Vec::new(),
            },
            Some(l) => Due {
                job,
                due: true,
                reason: format!("every {hours} h; last at {}", l.to_rfc3339()),
                warning: None,
                types: Vec::new(),
            },
            None => Due {
                job,
                due: true,
                reason: format!("every {hours} h; never ran"),
                warning: None,
                types: Vec::new(),
            },
        });
    }
    for d in &mut out {
        if let Some(l) = future(d.job) {
            if !d.due && d.reason.contains("disabled") {
                continue;
            }
            d.due = true;
            let w = format!(
                "{} last ran at {}, later than now ({}): the clock went back or was wrong; running it again",
                d.job.name(),
                l.to_rfc3339(),
                now.to_rfc3339()
            );
            d.reason = w.clone();
            d.warning = Some(w);
        }
    }
    Ok(out)
}

/// The type backup job's decision: each type is due once per period of its own frequency.
fn type_backups_due(
    enabled: bool,
    own: &[(String, String)],
    state: &ScheduleState,
    now: DateTime<FixedOffset>,
) -> Due {
    let mut d = Due {
        job: Job::TypeBackup,
        due: false,
        reason: String::new(),
        warning: None,
        types: Vec::new(),
    };
    if !enabled {
        d.reason = "backups are disabled".into();
        return d;
    }
    let mut why = Vec::new();
    let mut warnings = Vec::new();
    for (name, freq) in own {
        match state.type_last_run.get(name) {
            Some(l) if *l > now => {
                warnings.push(format!(
                    "the type backup of {name} last ran at {}, later than now ({}): the clock went back or was wrong; running it again",
                    l.to_rfc3339(),
                    now.to_rfc3339()
                ));
                d.types.push(name.clone());
                why.push(format!("{name}: {freq}, last run in the future"));
            }
            Some(l) if same_period(freq, *l, now) => why.push(format!(
                "{name}: already ran this {freq} period, at {}",
                l.to_rfc3339()
            )),
            Some(l) => {
                d.types.push(name.clone());
                why.push(format!("{name}: {freq}; last at {}", l.to_rfc3339()));
            }
            None => {
                d.types.push(name.clone());
                why.push(format!("{name}: {freq}; never ran"));
            }
        }
    }
    d.due = !d.types.is_empty();
    d.reason = why.join("; ");
    if !warnings.is_empty() {
        d.warning = Some(warnings.join("; "));
    }
    d
}

/// Reads the schedule state (empty when absent). A state object that does not parse is
/// treated as absent, with a warning: every job is then due once, which is safe, while
/// refusing would stop every scheduled job for good.
///
/// # Errors
/// I/O and service errors.
pub fn load_state(repo: &Repository) -> Result<(ScheduleState, Option<String>)> {
    match repo.read_object(ObjectKind::State, layout::SCHEDULE) {
        Err(e) if e.is_corruption() => Ok((
            ScheduleState::default(),
            Some(format!("{e}; every job counts as never run")),
        )),
        Ok(b) => Ok(match serde_json::from_slice(&b) {
            Ok(s) => (s, None),
            Err(e) => (
                ScheduleState::default(),
                Some(format!(
                    "{} does not parse ({e}); every job counts as never run",
                    repo.describe(ObjectKind::State, layout::SCHEDULE)
                )),
            ),
        }),
        Err(e) if e.is_not_found() => Ok((ScheduleState::default(), None)),
        Err(e) => Err(e),
    }
}

/// Writes the schedule state atomically.
///
/// # Errors
/// I/O and service errors.
pub fn save_state(repo: &Repository, s: &ScheduleState) -> Result<()> {
    repo.write_object(
        ObjectKind::State,
        layout::SCHEDULE,
        &serde_json::to_vec_pretty(s).expect("state serialises"),
    )
}
