//! kill -9 at many moments of a real `cachevault snapshot` child process: the repository
//! must pass `check --read-data` afterwards and take the next snapshot normally.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn kill_9_mid_snapshot_leaves_a_sound_repository() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    // ~40 MB across 1,200 files so a snapshot takes long enough to be interrupted.
    for i in 0..1200 {
        let body = json_array(120 + i % 40, i as u64 + 1);
        t.write(
            format!("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_{i:06}.json"),
            body,
        );
    }
    t.write(
        "OUTPUTS/FBA_ANALYSIS/Linking map/linking_map.json",
        json_array(30_000, 99),
    );
    let repo = t.join("repo");
    let repo_s = repo.to_str().unwrap();
    let src_s = src.to_str().unwrap();
    json(&repo, &["init"], 0);

    // Kill at fractions of how long a full snapshot takes on this machine, so the kills land
    // mid-way whether the machine is fast or busy. (The timed snapshots re-read everything and
    // find most blobs already stored, like the killed ones.) The timing is the fastest of two,
    // and whenever a snapshot still finishes before its kill (the machine got less busy, say),
    // the later delays shrink and more rounds run, up to a bound.
    json(&repo, &["snapshot", src_s], 0);
    let full_ms = (0..2)
        .map(|_| {
            let started = std::time::Instant::now();
            json(&repo, &["snapshot", src_s, "--rehash"], 0);
            started.elapsed().as_millis() as u64
        })
        .min()
        .unwrap();
    const FRACTIONS: [f64; 8] = [0.02, 0.08, 0.15, 0.25, 0.35, 0.45, 0.55, 0.70];
    let mut scale = 1.0f64;
    let mut interrupted = 0;
    let mut finished = Vec::new();
    for round in 0..20 {
        if round >= FRACTIONS.len() && interrupted >= 6 {
            break;
        }
        let delay_ms =
            ((full_ms as f64 * FRACTIONS[round % FRACTIONS.len()] * scale) as u64).max(1);
        // Change some files each round so every snapshot has work to do.
        for i in (round * 50)..(round * 50 + 50) {
            t.write(
                format!("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_{i:06}.json"),
                json_array(100, 1000 + (round * 7919 + i) as u64),
            );
        }
        let mut child = Command::new(BIN)
            .args(["--repo", repo_s, "snapshot", src_s, "--rehash"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        match child.try_wait().unwrap() {
            None => interrupted += 1,
            Some(status) => {
                finished.push(format!("{delay_ms} ms: {status}"));
                scale *= 0.6;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let report = json(&repo, &["check", "--read-data"], 0);
        assert_eq!(
            report["ok"], true,
            "round {round} (killed at {delay_ms} ms): {report}"
        );
    }
    assert!(
        interrupted >= 6,
        "only {interrupted} snapshots were interrupted mid-way; finished before the kill: {finished:?}"
    );

    // The next snapshot works normally and restores exactly.
    let s = json(&repo, &["snapshot", src_s], 0);
    assert_eq!(s["complete"], true);
    let out = t.join("restored");
    json(
        &repo,
        &["restore", "latest", "--target", out.to_str().unwrap()],
        0,
    );
    let diffs = cachevault::compare::compare_trees(&src, &out, false).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    // Leftover temp files are ignored by readers; nothing half-written was published.
    for d in ["snapshots", "index"] {
        for e in fs::read_dir(repo.join(d)).unwrap() {
            let name = e.unwrap().file_name();
            let name = name.to_string_lossy();
            assert!(
                name.starts_with('.') || !name.ends_with(".tmp"),
                "{d}/{name}"
            );
        }
    }
}

/// Every deterministic crash point a snapshot passes through.
#[test]
fn snapshot_crash_points_leave_a_sound_repository() {
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    for (n, point) in [
        "archive.before_rename",
        "archive.before_index",
        "snapshot.before_manifest",
    ]
    .iter()
    .enumerate()
    {
        t.write(
            format!("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_crash{n}.json"),
            json_array(50, n as u64 + 3),
        );
        let out = Command::new(BIN)
            .args([
                "--repo",
                repo.to_str().unwrap(),
                "snapshot",
                src.to_str().unwrap(),
            ])
            .env("CACHEVAULT_FAULT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} did not fire");
        assert_eq!(
            json(&repo, &["snapshots"], 0).as_array().unwrap().len(),
            1,
            "{point} published a snapshot"
        );
        assert_eq!(
            json(&repo, &["check", "--read-data"], 0)["ok"],
            true,
            "{point}"
        );
    }
    let s = json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(s["files_new"], 3);
    let out = t.join("restored");
    json(
        &repo,
        &["restore", "latest", "--target", out.to_str().unwrap()],
        0,
    );
    assert!(cachevault::compare::compare_trees(&src, &out, true)
        .unwrap()
        .is_empty());
}
