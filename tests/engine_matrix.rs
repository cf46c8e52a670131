//! The engine's life cycle, run once per kind of repository: a local folder and an S3 bucket
//! (moto), each plain and encrypted. Each scenario is written once over a [`Target`]; the
//! `matrix!` macro gives it a test per kind, so a backend or the encryption cannot pass by
//! being tested less. Snapshot, restore (whole and
//! one file), check --read-data, forget + prune, clear + undo, repair + undo, every crash
//! point, and kill -9 in the middle of a snapshot and of a prune.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::s3::Moto;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cachevault");

/// A repository of one kind, with a scratch folder for trees and restores.
struct Target {
    repo: String,
    dir: TestDir,
    encrypt: bool,
    _moto: Option<Moto>,
}

/// The password every encrypted target uses (child processes inherit it), with the cheap key
/// derivation meant for tests; plain repositories ignore both.
fn password_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("CACHEVAULT_PASSWORD", "matrix password");
        std::env::set_var("CACHEVAULT_INSECURE_TEST_KDF", "1");
    });
}

impl Target {
    fn local(encrypt: bool) -> Option<Target> {
        password_env();
        let dir = TestDir::new();
        let repo = dir.join("repo").to_str().unwrap().to_owned();
        Some(Target {
            repo,
            dir,
            encrypt,
            _moto: None,
        })
    }

    fn s3(encrypt: bool) -> Option<Target> {
        password_env();
        let moto = Moto::start()?;
        moto.bucket("matrix");
        Some(Target {
            repo: moto.url("matrix", "repo"),
            dir: TestDir::new(),
            encrypt,
            _moto: Some(moto),
        })
    }

    fn init_args(&self) -> [&'static str; 2] {
        [
            "init",
            if self.encrypt {
                "--encrypt"
            } else {
                "--no-encrypt"
            },
        ]
    }

    /// Creates the repository, encrypted or not.
    fn init(&self) {
        let i = self.json(&self.init_args(), 0);
        assert_eq!(i["encrypted"], self.encrypt, "{i}");
    }

    /// `--json` run against this repository, asserting the exit code.
    fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        json_with(&["--repo", &self.repo], args, code)
    }

    /// A child process against this repository with extra environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["--repo", &self.repo])
            .args(args)
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn check(&self) {
        let c = self.json(&["check", "--read-data"], 0);
        assert_eq!(c["ok"], true, "{c}");
    }

    /// Restores `snap` of `src` into a fresh folder and asserts it equals `expected`.
    fn restore_exact(&self, snap: &str, src: &Path, expected: &Path) {
        let target = self.dir.join(format!("restore-{}", unique()));
        self.json(
            &[
                "restore",
                snap,
                "--snapshot-path",
                src.to_str().unwrap(),
                "--target",
                target.to_str().unwrap(),
            ],
            0,
        );
        let diff = cachevault::compare::compare_trees(expected, &target, false).unwrap();
        assert!(diff.is_empty(), "restore of {snap} differs: {diff:?}");
    }

    /// The shipped config over a copy of the fixtures, its repository this one.
    fn config(&self) -> (PathBuf, PathBuf) {
        let t = self.dir.join(format!("cfg-{}", unique()));
        fs::create_dir_all(&t).unwrap();
        let root = t.join("OUTPUTS");
        copy_fixture(&root);
        for f in files_under(&root) {
            set_times(&root.join(f), 1_700_000_000, 1_700_000_000);
        }
        let cfg = default_config(&t);
        let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
        doc["cache"]["repository"] = self.repo.clone().into();
        fs::write(&cfg, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        (cfg, root)
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn frozen(src: &Path, into: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(into);
    copy_tree(src, into);
    into.to_path_buf()
}

/// One test per scenario and kind of repository.
macro_rules! matrix {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[test]
            fn $scenario() {
                if let Some(t) = super::Target::local(false) {
                    super::$scenario(&t);
                }
            })*
        }
        mod s3 {
            $(#[test]
            fn $scenario() {
                if let Some(t) = super::Target::s3(false) {
                    super::$scenario(&t);
                }
            })*
        }
        mod local_encrypted {
            $(#[test]
            fn $scenario() {
                if let Some(t) = super::Target::local(true) {
                    super::$scenario(&t);
                }
            })*
        }
        mod s3_encrypted {
            $(#[test]
            fn $scenario() {
                if let Some(t) = super::Target::s3(true) {
                    super::$scenario(&t);
                }
            })*
        }
    };
}

