//! Browsing snapshots without restoring them: `dump` (a file's bytes, a folder as a tar
//! stream that the system tar extracts, verified reads), `ls SNAP PATH`, `find` by bare name
//! and glob, the read-only FUSE `mount`, and the generated docs (`completions`, `man`,
//! examples in every `--help`). Real trees, the real binary.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const LINK: &str = "FBA_ANALYSIS/Linking map/linking_map.json";
const AMAZON: &str = "FBA_ANALYSIS/amazon_cache/amazon_B0D98139R0.json";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs with `prefix` then `args`; returns the output after checking the exit code.
fn run_code(prefix: &[&str], args: &[&str], code: i32) -> Output {
    let mut all = prefix.to_vec();
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "cachevault {all:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every regular file under `root`, relative, with its exact (not always UTF-8) name.
fn raw_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
        .collect();
    v.sort();
    v
}

/// The fixture tree (with a symlink, an empty folder, modes) snapshotted into a new
/// repository: (test dir, tree, repository, snapshot id).
fn snapshotted() -> (TestDir, PathBuf, PathBuf, String) {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let snap = json(&repo, &["snapshot", s(&src)], 0);
    let id = snap["id"].as_str().unwrap().to_string();
    (t, src, repo, id)
}

#[test]
fn dump_of_a_file_writes_its_bytes() {
    let (_t, src, repo, id) = snapshotted();
    let r = ["--repo", s(&repo)];
    let out = run_code(&r, &["dump", "latest", LINK], 0);
    assert_eq!(out.stdout, fs::read(src.join(LINK)).unwrap());
    // By an id prefix, by an absolute path under the root, with --json ignored: the bytes.
    let root = src.canonicalize().unwrap();
    let abs = root.join(AMAZON);
    let out = run_code(&r, &["--json", "dump", &id[..8], s(&abs)], 0);
    assert_eq!(out.stdout, fs::read(src.join(AMAZON)).unwrap());
    // An empty file is zero bytes; a symlink is its target.
    let out = run_code(
        &r,
        &["dump", "latest", "cached_products/awkward/empty.json"],
        0,
    );
    assert!(out.stdout.is_empty());
    let out = run_code(
        &r,
        &["dump", "latest", "cached_products/awkward/link.json"],
        0,
    );
    assert_eq!(out.stdout, b"private.json");
}

