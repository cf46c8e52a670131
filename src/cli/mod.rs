//! Dispatch, rendering and exit codes of the `cachevault` binary. The only place that reads
//! the clock, the environment and the terminal.

mod args;
mod check;
mod clear;
mod copy;
mod demo;
mod diff;
mod docs;
mod dump;
mod find;
mod forget;
mod health;
mod history;
mod key;
mod mount;
mod progress;
mod recover;
mod repair;
mod report;
mod restore;
mod run_due;
mod schedule;
mod snapshot;
mod stats;
mod terminal;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};
use clap::Parser;

use cachevault::config::Config;
use cachevault::manifest::SnapshotKind;
use cachevault::select::{Selection, SnapshotFilter};
use cachevault::{Error, LockKind, Repository};

pub use args::{Cli, Command};

/// Exit codes; a contract with the agent's scripts (README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Completed, but some entries were skipped or need attention.
    pub const PARTIAL: u8 = 1;
    /// Failed: bad input, I/O error, nothing done.
    pub const FAILED: u8 = 2;
    /// Repository data is damaged (check, restore verification).
    pub const CORRUPT: u8 = 3;
    /// Another process holds the repository lock and waiting ran out.
    pub const LOCKED: u8 = 4;
    /// `clear --strategy performance_aware` deferred: the machine is busy; nothing changed.
    pub const DEFERRED: u8 = 5;
}

/// Global context every command gets.
pub struct Ctx {
    pub cli: Cli,
    pub config: Option<Config>,
    /// Where a config was looked for when none was named (commands that need one).
    pub looked: Vec<PathBuf>,
}

/// What a command produced: a JSON value for `--json`, human text otherwise, and the exit code.
pub struct Outcome {
    pub json: serde_json::Value,
    pub human: String,
    pub code: u8,
    /// The command wrote its own output (`dump`'s data): nothing more goes to stdout.
    pub raw: bool,
}

impl Outcome {
    pub fn new(json: serde_json::Value, human: String, code: u8) -> Outcome {
        Outcome {
            json,
            human,
            code,
            raw: false,
        }
    }

    /// The outcome of a command whose stdout is its data, already written.
    pub fn raw(code: u8) -> Outcome {
        Outcome {
            json: serde_json::Value::Null,
            human: String::new(),
            code,
            raw: true,
        }
    }
}

/// SIGINT and SIGTERM ask the running operation to stop at its next safe point (temp files
/// removed, lock and holder file released, the operation journaled as interrupted, exit code
/// 128 + the signal); a second one stops the process at once.
fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // In the handler itself, in order: a second signal exits at once, the first one
        // only records which signal asked (an atomic store, all a handler may do).
        let exit_code = 128 + sig;
        let _ = flag::register_conditional_shutdown(sig, exit_code, asked.clone());
        let _ = flag::register(sig, asked.clone());
        let _ = flag::register_usize(sig, cachevault::cancel::flag(), sig as usize);
    }
}

pub fn main() -> ExitCode {
    install_signal_handlers();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                // --help and --version: text, as asked for.
                return ExitCode::from(exit::OK);
            }
            // The parse failed, so `cli.json` is unknown: a caller that asked for JSON
            // anywhere on the command line gets its one document all the same.
            if std::env::args_os().skip(1).any(|a| a == "--json") {
                // The error without the usage lines and the hint to try --help that follow
                // it on stderr.
                let text = e.render().to_string();
                let message = text.split("\n\n").next().unwrap_or(&text);
                let message = message.trim().trim_start_matches("error: ");
                print_error_json(message, exit::FAILED, kind::USAGE);
            }
            return ExitCode::from(exit::FAILED);
        }
    };
    let json = cli.json;
    let quiet = cli.quiet;
    // stdout of `dump` is data: no document, not even an error's, may be mixed into it.
    let raw_stdout = matches!(cli.command, Command::Dump(_));
    terminal::init(json);
    let started = std::time::Instant::now();
    let start_time = now();
    let result = Ctx::new(cli).and_then(|ctx| {
        let result = run(&ctx);
        record_journal(&ctx, start_time, started.elapsed().as_secs_f64(), &result);
        result
    });
    match result {
        Ok(out) => {
            let text = if out.raw {
                String::new()
            } else if json {
                let mut s = serde_json::to_string_pretty(&out.json).expect("json value serialises");
                s.push('\n');
                s
            } else if quiet {
                String::new()
            } else {
                out.human
            };
            if let Err(e) = std::io::stdout().write_all(text.as_bytes()) {
                // A closed pipe (`| head`) is not a failure of the command.
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("cachevault: writing output: {e}");
                    return ExitCode::from(exit::FAILED);
                }
            }
            ExitCode::from(out.code)
        }
        Err(e) => {
            let code = code_for(&e);
            if code > 128 {
                eprintln!(
                    "cachevault: signal {}: stopped at a safe point (a second signal stops at once)",
                    code - 128
                );
            }
            eprintln!("cachevault: error: {e:#}");
            if json && !raw_stdout {
                let mut doc = error_doc(&format!("{e:#}"), code, kind_for(&e));
                if let Some(problems) = config_problems(&e) {
                    doc["problems"] = serde_json::json!(problems);
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&doc).expect("serialises")
                );
            }
            ExitCode::from(code)
        }
    }
}

