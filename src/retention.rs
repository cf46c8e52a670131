//! Retention planning: which snapshots a keep policy keeps, with restic's `forget` semantics. Pure: no clock, no I/O.
//!
//! [`plan`] reproduces the policy evaluation of restic's `forget` command
//! (`ApplyPolicy`, as of restic 0.18): the same rules, the same calendar buckets,
//! the same reference time for the `within` rules, the same "keep the oldest
//! snapshot while a rule has budget left" special case and the same reason
//! strings. A repository that is pruned by cachevault with a given policy
//! therefore ends up with exactly the snapshots restic would have left.
//!
//! # How a policy is evaluated
//!
//! Snapshots are walked from newest to oldest. For every snapshot, in this
//! order:
//!
//! 1. every `--keep-tag` list the snapshot satisfies adds `has tags [a, b]`;
//! 2. `--keep-within D` adds `within D` when the snapshot is newer than the
//!    reference time minus `D`;
//! 3. each counting rule (`last`, `hourly`, `daily`, `weekly`, `monthly`,
//!    `yearly`) with budget left keeps the snapshot when it opens a bucket that
//!    differs from the bucket of the snapshot the rule kept before, and spends
//!    one unit of budget (`-1` never runs out). Buckets are the calendar hour,
//!    day, ISO week, month or year of the snapshot's time *in the UTC offset it
//!    was recorded with*; for `last` every snapshot is its own bucket. Periods
//!    without snapshots cost nothing;
//! 4. each `--keep-within-<period> D` rule keeps the first snapshot of every
//!    bucket among the snapshots newer than the reference time minus `D`.
//!
//! A rule that still has budget when the walk reaches the oldest snapshot also
//! keeps that snapshot, even though its bucket was already represented; the
//! reason is then prefixed with `oldest` (`oldest daily snapshot`,
//! `oldest weekly within 1m`). This maximises the history retained while a
//! repository is younger than its policy.
//!
//! The reference time of the `within` rules is the newest snapshot that lies
//! strictly before `now`; snapshots dated in the future (clock skew on the
//! backup host) never move the window. When no snapshot lies before `now`,
//! restic falls back to the zero time (`0001-01-01T00:00:00Z`), which makes
//! every snapshot "within"; [`plan`] does the same. Durations are subtracted
//! the way Go's `time.AddDate` does it: years and months first on the calendar
//! of the reference snapshot's offset, overflowing days normalised into the
//! next month (31 March minus one month is 3 March, not 28 February), then the
//! hours as an exact span. A snapshot is within the window when it is strictly
//! newer than the resulting instant.
//!
//! # Ordering and ties
//!
//! restic sorts newest first with a stable sort and leaves snapshots taken at
//! the same instant in repository listing order, which is not specified. Here
//! ties are broken by ascending snapshot id, then by UTC offset, then by tags,
//! so the plan is a function of the *set* of snapshots and does not depend on
//! the order of the input slice.
//!
//! # Empty policies and invalid values
//!
//! restic refuses to remove anything when no rule is given; [`plan`] keeps
//! every snapshot with the reason [`EMPTY_POLICY_REASON`] in that case, and
//! [`KeepPolicy::is_empty`] lets a caller detect (and reject) such a policy
//! before planning. restic's command line rejects counts below `-1` and
//! durations with negative components; [`KeepPolicy::validate`] performs the
//! same checks. [`plan`] itself never fails: a count below `-1` disables its
//! rule, exactly as it does inside restic's policy evaluation.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reason recorded for every snapshot when [`plan`] is given an empty policy.
///
/// restic itself removes nothing when no `--keep-*` option is given; this is
/// the reason older restic releases printed for that case.
pub const EMPTY_POLICY_REASON: &str = "policy is empty";

/// The part of a snapshot's metadata that retention decisions depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Snapshot identifier. Only used to label decisions and to order
    /// snapshots taken at the same instant.
    pub id: String,
    /// Creation time, with the UTC offset of the host that took the snapshot.
    /// Calendar buckets are computed in this offset.
    pub time: DateTime<FixedOffset>,
    /// Tags attached to the snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A keep policy, field for field the `--keep-*` options of `restic forget`.
///
/// Counts: `0` disables a rule, `-1` means unlimited, a positive value is the
/// number of buckets the rule keeps. Durations: `None` and a zero duration
/// both disable a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeepPolicy {
    /// `--keep-last`: keep the newest `n` snapshots.
    pub last: i64,
    /// `--keep-hourly`: keep the newest snapshot of each of the last `n` hours that have snapshots.
    pub hourly: i64,
    /// `--keep-daily`: keep the newest snapshot of each of the last `n` days that have snapshots.
    pub daily: i64,
    /// `--keep-weekly`: keep the newest snapshot of each of the last `n` ISO weeks that have snapshots.
    pub weekly: i64,
    /// `--keep-monthly`: keep the newest snapshot of each of the last `n` months that have snapshots.
    pub monthly: i64,
    /// `--keep-yearly`: keep the newest snapshot of each of the last `n` years that have snapshots.
    pub yearly: i64,
    /// `--keep-within`: keep every snapshot newer than the reference time minus this duration.
    pub within: Option<Duration>,
    /// `--keep-within-hourly`: keep one snapshot per hour within this duration.
    pub within_hourly: Option<Duration>,
    /// `--keep-within-daily`: keep one snapshot per day within this duration.
    pub within_daily: Option<Duration>,
    /// `--keep-within-weekly`: keep one snapshot per ISO week within this duration.
    pub within_weekly: Option<Duration>,
    /// `--keep-within-monthly`: keep one snapshot per month within this duration.
    pub within_monthly: Option<Duration>,
    /// `--keep-within-yearly`: keep one snapshot per year within this duration.
    pub within_yearly: Option<Duration>,
    /// `--keep-tag`, once per entry: a snapshot is kept when it carries *all*
    /// tags of at least one entry. An entry containing the empty tag matches
    /// snapshots without any tag; an empty entry matches every snapshot.
    pub tags: Vec<Vec<String>>,
}

impl KeepPolicy {
    /// Returns true when the policy has no rule at all (all counts zero, all
    /// durations absent or zero, no tag lists), i.e. when restic would refuse
    /// to remove anything.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.counts().iter().all(|(_, count)| *count == 0)
            && self
                .durations()
                .iter()
                .all(|(_, duration)| active(*duration).is_none())
    }

    /// Checks the values restic's command line rejects: counts below `-1` and
    /// durations with a negative component.
    pub fn validate(&self) -> Result<(), RetentionError> {
        for (option, count) in self.counts() {
            if count < -1 {
                return Err(RetentionError::InvalidCount { option, count });
            }
        }
        for (option, duration) in self.durations() {
            if let Some(duration) = duration {
                if duration.has_negative_component() {
                    return Err(RetentionError::NegativeDuration { option, duration });
                }
            }
        }
        Ok(())
    }

    /// Splits a `--keep-tag` argument into one tag list: tags are separated by
    /// commas and surrounding whitespace is removed, as restic does.
    /// `"a, b"` yields `["a", "b"]`; `""` yields `[""]`, the list that matches
    /// untagged snapshots.
    pub fn parse_tag_list(arg: &str) -> Vec<String> {
        arg.split(',').map(|tag| tag.trim().to_string()).collect()
    }

    fn counts(&self) -> [(&'static str, i64); 6] {
        [
            ("keep-last", self.last),
            ("keep-hourly", self.hourly),
            ("keep-daily", self.daily),
            ("keep-weekly", self.weekly),
            ("keep-monthly", self.monthly),
            ("keep-yearly", self.yearly),
        ]
    }

    fn durations(&self) -> [(&'static str, Option<Duration>); 6] {
        [
            ("keep-within", self.within),
            ("keep-within-hourly", self.within_hourly),
            ("keep-within-daily", self.within_daily),
            ("keep-within-weekly", self.within_weekly),
            ("keep-within-monthly", self.within_monthly),
            ("keep-within-yearly", self.within_yearly),
        ]
    }
}

/// Summarises the policy the way `restic forget` announces it
/// (`keep 7 daily, 4 weekly snapshots, daily snapshots within 1m and all
/// snapshots with tags [[important]]`). An empty policy is described as
/// keeping everything, which is what [`plan`] does with it.
impl fmt::Display for KeepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ]
        .iter()
        .filter_map(|(count, what)| match *count {
            c if c > 0 => Some(format!("{c} {what}")),
            -1 => Some(format!("all {what}")),
            _ => None,
        })
        .collect();
        let windows: Vec<String> = [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ]
        .iter()
        .filter_map(|(duration, what)| {
            active(*duration).map(|d| format!("{what} snapshots within {d}"))
        })
        .collect();

        let mut text = String::new();
        if !counts.is_empty() {
            text = format!("{} snapshots", counts.join(", "));
        }
        if !windows.is_empty() {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&windows.join(", "));
        }
        if !self.tags.is_empty() {
            if !text.is_empty() {
                text.push_str(" and ");
            }
            let lists: Vec<String> = self.tags.iter().map(|l| tag_list_label(l)).collect();
            text.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if let Some(d) = active(self.within) {
            if !text.is_empty() {
                text.push_str(" and ");
            }
            text.push_str(&format!("all snapshots within {d} of the newest"));
        }
        if text.is_empty() {
            f.write_str("keep all snapshots (no policy)")
        } else {
            write!(f, "keep {text}")
        }
    }
}

