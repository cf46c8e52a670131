//! What a backup is: snapshot kinds, `latest` and `--at` meaning the newest complete backup of
//! one root, filters, retention by root and kind (safety snapshots expire), times from the
//! future refused or passed over, and two roots in one repository that never cross. Real
//! trees, real child processes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use cachevault::compare::compare_trees;
use common::*;
use serde_json::Value;

const DAY: i64 = 86_400;

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn snapshot_list(cfg: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["snapshots"];
    args.extend_from_slice(extra);
    json_cfg(cfg, &args, 0).as_array().unwrap().clone()
}

/// The issue's scenario: a backup, then a smart_selective clear of the supplier pages, then a
/// disaster restore of `latest`: it must be the whole backup, not the pre-clear snapshot.
#[test]
fn restore_latest_after_a_clear_restores_the_full_backup() {
    let t = TestDir::new();
    let mtime = chrono::Utc::now().timestamp() - 40 * DAY;
    let cfg = config_tree(&t, mtime);
    let root = t.join("OUTPUTS");
    json_cfg(&cfg, &["init"], 0);
    let backup = json_cfg(&cfg, &["snapshot"], 0);
    assert_eq!(backup["kind"], "backup");
    // Files and bytes per cache type are recorded (state files belong to none).
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    let amazon_files = files_under(&amazon);
    let amazon_bytes: u64 = amazon_files
        .iter()
        .map(|f| fs::metadata(amazon.join(f)).unwrap().len())
        .sum();
    assert_eq!(
        backup["types"]["amazon_cache"]["files"],
        amazon_files.len() as u64
    );
    assert_eq!(backup["types"]["amazon_cache"]["bytes"], amazon_bytes);
    assert_eq!(
        backup["types"]["ai_category_cache"]["files"], 0,
        "not backed up"
    );
    let at_backup = t.join("at-backup");
    copy_tree(&root, &at_backup);
    let clear = json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "smart_selective",
            "--type",
            "supplier_cache",
        ],
        0,
    );
    let touched =
        clear["deleted"].as_array().unwrap().len() + clear["rewritten"].as_array().unwrap().len();
    assert!(touched > 0, "the clear must do something: {clear}");

    // Kinds are listed, in JSON and in the table.
    let snaps = snapshot_list(&cfg, &[]);
    assert_eq!(snaps.len(), 2);
    let kinds: Vec<&str> = snaps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["backup", "pre-clear"], "{snaps:?}");
    assert!(snaps.iter().all(|s| s["complete"] == true));
    let table = run(&["--config", s(&cfg), "snapshots"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("Kind") && table.contains("pre-clear"),
        "{table}"
    );

    // `latest` is the backup: the whole tree as it was, not the handful the clear removed.
    let target = t.join("R");
    let r = json_cfg(&cfg, &["restore", "latest", "--target", s(&target)], 0);
    assert_eq!(r["snapshot"], backup["id"], "{r}");
    assert_eq!(r["snapshot_kind"], "backup");
    assert_eq!(r["snapshot_time"], backup["time"]);
    let backed_up = backup["files_new"].as_u64().unwrap();
    assert_eq!(r["files"].as_u64().unwrap(), backed_up);
    assert!(backed_up as usize > touched);
    for f in files_under(&target) {
        assert_eq!(
            fs::read(target.join(&f)).unwrap(),
            fs::read(at_backup.join(&f)).unwrap(),
            "{f}"
        );
    }
    // The restore says which snapshot it used, on stderr for people too.
    let out = run(&[
        "--config",
        s(&cfg),
        "restore",
        "latest",
        "--target",
        s(&t.join("R2")),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    let short = &backup["id"].as_str().unwrap()[..8];
    assert!(
        err.contains(&format!("using snapshot {short}")) && err.contains("backup"),
        "{err}"
    );

    // The pre-clear snapshot is there to be asked for by kind.
    let pre = json_cfg(
        &cfg,
        &[
            "restore",
            "latest",
            "--kind",
            "pre-clear",
            "--target",
            s(&t.join("P")),
        ],
        0,
    );
    assert_eq!(pre["snapshot"], clear["snapshot"]);
    assert_eq!(pre["snapshot_kind"], "pre-clear");
    assert_eq!(pre["files"].as_u64().unwrap() as usize, touched);
    // Filters on the listing.
    assert_eq!(snapshot_list(&cfg, &["--kind", "pre-clear"]).len(), 1);
    assert_eq!(
        snapshot_list(&cfg, &["--tag", "pre-clear,clear:smart_selective"]).len(),
        1
    );
    assert_eq!(snapshot_list(&cfg, &["--tag", "nope"]).len(), 0);
    assert_eq!(snapshot_list(&cfg, &["--path", s(&root)]).len(), 2);
    assert_eq!(snapshot_list(&cfg, &["--host", "no-such-host"]).len(), 0);

    // --at means the newest backup at or before the time, and says so.
    let at = json_cfg(
        &cfg,
        &[
            "restore",
            "--at",
            &iso(chrono::Utc::now().timestamp() + 60),
            "--target",
            s(&t.join("A")),
        ],
        0,
    );
    assert_eq!(at["snapshot"], backup["id"]);
    assert_eq!(at["snapshot_kind"], "backup");

    // diff with no snapshot named compares the two newest backups: one backup only here.
    let second = json_cfg(&cfg, &["snapshot"], 0);
    let d = json_cfg(&cfg, &["diff"], 0);
    assert_eq!(d["a"]["id"], backup["id"], "{d}");
    assert_eq!(d["b"]["id"], second["id"]);
    assert_eq!(d["b"]["kind"], "backup");
}

#[test]
fn a_time_in_the_future_is_refused_and_a_future_manifest_is_passed_over() {
    let t = TestDir::new();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let src = t.mkdirp("src");
    fs::write(src.join("a.json"), "{}").unwrap();

    let out = json(
        &repo,
        &["snapshot", s(&src), "--time", "2030-01-01 00:00:00"],
        2,
    );
    let err = out["error"].as_str().unwrap();
    assert!(
        err.contains("--time") && err.contains("2030-01-01"),
        "{err}"
    );
    assert!(json(&repo, &["snapshots"], 0)
        .as_array()
        .unwrap()
        .is_empty());
    // A few seconds ahead (clocks a little apart) is fine.
    let soon = iso(chrono::Utc::now().timestamp() + 60);
    json(&repo, &["snapshot", s(&src)], 0);
    let good = json(&repo, &["snapshot", s(&src), "--time", &soon], 0);

    // A manifest dated in the future (written when the clock was wrong) exists anyway:
    // `latest` passes it over with a warning naming it, and health warns.
    let r = cachevault::Repository::open(&repo).unwrap();
    let future = cachevault::snapshot::create_listed(
        &r,
        &cachevault::snapshot::SnapshotOptions {
            root: src.clone(),
            includes: Vec::new(),
            kind: cachevault::manifest::SnapshotKind::Backup,
            types: Vec::new(),
            tags: Vec::new(),
            time: chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap(),
            hostname: "h".into(),
            rehash: false,
            dry_run: false,
            parent: None,
        },
        &cachevault::NoProgress,
    )
    .unwrap()
    .id
    .unwrap();
    let out = run(&[
        "--repo",
        s(&repo),
        "--json",
        "restore",
        "latest",
        "--target",
        s(&t.join("R")),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["snapshot"], good["id"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&future.short()) && err.contains("2030-01-01") && err.contains("future"),
        "{err}"
    );
    let health = json(&repo, &["health"], 1);
    assert!(
        health["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "clock" && r["message"].as_str().unwrap().contains("2030")),
        "{health}"
    );
    // Named by id, it is still reachable.
    json(&repo, &["ls", &future.to_hex()], 0);
}

/// 30 days: a backup each night, a clear on three of them; forget with the config's policy
/// leaves no pre-clear snapshot older than backup_retention_days and the last 7 daily backups.
#[test]
fn thirty_days_with_three_clears_expire_the_pre_clear_snapshots() {
    let t = TestDir::new();
    let start = chrono::Utc::now().timestamp() - 60 * DAY;
    let start = start - start.rem_euclid(DAY);
    let cfg = config_tree(&t, start - DAY);
    json_cfg(&cfg, &["init"], 0);
    let ai = t.join("OUTPUTS/FBA_ANALYSIS/ai_category_cache");
    let mut pre_clear = Vec::new();
    for day in 0..30 {
        let night = start + day * DAY + 2 * 3600;
        json_cfg(&cfg, &["snapshot", "--time", &iso(night)], 0);
        if [3, 17, 26].contains(&day) {
            fs::write(
                ai.join(format!("day{day}.json")),
                r#"{"supplier": "s", "generated_at": "2026-11-01T00:00:00Z", "categories": []}"#,
            )
            .unwrap();
            let c = json_cfg(
                &cfg,
                &[
                    "clear",
                    "--strategy",
                    "full",
                    "--type",
                    "ai_category_cache",
                    "--now",
                    &iso(night + 3600),
                ],
                0,
            );
            pre_clear.push((day, c["snapshot"].as_str().unwrap().to_string()));
        }
    }
    let last_night = start + 29 * DAY + 2 * 3600;
    let now = iso(last_night + 3 * 3600);
    let plan = json_cfg(&cfg, &["forget", "--now", &now], 0);
    // Groups are root + kind, and their keys are short.
    for g in plan["groups"].as_array().unwrap() {
        assert!(g["group"].to_string().len() < 300, "{g}");
    }
    let left = snapshot_list(&cfg, &[]);
    let retention_days = 7;
    for (day, id) in &pre_clear {
        let age_days = (last_night + 3 * 3600 - (start + day * DAY + 3 * 3600)) / DAY;
        let present = left.iter().any(|s| s["id"] == id.as_str());
        assert_eq!(
            present,
            age_days < retention_days,
            "pre-clear snapshot of day {day} ({age_days} days old)"
        );
    }
    assert!(left.iter().filter(|s| s["kind"] == "pre-clear").all(|s| {
        let t = chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap()).unwrap();
        (last_night + 3 * 3600 - t.timestamp()) < retention_days * DAY
    }));
    let backups: Vec<i64> = left
        .iter()
        .filter(|s| s["kind"] == "backup")
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .collect();
    for day in 23..30 {
        let night = start + day * DAY + 2 * 3600;
        assert!(
            backups.contains(&night),
            "the daily backup of day {day} is kept"
        );
    }
    // Weekly and monthly ones are kept too, but not every night.
    assert!(backups.len() > 7 && backups.len() < 30, "{backups:?}");
}

/// A second cache root in the same repository: config B beside config A.
fn second_root(t: &TestDir, repo: &Path, mtime: i64) -> PathBuf {
    let dir = t.mkdirp("b");
    let root = dir.join("OUTPUTS");
    copy_fixture(&root);
    for f in files_under(&root) {
        set_times(&root.join(&f), mtime, mtime);
    }
    let cfg = default_config(&dir);
    let mut doc: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    doc["cache"]["repository"] = Value::String(s(repo).to_string());
    fs::write(&cfg, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    cfg
}

#[test]
fn two_roots_in_one_repository_never_cross() {
    let t = TestDir::new();
    let mtime = chrono::Utc::now().timestamp() - 40 * DAY;
    let cfg_a = config_tree(&t, mtime);
    let root_a = t.join("OUTPUTS");
    let repo = t.join("cachevault-repo");
    json_cfg(&cfg_a, &["init"], 0);
    let cfg_b = second_root(&t, &repo, mtime);
    let root_b = t.join("b/OUTPUTS");
    let root_b_text = root_b
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let root_a_text = root_a
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    let snap_a = json_cfg(&cfg_a, &["snapshot"], 0);
    // B is backed up later, so it is the newest snapshot in the repository.
    fs::write(root_b.join("cached_products/only-in-b.json"), "{}").unwrap();
    let snap_b = json_cfg(&cfg_b, &["snapshot"], 0);

    // A clear of A: 'undo' with B's config finds nothing of its own and puts nothing into B.
    let before_b = t.join("before-b");
    copy_tree(&root_b, &before_b);
    let clear_a = json_cfg(&cfg_a, &["clear", "--strategy", "full"], 0);
    assert!(!clear_a["deleted"].as_array().unwrap().is_empty());
    let clear_id = clear_a["clear_id"].as_str().unwrap();
    let out = json_cfg(&cfg_b, &["undo"], 2);
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("no undoable operation of"),
        "{out}"
    );
    let out = json_cfg(&cfg_b, &["undo", clear_id], 2);
    let err = out["error"].as_str().unwrap();
    assert!(
        err.contains(&root_a_text) && err.contains(&root_b_text),
        "{err}"
    );
    let out = json_cfg(&cfg_b, &["warm", "--from", clear_id], 2);
    assert!(
        out["error"].as_str().unwrap().contains(&root_a_text),
        "{out}"
    );
    assert!(compare_trees(&before_b, &root_b, false).unwrap().is_empty());

    // `latest` with A's config is A's backup, and an in-place restore writes A's tree only.
    let r = json_cfg(&cfg_a, &["restore", "latest", "--in-place"], 0);
    assert_eq!(r["snapshot"], snap_a["id"], "{r}");
    assert_eq!(r["snapshot_root"], root_a_text.as_str());
    assert!(compare_trees(&before_b, &root_b, false).unwrap().is_empty());
    assert!(!root_a.join("cached_products/only-in-b.json").exists());
    // A's undo is still A's.
    json_cfg(&cfg_a, &["undo", clear_id], 0);
    // B's snapshot named with A's config cannot be restored in place.
    let out = json_cfg(
        &cfg_a,
        &["restore", snap_b["id"].as_str().unwrap(), "--in-place"],
        2,
    );
    assert!(
        out["error"].as_str().unwrap().contains("--in-place"),
        "{out}"
    );
    // B's latest is B's.
    let r = json_cfg(
        &cfg_b,
        &["restore", "latest", "--target", s(&t.join("RB"))],
        0,
    );
    assert_eq!(r["snapshot"], snap_b["id"]);
    assert!(t.join("RB/cached_products/only-in-b.json").exists());

    // Without a config, `latest` over two roots is a question, not a guess.
    let out = json(
        &repo,
        &["restore", "latest", "--target", s(&t.join("R?"))],
        2,
    );
    let err = out["error"].as_str().unwrap();
    assert!(
        err.contains(&root_a_text) && err.contains(&root_b_text),
        "{err}"
    );
    let r = json(
        &repo,
        &[
            "restore",
            "latest",
            "--snapshot-path",
            s(&root_a),
            "--target",
            s(&t.join("RA")),
        ],
        0,
    );
    assert_eq!(r["snapshot"], snap_a["id"]);
    let l = json(&repo, &["ls", "latest", "--path", s(&root_b)], 0);
    assert_eq!(l["id"], snap_b["id"]);

    // forget with A's config touches A's snapshots only; stats and history can be scoped.
    let plan = json_cfg(&cfg_a, &["forget", "--keep-last", "1", "--dry-run"], 0);
    for g in plan["groups"].as_array().unwrap() {
        assert_eq!(g["group"]["root"], root_a_text.as_str(), "{g}");
    }
    let stats = json_cfg(&cfg_b, &["stats", "--this-root"], 0);
    assert_eq!(stats["repository"]["snapshots"], 1, "{stats}");
    assert_eq!(stats["repository"]["last_backup"]["id"], snap_b["id"]);
    let all = json_cfg(&cfg_b, &["stats"], 0);
    assert!(all["repository"]["snapshots"].as_u64().unwrap() >= 3);
    let history = json_cfg(&cfg_b, &["history", "--this-root"], 0);
    let ops = history["operations"].as_array().unwrap();
    assert!(!ops.is_empty());
    assert!(
        ops.iter()
            .all(|o| o["root"].is_null() || o["root"] == root_b_text.as_str()),
        "{history}"
    );
}

/// Health and the metrics use the last complete backup; the pre-clear gauge is its own.
#[test]
fn health_and_metrics_use_the_last_backup() {
    let t = TestDir::new();
    let mtime = chrono::Utc::now().timestamp() - 40 * DAY;
    let cfg = config_tree(&t, mtime);
    json_cfg(&cfg, &["init"], 0);
    let three_days_ago = iso(chrono::Utc::now().timestamp() - 3 * DAY);
    let backup = json_cfg(&cfg, &["snapshot", "--time", &three_days_ago], 0);
    let clear = json_cfg(
        &cfg,
        &["clear", "--strategy", "full", "--type", "ai_category_cache"],
        0,
    );
    // Daily backups, the last one three days old: a warning, whatever the clear just took.
    let health = json_cfg(
        &cfg,
        &["health"],
        expected_health(&t, cachevault::health::Level::Warning),
    );
    let backup_reason = health_reason(&health, "backup");
    assert!(
        backup_reason["message"].as_str().unwrap().contains("3d"),
        "{backup_reason}"
    );
    let prom = t.join("metrics.prom");
    let stats = json_cfg(&cfg, &["stats", "--prometheus", s(&prom)], 0);
    assert_eq!(stats["repository"]["last_backup"]["id"], backup["id"]);
    assert_eq!(
        stats["repository"]["last_pre_clear"]["id"],
        clear["snapshot"]
    );
    let text = fs::read_to_string(&prom).unwrap();
    let value = |name: &str| -> i64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    let backup_time = chrono::DateTime::parse_from_rfc3339(backup["time"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(
        value("cachevault_repository_last_backup_timestamp_seconds"),
        backup_time
    );
    assert!(value("cachevault_repository_last_pre_clear_timestamp_seconds") > backup_time);
}

/// run-due state later than now (the clock went back): the job is due, with a warning, and
/// the warning is journaled.
#[test]
fn run_due_state_from_the_future_is_a_clock_problem() {
    let t = TestDir::new();
    let mtime = chrono::Utc::now().timestamp() - 40 * DAY;
    let cfg = config_tree(&t, mtime);
    json_cfg(&cfg, &["init"], 0);
    let later = iso(chrono::Utc::now().timestamp() - 2 * DAY);
    let earlier = iso(chrono::Utc::now().timestamp() - 4 * DAY);
    json_cfg(&cfg, &["run-due", "--now", &later], 0);
    let doc = json_cfg(&cfg, &["run-due", "--now", &earlier], 0);
    let backup = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "backup")
        .unwrap();
    assert_eq!(backup["due"], true, "{doc}");
    assert_eq!(backup["ran"], true);
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("later than now")),
        "{doc}"
    );
    let history = json_cfg(&cfg, &["history", "--operation", "run-due"], 0);
    let last = history["operations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["details"]["warnings"]
            .to_string()
            .contains("later than now"),
        "{last}"
    );
}

/// Manifests written before kinds existed (version 1) get their kind from their tags.
#[test]
fn version_1_manifests_are_read_by_their_tags() {
    let t = TestDir::new();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let src = t.mkdirp("src");
    fs::write(src.join("a.json"), "{}").unwrap();
    let r = cachevault::Repository::open(&repo).unwrap();
    for (tags, expected) in [
        (vec!["pre-clear"], "pre-clear"),
        (vec!["pre-clear", "archive"], "archive"),
        (vec!["nightly"], "backup"),
    ] {
        let mut m = cachevault::snapshot::create_listed(
            &r,
            &cachevault::snapshot::SnapshotOptions {
                root: src.clone(),
                includes: Vec::new(),
                kind: cachevault::manifest::SnapshotKind::Backup,
                types: Vec::new(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                time: chrono::Utc::now().fixed_offset(),
                hostname: "h".into(),
                rehash: false,
                dry_run: true,
                parent: None,
            },
            &cachevault::NoProgress,
        )
        .unwrap()
        .manifest;
        m.version = 1;
        m.kind = None;
        let id = cachevault::snapshot::store_manifest(&r, &mut m).unwrap();
        let header =
            fs::read_to_string(repo.join(format!("snapshots/{}.json", id.to_hex()))).unwrap();
        assert!(!header.contains("\"kind\""), "{header}");
        let listed = json(&repo, &["snapshots"], 0);
        let entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.to_hex().as_str())
            .unwrap()
            .clone();
        assert_eq!(entry["kind"], expected, "{tags:?}");
    }
}
