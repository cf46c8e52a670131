//! The library's one public error type; every I/O error carries the path it happened on.

use std::path::{Path, PathBuf};

use crate::id::BlobId;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can fail with.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on one path.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The path the operation was working on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A storage service refused or failed a request on one object (after its retries).
    #[error("storage error on {object}: {message}")]
    Storage {
        /// The object, where it is (`s3:https://host/bucket/prefix/archives/<id>.tar.zst`).
        object: String,
        /// What the service answered.
        message: String,
        /// Whether the answer was "no such object".
        not_found: bool,
    },
    /// A blob whose content does not hash to its name.
    #[error("blob {expected} is corrupt (content hashes to {actual})")]
    CorruptBlob {
        /// The id the blob was stored under.
        expected: BlobId,
        /// What the bytes read actually hash to.
        actual: BlobId,
    },
    /// Repository data that cannot be what the format says it is.
    #[error("repository data is corrupt: {what}")]
    Corrupt {
        /// What was found, naming the file.
        what: String,
    },
    /// A repository written by a newer cachevault.
    #[error(
        "repository format v{found} is newer than the supported v{supported}; upgrade cachevault"
    )]
    UnsupportedFormat {
        /// Version found in the repository's config.json.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The path is not a cachevault repository.
    #[error("{} is not a cachevault repository (no config.json); run `cachevault init` first", .0.display())]
    NotARepository(PathBuf),
    /// `init` on a folder that already holds something.
    #[error("{} already exists and is not empty; refusing to initialise a repository there", .0.display())]
    AlreadyExists(PathBuf),
    /// No snapshot matches what the user asked for.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// A prefix that matches several snapshots.
    #[error("snapshot prefix {0:?} is ambiguous; give more characters")]
    AmbiguousSnapshot(String),
    /// An encrypted repository's password is missing, unreadable or wrong.
    #[error("{0}")]
    Password(String),
    /// A path the snapshot does not hold (`dump`, `ls PATH`).
    #[error("snapshot {snapshot} has nothing at {path:?} (paths are relative to its root {root})")]
    PathNotFound {
        /// The path asked for, relative to the snapshot root.
        path: String,
        /// The snapshot's short id.
        snapshot: String,
        /// The snapshot's root.
        root: String,
    },
    /// A lock held by another process when waiting is not allowed or timed out.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// A manifest path that would leave the restore target.
    #[error("refusing unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path, lossily decoded.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Invalid input from the caller (config, arguments).
    #[error("{0}")]
    Invalid(String),
    /// A config file with problems, every one of them named by its key (see
    /// [`crate::config::ConfigProblem`]).
    #[error("{}", config_problems_text(.file, .problems))]
    ConfigProblems {
        /// The config file.
        file: PathBuf,
        /// What is wrong, each under its key path.
        problems: Vec<crate::config::ConfigProblem>,
    },
    /// A signal asked the operation to stop; it stopped at a safe point.
    #[error("interrupted by signal {signal}; stopped at a safe point")]
    Interrupted {
        /// The signal number (2 SIGINT, 15 SIGTERM).
        signal: i32,
    },
    /// An operation failed after it had already changed something; `changed` says exactly
    /// what (the exit code is then never the one that promises "nothing changed").
    // The failure is part of the message, not a `source`: printed once, not twice.
    #[error("{changed}; then: {cause}")]
    AfterChanges {
        /// What had been changed before the failure.
        changed: String,
        /// The failure.
        cause: Box<Error>,
    },
}

impl Error {
    /// Returns a closure that wraps an `io::Error` with `path`, for `map_err`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this error means stored data is damaged (as opposed to I/O or usage).
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::AfterChanges { cause, .. } => cause.is_corruption(),
            e => matches!(e, Error::CorruptBlob { .. } | Error::Corrupt { .. }),
        }
    }

    /// The signal that stopped the operation, if this error is (or wraps) an interruption.
    pub fn interrupted(&self) -> Option<i32> {
        match self {
            Error::Interrupted { signal } => Some(*signal),
            Error::AfterChanges { cause, .. } => cause.interrupted(),
            _ => None,
        }
    }

    /// Wraps this error with what the operation had changed before it.
    pub fn after(self, changed: impl Into<String>) -> Error {
        Error::AfterChanges {
            changed: changed.into(),
            cause: Box::new(self),
        }
    }

    /// Whether this error says an object or file is not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Storage { not_found, .. } => *not_found,
            _ => false,
        }
    }

    /// Whether this error is "no space left on device".
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }

    /// Shorthand for a [`Error::Corrupt`].
    pub fn corrupt(what: impl Into<String>) -> Error {
        Error::Corrupt { what: what.into() }
    }
}

/// One problem on one line, as before; several as a list under the file's name.
fn config_problems_text(file: &Path, problems: &[crate::config::ConfigProblem]) -> String {
    match problems {
        [one] => format!("config {}: {one}", file.display()),
        many => {
            let mut s = format!("config {}: {} problems:", file.display(), many.len());
            for p in many {
                s.push_str(&format!("\n  - {p}"));
            }
            s
        }
    }
}
