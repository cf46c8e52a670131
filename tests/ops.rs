//! Operator commands end to end through the CLI on real repositories: diff, find, stats (and
//! its Prometheus file), health exit codes, history and schedule.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use cachevault::health::Level;
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Sets a file's mtime (and atime) without opening it for reading.
fn set_times(p: &Path, mtime: SystemTime, atime: SystemTime) {
    File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_times(FileTimes::new().set_modified(mtime).set_accessed(atime))
        .unwrap();
}

fn hours_ago(h: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(h * 3600)
}

/// A cache type of a test config: (name, folder, ttl_hours, max_size_mb).
type TypeSpec<'a> = (&'a str, &'a str, i64, f64);

/// Writes a config beside `OUTPUTS/` with the repository in `repo/`.
fn write_config(t: &TestDir, types: &[TypeSpec], frequency: &str) -> PathBuf {
    let cache_types: serde_json::Map<String, serde_json::Value> = types
        .iter()
        .map(|(name, path, ttl, max)| {
            (
                name.to_string(),
                serde_json::json!({
                    "path": path,
                    "ttl_hours": ttl,
                    "max_size_mb": max,
                    "backup_enabled": true,
                    "validation_enabled": true,
                    "cleanup_strategy": "ttl",
                }),
            )
        })
        .collect();
    let doc = serde_json::json!({"cache": {
        "root": "OUTPUTS",
        "repository": "repo",
        "strategies": {"backup": {"enabled": true, "frequency": frequency}},
        "cache_types": cache_types,
    }});
    t.write("cachevault.json", serde_json::to_vec_pretty(&doc).unwrap())
}