/// A calendar duration in restic's notation: `1y5m7d2h` is one year, five
/// months, seven days and two hours.
///
/// Parsing follows restic: surrounding whitespace is ignored, components may
/// come in any order, a repeated unit overrides the earlier value, components
/// may be negative (`1y-5d`), and the empty string is the zero duration.
/// [`Display`](fmt::Display) prints the non-zero components in the order
/// years, months, days, hours (the zero duration prints as the empty
/// string). Serialised as that string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Duration {
    /// Calendar years.
    pub years: i32,
    /// Calendar months.
    pub months: i32,
    /// Calendar days.
    pub days: i32,
    /// Hours (exact 3600-second spans).
    pub hours: i32,
}

impl Duration {
    /// Builds a duration from its components.
    pub const fn new(years: i32, months: i32, days: i32, hours: i32) -> Self {
        Self {
            years,
            months,
            days,
            hours,
        }
    }

    /// Returns true when every component is zero; a zero duration disables
    /// the rule it is attached to.
    pub const fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// Returns true when any component is negative.
    pub const fn has_negative_component(&self) -> bool {
        self.years < 0 || self.months < 0 || self.days < 0 || self.hours < 0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Duration {
    type Err = RetentionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |problem: DurationProblem| RetentionError::InvalidDuration {
            input: input.to_string(),
            problem,
        };
        let mut duration = Duration::default();
        let mut rest = input.trim();
        while !rest.is_empty() {
            let (negative, unsigned) = match rest.strip_prefix('-') {
                Some(tail) => (true, tail),
                None => (false, rest),
            };
            let digits_len = unsigned
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(unsigned.len());
            if digits_len == 0 {
                return Err(fail(DurationProblem::ExpectedNumber {
                    found: unsigned.to_string(),
                }));
            }
            let (digits, tail) = unsigned.split_at(digits_len);
            let signed = if negative {
                format!("-{digits}")
            } else {
                digits.to_string()
            };
            let number: i32 = signed
                .parse()
                .map_err(|_| fail(DurationProblem::NumberOutOfRange { number: signed }))?;
            let mut chars = tail.chars();
            let unit = chars
                .next()
                .ok_or_else(|| fail(DurationProblem::MissingUnit { number }))?;
            match unit {
                'y' => duration.years = number,
                'm' => duration.months = number,
                'd' => duration.days = number,
                'h' => duration.hours = number,
                _ => return Err(fail(DurationProblem::InvalidUnit { unit, number })),
            }
            rest = chars.as_str();
        }
        Ok(duration)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What is wrong with a duration string; carried by
/// [`RetentionError::InvalidDuration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationProblem {
    /// A component does not start with an (optionally negative) ASCII number.
    ExpectedNumber {
        /// The unparsed remainder of the input, starting where the number was expected.
        found: String,
    },
    /// A number does not fit in 32 bits.
    NumberOutOfRange {
        /// The number as written.
        number: String,
    },
    /// The input ends after a number.
    MissingUnit {
        /// The number lacking its unit.
        number: i32,
    },
    /// A number is followed by something other than `y`, `m`, `d` or `h`.
    InvalidUnit {
        /// The character found instead of a unit.
        unit: char,
        /// The number preceding it.
        number: i32,
    },
}

impl fmt::Display for DurationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExpectedNumber { found } => write!(f, "expected a number at {found:?}"),
            Self::NumberOutOfRange { number } => write!(
                f,
                "number {number} is out of range ({} to {})",
                i32::MIN,
                i32::MAX
            ),
            Self::MissingUnit { number } => write!(f, "no unit after number {number}"),
            Self::InvalidUnit { unit, number } => {
                write!(f, "invalid unit {unit:?} after number {number}")
            }
        }
    }
}

/// Errors of this module: malformed durations and policy values restic rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// A duration string is not in restic's `1y5m7d2h` notation.
    #[error(
        "invalid duration {input:?}: {problem}; expected numbers each followed by a unit \
         y (years), m (months), d (days) or h (hours), e.g. \"1y5m7d2h\""
    )]
    InvalidDuration {
        /// The offending input, as given.
        input: String,
        /// What is wrong with it.
        problem: DurationProblem,
    },
    /// A count below `-1`.
    #[error(
        "--{option} {count} is invalid: expected -1 (unlimited), 0 (disabled) or a positive count"
    )]
    InvalidCount {
        /// The option name, e.g. `keep-daily`.
        option: &'static str,
        /// The rejected value.
        count: i64,
    },
    /// A `within` duration with a negative component.
    #[error("--{option} {duration} is invalid: durations must not contain negative values")]
    NegativeDuration {
        /// The option name, e.g. `keep-within-daily`.
        option: &'static str,
        /// The rejected value.
        duration: Duration,
    },
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Snapshot id, copied from the input.
    pub id: String,
    /// Snapshot time, copied from the input.
    pub time: DateTime<FixedOffset>,
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Why it is kept, in restic's words and order (`"daily snapshot"`,
    /// `"oldest monthly snapshot"`, `"within 1y2m"`, `"weekly within 3m"`,
    /// `"has tags [foo, bar]"`). Empty for removed snapshots.
    pub reasons: Vec<String>,
}

/// Applies `policy` to `snapshots` and returns one decision per snapshot,
/// newest first (see the module documentation for the ordering of ties).
///
/// `now` only serves to ignore snapshots dated in the future when choosing the
/// reference time of the `within` rules. The snapshots are treated as one
/// group; grouping by host, paths or tags is up to the caller.
pub fn plan(snapshots: &[SnapshotMeta], policy: &KeepPolicy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut ordered: Vec<&SnapshotMeta> = snapshots.iter().collect();
    ordered.sort_by(|a, b| newest_first(a, b));

    if policy.is_empty() {
        return ordered
            .into_iter()
            .map(|snapshot| decide(snapshot, vec![EMPTY_POLICY_REASON.to_string()]))
            .collect();
    }

    let reference = reference_time(&ordered, now);
    let within = active(policy.within).map(|d| (d, Cutoff::new(reference, d)));
    let mut counted = [
        CountedRule::new(policy.last, Bucket::Snapshot, "last snapshot"),
        CountedRule::new(policy.hourly, Bucket::Hour, "hourly snapshot"),
        CountedRule::new(policy.daily, Bucket::Day, "daily snapshot"),
        CountedRule::new(policy.weekly, Bucket::Week, "weekly snapshot"),
        CountedRule::new(policy.monthly, Bucket::Month, "monthly snapshot"),
        CountedRule::new(policy.yearly, Bucket::Year, "yearly snapshot"),
    ];
    let mut windowed: Vec<WindowRule> = [
        (policy.within_hourly, Bucket::Hour, "hourly within"),
        (policy.within_daily, Bucket::Day, "daily within"),
        (policy.within_weekly, Bucket::Week, "weekly within"),
        (policy.within_monthly, Bucket::Month, "monthly within"),
        (policy.within_yearly, Bucket::Year, "yearly within"),
    ]
    .into_iter()
    .filter_map(|(duration, bucket, label)| {
        active(duration).map(|duration| WindowRule {
            label,
            duration,
            bucket,
            cutoff: Cutoff::new(reference, duration),
            last_key: NO_BUCKET,
        })
    })
    .collect();

    let oldest = ordered.len().saturating_sub(1);
    ordered
        .iter()
        .enumerate()
        .map(|(position, snapshot)| {
            let is_oldest = position == oldest;
            let mut reasons = Vec::new();
            for list in &policy.tags {
                if has_tags(&snapshot.tags, list) {
                    reasons.push(format!("has tags {}", tag_list_label(list)));
                }
            }
            if let Some((duration, cutoff)) = &within {
                if cutoff.admits(&snapshot.time) {
                    reasons.push(format!("within {duration}"));
                }
            }
            for rule in &mut counted {
                if let Some(reason) = rule.offer(&snapshot.time, position, is_oldest) {
                    reasons.push(reason);
                }
            }
            for rule in &mut windowed {
                if let Some(reason) = rule.offer(&snapshot.time, position, is_oldest) {
                    reasons.push(reason);
                }
            }
            decide(snapshot, reasons)
        })
        .collect()
}

/// Bucket value of "no snapshot kept yet". restic uses the same sentinel,
/// which in theory collides with the yearly bucket of year -1; the collision is
/// reproduced rather than fixed so that results stay identical.
const NO_BUCKET: i64 = -1;

/// Go's zero `time.Time`, which restic uses as the reference time when no
/// snapshot lies before `now`.
const GO_ZERO_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(date) => date,
    None => NaiveDate::MIN,
};

/// The calendar unit a rule counts in.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    /// Every snapshot is a bucket of its own (`--keep-last`).
    Snapshot,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    /// The bucket of `time`, encoded as restic encodes it (`YYYYMMDDHH`,
    /// `YYYYMMDD`, ISO `YYYYWW`, `YYYYMM`, `YYYY`; the position in the sorted
    /// list for `Snapshot`), computed on the calendar of the snapshot's offset.
    fn key(self, time: &DateTime<FixedOffset>, position: usize) -> i64 {
        let year = i64::from(time.year());
        let month = i64::from(time.month());
        let day = i64::from(time.day());
        match self {
            Bucket::Snapshot => i64::try_from(position).unwrap_or(i64::MAX),
            Bucket::Hour => year * 1_000_000 + month * 10_000 + day * 100 + i64::from(time.hour()),
            Bucket::Day => year * 10_000 + month * 100 + day,
            Bucket::Week => {
                let week = time.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Month => year * 100 + month,
            Bucket::Year => year,
        }
    }
}

