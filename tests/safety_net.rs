//! A safety net under every destructive operation, on real trees and real child processes:
//! schema drift refused, then `repair --force` and `undo` give the new files back exactly;
//! `restore --in-place` and `undo` are exact; a same-size in-place rewrite with its mtime put
//! back during clear's verification survives; partial undo with 10 conflicts; unreadable
//! files stay out of a clear; SIGTERM at several moments of snapshot, restore, clear and
//! prune leaves no temp or holder file and a clean `check --read-data`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cachevault::compare::compare_trees;
use common::*;
use serde_json::Value;

const DAY: i64 = 86_400;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn old() -> i64 {
    chrono::Utc::now().timestamp() - 40 * DAY
}

/// The content of every regular file under `root`, by relative path.
fn contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(root)
        .into_iter()
        .map(|p| {
            let data = fs::read(root.join(&p)).unwrap();
            (p, data)
        })
        .collect()
}

/// Rewrites every amazon file with `cache_version: 3`, as an agent upgrade would.
fn bump_versions(amazon: &Path) -> usize {
    let mut n = 0;
    for f in files_under(amazon) {
        let p = amazon.join(&f);
        let mut doc: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        doc["cache_version"] = Value::from(3);
        fs::write(&p, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        n += 1;
    }
    n
}

#[test]
fn schema_drift_is_refused_then_forced_repair_is_undone_exactly() {
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    let n = bump_versions(&amazon);
    assert!(n >= 5, "the fixture has enough amazon files ({n})");
    let upgraded = t.join("upgraded");
    copy_tree(&root, &upgraded);

    // validate: a summary by type and reason, and the pattern flagged.
    let v = json_cfg(&cfg, &["validate"], 1);
    let t_amazon = &v["by_type"]["amazon_cache"];
    assert_eq!(t_amazon["invalid"], n as u64, "{v}");
    assert_eq!(t_amazon["reasons"]["cache_version"], n as u64, "{v}");
    let suspected = v["suspected_changes"].as_array().unwrap();
    assert_eq!(suspected.len(), 1, "{v}");
    assert!(suspected[0]
        .as_str()
        .unwrap()
        .contains("schema or version change"));
    let human = run(&["--config", s(&cfg), "validate"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("Reasons") && human.contains("cache_version"),
        "{human}"
    );

    // repair refuses, exit 2, nothing changed.
    let refused = json_cfg(&cfg, &["repair"], 2);
    let err = refused["error"].as_str().unwrap();
    assert!(
        err.contains("schema or version change") && err.contains("--force"),
        "{err}"
    );
    assert!(compare_trees(&upgraded, &root, false).unwrap().is_empty());
    // Forced: the old versions come back, and what they replaced is held.
    let forced = json_cfg(&cfg, &["repair", "--force"], 0);
    assert_eq!(forced["repaired"].as_array().unwrap().len(), n, "{forced}");
    let op = forced["operation_id"].as_str().unwrap().to_string();
    assert!(forced["safety_snapshot"].is_string());
    let pre = json_cfg(&cfg, &["snapshots", "--kind", "pre-repair"], 0);
    assert_eq!(pre.as_array().unwrap().len(), 1);
    assert_eq!(pre[0]["files"], n as u64);
    // undo gives the new files back exactly, content and metadata.
    let undo = json_cfg(&cfg, &["undo"], 0);
    assert_eq!(undo["clear_id"], op.as_str(), "{undo}");
    assert_eq!(undo["restored"].as_array().unwrap().len(), n);
    let diffs = compare_trees(&upgraded, &root, false).unwrap();
    assert!(diffs.is_empty(), "undo of repair: {diffs:?}");
}

#[test]
fn repair_with_no_history_does_not_quarantine_a_whole_type() {
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    json_cfg(&cfg, &["init"], 0);
    bump_versions(&root.join("FBA_ANALYSIS/amazon_cache"));
    let before = t.join("before");
    copy_tree(&root, &before);
    json_cfg(&cfg, &["repair"], 2);
    assert!(compare_trees(&before, &root, false).unwrap().is_empty());
    assert!(!t.join("cachevault-quarantine").exists());
}

#[test]
fn restore_in_place_previews_and_undo_is_exact() {
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    // Since the backup: two files rewritten (the linking map among them), one removed.
    let map = root.join("FBA_ANALYSIS/Linking map/linking_map.json");
    fs::write(&map, json_array(30, 99)).unwrap();
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    let files = files_under(&amazon);
    fs::write(amazon.join(&files[0]), b"{\"asin\": \"newer\"}").unwrap();
    fs::remove_file(amazon.join(&files[1])).unwrap();
    let before = t.join("before");
    copy_tree(&root, &before);

    let dry = json_cfg(&cfg, &["restore", "latest", "--in-place", "--dry-run"], 0);
    let list = |k: &str| -> Vec<String> {
        dry[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let overwrite = list("overwrite");
    assert_eq!(overwrite.len(), 2, "{dry}");
    assert!(overwrite.iter().any(|p| p.ends_with("linking_map.json")));
    assert_eq!(
        list("create"),
        vec![format!("FBA_ANALYSIS/amazon_cache/{}", files[1])]
    );
    assert!(list("remove").is_empty());
    assert!(
        compare_trees(&before, &root, false).unwrap().is_empty(),
        "a dry run changed the tree"
    );

    let r = json_cfg(&cfg, &["restore", "latest", "--in-place"], 0);
    assert_eq!(r["overwrite"].as_array().unwrap().len(), 2);
    let op = r["operation_id"].as_str().unwrap().to_string();
    assert!(r["safety_snapshot"].is_string());
    assert!(amazon.join(&files[1]).exists());
    assert_ne!(fs::read(&map).unwrap(), json_array(30, 99).as_bytes());
    // undo --dry-run previews, then undo puts back exactly the tree before the restore.
    let dry = json_cfg(&cfg, &["undo", "--dry-run"], 0);
    assert_eq!(dry["overwrite"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(
        dry["remove"][0],
        format!("FBA_ANALYSIS/amazon_cache/{}", files[1])
    );
    let undo = json_cfg(&cfg, &["undo", &op], 0);
    assert_eq!(undo["removed"].as_array().unwrap().len(), 1, "{undo}");
    let diffs = compare_trees(&before, &root, false).unwrap();
    assert!(diffs.is_empty(), "undo of restore --in-place: {diffs:?}");
}

/// Waits until `child` is stopped (state `T` in /proc), or panics after a while.
fn wait_stopped(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
        if state == Some('T') {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child ended ({status}) before reaching its pause point");
        }
        assert!(Instant::now() < deadline, "the child never paused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

fn spawn_paused(cfg: &Path, point: &str, args: &[&str]) -> Child {
    let mut all = vec!["--config", s(cfg), "--json"];
    all.extend_from_slice(args);
    Command::new(BIN)
        .args(&all)
        .env("CACHEVAULT_PAUSE", point)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_same_size_rewrite_with_its_mtime_put_back_during_verification_survives_the_clear() {
    use std::io::{Seek, Write};
    use std::os::unix::fs::MetadataExt;
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    json_cfg(&cfg, &["init"], 0);
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    let victim = amazon.join(&files_under(&amazon)[0]);
    let mut child = spawn_paused(
        &cfg,
        "net.before_verify",
        &["clear", "--strategy", "full", "--type", "amazon_cache"],
    );
    wait_stopped(&mut child);
    // The pre-clear snapshot exists; clear is about to verify it. The agent rewrites the file
    // in place, same size, and puts its mtime back (cp -p, rsync -a, shutil.copy2 do).
    let m = fs::metadata(&victim).unwrap();
    let mut data = fs::read(&victim).unwrap();
    let flip = data.iter().position(|&b| b.is_ascii_digit()).unwrap();
    data[flip] = if data[flip] == b'9' { b'8' } else { b'9' };
    let mut f = fs::OpenOptions::new().write(true).open(&victim).unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(&data).unwrap();
    drop(f);
    set_times(&victim, m.atime(), m.mtime());
    let after = fs::metadata(&victim).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.ino()),
        (m.len(), m.mtime(), m.ino())
    );
    signal(child.id(), "-CONT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rel = victim.strip_prefix(&root).unwrap().to_str().unwrap();
    assert!(doc["skipped"].to_string().contains(rel), "{doc}");
    assert_eq!(
        fs::read(&victim).unwrap(),
        data,
        "the new content was deleted"
    );
    // Everything else of the type was cleared.
    assert_eq!(files_under(&amazon).len(), 1);
}

#[test]
fn partial_undo_with_ten_conflicts() {
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    for i in 0..25 {
        fs::write(
            amazon.join(format!("amazon_X{i:04}.json")),
            format!(
                "{{\"asin\": \"X{i:04}\", \"pad\": \"{}\"}}",
                "z".repeat(100 + i)
            ),
        )
        .unwrap();
    }
    json_cfg(&cfg, &["init"], 0);
    let before_clear = t.join("before-clear");
    copy_tree(&root, &before_clear);
    let clear = json_cfg(
        &cfg,
        &["clear", "--strategy", "full", "--type", "amazon_cache"],
        0,
    );
    let deleted: Vec<String> = clear["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect();
    assert!(deleted.len() >= 30, "{}", deleted.len());
    // The agent fetches ten of them again.
    let refetched: Vec<&String> = deleted.iter().step_by(3).take(10).collect();
    for p in &refetched {
        fs::write(root.join(p), format!("{{\"refetched\": \"{p}\"}}")).unwrap();
    }
    let dry = json_cfg(&cfg, &["undo", "--dry-run"], 1);
    assert_eq!(
        dry["create"].as_array().unwrap().len(),
        deleted.len() - 10,
        "{dry}"
    );
    assert_eq!(dry["conflicts"].as_array().unwrap().len(), 10);
    let undo = json_cfg(&cfg, &["undo"], 1);
    let conflicts = undo["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 10, "{undo}");
    for c in conflicts {
        assert!(refetched.iter().any(|p| c["path"] == p.as_str()), "{c}");
        assert!(!c["reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        undo["restored"].as_array().unwrap().len(),
        deleted.len() - 10
    );
    for p in &refetched {
        assert_eq!(
            fs::read_to_string(root.join(p)).unwrap(),
            format!("{{\"refetched\": \"{p}\"}}")
        );
    }
    for p in deleted.iter().filter(|p| !refetched.contains(p)) {
        assert_eq!(
            fs::read(root.join(p)).unwrap(),
            fs::read(before_clear.join(p)).unwrap()
        );
    }
    // --force takes the rest, after its own safety snapshot, and is itself undoable.
    let forced = json_cfg(&cfg, &["undo", "--force"], 0);
    assert_eq!(
        forced["overwrite"].as_array().unwrap().len(),
        10,
        "{forced}"
    );
    assert!(compare_trees(&before_clear, &root, false)
        .unwrap()
        .is_empty());
    json_cfg(&cfg, &["undo"], 0);
    for p in &refetched {
        assert_eq!(
            fs::read_to_string(root.join(p)).unwrap(),
            format!("{{\"refetched\": \"{p}\"}}")
        );
    }
    let listed = json_cfg(&cfg, &["undo", "--list"], 0);
    let ops: Vec<String> = listed["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, ["undo", "clear"], "{listed}");
}

#[test]
fn an_unreadable_file_stays_out_of_the_clear_and_the_clear_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    let secret = amazon.join(&files_under(&amazon)[0]);
    let mut cmd = if is_root() {
        if !require(
            "setpriv",
            "clear as an unprivileged user (root reads anything)",
        ) {
            return;
        }
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for de in walkdir::WalkDir::new(t.path()) {
            let de = de.unwrap();
            if de.path() != secret {
                std::os::unix::fs::lchown(de.path(), Some(65534), Some(65534)).unwrap();
            }
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let run_as = |cmd: &mut Command, args: &[&str]| {
        let out = cmd
            .args(["--config", s(&cfg), "--json"])
            .args(args)
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run_as(&mut cmd, &["init"]);
    assert_eq!(code, Some(0), "{err}");
    let mut cmd2 = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let (code, doc, err) = run_as(
        &mut cmd2,
        &["clear", "--strategy", "full", "--type", "amazon_cache"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        doc["warnings"].to_string().contains("cannot be read"),
        "{doc}"
    );
    assert!(secret.exists(), "the unreadable file was deleted");
    assert_eq!(files_under(&amazon).len(), 1, "the rest was cleared");
}

/// Temp files anywhere under `dir` (ours start with '.' and end with `.tmp`) and holder
/// files of the lock.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name.starts_with('.') && name.ends_with(".tmp")) || name.ends_with(".holder")
        })
        .collect()
}

/// Starts `args`, stops it at `point` (or after `delay`), sends SIGTERM, lets it go on, and
/// checks it stopped cleanly: exit 143 (or 0 when it was already done), journaled, no temp
/// or holder file left, the repository whole.
fn sigterm_at(
    cfg: &Path,
    repo: &Path,
    tree: &Path,
    point: Option<&str>,
    delay: Duration,
    args: &[&str],
) -> Option<i32> {
    let mut all = vec!["--config", s(cfg), "--json"];
    all.extend_from_slice(args);
    let mut cmd = Command::new(BIN);
    cmd.args(&all)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = point {
        cmd.env("CACHEVAULT_PAUSE", p);
    }
    let mut child = cmd.spawn().unwrap();
    if point.is_some() {
        wait_stopped(&mut child);
        signal(child.id(), "-TERM");
        signal(child.id(), "-CONT");
    } else {
        std::thread::sleep(delay);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    let out = child.wait_with_output().unwrap();
    let code = out.status.code();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(code, Some(0 | 1 | 143)),
        "{args:?} at {point:?}/{delay:?}: {code:?} {err}"
    );
    if point.is_some() {
        assert_eq!(code, Some(143), "{args:?} at {point:?}: {err}");
        assert!(err.contains("interrupted"), "{err}");
    }
    let left: Vec<PathBuf> = leftovers(repo).into_iter().chain(leftovers(tree)).collect();
    assert!(
        left.is_empty(),
        "{args:?} at {point:?}/{delay:?} left {left:?}"
    );
    let c = json(repo, &["check", "--read-data"], 0);
    assert_eq!(c["ok"], true, "{args:?} at {point:?}: {c}");
    code
}

#[test]
fn sigterm_at_several_moments_leaves_no_temp_or_holder_file_and_a_sound_repository() {
    let t = TestDir::new();
    let cfg = config_tree(&t, old());
    let root = t.join("OUTPUTS");
    let repo = t.join("cachevault-repo");
    // A bigger tree, so that the operations have moments to be stopped at.
    let amazon = root.join("FBA_ANALYSIS/amazon_cache");
    for i in 0..400 {
        fs::write(
            amazon.join(format!("amazon_S{i:05}.json")),
            format!(
                "{{\"asin\": \"S{i:05}\", \"data\": \"{}\"}}",
                String::from_utf8(noise(3000, i).iter().map(|b| b'a' + b % 26).collect()).unwrap()
            ),
        )
        .unwrap();
    }
    json_cfg(&cfg, &["init"], 0);
    json_cfg(&cfg, &["snapshot"], 0);
    let target = t.join("restored");

    // Deterministic moments: each operation stopped at a point inside its work.
    fs::write(amazon.join("amazon_NEW.json"), b"{\"asin\": \"NEW\"}").unwrap();
    sigterm_at(
        &cfg,
        &repo,
        &root,
        Some("snapshot.reading"),
        Duration::ZERO,
        &["snapshot", "--rehash"],
    );
    sigterm_at(
        &cfg,
        &repo,
        &target,
        Some("restore.writing"),
        Duration::ZERO,
        &["restore", "latest", "--target", s(&target)],
    );
    let before = t.join("before-clear");
    copy_tree(&root, &before);
    sigterm_at(
        &cfg,
        &repo,
        &root,
        Some("net.before_verify"),
        Duration::ZERO,
        &["clear", "--strategy", "full", "--type", "amazon_cache"],
    );
    assert!(
        compare_trees(&before, &root, false).unwrap().is_empty(),
        "an interrupted clear deleted something before its net was in place"
    );
    // Prune: something to repack first.
    json_cfg(&cfg, &["snapshot"], 0);
    for i in 0..200 {
        fs::remove_file(amazon.join(format!("amazon_S{i:05}.json"))).unwrap();
    }
    json_cfg(&cfg, &["snapshot"], 0);
    json_cfg(&cfg, &["forget", "--keep-last", "1"], 0);
    sigterm_at(
        &cfg,
        &repo,
        &root,
        Some("prune.after_repack"),
        Duration::ZERO,
        &["prune", "--max-unused", "0%"],
    );
    let history = json_cfg(&cfg, &["history"], 0);
    let interrupted = history["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["result"] == "interrupted")
        .count();
    assert!(interrupted >= 4, "{history}");

    // And at moments chosen by the clock.
    for ms in [5u64, 30, 80, 150] {
        fs::write(
            amazon.join(format!("amazon_T{ms}.json")),
            format!("{{\"t\": {ms}}}"),
        )
        .unwrap();
        sigterm_at(
            &cfg,
            &repo,
            &root,
            None,
            Duration::from_millis(ms),
            &["snapshot", "--rehash"],
        );
        let tgt = t.join(format!("r{ms}"));
        sigterm_at(
            &cfg,
            &repo,
            &tgt,
            None,
            Duration::from_millis(ms),
            &["restore", "latest", "--target", s(&tgt)],
        );
    }
    // The next snapshot and prune are normal, and the last backup restores exactly.
    json_cfg(&cfg, &["snapshot"], 0);
    json_cfg(&cfg, &["prune"], 0);
    let last = t.join("last");
    json_cfg(&cfg, &["restore", "latest", "--target", s(&last)], 0);
    let snap = json_cfg(&cfg, &["snapshots", "--kind", "backup"], 0);
    assert!(!snap.as_array().unwrap().is_empty());
    assert_eq!(contents(&last).len(), files_under(&last).len());
}