#[test]
fn dump_of_a_missing_path_names_it_and_exits_2() {
    let (_t, _src, repo, _id) = snapshotted();
    let out = run_code(
        &["--repo", s(&repo)],
        &[
            "dump",
            "latest",
            "FBA_ANALYSIS/amazon_cache/amazon_NOPE.json",
        ],
        2,
    );
    assert!(out.stdout.is_empty(), "no data, no document on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("amazon_NOPE.json"), "{err}");
    // `..` and paths outside the root are refused the same way.
    let out = run_code(
        &["--repo", s(&repo)],
        &["dump", "latest", "../etc/passwd"],
        2,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(".."));
    run_code(&["--repo", s(&repo)], &["dump", "ffffffff", LINK], 2);
}

#[test]
fn dump_of_a_folder_is_a_tar_stream_that_tar_extracts() {
    if !require("tar", "extract the stream dump writes for a folder") {
        return;
    }
    let (t, src, repo, _id) = snapshotted();
    let out = run_code(
        &["--repo", s(&repo)],
        &["dump", "latest", "cached_products"],
        0,
    );
    let tarball = t.join("dump.tar");
    fs::write(&tarball, &out.stdout).unwrap();
    let dest = t.mkdirp("extracted");
    let x = Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    // Paths are relative to the snapshot root: the folder itself and what lies below it.
    let want = raw_files(&src.join("cached_products"));
    assert!(want.len() > 5, "{want:?}");
    assert_eq!(raw_files(&dest.join("cached_products")), want);
    for f in &want {
        let rel = Path::new("cached_products").join(f);
        assert_eq!(
            fs::read(dest.join(&rel)).unwrap(),
            fs::read(src.join(&rel)).unwrap(),
            "{f:?}"
        );
    }
    let awkward = dest.join("cached_products/awkward");
    assert_eq!(
        fs::read_link(awkward.join("link.json")).unwrap(),
        Path::new("private.json")
    );
    assert!(awkward.join("empty-folder").is_dir());
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(awkward.join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // Nothing outside the folder asked for.
    assert!(!dest.join("FBA_ANALYSIS").exists());

    // `.` is the whole snapshot.
    let out = run_code(&["--repo", s(&repo)], &["dump", "latest", "."], 0);
    let listing = Command::new("tar")
        .arg("-t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&out.stdout)?;
            c.wait_with_output()
        })
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(names.lines().any(|l| l == LINK), "{names}");
    assert!(names.lines().any(|l| l == AMAZON), "{names}");
}

#[test]
fn dump_of_a_flipped_byte_fails_with_exit_3_naming_the_archive() {
    let t = TestDir::new();
    let src = t.join("tree");
    // Incompressible, so the archive is mostly this file's bytes and a third of the way in
    // lies inside them.
    t.write("tree/big.json", noise(300_000, 7));
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    json(&repo, &["snapshot", s(&src)], 0);
    let repository = cachevault::Repository::open(&repo).unwrap();
    let archives: Vec<PathBuf> = fs::read_dir(repository.archives_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archives.len(), 1);
    let mut bytes = fs::read(&archives[0]).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    fs::write(&archives[0], &bytes).unwrap();

    let out = run_code(&["--repo", s(&repo)], &["dump", "latest", "big.json"], 3);
    let err = String::from_utf8_lossy(&out.stderr);
    let name = archives[0].file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "stderr does not name {name}: {err}");
    assert!(err.contains("big.json"), "{err}");
    assert!(
        out.stdout.len() < 300_000,
        "the damaged blob must not be written"
    );
    // As a folder too: the tar stream stops, exit 3.
    run_code(&["--repo", s(&repo)], &["dump", "latest", "."], 3);
}