/// The one `--json` document of a failure: `{"error", "exit_code", "kind"}`.
fn error_doc(message: &str, code: u8, kind: &str) -> serde_json::Value {
    serde_json::json!({"error": message, "exit_code": code, "kind": kind})
}

/// Prints [`error_doc`].
fn print_error_json(message: &str, code: u8, kind: &str) {
    println!(
        "{}",
        serde_json::to_string_pretty(&error_doc(message, code, kind)).expect("serialises")
    );
}

/// Every problem of a config that did not load, for the error document's `problems`.
fn config_problems(e: &anyhow::Error) -> Option<&[cachevault::config::ConfigProblem]> {
    // The config marker is transparent: the library error it holds is not in the chain.
    e.chain().find_map(|c| {
        let err = c
            .downcast_ref::<ConfigError>()
            .map(|c| &c.0)
            .or_else(|| c.downcast_ref::<Error>());
        match err {
            Some(Error::ConfigProblems { problems, .. }) => Some(problems.as_slice()),
            _ => None,
        }
    })
}

/// Records the operation in the repository's journal (operations that change or verify
/// the repository). A journal failure never changes the command's outcome.
fn record_journal(ctx: &Ctx, time: DateTime<FixedOffset>, seconds: f64, result: &Result<Outcome>) {
    let operation = match &ctx.cli.command {
        Command::Snapshot(a) if !a.dry_run => "snapshot",
        Command::Restore(a) if !a.dry_run => "restore",
        Command::Check(_) => "check",
        Command::Forget(a) if !a.dry_run => "forget",
        Command::Prune(a) if !a.dry_run => "prune",
        Command::RebuildIndex(a) if !a.dry_run => "rebuild-index",
        Command::RepairSnapshots(a) if !a.dry_run => "repair-snapshots",
        Command::Clear(a) if !a.dry_run => "clear",
        Command::Undo(_) => "undo",
        Command::Copy(a) if !a.dry_run => "copy",
        Command::Warm(_) => "warm",
        Command::RunDue(a) if !a.dry_run => "run-due",
        Command::Repair(a) if !a.dry_run => "repair",
        // Journaled (a full validation, not a type subset) so that health can report the
        // last result without re-reading every cache file.
        Command::Validate(a) if a.types.is_empty() => "validate",
        _ => return,
    };
    let Ok(repo) = ctx.open_repo() else { return };
    let (code, error, details) = match result {
        Ok(o) => (o.code, None, o.json.clone()),
        Err(e) => (code_for(e), Some(format!("{e:#}")), serde_json::Value::Null),
    };
    let bytes = details
        .get("bytes_added")
        .and_then(|v| v.as_i64())
        .or_else(|| {
            details
                .get("bytes_freed")
                .and_then(|v| v.as_i64())
                .map(|v| -v)
        })
        .or_else(|| {
            details
                .pointer("/prune/bytes_freed")
                .and_then(|v| v.as_i64())
                .map(|v| -v)
        })
        .unwrap_or(0);
    // The root acted on: the config's, or the snapshot's; none for repository-wide work.
    let root = match &ctx.cli.command {
        Command::Check(_)
        | Command::Prune(_)
        | Command::RebuildIndex(_)
        | Command::RepairSnapshots(_) => None,
        _ => ctx.config.as_ref().map(|c| c.root_text()).or_else(|| {
            ["root", "snapshot_root"]
                .iter()
                .find_map(|k| details.get(*k).and_then(|v| v.as_str()))
                .map(str::to_string)
        }),
    };
    // The time the command acted for, when `--now` said (simulated days, retention tests).
    let now_flag = match &ctx.cli.command {
        Command::RunDue(a) => a.now.as_deref(),
        Command::Clear(a) => a.now.as_deref(),
        Command::Forget(a) => a.now.as_deref(),
        _ => None,
    };
    let entry = cachevault::journal::JournalEntry {
        root,
        time,
        now: now_flag.and_then(|t| parse_time("--now", t).ok()),
        run_id: details
            .get("run_id")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        operation: operation.into(),
        seconds,
        result: result_name(code).into(),
        exit_code: code,
        bytes,
        error,
        details: summarize(&details),
    };
    if let Err(e) = cachevault::journal::record(&repo, &entry) {
        ctx.note(&format!("warning: could not write the journal: {e}"));
    }
}

