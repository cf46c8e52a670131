//! Several real `cachevault` processes at once on one repository and one cache tree:
//! snapshots, forget + prune, clear, restore and check, some with a short `--lock-wait` and
//! some with a long one, while the test rewrites the tree. Each process succeeds or refuses
//! with exit code 4 and "repository is locked ..."; afterwards `check --read-data` passes
//! and every snapshot restores exactly what its manifest records.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const DAY: i64 = 86_400;
/// Fixture files are this old (seconds since the epoch); `clear --now` is 20 days later.
const MTIME: i64 = 1_790_000_000;

/// One started process and what it is allowed to end with.
struct Started {
    name: String,
    child: Child,
    /// Exit codes that count as success (0, and 1 where "completed with skips" is normal).
    ok: &'static [i32],
    /// Whether it may refuse because the lock stayed taken (`--lock-wait 0`).
    may_refuse: bool,
}

fn start(cfg: &Path, name: &str, lock_wait: u64, args: &[&str], ok: &'static [i32]) -> Started {
    let child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(["--lock-wait", &lock_wait.to_string()])
        .args(args)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Started {
        name: name.to_string(),
        child,
        ok,
        may_refuse: lock_wait == 0,
    }
}

/// Waits for every process; returns how many refused. Panics on any other outcome.
fn finish(all: Vec<Started>) -> usize {
    let mut refused = 0;
    let mut problems = Vec::new();
    for s in all {
        let out = s.child.wait_with_output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let err = String::from_utf8_lossy(&out.stderr);
        if s.ok.contains(&code) {
            continue;
        }
        if code == 4 && s.may_refuse && err.contains("repository is locked") {
            refused += 1;
            continue;
        }
        problems.push(format!(
            "{}: exit {code}\n{err}{}",
            s.name,
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    refused
}

/// Restores `id` and compares the result with the manifest itself (`ls`): same paths, kinds,
/// sizes, content hashes and link targets, nothing more.
fn restores_exactly(cfg: &Path, id: &str, target: &Path) {
    json_cfg(
        cfg,
        &["restore", id, "--target", target.to_str().unwrap()],
        0,
    );
    let listing = json_cfg(cfg, &["ls", id], 0);
    let entries = listing["entries"].as_array().unwrap();
    for e in entries {
        let rel: Vec<u8> = match &e["path"] {
            Value::String(s) => s.as_bytes().to_vec(),
            other => hex(other["bytes"].as_str().unwrap()),
        };
        let p = target.join(std::ffi::OsStr::from_bytes(&rel));
        let m = fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{id}: {p:?}: {err}"));
        match e["type"].as_str().unwrap() {
            "file" => {
                assert!(m.is_file(), "{id}: {p:?}");
                assert_eq!(m.len(), e["size"].as_u64().unwrap(), "{id}: {p:?}");
                let h = blake3::hash(&fs::read(&p).unwrap());
                assert_eq!(h.to_hex().as_str(), e["hash"].as_str().unwrap(), "{p:?}");
            }
            "dir" => assert!(m.is_dir(), "{id}: {p:?}"),
            "symlink" => {
                let t = fs::read_link(&p).unwrap();
                assert_eq!(
                    t.as_os_str().as_bytes(),
                    e["target"].as_str().unwrap().as_bytes()
                );
            }
            other => panic!("{other}"),
        }
    }
    let on_disk = walkdir::WalkDir::new(target)
        .min_depth(1)
        .into_iter()
        .count();
    assert_eq!(on_disk, entries.len(), "{id}: extra paths in the restore");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The pid of a process holding the lock for `command`, from the lock's holder files.
fn holder(repo: &Path, command: &str) -> Option<u32> {
    for e in fs::read_dir(repo.join("locks")).ok()? {
        let p = e.ok()?.path();
        if p.extension().is_some_and(|x| x == "holder") {
            if let Ok(v) = serde_json::from_slice::<Value>(&fs::read(&p).unwrap_or_default()) {
                if v["command"] == command {
                    return v["pid"].as_u64().map(|p| p as u32);
                }
            }
        }
    }
    None
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Rewrites, adds and removes cache files until told to stop.
fn churn(root: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let dir = root.join("FBA_ANALYSIS/amazon_cache");
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let i = n % 40;
            let body = json_array(20 + n % 30, 10_000 + n as u64);
            // In place (a torn read must be detected) and by rename (as the agent writes).
            if n.is_multiple_of(2) {
                fs::write(dir.join(format!("amazon_B0CHURN{i:04}.json")), body).unwrap();
            } else {
                let tmp = dir.join(format!(".amazon_B0CHURN{i:04}.json.tmp"));
                fs::write(&tmp, body).unwrap();
                fs::rename(&tmp, dir.join(format!("amazon_B0CHURN{i:04}.json"))).unwrap();
            }
            if n.is_multiple_of(7) {
                let _ =
                    fs::remove_file(dir.join(format!("amazon_B0CHURN{:04}.json", (i + 13) % 40)));
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

#[test]
fn concurrent_processes_succeed_or_refuse_and_corrupt_nothing() {
    let t = TestDir::new();
    let cfg = config_tree(&t, MTIME);
    let root = t.join("OUTPUTS");
    // Enough data that a snapshot with --rehash takes a while.
    for i in 0..300 {
        let p = root.join(format!(
            "FBA_ANALYSIS/amazon_cache/amazon_B0BULK{i:05}.json"
        ));
        fs::write(&p, json_array(60 + i % 50, i as u64 + 1)).unwrap();
        set_times(&p, MTIME, MTIME);
    }
    let repo = t.join("cachevault-repo");
    json_cfg(&cfg, &["init"], 0);
    let first = json_cfg(&cfg, &["snapshot"], 0);
    let first_id = first["id"].as_str().unwrap().to_string();
    let clear_now = chrono::DateTime::from_timestamp(MTIME + 20 * DAY, 0)
        .unwrap()
        .to_rfc3339();

    // 1. Deterministic: a snapshot frozen (SIGSTOP) while it holds the shared lock. Exclusive
    //    operations with --lock-wait 0 refuse, shared ones go ahead, long waiters wait.
    let mut stopped = None;
    for _attempt in 0..20 {
        let s = start(
            &cfg,
            "frozen snapshot",
            60,
            &["snapshot", "--rehash"],
            &[0, 1],
        );
        let pid = s.child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while holder(&repo, "snapshot") != Some(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        signal(pid, "-STOP");
        // It may have finished between the check and the signal: then try again.
        if holder(&repo, "snapshot") == Some(pid) {
            stopped = Some(s);
            break;
        }
        signal(pid, "-CONT");
        finish(vec![s]);
    }
    let frozen = stopped.expect("no snapshot could be caught holding the lock");
    let frozen_pid = frozen.child.id();
    let refusals = finish(vec![
        start(&cfg, "prune (no wait)", 0, &["prune"], &[]),
        start(
            &cfg,
            "clear (no wait)",
            0,
            &["clear", "--strategy", "ttl", "--now", &clear_now],
            &[],
        ),
        start(
            &cfg,
            "forget (no wait)",
            0,
            &["forget", "--keep-last", "1"],
            &[],
        ),
    ]);
    assert_eq!(refusals, 3, "every exclusive operation must refuse");
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--lock-wait",
        "0",
        "prune",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        err.contains("repository is locked")
            && err.contains("snapshot")
            && err.contains(&frozen_pid.to_string()),
        "the message names the holder: {err}"
    );
    // Shared operations run beside the frozen snapshot.
    let beside = vec![
        start(
            &cfg,
            "restore (no wait)",
            0,
            &[
                "restore",
                &first_id,
                "--target",
                t.join("r-beside").to_str().unwrap(),
            ],
            &[0],
        ),
        start(&cfg, "check (no wait)", 0, &["check"], &[0]),
    ];
    assert_eq!(
        finish(beside),
        0,
        "shared locks must not exclude each other"
    );
    // A long waiter waits for the frozen snapshot, then runs.
    let waiter = start(&cfg, "prune (waits)", 60, &["prune"], &[0]);
    std::thread::sleep(Duration::from_millis(300));
    signal(frozen_pid, "-CONT");
    assert_eq!(finish(vec![frozen, waiter]), 0);

    // 2. Everything at once, while the tree changes underneath.
    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(root.clone(), stop.clone());
    let mut all = Vec::new();
    for i in 0..3 {
        all.push(start(
            &cfg,
            &format!("snapshot {i} (waits)"),
            60,
            &["snapshot", "--rehash"],
            &[0, 1],
        ));
    }
    for i in 0..2 {
        all.push(start(
            &cfg,
            &format!("snapshot {i} (no wait)"),
            0,
            &["snapshot"],
            &[0, 1],
        ));
    }
    all.push(start(
        &cfg,
        "forget + prune (waits)",
        60,
        &[
            "forget",
            "--keep-last",
            "3",
            "--prune",
            "--max-unused",
            "0%",
            // At the clear's time: its pre-clear snapshot is then a young safety snapshot.
            "--now",
            &clear_now,
        ],
        &[0],
    ));
    all.push(start(
        &cfg,
        "clear (waits)",
        60,
        &["clear", "--strategy", "ttl", "--now", &clear_now],
        &[0, 1],
    ));
    all.push(start(
        &cfg,
        "restore (waits)",
        60,
        &[
            "restore",
            "latest",
            "--target",
            t.join("r-all").to_str().unwrap(),
        ],
        &[0],
    ));
    all.push(start(&cfg, "prune (no wait)", 0, &["prune"], &[0]));
    all.push(start(
        &cfg,
        "check (no wait)",
        0,
        &["check", "--read-data"],
        &[0],
    ));
    let refused = finish(all);
    stop.store(true, Ordering::Relaxed);
    let changes = churner.join().unwrap();
    eprintln!("{refused} processes refused; the tree changed {changes} times meanwhile");

    // 3. Nothing is corrupted: the repository checks whole and every snapshot restores
    //    exactly what it recorded.
    let report = json_cfg(&cfg, &["check", "--read-data"], 0);
    assert_eq!(report["ok"], true, "{report}");
    let snaps = json_cfg(&cfg, &["snapshots"], 0);
    let ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 3, "{snaps}");
    for (n, id) in ids.iter().enumerate() {
        restores_exactly(&cfg, id, &t.join(format!("verify-{n}")));
    }
    // The clear really ran, and its pre-clear snapshot is one of those verified.
    assert!(snaps.as_array().unwrap().iter().any(|s| s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "pre-clear")));
}

// See: `check` read the indexes, then listed the manifests; a snapshot finishing in between
// (snapshots and check share the lock) left a manifest whose blobs were "not in any index",
// and check reported damage that was not there.
#[test]
fn check_beside_running_snapshots_reports_no_false_damage() {
    let t = TestDir::new();
    let src = t.mkdirp("src");
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    // A large index makes check's reading of the indexes take long enough for snapshots to
    // finish meanwhile.
    let big = t.mkdirp("big");
    for i in 0..20_000 {
        fs::write(big.join(format!("f{i:05}.json")), format!("{{\"n\": {i}}}")).unwrap();
    }
    json(&repo, &["snapshot", big.to_str().unwrap()], 0);
    let r = repo.to_str().unwrap().to_string();
    let s = src.to_str().unwrap().to_string();
    let writer = std::thread::spawn(move || {
        for i in 0..30 {
            fs::write(Path::new(&s).join(format!("f{i}.json")), json_array(3, i)).unwrap();
            let out = run(&["--repo", &r, "snapshot", &s]);
            assert_eq!(out.status.code(), Some(0), "{out:?}");
        }
    });
    let mut checks = 0;
    while !writer.is_finished() {
        let out = run(&["--repo", repo.to_str().unwrap(), "check"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "check {checks} found damage beside a snapshot:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        checks += 1;
    }
    writer.join().unwrap();
    assert!(checks > 3, "only {checks} checks ran");
}

// See: clear walked a cache folder, then stat'ed each file; a file the agent deleted in
// between failed the whole clear ("No such file or directory", nothing cleared).
#[test]
fn clear_beside_an_agent_deleting_files_plans_without_them() {
    let t = TestDir::new();
    let cfg = config_tree(&t, MTIME);
    json_cfg(&cfg, &["init"], 0);
    let dir = t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache");
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..100 {
                    let p = dir.join(format!("amazon_B0GONE{i:04}.json"));
                    if n.is_multiple_of(2) {
                        let _ = fs::write(&p, b"{}");
                    } else {
                        let _ = fs::remove_file(&p);
                    }
                }
                n += 1;
            }
        })
    };
    for i in 0..40 {
        let out = run(&[
            "--config",
            cfg.to_str().unwrap(),
            "clear",
            "--strategy",
            "full",
            "--type",
            "amazon_cache",
            "--dry-run",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "clear {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
}
