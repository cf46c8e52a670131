//! Command-line types (clap derive only; no logic).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Heading of the options every command takes, shown apart from the command's own.
const GLOBAL: &str = "Global options";

/// Backup and archival engine for application cache directories.
#[derive(Debug, Parser)]
#[command(
    name = "cachevault",
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  cachevault --config cachevault.json init\n  cachevault --config cachevault.json snapshot\n  cachevault --config cachevault.json snapshots\n  cachevault --config cachevault.json schedule --crontab\n\nEach command's --help has examples of its own; `cachevault man` prints the manual page."
)]
pub struct Cli {
    /// Repository folder.
    #[arg(long, global = true, env = "CACHEVAULT_REPO", value_name = "DIR", help_heading = GLOBAL)]
    pub repo: Option<PathBuf>,
    /// Config file (cache root, repository, cache types, policies).
    #[arg(long, global = true, env = "CACHEVAULT_CONFIG", value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Print exactly one JSON document on stdout.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Print less.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Print more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Seconds to wait for a repository lock held by another process.
    #[arg(
        long,
        global = true,
        default_value_t = 60,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        help_heading = GLOBAL
    )]
    pub lock_wait: u64,
    /// Read an encrypted repository's password from the first line of FILE (or set
    /// CACHEVAULT_PASSWORD_FILE; CACHEVAULT_PASSWORD gives it directly).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run CMD (with sh -c) and take the first line it prints as the password (or set
    /// CACHEVAULT_PASSWORD_COMMAND).
    #[arg(
        long,
        global = true,
        value_name = "CMD",
        conflicts_with = "password_file"
    )]
    pub password_command: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new, empty repository.
    #[command(
        after_help = "Examples:\n  cachevault --repo /srv/cachevault init\n  cachevault --config cachevault.json init\n  CACHEVAULT_PASSWORD_FILE=~/.cv-pw cachevault --repo s3:https://s3.example.com/fba/agent init --encrypt"
    )]
    Init(InitArgs),
    /// Snapshot PATH (or the config's backup-enabled cache types) into the repository.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json snapshot\n  cachevault --config cachevault.json snapshot --type linking_map --tag before-import\n  cachevault --repo /srv/cachevault snapshot /srv/OUTPUTS --dry-run"
    )]
    Snapshot(SnapshotArgs),
    /// List snapshots (filters: --tag, --kind, --path, --host).
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json snapshots\n  cachevault --config cachevault.json snapshots --kind pre-clear --json"
    )]
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot, or those at or below PATH.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json ls latest\n  cachevault --config cachevault.json ls latest 'FBA_ANALYSIS/Linking map'\n  cachevault --config cachevault.json ls --type amazon_cache 3f2a91c0"
    )]
    Ls(LsArgs),
    /// Write one file of a snapshot to stdout (its bytes), or a folder as a tar stream,
    /// verified while read. stdout is the data: --json is ignored.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json dump latest 'FBA_ANALYSIS/Linking map/linking_map.json' > linking_map.json\n  cachevault --config cachevault.json dump latest FBA_ANALYSIS/amazon_cache | tar -tv\n  cachevault --config cachevault.json dump --type linking_map latest | tar -x -C /tmp/map"
    )]
    Dump(DumpArgs),
    /// Mount the repository read-only (FUSE): snapshots/, by-kind/ and latest; files are read
    /// from the repository and verified. Runs in the foreground until unmounted or Ctrl-C.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json mount /mnt/cachevault\n  cachevault --repo /srv/cachevault mount /mnt/cachevault --kind pre-clear\n  fusermount -u /mnt/cachevault"
    )]
    Mount(MountArgs),
    /// Restore a snapshot (whole or some paths), verified byte for byte.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json restore latest --target /tmp/restored\n  cachevault --config cachevault.json restore --at \"2026-11-20 14:00\" --in-place --dry-run\n  cachevault --config cachevault.json restore --type linking_map --in-place"
    )]
    Restore(RestoreArgs),
    /// Verify the repository's structure and, optionally, its data.
    #[command(
        after_help = "Examples:\n  cachevault --repo /srv/cachevault check\n  cachevault --repo /srv/cachevault check --read-data-subset 10%"
    )]
    Check(CheckArgs),
    /// Remove snapshots by a keep policy (restic's forget semantics).
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json forget --dry-run\n  cachevault --repo /srv/cachevault forget --keep-daily 7 --keep-weekly 4 --prune\n  cachevault --repo /srv/cachevault forget 3f2a91c0"
    )]
    Forget(Box<ForgetArgs>),
    /// Remove data no snapshot references; repack mostly-unused archives.
    #[command(
        after_help = "Examples:\n  cachevault --repo /srv/cachevault prune --dry-run\n  cachevault --repo /srv/cachevault prune --max-unused 5%"
    )]
    Prune(PruneArgs),
    /// Rewrite missing, damaged or disagreeing indexes from the archives themselves;
    /// salvage the readable blobs of damaged archives.
    #[command(
        after_help = "Examples:\n  cachevault --repo /srv/cachevault rebuild-index --dry-run\n  cachevault --repo /srv/cachevault rebuild-index --read-data"
    )]
    RebuildIndex(RebuildIndexArgs),
    /// Rewrite snapshots that reference missing data without the lost files (tagged
    /// `repaired`), listing what was lost.
    #[command(
        after_help = "Examples:\n  cachevault --repo /srv/cachevault repair-snapshots --dry-run\n  cachevault --repo /srv/cachevault repair-snapshots --forget"
    )]
    RepairSnapshots(RepairSnapshotsArgs),
    /// Clear caches by strategy, after a verified pre-clear snapshot.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json clear --dry-run\n  cachevault --config cachevault.json clear --strategy ttl --type amazon_cache --json"
    )]
    Clear(ClearArgs),
    /// Put back what a clear removed or rewrote (default: the last clear).
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json undo --list\n  cachevault --config cachevault.json undo --dry-run\n  cachevault --config cachevault.json undo"
    )]
    Undo(UndoArgs),
    /// After a clear, restore the most recently used entries (or the config's priority list).
    #[command(after_help = "Examples:\n  cachevault --config cachevault.json warm --top 50")]
    Warm(WarmArgs),
    /// Run every scheduled job of the config that is due (backup, clearing, validation,
    /// optimization), each at most once per period.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json run-due --dry-run\n  cachevault --config /etc/cachevault.json --quiet run-due"
    )]
    RunDue(RunDueArgs),
    /// Check every cache file: UTF-8, non-empty, parses, its type's schema and cache_version.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json validate\n  cachevault --config cachevault.json validate --type amazon_cache --json"
    )]
    Validate(ValidateArgs),
    /// Replace invalid cache files by their newest valid snapshot version; quarantine the rest.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json repair --dry-run\n  cachevault --config cachevault.json repair --type supplier_cache"
    )]
    Repair(RepairArgs),
    /// Inspect the config file.
    #[command(after_help = "Examples:\n  cachevault --config cachevault.json config check")]
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Snapshot the shipped fixtures with the default config, verify, restore and compare.
    #[command(
        after_help = "Examples:\n  cachevault demo\n  cachevault demo --dir /tmp/cachevault-demo"
    )]
    Demo(DemoArgs),
    /// Files, bytes, ages, TTL and limits per cache type; repository size, ratios, growth.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json stats\n  cachevault --config cachevault.json stats --prometheus /var/lib/node_exporter/cachevault.prom"
    )]
    Stats(StatsArgs),
    /// Exit 0 when healthy, 1 on a warning, 2 when critical, with the reasons.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json health\n  cachevault --config cachevault.json health --json"
    )]
    Health(HealthArgs),
    /// One self-contained HTML page (or JSON): health, cache size over time, snapshots and
    /// retention, repository growth, the last scheduled runs.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json report\n  cachevault --config cachevault.json report --html /var/www/cachevault.html --days 14"
    )]
    Report(ReportArgs),
    /// What changed between two snapshots.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json diff\n  cachevault --config cachevault.json diff 3f2a91c0 latest --type amazon_cache"
    )]
    Diff(DiffArgs),
    /// Every version of a file across snapshots, newest first: by path, bare name or glob.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json find amazon_B0ZKC80M8P.json\n  cachevault --config cachevault.json find '**/linking_map.json'\n  cachevault --config cachevault.json find 'cached_products/*/*_page_1.json' --kind backup"
    )]
    Find(FindArgs),
    /// The journal of operations: what, when, how long, result, bytes.
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json history --last 20\n  cachevault --config cachevault.json history --operation clear --this-root"
    )]
    History(HistoryArgs),
    /// Print a crontab line or systemd units that call `run-due`.
    #[command(
        after_help = "Examples:\n  cachevault --config /etc/cachevault.json schedule --crontab\n  cachevault --config /etc/cachevault.json schedule --systemd --every 30"
    )]
    Schedule(ScheduleArgs),
    /// Copy snapshots from another repository (--from-repo) into this one, sending only the
    /// blobs it lacks (default: every complete backup it lacks).
    #[command(
        after_help = "Examples:\n  cachevault --repo s3:https://s3.eu-west-2.amazonaws.com/fba-backups/agent-1 copy --from-repo /srv/cachevault\n  cachevault --repo /mnt/usb/cachevault copy --from-repo /srv/cachevault --dry-run"
    )]
    Copy(CopyArgs),
    /// Remove locks nobody holds any more (lock objects past their expiry; holder files of
    /// dead processes).
    #[command(after_help = "Examples:\n  cachevault --repo /srv/cachevault unlock")]
    Unlock(UnlockArgs),
    /// Keys of an encrypted repository: list, add, remove, change a password.
    #[command(
        after_help = "Examples:\n  cachevault --repo s3:https://s3.example.com/fba/agent key list\n  cachevault --repo /srv/cachevault key add --new-password-file ~/.cv-pw2\n  cachevault --repo /srv/cachevault key passwd --new-password-file ~/.cv-new"
    )]
    Key {
        /// What to do.
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(
        after_help = "Examples:\n  cachevault completions bash > /etc/bash_completion.d/cachevault\n  cachevault completions zsh > \"${fpath[1]}/_cachevault\"\n  cachevault completions fish > ~/.config/fish/completions/cachevault.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout.
    #[command(
        after_help = "Examples:\n  cachevault man > /usr/local/share/man/man1/cachevault.1\n  cachevault man | man -l -"
    )]
    Man,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Encrypt everything the repository holds; the password comes from CACHEVAULT_PASSWORD,
    /// --password-file or --password-command.
    #[arg(long, conflicts_with = "no_encrypt")]
    pub encrypt: bool,
    /// Store the repository unencrypted (the default for a folder; must be said for s3:).
    #[arg(long)]
    pub no_encrypt: bool,
    /// The AEAD of an encrypted repository: aes-256-gcm (the default; fastest with AES
    /// instructions) or xchacha20-poly1305 (fastest without them).
    #[arg(long, value_name = "CIPHER", requires = "encrypt", value_parser = parse_cipher)]
    pub cipher: Option<cachevault::crypto::Cipher>,
}

