//! Every clearing strategy on a real tree against an expectation computed independently here,
//! undo restoring the tree exactly, refusals, warm, a full disk, and the agent's Python wrapper.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use cachevault::compare::compare_trees;
use common::*;
use serde_json::Value;

const DAY: i64 = 86_400;

fn t0() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .timestamp()
}

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339()
}

/// A fixture tree whose amazon entries alternate between 20 and 5 days old (at t0 + 20 d),
/// with distinct access times for LRU.
fn setup(t: &TestDir) -> std::path::PathBuf {
    let cfg = config_tree(t, t0());
    let amazon = t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache");
    let mut files: Vec<_> = fs::read_dir(&amazon)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let mtime = if i % 2 == 0 { t0() } else { t0() + 15 * DAY };
        set_times(f, t0() + 16 * DAY + (i as i64 * 37 % 29) * 3600, mtime);
    }
    json_cfg(&cfg, &["init"], 0);
    cfg
}

/// `cp -a` reads every file, which moves access times; LRU depends on them, so put them back.
fn copy_keeping_atimes(from: &Path, to: &Path) {
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
    use std::os::unix::fs::MetadataExt;
    for p in files_under(to) {
        let m = fs::metadata(to.join(&p)).unwrap();
        set_times(&from.join(&p), m.atime(), m.mtime());
    }
}

fn now() -> String {
    iso(t0() + 20 * DAY)
}

