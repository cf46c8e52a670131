//! `validate` and `repair` on real files: the shipped config and schemas beside a copy of the
//! fixture tree, corrupted in each way a real cache gets corrupted.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachevault::cache::validate::{self, Problem, ValidateOptions};
use cachevault::config::Config;
use cachevault::{NoProgress, Repository};
use common::*;

const AMAZON: &str = "FBA_ANALYSIS/amazon_cache";
const PAGES: &str = "cached_products/poundwholesale.co.uk";

/// A temp folder holding the shipped config (with its schemas) beside a clean fixture tree.
struct Env {
    t: TestDir,
    cfg: PathBuf,
}

impl Env {
    fn new() -> Env {
        let t = TestDir::new();
        let cfg = default_config(t.path());
        copy_fixture(&t.join("OUTPUTS"));
        Env { t, cfg }
    }

    fn root(&self) -> PathBuf {
        self.t.join("OUTPUTS")
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn quarantine(&self) -> PathBuf {
        self.t.join("cachevault-quarantine")
    }

    /// Runs with `--config cfg --json`, asserts the exit code, returns the document.
    fn run(&self, args: &[&str], code: i32) -> serde_json::Value {
        json_cfg(&self.cfg, args, code)
    }

    /// Rewrites a JSON file through `edit`, pretty-printed.
    fn edit_json(&self, rel: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let p = self.file(rel);
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        edit(&mut v);
        fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    fn truncate(&self, rel: &str) {
        let p = self.file(rel);
        let data = fs::read(&p).unwrap();
        fs::write(&p, &data[..data.len() / 2]).unwrap();
    }

    /// Every file of the tree with its content, mode and mtime.
    fn tree(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64)> {
        walkdir::WalkDir::new(self.t.path())
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| {
                e.file_type().is_file() && !e.path().starts_with(self.t.join("cachevault-repo"))
            })
            .map(|e| {
                let m = e.metadata().unwrap();
                (
                    e.path().to_path_buf(),
                    (
                        fs::read(e.path()).unwrap(),
                        m.mode() & 0o7777,
                        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    ),
                )
            })
            .collect()
    }
}

/// `path -> reason` of a validate or repair list.
fn reasons(list: &serde_json::Value) -> BTreeMap<String, String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn amazon(asin: &str) -> String {
    format!("{AMAZON}/amazon_{asin}.json")
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn the_shipped_schemas_accept_the_fixture_tree() {
    let env = Env::new();
    let doc = env.run(&["validate"], 0);
    assert_eq!(doc["checked"], 42, "{doc}");
    assert_eq!(doc["invalid"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["ok"], true);

    // The library says the same, type by type.
    let cfg = Config::load(&env.cfg).unwrap();
    for (name, files) in [
        ("supplier_cache", 7),
        ("amazon_cache", 30),
        ("ai_category_cache", 3),
        ("linking_map", 1),
    ] {
        let opts = ValidateOptions {
            types: vec![name.into()],
        };
        let r = validate::validate(&cfg, &opts, &NoProgress).unwrap();
        // supplier_cache's folder holds resume_state.json: checked, as a state file.
        assert_eq!(r.checked, files, "{name}");
        assert!(r.ok(), "{name}: {:?}", r.invalid);
    }
}

#[test]
fn each_kind_of_corruption_is_found_with_its_own_reason_and_nothing_else_is() {
    let env = Env::new();
    fs::write(env.file(&amazon("B00LN6W62K")), b"").unwrap();
    env.truncate(&amazon("B055M6KAAX"));
    {
        let p = env.file(&amazon("B07BX0KBVE"));
        let text = fs::read(&p).unwrap();
        let at = text
            .windows(10)
            .position(|w| w == b"\"title\": \"")
            .unwrap()
            + 10;
        let mut bad = text[..at].to_vec();
        bad.extend_from_slice(b"\xff\xfe");
        bad.extend_from_slice(&text[at..]);
        fs::write(&p, bad).unwrap();
    }
    env.edit_json(&amazon("B07HFH7DLR"), |v| v["bsr"] = "high".into());
    env.edit_json(&format!("{PAGES}/baby-kids_nursery_page_2.json"), |v| {
        v.as_object_mut().unwrap().remove("products");
    });
    env.edit_json(&amazon("B081SZF0SD"), |v| v["cache_version"] = 1.into());
    env.edit_json("FBA_ANALYSIS/Linking map/linking_map.json", |v| {
        v[3]["confidence"] = "high".into();
    });
    fs::write(
        env.file("cached_products/resume_state.json"),
        b"{\"page\": 3,, }",
    )
    .unwrap();
    // Not cache files: ignored.
    fs::write(env.file(&format!("{AMAZON}/notes.txt")), b"\xff not json").unwrap();
    fs::create_dir_all(env.t.join("OUTPUTS/elsewhere")).unwrap();
    fs::write(env.t.join("OUTPUTS/elsewhere/x.json"), b"not json").unwrap();

    let doc = env.run(&["validate"], 1);
    assert_eq!(doc["checked"], 42, "{doc}");
    let want: BTreeMap<String, String> = [
        (amazon("B00LN6W62K"), "empty"),
        (amazon("B055M6KAAX"), "truncated"),
        (amazon("B07BX0KBVE"), "not_utf8"),
        (amazon("B07HFH7DLR"), "schema"),
        (amazon("B081SZF0SD"), "cache_version"),
        (format!("{PAGES}/baby-kids_nursery_page_2.json"), "schema"),
        ("FBA_ANALYSIS/Linking map/linking_map.json".into(), "schema"),
        ("cached_products/resume_state.json".into(), "invalid_json"),
    ]
    .into_iter()
    .map(|(p, r)| (p, r.to_string()))
    .collect();
    assert_eq!(reasons(&doc["invalid"]), want, "{doc}");

    let by_path: BTreeMap<&str, &serde_json::Value> = doc["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f))
        .collect();
    let detail = |p: &str| by_path[p]["detail"].as_str().unwrap().to_string();
    assert!(detail(&amazon("B07HFH7DLR")).contains("/bsr"));
    assert!(detail(&format!("{PAGES}/baby-kids_nursery_page_2.json")).contains("products"));
    assert!(detail(&amazon("B081SZF0SD")).contains("expected 2"));
    assert!(detail("FBA_ANALYSIS/Linking map/linking_map.json").contains("/3/confidence"));
    assert_eq!(
        by_path[amazon("B07HFH7DLR").as_str()]["cache_type"],
        "amazon_cache"
    );
    // State files belong to no type, even inside a type's folder.
    assert_eq!(
        by_path["cached_products/resume_state.json"]["cache_type"],
        serde_json::Value::Null
    );

    // --type restricts to that type's folder.
    let doc = env.run(&["validate", "--type", "amazon_cache"], 1);
    assert_eq!(doc["checked"], 30);
    assert_eq!(doc["invalid"].as_array().unwrap().len(), 5, "{doc}");
    let doc = env.run(
        &[
            "validate",
            "--type",
            "linking_map",
            "--type",
            "ai_category_cache",
        ],
        1,
    );
    assert_eq!(doc["checked"], 4);
    assert_eq!(doc["invalid"].as_array().unwrap().len(), 1, "{doc}");
    let doc = env.run(&["validate", "--type", "ai_category_cache"], 0);
    assert_eq!(doc["checked"], 3);
}

#[test]
fn validate_refuses_unknown_types_and_a_missing_config() {
    let env = Env::new();
    let doc = env.run(&["validate", "--type", "amazon_cache", "--type", "nope"], 2);
    assert!(doc["error"].as_str().unwrap().contains("\"nope\""), "{doc}");
    let out = run(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("validate needs --config FILE"));
    let out = run(&["repair", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("repair needs --config FILE"));
}

#[test]
fn validate_leaves_access_times_alone() {
    let env = Env::new();
    let p = env.file(&amazon("B0W3DAILM8"));
    // An access time older than the mtime: a plain read would move it (relatime).
    let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(old))
        .unwrap();
    env.run(&["validate"], 0);
    assert_eq!(fs::metadata(&p).unwrap().accessed().unwrap(), old);
}

#[test]
fn repair_restores_the_newest_valid_versions_and_quarantines_the_rest() {
    let env = Env::new();
    let a = amazon("B08JH20XYW"); // corrupted, and snapshotted corrupt
    let b = format!("{PAGES}/diy-tools_adhesives_page_1.json"); // corrupted after the snapshots
    let c = amazon("B0D98139R0"); // wrong cache_version after the snapshots
    let d = "cached_products/resume_state.json".to_string(); // a state file
    let n1 = amazon("B0NEW00001"); // new, only ever snapshotted corrupt
    let n2 = amazon("B0NEW00002"); // new, never snapshotted
                                   // A mode and an mtime of its own, to prove both come back.
    let pa = env.file(&a);
    fs::set_permissions(&pa, fs::Permissions::from_mode(0o640)).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    fs::File::options()
        .write(true)
        .open(&pa)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let clean = env.tree();

    env.run(&["init"], 0);
    let s1 = env.run(&["snapshot", "--time", "2026-11-20 10:00:00"], 0);
    env.truncate(&a);
    fs::write(env.file(&n1), b"{\"asin\": \"B0NEW00001\"").unwrap();
    let s2 = env.run(&["snapshot", "--time", "2026-11-21 10:00:00"], 0);
    assert_eq!(s2["files_changed"], 1, "{s2}");
    assert_eq!(s2["files_new"], 1, "{s2}");
    env.edit_json(&b, |v| v["page"] = "one".into());
    env.edit_json(&c, |v| v["cache_version"] = 3.into());
    fs::write(env.file(&d), b"").unwrap();
    fs::write(env.file(&n2), b"{\"asin\": ").unwrap();
    // Something already sits where n1 goes in quarantine: it must not be overwritten.
    let q1 = env.quarantine().join(&n1);
    fs::create_dir_all(q1.parent().unwrap()).unwrap();
    fs::write(&q1, b"an earlier quarantined file").unwrap();

    // Dry run: the same findings, nothing changed.
    let before = env.tree();
    let dry = env.run(&["repair", "--dry-run"], 0);
    assert_eq!(env.tree(), before, "a dry run changes nothing");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["checked"], 44, "{dry}");
    let repaired_want: BTreeMap<String, String> = [
        (a.clone(), "truncated"),
        (b.clone(), "schema"),
        (c.clone(), "cache_version"),
        (d.clone(), "empty"),
    ]
    .into_iter()
    .map(|(p, r)| (p, r.to_string()))
    .collect();
    assert_eq!(reasons(&dry["repaired"]), repaired_want, "{dry}");
    assert_eq!(
        reasons(&dry["quarantined"]).keys().collect::<Vec<_>>(),
        [&n1, &n2],
        "{dry}"
    );

    let doc = env.run(&["repair"], 0);
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["failed"], serde_json::json!([]), "{doc}");
    assert_eq!(reasons(&doc["repaired"]), repaired_want, "{doc}");
    let from: BTreeMap<&str, (&str, &str)> = doc["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap(),
                (
                    r["from_snapshot"].as_str().unwrap(),
                    r["snapshot_time"].as_str().unwrap(),
                ),
            )
        })
        .collect();
    // The newest snapshot holds a's corrupt version: the older, valid one is used.
    assert_eq!(from[a.as_str()].0, s1["id"].as_str().unwrap());
    assert!(from[a.as_str()].1.starts_with("2026-11-20T10:00:00"));
    for p in [&b, &c, &d] {
        assert_eq!(from[p.as_str()].0, s2["id"].as_str().unwrap(), "{p}");
    }
    // Byte for byte, with mode and mtime.
    for p in [&a, &b, &c, &d] {
        let path = env.file(p);
        let (data, mode, mtime_ns) = &clean[&path];
        assert_eq!(&fs::read(&path).unwrap(), data, "{p}");
        let m = fs::metadata(&path).unwrap();
        assert_eq!(m.mode() & 0o7777, *mode, "{p}");
        assert_eq!(m.mtime() * 1_000_000_000 + m.mtime_nsec(), *mtime_ns, "{p}");
    }
    assert_eq!(mtime(&pa), when);
    assert_eq!(fs::metadata(&pa).unwrap().mode() & 0o7777, 0o640);

