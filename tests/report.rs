//! The operator's report, tested as a person would see it: 30 simulated days of `run-due
//! --now` (daily backups, clears, a validation failure, a deferred clear) and direct commands
//! build a repository; `report --html` renders it; headless Chromium opens the file (no
//! console error, no request but the page itself), every section has a drawn chart, the
//! screenshot is not blank, and the numbers drawn (`data-*` attributes) are those of
//! `stats`, `snapshots`, `forget --dry-run`, `health` and `history` in JSON.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use common::chromium::{self, Browser};
use common::*;
use serde_json::{json, Value};

fn cfg_json(cfg: &Path) -> Value {
    serde_json::from_slice(&fs::read(cfg).unwrap()).unwrap()
}

fn save(cfg: &Path, v: &Value) {
    fs::write(cfg, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn t(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap()
}

/// A new, valid amazon entry of about 3 KB, modified at `mtime`.
fn add_product(root: &Path, day: usize, mtime: i64) {
    let dir = root.join("FBA_ANALYSIS/amazon_cache");
    let sample = files_under(&dir)
        .into_iter()
        .find(|f| f.starts_with("amazon_B0"))
        .unwrap();
    let mut doc: Value = serde_json::from_slice(&fs::read(dir.join(sample)).unwrap()).unwrap();
    let asin = format!("B0DAY{day:05}");
    doc["asin"] = json!(asin);
    doc["title"] = json!(format!("Day {day} product {}", "x".repeat(600)));
    let p = dir.join(format!("amazon_{asin}.json"));
    fs::write(&p, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    set_times(&p, mtime, mtime);
}

struct Day {
    /// 02:30 UTC of the simulated day.
    at: DateTime<Utc>,
}

impl Day {
    fn at(&self, h: u32, m: u32) -> String {
        (self.at.date_naive().and_hms_opt(h, m, 0).unwrap())
            .and_utc()
            .to_rfc3339()
    }
}

/// The simulated month: returns the config path and the report's `now`.
fn simulate(tdir: &TestDir, days: usize) -> (std::path::PathBuf, DateTime<Utc>) {
    // Days that ended before today, so no time is in the future of the clock.
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first = today - chrono::Duration::days(days as i64 + 1);
    let cfg = config_tree(tdir, first.timestamp() - 20 * 86_400);
    let root = tdir.join("OUTPUTS");
    let amazon: u64 = files_under(&root.join("FBA_ANALYSIS/amazon_cache"))
        .iter()
        .map(|f| {
            fs::metadata(root.join("FBA_ANALYSIS/amazon_cache").join(f))
                .unwrap()
                .len()
        })
        .sum();
    let mut c = cfg_json(&cfg);
    // Limit amazon_cache to 1.4 times its size: the daily products push it over in the
    // second half of the month, and size-based clears follow.
    c["cache"]["cache_types"]["amazon_cache"]["max_size_mb"] =
        json!(amazon as f64 * 1.4 / 1_048_576.0);
    c["cache"]["outputs"] = json!({"report_html": "reports/cachevault.html", "report_days": 30});
    save(&cfg, &c);
    fs::create_dir_all(tdir.join("reports")).unwrap();
    json_cfg(&cfg, &["init"], 0);
    let broken = root.join("FBA_ANALYSIS/amazon_cache/amazon_BROKEN.json");
    for d in 1..=days {
        let day = Day {
            at: first + chrono::Duration::days(d as i64) + chrono::Duration::minutes(150),
        };
        add_product(&root, d, day.at.timestamp() - 3600);
        let (load, code) = match d {
            // The validation job fails on an invalid file.
            10 => {
                fs::write(&broken, b"{ \"asin\": ").unwrap();
                ("0", 1)
            }
            // The scheduled (performance_aware) clear finds the machine busy.
            15 => ("999", 0),
            _ => ("0", 0),
        };
        if d == 11 {
            fs::remove_file(&broken).unwrap();
        }
        let doc = json_cfg(
            &cfg,
            &["run-due", "--now", &day.at(2, 30), "--load-average", load],
            code,
        );
        assert!(doc["run_id"].is_string(), "{doc}");
        if d == 20 {
            let deferred = json_cfg(
                &cfg,
                &[
                    "clear",
                    "--strategy",
                    "performance_aware",
                    "--load-average",
                    "999",
                    "--now",
                    &day.at(3, 0),
                ],
                5,
            );
            assert_eq!(deferred["deferred"], true);
        }
        if d == days - 3 {
            json_cfg(
                &cfg,
                &["snapshot", "--tag", "repaired", "--time", &day.at(4, 0)],
                0,
            );
        }
    }
    // A backup after the last run: the day's first one is now what the next forget removes.
    let last = first + chrono::Duration::days(days as i64);
    json_cfg(
        &cfg,
        &[
            "snapshot",
            "--time",
            &(last + chrono::Duration::hours(6)).to_rfc3339(),
        ],
        0,
    );
    (cfg, last + chrono::Duration::hours(12))
}

fn by_id(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")),
        v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

const SECTIONS: [&str; 5] = ["health", "cache", "snapshots", "storage", "runs"];

/// Everything the page draws, read back through the DOM.
const DOM_PROBE: &str = r#"(() => {
  const sections = {};
  for (const s of document.querySelectorAll('section[data-section]')) {
    sections[s.dataset.section] = {
      reading: s.querySelector('p.reading').textContent,
      charts: [...s.querySelectorAll('svg.chart')].map(svg => {
        const r = svg.getBoundingClientRect();
        return {width: r.width, height: r.height, marks: svg.querySelectorAll('*').length};
      }),
    };
  }
  const marks = [...document.querySelectorAll('svg.chart .mark')].map(m => {
    const r = m.getBoundingClientRect();
    return Object.assign({chart: m.closest('svg').dataset.chart, tag: m.tagName,
                          width: r.width, height: r.height}, m.dataset);
  });
  const groups = [...document.querySelectorAll('svg.chart g[data-type]')].map(g => Object.assign({}, g.dataset));
  const stats = {};
  for (const tr of document.querySelectorAll('tr[data-stat]')) stats[tr.dataset.stat] = tr.dataset.value;
  return {sections, marks, groups, stats,
          copies: document.querySelectorAll('tr[data-copies="none"]').length,
          clears: [...document.querySelectorAll('tr.clear')].map(tr => Object.assign({}, tr.dataset)),
          height: document.documentElement.scrollHeight};
})()"#;

#[test]
fn a_month_of_runs_rendered_and_opened_in_chromium() {
    let started = Instant::now();
    let tdir = TestDir::new();
    let (cfg, now) = simulate(&tdir, 30);
    let simulated = started.elapsed();
    let now_s = now.to_rfc3339();
    let since = now - chrono::Duration::days(30);
    let c = cfg.to_str().unwrap();

    // run-due wrote the report after every run: atomically, world-readable, self-contained.
    let by_run_due = tdir.join("reports/cachevault.html");
    let mode = fs::metadata(&by_run_due).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_no_outside_reference(&fs::read_to_string(&by_run_due).unwrap());

    // The JSON commands the page must agree with.
    let clock = Instant::now();
    let stats = json_cfg(&cfg, &["stats", "--now", &now_s], 0);
    let stats_time = clock.elapsed();
    let snapshots = json_cfg(&cfg, &["snapshots"], 0);
    let health_doc = {
        let out = run(&["--config", c, "--json", "health", "--now", &now_s]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let forget = json_cfg(&cfg, &["forget", "--dry-run", "--now", &now_s], 0);
    let history = json_cfg(&cfg, &["history"], 0);

    let page = tdir.join("report.html");
    let clock = Instant::now();
    let report = json_cfg(
        &cfg,
        &["report", "--html", page.to_str().unwrap(), "--now", &now_s],
        0,
    );
    let report_time = clock.elapsed();
    eprintln!(
        "simulated 30 days in {:.2} s; stats {:.3} s, report {:.3} s ({} snapshots)",
        simulated.as_secs_f64(),
        stats_time.as_secs_f64(),
        report_time.as_secs_f64(),
        snapshots.as_array().unwrap().len()
    );
    assert!(
        report_time < stats_time + Duration::from_secs(1),
        "report took {report_time:?}, stats {stats_time:?}"
    );
    let html = fs::read_to_string(&page).unwrap();
    assert_no_outside_reference(&html);
    assert_eq!(
        fs::metadata(&page).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // The scenario left what the sections must show.
    let jobs: Vec<&Value> = history["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["operation"].as_str().unwrap().starts_with("run-due:"))
        // The optimization's steps are part of its cell.
        .filter(|o| {
            !["run-due:forget", "run-due:prune", "run-due:size_limits"]
                .contains(&o["operation"].as_str().unwrap())
        })
        .collect();
    let failed_validation = jobs
        .iter()
        .find(|o| o["operation"] == "run-due:validation" && o["result"] == "failed")
        .expect("a failed validation job is journaled");
    assert!(failed_validation["error"]
        .as_str()
        .unwrap()
        .contains("amazon_BROKEN.json"));
    assert!(jobs
        .iter()
        .any(|o| o["operation"] == "run-due:clearing" && o["result"] == "deferred"));
    for j in &jobs {
        // Wall-clock times, with the simulated time beside them.
        assert!(t(&j["time"]) > t(&j["now"]), "{j}");
        assert!(j["run_id"].is_string() && j["seconds"].is_number(), "{j}");
    }
    let direct = history["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "clear" && o["result"] == "deferred")
        .expect("the deferred clear is journaled as deferred");
    assert!(direct["now"].is_string());

    let Some(chromium) = chromium::find_or_skip("a_month_of_runs_rendered_and_opened_in_chromium")
    else {
        return;
    };
    let clock = Instant::now();
    let mut b = Browser::launch(&chromium, 1000, 1400);
    let url = format!("file://{}", page.display());
    b.open(&url);
    let dom = b.eval(DOM_PROBE);
    let png = b.screenshot();
    let requests = b.requests();
    let problems = b.console_problems();
    drop(b);
    eprintln!("chromium: {:.2} s", clock.elapsed().as_secs_f64());

    assert_eq!(
        requests,
        vec![url.clone()],
        "only the page itself is fetched"
    );
    assert!(problems.is_empty(), "console: {problems:#?}");

    // Every section: its reading line and a drawn chart with a size.
    for s in SECTIONS {
        let sec = &dom["sections"][s];
        assert!(
            !sec["reading"].as_str().unwrap_or("").is_empty(),
            "{s}: {sec}"
        );
        let charts = sec["charts"].as_array().unwrap();
        assert!(!charts.is_empty(), "{s} has no chart");
        for chart in charts {
            assert!(
                num(&chart["width"]) > 100.0 && num(&chart["height"]) > 30.0,
                "{s}: {chart}"
            );
            assert!(num(&chart["marks"]) > 3.0, "{s}: {chart}");
        }
    }
    let marks = dom["marks"].as_array().unwrap();
    for m in marks {
        assert!(
            num(&m["width"]) > 0.0 && num(&m["height"]) > 0.0,
            "an invisible mark: {m}"
        );
    }
    let of =
        |chart: &str| -> Vec<&Value> { marks.iter().filter(|m| m["chart"] == chart).collect() };

    // 1. Health, as `health` sees it.
    let mut levels: BTreeMap<String, String> = health_doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c.as_str().unwrap().to_string(), "ok".to_string()))
        .collect();
    for r in health_doc["reasons"].as_array().unwrap().iter().rev() {
        let l = levels.get_mut(r["check"].as_str().unwrap()).unwrap();
        if l == "ok" || r["level"] == "critical" {
            *l = r["level"].as_str().unwrap().to_string();
        }
    }
    let drawn: BTreeMap<String, String> = of("health")
        .iter()
        .map(|m| {
            (
                m["check"].as_str().unwrap().to_string(),
                m["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(drawn, levels);
    assert_eq!(report["health"]["status"], health_doc["status"]);

    // 2. Cache size per type: now from `stats`, history from the backups' `types`.
    let snaps = by_id(&snapshots);
    let in_window = |s: &Value| {
        let time = t(&s["time"]);
        time > since && time <= now
    };
    let root = stats["cache_types"]["amazon_cache"]["path"]
        .as_str()
        .unwrap()
        .trim_end_matches("/FBA_ANALYSIS/amazon_cache")
        .to_string();
    let root = fs::canonicalize(root).unwrap().display().to_string();
    let groups = dom["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    for (name, st) in stats["cache_types"].as_object().unwrap() {
        let g = groups.iter().find(|g| g["type"] == name.as_str()).unwrap();
        assert_eq!(num(&g["limitBytes"]), num(&st["limit_bytes"]), "{name}");
        assert_eq!(num(&g["pastTtl"]), num(&st["past_ttl"]), "{name}");
        let now_mark = of("cache-type")
            .into_iter()
            .find(|m| m["type"] == name.as_str() && m["now"] == "true")
            .unwrap();
        assert_eq!(num(&now_mark["bytes"]), num(&st["bytes"]), "{name}");
        assert_eq!(num(&now_mark["files"]), num(&st["files"]), "{name}");
        let points: Vec<&Value> = marks
            .iter()
            .filter(|m| {
                m["chart"] == "cache-type"
                    && m["type"] == name.as_str()
                    && m.get("snapshot").is_some()
            })
            .collect();
        let backed_up = name != "ai_category_cache";
        let expected: BTreeMap<String, f64> = snaps
            .iter()
            .filter(|(_, s)| {
                backed_up && s["kind"] == "backup" && s["root"] == root.as_str() && in_window(s)
            })
            .map(|(id, s)| (id.clone(), num(&s["types"][name]["bytes"])))
            .collect();
        let got: BTreeMap<String, f64> = points
            .iter()
            .map(|m| {
                (
                    m["snapshot"].as_str().unwrap().to_string(),
                    num(&m["bytes"]),
                )
            })
            .collect();
        assert_eq!(got, expected, "{name}");
    }
    let amazon = &stats["cache_types"]["amazon_cache"];
    assert!(
        of("cache-type")
            .iter()
            .any(|m| m["type"] == "amazon_cache"
                && num(&m["bytes"]) > num(&amazon["limit_bytes"]) * 0.8),
        "amazon_cache approached its limit"
    );
    assert!(html.contains("class=\"limit\" data-limit-bytes"));

    // 3. Snapshots: every one in the window, coloured by kind, with forget's verdict.
    let drawn: BTreeMap<String, &Value> = of("snapshots")
        .into_iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m))
        .collect();
    let expected: BTreeSet<&String> = snaps
        .iter()
        .filter(|(_, s)| in_window(s))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(drawn.keys().collect::<BTreeSet<_>>(), expected);
    let mut verdicts: BTreeMap<String, &str> = BTreeMap::new();
    for g in forget["groups"].as_array().unwrap() {
        for k in g["keep"].as_array().unwrap() {
            verdicts.insert(k["id"].as_str().unwrap().into(), "keep");
        }
        for r in g["remove"].as_array().unwrap() {
            verdicts.insert(r["id"].as_str().unwrap().into(), "remove");
        }
    }
    for (id, m) in &drawn {
        let s = &snaps[id];
        assert_eq!(m["kind"], s["kind"], "{id}");
        assert_eq!(m["time"], s["time"], "{id}");
        assert_eq!(
            m["retention"],
            verdicts.get(id).copied().unwrap_or("not-planned"),
            "{id}"
        );
        let tagged = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "repaired");
        assert_eq!(m["class"] == "repaired", tagged, "{id}");
    }
    let classes: BTreeSet<&str> = drawn
        .values()
        .map(|m| m["class"].as_str().unwrap())
        .collect();
    assert!(
        classes.contains("backup") && classes.contains("pre-clear") && classes.contains("repaired"),
        "{classes:?}"
    );
    assert!(
        drawn.values().any(|m| m["retention"] == "remove"),
        "the day's earlier backup goes next"
    );

    // 4. Repository: reconstructed series ending at the bytes on disk; ratios from `stats`.
    let repo = &stats["repository"];
    let storage = of("storage");
    let last = storage.last().unwrap();
    assert_eq!(last["event"], "now");
    assert_eq!(num(&last["bytes"]), num(&repo["stored_bytes"]));
    let snapshot_events = storage.iter().filter(|m| m["event"] == "snapshot").count();
    assert_eq!(
        snapshot_events,
        snaps.values().filter(|s| in_window(s)).count()
    );
    assert!(
        storage.iter().any(|m| m["event"] == "prune"),
        "prunes are steps down"
    );
    // Forgotten snapshots count by their journal entries: the month starts from an empty
    // repository, give or take what bytes_added does not count (indexes, manifests).
    assert!(storage.iter().any(|m| m["event"] == "forgotten"));
    let start = storage.first().unwrap();
    assert_eq!(start["event"], "start");
    let overhead = num(&repo["stored"]["index"]) + num(&repo["stored"]["snapshots"]);
    eprintln!(
        "stored bytes reconstructed at the window's start: {} (now {}, indexes and manifests {overhead})",
        start["bytes"], last["bytes"]
    );
    assert!(
        num(&start["bytes"]) < overhead + num(&last["bytes"]) * 0.1,
        "start {} vs now {}",
        start["bytes"],
        last["bytes"]
    );
    let st = &dom["stats"];
    assert_eq!(num(&st["stored_bytes"]), num(&repo["stored_bytes"]));
    assert_eq!(num(&st["dedup_ratio"]), num(&repo["dedup_ratio"]));
    assert_eq!(
        num(&st["compression_ratio"]),
        num(&repo["compression_ratio"])
    );
    assert_eq!(
        num(&st["growth_7d"]),
        num(&repo["growth"]["7d"]["bytes_per_day"])
    );
    assert_eq!(dom["copies"], 1, "the empty copies row");

    // 5. The last runs: each job cell is a journal entry of its run.
    let cells = of("runs");
    // The failure and the deferral stay in sight though newer runs went well.
    assert!(cells
        .iter()
        .any(|m| m["job"] == "validation" && m["result"] == "failed"));
    assert!(cells
        .iter()
        .any(|m| m["job"] == "clearing" && m["result"] == "deferred"));
    let runs_shown: BTreeSet<&str> = cells.iter().map(|m| m["run"].as_str().unwrap()).collect();
    assert_eq!(
        runs_shown.len(),
        14 + 2,
        "the last 14, and the two that did not go well"
    );
    for m in &cells {
        let e = jobs
            .iter()
            .find(|o| {
                o["run_id"] == m["run"]
                    && o["operation"].as_str().unwrap()
                        == format!("run-due:{}", m["job"].as_str().unwrap())
            })
            .unwrap_or_else(|| panic!("no journal entry for {m}"));
        assert_eq!(m["result"], e["result"]);
        assert_eq!(num(&m["bytes"]), num(&e["bytes"]));
        assert!((num(&m["seconds"]) - num(&e["seconds"])).abs() < 1e-9);
    }
    let shown_jobs = jobs
        .iter()
        .filter(|o| runs_shown.contains(o["run_id"].as_str().unwrap()))
        .count();
    assert_eq!(cells.len(), shown_jobs);
    let clears = dom["clears"].as_array().unwrap();
    assert!(
        clears.iter().any(|c| c["result"] == "deferred"),
        "{clears:?}"
    );
    assert!(clears
        .iter()
        .any(|c| c.get("clearId").is_some() && num(&c["bytesFreed"]) > 0.0));
    assert!(html.contains("cachevault undo "));

    // The screenshot is a picture of all that, not a blank page.
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let colours: BTreeSet<&[u8]> = pixels[..info.buffer_size()]
        .chunks(channels)
        .map(|p| &p[..3.min(channels)])
        .collect();
    assert!(
        info.width >= 900 && info.height > 1400,
        "{}x{}",
        info.width,
        info.height
    );
    assert!(colours.len() > 50, "only {} colours", colours.len());
    if let Some(keep) = std::env::var_os("CACHEVAULT_REPORT_SCREENSHOT") {
        fs::write(keep, &png).unwrap();
    }
}

/// No script, stylesheet, font, image or frame from anywhere: the page is all there is.
fn assert_no_outside_reference(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script", "<link", "<img", "<iframe", "<object", "<embed", "@import", "url(", "src=",
        "href=",
    ] {
        assert!(!lower.contains(bad), "the page contains {bad:?}");
    }
    assert!(lower.starts_with("<!doctype html>"));
    assert_eq!(
        lower.matches("http://").count(),
        lower
            .matches("xmlns=\"http://www.w3.org/2000/svg\"")
            .count()
    );
    assert!(!lower.contains("https://"));
}

#[test]
fn config_outputs_errors_name_the_key() {
    let tdir = TestDir::new();
    let cfg = config_tree(&tdir, 1_793_000_000);
    let base = cfg_json(&cfg);
    let c = cfg.to_str().unwrap();
    let error = |outputs: Value| {
        let mut v = base.clone();
        v["cache"]["outputs"] = outputs;
        save(&cfg, &v);
        let out = run(&["--config", c, "config", "check"]);
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = error(json!({"report_days": 0}));
    assert!(e.contains("cache.outputs.report_days"), "{e}");
    let e = error(json!({"prometheus": "x.prom"}));
    assert!(
        e.contains("cache.outputs") && e.contains("prometheus"),
        "{e}"
    );
    let e = error(json!({"report_html": "OUTPUTS/cached_products/report.html"}));
    assert!(e.contains("cache.outputs.report_html"), "{e}");
    let e = error(json!({"report_html": "cachevault-repo/report.html"}));
    assert!(e.contains("cache.outputs.report_html"), "{e}");
    // Relative to the config's folder, like every path in it.
    let mut v = base.clone();
    v["cache"]["outputs"] = json!({"report_html": "out/report.html"});
    save(&cfg, &v);
    let ok = json_cfg(&cfg, &["config", "check"], 0);
    assert_eq!(ok["config"]["cache"]["outputs"]["report_days"], 30);
    assert_eq!(
        ok["report_html"].as_str().unwrap(),
        fs::canonicalize(tdir.path())
            .unwrap()
            .join("out/report.html")
            .to_str()
            .unwrap()
    );
}

#[test]
fn report_without_a_config_and_its_json() {
    let tdir = TestDir::new();
    let repo = tdir.join("repo");
    let data = tdir.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.json"), b"{}").unwrap();
    json(&repo, &["init"], 0);
    let snap = json(&repo, &["snapshot", data.to_str().unwrap()], 0);
    let page = tdir.join("r.html");
    let r = json(
        &repo,
        &["report", "--html", page.to_str().unwrap(), "--days", "7"],
        0,
    );
    assert_eq!(r["days"], 7);
    assert_eq!(r["snapshots"]["items"][0]["id"], snap["id"]);
    assert_eq!(r["snapshots"]["items"][0]["retention"], "not-planned");
    assert_eq!(
        r["storage"]["points"].as_array().unwrap().last().unwrap()["event"],
        "now"
    );
    assert!(r["cache"]["reading"]
        .as_str()
        .unwrap()
        .contains("No config"));
    assert!(fs::read_to_string(&page)
        .unwrap()
        .contains("data-section=\"runs\""));
    let out = run(&["--repo", repo.to_str().unwrap(), "report", "--days", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--days 0"));
}

/// The checks above can fail: a page that fetches something and logs an error is caught.
#[test]
fn chromium_client_sees_requests_and_console_errors() {
    let Some(chromium) = chromium::find_or_skip("chromium_client_sees_requests_and_console_errors")
    else {
        return;
    };
    let tdir = TestDir::new();
    let page = tdir.write(
        "bad.html",
        "<!DOCTYPE html><html><body><p>x</p><img src=\"missing.png\">\
         <script>console.error('boom')</script></body></html>",
    );
    let mut b = Browser::launch(&chromium, 400, 300);
    let url = format!("file://{}", page.display());
    b.open(&url);
    let requests = b.requests();
    assert!(
        requests.iter().any(|r| r.ends_with("/missing.png")),
        "{requests:?}"
    );
    let problems = b.console_problems();
    assert!(problems.iter().any(|p| p.contains("boom")), "{problems:?}");
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}