/// The journal's `result` for an exit code.
pub fn result_name(code: u8) -> &'static str {
    match code {
        exit::OK => "ok",
        exit::PARTIAL => "partial",
        // Nothing changed, by design: the machine was busy.
        exit::DEFERRED => "deferred",
        // Stopped by a signal at a safe point.
        c if c > 128 => "interrupted",
        _ => "failed",
    }
}

/// Keeps the journal line short: scalar fields of the command's JSON only.
fn summarize(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                // Warnings (a clock gone back, say) belong in the record, lists or not.
                .filter(|(k, v)| (!v.is_array() && !v.is_object()) || *k == "warnings")
                .map(|(k, v)| match v {
                    serde_json::Value::Array(a) => (
                        k.clone(),
                        serde_json::Value::Array(a.iter().take(20).cloned().collect()),
                    ),
                    _ => (k.clone(), v.clone()),
                })
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

/// Marks an error that came after the command had already changed something: its exit code
/// is then 1 (3 for damage), never 2, which promises that nothing changed. The text says
/// exactly what changed.
#[derive(Debug)]
pub struct ChangedBefore(pub String);

impl std::fmt::Display for ChangedBefore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wraps `e` with what the command changed before it.
pub fn changed_before(e: anyhow::Error, what: String) -> anyhow::Error {
    e.context(ChangedBefore(what))
}

/// The `kind` of a `--json` error document: a stable word for the class of failure, chosen
/// by the error's type, never by its message (README, exit codes). A contract with the
/// agent's scripts, like the exit codes.
pub mod kind {
    /// Bad arguments or input the command cannot act on.
    pub const USAGE: &str = "usage";
    /// The config file cannot be read, parsed or checked.
    pub const CONFIG: &str = "config";
    /// Repository data is damaged.
    pub const CORRUPT: &str = "corrupt";
    /// Another process holds the repository lock.
    pub const LOCKED: &str = "locked";
    /// No space left on a device.
    pub const DISK_FULL: &str = "disk_full";
    /// Any other operating-system error.
    pub const IO: &str = "io";
    /// No snapshot matches, a prefix matches several, or a snapshot lacks the path asked for.
    pub const NOT_FOUND: &str = "not_found";
    /// A manifest path that would leave the restore target.
    pub const UNSAFE_PATH: &str = "unsafe_path";
    /// The folder is not a cachevault repository.
    pub const NO_REPOSITORY: &str = "no_repository";
    /// `init` on a folder that already holds something.
    pub const EXISTS: &str = "exists";
    /// A repository written by a newer cachevault.
    pub const UNSUPPORTED_FORMAT: &str = "unsupported_format";
    /// The command failed after it had changed something (exit code 1; the error says
    /// what changed).
    pub const PARTIAL: &str = "partial";
    /// A signal stopped the command at a safe point (exit code 130 or 143).
    pub const INTERRUPTED: &str = "interrupted";
    /// An encrypted repository's password is missing or opens no key (exit code 2).
    pub const PASSWORD: &str = "password";
}

/// Marks an error from loading or checking the config file, whatever lies beneath (a
/// missing file is an I/O error, a bad key `Invalid`), so that it reports kind `config`.
/// Transparent: the message is the underlying error's.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ConfigError(Error);

/// The kind of `e`: the config marker wins; then, as in [`code_for`], corruption or a lock
/// anywhere in the chain; then the first library error; then an operating-system error.
/// What is left are the CLI's own checks of its arguments.
fn kind_for(e: &anyhow::Error) -> &'static str {
    if e.chain().any(|c| c.is::<ConfigError>()) {
        return kind::CONFIG;
    }
    if e.chain().any(|c| {
        c.downcast_ref::<Error>()
            .and_then(Error::interrupted)
            .is_some()
    }) {
        return kind::INTERRUPTED;
    }
    let library: Vec<&Error> = e
        .chain()
        .filter_map(|c| c.downcast_ref::<Error>())
        .collect();
    if library.iter().any(|err| err.is_corruption()) {
        return kind::CORRUPT;
    }
    if e.downcast_ref::<ChangedBefore>().is_some()
        || library
            .iter()
            .any(|err| matches!(err, Error::AfterChanges { .. }))
    {
        return kind::PARTIAL;
    }
    if library.iter().any(|err| matches!(err, Error::Locked(_))) {
        return kind::LOCKED;
    }
    if let Some(err) = library.first() {
        return library_kind(err);
    }
    match e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        Some(io) if io.raw_os_error() == Some(libc::ENOSPC) => kind::DISK_FULL,
        Some(_) => kind::IO,
        None => kind::USAGE,
    }
}