matrix!(
    snapshot_restore_check,
    forget_prune_keep_what_the_policy_keeps,
    clear_undo_and_repair_undo_are_exact,
    every_crash_point_leaves_a_sound_repository,
    kill_9_mid_snapshot_and_mid_prune,
);

/// Two snapshots; each restores exactly, whole and one file; ls and diff see the change.
fn snapshot_restore_check(t: &Target) {
    t.init();
    let src = t.dir.join("OUTPUTS");
    fixture_tree(&src);
    add_awkward(&src);
    let s1 = t.json(&["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(s1["complete"], true, "{s1}");
    let first = frozen(&src, &t.dir.join("first"));

    fs::write(src.join("grown.json"), json_array(4000, 7)).unwrap();
    let gone = files_under(&src)
        .into_iter()
        .find(|f| f.ends_with(".json") && !f.contains("link"))
        .unwrap();
    fs::remove_file(src.join(&gone)).unwrap();
    let s2 = t.json(&["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(s2["files_new"], 1, "{s2}");
    assert!(s2["files_unchanged"].as_u64().unwrap() > 0, "{s2}");

    t.restore_exact(s1["id"].as_str().unwrap(), &src, &first);
    t.restore_exact("latest", &src, &src);

    // One file, by its path in the snapshot.
    let one = t.dir.join("one");
    t.json(
        &[
            "restore",
            s1["id"].as_str().unwrap(),
            "--path",
            &gone,
            "--target",
            one.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(
        fs::read(one.join(&gone)).unwrap(),
        fs::read(first.join(&gone)).unwrap()
    );

    let ls = t.json(&["ls", "latest"], 0);
    assert!(ls.to_string().contains("grown.json"), "{ls}");
    let d = t.json(
        &[
            "diff",
            s1["id"].as_str().unwrap(),
            s2["id"].as_str().unwrap(),
        ],
        0,
    );
    assert!(d.to_string().contains("grown.json"), "{d}");
    t.check();
}

/// Snapshots a day apart; forget --keep-daily 3 --prune keeps the newest three, each of which
/// still restores exactly, and check reads every byte afterwards.
fn forget_prune_keep_what_the_policy_keeps(t: &Target) {
    t.init();
    let src = t.dir.join("OUTPUTS");
    fixture_tree(&src);
    let day = 86_400;
    let base = chrono::Utc::now().timestamp() - 10 * day;
    let mut kept = Vec::new();
    for i in 0..6i64 {
        fs::write(
            src.join(format!("day-{i}.json")),
            json_array(500 + i as usize * 100, i as u64),
        )
        .unwrap();
        let time = chrono::DateTime::from_timestamp(base + i * day, 0)
            .unwrap()
            .to_rfc3339();
        let s = t.json(&["snapshot", src.to_str().unwrap(), "--time", &time], 0);
        if i >= 3 {
            let frozen = frozen(&src, &t.dir.join(format!("state-{i}")));
            kept.push((s["id"].as_str().unwrap().to_owned(), frozen));
        }
    }
    let f = t.json(&["forget", "--keep-daily", "3", "--prune"], 0);
    assert_eq!(f["removed"].as_array().map(Vec::len), Some(3), "{f}");
    let left = t.json(&["snapshots"], 0);
    let ids: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    for (id, state) in &kept {
        assert!(ids.contains(&id.as_str()), "{id} was kept: {left}");
        t.restore_exact(id, &src, state);
    }
    t.check();
    // Nothing more to do for a second prune.
    let p = t.json(&["prune"], 0);
    assert_eq!(p["archives_deleted"], 0, "{p}");
    assert_eq!(p["archives_repacked"], 0, "{p}");
}

/// A configured cache whose repository is this one: a full clear and its undo, a repair from
/// history and its undo, each leaving the tree exactly as it was.
fn clear_undo_and_repair_undo_are_exact(t: &Target) {
    let (cfg, root) = t.config();
    json_cfg(&cfg, &t.init_args(), 0);
    let before = frozen(&root, &t.dir.join("before-clear"));
    let c = json_cfg(&cfg, &["clear", "--strategy", "full"], 0);
    assert!(c["bytes_freed"].as_u64().unwrap_or(0) > 0, "{c}");
    assert!(files_under(&root).len() < files_under(&before).len());
    json_cfg(&cfg, &["undo"], 0);
    let diff = cachevault::compare::compare_trees(&before, &root, false).unwrap();
    assert!(diff.is_empty(), "undo of the clear differs: {diff:?}");

    json_cfg(&cfg, &["snapshot"], 0);
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    let victim = amazon.join(&files_under(&amazon)[0]);
    let good = fs::read(&victim).unwrap();
    fs::write(&victim, b"{\"truncated").unwrap();
    let v = json_cfg(&cfg, &["validate"], 1);
    assert_eq!(v["by_type"]["amazon_cache"]["invalid"], 1, "{v}");
    let r = json_cfg(&cfg, &["repair"], 0);
    assert_eq!(r["repaired"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(fs::read(&victim).unwrap(), good);
    json_cfg(&cfg, &["undo"], 0);
    assert_eq!(fs::read(&victim).unwrap(), b"{\"truncated");
    t.check();
}

/// Each deterministic crash point (an abort between two writes, as a power cut): nothing
/// half-made is visible, check reads every byte, and the next run restores exactly.
fn every_crash_point_leaves_a_sound_repository(t: &Target) {
    t.init();
    let src = t.dir.join("OUTPUTS");
    fixture_tree(&src);
    t.json(&["snapshot", src.to_str().unwrap()], 0);
    for (n, point) in [
        "archive.before_rename",
        "archive.before_index",
        "snapshot.before_manifest",
    ]
    .into_iter()
    .enumerate()
    {
        fs::write(
            src.join(format!("crash-{n}.json")),
            json_array(300, n as u64 + 11),
        )
        .unwrap();
        let out = t
            .command(&["snapshot", src.to_str().unwrap()])
            .env("CACHEVAULT_FAULT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} did not fire");
        let n_snaps = t.json(&["snapshots"], 0).as_array().unwrap().len();
        assert_eq!(n_snaps, 1, "{point} published a snapshot");
        t.check();
    }
    // A file of the first snapshot only: what prune has to repack once it is forgotten.
    fs::remove_file(src.join("FBA_ANALYSIS/amazon_cache/amazon_B00LN6W62K.json")).unwrap();
    let s = t.json(&["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(s["files_new"], 3, "{s}");
    t.restore_exact("latest", &src, &src);

    // Prune's points: forget the first snapshot, then crash the prune at each.
    let first = t.json(&["snapshots"], 0)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.json(&["forget", &first], 0);
    for point in ["prune.after_repack", "prune.after_index_delete"] {
        let out = t
            .command(&["prune", "--max-unused", "0"])
            .env("CACHEVAULT_FAULT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} did not fire");
        t.check();
        t.restore_exact("latest", &src, &src);
    }
    t.json(&["prune", "--max-unused", "0"], 0);
    t.check();
    t.restore_exact("latest", &src, &src);
}

/// kill -9 while a snapshot reads and while a prune repacks (each stopped exactly there first):
/// the repository stays sound, and the next snapshot and prune complete.
fn kill_9_mid_snapshot_and_mid_prune(t: &Target) {
    t.init();
    let src = t.dir.join("OUTPUTS");
    fixture_tree(&src);
    for i in 0..40 {
        fs::write(src.join(format!("bulk-{i}.json")), json_array(200, 100 + i)).unwrap();
    }
    t.json(&["snapshot", src.to_str().unwrap()], 0);
    fs::write(src.join("late.json"), json_array(2000, 3)).unwrap();

    let kill_at = |args: &[&str], pause: &str| {
        let mut child = t
            .command(args)
            .env("CACHEVAULT_PAUSE", pause)
            .spawn()
            .unwrap();
        wait_stopped(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
    };
    kill_at(
        &["snapshot", src.to_str().unwrap(), "--rehash"],
        "snapshot.reading",
    );
    assert_eq!(t.json(&["snapshots"], 0).as_array().unwrap().len(), 1);
    t.check();
    t.json(&["snapshot", src.to_str().unwrap()], 0);
    t.restore_exact("latest", &src, &src);

    // Half of the bulk goes; the first snapshot is forgotten, so prune must repack.
    for i in 0..20 {
        fs::remove_file(src.join(format!("bulk-{i}.json"))).unwrap();
    }
    t.json(&["snapshot", src.to_str().unwrap()], 0);
    let snaps = t.json(&["snapshots"], 0);
    for s in &snaps.as_array().unwrap()[..2] {
        t.json(&["forget", s["id"].as_str().unwrap()], 0);
    }
    kill_at(&["prune", "--max-unused", "0"], "prune.after_repack");
    t.check();
    t.restore_exact("latest", &src, &src);
    t.json(&["prune", "--max-unused", "0"], 0);
    t.check();
    t.restore_exact("latest", &src, &src);
}

/// Waits until process `pid` is stopped (state T in /proc), as `CACHEVAULT_PAUSE` leaves it.
fn wait_stopped(pid: u32) {
    let start = std::time::Instant::now();
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if state == Some("T") {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "process {pid} never reached its pause point: {stat}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
