//! run-due across simulated days: each job at most once per period, idempotent at the same
//! time, failures retried, and the schedule state kept in the repository.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::*;
use serde_json::{json, Value};

fn ran(doc: &Value) -> BTreeMap<String, bool> {
    doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap().to_string(),
                j["ran"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn jobs(list: &[&str]) -> BTreeMap<String, bool> {
    ["backup", "clearing", "validation", "optimization"]
        .iter()
        .map(|j| (j.to_string(), list.contains(j)))
        .collect()
}

#[test]
fn jobs_run_once_per_period_across_simulated_days() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    // A deterministic scheduled strategy (performance_aware would depend on this machine's load).
    let mut c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    c["cache"]["strategies"]["clearing"]["schedule"]["strategy"] = serde_json::json!("ttl");
    fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    json_cfg(&cfg, &["init"], 0);
    let snaps = |cfg| json_cfg(cfg, &["snapshots"], 0).as_array().unwrap().len();

    // Day 1, 02:30: everything is due (the 02:00 clearing fired half an hour ago).
    let d1 = json_cfg(&cfg, &["run-due", "--now", "2026-11-20T02:30:00+00:00"], 0);
    assert_eq!(
        ran(&d1),
        jobs(&["backup", "clearing", "validation", "optimization"]),
        "{d1}"
    );
    let after_d1 = snaps(&cfg);
    assert!(after_d1 >= 1);
    // Idempotent: the same time again runs nothing.
    let again = json_cfg(&cfg, &["run-due", "--now", "2026-11-20T02:30:00+00:00"], 0);
    assert_eq!(ran(&again), jobs(&[]), "{again}");
    assert_eq!(snaps(&cfg), after_d1);
    // 10:00: only validation (every 6 h) is due.
    let d1b = json_cfg(&cfg, &["run-due", "--now", "2026-11-20T10:00:00+00:00"], 0);
    assert_eq!(ran(&d1b), jobs(&["validation"]), "{d1b}");
    // Day 2, 02:05: a new day's backup, the cron fired at 02:00, validation is due; the
    // 24-hourly optimization is not (23 h 35 min since).
    fs::write(
        t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0NEWDAY02.json"),
        r#"{"x": 1}"#,
    )
    .unwrap();
    let d2 = json_cfg(&cfg, &["run-due", "--now", "2026-11-21T02:05:00+00:00"], 1);
    let r2 = ran(&d2);
    assert!(
        r2["backup"] && r2["clearing"] && !r2["optimization"],
        "{d2}"
    );
    // The new file is not a valid amazon entry: validation fails, and is retried next call.
    let v = d2["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "validation")
        .unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("amazon_B0NEWDAY02.json"),
        "{v}"
    );
    let health = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "health",
        "--now",
        "2026-11-21T02:06:00+00:00",
    ]);
    let h: Value = serde_json::from_slice(&health.stdout).unwrap();
    assert!(
        h["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "validation"),
        "{h}"
    );
    fs::remove_file(t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0NEWDAY02.json")).unwrap();
    let retry = json_cfg(&cfg, &["run-due", "--now", "2026-11-21T02:10:00+00:00"], 0);
    assert_eq!(ran(&retry), jobs(&["validation"]), "{retry}");
    // Day 3, 03:00: optimization (forget by the retention policy, prune, size limits) again.
    let d3 = json_cfg(&cfg, &["run-due", "--now", "2026-11-22T03:00:00+00:00"], 0);
    let r3 = ran(&d3);
    assert!(r3["backup"] && r3["optimization"], "{d3}");
    // The state lives in the repository.
    let state: Value =
        serde_json::from_slice(&fs::read(t.join("cachevault-repo/schedule.json")).unwrap())
            .unwrap();
    assert!(state["last_run"]["optimization"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-22T03:00:00"));
    // --dry-run reports without running or recording.
    let dry = json_cfg(
        &cfg,
        &["run-due", "--dry-run", "--now", "2026-11-23T03:00:00+00:00"],
        0,
    );
    assert!(dry["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["due"] == true));
    assert_eq!(ran(&dry), jobs(&[]));
    let history = json_cfg(&cfg, &["history"], 0);
    let ops = history["operations"].as_array().unwrap();
    assert!(ops.iter().filter(|o| o["operation"] == "run-due").count() >= 5);
    // Each job on an entry of its own, linked to its run by run_id; the wall clock in `time`,
    // the simulated time in `now`.
    let run_of = |doc: &Value| -> Vec<&Value> {
        ops.iter()
            .filter(|o| o["run_id"] == doc["run_id"])
            .collect()
    };
    let names = |entries: &[&Value]| -> Vec<String> {
        entries
            .iter()
            .map(|o| o["operation"].as_str().unwrap().to_string())
            .collect()
    };
    let d1_entries = run_of(&d1);
    assert_eq!(
        names(&d1_entries),
        // By start time: the run, then its jobs (the validation job's `validate` entry,
        // for health, inside it).
        [
            "run-due",
            "run-due:backup",
            "run-due:clearing",
            "run-due:validation",
            "validate",
            "run-due:optimization",
            // The optimization job's steps, each on an entry of its own.
            "run-due:forget",
            "run-due:prune",
            "run-due:size_limits"
        ]
    );
    for step in &d1_entries[6..] {
        assert_eq!(step["result"], "ok", "{step}");
        assert!(step["seconds"].as_f64().unwrap() >= 0.0, "{step}");
        assert!(step["bytes"].as_i64().unwrap() <= 0, "{step}");
    }
    assert!(d1_entries[6]["details"]["forgotten"].is_number());
    assert!(d1_entries[7]["details"]["bytes_freed"].is_number());
    assert_eq!(d1_entries[8]["details"]["strategy"], "size_based");
    for e in &d1_entries {
        assert!(
            e["now"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-20T02:30:00"),
            "{e}"
        );
        assert_ne!(e["time"], e["now"], "{e}");
    }
    let backup = d1_entries[1];
    assert_eq!(backup["result"], "ok");
    assert!(backup["bytes"].as_i64().unwrap() > 0);
    assert_eq!(backup["bytes"], backup["details"]["bytes_added"]);
    let failed = run_of(&d2)
        .into_iter()
        .find(|o| o["operation"] == "run-due:validation")
        .unwrap();
    assert_eq!(
        (&failed["result"], &failed["exit_code"]),
        (&json!("failed"), &json!(2))
    );
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("amazon_B0NEWDAY02.json"));
    // Nothing due: no job entries, only the run's.
    assert_eq!(names(&run_of(&again)), ["run-due"]);
}

/// A performance_aware clear put off under load is journaled `deferred`, not as a failure,
/// and health does not count it against the clearing job.
#[test]
fn a_deferred_clear_is_journaled_as_deferred() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);
    let now = "2026-11-20T02:30:00+00:00";
    let doc = json_cfg(&cfg, &["run-due", "--now", now, "--load-average", "999"], 0);
    let clearing = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "clearing")
        .unwrap();
    assert_eq!(
        (&clearing["ran"], &clearing["ok"]),
        (&json!(false), &json!(true))
    );
    json_cfg(
        &cfg,
        &[
            "clear",
            "--strategy",
            "performance_aware",
            "--load-average",
            "999",
            "--now",
            now,
        ],
        5,
    );
    let history = json_cfg(&cfg, &["history"], 0);
    let ops = history["operations"].as_array().unwrap();
    let job = ops
        .iter()
        .find(|o| o["operation"] == "run-due:clearing")
        .unwrap();
    assert_eq!(
        (&job["result"], &job["exit_code"]),
        (&json!("deferred"), &json!(5))
    );
    assert!(job["details"]["deferred_reason"]
        .as_str()
        .unwrap()
        .contains("load average"));
    let clear = ops.iter().find(|o| o["operation"] == "clear").unwrap();
    assert_eq!(clear["result"], "deferred");
    let health = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "health",
        "--now",
        "2026-11-20T02:31:00+00:00",
    ]);
    let h: Value = serde_json::from_slice(&health.stdout).unwrap();
    assert!(
        !h["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "journal"),
        "{h}"
    );
}