fn library_kind(err: &Error) -> &'static str {
    if err.is_corruption() {
        return kind::CORRUPT;
    }
    if err.is_disk_full() {
        return kind::DISK_FULL;
    }
    match err {
        Error::Locked(_) => kind::LOCKED,
        Error::Io { .. } | Error::Storage { .. } => kind::IO,
        Error::SnapshotNotFound(_) | Error::AmbiguousSnapshot(_) | Error::PathNotFound { .. } => {
            kind::NOT_FOUND
        }
        Error::UnsafePath { .. } => kind::UNSAFE_PATH,
        Error::NotARepository(_) => kind::NO_REPOSITORY,
        Error::AlreadyExists(_) => kind::EXISTS,
        Error::UnsupportedFormat { .. } => kind::UNSUPPORTED_FORMAT,
        Error::Password(_) => kind::PASSWORD,
        // `Invalid`, and variants added later until they get a kind of their own.
        _ => kind::USAGE,
    }
}

fn code_for(e: &anyhow::Error) -> u8 {
    // Stopped by a signal: 130 for SIGINT, 143 for SIGTERM, as shells report it.
    for cause in e.chain() {
        if let Some(signal) = cause.downcast_ref::<Error>().and_then(Error::interrupted) {
            return (128 + signal).clamp(0, 255) as u8;
        }
    }
    let changed = e.downcast_ref::<ChangedBefore>().is_some()
        || e.chain()
            .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::AfterChanges { .. })));
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<Error>() {
            if err.is_corruption() {
                return exit::CORRUPT;
            }
            if matches!(err, Error::Locked(_)) && !changed {
                return exit::LOCKED;
            }
        }
    }
    if changed {
        exit::PARTIAL
    } else {
        exit::FAILED
    }
}

