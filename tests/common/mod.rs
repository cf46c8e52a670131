//! Shared helpers for integration tests: temp trees, the CLI binary, awkward cases.
#![allow(dead_code)]

pub mod chromium;
pub mod s3;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_cachevault");

/// A temp folder with tree-building helpers; removed on drop.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("cachevault-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, rel: impl AsRef<Path>, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    }

    pub fn mkdirp(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Copies the committed fixture tree to `dest` and adds what git cannot hold.
pub fn fixture_tree(dest: &Path) {
    copy_fixture(dest);
    add_awkward(&dest.join("cached_products/awkward"));
}

/// Copies the committed fixture tree to `dest` as it is (every file a valid cache file).
pub fn copy_fixture(dest: &Path) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tree/OUTPUTS"),
        dest,
    );
}

/// Copies a tree with `cp -a` (modes, times and links kept); `to` must not exist.
pub fn copy_tree(from: &Path, to: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}

/// Copies the folders and regular files of `src` into `dest`.
fn copy_dir(src: &Path, dest: &Path) {
    for de in walkdir::WalkDir::new(src) {
        let de = de.unwrap();
        let to = dest.join(de.path().strip_prefix(src).unwrap());
        if de.file_type().is_dir() {
            fs::create_dir_all(&to).unwrap();
        } else {
            fs::copy(de.path(), &to).unwrap();
        }
    }
}

/// Copies the shipped config (`config/cachevault.json` and its `schemas/`) into `dest`, so that
/// a `dest/OUTPUTS` tree is its cache root; returns the config file's path.
pub fn default_config(dest: &Path) -> PathBuf {
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), dest);
    dest.join("cachevault.json")
}

/// A non-UTF-8 name, a symlink, an empty folder, an empty file, 0600 and 0755 modes.
pub fn add_awkward(dir: &Path) {
    fs::create_dir_all(dir.join("empty-folder")).unwrap();
    fs::write(
        dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9.json")),
        b"{}",
    )
    .unwrap();
    fs::write(dir.join("empty.json"), b"").unwrap();
    fs::write(dir.join("private.json"), b"{\"p\": 1}").unwrap();
    fs::set_permissions(dir.join("private.json"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(dir.join("tool.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("private.json", dir.join("link.json")).unwrap();
}

/// Runs the binary with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .output()
        .expect("run cachevault")
}

/// Runs with `--repo repo --json`, asserts the exit code, returns the parsed document.
pub fn json(repo: &Path, args: &[&str], code: i32) -> serde_json::Value {
    json_with(&["--repo", repo.to_str().unwrap()], args, code)
}

/// Runs with `prefix`, `--json` and `args`, asserts the exit code, returns the one JSON
/// document printed on stdout.
pub fn json_with(prefix: &[&str], args: &[&str], code: i32) -> serde_json::Value {
    let mut all = prefix.to_vec();
    all.push("--json");
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "cachevault {all:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A deterministic JSON-ish byte generator (xorshift), for large realistic files.
pub fn json_array(records: usize, seed: u64) -> String {
    let mut x = seed | 1;
    let mut s = String::from("[\n");
    for i in 0..records {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!(
            "  {{\n    \"supplier_ean\": \"50{:011}\",\n    \"asin\": \"B0{:08X}\",\n    \"supplier_url\": \"https://supplier.example/p/{}\",\n    \"match_method\": \"{}\",\n    \"confidence\": 0.{:02},\n    \"linked_at\": \"2026-11-{:02}T{:02}:00:00Z\"\n  }}",
            x % 100_000_000_000,
            (x >> 20) as u32,
            x % 977_777,
            ["ean", "title", "image"][(x % 3) as usize],
            x % 100,
            1 + x % 28,
            x % 24
        ));
    }
    s.push_str("\n]\n");
    s
}

/// The shipped config and schemas beside a copy of the fixture tree in `t`; returns the
/// config path. Every file's mtime and atime is set to `mtime` (seconds since the epoch).
pub fn config_tree(t: &TestDir, mtime: i64) -> PathBuf {
    let root = t.join("OUTPUTS");
    copy_fixture(&root);
    for f in files_under(&root) {
        set_times(&root.join(f), mtime, mtime);
    }
    default_config(t.path())
}

/// Sets a file's access and modification times (seconds since the epoch).
pub fn set_times(p: &Path, atime: i64, mtime: i64) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(atime as u64);
    let mt = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(at).set_modified(mt))
        .unwrap();
}

/// Runs with `--config cfg --json`, asserts the exit code, returns the document.
pub fn json_cfg(cfg: &Path, args: &[&str], code: i32) -> serde_json::Value {
    json_with(&["--config", cfg.to_str().unwrap()], args, code)
}

/// Every regular file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Whether the tests run under CI (`CI=true`, which `.ci/run` exports): there a test that
/// needs an outside tool fails when the tool is missing, instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether `tool` is installed (it can be started); a test that needs it calls this first and
/// returns when it is false. Panics under CI when the tool is missing: `.ci/run` installs
/// every tool the tests use, so a skip there would hide a missing install. `why` says what
/// the test needs the tool for.
pub fn require(tool: &str, why: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    require_that(found, &format!("`{tool}` is not installed"), why)
}

/// Whether the tests run as root; as [`require`]: panics under CI when they do not.
pub fn require_root(why: &str) -> bool {
    require_that(is_root(), "the tests do not run as root", why)
}

/// `ok`, or else: under CI a panic saying `missing` and `why`; elsewhere a note on stderr
/// that the test is skipped, and false.
pub fn require_that(ok: bool, missing: &str, why: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        !in_ci(),
        "{missing}, and CI=true: this test needs it to {why} (.ci/run installs what the tests need)"
    );
    eprintln!("skipped: {missing}; this test needs it to {why}");
    false
}