#[test]
fn dump_type_takes_the_newest_backup_holding_the_type() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let c = ["--config", s(&cfg)];
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    let map = t.join("OUTPUTS").join(LINK);
    let before = fs::read(&map).unwrap();
    let mut after = before.clone();
    after.extend_from_slice(b"\n");
    fs::write(&map, &after).unwrap();
    let typed = json_cfg(&cfg, &["snapshot", "--type", "linking_map"], 0);

    // Plain `latest` passes over type backups; --type takes the newest one holding it.
    let plain = run_code(&c, &["dump", "latest", LINK], 0);
    assert_eq!(plain.stdout, before);
    let out = run_code(&c, &["dump", "--type", "linking_map", "latest", LINK], 0);
    assert_eq!(out.stdout, after);
    let err = String::from_utf8_lossy(&out.stderr);
    let short = &typed["id"].as_str().unwrap()[..8];
    assert!(err.contains(short), "says which snapshot: {err}");

    // Without PATH: the type's folder, as tar.
    let out = run_code(&c, &["dump", "--type", "linking_map", "latest"], 0);
    assert!(out.stdout.len() > after.len());
    // A path outside the type's folder, or an unknown type: exit 2.
    run_code(&c, &["dump", "--type", "linking_map", "latest", AMAZON], 2);
    let out = run_code(&c, &["dump", "--type", "nope", "latest", LINK], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn ls_with_a_path_lists_that_path_and_what_lies_below() {
    let (_t, _src, repo, _id) = snapshotted();
    let paths = |args: &[&str]| -> Vec<String> {
        json(&repo, args, 0)["entries"]
            .as_array()
            .unwrap()
            .iter()
            // Names that are not UTF-8 are `{"bytes": ...}`.
            .map(|e| {
                e["path"]
                    .as_str()
                    .map_or_else(|| e["path"].to_string(), String::from)
            })
            .collect()
    };
    assert_eq!(paths(&["ls", "latest", LINK]), [LINK]);
    let dir = paths(&["ls", "latest", "FBA_ANALYSIS/Linking map"]);
    assert_eq!(dir, ["FBA_ANALYSIS/Linking map", LINK]);
    let amazon = paths(&["ls", "latest", "FBA_ANALYSIS/amazon_cache/"]);
    assert!(amazon.len() > 10);
    assert!(amazon
        .iter()
        .all(|p| p.starts_with("FBA_ANALYSIS/amazon_cache")));
    // Paths match whole components: `amazon` is not `amazon_cache`.
    json(&repo, &["ls", "latest", "FBA_ANALYSIS/amazon"], 2);
    let all = paths(&["ls", "latest"]);
    assert!(all.len() > amazon.len() + 5);

    let err = json(&repo, &["ls", "latest", "FBA_ANALYSIS/nothing"], 2);
    assert_eq!(err["kind"], "not_found");
    assert!(err["error"]
        .as_str()
        .unwrap()
        .contains("FBA_ANALYSIS/nothing"));
    // The human listing too.
    let out = run_code(&["--repo", s(&repo)], &["ls", "latest", LINK], 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("linking_map.json"));
}

#[test]
fn find_takes_a_bare_name_or_a_glob() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    copy_fixture(&src);
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    json(
        &repo,
        &["snapshot", s(&src), "--time", "2026-11-01T00:00:00Z"],
        0,
    );
    let amazon = src.join(AMAZON);
    let mut changed = fs::read(&amazon).unwrap();
    changed.extend_from_slice(b"\n");
    fs::write(&amazon, changed).unwrap();
    json(
        &repo,
        &["snapshot", s(&src), "--time", "2026-11-02T00:00:00Z"],
        0,
    );
    let versions = |q: &str| -> Vec<(String, bool)> {
        json(&repo, &["find", q], 0)["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["path"].as_str().unwrap().to_string(),
                    v["changed"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    // A bare name, at any depth: both versions, the newer one changed.
    assert_eq!(
        versions("amazon_B0D98139R0.json"),
        [(AMAZON.to_string(), true), (AMAZON.to_string(), true)]
    );
    assert_eq!(
        versions("linking_map.json"),
        [(LINK.to_string(), false), (LINK.to_string(), true)]
    );
    assert!(versions("amazon_NOPE.json").is_empty());
    // Globs: `**` across folders, `*` within one; without a `/`, file names anywhere.
    assert_eq!(
        versions("**/linking_map.json"),
        versions("linking_map.json")
    );
    let amazon_all = versions("FBA_ANALYSIS/amazon_cache/amazon_*.json");
    let files = files_under(&src.join("FBA_ANALYSIS/amazon_cache"));
    assert_eq!(amazon_all.len(), 2 * files.len());
    assert!(versions("FBA_ANALYSIS/*.json")
        .iter()
        .all(|(p, _)| p == "FBA_ANALYSIS/processing_state.json"));
    let states = versions("*_state.json");
    let mut paths: Vec<&str> = states.iter().map(|(p, _)| p.as_str()).collect();
    paths.dedup();
    assert_eq!(
        paths,
        [
            "FBA_ANALYSIS/processing_state.json",
            "cached_products/resume_state.json"
        ]
    );
    // The table names each path when there are several.
    let out = run_code(&["--repo", s(&repo)], &["find", "*_state.json"], 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Path") && text.contains("resume_state.json"),
        "{text}"
    );
    // An exact path still means that path only.
    assert_eq!(versions(AMAZON).len(), 2);
    let err = json(&repo, &["find", "amazon_[.json"], 2);
    assert!(err["error"].as_str().unwrap().contains("amazon_["), "{err}");
}

/// The subcommands `cachevault --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let out = run_code(&[], &["--help"], 0);
    let text = String::from_utf8(out.stdout).unwrap();
    let list = text
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap();
    list.lines()
        // Descriptions that wrap continue on lines indented deeper than the names.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_help_has_examples_and_global_options_apart() {
    let names = subcommands();
    for want in [
        "snapshot",
        "restore",
        "dump",
        "find",
        "completions",
        "man",
        "config",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let top = String::from_utf8(run_code(&[], &["--help"], 0).stdout).unwrap();
    assert!(top.contains("Examples:"), "{top}");
    let mut commands: Vec<Vec<String>> = names.iter().map(|n| vec![n.clone()]).collect();
    commands.push(vec!["config".into(), "check".into()]);
    for c in commands {
        let mut args: Vec<&str> = c.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run_code(&[], &args, 0);
        let text = String::from_utf8(out.stdout).unwrap();
        let examples = text
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{c:?} --help has no Examples section:\n{text}"));
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with("cachevault ")),
            "{c:?}: no example command line:\n{text}"
        );
        // Global options under a heading of their own, apart from the command's options.
        let global = text
            .split("Global options:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{c:?} --help has no Global options section:\n{text}"));
        assert!(
            global.contains("--repo") && global.contains("--json"),
            "{text}"
        );
        let own = text.split("Global options:\n").next().unwrap();
        assert!(
            !own.contains("--lock-wait"),
            "{c:?}: globals mixed in:\n{text}"
        );
    }
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_code(&[], &["completions", shell], 0);
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.len() > 1000, "{shell}: {script}");
        for sub in ["snapshot", "restore", "dump", "find", "run-due"] {
            assert!(
                script.contains(sub),
                "{shell} script does not mention {sub}"
            );
        }
        assert!(script.contains("--config"), "{shell}");
    }
    run_code(&[], &["completions", "powershell-nope"], 2);
    if !require("bash", "check that the bash completion script parses") {
        return;
    }
    let t = TestDir::new();
    let script = t.write(
        "cachevault.bash",
        run_code(&[], &["completions", "bash"], 0).stdout,
    );
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourced, it registers a completion function for the command.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p cachevault", s(&script)))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("cachevault"),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
}