fn paths(doc: &Value, key: &str) -> BTreeSet<String> {
    doc[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn under(root: &Path, prefix: &str) -> BTreeSet<String> {
    files_under(root)
        .into_iter()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

fn is_state(p: &str) -> bool {
    p.ends_with("_state.json")
}

/// Clears with `strategy`, checks the deleted set, then undoes and checks the tree is back.
fn clear_and_undo(
    t: &TestDir,
    cfg: &Path,
    strategy: &str,
    expected_deleted: &BTreeSet<String>,
    expected_rewritten: &BTreeSet<String>,
) -> Value {
    let root = t.join("OUTPUTS");
    let before = t.join(format!("before-{strategy}"));
    copy_keeping_atimes(&root, &before);
    let dry = json_cfg(
        cfg,
        &[
            "clear",
            "--strategy",
            strategy,
            "--now",
            &now(),
            "--dry-run",
        ],
        0,
    );
    assert_eq!(
        &paths(&dry, "deleted"),
        expected_deleted,
        "{strategy} dry run"
    );
    assert!(
        compare_trees(&before, &root, false).unwrap().is_empty(),
        "dry run changed the tree"
    );
    let done = json_cfg(cfg, &["clear", "--strategy", strategy, "--now", &now()], 0);
    assert_eq!(&paths(&done, "deleted"), expected_deleted, "{strategy}");
    assert_eq!(&paths(&done, "rewritten"), expected_rewritten, "{strategy}");
    for p in expected_deleted {
        assert!(!root.join(p).exists(), "{strategy}: {p} still there");
    }
    let remaining: BTreeSet<String> = files_under(&root).into_iter().collect();
    let expected_remaining: BTreeSet<String> = files_under(&before)
        .into_iter()
        .filter(|p| !expected_deleted.contains(p))
        .collect();
    assert_eq!(
        remaining, expected_remaining,
        "{strategy}: files deleted that were not planned"
    );
    if !expected_deleted.is_empty() || !expected_rewritten.is_empty() {
        let id = done["clear_id"].as_str().unwrap().to_string();
        let snaps = json_cfg(cfg, &["snapshots"], 0);
        let snap = snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == done["snapshot"])
            .unwrap();
        assert!(snap["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "pre-clear"));
        json_cfg(cfg, &["undo", &id], 0);
    }
    let diffs = compare_trees(&before, &root, false).unwrap();
    assert!(
        diffs.is_empty(),
        "{strategy}: undo did not restore the tree: {diffs:?}"
    );
    done
}

#[test]
fn full_selective_ttl_and_archive_old() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let all: BTreeSet<String> = files_under(&root)
        .into_iter()
        .filter(|p| !is_state(p))
        .collect();
    clear_and_undo(&t, &cfg, "full", &all, &BTreeSet::new());

    let selective: BTreeSet<String> = all
        .iter()
        .filter(|p| {
            !p.starts_with("FBA_ANALYSIS/ai_category_cache/")
                && !p.starts_with("FBA_ANALYSIS/Linking map/")
        })
        .cloned()
        .collect();
    clear_and_undo(&t, &cfg, "selective", &selective, &BTreeSet::new());

    // TTL: supplier pages and amazon entries live 336 h, AI categories 720 h, the map forever.
    let old: BTreeSet<String> = all
        .iter()
        .filter(|p| {
            let m = fs::metadata(root.join(p)).unwrap();
            let age_h = (t0() + 20 * DAY - std::os::unix::fs::MetadataExt::mtime(&m)) / 3600;
            let ttl = if p.starts_with("cached_products/")
                || p.starts_with("FBA_ANALYSIS/amazon_cache/")
            {
                336
            } else if p.starts_with("FBA_ANALYSIS/ai_category_cache/") {
                720
            } else {
                i64::MAX
            };
            age_h > ttl
        })
        .cloned()
        .collect();
    assert!(old.len() > 10 && old.len() < all.len());
    clear_and_undo(&t, &cfg, "ttl", &old, &BTreeSet::new());
    let archived = clear_and_undo(&t, &cfg, "archive_old", &old, &BTreeSet::new());
    let snaps = json_cfg(&cfg, &["snapshots"], 0);
    let snap = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == archived["snapshot"])
        .unwrap();
    assert!(
        snap["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "archive"),
        "{snap}"
    );
}

#[test]
fn size_based_evicts_least_recently_used_to_ninety_percent() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let amazon = under(&root, "FBA_ANALYSIS/amazon_cache/");
    let total: u64 = amazon
        .iter()
        .map(|p| fs::metadata(root.join(p)).unwrap().len())
        .sum();
    // Limit amazon_cache to half its size.
    let limit_mb = total as f64 / 2.0 / 1024.0 / 1024.0;
    let mut c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    c["cache"]["cache_types"]["amazon_cache"]["max_size_mb"] = serde_json::json!(limit_mb);
    fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    // Independent expectation: sort by (atime, mtime, path), drop until <= 90% of the limit.
    let mut lru: Vec<(i64, i64, String, u64)> = amazon
        .iter()
        .map(|p| {
            let m = fs::metadata(root.join(p)).unwrap();
            use std::os::unix::fs::MetadataExt;
            (
                m.atime() * 1_000_000_000 + m.atime_nsec(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                p.clone(),
                m.len(),
            )
        })
        .collect();
    lru.sort();
    let target = (limit_mb * 0.9 * 1024.0 * 1024.0) as u64;
    let mut bytes = total;
    let mut expected = BTreeSet::new();
    for (_, _, p, size) in lru {
        if bytes <= target {
            break;
        }
        bytes -= size;
        expected.insert(p);
    }
    assert!(expected.len() > 5);
    clear_and_undo(&t, &cfg, "size_based", &expected, &BTreeSet::new());
}

#[test]
fn smart_selective_processes_linked_products_and_stale_unlinked_entries() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let map: Vec<Value> = serde_json::from_slice(
        &fs::read(root.join("FBA_ANALYSIS/Linking map/linking_map.json")).unwrap(),
    )
    .unwrap();
    let eans: HashSet<&str> = map
        .iter()
        .map(|r| r["supplier_ean"].as_str().unwrap())
        .collect();
    let horizon = t0() + 20 * DAY - 336 * 3600;
    let recent_asins: HashSet<&str> = map
        .iter()
        .filter(|r| {
            chrono::DateTime::parse_from_rfc3339(r["linked_at"].as_str().unwrap())
                .unwrap()
                .timestamp()
                > horizon
        })
        .map(|r| r["asin"].as_str().unwrap())
        .collect();
    let mut deleted = BTreeSet::new();
    let mut rewritten = BTreeSet::new();
    for p in under(&root, "cached_products/")
        .into_iter()
        .filter(|p| !is_state(p))
    {
        let doc: Value = serde_json::from_slice(&fs::read(root.join(&p)).unwrap()).unwrap();
        let products = doc["products"].as_array().unwrap();
        let linked = products
            .iter()
            .filter(|x| x["ean"].as_str().is_some_and(|e| eans.contains(e)))
            .count();
        if linked == products.len() {
            deleted.insert(p);
        } else if linked > 0 {
            rewritten.insert(p);
        }
    }
    for p in under(&root, "FBA_ANALYSIS/amazon_cache/") {
        let m = fs::metadata(root.join(&p)).unwrap();
        let age_h = (t0() + 20 * DAY - std::os::unix::fs::MetadataExt::mtime(&m)) / 3600;
        let asin = p
            .rsplit('/')
            .next()
            .unwrap()
            .trim_start_matches("amazon_")
            .trim_end_matches(".json");
        if age_h > 336 && !recent_asins.contains(asin) {
            deleted.insert(p);
        }
    }
    assert!(
        !rewritten.is_empty(),
        "fixture has no partly processed page"
    );
    let before_ai = under(&root, "FBA_ANALYSIS/ai_category_cache/");
    let map_before = fs::read(root.join("FBA_ANALYSIS/Linking map/linking_map.json")).unwrap();
    // Check the rewritten pages' content before undoing: linked products gone, others kept.
    let done = json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "smart_selective",
            "--now",
            &now(),
            "--dry-run",
        ],
        0,
    );
    assert_eq!(paths(&done, "deleted"), deleted);
    let before = t.join("before-smart");
    copy_keeping_atimes(&root, &before);
    let done = json_cfg(
        &cfg,
        &["clear", "--strategy", "smart_selective", "--now", &now()],
        0,
    );
    for p in &rewritten {
        let old: Value = serde_json::from_slice(&fs::read(before.join(p)).unwrap()).unwrap();
        let new: Value = serde_json::from_slice(&fs::read(root.join(p)).unwrap()).unwrap();
        let keep: Vec<&Value> = old["products"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| !x["ean"].as_str().is_some_and(|e| eans.contains(e)))
            .collect();
        assert_eq!(
            new["products"]
                .as_array()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            keep,
            "{p}"
        );
        assert_eq!(new["supplier"], old["supplier"]);
    }
    assert_eq!(
        under(&root, "FBA_ANALYSIS/ai_category_cache/"),
        before_ai,
        "AI cache touched"
    );
    assert_eq!(
        fs::read(root.join("FBA_ANALYSIS/Linking map/linking_map.json")).unwrap(),
        map_before
    );
    json_cfg(&cfg, &["undo", done["clear_id"].as_str().unwrap()], 0);
    assert!(compare_trees(&before, &root, false).unwrap().is_empty());
    clear_and_undo(&t, &cfg, "smart_selective", &deleted, &rewritten);
}

