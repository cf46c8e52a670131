//! Output for people on a terminal: tables fit its width, levels are coloured unless
//! `NO_COLOR` says not to; piped output and `--json` are never cut or coloured. A terminal is
//! made with `script` (util-linux), which runs the binary on a pseudo-terminal.

mod common;

use std::process::Command;

use common::*;

/// Runs `cachevault ARGS` on a pseudo-terminal with `env` set; its output, `\r` removed.
fn on_terminal(env: &[(&str, &str)], args: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut line = quote(BIN);
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CACHEVAULT_CONFIG")
        .env_remove("CACHEVAULT_REPO");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

fn strip_colour(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn tables_fit_the_terminal_and_levels_are_coloured_there_only() {
    if !require("script", "run the binary on a pseudo-terminal (util-linux)") {
        return;
    }
    let t = TestDir::new();
    let cfg = config_tree(&t, 1_793_000_000);
    let c = cfg.to_str().unwrap();
    json_cfg(&cfg, &["init"], 0);
    // Never validated, never backed up: health has long messages to show.
    let args = ["--config", c, "health"];

    let wide = on_terminal(&[("COLUMNS", "200")], &args);
    let narrow = on_terminal(&[("COLUMNS", "60")], &args);
    assert!(
        narrow.contains("\x1b[33m"),
        "warnings in yellow: {narrow:?}"
    );
    let plain = strip_colour(&narrow);
    let table: Vec<&str> = plain.lines().skip(1).collect();
    assert!(table.len() >= 3, "{plain}");
    for l in &table {
        assert!(l.chars().count() <= 60, "{} > 60: {l:?}", l.chars().count());
    }
    assert!(plain.contains('…'), "long messages elided: {plain}");
    assert!(strip_colour(&wide)
        .lines()
        .any(|l| l.chars().count() > 60 && !l.contains('…')));

    // NO_COLOR: the same layout without colour.
    let no_colour = on_terminal(&[("COLUMNS", "60"), ("NO_COLOR", "1")], &args);
    assert!(!no_colour.contains('\x1b'), "{no_colour:?}");
    assert_eq!(no_colour, plain);

    // Piped: nothing cut, nothing coloured, whatever COLUMNS says.
    let out = Command::new(BIN)
        .args(args)
        .env("COLUMNS", "60")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let piped = String::from_utf8_lossy(&out.stdout);
    assert!(!piped.contains('\x1b') && !piped.contains('…'), "{piped}");
    assert!(piped.lines().any(|l| l.chars().count() > 60), "{piped}");

    // --json on a terminal: one document, no colour.
    let doc = on_terminal(&[("COLUMNS", "60")], &["--config", c, "--json", "health"]);
    assert!(!doc.contains('\x1b'));
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["status"], "warning");
}
