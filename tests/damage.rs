//! Damage contained and recoverable, on real repositories: a lost archive, a lost index
//! followed by a prune, a garbled index, a truncated manifest, forget --prune in a damaged
//! repository; the next snapshot restores exactly, the recovery commands bring
//! `check --read-data` back to clean, and intact snapshots restore exactly throughout. Plus a
//! property test: any one repository file deleted or truncated, then `rebuild-index` and
//! `repair-snapshots --forget`, always ends clean.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use cachevault::compare::compare_trees;
use common::*;
use proptest::prelude::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A repository with three snapshots of a changing tree, one archive each.
struct Scene {
    t: TestDir,
    repo: PathBuf,
    src: PathBuf,
    /// (snapshot id, copy of the tree as it was snapshotted), oldest first.
    snaps: Vec<(String, PathBuf)>,
}

impl Scene {
    fn new() -> Scene {
        let t = TestDir::new();
        let repo = t.join("repo");
        json(&repo, &["init"], 0);
        let src = t.join("OUTPUTS");
        copy_fixture(&src);
        let mut scene = Scene {
            t,
            repo,
            src,
            snaps: Vec::new(),
        };
        for day in 0..3 {
            scene.mutate(day);
            scene.snapshot();
        }
        scene
    }

    /// A day of the agent's work: new files, a rewritten file.
    fn mutate(&self, day: usize) {
        for i in 0..40 {
            fs::write(
                self.src.join(format!(
                    "FBA_ANALYSIS/amazon_cache/amazon_D{day}X{i:03}.json"
                )),
                format!(
                    "{{\"asin\": \"D{day}X{i:03}\", \"data\": \"{}\"}}",
                    "x".repeat(300 + i)
                ),
            )
            .unwrap();
        }
        fs::write(
            self.src.join("FBA_ANALYSIS/Linking map/linking_map.json"),
            json_array(200 + day * 50, day as u64 + 1),
        )
        .unwrap();
    }