#[test]
fn performance_aware_defers_under_load_and_otherwise_applies_each_types_strategy() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let before = files_under(&root);
    let deferred = json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "performance_aware",
            "--now",
            &now(),
            "--load-average",
            "50",
        ],
        5,
    );
    assert_eq!(deferred["deferred"], true);
    assert!(deferred["deferred_reason"]
        .as_str()
        .unwrap()
        .contains("load average"));
    assert_eq!(files_under(&root), before);
    // At no load: supplier pages by smart_selective, amazon by size_based (under its limit:
    // nothing), the AI cache by selective (preserved: nothing), the map by archive_old (never
    // expires: nothing).
    let smart = json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "smart_selective",
            "--type",
            "supplier_cache",
            "--now",
            &now(),
            "--dry-run",
        ],
        0,
    );
    let done = json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "performance_aware",
            "--now",
            &now(),
            "--load-average",
            "0",
        ],
        0,
    );
    assert_eq!(paths(&done, "deleted"), paths(&smart, "deleted"));
    assert_eq!(paths(&done, "rewritten"), paths(&smart, "rewritten"));
    json_cfg(&cfg, &["undo"], 0);
    assert_eq!(files_under(&root), before);
}

#[test]
fn undo_leaves_files_changed_since_the_clear_unless_forced() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let done = json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "full",
            "--type",
            "amazon_cache",
            "--now",
            &now(),
        ],
        0,
    );
    let deleted = paths(&done, "deleted");
    let victim = deleted.iter().next().unwrap().clone();
    let agents = b"{\"fetched\": \"again by the agent\"}";
    fs::write(root.join(&victim), agents).unwrap();
    // Partial undo: everything else comes back, the re-fetched file stays, exit 1.
    let partial = json_cfg(&cfg, &["undo"], 1);
    assert_eq!(
        partial["conflicts"][0]["path"],
        victim.as_str(),
        "{partial}"
    );
    assert!(partial["conflicts"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("since"));
    assert_eq!(
        partial["restored"].as_array().unwrap().len(),
        deleted.len() - 1
    );
    assert_eq!(fs::read(root.join(&victim)).unwrap(), agents);
    assert_eq!(
        under(&root, "FBA_ANALYSIS/amazon_cache/").len(),
        deleted.len()
    );
    // Forced: the agent's version goes into a safety snapshot first, then is overwritten.
    let forced = json_cfg(&cfg, &["undo", "--force"], 0);
    assert_eq!(forced["conflicts"][0]["path"], victim.as_str(), "{forced}");
    assert!(forced["safety_snapshot"].is_string(), "{forced}");
    assert_ne!(fs::read(root.join(&victim)).unwrap(), agents);
    // Undoing the forced undo gives the agent's version back.
    let back = json_cfg(&cfg, &["undo"], 0);
    assert_eq!(back["clear_id"], forced["undo_id"], "{back}");
    assert_eq!(fs::read(root.join(&victim)).unwrap(), agents);
    // Nothing is left to undo of that clear.
    let list = json_cfg(&cfg, &["undo", "--list"], 0);
    assert!(
        list["operations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| !o["undone_by"].is_null()),
        "{list}"
    );
}

#[test]
fn warm_restores_the_most_recently_used_first() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let mut by_atime: Vec<(i64, String)> = under(&root, "FBA_ANALYSIS/amazon_cache/")
        .into_iter()
        .map(|p| {
            (
                std::os::unix::fs::MetadataExt::atime(&fs::metadata(root.join(&p)).unwrap()),
                p,
            )
        })
        .collect();
    by_atime.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "full",
            "--type",
            "amazon_cache",
            "--now",
            &now(),
        ],
        0,
    );
    let warmed = json_cfg(&cfg, &["warm", "--top", "5"], 0);
    let got: BTreeSet<String> = warmed["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = by_atime.iter().take(5).map(|(_, p)| p.clone()).collect();
    assert_eq!(got, want);
    assert_eq!(under(&root, "FBA_ANALYSIS/amazon_cache/"), want);
}

