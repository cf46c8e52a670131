//! The config file: where commands find it, defaults of per-type keys, every problem named
//! at once, and the binary path schedules name.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

/// Runs the binary in `cwd` with only the environment given (plus PATH), `--json` first.
fn run_in(cwd: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--json")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn doc(out: &Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A config tree in `dir` (the shipped config beside a fixture OUTPUTS): returns its config.
fn tree_in(dir: &Path) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    copy_fixture(&dir.join("OUTPUTS"));
    default_config(dir)
}

#[test]
fn commands_that_need_a_config_find_it_in_order() {
    let t = TestDir::new();
    let home = t.mkdirp("home");
    let xdg = t.mkdirp("xdg");
    let work = t.mkdirp("work");
    let env_home = [("HOME", home.as_path())];

    // Nowhere: kind config, exit 2, and the message lists every place looked at.
    let d = doc(&run_in(&work, &env_home, &["validate"]), 2);
    assert_eq!(d["kind"], "config", "{d}");
    let msg = d["error"].as_str().unwrap();
    assert!(msg.contains("config"), "{msg}");
    assert!(
        msg.contains(&*work.join("cachevault.json").to_string_lossy()),
        "{msg}"
    );
    assert!(
        msg.contains(
            &*home
                .join(".config/cachevault/cachevault.json")
                .to_string_lossy()
        ),
        "{msg}"
    );

    // ~/.config/cachevault/cachevault.json when XDG_CONFIG_HOME is unset.
    let in_home = tree_in(&home.join(".config/cachevault"));
    let d = doc(&run_in(&work, &env_home, &["config", "check"]), 0);
    assert_eq!(d["file"], json!(in_home), "{d}");

    // $XDG_CONFIG_HOME/cachevault/cachevault.json before the home fallback.
    let in_xdg = tree_in(&xdg.join("cachevault"));
    let env_xdg = [("HOME", home.as_path()), ("XDG_CONFIG_HOME", xdg.as_path())];
    let d = doc(&run_in(&work, &env_xdg, &["config", "check"]), 0);
    assert_eq!(d["file"], json!(in_xdg), "{d}");

    // ./cachevault.json before both; validate runs on it without --config.
    let here = tree_in(&work);
    let d = doc(&run_in(&work, &env_xdg, &["config", "check"]), 0);
    assert_eq!(d["file"], json!(here), "{d}");
    let v = doc(&run_in(&work, &env_xdg, &["validate"]), 0);
    assert!(v["checked"].as_u64().unwrap() > 0, "{v}");

    // CACHEVAULT_CONFIG before ./cachevault.json, and --config before CACHEVAULT_CONFIG.
    let other = tree_in(&t.join("other"));
    let env_var = [
        ("HOME", home.as_path()),
        ("CACHEVAULT_CONFIG", other.as_path()),
    ];
    let d = doc(&run_in(&work, &env_var, &["config", "check"]), 0);
    assert_eq!(d["file"], json!(other), "{d}");
    let d = doc(
        &run_in(
            &work,
            &env_var,
            &["--config", in_xdg.to_str().unwrap(), "config", "check"],
        ),
        0,
    );
    assert_eq!(d["file"], json!(in_xdg), "{d}");

    // A command that takes a config optionally keeps working without one: a repository's
    // stats with ./cachevault.json present are the repository's alone.
    let repo = t.join("repo");
    let r = repo.to_str().unwrap();
    doc(&run_in(&work, &env_home, &["--repo", r, "init"]), 0);
    let s = doc(&run_in(&work, &env_home, &["--repo", r, "stats"]), 0);
    assert_eq!(s["cache_types"], json!({}), "{s}");
}

#[test]
fn a_named_config_that_is_missing_says_config_and_where() {
    let t = TestDir::new();
    let out = run_in(t.path(), &[], &["--config", "nope.json", "validate"]);
    let d = doc(&out, 2);
    assert_eq!(d["kind"], "config");
    let msg = d["error"].as_str().unwrap();
    assert!(msg.contains("config file nope.json not found"), "{msg}");
    assert!(
        msg.contains(&*t.join("nope.json").to_string_lossy()),
        "{msg}"
    );
    assert!(!msg.contains("os error"), "{msg}");
}

