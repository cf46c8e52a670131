//! A repository in a folder of this machine: one folder per object kind, every write a temp
//! file in the same folder, fsynced, renamed into place and the folder fsynced; large
//! objects spooled beside their final name; `flock(2)` locks the kernel drops when a process
//! dies.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lock::{self, LockKind, RepoLock};
use super::{Backend, LockGuard, ObjectInfo, ObjectKind, ObjectRead, Staged};
use crate::error::{Error, Result};
use crate::fsutil;

/// A repository folder.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    lock_seal: std::sync::OnceLock<std::sync::Arc<dyn super::LockSeal>>,
}

impl LocalBackend {
    /// The repository in folder `root` (which need not exist yet).
    pub fn new(root: &Path) -> LocalBackend {
        LocalBackend {
            root: root.to_path_buf(),
            lock_seal: std::sync::OnceLock::new(),
        }
    }

    fn dir(&self, kind: ObjectKind) -> PathBuf {
        match kind.folder() {
            "" => self.root.clone(),
            f => self.root.join(f),
        }
    }

    /// The file of an object.
    pub fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.dir(kind).join(name)
    }
}

impl LockGuard for RepoLock {}

struct LocalObject {
    file: File,
    path: PathBuf,
    len: u64,
}

impl ObjectRead for LocalObject {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::corrupt(format!(
                "{}: {len} bytes at offset {offset} lie beyond the end of the file ({} bytes)",
                self.path.display(),
                self.len
            )));
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(Error::io(&self.path))?;
        Ok(buf)
    }
}

/// Kinds whose folders hold objects (the top folder holds config.json and state files).
const FOLDERS: [ObjectKind; 8] = [
    ObjectKind::Archive,
    ObjectKind::Index,
    ObjectKind::Snapshot,
    ObjectKind::Journal,
    ObjectKind::Record,
    ObjectKind::Damaged,
    ObjectKind::Lock,
    ObjectKind::Key,
];

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn create(&self) -> Result<()> {
        if let Ok(mut rd) = fs::read_dir(&self.root) {
            if rd.next().is_some() {
                return Err(Error::AlreadyExists(self.root.clone()));
            }
        }
        fsutil::create_private_dir(&self.root)?;
        for kind in [
            ObjectKind::Archive,
            ObjectKind::Index,
            ObjectKind::Snapshot,
            ObjectKind::Journal,
            ObjectKind::Lock,
        ] {
            fsutil::create_private_dir(&self.dir(kind))?;
        }
        fsutil::sync_dir(&self.root)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let dir = self.dir(kind);
        let mut out = Vec::new();
        for name in fsutil::list_names(&dir, "")? {
            let path = dir.join(&name);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => {
                    // The top folder holds the other kinds' folders and config.json: only
                    // files count, and only those of the kind asked for.
                    if kind.folder().is_empty()
                        && (kind == ObjectKind::Config) != (name == super::CONFIG_NAME)
                    {
                        continue;
                    }
                    out.push(ObjectInfo {
                        name,
                        size: m.len(),
                    })
                }
                Ok(_) => {}
                // Removed since the listing (a concurrent prune): not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path)(e)),
            }
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        fsutil::read(&self.path(kind, name))
    }

    fn open(&self, kind: ObjectKind, name: &str) -> Result<Box<dyn ObjectRead>> {
        let path = self.path(kind, name);
        let file = File::open(&path).map_err(Error::io(&path))?;
        let len = file.metadata().map_err(Error::io(&path))?.len();
        Ok(Box::new(LocalObject { file, path, len }))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        let dir = self.dir(kind);
        fsutil::create_private_dir(&dir)?;
        fsutil::write_atomic(&dir.join(name), data)
    }

    fn stage(&self, kind: ObjectKind) -> Result<Staged> {
        // Beside its final name: publishing is a rename, never a copy.
        let dir = self.dir(kind);
        fsutil::create_private_dir(&dir)?;
        Staged::create(kind, fsutil::temp_path_for(&dir.join(kind.to_string())))
    }

    fn publish(&self, mut staged: Staged, name: &str) -> Result<()> {
        staged.file().sync_all().map_err(Error::io(&staged.path))?;
        let kind = staged.kind;
        let tmp = staged.into_path();
        let dest = self.path(kind, name);
        let result = fsutil::persist(&tmp, &dest);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn append(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        let dir = self.dir(kind);
        fsutil::create_private_dir(&dir)?;
        let path = dir.join(name);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(Error::io(&path))?;
        // One write with O_APPEND: concurrent appenders never interleave inside it.
        f.write_all(data).map_err(Error::io(&path))?;
        f.sync_all().map_err(Error::io(&path))
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }

    fn rename(&self, from: (ObjectKind, &str), to: (ObjectKind, &str)) -> Result<()> {
        let src = self.path(from.0, from.1);
        let dir = self.dir(to.0);
        fsutil::create_private_dir(&dir)?;
        let dest = dir.join(to.1);
        fs::rename(&src, &dest).map_err(Error::io(&src))?;
        fsutil::sync_dir(&dir)?;
        fsutil::sync_dir(&self.dir(from.0))
    }

    fn sync(&self, kind: ObjectKind) -> Result<()> {
        let dir = self.dir(kind);
        match fsutil::sync_dir(&dir) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(())
            }
            other => other,
        }
    }

    fn lock(
        &self,
        kind: LockKind,
        command: &str,
        wait: Duration,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn LockGuard>> {
        let l = RepoLock::acquire(
            &self.dir(ObjectKind::Lock),
            kind,
            command,
            wait,
            on_wait,
            self.lock_seal.get(),
        )?;
        Ok(Box::new(l))
    }

    fn set_lock_seal(&self, seal: std::sync::Arc<dyn super::LockSeal>) {
        let _ = self.lock_seal.set(seal);
    }

    fn remove_leftovers(&self, dry_run: bool) -> Result<(usize, u64)> {
        let mut found = Vec::new();
        for dir in std::iter::once(self.root.clone()).chain(FOLDERS.iter().map(|k| self.dir(*k))) {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir)(e)),
            };
            for e in rd {
                let e = e.map_err(Error::io(&dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(fsutil::TMP_SUFFIX) {
                    found.push((e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)));
                }
            }
        }
        for h in lock::stale_holders(&self.dir(ObjectKind::Lock)) {
            found.push((h, 0));
        }
        let bytes = found.iter().map(|(_, s)| s).sum();
        if !dry_run {
            for (p, _) in &found {
                if let Err(e) = fs::remove_file(p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(Error::io(p)(e));
                    }
                }
            }
        }
        Ok((found.len(), bytes))
    }

    fn unlock(&self, _all: bool) -> Result<Vec<String>> {
        // flock locks die with their process: only descriptions of dead holders remain to
        // be removed, with or without --all.
        let mut removed = Vec::new();
        for h in lock::stale_holders(&self.dir(ObjectKind::Lock)) {
            match fs::remove_file(&h) {
                Ok(()) => removed.push(format!("{} (its process is gone)", h.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&h)(e)),
            }
        }
        Ok(removed)
    }
}
