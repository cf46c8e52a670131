//! Repositories in S3-compatible object storage, end to end through the binary against a real
//! S3 server (moto) started by each test: the engine's commands, retries and cuts through a
//! fault proxy, two hosts at once, lock objects, and `copy` between repositories.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::s3::{FaultProxy, Faults, Moto};
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cachevault");

fn cli(repo: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--repo", repo];
    all.extend_from_slice(args);
    run(&all)
}

fn err(o: &std::process::Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn restore_exact(repo: &str, src: &Path, target: &Path) {
    let _ = fs::remove_dir_all(target);
    json_with(
        &["--repo", repo],
        &[
            "restore",
            "latest",
            "--snapshot-path",
            src.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        0,
    );
    let diff = cachevault::compare::compare_trees(src, target, false).unwrap();
    assert!(diff.is_empty(), "restore differs: {diff:?}");
}

fn check_read_data(repo: &str) {
    let c = json_with(&["--repo", repo], &["check", "--read-data"], 0);
    assert_eq!(c["ok"], true, "{c}");
}

#[test]
fn the_engine_works_on_s3_snapshot_restore_forget_prune_clear_undo() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("engine");
    let t = TestDir::new();
    let url = moto.url("engine", "team/cache");
    let init = json_with(&["--repo", &url], &["init", "--no-encrypt"], 0);
    assert_eq!(init["repository"], url.as_str());
    // Off the machine, init asks whether to encrypt rather than guess.
    let t2 = moto.url("engine", "undecided");
    let undecided = cli(&t2, &["init"]);
    assert_eq!(undecided.status.code(), Some(2), "{}", err(&undecided));
    let said = String::from_utf8_lossy(&undecided.stderr);
    assert!(
        said.contains("--encrypt") && said.contains("--no-encrypt"),
        "{said}"
    );
    assert!(moto.keys("engine", "undecided/").is_empty());
    // Nothing of it on the local disk, and a second init is refused.
    assert!(!Path::new("s3:http:").exists());
    let again = cli(&url, &["init", "--no-encrypt"]);
    assert_eq!(again.status.code(), Some(2), "{}", err(&again));

    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let s1 = json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);
    fs::write(src.join("grown.json"), json_array(3000, 5)).unwrap();
    fs::remove_file(src.join(files_under(&src)[0].clone())).unwrap();
    let s2 = json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);
    assert_ne!(s1["id"], s2["id"]);
    restore_exact(&url, &src, &t.join("r1"));
    check_read_data(&url);

    // Objects are where FORMAT.md says.
    let keys = moto.keys("engine", "team/cache/");
    for folder in ["archives/", "index/", "snapshots/", "config.json"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("team/cache/{folder}"))),
            "{folder}: {keys:?}"
        );
    }

    let f = json_with(
        &["--repo", &url],
        &["forget", "--keep-last", "1", "--prune"],
        0,
    );
    assert_eq!(f["removed"].as_array().map(Vec::len), Some(1), "{f}");
    check_read_data(&url);
    restore_exact(&url, &src, &t.join("r2"));
    let listed = json_with(&["--repo", &url], &["snapshots"], 0);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A config whose repository is an S3 URL: clear, then undo puts everything back.
    let ct = TestDir::new();
    let cfg = config_tree(&ct, 1_700_000_000);
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    let url2 = moto.url("engine", "configured");
    doc["cache"]["repository"] = url2.clone().into();
    fs::write(&cfg, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    json_cfg(&cfg, &["init", "--no-encrypt"], 0);
    let before = files_under(&ct.join("OUTPUTS"));
    let copy = ct.join("before");
    copy_tree(&ct.join("OUTPUTS"), &copy);
    let c = json_cfg(&cfg, &["clear", "--strategy", "full"], 0);
    assert!(c["bytes_freed"].as_u64().unwrap_or(0) > 0, "{c}");
    assert!(files_under(&ct.join("OUTPUTS")).len() < before.len());
    json_cfg(&cfg, &["undo"], 0);
    let diff = cachevault::compare::compare_trees(&copy, &ct.join("OUTPUTS"), false).unwrap();
    assert!(diff.is_empty(), "undo differs: {diff:?}");
    check_read_data(&url2);

    // repair over S3: a corrupt cache file comes back from a snapshot; undo puts the
    // corrupt bytes back exactly.
    json_cfg(&cfg, &["snapshot"], 0);
    let amazon = ct.join("OUTPUTS/FBA_ANALYSIS/amazon_cache");
    let victim = amazon.join(&files_under(&amazon)[0]);
    let good = fs::read(&victim).unwrap();
    fs::write(&victim, b"{\"truncated").unwrap();
    let r = json_cfg(&cfg, &["repair"], 0);
    assert_eq!(r["repaired"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(fs::read(&victim).unwrap(), good);
    json_cfg(&cfg, &["undo"], 0);
    assert_eq!(fs::read(&victim).unwrap(), b"{\"truncated");
    check_read_data(&url2);
}

/// kill -9 of snapshots uploading a large archive to S3, at several moments: the repository
/// stays sound and the next snapshot restores exactly.
#[test]
fn a_snapshot_killed_mid_upload_leaves_the_bucket_sound() {
    let Some((_moto, url, t, src)) = in_a_bucket("killed") else {
        return;
    };
    for (i, ms) in [150u64, 400, 900].into_iter().enumerate() {
        fs::write(src.join(format!("big-{i}.bin")), noise(48 << 20, i as u64)).unwrap();
        let mut child = Command::new(BIN)
            .args(["--repo", &url, "snapshot", src.to_str().unwrap()])
            .env_remove("CACHEVAULT_REPO")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        child.wait().unwrap();
        check_read_data(&url);
    }
    json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);
    check_read_data(&url);
    restore_exact(&url, &src, &t.join("r"));
    // What the killed runs left (unreferenced data, their lock objects) prune and unlock clear.
    json_with(&["--repo", &url], &["prune"], 0);
    check_read_data(&url);
}

#[test]
fn unsupported_urls_are_errors_never_folders() {
    let t = TestDir::new();
    for url in [
        "sftp://host/repo",
        "rest:http://host/",
        "s3:ftp://host/bucket",
        "s3:http://host",
        "s3:http://127.0.0.1:1/BAD_bucket",
    ] {
        let o = Command::new(BIN)
            .args(["--repo", url, "--json", "init", "--no-encrypt"])
            .current_dir(t.path())
            .env_remove("CACHEVAULT_REPO")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{url}: {}", err(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(url),
            "{url}: {}",
            err(&o)
        );
        let left: Vec<_> = fs::read_dir(t.path()).unwrap().collect();
        assert!(left.is_empty(), "{url} made {left:?}");
    }
}