/// State of one counting rule during the walk.
struct CountedRule {
    label: &'static str,
    bucket: Bucket,
    remaining: i64,
    last_key: i64,
}

impl CountedRule {
    fn new(count: i64, bucket: Bucket, label: &'static str) -> Self {
        Self {
            label,
            bucket,
            remaining: count,
            last_key: NO_BUCKET,
        }
    }

    fn offer(
        &mut self,
        time: &DateTime<FixedOffset>,
        position: usize,
        is_oldest: bool,
    ) -> Option<String> {
        if self.remaining <= 0 && self.remaining != -1 {
            return None;
        }
        let key = self.bucket.key(time, position);
        let fresh = key != self.last_key;
        if !fresh && !is_oldest {
            return None;
        }
        self.last_key = key;
        if self.remaining > 0 {
            self.remaining -= 1;
        }
        Some(if fresh {
            self.label.to_string()
        } else {
            format!("oldest {}", self.label)
        })
    }
}

/// State of one `--keep-within-<period>` rule during the walk.
struct WindowRule {
    label: &'static str,
    duration: Duration,
    bucket: Bucket,
    cutoff: Cutoff,
    last_key: i64,
}

impl WindowRule {
    fn offer(
        &mut self,
        time: &DateTime<FixedOffset>,
        position: usize,
        is_oldest: bool,
    ) -> Option<String> {
        if !self.cutoff.admits(time) {
            return None;
        }
        let key = self.bucket.key(time, position);
        let fresh = key != self.last_key;
        if !fresh && !is_oldest {
            return None;
        }
        self.last_key = key;
        Some(if fresh {
            format!("{} {}", self.label, self.duration)
        } else {
            format!("oldest {} {}", self.label, self.duration)
        })
    }
}

/// Lower bound (exclusive) of a `within` window.
#[derive(Debug, Clone, Copy)]
enum Cutoff {
    /// Snapshots strictly newer than this instant are within the window.
    After(DateTime<Utc>),
    /// The window reaches back beyond the representable calendar: every
    /// snapshot is within it.
    Everything,
    /// The window starts beyond the representable calendar (only possible
    /// with negative durations): no snapshot is within it.
    Nothing,
}

impl Cutoff {
    /// `reference - duration`, with Go's `AddDate(-y, -m, -d).Add(-h)` semantics.
    fn new(reference: DateTime<FixedOffset>, duration: Duration) -> Self {
        let start = go_add_date(
            reference,
            -i64::from(duration.years),
            -i64::from(duration.months),
            -i64::from(duration.days),
        )
        .and_then(|t| t.checked_sub_signed(TimeDelta::try_hours(i64::from(duration.hours))?));
        match start {
            Some(start) => Cutoff::After(start.with_timezone(&Utc)),
            None => {
                // Out of chrono's range (hundreds of thousands of years): the
                // sign of the span decides on which side the window ends up.
                let approx_hours = i64::from(duration.years) * 8766
                    + i64::from(duration.months) * 730
                    + i64::from(duration.days) * 24
                    + i64::from(duration.hours);
                if approx_hours >= 0 {
                    Cutoff::Everything
                } else {
                    Cutoff::Nothing
                }
            }
        }
    }

    fn admits(&self, time: &DateTime<FixedOffset>) -> bool {
        match self {
            Cutoff::After(start) => time.with_timezone(&Utc) > *start,
            Cutoff::Everything => true,
            Cutoff::Nothing => false,
        }
    }
}

/// Go's `t.AddDate(years, months, days)`: shift the calendar fields in `t`'s
/// offset, then normalise month overflow into years and day overflow into the
/// following months, keeping the wall-clock time.
fn go_add_date(
    t: DateTime<FixedOffset>,
    years: i64,
    months: i64,
    days: i64,
) -> Option<DateTime<FixedOffset>> {
    let local = t.naive_local();
    let month0 = i64::from(local.month0()) + months;
    let year = i64::from(local.year()) + years + month0.div_euclid(12);
    let month = u32::try_from(month0.rem_euclid(12) + 1).ok()?;
    let first = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, 1)?;
    let date = first.checked_add_signed(TimeDelta::try_days(i64::from(local.day()) - 1 + days)?)?;
    t.offset()
        .from_local_datetime(&date.and_time(local.time()))
        .single()
}

/// The newest snapshot strictly before `now`, or Go's zero time when there is none.
fn reference_time(ordered: &[&SnapshotMeta], now: DateTime<Utc>) -> DateTime<FixedOffset> {
    let mut latest = GO_ZERO_DATE
        .and_time(NaiveTime::MIN)
        .and_utc()
        .fixed_offset();
    for snapshot in ordered {
        if snapshot.time > latest && snapshot.time.with_timezone(&Utc) < now {
            latest = snapshot.time;
        }
    }
    latest
}

/// Newest first; ties by id, then offset, then tags, so that the order is
/// total and independent of the input order.
fn newest_first(a: &SnapshotMeta, b: &SnapshotMeta) -> Ordering {
    b.time
        .cmp(&a.time)
        .then_with(|| a.id.cmp(&b.id))
        .then_with(|| {
            a.time
                .offset()
                .local_minus_utc()
                .cmp(&b.time.offset().local_minus_utc())
        })
        .then_with(|| a.tags.cmp(&b.tags))
}

/// restic's `Snapshot.HasTags`: all tags of `list` are present; an empty tag
/// in the list matches a snapshot without tags.
fn has_tags(snapshot_tags: &[String], list: &[String]) -> bool {
    for tag in list {
        if tag.is_empty() && snapshot_tags.is_empty() {
            return true;
        }
        if !snapshot_tags.contains(tag) {
            return false;
        }
    }
    true
}

