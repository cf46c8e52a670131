//! The Python function the README gives the agent's scripts, run with python3 against the
//! real binary: results come back as dicts, failures raise.

mod common;

use std::fs;
use std::process::Command;

use common::*;

#[test]
fn the_readme_python_wrapper_clears_and_raises() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split("<!-- python-wrapper -->")
        .nth(1)
        .expect("README marks the wrapper");
    let code = after
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a python block follows the marker");
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);
    let script = format!(
        r#"{code}
import sys
cfg, binary = sys.argv[1], sys.argv[2]
doc = cachevault("clear", "--strategy", "selective", "--dry-run", config=cfg, binary=binary)
assert doc["exit_code"] == 0 and doc["dry_run"] is True and len(doc["deleted"]) > 0, doc
doc = cachevault("clear", "--strategy", "selective", config=cfg, binary=binary)
assert doc["clear_id"] and doc["snapshot"], doc
undo = cachevault("undo", doc["clear_id"], config=cfg, binary=binary)
assert len(undo["restored"]) == len(doc["deleted"]), undo
try:
    cachevault("clear", "--strategy", "no_such_strategy", config=cfg, binary=binary)
except CacheVaultError as e:
    assert e.code == 2 and "no_such_strategy" in str(e), e
else:
    raise AssertionError("an unknown strategy did not raise")
print("ok")
"#
    );
    let path = t.join("agent.py");
    fs::write(&path, script).unwrap();
    let out = Command::new("python3")
        .arg(&path)
        .arg(&cfg)
        .arg(BIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