/// A moto server, a repository initialised in `bucket/r`, and the fixture tree to back up.
fn in_a_bucket(bucket: &str) -> Option<(Moto, String, TestDir, std::path::PathBuf)> {
    let moto = Moto::start()?;
    moto.bucket(bucket);
    let url = moto.url(bucket, "r");
    json_with(&["--repo", &url], &["init", "--no-encrypt"], 0);
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    Some((moto, url, t, src))
}

/// A moto server, a fault proxy before it, a repository initialised through the proxy in
/// `bucket/r`, and the fixture tree to back up.
fn behind_a_proxy(bucket: &str) -> Option<(Moto, FaultProxy, String, TestDir, std::path::PathBuf)> {
    let moto = Moto::start()?;
    moto.bucket(bucket);
    let proxy = FaultProxy::start(moto.port);
    let url = proxy.url(bucket, "r");
    json_with(&["--repo", &url], &["init", "--no-encrypt"], 0);
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    Some((moto, proxy, url, t, src))
}

#[test]
fn transient_errors_are_retried_and_a_dead_service_fails_cleanly() {
    let Some((_moto, proxy, url, t, src)) = behind_a_proxy("flaky") else {
        return;
    };

    // Three 503s in a row: retried, the snapshot succeeds.
    proxy.set(Faults {
        fail_next: 3,
        ..Default::default()
    });
    json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);
    assert_eq!(proxy.broken.load(std::sync::atomic::Ordering::Relaxed), 3);

    // The service down: exit 2, the object and the server's answer named, nothing half-made.
    fs::write(src.join("new.json"), json_array(500, 9)).unwrap();
    proxy.set(Faults {
        down: true,
        ..Default::default()
    });
    let o = cli(&url, &["snapshot", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("storage error on s3:http://127.0.0.1:"), "{e}");
    assert!(e.contains("SlowDown") || e.contains("503"), "{e}");

    proxy.set(Faults::default());
    check_read_data(&url);
    json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);
    restore_exact(&url, &src, &t.join("r"));
}