/// A tag list as restic prints it: `[a, b]`.
fn tag_list_label(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

fn active(duration: Option<Duration>) -> Option<Duration> {
    duration.filter(|d| !d.is_zero())
}

fn decide(snapshot: &SnapshotMeta, reasons: Vec<String>) -> Decision {
    Decision {
        id: snapshot.id.clone(),
        time: snapshot.time,
        keep: !reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).expect("valid RFC 3339 time in test")
    }

    fn snap(id: &str, time: &str, tags: &[&str]) -> SnapshotMeta {
        SnapshotMeta {
            id: id.to_string(),
            time: at(time),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn untagged(list: &[(&str, &str)]) -> Vec<SnapshotMeta> {
        list.iter().map(|(id, time)| snap(id, time, &[])).collect()
    }

    fn far_future() -> DateTime<Utc> {
        at("2100-01-01T00:00:00Z").with_timezone(&Utc)
    }

    fn dur(text: &str) -> Option<Duration> {
        Some(text.parse().expect("valid duration in test"))
    }

    fn tags(lists: &[&[&str]]) -> Vec<Vec<String>> {
        lists
            .iter()
            .map(|l| l.iter().map(|t| t.to_string()).collect())
            .collect()
    }

    /// Kept snapshots as (id, reasons), newest first.
    fn kept(decisions: &[Decision]) -> Vec<(String, Vec<String>)> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.id.clone(), d.reasons.clone()))
            .collect()
    }

    fn expected(rows: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        rows.iter()
            .map(|(id, reasons)| {
                (
                    id.to_string(),
                    reasons.iter().map(|r| r.to_string()).collect(),
                )
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        policy: KeepPolicy,
        keep: &'static [(&'static str, &'static [&'static str])],
    }

    fn check_cases(snapshots: &[SnapshotMeta], now: DateTime<Utc>, cases: &[Case]) {
        for case in cases {
            let decisions = plan(snapshots, &case.policy, now);
            assert_eq!(decisions.len(), snapshots.len(), "case {}", case.name);
            assert_eq!(
                kept(&decisions),
                expected(case.keep),
                "case {}: policy {}",
                case.name,
                case.policy
            );
            for d in &decisions {
                assert_eq!(d.keep, !d.reasons.is_empty(), "case {}", case.name);
            }
        }
    }

    /// Irregular history across a year boundary, in UTC. Newest first:
    /// `a`, `a2` and `b` share a day, `a`/`a2` an hour; `c`..`e` share ISO week
    /// 2021-W10; `i` (2021-01-01), `j` (2020-12-31) and `k` (2020-12-28) share
    /// ISO week 2020-W53; `n2` shares the day of `n` and is the oldest.
    fn series() -> Vec<SnapshotMeta> {
        untagged(&[
            ("a", "2021-03-15T09:30:00Z"),
            ("a2", "2021-03-15T09:05:00Z"),
            ("b", "2021-03-15T08:10:00Z"),
            ("c", "2021-03-14T23:59:00Z"),
            ("d", "2021-03-14T10:00:00Z"),
            ("e", "2021-03-10T12:00:00Z"),
            ("f", "2021-02-27T18:00:00Z"),
            ("g", "2021-02-03T07:00:00Z"),
            ("h", "2021-01-04T00:30:00Z"),
            ("i", "2021-01-01T12:00:00Z"),
            ("j", "2020-12-31T20:00:00Z"),
            ("k", "2020-12-28T08:00:00Z"),
            ("l", "2020-12-27T08:00:00Z"),
            ("m", "2020-06-01T08:00:00Z"),
            ("n", "2019-11-11T11:11:00Z"),
            ("n2", "2019-11-11T08:00:00Z"),
        ])
    }

    const LAST: &[&str] = &["last snapshot"];
    const HOURLY: &[&str] = &["hourly snapshot"];
    const DAILY: &[&str] = &["daily snapshot"];
    const WEEKLY: &[&str] = &["weekly snapshot"];
    const MONTHLY: &[&str] = &["monthly snapshot"];
    const YEARLY: &[&str] = &["yearly snapshot"];

    #[test]
    fn keep_last() {
        check_cases(
            &series(),
            far_future(),
            &[
                Case {
                    name: "last 3",
                    policy: KeepPolicy {
                        last: 3,
                        ..Default::default()
                    },
                    keep: &[("a", LAST), ("a2", LAST), ("b", LAST)],
                },
                Case {
                    name: "last 1",
                    policy: KeepPolicy {
                        last: 1,
                        ..Default::default()
                    },
                    keep: &[("a", LAST)],
                },
                Case {
                    name: "last unlimited: every snapshot is its own bucket, no oldest case",
                    policy: KeepPolicy {
                        last: -1,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", LAST),
                        ("a2", LAST),
                        ("b", LAST),
                        ("c", LAST),
                        ("d", LAST),
                        ("e", LAST),
                        ("f", LAST),
                        ("g", LAST),
                        ("h", LAST),
                        ("i", LAST),
                        ("j", LAST),
                        ("k", LAST),
                        ("l", LAST),
                        ("m", LAST),
                        ("n", LAST),
                        ("n2", LAST),
                    ],
                },
                Case {
                    name: "count below -1 disables the rule",
                    policy: KeepPolicy {
                        last: -2,
                        ..Default::default()
                    },
                    keep: &[],
                },
            ],
        );
    }

    #[test]
    fn keep_hourly() {
        check_cases(
            &series(),
            far_future(),
            &[
                Case {
                    name: "hourly 3 skips the second snapshot of an hour",
                    policy: KeepPolicy {
                        hourly: 3,
                        ..Default::default()
                    },
                    keep: &[("a", HOURLY), ("b", HOURLY), ("c", HOURLY)],
                },
                Case {
                    name: "hourly unlimited keeps the oldest of a repeated hour",
                    policy: KeepPolicy {
                        hourly: -1,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", HOURLY),
                        ("b", HOURLY),
                        ("c", HOURLY),
                        ("d", HOURLY),
                        ("e", HOURLY),
                        ("f", HOURLY),
                        ("g", HOURLY),
                        ("h", HOURLY),
                        ("i", HOURLY),
                        ("j", HOURLY),
                        ("k", HOURLY),
                        ("l", HOURLY),
                        ("m", HOURLY),
                        ("n", HOURLY),
                        ("n2", HOURLY),
                    ],
                },
            ],
        );
    }

    #[test]
    fn keep_daily() {
        check_cases(
            &series(),
            far_future(),
            &[
                Case {
                    name: "daily 3",
                    policy: KeepPolicy {
                        daily: 3,
                        ..Default::default()
                    },
                    keep: &[("a", DAILY), ("c", DAILY), ("e", DAILY)],
                },
                Case {
                    name: "daily 12 is used up exactly by the 12 days: no oldest",
                    policy: KeepPolicy {
                        daily: 12,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", DAILY),
                        ("c", DAILY),
                        ("e", DAILY),
                        ("f", DAILY),
                        ("g", DAILY),
                        ("h", DAILY),
                        ("i", DAILY),
                        ("j", DAILY),
                        ("k", DAILY),
                        ("l", DAILY),
                        ("m", DAILY),
                        ("n", DAILY),
                    ],
                },
                Case {
                    name: "daily 13 has budget left at the oldest snapshot",
                    policy: KeepPolicy {
                        daily: 13,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", DAILY),
                        ("c", DAILY),
                        ("e", DAILY),
                        ("f", DAILY),
                        ("g", DAILY),
                        ("h", DAILY),
                        ("i", DAILY),
                        ("j", DAILY),
                        ("k", DAILY),
                        ("l", DAILY),
                        ("m", DAILY),
                        ("n", DAILY),
                        ("n2", &["oldest daily snapshot"]),
                    ],
                },
                Case {
                    name: "daily unlimited",
                    policy: KeepPolicy {
                        daily: -1,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", DAILY),
                        ("c", DAILY),
                        ("e", DAILY),
                        ("f", DAILY),
                        ("g", DAILY),
                        ("h", DAILY),
                        ("i", DAILY),
                        ("j", DAILY),
                        ("k", DAILY),
                        ("l", DAILY),
                        ("m", DAILY),
                        ("n", DAILY),
                        ("n2", &["oldest daily snapshot"]),
                    ],
                },
            ],
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        check_cases(
            &series(),
            far_future(),
            &[
                Case {
                    name: "weekly 4",
                    policy: KeepPolicy {
                        weekly: 4,
                        ..Default::default()
                    },
                    keep: &[("a", WEEKLY), ("c", WEEKLY), ("f", WEEKLY), ("g", WEEKLY)],
                },
                Case {
                    // 2021-01-01, 2020-12-31 and 2020-12-28 are all in 2020-W53,
                    // 2021-01-04 opens 2021-W01 and 2020-12-27 closes 2020-W52.
                    name: "weekly 7 across the ISO year boundary",
                    policy: KeepPolicy {
                        weekly: 7,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", WEEKLY),
                        ("c", WEEKLY),
                        ("f", WEEKLY),
                        ("g", WEEKLY),
                        ("h", WEEKLY),
                        ("i", WEEKLY),
                        ("l", WEEKLY),
                    ],
                },
                Case {
                    name: "weekly unlimited",
                    policy: KeepPolicy {
                        weekly: -1,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", WEEKLY),
                        ("c", WEEKLY),
                        ("f", WEEKLY),
                        ("g", WEEKLY),
                        ("h", WEEKLY),
                        ("i", WEEKLY),
                        ("l", WEEKLY),
                        ("m", WEEKLY),
                        ("n", WEEKLY),
                        ("n2", &["oldest weekly snapshot"]),
                    ],
                },
            ],
        );
    }

    #[test]
    fn keep_monthly_and_yearly() {
        check_cases(
            &series(),
            far_future(),
            &[
                Case {
                    name: "monthly 3",
                    policy: KeepPolicy {
                        monthly: 3,
                        ..Default::default()
                    },
                    keep: &[("a", MONTHLY), ("f", MONTHLY), ("h", MONTHLY)],
                },
                Case {
                    name: "monthly 10 over gaps of months and years",
                    policy: KeepPolicy {
                        monthly: 10,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", MONTHLY),
                        ("f", MONTHLY),
                        ("h", MONTHLY),
                        ("j", MONTHLY),
                        ("m", MONTHLY),
                        ("n", MONTHLY),
                        ("n2", &["oldest monthly snapshot"]),
                    ],
                },
                Case {
                    name: "yearly 2: calendar years, not ISO years",
                    policy: KeepPolicy {
                        yearly: 2,
                        ..Default::default()
                    },
                    keep: &[("a", YEARLY), ("j", YEARLY)],
                },
                Case {
                    name: "yearly 5",
                    policy: KeepPolicy {
                        yearly: 5,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", YEARLY),
                        ("j", YEARLY),
                        ("n", YEARLY),
                        ("n2", &["oldest yearly snapshot"]),
                    ],
                },
            ],
        );
    }

    #[test]
    fn mixed_policies() {
        check_cases(
            &series(),
            far_future(),
            &[
                Case {
                    name: "daily 2, weekly 3, monthly 4, yearly 1",
                    policy: KeepPolicy {
                        daily: 2,
                        weekly: 3,
                        monthly: 4,
                        yearly: 1,
                        ..Default::default()
                    },
                    keep: &[
                        (
                            "a",
                            &[
                                "daily snapshot",
                                "weekly snapshot",
                                "monthly snapshot",
                                "yearly snapshot",
                            ],
                        ),
                        ("c", &["daily snapshot", "weekly snapshot"]),
                        ("f", &["weekly snapshot", "monthly snapshot"]),
                        ("h", MONTHLY),
                        ("j", MONTHLY),
                    ],
                },
                Case {
                    name: "last 2 and monthly unlimited",
                    policy: KeepPolicy {
                        last: 2,
                        monthly: -1,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", &["last snapshot", "monthly snapshot"]),
                        ("a2", LAST),
                        ("f", MONTHLY),
                        ("h", MONTHLY),
                        ("j", MONTHLY),
                        ("m", MONTHLY),
                        ("n", MONTHLY),
                        ("n2", &["oldest monthly snapshot"]),
                    ],
                },
                Case {
                    name: "several rules with budget left at the oldest",
                    policy: KeepPolicy {
                        last: 1,
                        daily: 30,
                        yearly: 9,
                        ..Default::default()
                    },
                    keep: &[
                        ("a", &["last snapshot", "daily snapshot", "yearly snapshot"]),
                        ("c", DAILY),
                        ("e", DAILY),
                        ("f", DAILY),
                        ("g", DAILY),
                        ("h", DAILY),
                        ("i", DAILY),
                        ("j", &["daily snapshot", "yearly snapshot"]),
                        ("k", DAILY),
                        ("l", DAILY),
                        ("m", DAILY),
                        ("n", &["daily snapshot", "yearly snapshot"]),
                        ("n2", &["oldest daily snapshot", "oldest yearly snapshot"]),
                    ],
                },
            ],
        );
    }

    #[test]
    fn periods_without_snapshots_cost_nothing() {
        let snapshots = untagged(&[
            ("feb10", "2021-02-10T10:00:00Z"),
            ("jan20", "2021-01-20T10:00:00Z"),
            ("jan05", "2021-01-05T10:00:00Z"),
            ("jan01", "2021-01-01T10:00:00Z"),
            ("y2015", "2015-06-01T10:00:00Z"),
        ]);
        check_cases(
            &snapshots,
            far_future(),
            &[
                Case {
                    name: "daily 3 counts days with snapshots, not calendar days",
                    policy: KeepPolicy {
                        daily: 3,
                        ..Default::default()
                    },
                    keep: &[("feb10", DAILY), ("jan20", DAILY), ("jan05", DAILY)],
                },
                Case {
                    name: "yearly 2 skips the empty years in between",
                    policy: KeepPolicy {
                        yearly: 2,
                        ..Default::default()
                    },
                    keep: &[("feb10", YEARLY), ("y2015", YEARLY)],
                },
            ],
        );
    }

    #[test]
    fn buckets_use_each_snapshots_own_offset() {
        // Newest first by instant: x3 (01:00Z on 1 March), x2 (23:00Z),
        // x1 (22:30Z). On their own calendars x3 and x2 fall on 28 February
        // and x1 on 1 March; in UTC it would be the other way round.
        let snapshots = untagged(&[
            ("x1", "2021-03-01T00:30:00+02:00"),
            ("x2", "2021-02-28T23:00:00+00:00"),
            ("x3", "2021-02-28T20:00:00-05:00"),
        ]);
        check_cases(
            &snapshots,
            far_future(),
            &[
                Case {
                    name: "daily in local calendars",
                    policy: KeepPolicy {
                        daily: 5,
                        ..Default::default()
                    },
                    keep: &[("x3", DAILY), ("x1", DAILY)],
                },
                Case {
                    name: "monthly in local calendars",
                    policy: KeepPolicy {
                        monthly: 5,
                        ..Default::default()
                    },
                    keep: &[("x3", MONTHLY), ("x1", MONTHLY)],
                },
            ],
        );

        // Same UTC hour (05), different local hours in a +05:45 zone.
        let nepal = untagged(&[
            ("early", "2021-05-01T10:50:00+05:45"),
            ("late", "2021-05-01T11:10:00+05:45"),
        ]);
        check_cases(
            &nepal,
            far_future(),
            &[Case {
                name: "hourly with a non-whole-hour offset",
                policy: KeepPolicy {
                    hourly: 5,
                    ..Default::default()
                },
                keep: &[("late", HOURLY), ("early", HOURLY)],
            }],
        );
    }

    fn window_series() -> Vec<SnapshotMeta> {
        untagged(&[
            ("future", "2021-07-01T00:00:00Z"),
            ("s1", "2021-05-31T12:00:00Z"),
            ("s2", "2021-05-24T12:00:01Z"),
            ("s3", "2021-05-24T12:00:00Z"),
            ("s4", "2021-05-01T00:00:00Z"),
        ])
    }

    #[test]
    fn keep_within_is_relative_to_newest_snapshot_not_in_future() {
        let now = at("2021-06-01T00:00:00Z").with_timezone(&Utc);
        check_cases(
            &window_series(),
            now,
            &[
                Case {
                    // Reference is s1; the window starts at 2021-05-24T12:00:00Z,
                    // exclusive, so s3 sits exactly on the edge and is removed.
                    name: "within 7d",
                    policy: KeepPolicy {
                        within: dur("7d"),
                        ..Default::default()
                    },
                    keep: &[
                        ("future", &["within 7d"]),
                        ("s1", &["within 7d"]),
                        ("s2", &["within 7d"]),
                    ],
                },
                Case {
                    name: "within 1d2h",
                    policy: KeepPolicy {
                        within: dur("1d2h"),
                        ..Default::default()
                    },
                    keep: &[("future", &["within 1d2h"]), ("s1", &["within 1d2h"])],
                },
                Case {
                    name: "zero duration disables the rule",
                    policy: KeepPolicy {
                        within: Some(Duration::default()),
                        last: 1,
                        ..Default::default()
                    },
                    keep: &[("future", LAST)],
                },
            ],
        );

        // With every snapshot in the future the reference is Go's zero time,
        // so every snapshot is within any window.
        let early = at("2020-01-01T00:00:00Z").with_timezone(&Utc);
        let decisions = plan(
            &window_series(),
            &KeepPolicy {
                within: dur("1h"),
                ..Default::default()
            },
            early,
        );
        assert!(decisions.iter().all(|d| d.reasons == ["within 1h"]));

        // A snapshot exactly at `now` is not "before now" either.
        let at_s1 = at("2021-05-31T12:00:00Z").with_timezone(&Utc);
        let decisions = plan(
            &window_series(),
            &KeepPolicy {
                within: dur("7d"),
                ..Default::default()
            },
            at_s1,
        );
        let ids: Vec<String> = kept(&decisions).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["future", "s1", "s2", "s3"]);
    }

    #[test]
    fn keep_within_subtracts_like_go_add_date() {
        // 2021-03-31 minus one month is "2021-02-31", normalised to 2021-03-03.
        let snapshots = untagged(&[
            ("r0", "2021-03-31T12:00:00Z"),
            ("r1", "2021-03-03T12:00:01Z"),
            ("r2", "2021-03-02T12:00:00Z"),
            ("r3", "2021-02-28T13:00:00Z"),
        ]);
        check_cases(
            &snapshots,
            far_future(),
            &[Case {
                name: "month overflow",
                policy: KeepPolicy {
                    within: dur("1m"),
                    ..Default::default()
                },
                keep: &[("r0", &["within 1m"]), ("r1", &["within 1m"])],
            }],
        );

        // The calendar arithmetic happens in the reference snapshot's offset:
        // 2021-04-01T01:00+02:00 minus one month is 2021-03-01T01:00+02:00,
        // i.e. 2021-02-28T23:00Z. In UTC it would have been 2021-03-03T23:00Z.
        let snapshots = untagged(&[
            ("ref", "2021-04-01T01:00:00+02:00"),
            ("inside", "2021-03-02T00:00:00Z"),
            ("outside", "2021-02-28T22:59:59Z"),
        ]);
        check_cases(
            &snapshots,
            far_future(),
            &[Case {
                name: "offset of the reference",
                policy: KeepPolicy {
                    within: dur("1m"),
                    ..Default::default()
                },
                keep: &[("ref", &["within 1m"]), ("inside", &["within 1m"])],
            }],
        );

        // Durations far beyond the calendar keep everything.
        let decisions = plan(
            &snapshots,
            &KeepPolicy {
                within: dur("2000000000y"),
                ..Default::default()
            },
            far_future(),
        );
        assert!(decisions.iter().all(|d| d.keep));
    }

    fn daily_window_series() -> Vec<SnapshotMeta> {
        untagged(&[
            ("w0", "2021-05-31T12:00:00Z"),
            ("w1", "2021-05-31T08:00:00Z"),
            ("w2", "2021-05-30T20:00:00Z"),
            ("w3", "2021-05-29T13:00:00Z"),
            ("w4", "2021-05-29T11:00:00Z"),
            ("w5", "2021-05-28T12:00:00Z"),
            ("w6", "2021-05-01T10:00:00Z"),
            ("w7", "2021-05-01T09:00:00Z"),
        ])
    }

    #[test]
    fn keep_within_periods() {
        check_cases(
            &daily_window_series(),
            far_future(),
            &[
                Case {
                    name: "daily within 3d: w5 is exactly on the edge",
                    policy: KeepPolicy {
                        within_daily: dur("3d"),
                        ..Default::default()
                    },
                    keep: &[
                        ("w0", &["daily within 3d"]),
                        ("w2", &["daily within 3d"]),
                        ("w3", &["daily within 3d"]),
                    ],
                },
                Case {
                    name: "daily within 3m reaches the oldest",
                    policy: KeepPolicy {
                        within_daily: dur("3m"),
                        ..Default::default()
                    },
                    keep: &[
                        ("w0", &["daily within 3m"]),
                        ("w2", &["daily within 3m"]),
                        ("w3", &["daily within 3m"]),
                        ("w5", &["daily within 3m"]),
                        ("w6", &["daily within 3m"]),
                        ("w7", &["oldest daily within 3m"]),
                    ],
                },
                Case {
                    name: "hourly within 1d",
                    policy: KeepPolicy {
                        within_hourly: dur("1d"),
                        ..Default::default()
                    },
                    keep: &[
                        ("w0", &["hourly within 1d"]),
                        ("w1", &["hourly within 1d"]),
                        ("w2", &["hourly within 1d"]),
                    ],
                },
                Case {
                    name: "weekly, monthly and yearly windows",
                    policy: KeepPolicy {
                        within_weekly: dur("1m"),
                        within_monthly: dur("2m"),
                        within_yearly: dur("1y"),
                        ..Default::default()
                    },
                    // 2021-05-31 is a Monday (W22); w2..w5 are in W21. One
                    // month before 2021-05-31T12:00 is "2021-04-31", i.e.
                    // 2021-05-01T12:00, so w6 and w7 are outside the weekly
                    // window; w7 is the oldest snapshot of the other two.
                    keep: &[
                        (
                            "w0",
                            &["weekly within 1m", "monthly within 2m", "yearly within 1y"],
                        ),
                        ("w2", &["weekly within 1m"]),
                        (
                            "w7",
                            &["oldest monthly within 2m", "oldest yearly within 1y"],
                        ),
                    ],
                },
                Case {
                    name: "reason order: within, counted rules, windowed rules",
                    policy: KeepPolicy {
                        within: dur("1d"),
                        daily: 1,
                        within_daily: dur("1d"),
                        ..Default::default()
                    },
                    keep: &[
                        ("w0", &["within 1d", "daily snapshot", "daily within 1d"]),
                        ("w1", &["within 1d"]),
                        ("w2", &["within 1d", "daily within 1d"]),
                    ],
                },
            ],
        );
    }

    #[test]
    fn keep_tags() {
        let snapshots = vec![
            snap("t1", "2021-05-05T00:00:00Z", &["foo", "bar"]),
            snap("t2", "2021-05-04T00:00:00Z", &["foo"]),
            snap("t3", "2021-05-03T00:00:00Z", &["bar"]),
            snap("t4", "2021-05-02T00:00:00Z", &[]),
            snap("t5", "2021-05-01T00:00:00Z", &["baz"]),
        ];
        check_cases(
            &snapshots,
            far_future(),
            &[
                Case {
                    name: "single tag",
                    policy: KeepPolicy {
                        tags: tags(&[&["foo"]]),
                        ..Default::default()
                    },
                    keep: &[("t1", &["has tags [foo]"]), ("t2", &["has tags [foo]"])],
                },
                Case {
                    name: "a list needs all of its tags",
                    policy: KeepPolicy {
                        tags: tags(&[&["foo", "bar"]]),
                        ..Default::default()
                    },
                    keep: &[("t1", &["has tags [foo, bar]"])],
                },
                Case {
                    name: "any of several lists",
                    policy: KeepPolicy {
                        tags: tags(&[&["foo"], &["bar"]]),
                        ..Default::default()
                    },
                    keep: &[
                        ("t1", &["has tags [foo]", "has tags [bar]"]),
                        ("t2", &["has tags [foo]"]),
                        ("t3", &["has tags [bar]"]),
                    ],
                },
                Case {
                    name: "the empty tag matches untagged snapshots",
                    policy: KeepPolicy {
                        tags: vec![KeepPolicy::parse_tag_list("")],
                        ..Default::default()
                    },
                    keep: &[("t4", &["has tags []"])],
                },
                Case {
                    name: "tags are not counted and come first",
                    policy: KeepPolicy {
                        tags: tags(&[&["baz"]]),
                        last: 1,
                        ..Default::default()
                    },
                    keep: &[("t1", LAST), ("t5", &["has tags [baz]"])],
                },
            ],
        );
        assert_eq!(KeepPolicy::parse_tag_list(" foo , bar"), ["foo", "bar"]);
        let everything = KeepPolicy {
            tags: vec![Vec::new()],
            ..Default::default()
        };
        assert!(!everything.is_empty());
        assert!(plan(&snapshots, &everything, far_future())
            .iter()
            .all(|d| d.reasons == ["has tags []"]));
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let empty = KeepPolicy {
            within: Some(Duration::default()),
            within_daily: Some(Duration::default()),
            ..Default::default()
        };
        assert!(KeepPolicy::default().is_empty());
        assert!(empty.is_empty());
        for not_empty in [
            KeepPolicy {
                last: -1,
                ..Default::default()
            },
            KeepPolicy {
                yearly: 1,
                ..Default::default()
            },
            KeepPolicy {
                within_yearly: dur("1h"),
                ..Default::default()
            },
            KeepPolicy {
                tags: tags(&[&["x"]]),
                ..Default::default()
            },
        ] {
            assert!(!not_empty.is_empty(), "{not_empty:?}");
        }
        let decisions = plan(&series(), &empty, far_future());
        assert_eq!(decisions.len(), series().len());
        assert!(decisions
            .iter()
            .all(|d| d.keep && d.reasons == [EMPTY_POLICY_REASON]));
        assert!(plan(&[], &empty, far_future()).is_empty());
        assert!(plan(
            &[],
            &KeepPolicy {
                daily: 3,
                ..Default::default()
            },
            far_future()
        )
        .is_empty());
    }

    #[test]
    fn ties_are_broken_by_id() {
        let one = snap("one", "2021-05-01T12:00:00Z", &[]);
        let two = snap("two", "2021-05-01T14:00:00+02:00", &[]);
        let policy = KeepPolicy {
            last: 1,
            ..Default::default()
        };
        for input in [
            vec![one.clone(), two.clone()],
            vec![two.clone(), one.clone()],
        ] {
            let decisions = plan(&input, &policy, far_future());
            assert_eq!(decisions[0].id, "one");
            assert_eq!(kept(&decisions), expected(&[("one", LAST)]));
        }
    }

    #[test]
    fn validate_rejects_what_restic_rejects() {
        assert_eq!(KeepPolicy::default().validate(), Ok(()));
        let unlimited = KeepPolicy {
            daily: -1,
            within: dur("1y2m"),
            ..Default::default()
        };
        assert_eq!(unlimited.validate(), Ok(()));
        let err = KeepPolicy {
            monthly: -2,
            ..Default::default()
        }
        .validate()
        .expect_err("-2 is invalid");
        assert_eq!(
            err,
            RetentionError::InvalidCount {
                option: "keep-monthly",
                count: -2
            }
        );
        assert!(err.to_string().contains("--keep-monthly -2"), "{err}");
        let err = KeepPolicy {
            within_daily: dur("1m-2d"),
            ..Default::default()
        }
        .validate()
        .expect_err("negative duration is invalid");
        assert!(
            err.to_string().contains("--keep-within-daily 1m-2d"),
            "{err}"
        );
    }

    #[test]
    fn duration_parses_restic_notation() {
        for (input, want, display) in [
            ("9h", Duration::new(0, 0, 0, 9), "9h"),
            ("3d", Duration::new(0, 0, 3, 0), "3d"),
            ("1y5m7d2h", Duration::new(1, 5, 7, 2), "1y5m7d2h"),
            ("5d7m", Duration::new(0, 7, 5, 0), "7m5d"),
            ("4h3d9m", Duration::new(0, 9, 3, 4), "9m3d4h"),
            ("-7m5d", Duration::new(0, -7, 5, 0), "-7m5d"),
            ("1y4m-5d-3h", Duration::new(1, 4, -5, -3), "1y4m-5d-3h"),
            ("  5d  ", Duration::new(0, 0, 5, 0), "5d"),
            ("1d2d", Duration::new(0, 0, 2, 0), "2d"),
            ("0y", Duration::default(), ""),
            ("", Duration::default(), ""),
        ] {
            let parsed: Duration = input.parse().expect(input);
            assert_eq!(parsed, want, "{input:?}");
            assert_eq!(parsed.to_string(), display, "{input:?}");
        }
    }

    #[test]
    fn duration_rejects_malformed_input() {
        for (input, problem) in [
            (
                "2w",
                DurationProblem::InvalidUnit {
                    unit: 'w',
                    number: 2,
                },
            ),
            (
                "1y4m3w1d",
                DurationProblem::InvalidUnit {
                    unit: 'w',
                    number: 3,
                },
            ),
            (
                "s",
                DurationProblem::ExpectedNumber {
                    found: "s".to_string(),
                },
            ),
            (
                "\u{7c0}",
                DurationProblem::ExpectedNumber {
                    found: "\u{7c0}".to_string(),
                },
            ),
            ("5", DurationProblem::MissingUnit { number: 5 }),
            (
                "-",
                DurationProblem::ExpectedNumber {
                    found: String::new(),
                },
            ),
            (
                "5 d",
                DurationProblem::InvalidUnit {
                    unit: ' ',
                    number: 5,
                },
            ),
            (
                "1d+2h",
                DurationProblem::ExpectedNumber {
                    found: "+2h".to_string(),
                },
            ),
            (
                "99999999999d",
                DurationProblem::NumberOutOfRange {
                    number: "99999999999".to_string(),
                },
            ),
        ] {
            let err = input.parse::<Duration>().expect_err(input);
            assert_eq!(
                err,
                RetentionError::InvalidDuration {
                    input: input.to_string(),
                    problem,
                }
            );
        }
        let message = "1y4m3w1d".parse::<Duration>().expect_err("w").to_string();
        assert!(message.contains("\"1y4m3w1d\""), "{message}");
        assert!(message.contains("'w'"), "{message}");
        assert!(
            message.contains("y (years), m (months), d (days) or h (hours)"),
            "{message}"
        );
    }

    #[test]
    fn serde_round_trip() {
        let d: Duration = "1y5m7d2h".parse().expect("valid");
        assert_eq!(
            serde_json::to_string(&d).expect("serialize"),
            "\"1y5m7d2h\""
        );
        let policy = KeepPolicy {
            daily: 7,
            weekly: -1,
            within_monthly: dur("1y"),
            tags: tags(&[&["a", "b"], &["c"]]),
            ..Default::default()
        };
        let json = serde_json::to_string(&policy).expect("serialize");
        assert!(json.contains("\"within_monthly\":\"1y\""), "{json}");
        let back: KeepPolicy = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, policy);
        let partial: KeepPolicy =
            serde_json::from_str(r#"{"daily": 3, "within": "2d"}"#).expect("deserialize");
        assert_eq!(
            partial,
            KeepPolicy {
                daily: 3,
                within: dur("2d"),
                ..Default::default()
            }
        );
        let err =
            serde_json::from_str::<KeepPolicy>(r#"{"within": "2w"}"#).expect_err("invalid unit");
        assert!(err.to_string().contains("\"2w\""), "{err}");
    }

    #[test]
    fn policy_display_matches_restic_summary() {
        let policy = KeepPolicy {
            last: 2,
            daily: 7,
            monthly: -1,
            within: dur("2d"),
            within_daily: dur("1m"),
            within_yearly: dur("5y"),
            tags: tags(&[&["a", "b"], &["c"]]),
            ..Default::default()
        };
        assert_eq!(
            policy.to_string(),
            "keep 2 latest, 7 daily, all monthly snapshots, daily snapshots within 1m, \
             yearly snapshots within 5y and all snapshots with tags [[a, b] [c]] \
             and all snapshots within 2d of the newest"
        );
        assert_eq!(
            KeepPolicy::default().to_string(),
            "keep all snapshots (no policy)"
        );
    }

    /// The snapshot list of restic's own policy test suite
    /// (`TestApplyPolicy`), in its original order; times are UTC.
    const RESTIC_FIXTURE: &[(&str, &[&str])] = &[
        ("2014-09-01T10:20:30Z", &[]),
        ("2014-09-02T10:20:30Z", &[]),
        ("2014-09-05T10:20:30Z", &[]),
        ("2014-09-06T10:20:30Z", &[]),
        ("2014-09-08T10:20:30Z", &[]),
        ("2014-09-09T10:20:30Z", &[]),
        ("2014-09-10T10:20:30Z", &[]),
        ("2014-09-11T10:20:30Z", &[]),
        ("2014-09-20T10:20:30Z", &[]),
        ("2014-09-22T10:20:30Z", &[]),
        ("2014-08-08T10:20:30Z", &[]),
        ("2014-08-10T10:20:30Z", &[]),
        ("2014-08-12T10:20:30Z", &[]),
        ("2014-08-13T10:20:30Z", &[]),
        ("2014-08-13T10:20:30.1Z", &[]),
        ("2014-08-15T10:20:30Z", &[]),
        ("2014-08-18T10:20:30Z", &[]),
        ("2014-08-20T10:20:30Z", &[]),
        ("2014-08-21T10:20:30Z", &[]),
        ("2014-08-22T10:20:30Z", &[]),
        ("2014-10-01T10:20:30Z", &["foo"]),
        ("2014-10-02T10:20:30Z", &["foo"]),
        ("2014-10-05T10:20:30Z", &["foo"]),
        ("2014-10-06T10:20:30Z", &["foo"]),
        ("2014-10-08T10:20:30Z", &["foo"]),
        ("2014-10-09T10:20:30Z", &["foo"]),
        ("2014-10-10T10:20:30Z", &["foo"]),
        ("2014-10-11T10:20:30Z", &["foo"]),
        ("2014-10-20T10:20:30Z", &["foo"]),
        ("2014-10-22T10:20:30Z", &["foo"]),
        ("2014-11-08T10:20:30Z", &["foo"]),
        ("2014-11-10T10:20:30Z", &["foo"]),
        ("2014-11-12T10:20:30Z", &["foo"]),
        ("2014-11-13T10:20:30Z", &["foo"]),
        ("2014-11-13T10:20:30.1Z", &["bar"]),
        ("2014-11-15T10:20:30Z", &["foo", "bar"]),
        ("2014-11-18T10:20:30Z", &[]),
        ("2014-11-20T10:20:30Z", &[]),
        ("2014-11-21T10:20:30Z", &[]),
        ("2014-11-22T10:20:30Z", &[]),
        ("2015-09-01T10:20:30Z", &[]),
        ("2015-09-02T10:20:30Z", &[]),
        ("2015-09-05T10:20:30Z", &[]),
        ("2015-09-06T10:20:30Z", &[]),
        ("2015-09-08T10:20:30Z", &[]),
        ("2015-09-09T10:20:30Z", &[]),
        ("2015-09-10T10:20:30Z", &[]),
        ("2015-09-11T10:20:30Z", &[]),
        ("2015-09-20T10:20:30Z", &[]),
        ("2015-09-22T10:20:30Z", &[]),
        ("2015-08-08T10:20:30Z", &[]),
        ("2015-08-10T10:20:30Z", &[]),
        ("2015-08-12T10:20:30Z", &[]),
        ("2015-08-13T10:20:30Z", &[]),
        ("2015-08-13T10:20:30.1Z", &[]),
        ("2015-08-15T10:20:30Z", &[]),
        ("2015-08-18T10:20:30Z", &[]),
        ("2015-08-20T10:20:30Z", &[]),
        ("2015-08-21T10:20:30Z", &[]),
        ("2015-08-22T10:20:30Z", &[]),
        ("2015-10-01T10:20:30Z", &[]),
        ("2015-10-02T10:20:30Z", &[]),
        ("2015-10-05T10:20:30Z", &[]),
        ("2015-10-06T10:20:30Z", &[]),
        ("2015-10-08T10:20:30Z", &[]),
        ("2015-10-09T10:20:30Z", &[]),
        ("2015-10-10T10:20:30Z", &[]),
        ("2015-10-11T10:20:30Z", &[]),
        ("2015-10-20T10:20:30Z", &[]),
        ("2015-10-22T10:20:30Z", &[]),
        ("2015-10-22T10:20:30Z", &[]),
        ("2015-10-22T10:20:30Z", &["foo", "bar"]),
        ("2015-10-22T10:20:30Z", &["foo", "bar"]),
        ("2015-10-22T10:20:30Z", &["foo", "bar"]),
        ("2015-11-08T10:20:30Z", &[]),
        ("2015-11-10T10:20:30Z", &[]),
        ("2015-11-12T10:20:30Z", &[]),
        ("2015-11-13T10:20:30Z", &[]),
        ("2015-11-13T10:20:30.1Z", &[]),
        ("2015-11-15T10:20:30Z", &[]),
        ("2015-11-18T10:20:30Z", &[]),
        ("2015-11-20T10:20:30Z", &[]),
        ("2015-11-21T10:20:30Z", &[]),
        ("2015-11-22T10:20:30Z", &[]),
        ("2016-01-01T01:02:03Z", &[]),
        ("2016-01-01T01:03:03Z", &[]),
        ("2016-01-01T07:08:03Z", &[]),
        ("2016-01-03T07:02:03Z", &[]),
        ("2016-01-04T10:23:03Z", &[]),
        ("2016-01-04T11:23:03Z", &[]),
        ("2016-01-04T12:23:03Z", &[]),
        ("2016-01-04T12:24:03Z", &[]),
        ("2016-01-04T12:28:03Z", &[]),
        ("2016-01-04T12:30:03Z", &[]),
        ("2016-01-04T16:23:03Z", &[]),
        ("2016-01-05T09:02:03Z", &[]),
        ("2016-01-06T08:02:03Z", &[]),
        ("2016-01-07T10:02:03Z", &[]),
        ("2016-01-08T20:02:03Z", &[]),
        ("2016-01-09T21:02:03Z", &[]),
        ("2016-01-12T21:02:03Z", &[]),
        ("2016-01-12T21:08:03Z", &[]),
        ("2016-01-18T12:02:03Z", &[]),
    ];

    /// Ids follow the fixture order, so the id tie-break reproduces the
    /// stable sort restic's suite relies on.
    fn restic_fixture() -> Vec<SnapshotMeta> {
        RESTIC_FIXTURE
            .iter()
            .enumerate()
            .map(|(i, (time, tags))| snap(&format!("s{i:03}"), time, tags))
            .collect()
    }

    /// Kept snapshots as (RFC 3339 time, reasons).
    fn kept_by_time(decisions: &[Decision]) -> Vec<(String, Vec<String>)> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| {
                (
                    d.time
                        .with_timezone(&Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    d.reasons.clone(),
                )
            })
            .collect()
    }

    type TimesAndReasons = Vec<(&'static str, Vec<&'static str>)>;

    /// Expected results of restic's own golden files for the fixture above.
    #[test]
    fn matches_restic_golden_results() {
        let snapshots = restic_fixture();
        let cases: Vec<(KeepPolicy, TimesAndReasons)> = vec![
            (
                KeepPolicy {
                    daily: 2,
                    weekly: 2,
                    monthly: 6,
                    ..Default::default()
                },
                vec![
                    (
                        "2016-01-18T12:02:03Z",
                        vec!["daily snapshot", "weekly snapshot", "monthly snapshot"],
                    ),
                    (
                        "2016-01-12T21:08:03Z",
                        vec!["daily snapshot", "weekly snapshot"],
                    ),
                    ("2015-11-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2015-10-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2015-09-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2015-08-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2014-11-22T10:20:30Z", vec!["monthly snapshot"]),
                ],
            ),
            (
                KeepPolicy {
                    yearly: 10,
                    ..Default::default()
                },
                vec![
                    ("2016-01-18T12:02:03Z", vec!["yearly snapshot"]),
                    ("2015-11-22T10:20:30Z", vec!["yearly snapshot"]),
                    ("2014-11-22T10:20:30Z", vec!["yearly snapshot"]),
                    ("2014-08-08T10:20:30Z", vec!["oldest yearly snapshot"]),
                ],
            ),
            (
                KeepPolicy {
                    tags: tags(&[&["foo"], &["bar"]]),
                    ..Default::default()
                },
                {
                    let both = vec!["has tags [foo]", "has tags [bar]"];
                    let foo = vec!["has tags [foo]"];
                    let mut rows = vec![
                        ("2015-10-22T10:20:30Z", both.clone()),
                        ("2015-10-22T10:20:30Z", both.clone()),
                        ("2015-10-22T10:20:30Z", both.clone()),
                        ("2014-11-15T10:20:30Z", both),
                        ("2014-11-13T10:20:30.100Z", vec!["has tags [bar]"]),
                    ];
                    for time in [
                        "2014-11-13T10:20:30Z",
                        "2014-11-12T10:20:30Z",
                        "2014-11-10T10:20:30Z",
                        "2014-11-08T10:20:30Z",
                        "2014-10-22T10:20:30Z",
                        "2014-10-20T10:20:30Z",
                        "2014-10-11T10:20:30Z",
                        "2014-10-10T10:20:30Z",
                        "2014-10-09T10:20:30Z",
                        "2014-10-08T10:20:30Z",
                        "2014-10-06T10:20:30Z",
                        "2014-10-05T10:20:30Z",
                        "2014-10-02T10:20:30Z",
                        "2014-10-01T10:20:30Z",
                    ] {
                        rows.push((time, foo.clone()));
                    }
                    rows
                },
            ),
            (
                KeepPolicy {
                    within_weekly: dur("1y2m3d3h"),
                    ..Default::default()
                },
                [
                    "2016-01-18T12:02:03Z",
                    "2016-01-12T21:08:03Z",
                    "2016-01-09T21:02:03Z",
                    "2016-01-03T07:02:03Z",
                    "2015-11-22T10:20:30Z",
                    "2015-11-15T10:20:30Z",
                    "2015-11-08T10:20:30Z",
                    "2015-10-22T10:20:30Z",
                    "2015-10-11T10:20:30Z",
                    "2015-10-02T10:20:30Z",
                    "2015-09-22T10:20:30Z",
                    "2015-09-20T10:20:30Z",
                    "2015-09-11T10:20:30Z",
                    "2015-09-06T10:20:30Z",
                    "2015-08-22T10:20:30Z",
                    "2015-08-15T10:20:30Z",
                    "2015-08-08T10:20:30Z",
                    "2014-11-22T10:20:30Z",
                    "2014-11-15T10:20:30Z",
                ]
                .into_iter()
                .map(|time| (time, vec!["weekly within 1y2m3d3h"]))
                .collect(),
            ),
            (
                KeepPolicy {
                    daily: 3,
                    weekly: 2,
                    monthly: -1,
                    yearly: -1,
                    ..Default::default()
                },
                vec![
                    (
                        "2016-01-18T12:02:03Z",
                        vec![
                            "daily snapshot",
                            "weekly snapshot",
                            "monthly snapshot",
                            "yearly snapshot",
                        ],
                    ),
                    (
                        "2016-01-12T21:08:03Z",
                        vec!["daily snapshot", "weekly snapshot"],
                    ),
                    ("2016-01-09T21:02:03Z", vec!["daily snapshot"]),
                    (
                        "2015-11-22T10:20:30Z",
                        vec!["monthly snapshot", "yearly snapshot"],
                    ),
                    ("2015-10-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2015-09-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2015-08-22T10:20:30Z", vec!["monthly snapshot"]),
                    (
                        "2014-11-22T10:20:30Z",
                        vec!["monthly snapshot", "yearly snapshot"],
                    ),
                    ("2014-10-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2014-09-22T10:20:30Z", vec!["monthly snapshot"]),
                    ("2014-08-22T10:20:30Z", vec!["monthly snapshot"]),
                    (
                        "2014-08-08T10:20:30Z",
                        vec!["oldest monthly snapshot", "oldest yearly snapshot"],
                    ),
                ],
            ),
        ];
        for (policy, want) in cases {
            let got = kept_by_time(&plan(&snapshots, &policy, far_future()));
            let want: Vec<(String, Vec<String>)> = want
                .into_iter()
                .map(|(time, reasons)| {
                    (
                        time.to_string(),
                        reasons.into_iter().map(str::to_string).collect(),
                    )
                })
                .collect();
            assert_eq!(got, want, "policy {policy}");
        }
    }

    fn arb_snapshots() -> impl Strategy<Value = Vec<SnapshotMeta>> {
        // 2019-01-01 .. 2022-01-01, coarse enough to produce shared buckets
        // and identical instants.
        let one = (
            0i64..(3 * 365 * 24 * 4),
            prop::sample::select(vec![0i32, 3600, -5 * 3600, 20700, 14 * 3600, -12 * 3600]),
            prop::sample::subsequence(vec!["foo", "bar", "baz"], 0..=3),
        );
        prop::collection::vec(one, 1..40).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (quarter_hours, offset, tags))| {
                    let utc = DateTime::from_timestamp(1_546_300_800 + quarter_hours * 900, 0)
                        .expect("in range");
                    let zone = FixedOffset::east_opt(offset).expect("valid offset");
                    SnapshotMeta {
                        id: format!("id{i:02}"),
                        time: utc.with_timezone(&zone),
                        tags: tags.into_iter().map(str::to_string).collect(),
                    }
                })
                .collect()
        })
    }

    fn arb_count() -> impl Strategy<Value = i64> {
        prop_oneof![Just(-1i64), 0i64..5]
    }

    fn arb_window() -> impl Strategy<Value = Option<Duration>> {
        prop::option::of(
            (0i32..2, 0i32..6, 0i32..20, 0i32..30)
                .prop_map(|(y, m, d, h)| Duration::new(y, m, d, h)),
        )
    }

    fn arb_policy() -> impl Strategy<Value = KeepPolicy> {
        (
            prop::array::uniform6(arb_count()),
            prop::array::uniform6(arb_window()),
            prop::collection::vec(
                prop::sample::subsequence(vec!["foo", "bar", ""], 0..=2),
                0..3,
            ),
        )
            .prop_map(|(c, w, tag_lists)| KeepPolicy {
                last: c[0],
                hourly: c[1],
                daily: c[2],
                weekly: c[3],
                monthly: c[4],
                yearly: c[5],
                within: w[0],
                within_hourly: w[1],
                within_daily: w[2],
                within_weekly: w[3],
                within_monthly: w[4],
                within_yearly: w[5],
                tags: tag_lists
                    .into_iter()
                    .map(|l| l.into_iter().map(str::to_string).collect())
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn newest_snapshot_is_kept_by_any_counting_rule(
            snapshots in arb_snapshots(),
            counts in prop::array::uniform6(arb_count()),
            forced in 0usize..6,
            forced_count in prop_oneof![Just(-1i64), 1i64..5],
        ) {
            let mut c = counts;
            c[forced] = forced_count;
            let policy = KeepPolicy {
                last: c[0], hourly: c[1], daily: c[2], weekly: c[3], monthly: c[4], yearly: c[5],
                ..Default::default()
            };
            let newest = snapshots.iter().map(|s| s.time).max().expect("non-empty");
            let now = newest.with_timezone(&Utc) + TimeDelta::seconds(1);
            let decisions = plan(&snapshots, &policy, now);
            prop_assert_eq!(decisions[0].time, newest);
            prop_assert!(decisions[0].keep);
        }

        #[test]
        fn keep_set_does_not_depend_on_input_order(
            (snapshots, shuffled) in arb_snapshots()
                .prop_flat_map(|s| (Just(s.clone()), Just(s).prop_shuffle())),
            policy in arb_policy(),
            now_offset in -3i64..3,
        ) {
            let newest = snapshots.iter().map(|s| s.time).max().expect("non-empty");
            let now = newest.with_timezone(&Utc) + TimeDelta::days(now_offset * 200);
            prop_assert_eq!(plan(&snapshots, &policy, now), plan(&shuffled, &policy, now));
        }

        #[test]
        fn counting_rules_keep_at_most_their_budget_plus_the_oldest(
            snapshots in arb_snapshots(),
            counts in prop::array::uniform6(0i64..5),
        ) {
            let policy = KeepPolicy {
                last: counts[0], hourly: counts[1], daily: counts[2],
                weekly: counts[3], monthly: counts[4], yearly: counts[5],
                ..Default::default()
            };
            prop_assume!(!policy.is_empty());
            let decisions = plan(&snapshots, &policy, far_future());
            let kept = decisions.iter().filter(|d| d.keep).count();
            let budget: i64 = counts.iter().sum();
            prop_assert!(kept as i64 <= budget + 1);
            prop_assert_eq!(decisions.len(), snapshots.len());
            for pair in decisions.windows(2) {
                prop_assert!(pair[0].time >= pair[1].time);
            }
        }
    }
}
