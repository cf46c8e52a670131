//! Command-line types (clap derive only; no logic).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Backup and archival engine for application cache directories.
#[derive(Debug, Parser)]
#[command(name = "cachevault", version, about, long_about = None)]
pub struct Cli {
    /// Repository folder.
    #[arg(long, global = true, env = "CACHEVAULT_REPO", value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Config file (cache root, repository, cache types, policies).
    #[arg(long, global = true, env = "CACHEVAULT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print less.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Seconds to wait for a repository lock held by another process.
    #[arg(
        long,
        global = true,
        default_value_t = 60,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub lock_wait: u64,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new, empty repository.
    Init,
    /// Snapshot PATH (or the config's backup-enabled cache types) into the repository.
    Snapshot(SnapshotArgs),
    /// List snapshots (filters: --tag, --kind, --path, --host).
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot (whole or some paths), verified byte for byte.
    Restore(RestoreArgs),
    /// Verify the repository's structure and, optionally, its data.
    Check(CheckArgs),
    /// Remove snapshots by a keep policy (restic's forget semantics).
    Forget(Box<ForgetArgs>),
    /// Remove data no snapshot references; repack mostly-unused archives.
    Prune(PruneArgs),
    /// Rewrite missing, damaged or disagreeing indexes from the archives themselves;
    /// salvage the readable blobs of damaged archives.
    RebuildIndex(RebuildIndexArgs),
    /// Rewrite snapshots that reference missing data without the lost files (tagged
    /// `repaired`), listing what was lost.
    RepairSnapshots(RepairSnapshotsArgs),
    /// Clear caches by strategy, after a verified pre-clear snapshot.
    Clear(ClearArgs),
    /// Put back what a clear removed or rewrote (default: the last clear).
    Undo(UndoArgs),
    /// After a clear, restore the most recently used entries (or the config's priority list).
    Warm(WarmArgs),
    /// Run every scheduled job of the config that is due (backup, clearing, validation,
    /// optimization), each at most once per period.
    RunDue(RunDueArgs),
    /// Check every cache file: UTF-8, non-empty, parses, its type's schema and cache_version.
    Validate(ValidateArgs),
    /// Replace invalid cache files by their newest valid snapshot version; quarantine the rest.
    Repair(RepairArgs),
    /// Inspect the config file.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Snapshot the shipped fixtures with the default config, verify, restore and compare.
    Demo(DemoArgs),
    /// Files, bytes, ages, TTL and limits per cache type; repository size, ratios, growth.
    Stats(StatsArgs),
    /// Exit 0 when healthy, 1 on a warning, 2 when critical, with the reasons.
    Health(HealthArgs),
    /// One self-contained HTML page (or JSON): health, cache size over time, snapshots and
    /// retention, repository growth, the last scheduled runs.
    Report(ReportArgs),
    /// What changed between two snapshots.
    Diff(DiffArgs),
    /// Every version of one file across snapshots, newest first.
    Find(FindArgs),
    /// The journal of operations: what, when, how long, result, bytes.
    History(HistoryArgs),
    /// Print a crontab line or systemd units that call `run-due`.
    Schedule(ScheduleArgs),
    /// Copy snapshots from another repository (--from-repo) into this one, sending only the
    /// blobs it lacks (default: every complete backup it lacks).
    Copy(CopyArgs),
    /// Remove locks nobody holds any more (lock objects past their expiry; holder files of
    /// dead processes).
    Unlock(UnlockArgs),
}

/// `copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The repository to copy from (a folder or an s3: URL).
    #[arg(long, value_name = "SRC")]
    pub from_repo: String,
    /// Copy these snapshots (ids or unique prefixes) instead of every matching one.
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    /// Filters (default: complete backups).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// List what would be copied, copy nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, also those that look held (only when no cachevault is running
    /// against the repository).
    #[arg(long)]
    pub all: bool,
}

/// `config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Check the config and print it resolved (absolute paths, defaults filled in).
    Check,
}

fn parse_count(s: &str) -> Result<i64, String> {
    if s == "unlimited" {
        return Ok(-1);
    }
    match s.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(format!("{s:?}: expected a count >= 0, -1 or \"unlimited\"")),
    }
}