/// A cut at several points of snapshot, prune and copy: the command fails cleanly or
/// succeeds through retries, `check --read-data` passes, the next snapshot restores exactly.
#[test]
fn network_cuts_leave_the_repository_sound() {
    let Some((_moto, proxy, url, t, src)) = behind_a_proxy("cuts") else {
        return;
    };
    json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);

    let mut round = 0;
    for (what, times, cut) in [
        ("PUT /cuts/r/archives/", 0, 700),
        ("PUT /cuts/r/index/", 0, 300),
        ("PUT /cuts/r/snapshots/", 0, 200),
        ("PUT /cuts/r/archives/", 1, 5000),
        ("GET /cuts/r/index/", 0, 10),
    ] {
        round += 1;
        fs::write(
            src.join(format!("round-{round}.json")),
            json_array(800 + round * 50, round as u64),
        )
        .unwrap();
        proxy.set(Faults {
            when: Some(what.into()),
            cut_after: Some(cut),
            times,
            ..Default::default()
        });
        let o = cli(&url, &["snapshot", src.to_str().unwrap()]);
        if times == 0 {
            assert_eq!(o.status.code(), Some(2), "{what}: {}", err(&o));
        } else {
            // Cut once: the retry carries it.
            assert_eq!(o.status.code(), Some(0), "{what}: {}", err(&o));
        }
        proxy.set(Faults::default());
        check_read_data(&url);
        json_with(&["--repo", &url], &["snapshot", src.to_str().unwrap()], 0);
        restore_exact(&url, &src, &t.join(format!("r{round}")));
    }

    // Prune cut while it deletes, and while it writes a repacked archive.
    for (what, forget) in [("DELETE /cuts/r/", "3"), ("PUT /cuts/r/archives/", "1")] {
        json_with(&["--repo", &url], &["forget", "--keep-last", forget], 0);
        proxy.set(Faults {
            when: Some(what.into()),
            cut_after: Some(20),
            ..Default::default()
        });
        let o = cli(&url, &["prune", "--max-unused", "0"]);
        proxy.set(Faults::default());
        assert_ne!(o.status.code(), Some(3), "{what}: {}", err(&o));
        check_read_data(&url);
        restore_exact(&url, &src, &t.join("after-prune"));
        json_with(&["--repo", &url], &["prune", "--max-unused", "0"], 0);
        check_read_data(&url);
    }

    // Copy cut while it writes the manifest: run again, it finishes.
    let local = t.join("local");
    json(&local, &["init", "--no-encrypt"], 0);
    proxy.set(Faults {
        when: Some("GET /cuts/r/archives/".into()),
        cut_after: Some(10),
        ..Default::default()
    });
    let o = run(&[
        "--repo",
        local.to_str().unwrap(),
        "copy",
        "--from-repo",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    proxy.set(Faults::default());
    json(&local, &["check", "--read-data"], 0);
    let c = json_with(
        &["--repo", local.to_str().unwrap()],
        &["copy", "--from-repo", &url],
        0,
    );
    assert!(c["snapshots_copied"].as_u64().unwrap() >= 1, "{c}");
    json(&local, &["check", "--read-data"], 0);
    restore_exact(local.to_str().unwrap(), &src, &t.join("from-copy"));
}

#[test]
fn two_hosts_snapshot_to_one_bucket_at_once() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("shared");
    let url = moto.url("shared", "r");
    json_with(&["--repo", &url], &["init", "--no-encrypt"], 0);
    let t = TestDir::new();
    let (a, b) = (t.join("host-a/OUTPUTS"), t.join("host-b/OUTPUTS"));
    fixture_tree(&a);
    fixture_tree(&b);
    fs::write(a.join("only-a.json"), json_array(4000, 1)).unwrap();
    fs::write(b.join("only-b.json"), json_array(4000, 2)).unwrap();
    let spawn = |root: &Path, host: &str| {
        Command::new(BIN)
            .args([
                "--repo",
                &url,
                "--json",
                "snapshot",
                root.to_str().unwrap(),
                "--tag",
                host,
            ])
            .env_remove("CACHEVAULT_REPO")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&a, "host-a"), spawn(&b, "host-b"));
    for p in [pa, pb] {
        let o = p.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    }
    check_read_data(&url);
    restore_exact(&url, &a, &t.join("ra"));
    restore_exact(&url, &b, &t.join("rb"));
}