/// Whether the tests run as root (mounting a tmpfs needs it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A tmpfs of `size` (mount's syntax, e.g. `2m`) mounted on `dir` until dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, or says why it cannot (the caller passes the reason to [`require_that`]).
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "could not mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `len` bytes that zstd cannot compress (xorshift), so sizes on disk are predictable.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where a local repository keeps its objects, for tests that damage them by hand. The
/// library names objects through `repo::layout`; these helpers join those names onto the
/// folder of a local repository.
pub trait LocalLayout {
    fn dir_of(&self, kind: cachevault::backend::ObjectKind) -> PathBuf;
    fn archives_dir(&self) -> PathBuf {
        self.dir_of(cachevault::backend::ObjectKind::Archive)
    }
    fn index_dir(&self) -> PathBuf {
        self.dir_of(cachevault::backend::ObjectKind::Index)
    }
    fn archive_path(&self, id: &cachevault::BlobId) -> PathBuf {
        self.archives_dir()
            .join(cachevault::repo::layout::archive(id))
    }
    fn index_path(&self, id: &cachevault::BlobId) -> PathBuf {
        self.index_dir().join(cachevault::repo::layout::index(id))
    }
    fn snapshot_path(&self, id: &cachevault::BlobId) -> PathBuf {
        self.dir_of(cachevault::backend::ObjectKind::Snapshot)
            .join(cachevault::repo::layout::manifest(id))
    }
}

impl LocalLayout for cachevault::Repository {
    fn dir_of(&self, kind: cachevault::backend::ObjectKind) -> PathBuf {
        let root = self.local_path().expect("a local repository");
        match kind.folder() {
            "" => root.to_path_buf(),
            f => root.join(f),
        }
    }
}

/// Scans an archive file the way `rebuild-index` does.
pub fn scan_archive_file(p: &Path) -> cachevault::Result<cachevault::archive::ArchiveIndex> {
    let bytes = std::fs::read(p).map_err(cachevault::Error::io(p))?;
    cachevault::archive::scan_archive(
        &bytes,
        &p.display().to_string(),
        &cachevault::archive::FrameCodec::plain(),
    )
}

/// Waits until `child` stops itself at a `CACHEVAULT_PAUSE` point (state `T`); fails the test
/// if it ends first or takes over a minute.
pub fn wait_paused(child: &mut std::process::Child) {
    let start = std::time::Instant::now();
    loop {
        let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        if stat.rsplit(") ").next().and_then(|r| r.chars().next()) == Some('T') {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before its pause"
        );
        assert!(start.elapsed().as_secs() < 60, "the child never paused");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Starts `cachevault ARGS` (no repository or config from the environment) to stop itself
/// at the fault point `point`, and waits until it has.
pub fn spawn_paused(args: &[&std::ffi::OsStr], point: &str) -> std::process::Child {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cachevault"))
        .args(args)
        .env("CACHEVAULT_PAUSE", point)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_paused(&mut child);
    child
}

/// Sends a paused child SIGTERM, then lets it go on.
pub fn terminate_paused(child: &std::process::Child) {
    for sig in ["-TERM", "-CONT"] {
        let ok = std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

/// The exit code health must give: `want`, or worse when this machine's disk is itself low.
pub fn expected_health(t: &TestDir, want: cachevault::health::Level) -> i32 {
    let space = cachevault::fsutil::disk_space(t.path()).unwrap();
    let disk = cachevault::health::disk_level(&space, &cachevault::health::Thresholds::default());
    if disk > cachevault::health::Level::Ok {
        eprintln!("note: the test file system is low on space ({space:?}): health reports it too");
    }
    want.max(disk).exit_code() as i32
}

/// The finding of `check` in a health document, wherever it sits (a machine low on space
/// puts disk findings first).
pub fn health_reason<'a>(doc: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding: {doc}"))
}

/// Options for a plain backup of `root` at a fixed time, as the library tests take one.
pub fn backup_options(root: &Path) -> cachevault::snapshot::SnapshotOptions {
    cachevault::snapshot::SnapshotOptions {
        root: root.to_path_buf(),
        includes: Vec::new(),
        kind: cachevault::manifest::SnapshotKind::Backup,
        types: Vec::new(),
        tags: Vec::new(),
        time: chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00+01:00").unwrap(),
        hostname: "test".into(),
        rehash: false,
        dry_run: false,
        parent: None,
    }
}
