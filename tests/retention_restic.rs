//! Cross-checks `cachevault::retention::plan` against the real `restic forget`.
//!
//! A throw-away restic repository receives ~40 tiny snapshots with backdated
//! times spread irregularly over fourteen months; then `restic forget
//! --dry-run --json` is run with a range of policies and its keep list and
//! keep reasons are compared with `plan`. Skipped (with a note on stderr) when
//! no `restic` binary is on PATH, except under CI, where that fails.
//!
//! Older restic releases differ from the current policy evaluation in ways the
//! comparison accounts for, based on the version `restic version` reports:
//! before 0.16 a rule with budget left did not keep the oldest snapshot and
//! `-1` disabled a rule instead of making it unlimited; 0.16 introduced the
//! keep-oldest rule, and a later release (0.18 at the latest) added the
//! `oldest` prefix to its reasons, so for 0.16 and 0.17 reasons are compared
//! with that prefix removed on both sides.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cachevault::retention::{plan, Duration, KeepPolicy, SnapshotMeta};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;

/// Which generation of restic's policy evaluation the binary implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    /// Before 0.16: no keep-oldest rule, `-1` disables a rule.
    Legacy,
    /// 0.16 and 0.17: keep-oldest rule, with or without the `oldest` reason
    /// prefix; unlimited is spelled `unlimited` on the command line.
    OldestPrefixUncertain,
    /// 0.18 and later.
    Current,
}

impl Generation {
    fn of(version: (u32, u32, u32)) -> Self {
        match version {
            (0, minor, _) if minor < 16 => Generation::Legacy,
            (0, minor, _) if minor < 18 => Generation::OldestPrefixUncertain,
            _ => Generation::Current,
        }
    }
}

struct Restic {
    repo: PathBuf,
    cache: PathBuf,
}

impl Restic {
    fn command(&self) -> Command {
        let mut cmd = Command::new("restic");
        cmd.env("RESTIC_PASSWORD", "x")
            .env("TZ", "UTC")
            .env("RESTIC_CACHE_DIR", &self.cache)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_REPOSITORY_FILE")
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .arg("--repo")
            .arg(&self.repo);
        cmd
    }

    fn run<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        let output = cmd.output().expect("restic runs");
        assert!(
            output.status.success(),
            "{cmd:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("restic prints UTF-8")
    }
}

/// The version of the `restic` on PATH; `None` when there is none (outside CI only: under
/// CI a missing restic fails the test).
fn restic_version() -> Option<(u32, u32, u32)> {
    if !common::require("restic", "compare retention plans with `restic forget`") {
        return None;
    }
    let output = Command::new("restic")
        .arg("version")
        .output()
        .expect("restic runs");
    let text = String::from_utf8_lossy(&output.stdout);
    // "restic 0.14.0 compiled with go1.19.8 on linux/amd64"
    let word = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `restic version` output: {text:?}"));
    let mut parts = word.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) => Some((major, minor, patch)),
        _ => panic!("unexpected `restic version` output: {text:?}"),
    }
}

/// Deterministic, irregular backup times: bursts within an hour, several a
/// day, gaps of days and of weeks, plus the ISO week 53 boundary of 2020.
fn backup_times() -> Vec<NaiveDateTime> {
    let mut times: Vec<NaiveDateTime> = [
        "2020-12-31 22:00:00",
        "2021-01-01 09:00:00",
        "2021-01-03 23:30:00",
        "2021-01-04 00:15:00",
    ]
    .iter()
    .map(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("valid time"))
    .collect();

    let end = NaiveDate::from_ymd_opt(2022, 1, 20)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("valid date");
    let mut t = NaiveDate::from_ymd_opt(2020, 11, 20)
        .and_then(|d| d.and_hms_opt(6, 13, 7))
        .expect("valid date");
    let mut state: u64 = 0x5eed_cafe;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    while t < end {
        times.push(t);
        let gap = match next(10) {
            0..=2 => TimeDelta::minutes(5 + next(50) as i64),
            3..=4 => TimeDelta::hours(1 + next(22) as i64),
            5..=7 => TimeDelta::days(2 + next(8) as i64) + TimeDelta::hours(next(24) as i64),
            _ => TimeDelta::days(25 + next(45) as i64) + TimeDelta::minutes(next(1440) as i64),
        };
        t += gap + TimeDelta::seconds(next(60) as i64);
    }
    times.sort();
    times.dedup();
    times
}

