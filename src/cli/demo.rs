//! `demo`: the shipped default config placed beside a copy of the shipped fixtures (plus the
//! awkward cases git cannot hold), snapshotted, mutated, snapshotted again, checked with
//! read-data, restored and compared exactly.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use cachevault::check::{self, ReadData};
use cachevault::compare::compare_trees;
use cachevault::config::Config;
use cachevault::restore::{self, RestoreOptions};
use cachevault::snapshot::{self, SnapshotOptions};
use cachevault::{NoProgress, Repository};

use super::args::DemoArgs;
use super::{bytes, exit, Ctx, Outcome};

const SOURCE: &str = env!("CARGO_MANIFEST_DIR");

pub fn demo(ctx: &Ctx, a: &DemoArgs) -> Result<Outcome> {
    let work = a
        .dir
        .clone()
        .unwrap_or_else(|| Path::new(SOURCE).join("target/cachevault-demo"));
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    let cache = work.join("OUTPUTS");
    copy_tree(&Path::new(SOURCE).join("fixtures/tree/OUTPUTS"), &cache)?;
    add_awkward_cases(&cache.join("cached_products/awkward"))?;
    copy_tree(&Path::new(SOURCE).join("config"), &work)?;
    let cfg = Config::load(&work.join("cachevault.json"))?;
    let mut log = String::new();
    let mut say = |s: String| {
        if !ctx.cli.json {
            println!("{s}");
        }
        log.push_str(&s);
        log.push('\n');
    };
    say(format!(
        "demo folder {}: default config + fixtures",
        work.display()
    ));

    let repo = Repository::init(&cfg.repository)?;
    say(format!(
        "1. init        repository {}",
        cfg.repository.display()
    ));
    let take = |tag: &str| -> Result<snapshot::SnapshotSummary> {
        let opts = SnapshotOptions {
            root: cfg.root.clone(),
            includes: cfg.backup_includes(),
            types: cfg.type_folders(),
            kind: cachevault::manifest::SnapshotKind::Backup,
            tags: vec![tag.into()],
            time: super::now(),
            hostname: super::hostname(),
            rehash: false,
            dry_run: false,
            parent: None,
        };
        Ok(snapshot::create_listed(&repo, &opts, &NoProgress)?)
    };
    let s1 = take("demo-1")?;
    let st = &s1.manifest.summary;
    say(format!(
        "2. snapshot    {}: {} files, {} folders, {} symlinks, {} -> {} stored",
        s1.id.expect("written").short(),
        st.files_new,
        st.dirs,
        st.symlinks,
        bytes(st.bytes_total),
        bytes(st.bytes_added)
    ));
    let includes: Vec<PathBuf> = cfg
        .backup_includes()
        .iter()
        .map(|r| r.to_path().to_path_buf())
        .collect();
    let r1 = work.join("restore-1");
    let diffs1 = restore_and_compare(&repo, &s1.manifest, &r1, &cache, &includes)?;
    say(format!(
        "3. restore     snapshot 1 into {}: {} differences",
        r1.display(),
        diffs1.len()
    ));

    let deleted = mutate(&cache)?;
    let s2 = take("demo-2")?;
    let st = &s2.manifest.summary;
    say(format!(
        "4. snapshot    {} after a mutation: {} new, {} changed, {} unchanged, {} added",
        s2.id.expect("written").short(),
        st.files_new,
        st.files_changed,
        st.files_unchanged,
        bytes(st.bytes_added)
    ));
    let report = check::check(&repo, ReadData::All, 0)?;
    say(format!(
        "5. check       --read-data: {} snapshots, {} archives, {} blobs, {} errors",
        report.snapshots,
        report.archives,
        report.blobs,
        report.errors.len()
    ));
    let r2 = work.join("restore-2");
    let diffs2 = restore_and_compare(&repo, &s2.manifest, &r2, &cache, &includes)?;
    say(format!(
        "6. restore     snapshot 2 into {}: {} differences",
        r2.display(),
        diffs2.len()
    ));
    let r3 = work.join("restore-one-file");
    restore::restore(
        &repo,
        &s1.manifest,
        &r3,
        &RestoreOptions {
            exact: false,
            paths: vec![cachevault::RelPath(
                deleted.0.as_os_str().as_bytes().to_vec(),
            )],
            dry_run: false,
            guard: None,
            window: 0,
        },
        &NoProgress,
    )?;
    let back = fs::read(r3.join(&deleted.0))?;
    let one_ok = back == deleted.1;
    say(format!(
        "7. restore     the file deleted by the mutation, from snapshot 1: {}",
        if one_ok { "identical" } else { "DIFFERENT" }
    ));
    let all: Vec<String> = diffs1.iter().chain(&diffs2).cloned().collect();
    let ok = all.is_empty() && report.ok() && one_ok;
    say(format!("demo {}", if ok { "passed" } else { "FAILED" }));
    for d in &all {
        say(format!("  difference: {d}"));
    }
    let doc = json!({
        "ok": ok,
        "dir": work,
        "snapshots": [s1.id.map(|i| i.to_hex()), s2.id.map(|i| i.to_hex())],
        "differences": all,
        "check_errors": report.errors,
    });
    let code = if ok { exit::OK } else { exit::FAILED };
    Ok(Outcome::new(doc, String::new(), code))
}

