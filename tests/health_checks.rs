//! health sees what broke since the last full validation: it re-checks only the cache files
//! modified since then, and warns when that validation is too old or never ran.

mod common;

use std::fs;

use common::*;
use serde_json::Value;

fn reasons_of<'a>(h: &'a Value, check: &str) -> Vec<&'a str> {
    h["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == check)
        .map(|r| r["message"].as_str().unwrap())
        .collect()
}

/// health's document whatever its exit code (a small test disk or the one-disk warning may
/// add findings of their own).
fn health(cfg: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--json", "health"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(matches!(out.status.code(), Some(0..=2)), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn health_checks_the_files_modified_since_the_last_full_validation() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);

    // Never validated: a warning that says so.
    let h = health(&cfg, &[]);
    let age = reasons_of(&h, "validation_age");
    assert_eq!(age.len(), 1, "{h}");
    assert!(age[0].contains("no full validation yet"), "{h}");
    assert_eq!(h["status"], "warning", "{h}");

    json_cfg(&cfg, &["validate"], 0);
    let h = health(&cfg, &[]);
    assert!(reasons_of(&h, "validation_age").is_empty(), "{h}");
    assert!(reasons_of(&h, "modified_files").is_empty(), "{h}");
    assert!(
        h["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "modified_files"),
        "{h}"
    );

    // After it: one file truncated, one rewritten with valid content, one old file whose
    // mtime is put back (its ctime still says it changed).
    let amazon = t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache");
    let mut names: Vec<String> = fs::read_dir(&amazon)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.ends_with("_state.json"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let truncated = amazon.join(&names[0]);
    let content = fs::read(&truncated).unwrap();
    fs::write(&truncated, &content[..content.len() / 2]).unwrap();
    let rewritten = amazon.join(&names[1]);
    let valid = fs::read(&rewritten).unwrap();
    fs::write(&rewritten, &valid).unwrap();
    let hidden = amazon.join(&names[2]);
    fs::write(&hidden, b"{\"asin\": ").unwrap();
    set_times(&hidden, 1_793_000_000, 1_793_000_000);

    let h = health(&cfg, &[]);
    let found = reasons_of(&h, "modified_files");
    assert_eq!(found.len(), 1, "{h}");
    let msg = found[0];
    assert!(msg.contains("2 of the 3 cache files modified"), "{msg}");
    assert!(msg.contains(&names[0]) && msg.contains(&names[2]), "{msg}");
    assert!(!msg.contains(&names[1]), "{msg}");
    assert!(msg.contains("cachevault repair"), "{msg}");
    assert_eq!(h["status"], "warning", "{h}");

    // A validation older than validation_interval_hours (6 in the shipped config).
    let later = (chrono::Utc::now() + chrono::Duration::hours(7)).to_rfc3339();
    let h = health(&cfg, &["--now", &later]);
    let age = reasons_of(&h, "validation_age");
    assert_eq!(age.len(), 1, "{h}");
    assert!(age[0].contains("validation_interval_hours (6 h)"), "{h}");
    let h = health(
        &cfg,
        &[
            "--now",
            &(chrono::Utc::now() + chrono::Duration::hours(5)).to_rfc3339(),
        ],
    );
    assert!(reasons_of(&h, "validation_age").is_empty(), "{h}");
}
