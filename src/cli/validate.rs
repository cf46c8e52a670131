//! `validate`.

use std::time::Instant;

use anyhow::{Context, Result};

use cachevault::cache::validate::{self, ValidateOptions};

use super::args::ValidateArgs;
use super::{bytes, exit, table, Ctx, Outcome};

pub fn validate(ctx: &Ctx, a: &ValidateArgs) -> Result<Outcome> {
    let cfg = ctx.need_config(
        "validate",
        "the cache root, the cache types and their schemas come from it",
    )?;
    let opts = ValidateOptions {
        types: a.types.clone(),
    };
    let started = Instant::now();
    let bars = ctx.progress();
    let r = validate::validate(cfg, &opts, &bars)
        .with_context(|| format!("validating {}", cfg.root.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    for e in &r.errors {
        ctx.note(&format!("not readable, not validated: {e}"));
    }
    let code = if r.ok() { exit::OK } else { exit::PARTIAL };
    let max_share = cfg.raw.cache.repair.max_invalid_share;
    let suspected = r.mass_changes(max_share);
    let mut doc = serde_json::to_value(&r)?;
    doc["ok"] = serde_json::Value::Bool(r.ok());
    doc["seconds"] = serde_json::json!(seconds);
    doc["invalid_count"] = serde_json::json!(r.invalid.len());
    doc["suspected_changes"] = serde_json::json!(suspected);
    let mut human = String::new();
    if !r.invalid.is_empty() {
        let shown = if ctx.cli.verbose > 0 { usize::MAX } else { 50 };
        let rows: Vec<Vec<String>> = r
            .invalid
            .iter()
            .take(shown)
            .map(|f| {
                vec![
                    f.path.display(),
                    f.cache_type
                        .clone()
                        .unwrap_or_else(|| "(state file)".into()),
                    f.reason.to_string(),
                    f.detail.clone(),
                ]
            })
            .collect();
        human.push_str(&table(&["Path", "Type", "Reason", "Detail"], &rows));
        if r.invalid.len() > rows.len() {
            human.push_str(&format!(
                "... and {} more (-v lists all, --json has them all)\n",
                r.invalid.len() - rows.len()
            ));
        }
        human.push('\n');
    }
    let rows: Vec<Vec<String>> = r
        .by_type
        .iter()
        .filter(|(_, t)| t.checked > 0)
        .map(|(name, t)| {
            vec![
                name.clone(),
                t.checked.to_string(),
                t.invalid.to_string(),
                if t.checked > 0 {
                    format!("{:.1}%", t.invalid as f64 * 100.0 / t.checked as f64)
                } else {
                    "-".into()
                },
                t.reasons
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    human.push_str(&table(
        &["Type", "Checked", "Invalid", "Share", "Reasons"],
        &rows,
    ));
    for w in &suspected {
        human.push_str(&format!("warning: {w}\n"));
    }
    human.push_str(&format!(
        "checked {} files ({}) in {:.2}s: {}{}\n",
        r.checked,
        bytes(r.bytes),
        seconds,
        if r.invalid.is_empty() {
            "all valid".to_string()
        } else {
            format!("{} invalid", r.invalid.len())
        },
        if r.errors.is_empty() {
            String::new()
        } else {
            format!(", {} could not be read", r.errors.len())
        }
    ));
    Ok(Outcome::new(doc, human, code))
}
