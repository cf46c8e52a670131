//! Hostile configs and arguments, table-driven: each bad input fails with exit code 2 and a
//! message naming the culprit (the config key path, or the flag and its value), and nothing
//! panics.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// What a case feeds the binary.
enum Input {
    /// The shipped config, changed by the closure, then `config check`.
    Config(fn(&mut Value)),
    /// A config file with exactly these bytes, then `config check`.
    RawConfig(&'static str),
    /// These arguments, with the shipped config (its repository initialised).
    Args(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    input: Input,
    /// Every one of these must appear in stderr.
    culprit: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    use Input::*;
    let c = |name, input, culprit| Case {
        name,
        input,
        culprit,
    };
    vec![
        // Config: malformed, wrong types, impossible numbers.
        c(
            "malformed JSON",
            RawConfig("{\"cache\": {\"root\": \"OUTPUTS\",\n"),
            &["bad.json", "line 2"],
        ),
        c(
            "not an object",
            RawConfig("[1, 2, 3]"),
            &["bad.json", "invalid type"],
        ),
        c(
            "a string where a number belongs",
            Config(|v| v["cache"]["strategies"]["clearing"]["batch_size"] = json!("ten")),
            &["cache.strategies.clearing.batch_size", "string"],
        ),
        c(
            "a string where a boolean belongs",
            Config(|v| v["cache"]["enabled"] = json!("yes")),
            &["cache.enabled"],
        ),
        c(
            "a list where a path belongs",
            Config(|v| v["cache"]["cache_types"]["amazon_cache"]["path"] = json!(["a"])),
            &["cache.cache_types.amazon_cache.path"],
        ),
        c(
            "a negative size limit",
            Config(|v| v["cache"]["global_settings"]["max_total_size_gb"] = json!(-1.0)),
            &["cache.global_settings.max_total_size_gb", "positive"],
        ),
        c(
            "a negative batch size",
            Config(|v| v["cache"]["strategies"]["clearing"]["batch_size"] = json!(-5)),
            &["cache.strategies.clearing.batch_size", "-5"],
        ),
        c(
            "a zero TTL",
            Config(|v| v["cache"]["cache_types"]["amazon_cache"]["ttl_hours"] = json!(0)),
            &["cache.cache_types.amazon_cache.ttl_hours"],
        ),
        // See: a backup_retention_days or ttl_hours of i64::MAX passed config check, then
        // panicked in chrono ("TimeDelta::days out of bounds") in forget and in clear.
        c(
            "a retention of i64::MAX days",
            Config(|v| v["cache"]["global_settings"]["backup_retention_days"] = json!(i64::MAX)),
            &["cache.global_settings.backup_retention_days", "100 years"],
        ),
        c(
            "a TTL of i64::MAX hours",
            Config(|v| v["cache"]["cache_types"]["amazon_cache"]["ttl_hours"] = json!(i64::MAX)),
            &["cache.cache_types.amazon_cache.ttl_hours", "100 years"],
        ),
        c(
            "a default TTL of i64::MAX hours",
            Config(|v| v["cache"]["global_settings"]["default_ttl_hours"] = json!(i64::MAX)),
            &["cache.global_settings.default_ttl_hours"],
        ),
        c(
            "a number too large for any integer",
            Config(|v| v["cache"]["global_settings"]["validation_interval_hours"] = json!(1e30)),
            &["cache.global_settings.validation_interval_hours"],
        ),
        c(
            "a pause of u64::MAX milliseconds",
            Config(|v| v["cache"]["strategies"]["clearing"]["batch_pause_ms"] = json!(u64::MAX)),
            &["cache.strategies.clearing.batch_pause_ms"],
        ),
        c(
            "a zero load threshold",
            Config(|v| {
                v["cache"]["strategies"]["clearing"]["load_threshold_per_core"] = json!(0.0)
            }),
            &["cache.strategies.clearing.load_threshold_per_core"],
        ),
        c(
            "a retention count below -1",
            Config(|v| {
                v["cache"]["strategies"]["backup"]["retention_policy"]["daily_backups"] = json!(-7)
            }),
            &["cache.strategies.backup.retention_policy.daily_backups"],
        ),
        // Cron.
        c(
            "a cron that never fires",
            Config(|v| {
                v["cache"]["strategies"]["clearing"]["schedule"]["cron"] = json!("0 0 30 2 *")
            }),
            &["cache.strategies.clearing.schedule.cron", "never fires"],
        ),
        c(
            "a cron with six fields",
            Config(|v| {
                v["cache"]["strategies"]["clearing"]["schedule"]["cron"] = json!("0 0 2 * * *")
            }),
            &["cache.strategies.clearing.schedule.cron", "5 fields"],
        ),
        c(
            "a garbage cron",
            Config(|v| {
                v["cache"]["strategies"]["clearing"]["schedule"]["cron"] = json!("every day at two")
            }),
            &[
                "cache.strategies.clearing.schedule.cron",
                "every day at two",
            ],
        ),
        c(
            "a cron with garbage in five fields",
            Config(|v| {
                v["cache"]["strategies"]["clearing"]["schedule"]["cron"] = json!("a b c d e")
            }),
            &["cache.strategies.clearing.schedule.cron", "a b c d e"],
        ),
        c(
            "a cron minute of 61",
            Config(|v| {
                v["cache"]["strategies"]["clearing"]["schedule"]["cron"] = json!("61 2 * * *")
            }),
            &["cache.strategies.clearing.schedule.cron", "61 2 * * *"],
        ),
        // Unknown keys.
        c(
            "an unknown key under cache",
            Config(|v| v["cache"]["colour"] = json!("blue")),
            &["cache", "colour"],
        ),
        c(
            "an unknown key in a cache type",
            Config(|v| v["cache"]["cache_types"]["amazon_cache"]["ttl"] = json!(3)),
            &["cache.cache_types.amazon_cache", "ttl"],
        ),
        c(
            "an unknown top-level key",
            Config(|v| v["cachee"] = json!({})),
            &["cachee"],
        ),
        // Paths that overlap.
        c(
            "the cache root is /",
            Config(|v| v["cache"]["root"] = json!("/")),
            &["cache.root", "file system root"],
        ),
        c(
            "the repository is the cache root",
            Config(|v| v["cache"]["repository"] = json!("OUTPUTS")),
            &["cache.repository"],
        ),
        c(
            "the repository contains the cache root",
            Config(|v| v["cache"]["repository"] = json!(".")),
            &["cache.repository"],
        ),
        c(
            "the repository inside a cache folder",
            Config(|v| v["cache"]["repository"] = json!("OUTPUTS/cached_products/repo")),
            &["cache.repository", "supplier_cache"],
        ),
        c(
            "a cache type leaving the root",
            Config(|v| v["cache"]["cache_types"]["amazon_cache"]["path"] = json!("../elsewhere")),
            &["cache.cache_types.amazon_cache.path", ".."],
        ),
        c(
            "a cache type at an absolute path",
            Config(|v| v["cache"]["cache_types"]["amazon_cache"]["path"] = json!("/etc")),
            &["cache.cache_types.amazon_cache.path"],
        ),
        // See: two cache types with one folder were accepted; every file went to one of
        // them, and the other's policies (`preserve` included) silently never applied.
        c(
            "two cache types sharing one folder",
            Config(|v| {
                v["cache"]["cache_types"]["ai_category_cache"]["path"] =
                    json!("FBA_ANALYSIS/amazon_cache/")
            }),
            &["cache.cache_types", "amazon_cache", "ai_category_cache"],
        ),
        // Strategies and names.
        c(
            "an unknown cleanup strategy",
            Config(|v| {
                v["cache"]["cache_types"]["amazon_cache"]["cleanup_strategy"] = json!("nuke")
            }),
            &["cache.cache_types.amazon_cache.cleanup_strategy"],
        ),
        c(
            "an unknown default strategy",
            Config(|v| v["cache"]["strategies"]["clearing"]["default"] = json!("nuke")),
            &["cache.strategies.clearing.default"],
        ),
        c(
            "an unknown available strategy",
            Config(|v| v["cache"]["strategies"]["clearing"]["available"] = json!(["nuke"])),
            &["cache.strategies.clearing.available", "nuke"],
        ),
        c(
            "preserving an unknown type",
            Config(|v| v["cache"]["strategies"]["clearing"]["preserve"] = json!(["nope"])),
            &["cache.strategies.clearing.preserve", "nope"],
        ),
        c(
            "a missing schema file",
            Config(|v| {
                v["cache"]["cache_types"]["amazon_cache"]["schema"] = json!("schemas/nope.json")
            }),
            &["cache.cache_types.amazon_cache.schema", "nope.json"],
        ),
        c(
            "an unknown backup frequency",
            Config(|v| v["cache"]["strategies"]["backup"]["frequency"] = json!("monthly")),
            &["cache.strategies.backup.frequency"],
        ),
        // Arguments.
        c(
            "a duration with an unknown unit",
            Args(&["forget", "--keep-within", "5x"]),
            &["--keep-within", "5x"],
        ),
        c(
            "a duration without a number",
            Args(&["forget", "--keep-within-daily", "d"]),
            &["--keep-within-daily", "\"d\""],
        ),
        c(
            "a negative duration",
            Args(&["forget", "--keep-within-weekly", "-2d"]),
            &["--keep-within-weekly", "-2d"],
        ),
        c(
            "a count below -1",
            Args(&["forget", "--keep-last", "-5"]),
            &["--keep-last", "-5"],
        ),
        c(
            "an unknown group field",
            Args(&["forget", "--keep-last", "1", "--group-by", "colour"]),
            &["--group-by", "colour"],
        ),
        c(
            "a bad --now for forget",
            Args(&["forget", "--keep-last", "1", "--now", "tomorrow"]),
            &["--now", "tomorrow"],
        ),
        c(
            "a bad --time",
            Args(&["snapshot", "--time", "yesterday"]),
            &["--time", "yesterday"],
        ),
        c(
            "an impossible --time",
            Args(&["snapshot", "--time", "2026-02-30 10:00:00"]),
            &["--time", "2026-02-30 10:00:00"],
        ),
        c(
            "a bad --at",
            Args(&["restore", "--at", "31/12/2026", "--target", "x"]),
            &["--at", "31/12/2026"],
        ),
        c(
            "a restore path leaving the snapshot",
            Args(&["restore", "latest", "--target", "x", "--path", "../etc"]),
            &["--path", "../etc"],
        ),
        c(
            "a subset above 100%",
            Args(&["check", "--read-data-subset", "150%"]),
            &["--read-data-subset", "150%"],
        ),
        c(
            "a subset that is not a number",
            Args(&["check", "--read-data-subset", "lots"]),
            &["--read-data-subset", "lots"],
        ),
        c(
            "a zero subset",
            Args(&["check", "--read-data-subset", "0"]),
            &["--read-data-subset", "\"0\""],
        ),
        c(
            "an unknown clear strategy",
            Args(&["clear", "--strategy", "nuke", "--dry-run"]),
            &["--strategy", "nuke"],
        ),
        c(
            "a bad --now for clear",
            Args(&["clear", "--strategy", "ttl", "--dry-run", "--now", "soon"]),
            &["--now", "soon"],
        ),
        c(
            "an unknown clear type",
            Args(&["clear", "--strategy", "full", "--dry-run", "--type", "nope"]),
            &["--type", "nope"],
        ),
        c(
            "a --max-unused above 100%",
            Args(&["prune", "--max-unused", "150%"]),
            &["--max-unused", "150%"],
        ),
        c(
            "a negative --lock-wait",
            Args(&["--lock-wait", "-1", "check"]),
            &["--lock-wait", "-1"],
        ),
        c(
            "a --lock-wait that is not a number",
            Args(&["--lock-wait", "forever", "check"]),
            &["--lock-wait", "forever"],
        ),
        c(
            "a --top that is not a number",
            Args(&["warm", "--top", "-3"]),
            &["--top", "-3"],
        ),
    ]
}

#[test]
fn bad_configs_and_arguments_fail_with_exit_2_naming_the_culprit() {
    let t = TestDir::new();
    let good_path = config_tree(&t, 1_790_000_000);
    let good: Value = serde_json::from_slice(&fs::read(&good_path).unwrap()).unwrap();
    json_cfg(&good_path, &["init"], 0);
    json_cfg(&good_path, &["snapshot"], 0);
    let bad_path = t.join("bad.json");
    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for case in &cases {
        let args: Vec<String> = match &case.input {
            Input::Config(change) => {
                let mut v = good.clone();
                change(&mut v);
                fs::write(&bad_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
                config_args(&bad_path, &["config", "check"])
            }
            Input::RawConfig(text) => {
                fs::write(&bad_path, text).unwrap();
                config_args(&bad_path, &["config", "check"])
            }
            Input::Args(a) => config_args(&good_path, a),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = std::process::Command::new(BIN)
            .args(&args)
            .current_dir(t.path())
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG")
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let missing: Vec<&&str> = case.culprit.iter().filter(|c| !err.contains(**c)).collect();
        if out.status.code() != Some(2) || !missing.is_empty() || err.contains("panicked") {
            failures.push(format!(
                "{}: exit {:?}, stderr lacks {missing:?}:\n{err}",
                case.name,
                out.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn config_args(cfg: &Path, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["--config".to_string(), cfg.to_str().unwrap().to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}
