//! The Python package, as a user gets it: `pip install <repository>` into a fresh virtual
//! environment builds the binary through maturin and installs the `cachevault` command and
//! module; then pytest runs `python/tests` against them, and the README's Python example
//! runs for real.
//!
//! Build cost. `pip install .` builds the wheel for users with cargo's release profile; here
//! that compiles every dependency a second time, optimised, in a target folder of its own
//! (sharing `target/release` would let maturin relink the binary the other tests run):
//! measured 15 min 45 s (10 min 24 s of CPU) from nothing on the 2-core machine while it was
//! shared with other builds, more than the rest of the suite. So the test passes maturin
//! `--profile dev` (`MATURIN_PEP517_ARGS`) with debug info off (`CARGO_PROFILE_DEV_DEBUG=false`;
//! with it the wheel is 33 MB instead of 6) into `<target>/python-wheel`, beside
//! `target/release`, where it persists so that later runs are incremental. Measured the same
//! way: the pip install takes 2 min 6 s (2 min 31 s of CPU) from nothing, 6 to 15 s when
//! nothing changed, 23 s after a change to the binary's sources; the whole test, virtual
//! environment and pytest included, 41 s when nothing changed. A cold `.ci/run` (empty
//! `target/`) at a load average near 6 on the 2 cores: 19 min 34 s to build the suite, then
//! 5 min 39 s for this test, 27 min in all; the same suite built in 11 min 45 s at a load near
//! 3. The unoptimised binary is fast enough for the small fixture tree the Python tests use.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::*;

/// Where the wheel's cargo build keeps its artefacts: beside the suite's own profile folder
/// (`target/python-wheel` unless `CARGO_TARGET_DIR` moves `target/`).
fn wheel_target_dir() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in <target>/<profile>/")
        .join("python-wheel")
}

/// Runs `cmd`; panics with its whole output unless it succeeds.
fn succeed(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The README's Python example: the ```python block after the `<!-- python-wrapper -->`
/// marker.
fn readme_example() -> String {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme
        .split("<!-- python-wrapper -->")
        .nth(1)
        .expect("README marks the Python example with <!-- python-wrapper -->");
    after
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```python block follows the marker")
        .to_string()
}

#[test]
fn pip_install_builds_the_package_and_its_tests_pass() {
    if !require("python3", "build and test the Python package") {
        return;
    }
    let t = TestDir::new();
    let venv = t.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 runs");
    let why = String::from_utf8_lossy(&made.stderr);
    if !require_that(
        made.status.success(),
        &format!(
            "python3 cannot create a virtual environment ({})",
            why.trim()
        ),
        "install the package the way users do",
    ) {
        return;
    }
    let python = venv.join("bin/python");

    let source = env!("CARGO_MANIFEST_DIR");
    let started = Instant::now();
    succeed(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--no-input"])
            .arg(source)
            .arg("pytest")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("CARGO_TARGET_DIR", wheel_target_dir())
            // Without the S3 backend (the Python tests use none): its HTTP and TLS stack
            // would double this build's time.
            .env("MATURIN_PEP517_ARGS", "--profile dev --no-default-features")
            .env("CARGO_PROFILE_DEV_DEBUG", "false"),
        "pip install of the package",
    );
    eprintln!(
        "pip install (maturin, cargo into {}) took {:.1}s",
        wheel_target_dir().display(),
        started.elapsed().as_secs_f64()
    );
    let installed = venv.join("bin/cachevault");
    assert!(
        installed.is_file(),
        "pip install put no cachevault command in {}",
        venv.join("bin").display()
    );

    // pytest runs from the temp folder, so `import cachevault` finds the installed module,
    // not the source folder; no cache or bytecode is written into the source tree.
    let started = Instant::now();
    let out = succeed(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
            .arg(Path::new(source).join("python/tests"))
            .current_dir(t.path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG"),
        "pytest python/tests",
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "pytest ran nothing or skipped tests:\n{report}"
    );
    eprintln!(
        "pytest: {summary} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );

    // The README's example, run as written, in the folder of the config it names.
    let work = TestDir::new();
    let cfg = config_tree(&work, 1_793_000_000);
    json_cfg(&cfg, &["init"], 0);
    let script = work.join("agent.py");
    fs::write(&script, readme_example()).unwrap();
    let out = succeed(
        Command::new(&python)
            .arg(&script)
            .current_dir(work.path())
            .env_remove("CACHEVAULT_REPO")
            .env_remove("CACHEVAULT_CONFIG"),
        "the README's Python example",
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.starts_with("cleared ") && !printed.starts_with("cleared 0 "),
        "the README example did not clear: {printed}"
    );
    let snapshots = json_cfg(&cfg, &["snapshots"], 0);
    let tags: Vec<&str> = snapshots
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tags"].as_array().unwrap())
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        tags.contains(&"pre-run") && tags.contains(&"pre-clear"),
        "expected the example's backup and its clear's snapshot: {tags:?}"
    );
}
