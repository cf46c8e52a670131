//! `--json` error documents: every failure prints one document `{"error", "exit_code",
//! "kind"}` on stdout, `kind` a stable word chosen by the error's type (README, exit codes),
//! including the command-line parse errors clap reports; `--help` and `--version` stay text.

mod common;

use std::fs;
use std::time::Duration;

use cachevault::{LockKind, Repository};
use common::*;
use serde_json::Value;

/// Runs `args`, asserts the exit code and that stdout is exactly one error document, and
/// returns it.
fn error_doc(args: &[&str], code: i32) -> Value {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "cachevault {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("cachevault {args:?}: stdout is not one JSON document ({e}): {stdout}")
    });
    assert_eq!(doc["exit_code"], code, "{args:?}: {doc}");
    assert!(
        doc["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{args:?}: no error text: {doc}"
    );
    assert!(doc["kind"].is_string(), "{args:?}: no kind: {doc}");
    doc
}

fn kind_of(args: &[&str], code: i32) -> String {
    error_doc(args, code)["kind"].as_str().unwrap().to_string()
}

#[test]
fn bad_arguments_are_usage_errors_in_json_too() {
    let t = TestDir::new();
    let repo = t.join("repo");
    let r = repo.to_str().unwrap();
    json(&repo, &["init"], 0);
    // clap's errors: an unknown flag, a bad value, a missing argument, no subcommand; with
    // --json before or after the subcommand.
    for args in [
        vec!["--repo", r, "--json", "snapshots", "--no-such-flag"],
        vec!["--repo", r, "snapshots", "--no-such-flag", "--json"],
        vec!["--repo", r, "--json", "forget", "--keep-last", "many"],
        vec!["--repo", r, "--json", "restore", "latest"],
        vec!["--json", "no-such-command"],
        vec!["--json"],
    ] {
        let out = run(&args);
        let doc = error_doc(&args, 2);
        assert_eq!(doc["kind"], "usage", "{args:?}: {doc}");
        // The parse error is still explained on stderr, as without --json.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error") || stderr.contains("Usage"),
            "{args:?}: {stderr}"
        );
    }
    let doc = error_doc(&["--repo", r, "--json", "snapshots", "--no-such-flag"], 2);
    assert!(
        doc["error"].as_str().unwrap().contains("--no-such-flag"),
        "the message names the culprit: {doc}"
    );
    // Without --json, a parse error prints nothing on stdout.
    let out = run(&["--repo", r, "snapshots", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Errors the commands find in their arguments.
    assert_eq!(
        kind_of(
            &[
                "--repo",
                r,
                "--json",
                "restore",
                "latest",
                "--at",
                "yesterday"
            ],
            2
        ),
        "usage"
    );
    assert_eq!(kind_of(&["--json", "snapshots"], 2), "usage");
    // --help and --version are not errors: text on stdout, exit 0.
    for args in [["--json", "--help"], ["--json", "--version"]] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            serde_json::from_str::<Value>(&text).is_err() && text.contains("cachevault"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn config_errors_are_kind_config() {
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let c = cfg.to_str().unwrap();
    json_cfg(&cfg, &["init"], 0);
    // A config that does not parse, one that fails its checks, one that is missing, and one
    // whose schema file is missing: all `config`, whatever error lies beneath.
    let mut v: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    v["cache"]["global_settings"]["max_total_size_gb"] = serde_json::json!(-1.0);
    let checked = t.write("checked.json", serde_json::to_vec(&v).unwrap());
    let unparsable = t.write("unparsable.json", b"{\"cache\": ");
    let mut v: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    v["cache"]["cache_types"]["amazon_cache"]["schema"] = serde_json::json!("schemas/gone.json");
    let no_schema = t.write("no-schema.json", serde_json::to_vec(&v).unwrap());
    let missing = t.join("missing.json");
    for file in [&checked, &unparsable, &no_schema, &missing] {
        let f = file.to_str().unwrap();
        let doc = error_doc(&["--config", f, "--json", "stats"], 2);
        assert_eq!(doc["kind"], "config", "{f}: {doc}");
        assert!(
            doc["error"].as_str().unwrap().contains(f),
            "names the file: {doc}"
        );
    }
    // The config is fine, the command's own argument is not: that is usage.
    assert_eq!(
        kind_of(&["--config", c, "--json", "clear", "--strategy", "nope"], 2),
        "usage"
    );
    assert_eq!(
        kind_of(&["--config", c, "--json", "validate", "--type", "nope"], 2),
        "usage"
    );
}

#[test]
fn a_missing_repository_is_kind_no_repository_and_init_over_one_is_exists() {
    let t = TestDir::new();
    let nowhere = t.join("nowhere");
    let n = nowhere.to_str().unwrap();
    assert_eq!(
        kind_of(&["--repo", n, "--json", "snapshots"], 2),
        "no_repository"
    );
    assert_eq!(
        kind_of(&["--repo", n, "--json", "check"], 2),
        "no_repository"
    );
    t.write("full/file", b"x");
    assert_eq!(
        kind_of(
            &["--repo", t.join("full").to_str().unwrap(), "--json", "init"],
            2
        ),
        "exists"
    );
}

#[test]
fn a_missing_snapshot_is_kind_not_found() {
    let t = TestDir::new();
    let repo = t.join("repo");
    let r = repo.to_str().unwrap();
    json(&repo, &["init"], 0);
    let target = t.join("target");
    let target = target.to_str().unwrap();
    assert_eq!(
        kind_of(
            &["--repo", r, "--json", "restore", "deadbeef", "--target", target],
            2
        ),
        "not_found"
    );
    assert_eq!(
        kind_of(&["--repo", r, "--json", "ls", "latest"], 2),
        "not_found"
    );
    let src = t.mkdirp("src");
    t.write("src/a.json", b"{}");
    json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    json(
        &repo,
        &["snapshot", src.to_str().unwrap(), "--tag", "second"],
        0,
    );
    // The empty prefix matches both snapshots: ambiguous is `not_found` too.
    let doc = error_doc(&["--repo", r, "--json", "ls", ""], 2);
    assert_eq!(doc["kind"], "not_found", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("ambiguous"),
        "{doc}"
    );
}

#[test]
fn a_garbage_manifest_is_kind_corrupt() {
    let t = TestDir::new();
    let repo = t.join("repo");
    let r = repo.to_str().unwrap();
    json(&repo, &["init"], 0);
    let src = t.mkdirp("src");
    t.write("src/a.json", b"{}");
    json(&repo, &["snapshot", src.to_str().unwrap()], 0);
    let bogus = repo
        .join("snapshots")
        .join(format!("{}.json", "ab".repeat(32)));
    fs::write(&bogus, b"\0 this is no manifest").unwrap();
    // Asked for by id, the damaged manifest is an error of kind corrupt naming it.
    let bogus_id = "ab".repeat(32);
    let doc = error_doc(&["--repo", r, "--json", "ls", &bogus_id], 3);
    assert_eq!(doc["kind"], "corrupt", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("manifest abababab"),
        "names the manifest (short id): {doc}"
    );
    assert_eq!(
        kind_of(
            &[
                "--repo",
                r,
                "--json",
                "restore",
                &bogus_id[..12],
                "--target",
                t.join("x").to_str().unwrap()
            ],
            3
        ),
        "corrupt"
    );
}

#[test]
fn a_held_lock_is_kind_locked() {
    let t = TestDir::new();
    let repo_dir = t.join("repo");
    let r = repo_dir.to_str().unwrap();
    json(&repo_dir, &["init"], 0);
    let repo = Repository::open(&repo_dir).unwrap();
    let held = repo
        .lock(LockKind::Exclusive, "prune", Duration::ZERO, &mut |_| {})
        .unwrap();
    let doc = error_doc(&["--repo", r, "--lock-wait", "0", "--json", "prune"], 4);
    assert_eq!(doc["kind"], "locked", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("prune"),
        "names the holder: {doc}"
    );
    drop(held);
    json(&repo_dir, &["prune"], 0);
}