/// `forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Remove these snapshots (full ids or unique prefixes), damaged ones included, instead
    /// of applying keep rules.
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    pub keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the last N hours that have snapshots.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    pub keep_hourly: Option<i64>,
    /// Keep the newest snapshot of each of the last N days that have snapshots.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    pub keep_daily: Option<i64>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have snapshots.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    pub keep_weekly: Option<i64>,
    /// Keep the newest snapshot of each of the last N months that have snapshots.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    pub keep_monthly: Option<i64>,
    /// Keep the newest snapshot of each of the last N years that have snapshots.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_hyphen_values = true)]
    pub keep_yearly: Option<i64>,
    /// Keep every snapshot within DURATION (e.g. 1y5m7d2h) of the newest.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub keep_within: Option<String>,
    /// Keep hourly snapshots within DURATION of the newest.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub keep_within_hourly: Option<String>,
    /// Keep daily snapshots within DURATION of the newest.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub keep_within_daily: Option<String>,
    /// Keep weekly snapshots within DURATION of the newest.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub keep_within_weekly: Option<String>,
    /// Keep monthly snapshots within DURATION of the newest.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub keep_within_monthly: Option<String>,
    /// Keep yearly snapshots within DURATION of the newest.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with these tags (repeatable; `a,b` means both a and b).
    #[arg(long = "keep-tag", value_name = "T")]
    pub keep_tags: Vec<String>,
    /// Group snapshots also by host and/or tags (root and kind always apply; `paths` is
    /// accepted and means the root).
    #[arg(long, default_value = "host,paths", value_name = "FIELDS")]
    pub group_by: String,
    /// Consider only these snapshots (the others are neither kept nor removed by this run).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Consider only snapshots holding this cache type's folder (full backups and its type
    /// backups; repeatable; needs --config). Groups stay root + kind.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    /// Keep safety snapshots (pre-clear, pre-repair, pre-restore) and archives this many days
    /// (default: the config's backup_retention_days, else 7).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(1..=36500))]
    pub safety_days: Option<i64>,
    /// Show what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: repack archives with more than this share unused.
    #[arg(long, default_value = "10%", value_name = "PCT")]
    pub max_unused: String,
    /// Plan as if it were TIME (for trying rules out).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

/// `rebuild-index`.
#[derive(Debug, Args)]
pub struct RebuildIndexArgs {
    /// Read every archive whole and compare it with its index (finds bit flips), not only
    /// archives whose index is missing, damaged or of the wrong size.
    #[arg(long)]
    pub read_data: bool,
    /// Report what would be rewritten; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `repair-snapshots`.
#[derive(Debug, Args)]
pub struct RepairSnapshotsArgs {
    /// Remove each damaged original once its repaired version is written (and manifests that
    /// cannot be repaired at all); they move into REPO/damaged/.
    #[arg(long)]
    pub forget: bool,
    /// Report what would be repaired; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be freed.
    #[arg(long)]
    pub dry_run: bool,
    /// Repack archives with more than this share unused.
    #[arg(long, default_value = "10%", value_name = "PCT")]
    pub max_unused: String,
}

/// `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Folder to snapshot (default: the config's cache root, backup-enabled types).
    pub path: Option<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Record this time instead of now (RFC 3339, or "YYYY-MM-DD HH:MM:SS" local time); at
    /// most 5 minutes ahead of the clock.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Re-read every file instead of trusting unchanged size, mtime, ctime and inode.
    #[arg(long)]
    pub rehash: bool,
    /// Back up only this cache type's folder (repeatable; needs --config): a type backup,
    /// tagged `type:T`.
    #[arg(long = "type", value_name = "T", conflicts_with = "path")]
    pub types: Vec<String>,
    /// Read and report, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Snapshot filters, as restic has them. They choose what `latest` and `--at` mean and
/// which snapshots a listing shows; an explicit id ignores them.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots with these tags (repeatable: any of them; `a,b` means both a and b).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only snapshots of this kind: backup, pre-clear, pre-repair, pre-restore or archive
    /// (repeatable). `latest` and `--at` mean the newest complete backup unless given.
    #[arg(long = "kind", value_name = "K")]
    pub kinds: Vec<String>,
    /// Only snapshots whose root, or one of whose included paths, is P (repeatable).
    #[arg(long = "path", value_name = "P")]
    pub paths: Vec<PathBuf>,
    /// Only snapshots taken on host H (repeatable).
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
}

/// `snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Filters.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot: full id, unique prefix, or `latest` (the newest complete backup).
    pub snapshot: String,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only entries under this cache type's folder (repeatable; needs --config); `latest`
    /// means the newest complete backup holding it.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot: full id, unique prefix, or `latest` (the newest complete backup of the
    /// config's root, or of the root the filters name).
    #[arg(required_unless_present_any = ["at", "types"], conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore this cache type's folder (repeatable; needs --config), from the newest
    /// complete backup holding it (a full backup or a type backup) unless SNAP names one.
    #[arg(long = "type", value_name = "T", conflicts_with = "paths")]
    pub types: Vec<String>,
    /// Restore the newest complete backup taken at or before TIME.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// For `latest` and `--at`: only snapshots with these tags (repeatable; `a,b` = both).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// For `latest` and `--at`: only snapshots of this kind (default: backup).
    #[arg(long = "kind", value_name = "K")]
    pub kinds: Vec<String>,
    /// For `latest` and `--at`: only snapshots whose root or an included path is P (`--path`
    /// is taken by the paths to restore).
    #[arg(long = "snapshot-path", value_name = "P")]
    pub snapshot_paths: Vec<PathBuf>,
    /// For `latest` and `--at`: only snapshots taken on host H.
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Folder to restore into.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "in_place",
        conflicts_with = "in_place"
    )]
    pub target: Option<PathBuf>,
    /// Restore into the folder the snapshot was taken from.
    #[arg(long)]
    pub in_place: bool,
    /// Restore only this path of the snapshot and what lies below it (repeatable).
    #[arg(long = "path", value_name = "P")]
    pub paths: Vec<String>,
    /// Report what would be restored.
    #[arg(long)]
    pub dry_run: bool,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Decompress and re-hash every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read a share of the archives, e.g. `10%` or `10`.
    #[arg(long, value_name = "PCT")]
    pub read_data_subset: Option<String>,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only this cache type (repeatable); default: every type with validation enabled.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
}