fn parse_cipher(s: &str) -> Result<cachevault::crypto::Cipher, String> {
    cachevault::crypto::Cipher::from_name(s).ok_or_else(|| {
        let names: Vec<_> = cachevault::crypto::Cipher::ALL
            .iter()
            .map(|c| c.name())
            .collect();
        format!("unknown cipher {s:?}: choose one of {}", names.join(", "))
    })
}

/// `key` actions.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List the keys (id, created, host, user; the one in use marked).
    List,
    /// Add a key opening the repository with another password.
    Add {
        /// The new password: the first line of FILE.
        #[arg(long, value_name = "FILE")]
        new_password_file: PathBuf,
    },
    /// Remove a key (never the one in use, never the last).
    Remove {
        /// The key's id or a unique prefix of it.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Change the password: add a key for the new one, then remove the key in use.
    Passwd {
        /// The new password: the first line of FILE.
        #[arg(long, value_name = "FILE")]
        new_password_file: PathBuf,
    },
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
    /// The source repository's password: the first line of FILE (or set
    /// CACHEVAULT_FROM_PASSWORD_FILE; CACHEVAULT_FROM_PASSWORD gives it directly).
    #[arg(long, value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// The source repository's password: the first line CMD prints (or set
    /// CACHEVAULT_FROM_PASSWORD_COMMAND).
    #[arg(long, value_name = "CMD", conflicts_with = "from_password_file")]
    pub from_password_command: Option<String>,
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
    #[command(
        after_help = "Examples:\n  cachevault --config cachevault.json config check\n  cachevault --config cachevault.json --json config check"
    )]
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
    /// Only this path and what lies below it (relative to the snapshot root, or absolute
    /// under it).
    pub path: Option<PathBuf>,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only entries under this cache type's folder (repeatable; needs --config); `latest`
    /// means the newest complete backup holding it.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
}

/// `mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// An existing folder to mount on.
    pub mountpoint: PathBuf,
    /// Only these snapshots (and `latest` among them).
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot: full id, unique prefix, or `latest` (the newest complete backup of the
    /// config's root, or of the root the filters name).
    pub snapshot: String,
    /// A file (its bytes) or a folder (a tar stream of it and what lies below, paths relative
    /// to the snapshot root; `.` for everything), relative to the snapshot root or absolute
    /// under it. Default with --type: the type's folder.
    #[arg(required_unless_present = "types")]
    pub path: Option<PathBuf>,
    /// Filters for `latest`.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// A cache type (needs --config): `latest` means the newest complete backup holding its
    /// folder (a full or a type backup), and PATH must lie in that folder.
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
    /// A path relative to the snapshot root (or absolute under it); a bare file name, which
    /// matches in any folder; or a glob (`*` within one folder, `**` across folders; without
    /// a `/` it matches file names in any folder).
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