fn run(ctx: &Ctx) -> Result<Outcome> {
    match &ctx.cli.command {
        Command::Init(a) => key::init(ctx, a),
        Command::Snapshot(a) => snapshot::snapshot(ctx, a),
        Command::Snapshots(a) => snapshot::list(ctx, a),
        Command::Ls(a) => snapshot::ls(ctx, a),
        Command::Restore(a) => restore::restore(ctx, a),
        Command::Check(a) => check::check(ctx, a),
        Command::Forget(a) => forget::forget(ctx, a),
        Command::Prune(a) => forget::prune(ctx, a),
        Command::RebuildIndex(a) => recover::rebuild_index(ctx, a),
        Command::RepairSnapshots(a) => recover::repair_snapshots(ctx, a),
        Command::Clear(a) => clear::clear(ctx, a),
        Command::Undo(a) => clear::undo(ctx, a),
        Command::Warm(a) => clear::warm(ctx, a),
        Command::RunDue(a) => run_due::run_due(ctx, a),
        Command::Validate(a) => validate::validate(ctx, a),
        Command::Repair(a) => repair::repair(ctx, a),
        Command::Config { .. } => config_check(ctx),
        Command::Demo(a) => demo::demo(ctx, a),
        Command::Stats(a) => stats::stats(ctx, a),
        Command::Health(a) => health::health(ctx, a),
        Command::Report(a) => report::report(ctx, a),
        Command::Diff(a) => diff::diff(ctx, a),
        Command::Find(a) => find::find(ctx, a),
        Command::Dump(a) => dump::dump(ctx, a),
        Command::Mount(a) => mount::mount(ctx, a),
        Command::Completions(a) => docs::completions(a),
        Command::Man => docs::man(),
        Command::History(a) => history::history(ctx, a),
        Command::Schedule(a) => schedule::schedule(ctx, a),
        Command::Copy(a) => copy::copy(ctx, a),
        Command::Unlock(a) => copy::unlock(ctx, a),
        Command::Key { action } => key::key(ctx, action),
    }
}

/// Whether the command cannot work without a config: only these look for one beyond
/// `--config` and `CACHEVAULT_CONFIG` ([`discover_config`]); the others take one when given.
fn needs_config(command: &Command) -> bool {
    matches!(
        command,
        Command::RunDue(_)
            | Command::Validate(_)
            | Command::Repair(_)
            | Command::Config { .. }
            | Command::Schedule(_)
            | Command::Clear(_)
            | Command::Undo(_)
            | Command::Warm(_)
    )
}

/// Where a command that needs a config looks when neither `--config` nor `CACHEVAULT_CONFIG`
/// names one, in order: `./cachevault.json`, then `$XDG_CONFIG_HOME/cachevault/cachevault.json`
/// (`~/.config/cachevault/cachevault.json` when `XDG_CONFIG_HOME` is unset or relative).
fn config_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join("cachevault.json"));
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    if let Some(dir) = xdg {
        out.push(dir.join("cachevault").join("cachevault.json"));
    }
    out
}

/// The first candidate that exists, and every place looked at.
fn discover_config() -> (Option<PathBuf>, Vec<PathBuf>) {
    let candidates = config_candidates();
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    (found, candidates)
}

/// Loads the config named by `--config`/`CACHEVAULT_CONFIG`; a file that is not there is a
/// config error that says where it was looked for.
fn load_named_config(p: &std::path::Path) -> Result<Config> {
    if !p.exists() {
        let abs = std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf());
        return Err(ConfigError(Error::Invalid(format!(
            "config file {} not found (named by --config or CACHEVAULT_CONFIG; looked at {})",
            p.display(),
            abs.display()
        )))
        .into());
    }
    Ok(Config::load(p).map_err(ConfigError)?)
}

impl Ctx {
    fn new(cli: Cli) -> Result<Ctx> {
        use cachevault::crypto::{set_password_source, PasswordSource, Role};
        if let Some(f) = &cli.password_file {
            set_password_source(Role::Main, PasswordSource::File(f.clone()));
        }
        if let Some(c) = &cli.password_command {
            set_password_source(Role::Main, PasswordSource::Command(c.clone()));
        }
        if let Command::Copy(a) = &cli.command {
            if let Some(f) = &a.from_password_file {
                set_password_source(Role::From, PasswordSource::File(f.clone()));
            }
            if let Some(c) = &a.from_password_command {
                set_password_source(Role::From, PasswordSource::Command(c.clone()));
            }
        }
        let mut looked = Vec::new();
        let config = match &cli.config {
            Some(p) => Some(load_named_config(p)?),
            None if needs_config(&cli.command) => {
                let (found, candidates) = discover_config();
                looked = candidates;
                match found {
                    Some(p) => Some(Config::load(&p).map_err(ConfigError)?),
                    None => None,
                }
            }
            None => None,
        };
        Ok(Ctx {
            cli,
            config,
            looked,
        })
    }