/// `repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Only this cache type (repeatable); default: every type with validation enabled.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    /// Find the versions and report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Repair even when the invalid files look like a schema or version change (more than
    /// `repair.max_invalid_share` of a type invalid, or most failing the schema or
    /// cache_version). What is replaced is kept in a pre-repair snapshot either way.
    #[arg(long)]
    pub force: bool,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working folder (recreated).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `clear`.
#[derive(Debug, Args)]
pub struct ClearArgs {
    /// full, selective, ttl, size_based, smart_selective, archive_old or performance_aware
    /// (default: the config's `strategies.clearing.default`).
    #[arg(long, value_name = "S")]
    pub strategy: Option<String>,
    /// Only this cache type (repeatable).
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    /// Show the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Clear as if it were TIME (TTL ages are computed from it).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// performance_aware: use this 1-minute load average instead of /proc/loadavg.
    #[arg(long, value_name = "LOAD")]
    pub load_average: Option<f64>,
}

/// `undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The operation to undo (id or unique prefix; default: the last undoable operation of
    /// the config's root: a clear, repair, restore --in-place or undo --force).
    pub clear_id: Option<String>,
    /// Also overwrite or remove files changed since the operation (what they hold now goes
    /// into a pre-restore safety snapshot first, so this undo can be undone in turn).
    #[arg(long)]
    pub force: bool,
    /// List each file undo would overwrite, create or remove; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// List the operations of this root that can be undone.
    #[arg(long, conflicts_with_all = ["clear_id", "force", "dry_run"])]
    pub list: bool,
}

/// `warm`.
#[derive(Debug, Args)]
pub struct WarmArgs {
    /// The clear to warm from (default: the last one).
    #[arg(long = "from", value_name = "CLEAR_ID")]
    pub from: Option<String>,
    /// How many entries to restore.
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub top: usize,
}

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Also write the statistics in node_exporter's textfile format to FILE (atomically,
    /// mode 0644).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Compute ages and TTLs as if it were TIME.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Repository figures of the config's root only (its snapshots), not the whole repository.
    #[arg(long)]
    pub this_root: bool,
}

/// `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Judge ages as if it were TIME.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

/// `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the report to FILE as one self-contained HTML page (atomically, mode 0644).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Days the charts cover, back from now.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub days: u32,
    /// Report as if it were TIME.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

/// `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First (older) snapshot: full id, unique prefix, or `latest`. Default: the backup
    /// before the newest one (with the filters applied).
    pub a: Option<String>,
    /// Second (newer) snapshot: full id, unique prefix, or `latest` (the default).
    pub b: Option<String>,
    /// Filters for `latest` and the defaults.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only entries under this cache type's folder (repeatable; needs --config); `latest`
    /// means the newest complete backup holding it.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
}

/// `find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Path relative to the snapshot root, or an absolute path under it.
    pub path: PathBuf,
    /// Only these snapshots.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only versions under this cache type's folder, in snapshots holding it (repeatable;
    /// needs --config).
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
}

/// `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only the N most recent operations.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Only operations of this kind (`snapshot`, `prune`, ...).
    #[arg(long, value_name = "NAME")]
    pub operation: Option<String>,
    /// Only operations on the config's root (and repository-wide ones such as prune).
    #[arg(long)]
    pub this_root: bool,
}

/// `schedule`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("format").required(true).args(["crontab", "systemd"])))]
pub struct ScheduleArgs {
    /// Print a crontab line.
    #[arg(long)]
    pub crontab: bool,
    /// Print a systemd .service and .timer pair.
    #[arg(long)]
    pub systemd: bool,
    /// Minutes between runs (1 to 60); `run-due` decides what is due each time.
    #[arg(long, default_value_t = 15, value_name = "MINUTES",
          value_parser = clap::value_parser!(u32).range(1..=60))]
    pub every: u32,
    /// The cachevault binary the schedule runs (default: the one invoked, as invoked:
    /// found on PATH when called by its bare name).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// `run-due`.
#[derive(Debug, Args)]
pub struct RunDueArgs {
    /// Decide and run as if it were TIME.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Only report what is due.
    #[arg(long)]
    pub dry_run: bool,
    /// performance_aware clears: use this 1-minute load average instead of /proc/loadavg.
    #[arg(long, value_name = "LOAD")]
    pub load_average: Option<f64>,
}