#[test]
fn a_clear_interrupted_before_deleting_deletes_nothing() {
    let t = TestDir::new();
    let cfg = setup(&t);
    let root = t.join("OUTPUTS");
    let before = files_under(&root);
    let out = std::process::Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "clear",
            "--strategy",
            "full",
            "--now",
            &now(),
        ])
        .env("CACHEVAULT_FAULT", "clear.before_delete")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(files_under(&root), before);
    assert_eq!(json_cfg(&cfg, &["check", "--read-data"], 0)["ok"], true);
    // Undo of that clear finds everything in place.
    let undo = json_cfg(&cfg, &["undo"], 0);
    assert!(undo["restored"].as_array().unwrap().is_empty());
}

#[test]
fn a_full_repository_disk_makes_clear_delete_nothing() {
    let t = TestDir::new();
    let cfg_path = config_tree(&t, t0());
    // A cache tree far larger than the repository's disk.
    for i in 0..40 {
        let mut body = json_array(3000, i + 11);
        body.push_str(&"x".repeat(i as usize));
        t.write(
            format!("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0BIG{i:05}.json"),
            body,
        );
    }
    let repo = t.join("smalldisk");
    let _mounted = match Tmpfs::mount(&repo, "2m") {
        Ok(m) => m,
        Err(why) => {
            require_that(false, &why, "fill a small tmpfs");
            return;
        }
    };
    let mut c: Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    c["cache"]["repository"] = serde_json::json!("smalldisk/repo");
    fs::write(&cfg_path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    json_cfg(&cfg_path, &["init"], 0);
    let root = t.join("OUTPUTS");
    let before = files_under(&root);
    let out = json_cfg(
        &cfg_path,
        &["clear", "--strategy", "full", "--now", &now()],
        2,
    );
    let msg = out["error"].as_str().unwrap();
    assert!(
        msg.contains("No space left on device") && msg.contains("nothing was deleted"),
        "{msg}"
    );
    assert_eq!(out["kind"], "disk_full", "{out}");
    assert_eq!(files_under(&root), before, "a failed clear deleted files");
    assert_eq!(json_cfg(&cfg_path, &["check"], 0)["ok"], true);
}