    // No good version anywhere: moved under its relative path, never overwriting.
    let q: BTreeMap<String, PathBuf> = doc["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["path"].as_str().unwrap().to_string(),
                PathBuf::from(q["quarantine_path"].as_str().unwrap()),
            )
        })
        .collect();
    let q1_numbered = PathBuf::from(format!("{}.1", q1.display()));
    assert_eq!(q[&n1], q1_numbered);
    assert_eq!(q[&n2], env.quarantine().join(&n2));
    assert_eq!(fs::read(&q1).unwrap(), b"an earlier quarantined file");
    assert_eq!(
        fs::read(&q1_numbered).unwrap(),
        b"{\"asin\": \"B0NEW00001\""
    );
    assert_eq!(fs::read(&q[&n2]).unwrap(), b"{\"asin\": ");
    assert!(!env.file(&n1).exists() && !env.file(&n2).exists());
    // n1's snapshot version was looked at and refused, and says why.
    let refused = doc["quarantined"][0]["refused"].as_array().unwrap();
    assert!(
        refused[0].as_str().unwrap().contains("invalid too"),
        "{refused:?}"
    );

    // Everything else is as it was; the tree validates; the journal has the repair.
    let after = env.tree();
    for (p, v) in &clean {
        assert_eq!(after.get(p), Some(v), "{}", p.display());
    }
    let doc = env.run(&["validate"], 0);
    assert_eq!(doc["checked"], 42);
    let repo = Repository::open(&env.t.join("cachevault-repo")).unwrap();
    let journal = cachevault::journal::read(&repo).unwrap();
    // (validate is journaled too, for health: the repair is the last but one entry.)
    assert_eq!(journal.last().unwrap().operation, "validate");
    let last = journal
        .iter()
        .rev()
        .find(|e| e.operation == "repair")
        .unwrap();
    assert_eq!(last.operation, "repair");
    assert_eq!(last.result, "ok");
    assert_eq!(last.details["repaired_count"], 4);

    // Nothing left to do.
    let doc = env.run(&["repair"], 0);
    assert_eq!(doc["repaired"], serde_json::json!([]));
    assert_eq!(doc["quarantined"], serde_json::json!([]));
}

