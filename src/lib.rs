//! cachevault: a backup and archival engine for application cache directories.
//!
//! Snapshots go into a content-addressed repository (blake3 ids, FastCDC for large files,
//! tar+zstd pack archives with a seek table, JSON manifests); restores are verified byte for
//! byte; `check` proves the repository whole. The library never prints, reads the clock or
//! the terminal: the `cachevault` binary does that.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod archive;
pub mod backend;
pub mod browse;
pub mod cache;
pub mod cancel;
pub mod check;
pub(crate) mod chunk;
pub mod clear;
pub mod compare;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod diff;
mod error;
pub mod fault;
pub mod find;
pub mod forget;
pub mod fsutil;
pub mod health;
pub mod id;
pub mod inplace;
pub mod journal;
pub mod manifest;
pub mod metrics;
pub(crate) mod net;
pub mod operation;
mod progress;
pub mod prune;
pub mod recover;
pub mod repo;
pub mod report;
pub mod restore;
pub mod retention;
pub(crate) mod scan;
pub mod schedule;
pub mod select;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod units;
pub mod vfs;
pub(crate) mod walk;

pub use error::{Error, Result};
pub use id::BlobId;
pub use manifest::{Entry, EntryKind, Manifest, RelPath};
pub use progress::{NoProgress, Progress};
pub use repo::{LockKind, Repository};
