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

/// Renames a synced temp file into place and fsyncs the directory.
pub fn persist(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(Error::io(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Opens a file for reading without updating its access time where the kernel permits
/// (O_NOATIME needs ownership or CAP_FOWNER): snapshots must not disturb the LRU order.
pub fn open_noatime(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        other => other,
    }
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
