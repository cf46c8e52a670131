//! The Prometheus textfile: clean under `promtool check metrics`, with health, run-due's jobs
//! and deferrals; written by run-due after every run when the config names it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// `promtool check metrics` on the file: exit 0 and nothing printed (no lint finding).
fn promtool_clean(path: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(path).unwrap())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool on {}: {said}\n{}",
        path.display(),
        fs::read_to_string(path).unwrap()
    );
}

/// Samples by `name{labels}`.
fn samples(path: &Path) -> BTreeMap<String, f64> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn run_due_writes_a_promtool_clean_textfile_after_every_run() {
    if !require(
        "promtool",
        "lint the metrics file (Debian package prometheus)",
    ) {
        return;
    }
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let mut c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    c["cache"]["outputs"] = json!({"metrics_textfile": "textfile/cachevault.prom"});
    fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let dir = t.mkdirp("textfile");
    let prom = dir.join("cachevault.prom");
    json_cfg(&cfg, &["init"], 0);

    // Three nights in a row the machine is busy at 02:00: the scheduled performance_aware
    // clear is deferred each time; everything else runs.
    let mut last_inode = None;
    for (day, expect) in [(20, 1), (21, 2), (22, 3)] {
        let before = now_secs();
        let now = format!("2026-11-{day}T02:30:00+00:00");
        let d = json_cfg(
            &cfg,
            &["run-due", "--now", &now, "--load-average", "999"],
            0,
        );
        let after = now_secs();
        assert_eq!(d["deferrals_in_a_row"], expect, "{d}");
        assert_eq!(d["metrics_textfile"], json!(prom), "{d}");
        let warned = d["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("deferred 3 times in a row"));
        assert_eq!(warned, expect >= 3, "{d}");

        promtool_clean(&prom);
        assert_eq!(
            fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Replaced by rename each run, and no temp file left beside it.
        let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&prom).unwrap());
        assert_ne!(Some(inode), last_inode);
        last_inode = Some(inode);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["cachevault.prom"]);

        let s = samples(&prom);
        // Job times are the wall clock of this run, not --now.
        let backup = s["cachevault_run_due_last_success_timestamp_seconds{job=\"backup\"}"];
        assert!(
            backup >= before.floor() && backup <= after.ceil(),
            "{backup} not in [{before}, {after}]"
        );
        assert_eq!(
            s["cachevault_run_due_clear_deferrals_in_a_row"],
            expect as f64
        );
        assert_eq!(
            s["cachevault_run_due_job_runs_total{job=\"clearing\",result=\"deferred\"}"],
            expect as f64
        );
        assert!(
            s.contains_key("cachevault_run_due_last_deferral_timestamp_seconds{job=\"clearing\"}")
        );
        assert!(
            s["cachevault_operation_last_duration_seconds{operation=\"run-due:backup\"}"] > 0.0
        );
        assert!(s.contains_key("cachevault_repository_last_backup_timestamp_seconds"));
        let clearing = s["cachevault_health_check_status{check=\"clearing\"}"];
        assert_eq!(clearing, if expect >= 3 { 1.0 } else { 0.0 });
        assert!(s["cachevault_health_status"] >= clearing);
    }
    // health says the same.
    let h = json_cfg(&cfg, &["health", "--now", "2026-11-22T03:00:00+00:00"], 1);
    assert!(
        h["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "clearing"
                && r["message"].as_str().unwrap().contains("3 times in a row")),
        "{h}"
    );

    // A failing job has a last failure time; a clear that runs ends the deferrals.
    fs::write(
        t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0BROKEN01.json"),
        b"{\"trunc",
    )
    .unwrap();
    let d = json_cfg(
        &cfg,
        &[
            "run-due",
            "--now",
            "2026-11-23T02:30:00+00:00",
            "--load-average",
            "0",
        ],
        1,
    );
    assert_eq!(d["deferrals_in_a_row"], 0, "{d}");
    promtool_clean(&prom);
    let s = samples(&prom);
    assert!(s.contains_key("cachevault_run_due_last_failure_timestamp_seconds{job=\"validation\"}"));
    assert_eq!(s["cachevault_run_due_clear_deferrals_in_a_row"], 0.0);
    assert!(s.contains_key("cachevault_run_due_last_success_timestamp_seconds{job=\"clearing\"}"));
}

#[test]
fn stats_prometheus_is_promtool_clean_and_uses_base_units() {
    if !require(
        "promtool",
        "lint the metrics file (Debian package prometheus)",
    ) {
        return;
    }
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    json_cfg(&cfg, &["clear", "--strategy", "ttl"], 0);
    let prom = t.join("stats.prom");
    json_cfg(&cfg, &["stats", "--prometheus", prom.to_str().unwrap()], 0);
    promtool_clean(&prom);
    let text = fs::read_to_string(&prom).unwrap();
    // Every family has HELP and TYPE; counters end in _total; no unit but seconds and bytes.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut p = line[7..].split(' ');
        let (name, kind) = (p.next().unwrap(), p.next().unwrap());
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        assert!(!name.contains("hours") && !name.contains("_days"), "{name}");
    }
    let s = samples(&prom);
    assert_eq!(
        s["cachevault_cache_ttl_seconds{cache_type=\"amazon_cache\"}"],
        336.0 * 3600.0
    );
    assert_eq!(
        s["cachevault_cache_ttl_seconds{cache_type=\"linking_map\"}"],
        -1.0
    );
    // The last backup and the last pre-clear snapshot apart.
    let backup = s["cachevault_repository_last_backup_timestamp_seconds"];
    let pre_clear = s["cachevault_repository_last_pre_clear_timestamp_seconds"];
    assert!(pre_clear >= backup, "{pre_clear} {backup}");
    assert!(s.contains_key("cachevault_health_status"));
    assert!(s.contains_key("cachevault_operation_last_duration_seconds{operation=\"clear\"}"));
}