#[test]
fn man_prints_a_roff_page_that_groff_formats() {
    let out = run_code(&[], &["man"], 0);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH cachevault 1"),
        "{}",
        &page[..page.len().min(400)]
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        "COMMAND: CACHEVAULT DUMP",
        "COMMAND: CACHEVAULT FIND",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    if !require("groff", "format the manual page and find roff errors") {
        return;
    }
    let t = TestDir::new();
    let file = t.write("cachevault.1", &page);
    let formatted = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(formatted.status.success());
    let warnings = String::from_utf8_lossy(&formatted.stderr);
    assert!(warnings.trim().is_empty(), "groff warns: {warnings}");
    let text = String::from_utf8_lossy(&formatted.stdout);
    assert!(
        text.contains("Examples:") || text.contains("Examples"),
        "{text}"
    );
    assert!(text.contains("dump"), "{text}");
}

/// Whether `dir` is a mount point now (listed in /proc/self/mounts).
fn is_mounted(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let want = dir.to_str().unwrap().replace(' ', "\\040");
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
}

/// A running `cachevault mount`, unmounted and stopped on drop whatever the test did.
struct Mounted {
    child: std::process::Child,
    dir: PathBuf,
    stderr: PathBuf,
}

impl Mounted {
    /// Starts `mount` on `dir` and waits until the tree is served.
    fn start(repo: &Path, dir: &Path, log: &Path) -> Mounted {
        let child = Command::new(BIN)
            .args(["--repo", s(repo), "mount", s(dir)])
            .env_remove("CACHEVAULT_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mounted {
            child,
            dir: dir.to_path_buf(),
            stderr: log.to_path_buf(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !(is_mounted(dir) && dir.join("snapshots").is_dir()) {
            if let Some(status) = m.child.try_wait().unwrap() {
                panic!("mount exited with {status}: {}", m.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not mounted after 30 s: {}",
                m.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        m
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the process to end by itself; its exit code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mount did not stop: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unmounts a FUSE mount as a user would: `fusermount3 -u` or `fusermount -u`, else (as root)
/// `umount`.
fn unmount(dir: &Path) {
    for tool in ["fusermount3", "fusermount"] {
        if let Ok(out) = Command::new(tool).arg("-u").arg(dir).output() {
            assert!(
                out.status.success(),
                "{tool} -u: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
    }
    let out = Command::new("umount").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mount_serves_snapshots_read_only_and_verified() {
    if !require_that(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing",
        "mount the repository with FUSE",
    ) {
        return;
    }
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    copy_fixture(&src);
    // Larger than one chunk: a file of several blobs, read back across their edges.
    t.write("OUTPUTS/FBA_ANALYSIS/big_state.json", noise(3_500_000, 11));
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let first = json(
        &repo,
        &["snapshot", s(&src), "--time", "2026-11-01T10:00:00Z"],
        0,
    );
    fs::write(src.join(AMAZON), b"{\"asin\": \"changed\"}").unwrap();
    let second = json(
        &repo,
        &["snapshot", s(&src), "--time", "2026-11-02T10:00:00Z"],
        0,
    );
    let mnt = t.mkdirp("mnt");
    let mut m = Mounted::start(&repo, &mnt, &t.join("mount.log"));

    // The layout: every snapshot by time, by kind, and `latest`.
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&mnt), ["by-kind", "latest", "snapshots"]);
    let short = |v: &serde_json::Value| v["id"].as_str().unwrap()[..8].to_string();
    let older = format!("2026-11-01T10:00:00_{}", short(&first));
    let newer = format!("2026-11-02T10:00:00_{}", short(&second));
    assert_eq!(
        names(&mnt.join("snapshots")),
        [older.clone(), newer.clone()]
    );
    assert_eq!(names(&mnt.join("by-kind")), ["backup"]);
    assert_eq!(
        names(&mnt.join("by-kind/backup")),
        [older.clone(), newer.clone()]
    );
    assert_eq!(
        fs::read_link(mnt.join("latest")).unwrap(),
        Path::new("snapshots").join(&newer)
    );
    assert_eq!(
        names(&mnt.join("latest")),
        names(&src),
        "a snapshot folder holds the snapshot's root"
    );

    // Byte for byte, old and new versions, through the link and by kind.
    let original = fs::read(src.join(LINK)).unwrap();
    assert_eq!(fs::read(mnt.join("latest").join(LINK)).unwrap(), original);
    let old_amazon = fs::read(mnt.join("snapshots").join(&older).join(AMAZON)).unwrap();
    assert_ne!(old_amazon, fs::read(src.join(AMAZON)).unwrap());
    assert!(old_amazon.starts_with(b"{"), "the fixture's original JSON");
    assert_eq!(
        fs::read(mnt.join("by-kind/backup").join(&newer).join(AMAZON)).unwrap(),
        b"{\"asin\": \"changed\"}"
    );
    assert_eq!(
        fs::read(mnt.join("latest/FBA_ANALYSIS/big_state.json")).unwrap(),
        noise(3_500_000, 11)
    );
    // Ranges across a blob edge.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(mnt.join("latest/FBA_ANALYSIS/big_state.json")).unwrap();
        let mut buf = vec![0u8; 100_000];
        f.read_exact_at(&mut buf, 1_000_000).unwrap();
        assert_eq!(buf, noise(3_500_000, 11)[1_000_000..1_100_000]);
    }
    let meta = fs::metadata(mnt.join("latest").join(LINK)).unwrap();
    assert_eq!(meta.len(), original.len() as u64);

    // Read-only.
    assert!(fs::write(mnt.join("latest/new.json"), b"{}").is_err());
    assert!(fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("latest").join(LINK))
        .is_err());
    assert!(fs::remove_file(mnt.join("latest").join(LINK)).is_err());

    // Unmounted from outside, the command ends cleanly.
    unmount(&mnt);
    assert_eq!(m.wait(), Some(0), "{}", m.log());
    assert!(!is_mounted(&mnt));
    assert!(m.log().contains("unmounted"), "{}", m.log());
    drop(m);

    // SIGTERM (as Ctrl-C) unmounts and ends it too.
    let mut m = Mounted::start(&repo, &mnt, &t.join("mount2.log"));
    Command::new("kill")
        .args(["-TERM", &m.child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(m.wait(), Some(0), "{}", m.log());
    assert!(!is_mounted(&mnt), "{}", m.log());
}
