//! A repository held in memory, for fast unit tests of everything above the storage layer.
//! Objects are whole byte vectors; locks are a reader/writer count that never waits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::LockKind;
use super::{Backend, LockGuard, ObjectInfo, ObjectKind, ObjectRead, Staged};
use crate::error::{Error, Result};

type Objects = BTreeMap<(ObjectKind, String), Arc<Vec<u8>>>;

/// A repository in memory; clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    objects: Arc<Mutex<Objects>>,
    /// Shared holders, or -1 for an exclusive one.
    held: Arc<Mutex<i64>>,
}

impl MemoryBackend {
    /// An empty repository.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects
            .lock()
            .expect("the object map is never poisoned")
    }

    fn missing(kind: ObjectKind, name: &str) -> Error {
        Error::Io {
            path: kind.path_of(name).into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
    }
}

struct MemoryObject {
    data: Arc<Vec<u8>>,
    name: String,
}

impl ObjectRead for MemoryObject {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|e| *e <= self.len());
        match end {
            Some(end) => Ok(self.data[offset as usize..end as usize].to_vec()),
            None => Err(Error::corrupt(format!(
                "{}: {len} bytes at offset {offset} lie beyond its end",
                self.name
            ))),
        }
    }
}

#[derive(Debug)]
struct MemoryLock {
    held: Arc<Mutex<i64>>,
    exclusive: bool,
}

impl LockGuard for MemoryLock {}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        let mut h = self.held.lock().expect("the lock count is never poisoned");
        *h = if self.exclusive { 0 } else { *h - 1 };
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn create(&self) -> Result<()> {
        if !self.objects().is_empty() {
            return Err(Error::AlreadyExists("memory".into()));
        }
        Ok(())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .objects()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), data)| ObjectInfo {
                name: name.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.objects()
            .get(&(kind, name.to_string()))
            .map(|d| d.to_vec())
            .ok_or_else(|| Self::missing(kind, name))
    }

    fn open(&self, kind: ObjectKind, name: &str) -> Result<Box<dyn ObjectRead>> {
        let data = self
            .objects()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| Self::missing(kind, name))?;
        Ok(Box::new(MemoryObject {
            data,
            name: kind.path_of(name),
        }))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.objects()
            .insert((kind, name.to_string()), Arc::new(data.to_vec()));
        Ok(())
    }

    fn stage(&self, kind: ObjectKind) -> Result<Staged> {
        let path = crate::fsutil::temp_path_for(&std::env::temp_dir().join("cachevault-spool"));
        Staged::create(kind, path)
    }

    fn publish(&self, staged: Staged, name: &str) -> Result<()> {
        let kind = staged.kind;
        let path = staged.into_path();
        let data = std::fs::read(&path).map_err(Error::io(&path));
        let _ = std::fs::remove_file(&path);
        self.write(kind, name, &data?)
    }

    fn append(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        let mut objects = self.objects();
        let entry = objects
            .entry((kind, name.to_string()))
            .or_insert_with(|| Arc::new(Vec::new()));
        Arc::make_mut(entry).extend_from_slice(data);
        Ok(())
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.objects().remove(&(kind, name.to_string()));
        Ok(())
    }

    fn rename(&self, from: (ObjectKind, &str), to: (ObjectKind, &str)) -> Result<()> {
        let mut objects = self.objects();
        let data = objects
            .remove(&(from.0, from.1.to_string()))
            .ok_or_else(|| Self::missing(from.0, from.1))?;
        objects.insert((to.0, to.1.to_string()), data);
        Ok(())
    }

    fn sync(&self, _kind: ObjectKind) -> Result<()> {
        Ok(())
    }

    fn lock(
        &self,
        kind: LockKind,
        command: &str,
        _wait: Duration,
        _on_wait: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn LockGuard>> {
        let mut h = self.held.lock().expect("the lock count is never poisoned");
        let exclusive = kind == LockKind::Exclusive;
        let free = if exclusive { *h == 0 } else { *h >= 0 };
        if !free {
            return Err(Error::Locked(format!(
                "held by another operation in this process; {command} does not wait"
            )));
        }
        *h = if exclusive { -1 } else { *h + 1 };
        Ok(Box::new(MemoryLock {
            held: self.held.clone(),
            exclusive,
        }))
    }

    fn remove_leftovers(&self, _dry_run: bool) -> Result<(usize, u64)> {
        Ok((0, 0))
    }
}