    /// The config of a command that cannot work without one; without one, a config error
    /// (kind `config`) saying why it is needed and every place it was looked for.
    pub fn need_config(&self, command: &str, why: &str) -> Result<&Config> {
        if let Some(c) = &self.config {
            return Ok(c);
        }
        let places: Vec<String> = self
            .looked
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Err(ConfigError(Error::Invalid(format!(
            "{command} needs --config FILE (or CACHEVAULT_CONFIG): {why}; no config given, and none found at {}",
            if places.is_empty() {
                "any default place".to_string()
            } else {
                places.join(", ")
            }
        )))
        .into())
    }

    /// The repository path: `--repo`, `CACHEVAULT_REPO`, or the config's.
    pub fn repo_path(&self) -> Result<PathBuf> {
        if let Some(r) = &self.cli.repo {
            return Ok(r.clone());
        }
        if let Some(c) = &self.config {
            return Ok(c.repository.clone());
        }
        Err(anyhow!(
            "no repository given: pass --repo DIR, set CACHEVAULT_REPO, or pass --config FILE"
        ))
    }

    /// The repository location in words: a folder, or a URL kept exactly as given.
    pub fn repo_location(&self) -> Result<String> {
        Ok(self.repo_path()?.to_string_lossy().into_owned())
    }

    pub fn open_repo(&self) -> Result<Repository> {
        let p = self.repo_location()?;
        Repository::open_at(&p).with_context(|| format!("opening repository {p}"))
    }

    pub fn lock(
        &self,
        repo: &Repository,
        kind: LockKind,
        command: &str,
    ) -> Result<Box<dyn cachevault::backend::LockGuard>> {
        let quiet = self.cli.quiet;
        let mut tell = |msg: &str| {
            if !quiet {
                eprintln!("cachevault: {msg}");
            }
        };
        Ok(repo.lock(
            kind,
            command,
            Duration::from_secs(self.cli.lock_wait),
            &mut tell,
        )?)
    }

    /// Progress bars on stderr only when it is a terminal and output is for people.
    pub fn progress(&self) -> progress::Bars {
        progress::Bars::new(!self.cli.quiet && !self.cli.json && std::io::stderr().is_terminal())
    }

    /// The snapshot filter of a command's flags. With a config, `scoped` limits it to the
    /// config's root: `latest`, `--at`, forget and undo never reach another root's snapshots.
    pub fn filter(&self, f: &args::FilterArgs, scoped: bool) -> Result<SnapshotFilter> {
        self.filter_of(&f.tags, &f.kinds, &f.paths, &f.hosts, scoped)
    }

