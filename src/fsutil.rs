//! Durable file primitives: private permissions, temp + fsync + rename + fsync-dir, O_NOATIME reads.
//! Nothing here knows about the repository layout.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Mode of every file the repository writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the repository creates.
pub const DIR_MODE: u32 = 0o700;
/// Suffix of in-progress files; readers ignore them and prune removes them.
pub const TMP_SUFFIX: &str = ".tmp";

/// Creates `dir` and missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(Error::io(dir))
}

/// fsyncs a directory so that names created or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(dir))
}

/// A unique temp path next to `final_path` (same directory, so rename is atomic).
pub fn temp_path_for(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = format!(
        ".{name}.{}.{}{TMP_SUFFIX}",
        std::process::id(),
        UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    final_path.with_file_name(unique)
}

static UNIQUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Creates a new private file that must not exist yet.
pub fn create_new_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(Error::io(path))
}

/// Writes `data` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
/// A crash leaves either the old state or the complete new file, never a partial one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut f = create_new_private(&tmp)?;
        f.write_all(data).map_err(Error::io(&tmp))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        drop(f);
        persist(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `data` to `path` atomically and durably like [`write_atomic`], leaving the file
/// with exactly `mode`: for files outside the repository that other users must read (a
/// metrics file scraped by an exporter running as another user). The mode is set
/// explicitly because the umask would otherwise strip bits from it.
pub fn write_atomic_with_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(Error::io(&tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(Error::io(&tmp))?;
        f.write_all(data).map_err(Error::io(&tmp))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        drop(f);
        persist(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Renames a synced temp file into place and fsyncs the directory.
pub fn persist(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(Error::io(path))?;
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// Opens a file for reading without updating its access time where the kernel permits
/// (O_NOATIME needs ownership or CAP_FOWNER): snapshots must not disturb the LRU order.
/// Never through a symlink at the last component, and never waiting on a FIFO put where a
/// file was (O_NONBLOCK, which regular files ignore).
pub fn open_noatime(path: &Path) -> std::io::Result<File> {
    open_noatime_at(&rustix::fs::CWD, path)
}

/// [`open_noatime`] of `name` in the folder `dir` (an open folder, `O_PATH` is enough): the
/// path is not looked up again from the root for every file of a folder.
pub fn open_noatime_at(dir: &impl std::os::fd::AsFd, name: &Path) -> std::io::Result<File> {
    use rustix::fs::{openat, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(e) if e == rustix::io::Errno::PERM => openat(dir, name, flags, Mode::empty()),
        other => other,
    }
    .map(File::from)
    .map_err(std::io::Error::from)
}

/// A folder opened only to open what is in it (`O_PATH`), following symlinks as a path
/// lookup through it would.
pub fn open_folder(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{open, Mode, OFlags};
    open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
}

/// Reads a whole file with its path attached to any error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(Error::io(path))
}

/// Lists the names in `dir` ending with `suffix`, ignoring in-progress temp files.
pub fn list_names(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(Error::io(dir))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.ends_with(suffix) && !name.starts_with('.') && !name.ends_with(TMP_SUFFIX) {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Size and free space of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskSpace {
    /// Total size in bytes.
    pub total_bytes: u64,
    /// Bytes available to unprivileged users (what a cache writer can still use; the
    /// blocks reserved for root are not counted).
    pub available_bytes: u64,
}

impl DiskSpace {
    /// Available share of the total, in percent (100 for a file system of size 0).
    pub fn available_pct(&self) -> f64 {
        if self.total_bytes == 0 {
            100.0
        } else {
            self.available_bytes as f64 * 100.0 / self.total_bytes as f64
        }
    }
}

/// Space on the file system holding `path`, or its nearest existing ancestor when `path`
/// does not exist yet (a cache root or repository still to be created). `statvfs(3)` through
/// rustix, which wraps it safely.
///
/// # Errors
/// I/O errors naming the path asked about.
pub fn disk_space(path: &Path) -> Result<DiskSpace> {
    let mut probe = path;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => break,
        }
    }
    let st = rustix::fs::statvfs(probe).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(DiskSpace {
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        available_bytes: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
