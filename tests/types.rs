//! Backups and restores by cache type: `snapshot --type` (only those folders, tagged
//! `type:T`), `restore --type` from the newest complete backup holding the type (a full or a
//! type backup), `--type` on `ls`, `diff` and `find`, and per-type backup frequencies in
//! run-due across simulated days. Real trees, real child processes.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

const LINK: &str = "FBA_ANALYSIS/Linking map/linking_map.json";
const SUPPLIER: &str = "cached_products/clearance-king.co.uk/pet-supplies_cat_page_1.json";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn paths_of(ls: &Value) -> Vec<String> {
    ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn err_of(cfg: &Path, args: &[&str]) -> String {
    json_cfg(cfg, args, 2)["error"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_type_backup_holds_only_its_folders() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);
    let snap = json_cfg(&cfg, &["snapshot", "--type", "linking_map"], 0);
    assert_eq!(snap["kind"], "backup");
    assert_eq!(snap["tags"], serde_json::json!(["type:linking_map"]));
    let types: Vec<&String> = snap["types"].as_object().unwrap().keys().collect();
    assert_eq!(types, ["linking_map"], "{snap}");
    assert_eq!(snap["types"]["linking_map"]["files"], 1);
    let root = t.join("OUTPUTS").canonicalize().unwrap();
    assert_eq!(
        snap["paths"],
        serde_json::json!([format!("{}/FBA_ANALYSIS/Linking map", root.display())])
    );
    let ls = json_cfg(&cfg, &["ls", snap["id"].as_str().unwrap()], 0);
    let files: Vec<String> = paths_of(&ls)
        .into_iter()
        .filter(|p| p.ends_with(".json"))
        .collect();
    // No state file outside the folder (processing_state.json, resume_state.json).
    assert_eq!(files, [LINK], "{ls}");

    // State files inside the chosen folders are in; several types make one snapshot.
    let two = json_cfg(
        &cfg,
        &[
            "snapshot",
            "--type",
            "supplier_cache",
            "--type",
            "amazon_cache",
            "--tag",
            "mine",
        ],
        0,
    );
    let tags: BTreeSet<&str> = two["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from(["mine", "type:supplier_cache", "type:amazon_cache"])
    );
    let ls = paths_of(&json_cfg(&cfg, &["ls", two["id"].as_str().unwrap()], 0));
    assert!(ls.contains(&"cached_products/resume_state.json".to_string()));
    assert!(ls
        .iter()
        .any(|p| p.starts_with("FBA_ANALYSIS/amazon_cache/")));
    assert!(!ls.iter().any(|p| p.contains("Linking map")
        || p.contains("ai_category_cache")
        || p.ends_with("processing_state.json")));
    // The tag finds type backups.
    let tagged = json_cfg(&cfg, &["snapshots", "--tag", "type:linking_map"], 0);
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(tagged[0]["id"], snap["id"]);

    // Bad input names the culprit.
    let e = err_of(&cfg, &["snapshot", "--type", "nope_cache"]);
    assert!(
        e.contains("\"nope_cache\"") && e.contains("linking_map"),
        "{e}"
    );
    let out = run(&[
        "--repo",
        s(&t.join("cachevault-repo")),
        "snapshot",
        "--type",
        "linking_map",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    assert_eq!(
        json_cfg(&cfg, &["snapshots"], 0).as_array().unwrap().len(),
        2
    );
}

#[test]
fn restore_by_type_uses_the_newest_backup_holding_it() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let root = t.join("OUTPUTS");
    json_cfg(&cfg, &["init"], 0);
    let full = json_cfg(&cfg, &["snapshot", "--time", "2026-11-01T01:00:00Z"], 0);
    let link_v1 = fs::read(root.join(LINK)).unwrap();
    let supplier_v1 = fs::read(root.join(SUPPLIER)).unwrap();
    fs::write(root.join(LINK), b"[{\"v\": 2}]\n").unwrap();
    let typed = json_cfg(
        &cfg,
        &[
            "snapshot",
            "--type",
            "linking_map",
            "--time",
            "2026-11-01T02:00:00Z",
        ],
        0,
    );
    fs::write(root.join(LINK), b"[{\"v\": 3}]\n").unwrap();
    fs::write(root.join(SUPPLIER), b"{\"changed\": true}\n").unwrap();

    // linking_map: the type backup, newer than the full one.
    let d = t.join("r1");
    let r = json_cfg(
        &cfg,
        &["restore", "--type", "linking_map", "--target", s(&d)],
        0,
    );
    assert_eq!(r["snapshot"], typed["id"], "{r}");
    assert_eq!(files_under(&d), [LINK]);
    assert_eq!(fs::read(d.join(LINK)).unwrap(), b"[{\"v\": 2}]\n");
    // `latest` spelled out means the same.
    let r = json_cfg(
        &cfg,
        &[
            "restore",
            "latest",
            "--type",
            "linking_map",
            "--target",
            s(&t.join("r1b")),
        ],
        0,
    );
    assert_eq!(r["snapshot"], typed["id"]);
    // Without --type, `latest` is the newest backup of the whole root, never a type backup
    // (unless a tag asks for one).
    let r = json_cfg(
        &cfg,
        &["restore", "latest", "--target", s(&t.join("all"))],
        0,
    );
    assert_eq!(r["snapshot"], full["id"], "{r}");
    let ls = json_cfg(&cfg, &["ls", "latest", "--tag", "type:linking_map"], 0);
    assert_eq!(ls["id"], typed["id"]);
    // supplier_cache: the type backup does not hold it, the full backup does.
    let d = t.join("r2");
    let r = json_cfg(
        &cfg,
        &["restore", "--type", "supplier_cache", "--target", s(&d)],
        0,
    );
    assert_eq!(r["snapshot"], full["id"], "{r}");
    assert!(files_under(&d)
        .iter()
        .all(|p| p.starts_with("cached_products/")));
    assert_eq!(fs::read(d.join(SUPPLIER)).unwrap(), supplier_v1);
    assert!(d.join("cached_products/resume_state.json").exists());
    // --at before the type backup: the full backup.
    let d = t.join("r3");
    let r = json_cfg(
        &cfg,
        &[
            "restore",
            "--type",
            "linking_map",
            "--at",
            "2026-11-01T01:30:00Z",
            "--target",
            s(&d),
        ],
        0,
    );
    assert_eq!(r["snapshot"], full["id"]);
    assert_eq!(fs::read(d.join(LINK)).unwrap(), link_v1);
    // A named snapshot must hold the type.
    let e = err_of(
        &cfg,
        &[
            "restore",
            typed["id"].as_str().unwrap(),
            "--type",
            "supplier_cache",
            "--target",
            s(&t.join("r4")),
        ],
    );
    assert!(
        e.contains("supplier_cache") && e.contains("does not hold"),
        "{e}"
    );
    assert!(!t.join("r4").exists());
    // ai_category_cache is not backed up: no backup holds it.
    let e = err_of(
        &cfg,
        &[
            "restore",
            "--type",
            "ai_category_cache",
            "--target",
            s(&t.join("r5")),
        ],
    );
    assert!(e.contains("ai_category_cache"), "{e}");
    let e = err_of(
        &cfg,
        &["restore", "--type", "bogus", "--target", s(&t.join("r6"))],
    );
    assert!(e.contains("\"bogus\""), "{e}");

    // In place: only the type's folder is put back, under the safety net; undo reverts it.
    let r = json_cfg(&cfg, &["restore", "--type", "linking_map", "--in-place"], 0);
    assert_eq!(r["snapshot"], typed["id"]);
    assert_eq!(fs::read(root.join(LINK)).unwrap(), b"[{\"v\": 2}]\n");
    assert_eq!(
        fs::read(root.join(SUPPLIER)).unwrap(),
        b"{\"changed\": true}\n"
    );
    json_cfg(&cfg, &["undo"], 0);
    assert_eq!(fs::read(root.join(LINK)).unwrap(), b"[{\"v\": 3}]\n");
    json_cfg(&cfg, &["check", "--read-data"], 0);
}

fn set_key(cfg: &Path, f: impl FnOnce(&mut Value)) {
    let mut c: Value = serde_json::from_slice(&fs::read(cfg).unwrap()).unwrap();
    f(&mut c);
    fs::write(cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn job<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == name)
}

fn ran(doc: &Value, name: &str) -> bool {
    job(doc, name).is_some_and(|j| j["ran"] == true && j["ok"] == true)
}

fn count(cfg: &Path, tag: &str) -> usize {
    json_cfg(cfg, &["snapshots", "--tag", tag], 0)
        .as_array()
        .unwrap()
        .len()
}

/// Regular (not type) backups and whether each holds the linking map.
fn regular(cfg: &Path) -> Vec<Value> {
    json_cfg(cfg, &["snapshots", "--tag", "scheduled"], 0)
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            !s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str().unwrap().starts_with("type:"))
        })
        .cloned()
        .collect()
}

