//! Repository locks: one `flock` on `locks/lock`, shared or exclusive, released by the kernel
//! when the process dies (no stale locks). Per-holder info files (`<pid>-<n>.holder`, sealed
//! in an encrypted repository) only feed the message a waiting user sees; they are never
//! trusted for exclusion.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::LockSeal;
use crate::error::{Error, Result};
use crate::fsutil;

type Seal<'a> = Option<&'a std::sync::Arc<dyn LockSeal>>;

/// Shared (snapshot, restore, check) or exclusive (prune, clear, undo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once.
    Shared,
    /// One holder, no shared holders.
    Exclusive,
}

/// Who holds a lock, written for the benefit of waiting users.
#[derive(Debug, Serialize, Deserialize)]
struct HolderInfo {
    pid: u32,
    command: String,
    exclusive: bool,
    since: String,
}

/// A held lock; dropping it releases the lock and removes the info file.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
    info: PathBuf,
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.info);
    }
}

impl RepoLock {
    pub(crate) fn acquire(
        dir: &Path,
        kind: LockKind,
        command: &str,
        wait: Duration,
        on_wait: &mut dyn FnMut(&str),
        seal: Seal<'_>,
    ) -> Result<RepoLock> {
        fsutil::create_private_dir(dir)?;
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(Error::io(&path))?;
        let mut waiting = Waiting::new(wait);
        loop {
            let attempt = match kind {
                LockKind::Shared => file.try_lock_shared(),
                LockKind::Exclusive => file.try_lock(),
            };
            match attempt {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    waiting.held_by(&describe_holders(dir, seal), on_wait)?;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
            }
        }
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let info = dir.join(format!("{}-{n}.holder", std::process::id()));
        let holder = HolderInfo {
            pid: std::process::id(),
            command: command.to_string(),
            exclusive: kind == LockKind::Exclusive,
            since: chrono::Utc::now().to_rfc3339(),
        };
        // Best effort: the info file only improves messages.
        let body = super::seal_lock(seal, serde_json::to_vec(&holder).unwrap_or_default());
        let _ = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(fsutil::FILE_MODE)
            .open(&info)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &body));
        Ok(RepoLock { _file: file, info })
    }
}

/// A taker waiting for a lock: says once who holds it, gives up when the wait runs out.
pub(crate) struct Waiting {
    start: Instant,
    wait: Duration,
    told: bool,
}

impl Waiting {
    pub(crate) fn new(wait: Duration) -> Waiting {
        Waiting {
            start: Instant::now(),
            wait,
            told: false,
        }
    }

    /// The lock is held by `holders` (in words): [`Error::Locked`] once the wait has run
    /// out, else `on_wait` is told (the first time) and the caller tries again.
    pub(crate) fn held_by(&mut self, holders: &str, on_wait: &mut dyn FnMut(&str)) -> Result<()> {
        if self.start.elapsed() >= self.wait {
            return Err(Error::Locked(format!(
                "{holders}; gave up after waiting {}s (use --lock-wait SECONDS to wait longer)",
                self.wait.as_secs()
            )));
        }
        if !self.told {
            on_wait(&format!(
                "repository is locked: {holders}; waiting up to {}s",
                self.wait.as_secs()
            ));
            self.told = true;
        }
        Ok(())
    }
}

/// The process a holder file `<pid>-<n>.holder` names.
fn holder_pid(p: &Path) -> Option<u32> {
    p.file_stem()?.to_str()?.split('-').next()?.parse().ok()
}

/// Holder files of processes that are gone (killed before they could remove theirs): what
/// prune removes. Files whose name gives no process count as gone too.
pub fn stale_holders(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "holder") {
                continue;
            }
            let alive =
                holder_pid(&p).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn describe_holders(dir: &Path, seal: Seal<'_>) -> String {
    let mut parts = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "holder") {
                if let Ok(h) = fs::read(&p)
                    .ok()
                    .and_then(|b| super::unseal_lock(seal, &b))
                    .and_then(|b| serde_json::from_slice::<HolderInfo>(&b).ok())
                    .ok_or(())
                {
                    if Path::new(&format!("/proc/{}", h.pid)).exists() {
                        parts.push(format!(
                            "{} ({} lock) by pid {} since {}",
                            h.command,
                            if h.exclusive { "exclusive" } else { "shared" },
                            h.pid,
                            h.since
                        ));
                    } else {
                        let _ = fs::remove_file(&p);
                    }
                }
            }
        }
    }
    if parts.is_empty() {
        "held by another cachevault process".to_string()
    } else {
        format!("held by {}", parts.join(", "))
    }
}