#[test]
fn diff_reports_a_known_mutation() {
    let t = TestDir::new();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let src = t.join("src");
    t.write("src/keep.json", "{\"k\": 1}");
    t.write("src/gone.json", "{\"gone\": true}");
    t.write("src/edit.json", "{\"v\": 1}");
    t.write("src/chmod.json", "{\"c\": 1}");
    t.write("src/touch.json", "{\"t\": 1}");
    t.write("src/sub/deep.json", "[]");
    let first = json(
        &repo,
        &["snapshot", s(&src), "--time", "2026-11-01 10:00:00"],
        0,
    );

    t.write("src/new.json", "{\"brand\": \"new\"}");
    fs::remove_file(src.join("gone.json")).unwrap();
    t.write("src/edit.json", "{\"v\": 2, \"more\": [1, 2, 3]}");
    fs::set_permissions(src.join("chmod.json"), fs::Permissions::from_mode(0o600)).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    set_times(&src.join("touch.json"), old, old);
    json(
        &repo,
        &["snapshot", s(&src), "--time", "2026-11-02 10:00:00"],
        0,
    );

    let a = &first["id"].as_str().unwrap()[..10];
    let d = json(&repo, &["diff", a, "latest"], 0);
    let paths = |key: &str| -> Vec<String> {
        d[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(paths("added"), ["new.json"], "{d}");
    assert_eq!(paths("removed"), ["gone.json"], "{d}");
    assert_eq!(paths("modified"), ["edit.json"], "{d}");
    assert_eq!(
        paths("metadata_changed"),
        ["chmod.json", "touch.json"],
        "{d}"
    );
    let len = |p: &str| fs::metadata(src.join(p)).unwrap().len();
    assert_eq!(d["added"][0]["size"], len("new.json"));
    assert_eq!(d["removed"][0]["size"], "{\"gone\": true}".len());
    assert_eq!(d["modified"][0]["size_before"], "{\"v\": 1}".len());
    assert_eq!(d["modified"][0]["size_after"], len("edit.json"));
    let chmod = &d["metadata_changed"][0];
    assert_eq!(
        (chmod["mode_before"].as_str(), chmod["mode_after"].as_str()),
        (Some("644"), Some("600"))
    );
    assert_eq!(chmod["mtime_before"], chmod["mtime_after"]);
    let touch = &d["metadata_changed"][1];
    assert_eq!(touch["mode_before"], touch["mode_after"]);
    assert_eq!(touch["mtime_after"], "2023-11-14T22:13:20Z");
    assert_eq!(d["summary"]["bytes_added"], len("new.json"));
    assert_eq!(d["a"]["id"], first["id"]);

    // Human output: one line per change.
    let out = run(&["--repo", s(&repo), "diff", a, "latest"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("+    new.json") && text.contains("-    gone.json"),
        "{text}"
    );
    assert!(
        text.contains("M    edit.json") && text.contains("mode 644 -> 600"),
        "{text}"
    );

    // Identical snapshots differ in nothing.
    let same = json(&repo, &["diff", "latest", "latest"], 0);
    assert_eq!(same["summary"]["modified"], 0);
    assert_eq!(same["added"].as_array().unwrap().len(), 0);
}

#[test]
fn find_lists_every_version_with_the_change_marked() {
    let t = TestDir::new();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let src = t.join("src");
    t.write("src/amazon_cache/amazon_B0001.json", "{\"price\": 10}");
    t.write("src/other.json", "{}");
    let mut ids = Vec::new();
    for (day, price) in [(1, None), (2, None), (3, Some("{\"price\": 12.5}"))] {
        if let Some(p) = price {
            t.write("src/amazon_cache/amazon_B0001.json", p);
        }
        // Something else changes every time, so each snapshot is distinct.
        t.write("src/other.json", format!("{{\"day\": {day}}}"));
        let snap = json(
            &repo,
            &[
                "snapshot",
                s(&src),
                "--time",
                &format!("2026-11-0{day} 10:00:00"),
            ],
            0,
        );
        ids.push(snap["id"].as_str().unwrap().to_string());
    }
    let found = json(&repo, &["find", "amazon_cache/amazon_B0001.json"], 0);
    let v = found["versions"].as_array().unwrap();
    assert_eq!(v.len(), 3, "{found}");
    let snaps: Vec<&str> = v.iter().map(|x| x["snapshot"].as_str().unwrap()).collect();
    assert_eq!(snaps, [&ids[2], &ids[1], &ids[0]], "newest first");
    let changed: Vec<bool> = v.iter().map(|x| x["changed"].as_bool().unwrap()).collect();
    assert_eq!(changed, [true, false, true]);
    assert_eq!(v[1]["hash"], v[2]["hash"]);
    assert_ne!(v[0]["hash"], v[1]["hash"]);
    assert_eq!(
        (v[0]["size"].as_u64(), v[1]["size"].as_u64()),
        (Some(15), Some(13))
    );
    assert!(v[0]["time"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-03T10:00:00"));

    // An absolute path under the snapshot root finds the same versions.
    let abs = src
        .canonicalize()
        .unwrap()
        .join("amazon_cache/amazon_B0001.json");
    let found_abs = json(&repo, &["find", s(&abs)], 0);
    assert_eq!(found_abs["versions"], found["versions"]);

    let none = json(&repo, &["find", "amazon_cache/missing.json"], 0);
    assert_eq!(none["versions"].as_array().unwrap().len(), 0);
}

/// The test's own count of one type folder: regular files that are not state files.
fn walk_type(dir: &Path) -> Vec<(u64, SystemTime)> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.file_name().to_string_lossy().ends_with("_state.json"))
        .map(|e| {
            let m = e.path().symlink_metadata().unwrap();
            (m.len(), m.modified().unwrap())
        })
        .collect()
}

fn rfc3339_secs(v: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp()
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn stats_match_an_independent_walk() {
    let t = TestDir::new();
    let types: [TypeSpec; 3] = [
        ("amazon_cache", "FBA_ANALYSIS/amazon_cache", 336, 1.0),
        ("supplier_cache", "cached_products", 24, 0.001),
        ("linking_map", "FBA_ANALYSIS/Linking map", -1, 500.0),
    ];
    let cfg = write_config(&t, &types, "daily");
    for i in 0..25 {
        let p = t.write(
            format!("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_{i:03}.json"),
            json_array(1 + i % 4, i as u64 + 3),
        );
        // Every fifth file is past the 336 h TTL, by a day; the rest are well within it.
        let age = if i % 5 == 0 {
            336 + 24
        } else {
            336 - 24 - i as u64
        };
        set_times(&p, hours_ago(age), hours_ago(age));
    }
    t.write(
        "OUTPUTS/FBA_ANALYSIS/amazon_cache/run_state.json",
        "{\"page\": 3}",
    );
    std::os::unix::fs::symlink(
        "amazon_000.json",
        t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache/link.json"),
    )
    .unwrap();
    for i in 0..4 {
        let p = t.write(
            format!("OUTPUTS/cached_products/shop/page_{i}.json"),
            json_array(3, 100 + i as u64),
        );
        set_times(&p, hours_ago(2 + 20 * i as u64), hours_ago(1));
    }
    t.write(
        "OUTPUTS/FBA_ANALYSIS/Linking map/linking_map.json",
        json_array(50, 9),
    );
    let old_linking = hours_ago(24 * 400);
    set_times(
        &t.join("OUTPUTS/FBA_ANALYSIS/Linking map/linking_map.json"),
        old_linking,
        old_linking,
    );
    // A file outside every type counts nowhere.
    t.write("OUTPUTS/loose_state.json", "{}");

    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    json_cfg(&cfg, &["snapshot"], 0);

    // The walk must not touch access times: an atime older than the mtime would be updated
    // by any read under relatime.
    let probe = t.join("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_001.json");
    let probe_atime = hours_ago(24 * 30);
    set_times(&probe, hours_ago(24 * 10), probe_atime);
    let st = json_cfg(&cfg, &["stats"], 0);

    assert_eq!(
        probe.metadata().unwrap().atime(),
        secs(probe_atime),
        "stats changed an access time"
    );
    let now = SystemTime::now();
    let mut total_files = 0;
    for (name, folder, ttl, max_mb) in types {
        let files = walk_type(&t.join("OUTPUTS").join(folder));
        let got = &st["cache_types"][name];
        let bytes: u64 = files.iter().map(|f| f.0).sum();
        total_files += files.len() as u64;
        assert_eq!(got["files"], files.len() as u64, "{name}: {got}");
        assert_eq!(got["bytes"], bytes, "{name}: {got}");
        let expired = if ttl < 0 {
            0
        } else {
            let cutoff = now - Duration::from_secs(ttl as u64 * 3600);
            files.iter().filter(|f| f.1 < cutoff).count()
        };
        assert_eq!(got["past_ttl"], expired as u64, "{name}: {got}");
        let oldest = files.iter().map(|f| f.1).min().unwrap();
        let newest = files.iter().map(|f| f.1).max().unwrap();
        assert_eq!(rfc3339_secs(&got["oldest"]), secs(oldest), "{name}");
        assert_eq!(rfc3339_secs(&got["newest"]), secs(newest), "{name}");
        let limit = (max_mb * 1048576.0).round() as u64;
        assert_eq!(got["limit_bytes"], limit, "{name}");
        assert_eq!(got["over_limit"], bytes > limit, "{name}");
        assert_eq!(got["ttl_hours"], ttl);
    }
    assert_eq!(st["cache_types"]["amazon_cache"]["past_ttl"], 5);
    assert_eq!(st["cache_types"]["supplier_cache"]["past_ttl"], 2);
    assert_eq!(st["cache_types"]["supplier_cache"]["over_limit"], true);
    assert_eq!(st["total"]["files"], total_files);

    // Repository numbers against the snapshots and the files on disk.
    let repo = t.join("repo");
    let r = &st["repository"];
    let snaps = json(&repo, &["snapshots"], 0);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(r["snapshots"], snaps.len() as u64);
    let before: u64 = snaps.iter().map(|x| x["bytes"].as_u64().unwrap()).sum();
    assert_eq!(r["bytes_before_dedup"], before);
    let on_disk = |sub: &str| -> u64 {
        walkdir::WalkDir::new(repo.join(sub))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let archives = on_disk("archives");
    assert_eq!(r["stored"]["archives"], archives);
    assert_eq!(
        r["stored_bytes"],
        archives + on_disk("index") + on_disk("snapshots")
    );
    let unique = r["unique_bytes"].as_u64().unwrap();
    let entry_lists = r["entry_list_bytes"].as_u64().unwrap();
    // Two snapshots of one unchanged tree: every distinct content is stored once (all files
    // here are below the chunking threshold, so one file is one blob).
    let distinct: HashSet<Vec<u8>> = walkdir::WalkDir::new(t.join("OUTPUTS"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(
        unique,
        distinct.iter().map(|c| c.len() as u64).sum::<u64>(),
        "{r}"
    );
    assert!(entry_lists > 0);
    let ratio = |k: &str| r[k].as_f64().unwrap();
    assert!((ratio("dedup_ratio") - before as f64 / unique as f64).abs() < 1e-9);
    assert!(ratio("dedup_ratio") >= 2.0, "{r}");
    assert!(
        (ratio("compression_ratio") - (unique + entry_lists) as f64 / archives as f64).abs() < 1e-9
    );
    assert_eq!(r["growth"]["7d"]["snapshots"], 2);
    let added: u64 = snaps
        .iter()
        .map(|x| x["bytes_added"].as_u64().unwrap())
        .sum();
    assert_eq!(r["growth"]["7d"]["bytes_added"], added);
    assert_eq!(r["last_snapshot"]["id"], snaps.last().unwrap()["id"]);

    // Human output: a table with a row per type.
    let out = run(&["--config", s(&cfg), "stats"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Cache type",
        "amazon_cache",
        "never expires",
        "OVER",
        "dedup ratio",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    // Without a config: repository statistics only.
    let bare = json(&repo, &["stats"], 0);
    assert_eq!(bare["cache_types"], serde_json::json!({}));
    assert_eq!(bare["repository"]["snapshots"], r["snapshots"]);
}

/// Checks the textfile format: HELP and TYPE before each family's samples, every sample
/// `name{labels} value`. Returns the samples by `name{labels}`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "unterminated file");
    let mut help = HashSet::new();
    let mut typed = HashSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next();
            assert!(
                kind == Some("gauge") || (kind == Some("counter") && name.ends_with("_total")),
                "{line}"
            );
            typed.insert(name);
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (&series[..i], Some(&series[i..])),
            None => (series, None),
        };
        assert!(
            !name.is_empty()
                && name.starts_with("cachevault_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        if let Some(l) = labels {
            assert!(l.ends_with('}'), "{line:?}");
            for pair in l[1..l.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line:?}"
                );
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "{line:?}"
                );
            }
        }
        assert!(
            help.contains(name) && typed.contains(name),
            "no HELP/TYPE before {line:?}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn prometheus_file_parses_and_is_replaced_atomically() {
    let t = TestDir::new();
    let cfg = write_config(
        &t,
        &[
            ("amazon_cache", "FBA_ANALYSIS/amazon_cache", 336, 2000.0),
            ("supplier_cache", "cached_products", 336, 1000.0),
        ],
        "daily",
    );
    for i in 0..5 {
        t.write(
            format!("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_{i}.json"),
            json_array(2, i),
        );
    }
    t.write("OUTPUTS/cached_products/p.json", json_array(3, 7));
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    let metrics_dir = t.mkdirp("textfile");
    let prom = metrics_dir.join("cachevault.prom");

    // A restrictive umask must not make the file unreadable to the exporter.
    let stats_cmd = format!(
        "umask 077; exec '{}' --config '{}' --quiet stats --prometheus '{}' >/dev/null",
        BIN,
        s(&cfg),
        s(&prom)
    );
    let write = || {
        let st = Command::new("sh")
            .arg("-c")
            .arg(&stats_cmd)
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG")
            .status()
            .unwrap();
        assert!(st.success());
    };
    write();
    let meta = prom.metadata().unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let samples = parse_prometheus(&fs::read_to_string(&prom).unwrap());
    assert_eq!(
        samples["cachevault_cache_files{cache_type=\"amazon_cache\"}"],
        5.0
    );
    assert_eq!(
        samples["cachevault_cache_files{cache_type=\"supplier_cache\"}"],
        1.0
    );
    assert_eq!(samples["cachevault_repository_snapshots"], 1.0);
    assert!(samples.contains_key("cachevault_repository_daily_growth_bytes{window=\"7d\"}"));
    assert!(samples.contains_key("cachevault_repository_dedup_ratio"));

    // Rewrites replace the file by rename (a new inode), never in place, and leave no
    // temp file for the collector to trip over. A reader polling meanwhile only ever
    // sees whole files.
    // Held open across the rewrites: a file replaced by rename is unlinked (its link count
    // drops to 0) and keeps its old content; one rewritten in place would not. (Inode numbers
    // alone prove nothing: a freed inode is soon reused.)
    let original = fs::File::open(&prom).unwrap();
    let original_text = fs::read_to_string(&prom).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let prom = prom.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = fs::read_to_string(&prom).unwrap();
                assert!(
                    text.ends_with('\n') && text.contains("cachevault_stats_timestamp_seconds "),
                    "partial metrics file read: {text:?}"
                );
                reads += 1;
            }
            reads
        })
    };
    for _ in 0..10 {
        write();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    let meta = prom.metadata().unwrap();
    assert_eq!(
        original.metadata().unwrap().nlink(),
        0,
        "file rewritten in place"
    );
    let mut kept = String::new();
    std::io::Read::read_to_string(&mut &original, &mut kept).unwrap();
    assert_eq!(kept, original_text, "file rewritten in place");
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let names: Vec<String> = fs::read_dir(&metrics_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cachevault.prom"]);
    parse_prometheus(&fs::read_to_string(&prom).unwrap());
}

/// [`expected_health`] for a config whose repository and cache root lie in one test folder,
/// on one file system, with no copy configured: health warns about that too.
fn expected_health_cfg(t: &TestDir, want: Level) -> i32 {
    expected_health(t, want.max(Level::Warning))
}

/// The reasons of a health document, leaving out those this machine decides (free space,
/// and the one-disk warning every test config earns).
fn checks_with_reasons(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["level"].as_str().unwrap().to_string(),
                r["check"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, check)| check != "disk" && check != "copies")
        .collect()
}

fn pair(level: &str, check: &str) -> (String, String) {
    (level.to_string(), check.to_string())
}

#[test]
fn health_exit_codes_follow_backup_age() {
    let t = TestDir::new();
    let cfg = write_config(
        &t,
        &[("amazon_cache", "FBA_ANALYSIS/amazon_cache", 336, 100.0)],
        "daily",
    );
    t.write("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_1.json", "{}");
    json_cfg(&cfg, &["init"], 0);
    // A full validation just ran: its age is no finding here.
    json_cfg(&cfg, &["validate"], 0);

    // No backup yet: warning.
    let h = json_cfg(&cfg, &["health"], expected_health_cfg(&t, Level::Warning));
    assert_eq!(checks_with_reasons(&h), [pair("warning", "backup")], "{h}");

    // A backup 10 days old, for daily backups: critical (more than 7 periods).
    let ago = |days: i64| (chrono::Local::now() - chrono::Duration::days(days)).to_rfc3339();
    json_cfg(&cfg, &["snapshot", "--time", &ago(10)], 0);
    let h = json_cfg(&cfg, &["health"], expected_health_cfg(&t, Level::Critical));
    assert_eq!(h["status"], "critical", "{h}");
    assert_eq!(checks_with_reasons(&h), [pair("critical", "backup")], "{h}");

    // 3 days old: warning (more than 2 periods).
    json_cfg(&cfg, &["snapshot", "--time", &ago(3)], 0);
    let h = json_cfg(&cfg, &["health"], expected_health_cfg(&t, Level::Warning));
    assert_eq!(checks_with_reasons(&h), [pair("warning", "backup")], "{h}");
    assert!(
        health_reason(&h, "backup")["message"]
            .as_str()
            .unwrap()
            .contains("last successful backup was 3d"),
        "{h}"
    );

    // A fresh one: healthy, but for the one-disk warning.
    json_cfg(&cfg, &["snapshot"], 0);
    let h = json_cfg(&cfg, &["health"], expected_health_cfg(&t, Level::Ok));
    assert_eq!(checks_with_reasons(&h), []);
    let checks: Vec<&str> = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in ["disk", "size", "backup", "journal"] {
        assert!(checks.contains(&c), "{c} not checked: {h}");
    }

    // Human output names the status.
    let out = run(&["--config", s(&cfg), "health"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("OK") || text.starts_with("WARNING") || text.starts_with("CRITICAL"),
        "{text}"
    );
}

#[test]
fn health_warns_about_a_failed_operation_until_it_succeeds() {
    let t = TestDir::new();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let src = t.mkdirp("src");
    t.write("src/a.json", "{}");
    json(&repo, &["snapshot", s(&src)], 0);
    let h = json(&repo, &["health"], expected_health(&t, Level::Ok));
    assert_eq!(checks_with_reasons(&h), []);

    // A snapshot of a folder that does not exist fails and is journaled as failed.
    json(&repo, &["snapshot", s(&t.join("missing"))], 2);
    let h = json(&repo, &["health"], expected_health(&t, Level::Warning));
    assert_eq!(checks_with_reasons(&h), [pair("warning", "journal")], "{h}");
    let msg = health_reason(&h, "journal")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.starts_with("snapshot failed at"), "{msg}");

    // Another kind of operation succeeding does not clear it; a snapshot does.
    json(&repo, &["check"], 0);
    json(&repo, &["health"], expected_health(&t, Level::Warning));
    json(&repo, &["snapshot", s(&src)], 0);
    let h = json(&repo, &["health"], expected_health(&t, Level::Ok));
    assert_eq!(checks_with_reasons(&h), []);
}

#[test]
fn health_flags_a_type_over_its_size_limit() {
    let t = TestDir::new();
    // 1 KiB limits: 1.1 KiB is over (warning), 2 KiB is over 120% (critical).
    let limit_mb = 1.0 / 1024.0;
    let cfg = write_config(
        &t,
        &[
            ("small", "small", 336, limit_mb),
            ("big", "big", 336, 100.0),
        ],
        "daily",
    );
    // Valid JSON of the sizes wanted: only the size check may find anything.
    let sized = |n: usize| format!("{{\"x\": \"{}\"}}", "a".repeat(n - 9));
    t.write("OUTPUTS/small/a.json", sized(1100));
    t.write("OUTPUTS/big/b.json", "{}");
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    json_cfg(&cfg, &["validate"], 0);
    let h = json_cfg(&cfg, &["health"], expected_health_cfg(&t, Level::Warning));
    assert_eq!(checks_with_reasons(&h), [pair("warning", "size")], "{h}");
    assert!(h["reasons"].to_string().contains("small: "), "{h}");

    t.write("OUTPUTS/small/a.json", sized(2048));
    let h = json_cfg(&cfg, &["health"], expected_health_cfg(&t, Level::Critical));
    assert_eq!(checks_with_reasons(&h), [pair("critical", "size")], "{h}");
}

#[test]
fn history_lists_operations_in_order() {
    let t = TestDir::new();
    let repo = t.join("repo");
    json(&repo, &["init"], 0);
    let src = t.mkdirp("src");
    t.write("src/a.json", "{\"a\": 1}");
    json(&repo, &["snapshot", s(&src)], 0);
    t.write("src/b.json", "{\"b\": 2}");
    json(&repo, &["snapshot", s(&src)], 0);
    json(&repo, &["snapshot", s(&t.join("missing"))], 2);
    json(&repo, &["check"], 0);
    // Read-only commands are not journaled.
    json(&repo, &["stats"], 0);
    json(&repo, &["snapshots"], 0);

    let h = json(&repo, &["history"], 0);
    let ops = h["operations"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = ops
        .iter()
        .map(|o| {
            (
                o["operation"].as_str().unwrap(),
                o["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("snapshot", "ok"),
            ("snapshot", "ok"),
            ("snapshot", "failed"),
            ("check", "ok")
        ]
    );
    for o in ops {
        assert!(o["time"].is_string() && o["seconds"].is_number() && o["bytes"].is_number());
    }
    assert!(ops[0]["bytes"].as_i64().unwrap() > 0);
    assert!(ops[2]["error"].as_str().unwrap().contains("missing"));

    let last = json(&repo, &["history", "--last", "2"], 0);
    let last_ops: Vec<&str> = last["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    assert_eq!(last_ops, ["snapshot", "check"]);
    let checks = json(&repo, &["history", "--operation", "check"], 0);
    assert_eq!(checks["operations"].as_array().unwrap().len(), 1);

    let out = run(&["--repo", s(&repo), "history"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Operation") && text.contains("failed") && text.contains("4 operations"),
        "{text}"
    );
}

#[test]
fn schedule_prints_installable_units_that_call_run_due() {
    let t = TestDir::new();
    let cfg = write_config(&t, &[("a", "a", 336, 10.0)], "daily");
    let cfg_abs = cfg.canonicalize().unwrap();

    let out = run(&["--config", s(&cfg), "schedule", "--crontab"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(fields[..5], ["*/15", "*", "*", "*", "*"]);
    assert!(lines[0].contains("run-due"), "{text}");
    assert!(
        lines[0].contains(&format!("--config '{}'", s(&cfg_abs))),
        "{text}"
    );
    assert!(Path::new(fields[5].trim_matches('\'')).is_absolute());

    let out = run(&[
        "--config",
        s(&cfg),
        "schedule",
        "--systemd",
        "--every",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let doc = json_cfg(&cfg, &["schedule", "--systemd", "--every", "10"], 0);
    let service = doc["service"].as_str().unwrap();
    let timer = doc["timer"].as_str().unwrap();
    assert!(text.contains(service) && text.contains(timer));
    let sections = |unit: &str| -> Vec<String> {
        let mut out = Vec::new();
        for line in unit
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if line.starts_with('[') {
                assert!(line.ends_with(']'), "{line}");
                out.push(line.to_string());
            } else {
                let (k, v) = line.split_once('=').expect("Key=Value");
                assert!(
                    !k.is_empty() && !v.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{line}"
                );
            }
        }
        out
    };
    assert_eq!(sections(service), ["[Unit]", "[Service]"]);
    assert_eq!(sections(timer), ["[Unit]", "[Timer]", "[Install]"]);
    let exec = service
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    assert!(exec.ends_with(" --quiet run-due"), "{exec}");
    assert!(
        exec.contains(&format!("--config \"{}\"", s(&cfg_abs))),
        "{exec}"
    );
    assert!(service.contains("Type=oneshot"));
    assert!(timer.contains("OnCalendar=*:0/10\n") && timer.contains("Unit=cachevault.service"));
    assert!(timer.contains("WantedBy=timers.target"));

    // Without a config there is nothing to schedule; without a format, nothing to print.
    let out = run(&["--repo", s(&t.join("repo")), "schedule", "--crontab"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let out = run(&["--config", s(&cfg), "schedule"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn health_warns_when_the_repository_shares_the_cache_disk_and_no_copy_is_configured() {
    let t = TestDir::new();
    let cfg = write_config(
        &t,
        &[("amazon_cache", "FBA_ANALYSIS/amazon_cache", 336, 100.0)],
        "daily",
    );
    t.write("OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_1.json", "{}");
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    json_cfg(&cfg, &["validate"], 0);
    let h = json_cfg(&cfg, &["health"], expected_health(&t, Level::Warning));
    let one_disk: Vec<_> = h["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == "copies")
        .collect();
    assert_eq!(one_disk.len(), 1, "{h}");
    assert!(
        one_disk[0]["message"]
            .as_str()
            .unwrap()
            .contains("same file system"),
        "{h}"
    );

    // With a copy configured and made, the warning is gone.
    let offsite = t.join("offsite");
    json(&offsite, &["init"], 0);
    let mut c: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    c["cache"]["strategies"]["backup"]["copy_to"] = serde_json::json!([offsite.to_str().unwrap()]);
    fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    // Not copied yet: that is what health says now.
    let h = json_cfg(&cfg, &["health"], expected_health(&t, Level::Warning));
    assert!(
        h["reasons"].to_string().contains("no successful copy to"),
        "{h}"
    );
    json_with(
        &["--repo", offsite.to_str().unwrap()],
        &["copy", "--from-repo", t.join("repo").to_str().unwrap()],
        0,
    );
    let h = json_cfg(&cfg, &["health"], expected_health(&t, Level::Ok));
    assert!(
        !h["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "copies"),
        "{h}"
    );
}
