//! `check`.

use anyhow::{anyhow, Result};

use cachevault::check::{self, ReadData};
use cachevault::LockKind;

use super::args::CheckArgs;
use super::{bytes, exit, Ctx, Outcome};

pub fn check(ctx: &Ctx, a: &CheckArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let read = match (&a.read_data, &a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) => {
            let pct: f64 = p
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|v: &f64| *v > 0.0 && *v <= 100.0)
                .ok_or_else(|| {
                    anyhow!("--read-data-subset {p:?}: expected a percentage in (0, 100], e.g. 10%")
                })?;
            ReadData::Subset(pct)
        }
        (false, None) => ReadData::None,
    };
    let _lock = ctx.lock(&repo, LockKind::Shared, "check")?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let r = check::check(&repo, read, seed)?;
    let code = if r.ok() { exit::OK } else { exit::CORRUPT };
    let mut human = format!(
        "checked {} snapshots, {} archives, {} blobs; read {} archives ({})\n",
        r.snapshots,
        r.archives,
        r.blobs,
        r.archives_read,
        bytes(r.bytes_read)
    );
    for p in &r.problems {
        let level = if p.error { "error" } else { "warning" };
        if !p.error {
            ctx.note(&format!("warning: {}", p.message));
        }
        human.push_str(&format!("{level}: {}\n", p.message));
        if !p.snapshots.is_empty() {
            human.push_str(&format!(
                "  affects snapshot(s) {}{}\n",
                p.snapshots
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if p.snapshots.len() > 10 { ", ..." } else { "" }
            ));
        }
        for f in &p.examples {
            human.push_str(&format!("  e.g. {f}\n"));
        }
        if p.files > p.examples.len() {
            human.push_str(&format!(
                "  ... {} file version(s) in all (--json lists them in affected_files)\n",
                p.files
            ));
        }
        if !p.advice.is_empty() {
            human.push_str(&format!("  what to do: {}\n", p.advice));
        }
    }
    if r.ok() {
        human.push_str("no errors were found\n");
    }
    let mut doc = serde_json::to_value(&r)?;
    doc["ok"] = serde_json::Value::Bool(r.ok());
    Ok(Outcome::new(doc, human, code))
}