fn restore_and_compare(
    repo: &Repository,
    m: &cachevault::Manifest,
    target: &Path,
    cache: &Path,
    includes: &[PathBuf],
) -> Result<Vec<String>> {
    let s = restore::restore(repo, m, target, &RestoreOptions::default(), &NoProgress)?;
    if !s.errors.is_empty() {
        bail!("restore failed: {}", s.errors.join("; "));
    }
    let mut diffs = Vec::new();
    for inc in includes {
        let (a, b) = (cache.join(inc), target.join(inc));
        if a.is_dir() {
            diffs.extend(compare_trees(&a, &b, true)?);
        } else if fs::read(&a)? != fs::read(&b)? {
            diffs.push(format!("{}: differs", inc.display()));
        }
    }
    Ok(diffs)
}

/// Copies a tree, keeping modes, mtimes and symlinks.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for de in walkdir::WalkDir::new(from).follow_links(false) {
        let de = de?;
        let rel = de.path().strip_prefix(from)?;
        let dest = to.join(rel);
        let m = de.path().symlink_metadata()?;
        if m.is_dir() {
            fs::create_dir_all(&dest)?;
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(de.path())?, &dest)?;
        } else {
            fs::copy(de.path(), &dest)
                .with_context(|| format!("copying {}", de.path().display()))?;
            let f = fs::File::options().write(true).open(&dest)?;
            f.set_modified(m.modified()?)?;
        }
    }
    Ok(())
}

/// What git cannot hold: a name that is not UTF-8, a symlink, an empty folder, an empty
/// file, 0600 and 0755 modes.
fn add_awkward_cases(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir.join("empty-folder"))?;
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.json");
    fs::write(dir.join(odd), b"{\"name\": \"latin-1 file name\"}\n")?;
    fs::write(dir.join("empty.json"), b"")?;
    fs::write(dir.join("private.json"), b"{\"secret\": true}\n")?;
    fs::set_permissions(dir.join("private.json"), fs::Permissions::from_mode(0o600))?;
    fs::write(dir.join("tool.sh"), b"#!/bin/sh\necho cache\n")?;
    fs::set_permissions(dir.join("tool.sh"), fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::symlink("private.json", dir.join("link-to-private.json"))?;
    Ok(())
}

/// One "day" of agent activity: the linking map grows and is rewritten whole, one amazon
/// entry is rewritten, one deleted, one added. Returns the deleted file and its content.
fn mutate(cache: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let map = cache.join("FBA_ANALYSIS/Linking map/linking_map.json");
    let mut records: Vec<serde_json::Value> = serde_json::from_slice(&fs::read(&map)?)?;
    records.push(
        json!({"supplier_ean": "5012345678900", "asin": "B0DEMO0001",
        "supplier_url": "https://example.invalid/p/1", "match_method": "ean",
        "confidence": 0.97, "linked_at": "2026-11-25T10:00:00Z"}),
    );
    let tmp = map.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(&records)?)?;
    fs::rename(&tmp, &map)?;
    let amazon = cache.join("FBA_ANALYSIS/amazon_cache");
    let mut files: Vec<PathBuf> = fs::read_dir(&amazon)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.len() < 2 {
        bail!("fixture tree has too few amazon entries");
    }
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&files[0])?)?;
    doc["scraped_at"] = json!("2026-11-25T10:00:00Z");
    fs::write(&files[0], serde_json::to_vec_pretty(&doc)?)?;
    let gone = files[1].clone();
    let content = fs::read(&gone)?;
    fs::remove_file(&gone)?;
    fs::write(
        amazon.join("amazon_B0DEMO0001.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    let rel = gone.strip_prefix(cache)?.to_path_buf();
    Ok((rel, content))
}
