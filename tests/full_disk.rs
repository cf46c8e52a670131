//! A repository on a small tmpfs that fills up mid-snapshot: the snapshot fails saying the
//! disk is full (exit 2), records no manifest, leaves nothing behind that `check` minds, and
//! once space is freed the next snapshot works. (clear's full-disk test is in clear.rs.)

mod common;

use std::fs;
use std::path::Path;

use cachevault::compare::compare_trees;
use common::*;

/// Every temp file under `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn a_full_disk_fails_the_snapshot_cleanly_and_the_next_one_works() {
    let t = TestDir::new();
    let disk = t.join("smalldisk");
    let _mounted = match Tmpfs::mount(&disk, "4m") {
        Ok(m) => m,
        Err(why) => {
            require_that(false, &why, "fill a small tmpfs");
            return;
        }
    };
    let repo = disk.join("repo");
    json(&repo, &["init"], 0);
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let filler = disk.join("filler");
    // Two rounds: a tree that fits in the archive writer's buffer (the disk fills when the
    // archive is flushed and closed), then one that fills it while frames are appended.
    for (round, (noise_kib, filler_kib)) in [(700usize, 3500usize), (2600, 2000)]
        .into_iter()
        .enumerate()
    {
        fs::write(
            src.join(format!("noise{round}.bin")),
            noise(noise_kib << 10, round as u64 + 5),
        )
        .unwrap();
        fs::write(&filler, vec![7u8; filler_kib << 10]).unwrap();
        let out = run(&[
            "--repo",
            repo.to_str().unwrap(),
            "--json",
            "snapshot",
            src.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "round {round}: {err}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["kind"], "disk_full", "round {round}: {doc}");
        // See: when the archive writer failed after the last file frame was handed over,
        // storing the entry list met a closed channel and the snapshot reported only
        // "archive writer stopped (see the error it reported)", never the full disk.
        assert!(
            err.contains("No space left on device"),
            "round {round}: {err}"
        );
        assert_eq!(
            json(&repo, &["snapshots"], 0).as_array().unwrap().len(),
            round,
            "round {round}: the failed snapshot wrote a manifest"
        );
        // See: a write that failed while the archive was closed left its temp file behind,
        // still holding the space whose lack made it fail.
        assert!(
            temp_files(&repo).is_empty(),
            "round {round}: {:?}",
            temp_files(&repo)
        );
        assert_eq!(json(&repo, &["check"], 0)["ok"], true, "round {round}");

        // Free the space: the same snapshot now works and restores exactly.
        fs::remove_file(&filler).unwrap();
        let s = json(&repo, &["snapshot", src.to_str().unwrap()], 0);
        assert_eq!(s["complete"], true);
        assert_eq!(json(&repo, &["check", "--read-data"], 0)["ok"], true);
        let out = t.join(format!("restored{round}"));
        json(
            &repo,
            &["restore", "latest", "--target", out.to_str().unwrap()],
            0,
        );
        let diffs = compare_trees(&src, &out, false).unwrap();
        assert!(diffs.is_empty(), "round {round}: {diffs:?}");
    }
}
