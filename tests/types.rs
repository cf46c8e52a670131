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
