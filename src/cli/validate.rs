//! `validate`.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use cachevault::cache::validate::{self, ValidateOptions};

use super::args::ValidateArgs;
use super::{bytes, exit, table, Ctx, Outcome};

pub fn validate(ctx: &Ctx, a: &ValidateArgs) -> Result<Outcome> {
    let cfg = ctx.config.as_ref().ok_or_else(|| {
        anyhow!(
            "validate needs --config FILE (or CACHEVAULT_CONFIG): the cache root, the cache types and their schemas come from it"
        )
    })?;
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
    let mut doc = serde_json::to_value(&r)?;
    doc["ok"] = serde_json::Value::Bool(r.ok());
    doc["seconds"] = serde_json::json!(seconds);
    doc["invalid_count"] = serde_json::json!(r.invalid.len());
    let mut human = String::new();
    if !r.invalid.is_empty() {
        let rows: Vec<Vec<String>> = r
            .invalid
            .iter()
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