fn tags_for(index: usize) -> Vec<&'static str> {
    match (index % 9, index % 4) {
        (0, _) => vec!["keep"],
        (_, 1) => vec!["a", "b"],
        (_, 3) => vec!["a"],
        _ => Vec::new(),
    }
}

fn take_snapshots(restic: &Restic, data: &Path, times: &[NaiveDateTime]) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(time) = times.get(i) else { break };
                let mut args = vec![
                    "backup".to_string(),
                    "--quiet".to_string(),
                    "--host".to_string(),
                    "h".to_string(),
                    "--time".to_string(),
                    time.format("%Y-%m-%d %H:%M:%S").to_string(),
                ];
                let tags = tags_for(i);
                if !tags.is_empty() {
                    args.push("--tag".to_string());
                    args.push(tags.join(","));
                }
                args.push(data.display().to_string());
                restic.run(&args);
            });
        }
    });
}

fn list_snapshots(restic: &Restic) -> Vec<SnapshotMeta> {
    let listing: Value =
        serde_json::from_str(&restic.run(["snapshots", "--json"])).expect("snapshots JSON");
    listing
        .as_array()
        .expect("snapshot list")
        .iter()
        .map(|s| SnapshotMeta {
            id: s["id"].as_str().expect("id").to_string(),
            time: DateTime::parse_from_rfc3339(s["time"].as_str().expect("time"))
                .expect("RFC 3339 time"),
            tags: s["tags"]
                .as_array()
                .map(|tags| {
                    tags.iter()
                        .map(|t| t.as_str().expect("tag").to_string())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn forget_args(policy: &KeepPolicy, generation: Generation) -> Vec<String> {
    let mut args: Vec<String> = ["forget", "--dry-run", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (flag, count) in [
        ("--keep-last", policy.last),
        ("--keep-hourly", policy.hourly),
        ("--keep-daily", policy.daily),
        ("--keep-weekly", policy.weekly),
        ("--keep-monthly", policy.monthly),
        ("--keep-yearly", policy.yearly),
    ] {
        if count == -1 && generation != Generation::Legacy {
            args.extend([flag.to_string(), "unlimited".to_string()]);
        } else if count != 0 {
            args.extend([flag.to_string(), count.to_string()]);
        }
    }
    for (flag, duration) in [
        ("--keep-within", policy.within),
        ("--keep-within-hourly", policy.within_hourly),
        ("--keep-within-daily", policy.within_daily),
        ("--keep-within-weekly", policy.within_weekly),
        ("--keep-within-monthly", policy.within_monthly),
        ("--keep-within-yearly", policy.within_yearly),
    ] {
        if let Some(d) = duration {
            args.extend([flag.to_string(), d.to_string()]);
        }
    }
    for list in &policy.tags {
        args.extend(["--keep-tag".to_string(), list.join(",")]);
    }
    args
}

/// What the installed restic is expected to keep: `plan`'s result adjusted
/// for the generation's known differences. Kept snapshots as (id, reasons).
fn expected_keep(
    snapshots: &[SnapshotMeta],
    policy: &KeepPolicy,
    generation: Generation,
    now: DateTime<Utc>,
) -> Vec<(String, Vec<String>)> {
    let mut effective = policy.clone();
    if generation == Generation::Legacy {
        for count in [
            &mut effective.last,
            &mut effective.hourly,
            &mut effective.daily,
            &mut effective.weekly,
            &mut effective.monthly,
            &mut effective.yearly,
        ] {
            if *count == -1 {
                *count = 0;
            }
        }
        assert!(
            !effective.is_empty(),
            "policy {policy} is empty for restic < 0.16"
        );
    }
    plan(snapshots, &effective, now)
        .into_iter()
        .filter(|d| d.keep)
        .filter_map(|d| {
            let reasons: Vec<String> = match generation {
                Generation::Current => d.reasons,
                Generation::OldestPrefixUncertain => without_oldest_prefix(d.reasons),
                Generation::Legacy => d
                    .reasons
                    .into_iter()
                    .filter(|r| !r.starts_with("oldest "))
                    .collect(),
            };
            (!reasons.is_empty()).then_some((d.id, reasons))
        })
        .collect()
}

fn without_oldest_prefix(reasons: Vec<String>) -> Vec<String> {
    reasons
        .into_iter()
        .map(|r| r.strip_prefix("oldest ").map(str::to_string).unwrap_or(r))
        .collect()
}

/// `restic forget --json` output reduced to the kept (id, reasons), newest first.
fn restic_keep(output: &str, total: usize) -> Vec<(String, Vec<String>)> {
    let groups: Value = serde_json::from_str(output).expect("forget JSON");
    let groups = groups.as_array().expect("list of groups");
    assert_eq!(groups.len(), 1, "one host/path group expected: {output}");
    let group = &groups[0];
    let list = |key: &str| group[key].as_array().cloned().unwrap_or_default();
    let keep = list("keep");
    let reasons = list("reasons");
    assert_eq!(keep.len() + list("remove").len(), total, "{output}");
    assert_eq!(keep.len(), reasons.len(), "{output}");
    keep.iter()
        .zip(&reasons)
        .map(|(snapshot, reason)| {
            (
                snapshot["id"].as_str().expect("id").to_string(),
                reason["matches"]
                    .as_array()
                    .expect("matches")
                    .iter()
                    .map(|m| m.as_str().expect("reason").to_string())
                    .collect(),
            )
        })
        .collect()
}

fn duration(text: &str) -> Option<Duration> {
    Some(text.parse().expect("valid duration"))
}

fn tag_lists(lists: &[&str]) -> Vec<Vec<String>> {
    lists
        .iter()
        .map(|l| KeepPolicy::parse_tag_list(l))
        .collect()
}

fn policies() -> Vec<KeepPolicy> {
    vec![
        KeepPolicy {
            daily: 7,
            weekly: 4,
            monthly: 3,
            ..Default::default()
        },
        KeepPolicy {
            last: 3,
            monthly: 6,
            ..Default::default()
        },
        KeepPolicy {
            weekly: 5,
            ..Default::default()
        },
        KeepPolicy {
            yearly: 2,
            hourly: 10,
            ..Default::default()
        },
        KeepPolicy {
            daily: 100,
            ..Default::default()
        },
        KeepPolicy {
            weekly: 60,
            yearly: 5,
            within: duration("3m"),
            ..Default::default()
        },
        KeepPolicy {
            last: 1,
            monthly: -1,
            yearly: -1,
            ..Default::default()
        },
        KeepPolicy {
            within: duration("2m"),
            ..Default::default()
        },
        KeepPolicy {
            within: duration("1y1m3d5h"),
            ..Default::default()
        },
        KeepPolicy {
            within_daily: duration("10d"),
            within_weekly: duration("2m"),
            within_monthly: duration("1y"),
            ..Default::default()
        },
        KeepPolicy {
            within_hourly: duration("3d"),
            within_yearly: duration("5y"),
            ..Default::default()
        },
        KeepPolicy {
            last: 2,
            tags: tag_lists(&["keep", "a,b"]),
            ..Default::default()
        },
    ]
}

#[test]
fn plan_matches_restic_forget() {
    let Some(version) = restic_version() else {
        return;
    };
    let generation = Generation::of(version);
    eprintln!("comparing with restic {version:?} ({generation:?})");
    let started = Instant::now();

    let dir = tempfile::tempdir().expect("temporary directory");
    let restic = Restic {
        repo: dir.path().join("repo"),
        cache: dir.path().join("cache"),
    };
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data directory");
    std::fs::write(data.join("file.txt"), b"cachevault retention test\n").expect("data file");
    restic.run(["init"]);

    let times = backup_times();
    assert!(
        (30..=50).contains(&times.len()),
        "{} backup times",
        times.len()
    );
    take_snapshots(&restic, &data, &times);
    let snapshots = list_snapshots(&restic);
    let mut recorded: Vec<NaiveDateTime> = snapshots.iter().map(|s| s.time.naive_utc()).collect();
    recorded.sort();
    assert_eq!(recorded, times, "restic recorded different snapshot times");
    eprintln!(
        "{} snapshots taken in {:.1?}",
        snapshots.len(),
        started.elapsed()
    );

    let now = Utc::now();
    for policy in policies() {
        let output = restic.run(forget_args(&policy, generation));
        let mut actual = restic_keep(&output, snapshots.len());
        if generation == Generation::OldestPrefixUncertain {
            for (_, reasons) in &mut actual {
                *reasons = without_oldest_prefix(std::mem::take(reasons));
            }
        }
        let expected = expected_keep(&snapshots, &policy, generation, now);
        assert_eq!(actual, expected, "policy: {policy}");
        eprintln!(
            "{policy}: restic and plan keep the same {} of {}",
            actual.len(),
            snapshots.len()
        );
    }
    eprintln!("restic comparison done in {:.1?}", started.elapsed());
}