    fn snapshot(&mut self) -> Value {
        let doc = json(&self.repo, &["snapshot", s(&self.src)], 0);
        let n = self.snaps.len();
        let copy_to = self.t.join(format!("as-of-{n}"));
        copy_tree(&self.src, &copy_to);
        self.snaps
            .push((doc["id"].as_str().unwrap().to_string(), copy_to));
        doc
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--repo", s(&self.repo), "--json"];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Restores `id` and compares it with the tree it was taken of.
    fn restores_exactly(&self, id: &str, expected: &Path, tag: &str) {
        let target = self.t.join(format!("restore-{tag}-{}", &id[..8]));
        let doc = json(&self.repo, &["restore", id, "--target", s(&target)], 0);
        assert!(doc["errors"].as_array().unwrap().is_empty(), "{doc}");
        let diffs = compare_trees(expected, &target, false).unwrap();
        assert!(
            diffs.is_empty(),
            "{tag}: snapshot {id} restored differently: {diffs:?}"
        );
    }

    fn files_in(&self, dir: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.repo.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        v.sort();
        v
    }

    fn largest_archive(&self) -> PathBuf {
        self.files_in("archives")
            .into_iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap()
    }

    fn check_clean(&self, tag: &str) {
        let c = json(&self.repo, &["check", "--read-data"], 0);
        assert_eq!(c["ok"], true, "{tag}: {c}");
        assert!(c["problems"].as_array().unwrap().is_empty(), "{tag}: {c}");
    }

    /// The recovery the README gives, step by step.
    fn recover(&self) {
        let r = self.cli(&["rebuild-index"]);
        assert!(
            matches!(r.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        let r = self.cli(&["repair-snapshots", "--forget"]);
        assert!(
            matches!(r.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
    }

    fn snapshot_count(&self) -> usize {
        let o = self.cli(&["snapshots"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array().unwrap().len()
    }
}

#[test]
fn a_lost_archive_heals_in_the_next_snapshot_and_recovers() {
    let mut sc = Scene::new();
    let lost = sc.largest_archive();
    let lost_name = lost.file_name().unwrap().to_string_lossy().to_string();
    let lost_id = lost_name.trim_end_matches(".tar.zst").to_string();
    fs::remove_file(&lost).unwrap();

    // check names the missing archive and what to run.
    let c = json(&sc.repo, &["check"], 3);
    let p = c["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "missing_archive")
        .unwrap_or_else(|| panic!("{c}"))
        .clone();
    assert!(p["object"].as_str().unwrap().contains(&lost_id));
    assert!(p["advice"].as_str().unwrap().contains("rebuild-index"));

    // A day of work, then the nightly snapshot: it must not trust the index for data
    // whose archive is gone.
    sc.mutate(3);
    let out = sc.cli(&["snapshot", s(&sc.src)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains(&lost_id),
        "the snapshot names the missing archive: {doc}"
    );
    assert!(doc["files_changed"].as_u64().unwrap() > 0 || doc["files_new"].as_u64().unwrap() > 40);
    let n = sc.snaps.len();
    let copy_to = sc.t.join(format!("as-of-{n}"));
    copy_tree(&sc.src, &copy_to);
    let newest = doc["id"].as_str().unwrap().to_string();
    sc.restores_exactly(&newest, &copy_to, "after loss");
    let r = json(
        &sc.repo,
        &[
            "restore",
            "latest",
            "--snapshot-path",
            s(&sc.src),
            "--target",
            s(&sc.t.join("L")),
        ],
        0,
    );
    assert_eq!(r["snapshot"], newest.as_str());
    sc.snaps.push((newest, copy_to));

    // Recovery: rebuild-index sets the stale index aside, repair-snapshots rewrites the
    // snapshots that used the lost archive. Then check is clean and every snapshot left
    // restores exactly what it lists.
    sc.recover();
    sc.check_clean("after recovery");
    let listed = json(&sc.repo, &["snapshots"], 0);
    for snap in listed.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        let target = sc.t.join(format!("final-{}", &id[..8]));
        let doc = json(&sc.repo, &["restore", id, "--target", s(&target)], 0);
        assert!(doc["errors"].as_array().unwrap().is_empty());
        if let Some((_, tree)) = sc.snaps.iter().find(|(i, _)| i == id) {
            assert!(
                compare_trees(tree, &target, false).unwrap().is_empty(),
                "{id}"
            );
        } else {
            // A repaired snapshot: tagged, and every file it lists is as it was.
            assert!(snap["tags"].to_string().contains("repaired"), "{snap}");
        }
    }
    // The damaged files were moved aside, not deleted.
    assert!(sc.repo.join("damaged").read_dir().unwrap().next().is_some());
}

#[test]
fn a_lost_index_is_rebuilt_and_prune_never_deletes_its_archive_blind() {
    let sc = Scene::new();
    let indexes = sc.files_in("index");
    let victim = &indexes[0];
    let archive_id = victim.file_stem().unwrap().to_string_lossy().to_string();
    fs::remove_file(victim).unwrap();
    let c = json(&sc.repo, &["check"], 3);
    let problems = c["problems"].as_array().unwrap();
    let unindexed = problems
        .iter()
        .find(|p| p["kind"] == "unindexed_archive")
        .unwrap_or_else(|| panic!("{c}"));
    assert!(unindexed["object"].as_str().unwrap().contains(&archive_id));
    assert!(
        unindexed["advice"]
            .as_str()
            .unwrap()
            .contains("rebuild-index")
            && !unindexed["advice"]
                .as_str()
                .unwrap()
                .contains("prune removes"),
        "{unindexed}"
    );
    // Prune first: the archive holds referenced data, and prune must not lose it.
    let p = json(&sc.repo, &["prune"], 0);
    assert_eq!(p["indexes_rebuilt"], 1, "{p}");
    assert!(sc
        .repo
        .join(format!("archives/{archive_id}.tar.zst"))
        .exists());
    sc.check_clean("after prune");
    for (id, tree) in &sc.snaps {
        sc.restores_exactly(id, tree, "after prune");
    }
    // And the same with rebuild-index.
    fs::remove_file(sc.repo.join(format!("index/{archive_id}.json"))).unwrap();
    let r = json(&sc.repo, &["rebuild-index"], 0);
    assert_eq!(r["indexes_written"][0]["reason"], "missing", "{r}");
    sc.check_clean("after rebuild-index");
}

#[test]
fn a_garbled_index_costs_only_the_snapshots_that_use_its_archive() {
    let mut sc = Scene::new();
    // A fourth snapshot with nothing new uses only the older archives; garble the index of
    // the last archive, which the first snapshot never uses.
    let indexes: Vec<PathBuf> = sc.files_in("index");
    let newest_index = indexes
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
        .unwrap()
        .clone();
    fs::write(&newest_index, b"{\"version\": 1, garbage").unwrap();
    let (first, first_tree) = sc.snaps[0].clone();
    sc.restores_exactly(&first, &first_tree, "garbled index, first snapshot");
    let (last, _) = sc.snaps[2].clone();
    let out = sc.cli(&["restore", &last, "--target", s(&sc.t.join("bad"))]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rebuild-index"), "{err}");
    // Snapshots keep working meanwhile, and store again what the garbled index covered.
    sc.mutate(4);
    sc.snapshot();
    let (newest, tree) = sc.snaps.last().unwrap().clone();
    sc.restores_exactly(&newest, &tree, "snapshot beside a garbled index");
    let r = json(&sc.repo, &["rebuild-index"], 0);
    assert_eq!(r["indexes_written"][0]["reason"], "damaged", "{r}");
    sc.check_clean("after rebuild-index");
    for (id, tree) in &sc.snaps {
        sc.restores_exactly(id, tree, "after rebuild-index");
    }
}

#[test]
fn a_truncated_manifest_stops_nothing_and_forget_prune_is_all_or_nothing() {
    let mut sc = Scene::new();
    let (oldest, _) = sc.snaps[0].clone();
    let path = sc.repo.join(format!("snapshots/{oldest}.json"));
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    // The listing shows the rest and names the damaged file, exit 3, also in --json.
    let out = sc.cli(&["snapshots"]);
    assert_eq!(out.status.code(), Some(3));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed.iter().filter(|s| s["damaged"] == true).count(), 1);
    assert!(listed
        .iter()
        .any(|s| s["damaged"] == true && s["id"] == oldest.as_str()));
    // Backups, restores of intact snapshots, stats and run-due's backup keep working.
    sc.mutate(5);
    sc.snapshot();
    let (last, tree) = sc.snaps.last().unwrap().clone();
    sc.restores_exactly(&last, &tree, "beside a truncated manifest");
    let r = json(
        &sc.repo,
        &[
            "restore",
            "latest",
            "--snapshot-path",
            s(&sc.src),
            "--target",
            s(&sc.t.join("L")),
        ],
        0,
    );
    assert_eq!(r["snapshot"], last.as_str());
    let stats = json(&sc.repo, &["stats"], 0);
    assert_eq!(
        stats["repository"]["damaged"][0]["file"],
        format!("snapshots/{oldest}.json")
    );
    let health = json(&sc.repo, &["health"], 2);
    assert!(health.to_string().contains("repair-snapshots"), "{health}");

    // forget --prune would leave a repository prune refuses: nothing is forgotten, exit 3.
    let before = sc.snapshot_count();
    let out = json(&sc.repo, &["forget", "--keep-last", "1", "--prune"], 3);
    let err = out["error"].as_str().unwrap();
    assert!(
        err.contains("nothing was forgotten") && err.contains(&oldest),
        "{err}"
    );
    assert_eq!(
        sc.snapshot_count(),
        before,
        "forget --prune changed something"
    );
    // prune alone refuses with the corruption exit code, changing nothing.
    let listing = |dir: &str| sc.files_in(dir);
    let archives_before = listing("archives");
    let out = json(&sc.repo, &["prune"], 3);
    assert!(out["error"].as_str().unwrap().contains("refuses"), "{out}");
    assert_eq!(listing("archives"), archives_before);
    // forget without prune works on the rest, and says which manifest it left.
    let f = json(&sc.repo, &["forget", "--keep-last", "10"], 1);
    assert_eq!(f["damaged"][0]["file"], format!("snapshots/{oldest}.json"));

    // forget by id removes the damaged manifest; then forget --prune runs.
    let f = json(&sc.repo, &["forget", &oldest[..10], "--dry-run"], 0);
    assert_eq!(f["would_remove"][0], oldest.as_str());
    assert!(path.exists());
    json(&sc.repo, &["forget", &oldest[..10]], 0);
    assert!(!path.exists());
    json(&sc.repo, &["forget", "--keep-last", "2", "--prune"], 0);
    sc.check_clean("after forget");
    let listed = json(&sc.repo, &["snapshots"], 0);
    for snap in listed.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        let (_, tree) = sc.snaps.iter().find(|(i, _)| i == id).unwrap();
        sc.restores_exactly(id, tree, "after forget --prune");
    }
}

#[test]
fn repair_snapshots_forget_removes_what_cannot_be_repaired_and_points_clears_at_repairs() {
    let t = TestDir::new();
    let cfg = config_tree(&t, chrono::Utc::now().timestamp() - 40 * 86_400);
    let root = t.join("OUTPUTS");
    let repo = t.join("cachevault-repo");
    json_cfg(&cfg, &["init"], 0);
    let backup = json_cfg(&cfg, &["snapshot"], 0);
    // Three products fetched after the backup: the pre-clear snapshot alone holds them.
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    let fresh: Vec<String> = (0..3).map(|i| format!("amazon_NEW{i}.json")).collect();
    for f in &fresh {
        fs::write(
            amazon.join(f),
            format!("{{\"asin\": \"{f}\", \"pad\": \"{}\"}}", "p".repeat(500)),
        )
        .unwrap();
    }
    let clear = json_cfg(
        &cfg,
        &["clear", "--strategy", "full", "--type", "amazon_cache"],
        0,
    );
    let clear_id = clear["clear_id"].as_str().unwrap().to_string();
    let dry = json_cfg(&cfg, &["repair-snapshots", "--dry-run"], 0);
    assert!(dry["repaired"].as_array().unwrap().is_empty(), "{dry}");
    // Lose the backup's archive: it held the backup's entry list and the older products.
    let oldest = fs::read_dir(repo.join("archives"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    fs::remove_file(&oldest).unwrap();
    let r = json_cfg(&cfg, &["repair-snapshots", "--forget"], 1);
    let repaired = r["repaired"].as_array().unwrap();
    let b = repaired
        .iter()
        .find(|x| x["original"] == backup["id"])
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        b["unrepairable"].as_str().unwrap().contains("entry list"),
        "{b}"
    );
    assert_eq!(b["forgotten"], true);
    let pre = repaired
        .iter()
        .find(|x| x["kind"] == "pre-clear")
        .unwrap_or_else(|| panic!("{r}"));
    let lost = pre["lost"].as_array().unwrap();
    assert!(!lost.is_empty());
    assert!(fresh.iter().all(|f| !lost
        .iter()
        .any(|l| l.as_str().unwrap().ends_with(f.as_str()))));
    assert!(r["records_updated"].to_string().contains(&clear_id), "{r}");
    let listed = json_cfg(&cfg, &["snapshots"], 0);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0]["tags"].to_string().contains("repaired"));
    assert_eq!(listed[0]["complete"], false);
    // Undo puts back what survived, verified, and names what was lost.
    let undo = json_cfg(&cfg, &["undo", &clear_id], 1);
    let restored: Vec<&str> = undo["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(restored.len(), fresh.len(), "{undo}");
    for f in &fresh {
        assert!(amazon.join(f).exists(), "{f} put back");
    }
    assert_eq!(undo["lost"].as_array().unwrap().len(), lost.len());
    json(&repo, &["rebuild-index"], 0);
    let c = json(&repo, &["check", "--read-data"], 0);
    assert_eq!(c["ok"], true, "{c}");
}

/// A base repository built once; each property case works on a copy.
fn base() -> &'static (TestDir, Vec<(String, PathBuf)>) {
    static BASE: std::sync::OnceLock<(TestDir, Vec<(String, PathBuf)>)> =
        std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let mut sc = Scene::new();
        // A clear record and schedule state too: they are repository files as well.
        fs::write(sc.repo.join("schedule.json"), b"{\"last_run\": {}}").unwrap();
        sc.mutate(7);
        sc.snapshot();
        let Scene { t, snaps, .. } = sc;
        (t, snaps)
    })
}

fn repository_files(repo: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(repo)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| {
            let rel = p.strip_prefix(repo).unwrap().to_string_lossy().to_string();
            // The repository's identity and its lock are out of scope: without config.json
            // there is no repository to recover.
            rel != "config.json" && !rel.starts_with("locks/")
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any one repository file deleted or truncated, then rebuild-index and
    /// repair-snapshots --forget: check --read-data is clean and every surviving snapshot
    /// restores exactly what it lists (restore verifies every file against the manifest).
    #[test]
    fn one_file_lost_or_truncated_always_recovers(pick in 0usize..10_000, cut in 0.0f64..1.0, delete in any::<bool>()) {
        let (base_dir, snaps) = base();
        let t = TestDir::new();
        let repo = t.join("repo");
        copy_tree(&base_dir.join("repo"), &repo);
        let files = repository_files(&repo);
        let victim = &files[pick % files.len()];
        if delete {
            fs::remove_file(victim).unwrap();
        } else {
            let len = fs::metadata(victim).unwrap().len();
            let keep = ((len as f64) * cut) as u64;
            fs::OpenOptions::new().write(true).open(victim).unwrap().set_len(keep.min(len.saturating_sub(1))).unwrap();
        }
        let what = format!("{} {}", if delete { "deleted" } else { "truncated" }, victim.strip_prefix(&repo).unwrap().display());
        for args in [&["rebuild-index"][..], &["repair-snapshots", "--forget"][..]] {
            let mut all = vec!["--repo", s(&repo), "--json"];
            all.extend_from_slice(args);
            let o = run(&all);
            prop_assert!(matches!(o.status.code(), Some(0 | 1)), "{what}: {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let c = run(&["--repo", s(&repo), "--json", "check", "--read-data"]);
        let report: Value = serde_json::from_slice(&c.stdout).unwrap();
        prop_assert_eq!(c.status.code(), Some(0), "{}: {}", what, report);
        prop_assert!(report["problems"].as_array().unwrap().is_empty(), "{}: {}", what, report);
        let listed: Value = serde_json::from_slice(&run(&["--repo", s(&repo), "--json", "snapshots"]).stdout).unwrap();
        for snap in listed.as_array().unwrap() {
            let id = snap["id"].as_str().unwrap();
            let target = t.join(format!("r-{}", &id[..8]));
            let o = run(&["--repo", s(&repo), "--json", "restore", id, "--target", s(&target)]);
            prop_assert_eq!(o.status.code(), Some(0), "{}: restore {}: {}", what, id, String::from_utf8_lossy(&o.stderr));
            if let Some((_, tree)) = snaps.iter().find(|(i, _)| i == id) {
                let diffs = compare_trees(tree, &target, false).unwrap();
                prop_assert!(diffs.is_empty(), "{}: {} differs: {:?}", what, id, diffs);
            }
        }
    }
}

/// run-due's backup keeps working in a damaged repository; its optimization job forgets
/// nothing while prune would refuse, and says why.
#[test]
fn run_due_backs_up_beside_a_damaged_manifest() {
    let t = TestDir::new();
    let now = chrono::Utc::now().timestamp();
    let cfg = config_tree(&t, now - 40 * 86_400);
    json_cfg(&cfg, &["init"], 0);
    let first = json_cfg(&cfg, &["snapshot", "--time", &iso(now - 3 * 86_400)], 0);
    json_cfg(&cfg, &["snapshot", "--time", &iso(now - 2 * 86_400)], 0);
    let path = t.join(format!(
        "cachevault-repo/snapshots/{}.json",
        first["id"].as_str().unwrap()
    ));
    fs::write(&path, b"{\"version\": 2, \"trunc").unwrap();
    // The scheduled performance_aware clear is deferred whatever this machine's load: its
    // pre-clear snapshot would otherwise come and go with the load average.
    let doc = json_cfg(&cfg, &["run-due", "--load-average", "1000"], 1);
    let job = |name: &str| {
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(job("backup")["ok"], true, "{doc}");
    let opt = job("optimization");
    assert_eq!(opt["ok"], false, "{doc}");
    assert!(
        opt["error"]
            .as_str()
            .unwrap()
            .contains("nothing was forgotten"),
        "{opt}"
    );
    let listed: Value =
        serde_json::from_slice(&run(&["--config", s(&cfg), "--json", "snapshots"]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339()
}
