//! Encrypted repositories through the binary: nothing of the cache is readable in any stored
//! object, passwords (wrong, missing, from a file or a command), key management, tamper
//! detection in each kind of object, frames moved between archives, and copies that re-encode
//! between plain and encrypted repositories.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cachevault");
const PASSWORD: &str = "correct horse battery staple";

/// Runs the binary with `--json`, the given password (or none) and the cheap test KDF;
/// returns (exit code, JSON document, stderr).
fn cv(repo: &Path, password: Option<&str>, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut c = Command::new(BIN);
    c.args(["--repo", repo.to_str().unwrap(), "--json"])
        .args(args)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .env_remove("CACHEVAULT_PASSWORD")
        .env("CACHEVAULT_INSECURE_TEST_KDF", "1");
    if let Some(p) = password {
        c.env("CACHEVAULT_PASSWORD", p);
    }
    let out = c.output().unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cv` with the password, asserting the exit code.
fn ok(repo: &Path, args: &[&str], code: i32) -> serde_json::Value {
    let (c, doc, err) = cv(repo, Some(PASSWORD), args);
    assert_eq!(c, code, "{args:?}: {doc}\n{err}");
    doc
}

/// An encrypted repository (the default cipher) holding a snapshot of the fixtures.
fn encrypted_repo(t: &TestDir) -> (PathBuf, PathBuf) {
    encrypted_repo_with(t, DEFAULT_CIPHER)
}

const DEFAULT_CIPHER: &str = "aes-256-gcm";
const XCHACHA: &str = "xchacha20-poly1305";

/// `init --encrypt --cipher CIPHER`, asserting the format version each cipher writes.
fn init_encrypted(repo: &Path, cipher: &str) {
    let i = if cipher == DEFAULT_CIPHER {
        ok(repo, &["init", "--encrypt"], 0)
    } else {
        ok(repo, &["init", "--encrypt", "--cipher", cipher], 0)
    };
    assert_eq!(i["encrypted"], true, "{i}");
    assert_eq!(i["cipher"], cipher, "{i}");
    let version = if cipher == XCHACHA { 2 } else { 3 };
    assert_eq!(i["format_version"], version, "{i}");
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(repo.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["encryption"]["cipher"], cipher, "{config}");
}

/// An encrypted repository sealed with `cipher`, holding a snapshot of the fixtures.
fn encrypted_repo_with(t: &TestDir, cipher: &str) -> (PathBuf, PathBuf) {
    let src = t.join("OUTPUTS");
    fixture_tree(&src);
    let repo = t.join("repo");
    init_encrypted(&repo, cipher);
    ok(&repo, &["snapshot", src.to_str().unwrap()], 0);
    (repo, src)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// No stored object except config.json and the key files holds a zstd frame, JSON, a tar
/// header, a cache file name or an ASIN of the tree; and tar cannot read an archive.
#[test]
fn nothing_of_the_cache_is_readable_in_the_repository() {
    nothing_readable(DEFAULT_CIPHER);
}

/// The same with the other cipher.
#[test]
fn nothing_of_the_cache_is_readable_under_xchacha20_poly1305() {
    nothing_readable(XCHACHA);
}

/// An unknown cipher is refused, naming the ones there are; `--cipher` needs `--encrypt`.
#[test]
fn an_unknown_cipher_is_refused() {
    let t = TestDir::new();
    let repo = t.join("repo");
    let (code, _, err) = cv(
        &repo,
        Some(PASSWORD),
        &["init", "--encrypt", "--cipher", "rot13"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rot13") && err.contains(XCHACHA), "{err}");
    let (code, _, err) = cv(&repo, Some(PASSWORD), &["init", "--cipher", XCHACHA]);
    assert_eq!(code, 2, "{err}");
    assert!(!repo.join("config.json").exists());
}

fn nothing_readable(cipher: &str) {
    let t = TestDir::new();
    let (repo, src) = encrypted_repo_with(&t, cipher);
    // More kinds of objects: a second snapshot, a clear's record (via a config), the journal.
    fs::write(
        src.join("FBA_ANALYSIS/amazon_cache/amazon_B0ZKC80M8P.json"),
        json_array(40, 9),
    )
    .unwrap();
    ok(&repo, &["snapshot", src.to_str().unwrap()], 0);
    ok(&repo, &["forget", "--keep-last", "1", "--prune"], 0);

    let names: Vec<String> = files(&src)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let asins: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("amazon_")?.strip_suffix(".json"))
        .map(str::to_owned)
        .collect();
    assert!(asins.len() >= 3, "{names:?}");
    let stored = files(&repo);
    let mut checked = 0;
    for f in &stored {
        let rel = f
            .strip_prefix(&repo)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "config.json" || rel.starts_with("keys/") {
            continue;
        }
        let bytes = fs::read(f).unwrap();
        checked += 1;
        assert!(
            !contains(&bytes, &[0x28, 0xb5, 0x2f, 0xfd]),
            "{rel}: zstd magic"
        );
        assert!(!contains(&bytes, b"ustar"), "{rel}: a tar header");
        assert!(!contains(&bytes, b"\"path\""), "{rel}: JSON of entries");
        assert!(!contains(&bytes, b"\"time\""), "{rel}: JSON");
        assert!(bytes.first() != Some(&b'{'), "{rel}: starts like JSON");
        for n in names.iter().filter(|n| n.len() >= 8) {
            assert!(!contains(&bytes, n.as_bytes()), "{rel}: holds the name {n}");
        }
        for a in &asins {
            assert!(!contains(&bytes, a.as_bytes()), "{rel}: holds the ASIN {a}");
        }
    }
    assert!(checked >= 4, "only {checked} objects checked: {stored:?}");
    // The journal is there, and sealed line by line.
    assert!(stored
        .iter()
        .any(|p| p.to_string_lossy().contains("/journal/")));

    if require("tar", "reading archives with tar") {
        let archive = stored
            .iter()
            .find(|p| p.to_string_lossy().contains("/archives/"))
            .unwrap();
        let out = Command::new("tar")
            .args(["--zstd", "-tf", archive.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "tar read a sealed archive");
    }
    // And through cachevault, everything is there.
    let restored = t.join("restored");
    ok(
        &repo,
        &["restore", "latest", "--target", restored.to_str().unwrap()],
        0,
    );
    assert!(cachevault::compare::compare_trees(&src, &restored, false)
        .unwrap()
        .is_empty());
    let h = ok(&repo, &["history"], 0);
    assert!(h.to_string().contains("snapshot"), "{h}");
    // dump is the other way in: one file's bytes, exactly.
    let rel = "FBA_ANALYSIS/amazon_cache/amazon_B0ZKC80M8P.json";
    let out = Command::new(BIN)
        .args(["--repo", repo.to_str().unwrap(), "dump", "latest", rel])
        .env("CACHEVAULT_PASSWORD", PASSWORD)
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, fs::read(src.join(rel)).unwrap());
}

/// Wrong and missing passwords: exit 2 with the kind `password`, nothing read or written;
/// a password file and a password command work.
#[test]
fn wrong_or_missing_passwords_are_refused() {
    let t = TestDir::new();
    let (repo, _src) = encrypted_repo(&t);
    let before: Vec<(PathBuf, u64)> = files(&repo)
        .into_iter()
        .map(|p| {
            let l = fs::metadata(&p).unwrap().len();
            (p, l)
        })
        .collect();
    let (code, doc, _) = cv(&repo, Some("not it"), &["snapshots"]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["kind"], "password", "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("wrong password"),
        "{doc}"
    );
    let (code, doc, _) = cv(&repo, None, &["snapshots"]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["kind"], "password", "{doc}");
    let e = doc["error"].as_str().unwrap();
    assert!(
        e.contains("CACHEVAULT_PASSWORD") && e.contains("--password-file"),
        "{e}"
    );
    // Nothing was written (no journal entry, no lock holder left).
    let after: Vec<(PathBuf, u64)> = files(&repo)
        .into_iter()
        .map(|p| {
            let l = fs::metadata(&p).unwrap().len();
            (p, l)
        })
        .collect();
    assert_eq!(before, after);

    let pwfile = t.write("pw.txt", format!("{PASSWORD}\n"));
    let (code, doc, err) = cv(
        &repo,
        None,
        &["--password-file", pwfile.to_str().unwrap(), "snapshots"],
    );
    assert_eq!(code, 0, "{doc} {err}");
    assert_eq!(doc.as_array().unwrap().len(), 1);
    let cmd = format!("cat {}", pwfile.display());
    let (code, doc, err) = cv(&repo, None, &["--password-command", &cmd, "snapshots"]);
    assert_eq!(code, 0, "{doc} {err}");
    let (code, doc, _) = cv(&repo, None, &["--password-command", "false", "snapshots"]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(doc["kind"], "password", "{doc}");
}

/// key list, add, remove (not the one in use, not the last), passwd.
#[test]
fn keys_are_added_listed_removed_and_changed() {
    let t = TestDir::new();
    let (repo, _src) = encrypted_repo(&t);
    let keys = ok(&repo, &["key", "list"], 0);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["current"], true);
    let first = keys[0]["id"].as_str().unwrap().to_owned();
    assert!(keys[0]["host"].is_string() && keys[0]["created"].is_string());

    // The last key cannot go.
    let (code, doc, _) = cv(&repo, Some(PASSWORD), &["key", "remove", &first]);
    assert_eq!(code, 2, "{doc}");

    let second_pw = t.write("second.txt", "second password\n");
    let added = ok(
        &repo,
        &[
            "key",
            "add",
            "--new-password-file",
            second_pw.to_str().unwrap(),
        ],
        0,
    );
    let second = added["added"].as_str().unwrap().to_owned();
    let keys = ok(&repo, &["key", "list"], 0);
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    // Both passwords open it; with the second, the second key is the current one.
    let (code, keys2, _) = cv(&repo, Some("second password"), &["key", "list"]);
    assert_eq!(code, 0);
    let current: Vec<&str> = keys2
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["current"] == true)
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(current, vec![second.as_str()]);
    // The key in use cannot be removed; another can.
    let (code, doc, _) = cv(&repo, Some(PASSWORD), &["key", "remove", &first[..8]]);
    assert_eq!(code, 2, "{doc}");
    assert!(doc["error"].as_str().unwrap().contains("in use"), "{doc}");
    let (code, doc, _) = cv(
        &repo,
        Some("second password"),
        &["key", "remove", &first[..8]],
    );
    assert_eq!(code, 0, "{doc}");
    let (code, _, _) = cv(&repo, Some(PASSWORD), &["snapshots"]);
    assert_eq!(
        code, 2,
        "the removed key's password still opens the repository"
    );

    // passwd: the new password replaces the one in use.
    let third_pw = t.write("third.txt", "third password\n");
    let (code, doc, _) = cv(
        &repo,
        Some("second password"),
        &[
            "key",
            "passwd",
            "--new-password-file",
            third_pw.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["removed"], second.as_str());
    assert_eq!(cv(&repo, Some("second password"), &["snapshots"]).0, 2);
    let (code, snaps, _) = cv(&repo, Some("third password"), &["snapshots"]);
    assert_eq!(code, 0);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
}

/// Flips one byte in the middle of `path`.
fn flip(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

fn one_in(repo: &Path, folder: &str) -> PathBuf {
    let mut f = files(&repo.join(folder));
    f.sort();
    f.into_iter().next().unwrap()
}

/// A flipped byte in an archive, an index, a manifest or the key file is a corruption
/// (exit 3) naming the object, never a wrong result.
#[test]
fn a_flipped_byte_anywhere_is_caught() {
    for (folder, args) in [
        ("archives", vec!["restore", "latest", "--target"]),
        ("index", vec!["restore", "latest", "--target"]),
        ("snapshots", vec!["snapshots"]),
        ("keys", vec!["snapshots"]),
    ] {
        let t = TestDir::new();
        let (repo, _src) = encrypted_repo(&t);
        let victim = one_in(&repo, folder);
        flip(&victim);
        let target = t.join("out");
        let mut args: Vec<&str> = args;
        if args.last() == Some(&"--target") {
            args.push(target.to_str().unwrap());
        }
        let (code, doc, err) = cv(&repo, Some(PASSWORD), &args);
        assert_eq!(code, 3, "{folder}: {doc}\n{err}");
        if doc.get("error").is_some() {
            assert_eq!(doc["kind"], "corrupt", "{folder}: {doc}");
        }
        let name = victim.file_name().unwrap().to_string_lossy();
        let id = &name[..16];
        let said = format!("{doc}{err}");
        assert!(
            said.contains(id),
            "{folder}: the error does not name {name}: {said}"
        );
        if folder != "keys" {
            let (code, c, _) = cv(&repo, Some(PASSWORD), &["check", "--read-data"]);
            assert_eq!(code, 3, "{folder}: check passed: {c}");
        }
    }
}

/// A frame moved from one archive into another, at the same offset and of the same length,
/// fails to authenticate: the seal binds each frame to its archive and position.
#[test]
fn frames_swapped_between_archives_are_caught() {
    frames_swapped(DEFAULT_CIPHER);
}

/// The same with the other cipher.
#[test]
fn frames_swapped_between_archives_are_caught_under_xchacha20_poly1305() {
    frames_swapped(XCHACHA);
}

fn frames_swapped(cipher: &str) {
    let t = TestDir::new();
    let repo = t.join("repo");
    init_encrypted(&repo, cipher);
    // Two archives whose first frames have the same length: incompressible content of the
    // same size, one snapshot each.
    let mut archives = Vec::new();
    for i in 0..2u64 {
        let src = t.join(format!("src{i}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("noise.bin"), noise(200_000, i + 1)).unwrap();
        let before: Vec<PathBuf> = files(&repo.join("archives"));
        ok(&repo, &["snapshot", src.to_str().unwrap()], 0);
        let new: Vec<PathBuf> = files(&repo.join("archives"))
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        archives.push(new);
    }
    // The archive holding the noise: the larger one of each snapshot.
    let pick = |set: &Vec<PathBuf>| {
        set.iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap()
            .clone()
    };
    let (a, b) = (pick(&archives[0]), pick(&archives[1]));
    let (mut ab, bb) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let first_len =
        |bytes: &[u8]| u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as usize + 4;
    let (la, lb) = (first_len(&ab), first_len(&bb));
    assert_eq!(la, lb, "first frames differ in length");
    ab[24..24 + la].copy_from_slice(&bb[24..24 + lb]);
    fs::write(&a, &ab).unwrap();
    let snaps = ok(&repo, &["snapshots"], 0);
    let first = snaps[0]["id"].as_str().unwrap();
    let out = t.join("out");
    let (code, doc, err) = cv(
        &repo,
        Some(PASSWORD),
        &["restore", first, "--target", out.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{doc}\n{err}");
    let said = format!("{doc}{err}");
    assert!(said.contains("does not authenticate"), "{said}");
    assert!(
        !out.join("noise.bin").exists(),
        "a file was restored from a moved frame"
    );
}

/// copy re-encodes between plain and encrypted repositories, both ways, and a second copy
/// sends nothing.
#[test]
fn copy_re_encodes_between_plain_and_encrypted() {
    let t = TestDir::new();
    let (enc, src) = encrypted_repo(&t);
    let plain = t.join("plain");
    ok(&plain, &["init"], 0);
    let enc_pw = t.write("enc-pw", format!("{PASSWORD}\n"));
    let c = ok(
        &plain,
        &[
            "copy",
            "--from-repo",
            enc.to_str().unwrap(),
            "--from-password-file",
            enc_pw.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(c["snapshots_copied"], 1, "{c}");
    assert!(c["blobs"].as_u64().unwrap() > 0);
    // The plain copy is readable by tar again, and restores exactly.
    let out = t.join("from-plain");
    ok(
        &plain,
        &["restore", "latest", "--target", out.to_str().unwrap()],
        0,
    );
    assert!(cachevault::compare::compare_trees(&src, &out, false)
        .unwrap()
        .is_empty());

    let enc2 = t.join("enc2");
    let (code, doc, _) = cv(&enc2, Some("other password"), &["init", "--encrypt"]);
    assert_eq!(code, 0, "{doc}");
    let copy_args = ["copy", "--from-repo", plain.to_str().unwrap()];
    let (code, c, err) = cv(&enc2, Some("other password"), &copy_args);
    assert_eq!(code, 0, "{c}{err}");
    assert_eq!(c["snapshots_copied"], 1, "{c}");
    let (code, again, _) = cv(&enc2, Some("other password"), &copy_args);
    assert_eq!(code, 0);
    assert_eq!(again["snapshots_copied"], 0, "{again}");
    assert_eq!(again["blobs"], 0, "{again}");
    let out2 = t.join("from-enc2");
    let (code, _, err) = cv(
        &enc2,
        Some("other password"),
        &["restore", "latest", "--target", out2.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(cachevault::compare::compare_trees(&src, &out2, false)
        .unwrap()
        .is_empty());
    // Encrypted to encrypted with two passwords (the source's through --from-password-file)
    // and two ciphers.
    let enc3 = t.join("enc3");
    init_encrypted(&enc3, XCHACHA);
    let pw = t.write("enc2-pw", "other password\n");
    let c = ok(
        &enc3,
        &[
            "copy",
            "--from-repo",
            enc2.to_str().unwrap(),
            "--from-password-file",
            pw.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(c["snapshots_copied"], 1, "{c}");
    let check = ok(&enc3, &["check", "--read-data"], 0);
    assert_eq!(check["ok"], true);
    let out3 = t.join("from-enc3");
    ok(
        &enc3,
        &["restore", "latest", "--target", out3.to_str().unwrap()],
        0,
    );
    assert!(cachevault::compare::compare_trees(&src, &out3, false)
        .unwrap()
        .is_empty());
}

/// While a command holds the lock, its holder file says nothing in clear (no command, no
/// process, no time), and a command that waits for the lock still learns, with the key, who
/// holds it.
#[test]
fn lock_holders_are_sealed() {
    let t = TestDir::new();
    let (repo, _src) = encrypted_repo(&t);
    let target = t.join("out");
    let mut child = Command::new(BIN)
        .args(["--repo", repo.to_str().unwrap(), "restore", "latest"])
        .args(["--target", target.to_str().unwrap()])
        .env_remove("CACHEVAULT_REPO")
        .env_remove("CACHEVAULT_CONFIG")
        .env("CACHEVAULT_PASSWORD", PASSWORD)
        .env("CACHEVAULT_INSECURE_TEST_KDF", "1")
        .env("CACHEVAULT_PAUSE", "restore.writing")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_paused(&mut child);
    let holders: Vec<PathBuf> = files(&repo.join("locks"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "holder"))
        .collect();
    assert!(!holders.is_empty(), "no holder file while the restore runs");
    for h in &holders {
        let bytes = fs::read(h).unwrap();
        for clear in [&b"restore"[..], b"pid", b"since", b"exclusive"] {
            assert!(
                !contains(&bytes, clear),
                "{}: {:?} in clear",
                h.display(),
                String::from_utf8_lossy(clear)
            );
        }
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_err(),
            "{}: JSON in clear",
            h.display()
        );
    }
    let (code, doc, err) = cv(&repo, Some(PASSWORD), &["--lock-wait", "0", "prune"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 4, "{doc}\n{err}");
    let said = format!("{doc}{err}");
    assert!(
        said.contains("restore") && said.contains(&child.id().to_string()),
        "the waiting command was not told who holds the lock: {said}"
    );
}

/// A file's recorded hash is the blake3 of its content whether or not blob ids are keyed, on
/// either side of the chunking threshold (one blob below it, whose plain id is that hash;
/// content-defined blobs above), empty files included; and each restores exactly.
#[test]
fn a_files_hash_is_the_blake3_of_its_content_in_plain_and_encrypted_repositories() {
    let t = TestDir::new();
    let threshold = 1usize << 20;
    let sizes = [0, 1, 4000, threshold - 1, threshold, 3 * threshold + 17];
    for (i, n) in sizes.iter().enumerate() {
        t.write(format!("src/f{i}.bin"), noise(*n, i as u64 + 1));
    }
    let src = t.join("src");
    for encrypted in [false, true] {
        let repo = t.join(format!("repo-{encrypted}"));
        if encrypted {
            init_encrypted(&repo, DEFAULT_CIPHER);
        } else {
            ok(&repo, &["init"], 0);
        }
        ok(&repo, &["snapshot", src.to_str().unwrap()], 0);
        let ls = ok(&repo, &["ls", "latest"], 0);
        let entries = ls["entries"].as_array().unwrap();
        for (i, n) in sizes.iter().enumerate() {
            let name = format!("f{i}.bin");
            let e = entries
                .iter()
                .find(|e| e["path"] == name.as_str())
                .unwrap_or_else(|| panic!("{name}: {ls}"));
            let content = fs::read(src.join(&name)).unwrap();
            assert_eq!(content.len(), *n);
            assert_eq!(
                e["hash"].as_str().unwrap(),
                blake3::hash(&content).to_hex().as_str(),
                "{name} ({n} bytes), encrypted: {encrypted}"
            );
        }
        let target = t.join(format!("restored-{encrypted}"));
        ok(
            &repo,
            &["restore", "latest", "--target", target.to_str().unwrap()],
            0,
        );
        for i in 0..sizes.len() {
            let name = format!("f{i}.bin");
            assert_eq!(
                fs::read(target.join(&name)).unwrap(),
                fs::read(src.join(&name)).unwrap()
            );
        }
    }
}