#[test]
fn stale_lock_objects_are_ignored_with_a_warning_and_unlock_removes_only_them() {
    let Some((moto, url, _t, src)) = in_a_bucket("locks") else {
        return;
    };
    let lock = |host: &str, exclusive: bool, expires: &str| {
        serde_json::to_vec(&serde_json::json!({
            "host": host, "pid": 4242, "command": "prune", "exclusive": exclusive,
            "since": "2026-11-01T00:00:00Z", "expires": expires,
        }))
        .unwrap()
    };
    moto.put(
        "locks",
        "r/locks/stale.json",
        &lock("far-away", true, "2026-01-01T00:00:00Z"),
    );
    moto.put(
        "locks",
        "r/locks/live.json",
        &lock("far-away", true, "2099-01-01T00:00:00Z"),
    );

    // A live exclusive lock of another host: the snapshot waits, then gives up, naming the
    // holder.
    let o = cli(
        &url,
        &["--lock-wait", "1", "snapshot", src.to_str().unwrap()],
    );
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(o.status.code(), Some(0), "{}", err(&o));
    assert!(e.contains("far-away") && e.contains("prune"), "{e}");

    // unlock removes the stale one only.
    let u = json_with(&["--repo", &url], &["unlock"], 0);
    assert_eq!(u["removed"].as_array().unwrap().len(), 1, "{u}");
    let keys = moto.keys("locks", "r/locks/");
    assert_eq!(keys, vec!["r/locks/live.json".to_string()]);

    // unlock --all removes the live one too; then the snapshot runs, and warns of a new
    // stale lock it ignores.
    let u = json_with(&["--repo", &url], &["unlock", "--all"], 0);
    assert_eq!(u["removed"].as_array().unwrap().len(), 1, "{u}");
    moto.put(
        "locks",
        "r/locks/stale2.json",
        &lock("far-away", true, "2026-01-01T00:00:00Z"),
    );
    let o = cli(&url, &["snapshot", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ignoring stale lock"),
        "{}",
        err(&o)
    );
    // The snapshot's own lock object is gone once it ends.
    assert_eq!(
        moto.keys("locks", "r/locks/"),
        vec!["r/locks/stale2.json".to_string()]
    );

    // A process of this host killed while holding its lock: the lock is stale at once. A
    // new file gives the snapshot something to read, where it pauses holding the lock.
    std::fs::write(src.join("FBA_ANALYSIS/paused.json"), b"{\"paused\": true}").unwrap();
    let mut child = Command::new(BIN)
        .args(["--repo", &url, "snapshot", src.to_str().unwrap()])
        .env("CACHEVAULT_PAUSE", "snapshot.reading")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while moto.keys("locks", "r/locks/").len() < 2 {
        assert!(start.elapsed().as_secs() < 60, "no lock object appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let p = json_with(&["--repo", &url], &["prune"], 0);
    assert!(p.is_object(), "{p}");
    check_read_data(&url);
}

#[test]
fn copy_between_local_and_s3_sends_only_what_is_missing() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("copies");
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let local = t.join("local");
    let l = local.to_str().unwrap();
    json(&local, &["init", "--no-encrypt"], 0);
    json(&local, &["snapshot", src.to_str().unwrap()], 0);
    json(
        &local,
        &["snapshot", src.to_str().unwrap(), "--tag", "special"],
        0,
    );
    // Content the tagged snapshot lacks, for the second copy to send.
    fs::write(src.join("more.json"), json_array(2500, 4)).unwrap();
    json(&local, &["snapshot", src.to_str().unwrap()], 0);

    let s3 = moto.url("copies", "offsite");
    json_with(&["--repo", &s3], &["init", "--no-encrypt"], 0);
    // Filters choose; then the default (every complete backup) copies the rest.
    let c = json_with(
        &["--repo", &s3],
        &["copy", "--from-repo", l, "--tag", "special"],
        0,
    );
    assert_eq!(c["snapshots_copied"], 1, "{c}");
    let c = json_with(&["--repo", &s3], &["copy", "--from-repo", l], 0);
    assert_eq!(c["snapshots_copied"], 2, "{c}");
    assert_eq!(c["already_there"].as_array().unwrap().len(), 1, "{c}");
    assert!(c["blobs"].as_u64().unwrap() > 0 && c["bytes_sent"].as_u64().unwrap() > 0);
    assert!(c["seconds"].as_f64().is_some());
    // Idempotent: nothing more to send.
    let again = json_with(&["--repo", &s3], &["copy", "--from-repo", l], 0);
    assert_eq!(again["snapshots_copied"], 0, "{again}");
    assert_eq!(again["blobs"], 0);
    check_read_data(&s3);
    restore_exact(&s3, &src, &t.join("from-s3"));
    // Ids survive the copy.
    let ids = |r: &str| -> Vec<String> {
        let mut v: Vec<String> = json_with(&["--repo", r], &["snapshots", "--kind", "backup"], 0)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(l), ids(&s3));

    // S3 to local, and local to local; a new snapshot sends only its new blobs.
    let back = t.join("back");
    json(&back, &["init", "--no-encrypt"], 0);
    let c = json_with(
        &["--repo", back.to_str().unwrap()],
        &["copy", "--from-repo", &s3],
        0,
    );
    assert_eq!(c["snapshots_copied"], 3);
    restore_exact(back.to_str().unwrap(), &src, &t.join("from-back"));
    fs::write(src.join("last.json"), b"{\"tiny\": true}").unwrap();
    json(&local, &["snapshot", src.to_str().unwrap()], 0);
    let c = json_with(
        &["--repo", back.to_str().unwrap()],
        &["copy", "--from-repo", l],
        0,
    );
    assert_eq!(c["snapshots_copied"], 1, "{c}");
    assert!(
        c["blobs"].as_u64().unwrap() <= 4,
        "sent more than the new blobs: {c}"
    );
    json(&back, &["check", "--read-data"], 0);
    restore_exact(back.to_str().unwrap(), &src, &t.join("from-back2"));

    // A damaged blob in the source is refused on arrival: nothing of that snapshot lands.
    let bad = t.join("bad");
    json(&bad, &["init", "--no-encrypt"], 0);
    let src_repo = cachevault::Repository::open(&local).unwrap();
    for a in fs::read_dir(src_repo.archives_dir()).unwrap() {
        let p = a.unwrap().path();
        let mut bytes = fs::read(&p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        fs::write(&p, bytes).unwrap();
    }
    let o = run(&["--repo", bad.to_str().unwrap(), "copy", "--from-repo", l]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let listed = json(&bad, &["snapshots"], 0);
    assert!(listed.as_array().unwrap().is_empty(), "{listed}");
}

#[test]
fn run_due_copies_every_backup_and_keeps_the_retention_policy_there() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("offsite");
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let offsite_dir = t.join("offsite-disk");
    let offsite_s3 = moto.url("offsite", "agent-1");
    let mut c: serde_json::Value = serde_json::from_slice(&fs::read(&cfg).unwrap()).unwrap();
    c["cache"]["strategies"]["clearing"]["schedule"]["strategy"] = "ttl".into();
    let b = &mut c["cache"]["strategies"]["backup"];
    b["retention_policy"] =
        serde_json::json!({"daily_backups": 2, "weekly_backups": 0, "monthly_backups": 0});
    b["copy_to"] = serde_json::json!([offsite_dir.to_str().unwrap(), offsite_s3]);
    fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    json_cfg(&cfg, &["init", "--no-encrypt"], 0);
    json(&offsite_dir, &["init", "--no-encrypt"], 0);
    json_with(&["--repo", &offsite_s3], &["init", "--no-encrypt"], 0);

    let backups = |repo: &str| -> Vec<String> {
        let mut v: Vec<String> =
            json_with(&["--repo", repo], &["snapshots", "--kind", "backup"], 0)
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect();
        v.sort();
        v
    };
    for day in 20..25 {
        let now = format!("2026-11-{day}T02:30:00+00:00");
        let d = json_cfg(&cfg, &["run-due", "--now", &now], 0);
        let copies: Vec<_> = d["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["job"] == "copy")
            .collect();
        assert_eq!(copies.len(), 2, "{d}");
        assert!(copies.iter().all(|j| j["ok"] == true), "{d}");
        assert_eq!(copies[1]["to"], offsite_s3.as_str());
    }
    // Each copy holds what the primary keeps: the 2 newest daily backups.
    let primary = c["cache"]["repository"].as_str().unwrap().to_string();
    let primary = t.join(primary);
    let kept = backups(primary.to_str().unwrap());
    assert_eq!(kept.len(), 2);
    assert_eq!(backups(offsite_dir.to_str().unwrap()), kept);
    assert_eq!(backups(&offsite_s3), kept);
    json(&offsite_dir, &["check", "--read-data"], 0);
    check_read_data(&offsite_s3);
    // The copies are journaled per destination; health reads them.
    let h = json_cfg(
        &cfg,
        &["health", "--now", "2026-11-24T03:00:00+00:00"],
        expected_health(&t, cachevault::health::Level::Ok),
    );
    assert!(
        h["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "copies"),
        "{h}"
    );
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "health",
        "--now",
        "2026-11-27T03:00:00+00:00",
    ]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy_reasons: Vec<_> = h["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["check"] == "copies")
        .collect();
    assert_eq!(copy_reasons.len(), 2, "{h}");

    // A destination that is not a repository: that copy fails (exit 1), the others go on.
    let missing = t.join("never-initialised");
    c["cache"]["strategies"]["backup"]["copy_to"] =
        serde_json::json!([missing.to_str().unwrap(), offsite_s3]);
    fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let d = json_cfg(&cfg, &["run-due", "--now", "2026-11-25T02:30:00+00:00"], 1);
    let copies: Vec<_> = d["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["job"] == "copy")
        .collect();
    assert_eq!(copies[0]["ok"], false, "{d}");
    assert!(copies[0]["error"].as_str().unwrap().contains("init"), "{d}");
    assert_eq!(copies[1]["ok"], true, "{d}");
    assert!(!missing.exists(), "a copy destination was created");
}

/// In an encrypted repository a lock object is sealed: its bytes name no host or command,
/// yet a second command that finds it still waits for it, and names its holder.
#[test]
fn lock_objects_of_an_encrypted_repository_are_sealed_and_still_hold() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.bucket("sealed");
    let url = moto.url("sealed", "r");
    let with_pw = |c: &mut Command| {
        c.env("CACHEVAULT_PASSWORD", "lock test")
            .env("CACHEVAULT_INSECURE_TEST_KDF", "1")
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG");
    };
    let t = TestDir::new();
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let mut init = Command::new(BIN);
    init.args(["--repo", &url, "init", "--encrypt"]);
    with_pw(&mut init);
    assert!(init.status().unwrap().success());
    let mut snap = Command::new(BIN);
    snap.args(["--repo", &url, "snapshot", src.to_str().unwrap()])
        .env("CACHEVAULT_PAUSE", "snapshot.reading")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    with_pw(&mut snap);
    let mut child = snap.spawn().unwrap();
    let start = std::time::Instant::now();
    let key = loop {
        // The lock object, not the probe of conditional writes (`.tmp`, deleted at once).
        let keys = moto.keys("sealed", "r/locks/");
        if let Some(k) = keys.into_iter().find(|k| k.ends_with(".json")) {
            break k;
        }
        assert!(start.elapsed().as_secs() < 60, "no lock object appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let body = cachevault::backend::open(&url)
        .unwrap()
        .read(
            cachevault::backend::ObjectKind::Lock,
            key.trim_start_matches("r/locks/"),
        )
        .unwrap();
    let host = cachevault::fsutil::hostname();
    for clear in [&b"snapshot"[..], b"host", b"expires", host.as_bytes()] {
        assert!(
            !body.windows(clear.len()).any(|w| w == clear),
            "{key}: {:?} in clear",
            String::from_utf8_lossy(clear)
        );
    }
    let mut prune = Command::new(BIN);
    prune.args(["--repo", &url, "--lock-wait", "1", "prune"]);
    with_pw(&mut prune);
    let o = prune.output().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("snapshot") && e.contains(&host), "{e}");
}