#[test]
fn run_due_backs_up_a_type_at_its_own_frequency() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let root = t.join("OUTPUTS");
    set_key(&cfg, |c| {
        c["cache"]["strategies"]["clearing"]["schedule"]["enabled"] = Value::Bool(false);
    });
    // A bad frequency is refused, naming the key.
    set_key(&cfg, |c| {
        c["cache"]["cache_types"]["linking_map"]["backup_frequency"] = "minutely".into();
    });
    let e = err_of(&cfg, &["config", "check"]);
    assert!(
        e.contains("cache.cache_types.linking_map.backup_frequency") && e.contains("minutely"),
        "{e}"
    );
    set_key(&cfg, |c| {
        c["cache"]["cache_types"]["linking_map"]["backup_frequency"] = "hourly".into();
    });
    let checked = json_cfg(&cfg, &["config", "check"], 0);
    assert!(
        checked
            .to_string()
            .contains("\"backup_frequency\":\"hourly\""),
        "{checked}"
    );
    json_cfg(&cfg, &["init"], 0);
    // A schedule state written before type backups existed still reads.
    fs::write(
        t.join("cachevault-repo/schedule.json"),
        r#"{"last_run": {"validation": "2026-11-20T00:00:00+00:00"}}"#,
    )
    .unwrap();

    let run_at = |now: &str| json_cfg(&cfg, &["run-due", "--now", now], 0);
    // Day 1, 02:30: the regular daily backup and the linking map's first hourly one.
    let d = run_at("2026-11-20T02:30:00+00:00");
    assert!(d["warnings"].as_array().unwrap().is_empty(), "{d}");
    assert!(ran(&d, "backup") && ran(&d, "type_backup"), "{d}");
    assert_eq!(
        job(&d, "type_backup").unwrap()["reason"].as_str().unwrap(),
        "linking_map: hourly; never ran"
    );
    // The same hour: nothing.
    assert_eq!(
        job(&d, "type_backup").unwrap()["types"],
        serde_json::json!(["linking_map"])
    );
    let d = run_at("2026-11-20T02:55:00+00:00");
    assert!(!ran(&d, "backup") && !ran(&d, "type_backup"), "{d}");
    // Every later hour of the day: only the linking map.
    let original = fs::read(root.join(LINK)).unwrap();
    for (i, h) in ["03", "04", "05"].iter().enumerate() {
        // Still valid (validation runs too): the same map with trailing white space.
        let mut changed = original.clone();
        changed.extend(std::iter::repeat_n(b'\n', i + 1));
        fs::write(root.join(LINK), changed).unwrap();
        let d = run_at(&format!("2026-11-20T{h}:10:00+00:00"));
        assert!(!ran(&d, "backup") && ran(&d, "type_backup"), "{d}");
    }
    // Day 2: both again.
    let d = run_at("2026-11-21T02:05:00+00:00");
    assert!(ran(&d, "backup") && ran(&d, "type_backup"), "{d}");
    assert_eq!(count(&cfg, "type:linking_map"), 5);
    let check_regular = |n: usize| {
        let regular = regular(&cfg);
        assert_eq!(regular.len(), n, "{regular:?}");
        for r in &regular {
            // The regular backup leaves the linking map to its own backups.
            assert!(r["types"].get("linking_map").is_none(), "{r}");
            assert!(r["types"].get("supplier_cache").is_some(), "{r}");
            assert!(r["types"].get("amazon_cache").is_some(), "{r}");
            assert!(!r["paths"].to_string().contains("Linking map"), "{r}");
        }
    };
    check_regular(2);
    // 03:05: the linking map again, and the daily optimization: the retention policy thins
    // the hourly type backups, but never lets one of them stand in for a regular backup.
    let d = run_at("2026-11-21T03:05:00+00:00");
    assert!(
        !ran(&d, "backup") && ran(&d, "type_backup") && ran(&d, "optimization"),
        "{d}"
    );
    assert!(
        job(&d, "optimization").unwrap()["summary"]["forgotten"]
            .as_u64()
            .unwrap()
            > 0,
        "{d}"
    );
    check_regular(2);
    let typed = json_cfg(&cfg, &["snapshots", "--tag", "type:linking_map"], 0);
    let times: Vec<&str> = typed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert!(times.contains(&"2026-11-21T03:05:00+00:00"), "{times:?}");
    assert!(times.contains(&"2026-11-20T05:10:00+00:00"), "{times:?}");
    // The last runs per type are kept in the schedule state.
    let state: Value =
        serde_json::from_slice(&fs::read(t.join("cachevault-repo/schedule.json")).unwrap())
            .unwrap();
    assert!(
        state["type_last_run"]["linking_map"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-21T03:05:00"),
        "{state}"
    );
    // Restores by type find their own backups.
    let r = json_cfg(
        &cfg,
        &[
            "restore",
            "--type",
            "linking_map",
            "--target",
            s(&t.join("r")),
        ],
        0,
    );
    assert!(
        r["snapshot_time"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-21T03:05"),
        "{r}"
    );
    let r = json_cfg(
        &cfg,
        &[
            "restore",
            "--type",
            "supplier_cache",
            "--target",
            s(&t.join("r2")),
        ],
        0,
    );
    assert!(
        r["snapshot_time"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-21T02:05"),
        "{r}"
    );
    json_cfg(&cfg, &["check"], 0);
}

#[test]
fn ls_diff_and_find_keep_to_a_type() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let root = t.join("OUTPUTS");
    json_cfg(&cfg, &["init"], 0);
    let full = json_cfg(&cfg, &["snapshot", "--time", "2026-11-01T01:00:00Z"], 0);
    let typed = json_cfg(
        &cfg,
        &[
            "snapshot",
            "--type",
            "amazon_cache",
            "--time",
            "2026-11-01T01:30:00Z",
        ],
        0,
    );
    fs::write(root.join(LINK), b"[]\n").unwrap();
    fs::write(root.join(SUPPLIER), b"{}\n").unwrap();
    json_cfg(&cfg, &["snapshot", "--time", "2026-11-01T02:00:00Z"], 0);

    // ls: only the type's entries; `latest --type` is the newest backup holding it.
    let ls = json_cfg(&cfg, &["ls", "latest", "--type", "linking_map"], 0);
    assert_eq!(paths_of(&ls), ["FBA_ANALYSIS/Linking map", LINK], "{ls}");
    let ls = json_cfg(
        &cfg,
        &[
            "ls",
            full["id"].as_str().unwrap(),
            "--type",
            "supplier_cache",
        ],
        0,
    );
    assert!(paths_of(&ls)
        .iter()
        .all(|p| p.starts_with("cached_products")));
    assert!(paths_of(&ls).contains(&SUPPLIER.to_string()));
    // diff: the two newest backups holding the type (the amazon type backup holds none of
    // the linking map, so it is passed over), changes under the type only.
    let d = json_cfg(&cfg, &["diff", "--type", "linking_map"], 0);
    assert_eq!(d["a"]["id"], full["id"], "{d}");
    let modified: Vec<&str> = d["modified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(modified, [LINK], "{d}");
    assert_eq!(d["summary"]["modified"], 1);
    // find: only snapshots holding the type.
    let f = json_cfg(
        &cfg,
        &[
            "find",
            "FBA_ANALYSIS/amazon_cache",
            "--type",
            "amazon_cache",
        ],
        0,
    );
    assert_eq!(f["versions"].as_array().unwrap().len(), 3, "{f}");
    let f = json_cfg(&cfg, &["find", LINK, "--type", "linking_map"], 0);
    let snaps: Vec<&str> = f["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(snaps.len(), 2, "{f}");
    assert!(!snaps.contains(&typed["id"].as_str().unwrap()));
    // find a path outside the type: none.
    let f = json_cfg(&cfg, &["find", SUPPLIER, "--type", "linking_map"], 0);
    assert!(f["versions"].as_array().unwrap().is_empty(), "{f}");
    let e = err_of(&cfg, &["ls", "latest", "--type", "nope"]);
    assert!(e.contains("\"nope\""), "{e}");
}

#[test]
fn forget_by_type_considers_only_snapshots_holding_it() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);
    let at = |d: u32| format!("2026-11-{d:02}T03:00:00+00:00");
    // Three type backups of the linking map, two of the supplier pages, one full backup.
    let mut linking = Vec::new();
    for d in 20..23 {
        let s = json_cfg(
            &cfg,
            &["snapshot", "--type", "linking_map", "--time", &at(d)],
            0,
        );
        linking.push(s["id"].as_str().unwrap().to_string());
    }
    let mut supplier = Vec::new();
    for d in 20..22 {
        let s = json_cfg(
            &cfg,
            &["snapshot", "--type", "supplier_cache", "--time", &at(d)],
            0,
        );
        supplier.push(s["id"].as_str().unwrap().to_string());
    }
    let full = json_cfg(&cfg, &["snapshot", "--time", &at(19)], 0);
    let full = full["id"].as_str().unwrap().to_string();

    // Keep the last 1 of what holds the linking map: its two older type backups go; the
    // supplier backups (which do not hold it) are neither kept nor removed.
    let f = json_cfg(
        &cfg,
        &[
            "forget",
            "--type",
            "linking_map",
            "--keep-last",
            "1",
            "--dry-run",
        ],
        0,
    );
    let mut would: Vec<String> = f["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["remove"].as_array().unwrap().iter())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    would.sort();
    let mut want = vec![linking[0].clone(), linking[1].clone(), full.clone()];
    want.sort();
    assert_eq!(would, want, "{f}");
    for s in &supplier {
        assert!(!f.to_string().contains(s.as_str()), "{s} considered: {f}");
    }
    // An unknown type is named.
    let e = err_of(&cfg, &["forget", "--type", "nope", "--keep-last", "1"]);
    assert!(e.contains("nope"), "{e}");
}