#[test]
fn repair_exits_1_when_a_file_can_be_neither_repaired_nor_quarantined() {
    let env = Env::new();
    env.run(&["init"], 0);
    let rel = amazon("B0NEW00003");
    fs::write(env.file(&rel), b"[").unwrap();
    // The quarantine folder cannot be created: a file sits where it should be.
    fs::write(env.quarantine(), b"in the way").unwrap();
    let doc = env.run(&["repair"], 1);
    assert_eq!(
        reasons(&doc["failed"]),
        [(rel.clone(), "truncated".to_string())].into()
    );
    assert!(doc["failed"][0]["error"]
        .as_str()
        .unwrap()
        .contains("quarantine"));
    assert_eq!(fs::read(env.file(&rel)).unwrap(), b"[", "left as it was");
}

#[test]
fn library_findings_match_the_cli() {
    let env = Env::new();
    env.truncate("FBA_ANALYSIS/Linking map/linking_map.json");
    let cfg = Config::load(&env.cfg).unwrap();
    let r = validate::validate(&cfg, &ValidateOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.checked, 42);
    assert_eq!(r.invalid.len(), 1);
    assert_eq!(r.invalid[0].reason, Problem::Truncated);
    assert_eq!(r.invalid[0].cache_type.as_deref(), Some("linking_map"));
}