    /// `--type` values: each type's name, folder relative to the root, and absolute folder
    /// (as snapshots record their paths). Needs the config; an unknown type is an error
    /// naming it.
    pub fn types_of(
        &self,
        types: &[String],
        command: &str,
    ) -> Result<Vec<(String, cachevault::RelPath, String)>> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = self.config.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "{command} --type needs --config FILE (or CACHEVAULT_CONFIG): the cache types and their folders come from it"
            )
        })?;
        let root = cfg.root_text();
        Ok(cfg
            .types_named(types)?
            .into_iter()
            .map(|(n, rel)| {
                let abs = format!("{}/{}", root.trim_end_matches('/'), rel.display());
                (n, rel, abs)
            })
            .collect())
    }

    /// [`Ctx::filter`] narrowed by `--type`: snapshots must hold each type's folder. Returns
    /// the folders (relative to the root) too, for [`keep_under`].
    pub fn filter_typed(
        &self,
        f: &args::FilterArgs,
        types: &[String],
        command: &str,
    ) -> Result<(SnapshotFilter, Vec<cachevault::RelPath>)> {
        let mut filter = self.filter(f, true)?;
        let named = self.types_of(types, command)?;
        filter.holds = named.iter().map(|(_, _, abs)| abs.clone()).collect();
        Ok((filter, named.into_iter().map(|(_, rel, _)| rel).collect()))
    }

    /// [`Ctx::filter`] from its parts (restore spells `--path` differently).
    pub fn filter_of(
        &self,
        tags: &[String],
        kinds: &[String],
        paths: &[PathBuf],
        hosts: &[String],
        scoped: bool,
    ) -> Result<SnapshotFilter> {
        let kinds = kinds
            .iter()
            .flat_map(|k| k.split(','))
            .map(|k| {
                k.trim()
                    .parse::<SnapshotKind>()
                    .with_context(|| format!("--kind {k:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let cwd = std::env::current_dir().context("reading the current folder")?;
        let paths = paths
            .iter()
            .map(|p| {
                let abs = cwd.join(p);
                abs.canonicalize()
                    .unwrap_or(abs)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        Ok(SnapshotFilter {
            root: self
                .config
                .as_ref()
                .filter(|_| scoped)
                .map(|c| c.root_text()),
            paths,
            kinds,
            tags: SnapshotFilter::parse_tags(tags),
            hosts: hosts.to_vec(),
            holds: Vec::new(),
        })
    }

    /// Prints the warnings of a snapshot choice (snapshots dated in the future passed over).
    pub fn note_selection(&self, s: &Selection) {
        for w in &s.warnings {
            self.note(&format!("warning: {w}"));
        }
    }

    pub fn note(&self, msg: &str) {
        if !self.cli.quiet {
            eprintln!("cachevault: {msg}");
        }
    }
}

fn config_check(ctx: &Ctx) -> Result<Outcome> {
    let cfg = ctx.need_config("config check", "it is the file to check")?;
    let types: serde_json::Map<String, serde_json::Value> = cfg
        .raw
        .cache
        .cache_types
        .iter()
        .map(|(name, t)| {
            let mut v = serde_json::to_value(t).expect("type serialises");
            v["folder"] = serde_json::json!(cfg.type_dir(t));
            if let Some(s) = &t.schema {
                v["schema"] = serde_json::json!(cfg.schema_path(s));
            }
            (name.clone(), v)
        })
        .collect();
    let mut raw = serde_json::to_value(&cfg.raw)?;
    raw["cache"]["cache_types"] = serde_json::Value::Object(types);
    let doc = serde_json::json!({
        "file": cfg.file,
        "root": cfg.root,
        "repository": cfg.repository,
        "quarantine": cfg.quarantine,
        "report_html": cfg.report_html,
        "config": raw,
    });
    let human = format!(
        "config {} is valid\n{}\n",
        cfg.file.display(),
        serde_json::to_string_pretty(&doc)?
    );
    Ok(Outcome::new(doc, human, exit::OK))
}

/// Parses the time given to `flag`: RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` / `YYYY-MM-DD` in
/// local time. Errors name the flag and the value.
pub fn parse_time(flag: &str, s: &str) -> Result<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        })
        .map_err(|_| {
            anyhow!("{flag} {s:?}: invalid time; expected RFC 3339 (2026-11-20T14:00:00+01:00) or \"YYYY-MM-DD HH:MM:SS\" in local time")
        })?;
    let local = Local
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| {
            anyhow!("{flag} {s:?}: this time does not exist in the local time zone (a daylight-saving gap)")
        })?;
    Ok(local.fixed_offset())
}

pub fn now() -> DateTime<FixedOffset> {
    Local::now().fixed_offset()
}

pub fn hostname() -> String {
    cachevault::fsutil::hostname()
}

/// Human byte counts.
pub fn bytes(n: u64) -> String {
    cachevault::units::human_bytes(n)
}

/// Renders rows as an aligned text table. On a terminal it fits the width (the terminal's or
/// `COLUMNS`): the widest columns give way first, long cells elided in the middle; piped,
/// written to a file or with `--json`, nothing is cut.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_fitting(header, rows, terminal::get().width)
}

/// [`table`] for a given width (`None`: no limit).
pub fn table_fitting(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| terminal::visible_len(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(terminal::visible_len(c));
        }
    }
    if let Some(total) = width {
        // Narrow columns (levels, counts, times) stay whole down to 8 characters.
        widths = terminal::fit(&widths, total, 8);
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let c = terminal::elide(c, widths[i]);
            s.push_str(&c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i].saturating_sub(terminal::visible_len(&c))));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// Keeps only the entries under one of `folders` (all of them when there are none).
pub fn keep_under(entries: &mut Vec<cachevault::Entry>, folders: &[cachevault::RelPath]) {
    if !folders.is_empty() {
        entries.retain(|e| folders.iter().any(|f| e.path.starts_with(f)));
    }
}
