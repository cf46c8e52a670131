//! `mount MOUNTPOINT`: the repository's snapshots as a read-only FUSE file system (the
//! layout is the library's `vfs`), served in the foreground until it is unmounted
//! (`umount MOUNTPOINT`, `fusermount -u MOUNTPOINT`) or a signal (Ctrl-C) asks to stop.
//! Mounts with fuser's own mount code: mount(2) directly when allowed (root), else the
//! setuid `fusermount3`/`fusermount` helper; no libfuse is linked. Adapts FUSE requests to
//! the library's tree and nothing more.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};
use serde_json::json;

use cachevault::store::BlobIndex;
use cachevault::vfs::{Attr, NodeKind, Tree};
use cachevault::{select, snapshot, LockKind};

use super::args::MountArgs;
use super::{exit, Ctx, Outcome};

/// How long the kernel may cache attributes and names: the tree never changes while mounted.
const TTL: Duration = Duration::from_secs(60);

/// The FUSE adapter over the library's tree.
struct SnapshotFs {
    tree: Tree,
    uid: u32,
    gid: u32,
    quiet: bool,
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

impl SnapshotFs {
    fn file_attr(&self, a: &Attr) -> FileAttr {
        let t = time_of(a.mtime_ns);
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: match a.kind {
                NodeKind::Dir => FileType::Directory,
                NodeKind::File => FileType::RegularFile,
                NodeKind::Symlink => FileType::Symlink,
            },
            perm: (a.mode & 0o7777) as u16,
            nlink: if a.kind == NodeKind::Dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Says on stderr why a request failed (the reader only sees EIO), and returns EIO.
    fn failed(&self, ino: u64, e: &cachevault::Error) -> Errno {
        if !self.quiet {
            eprintln!("cachevault: mount: {}: {e}", self.tree.describe(ino));
        }
        Errno::EIO
    }
}

impl Filesystem for SnapshotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name.as_bytes()) {
            Ok(Some(a)) => reply.entry(&TTL, &self.file_attr(&a), Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(self.failed(parent.0, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &self.file_attr(&a)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.readlink(ino.0) {
            Some(t) => reply.data(&t),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        match self.tree.open(ino.0) {
            // The content never changes: the kernel may keep it cached between opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(self.failed(ino.0, &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.tree.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.failed(ino.0, &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.tree.release(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = match self.tree.list(ino.0) {
            Ok(Some(list)) => list,
            Ok(None) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(self.failed(ino.0, &e)),
        };
        for (i, (child, kind, name)) in list.iter().enumerate().skip(offset as usize) {
            let kind = match kind {
                NodeKind::Dir => FileType::Directory,
                NodeKind::File => FileType::RegularFile,
                NodeKind::Symlink => FileType::Symlink,
            };
            // The offset given is that of the next entry.
            if reply.add(
                INodeNo(*child),
                (i + 1) as u64,
                kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }
}

pub fn mount(ctx: &Ctx, a: &MountArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let meta = std::fs::metadata(&a.mountpoint)
        .with_context(|| format!("mount point {}", a.mountpoint.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a folder", a.mountpoint.display());
    }
    let filter = ctx.filter(&a.filter, false)?;
    // `latest` means what it means for every other command: the newest complete backup of
    // the config's root (or of the one root the filters name).
    let latest_filter = ctx.filter(&a.filter, true)?;
    let (tree, count, latest) = {
        // Read under a shared lock, as any reader; the mount then reads only archives, which
        // a prune could remove while it is mounted: such reads fail with an error naming the
        // archive (EIO to the reader).
        let _lock = ctx.lock(&repo, LockKind::Shared, "mount")?;
        let listing = snapshot::list(&repo)?;
        for d in &listing.damaged {
            ctx.note(&format!("damaged: {}: {} (left out)", d.file, d.error));
        }
        let shown: Vec<_> = listing
            .snapshots
            .into_iter()
            .filter(|(_, m)| filter.matches(m))
            .collect();
        let latest = match select::newest(&shown, &latest_filter, None, super::now()) {
            Ok(sel) => {
                ctx.note_selection(&sel);
                Some(sel.id)
            }
            Err(e) => {
                ctx.note(&format!("no `latest` link: {e}"));
                None
            }
        };
        let index = BlobIndex::load(&repo)?;
        let now_ns = super::now().timestamp_nanos_opt().unwrap_or(0);
        let count = shown.len();
        (
            Tree::new(repo.clone(), index, &shown, latest, now_ns),
            count,
            latest,
        )
    };
    let fs = SnapshotFs {
        tree,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        quiet: ctx.cli.quiet,
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(format!("cachevault:{}", repo.location())),
        MountOption::Subtype("cachevault".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    let session = fuser::spawn_mount(fs, &a.mountpoint, &config).with_context(|| {
        format!(
            "mounting on {} (needs /dev/fuse, and root or the fusermount3 helper)",
            a.mountpoint.display()
        )
    })?;
    ctx.note(&format!(
        "mounted {count} snapshots of {} read-only on {} (snapshots/, by-kind/, latest); unmount with `fusermount -u {}` or Ctrl-C",
        repo.location(),
        a.mountpoint.display(),
        a.mountpoint.display()
    ));
    // Wait for an unmount from outside (the session thread ends) or a signal.
    while !session.guard.is_finished() && cachevault::cancel::requested().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let by_signal = cachevault::cancel::requested();
    if session.guard.is_finished() {
        session
            .join()
            .with_context(|| format!("serving {}", a.mountpoint.display()))?;
    } else {
        session
            .umount_and_join()
            .with_context(|| format!("unmounting {}", a.mountpoint.display()))?;
    }
    let how = match by_signal {
        Some(sig) => format!("signal {sig}"),
        None => "an unmount".into(),
    };
    ctx.note(&format!("unmounted {} after {how}", a.mountpoint.display()));
    Ok(Outcome::new(
        json!({
            "mountpoint": a.mountpoint,
            "snapshots": count,
            "latest": latest.map(|id| id.to_hex()),
            "stopped_by": how,
        }),
        String::new(),
        exit::OK,
    ))
}