#[test]
fn per_type_keys_with_a_default_may_be_left_out() {
    let t = TestDir::new();
    let cfg = tree_in(t.path());
    let mut c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    c["cache"]["global_settings"]["default_ttl_hours"] = json!(100);
    c["cache"]["strategies"]["clearing"]["default"] = json!("ttl");
    let a = c["cache"]["cache_types"]["amazon_cache"]
        .as_object_mut()
        .unwrap();
    for k in [
        "ttl_hours",
        "backup_enabled",
        "validation_enabled",
        "cleanup_strategy",
    ] {
        a.remove(k);
    }
    fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();
    let d = json_cfg(&cfg, &["config", "check"], 0);
    let a = &d["config"]["cache"]["cache_types"]["amazon_cache"];
    assert_eq!(a["ttl_hours"], 100, "{a}");
    assert_eq!(a["backup_enabled"], true);
    assert_eq!(a["validation_enabled"], true);
    assert_eq!(a["cleanup_strategy"], "ttl");
    // A key without a sensible default stays required, named by its path.
    c["cache"]["cache_types"]["amazon_cache"]
        .as_object_mut()
        .unwrap()
        .remove("max_size_mb");
    fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();
    let d = json_cfg(&cfg, &["config", "check"], 2);
    assert_eq!(
        d["problems"][0]["key"], "cache.cache_types.amazon_cache",
        "{d}"
    );
    assert!(d["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("max_size_mb"));
}

#[test]
fn config_check_names_every_problem_at_once() {
    let t = TestDir::new();
    let cfg = tree_in(t.path());
    let mut c: Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    let types = &mut c["cache"]["cache_types"];
    types["supplier_cache"]["ttl_hours"] = json!("long");
    types["linking_map"]["max_size_mb"] = json!(-3);
    types["amazon_cache"]["cleanup_strategy"] = json!("shred");
    c["cache"]["global_settings"]["backup_retention_days"] = json!(0);
    c["cache"]["strategies"]["backup"]["frequency"] = json!("yearly");
    c["cache"]["outputs"] = json!({"report_days": 0});
    fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();

    let d = json_cfg(&cfg, &["config", "check"], 2);
    assert_eq!(d["kind"], "config");
    let mut keys: Vec<&str> = d["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cache.cache_types.amazon_cache.cleanup_strategy",
            "cache.cache_types.linking_map.max_size_mb",
            "cache.cache_types.supplier_cache.ttl_hours",
            "cache.global_settings.backup_retention_days",
            "cache.outputs.report_days",
            "cache.strategies.backup.frequency",
        ],
        "{d}"
    );
    // The human message lists them too, one a line.
    let out = run(&["--config", cfg.to_str().unwrap(), "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("6 problems"), "{err}");
    for k in keys {
        assert!(err.contains(&format!("  - {k}: ")), "{k}: {err}");
    }
}

#[test]
fn schedules_name_the_binary_as_invoked() {
    let t = TestDir::new();
    let cfg = tree_in(&t.join("site"));
    let bin = t.mkdirp("bin");
    std::os::unix::fs::symlink(BIN, bin.join("cachevault")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Called by its bare name, found on PATH: the schedule names the PATH entry, not the
    // file it links to.
    let by_name = |args: &[&str]| {
        let out = Command::new("cachevault")
            .env("PATH", &path)
            .env_remove("CACHEVAULT_CONFIG")
            .args(["--json", "--config", cfg.to_str().unwrap(), "schedule"])
            .args(args)
            .output()
            .unwrap();
        doc(&out, 0)
    };
    let installed = bin.join("cachevault").to_string_lossy().into_owned();
    let cron = by_name(&["--crontab"]);
    assert_eq!(cron["command"][0], json!(installed), "{cron}");
    assert!(cron["crontab"]
        .as_str()
        .unwrap()
        .contains(&format!("'{installed}' --config")));
    let systemd = by_name(&["--systemd"]);
    assert!(systemd["service"]
        .as_str()
        .unwrap()
        .contains(&format!("ExecStart=\"{installed}\" --config")));
    // --binary wins.
    let named = by_name(&["--crontab", "--binary", "/opt/cachevault/bin/cachevault"]);
    assert_eq!(named["command"][0], "/opt/cachevault/bin/cachevault");
    // Called by a path: that path, not the binary it resolves to.
    let out = Command::new(bin.join("cachevault"))
        .args([
            "--json",
            "--config",
            cfg.to_str().unwrap(),
            "schedule",
            "--crontab",
        ])
        .output()
        .unwrap();
    assert_eq!(doc(&out, 0)["command"][0], json!(installed));
}
