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
    for w in &r.warnings {
        ctx.note(&format!("warning: {w}"));
    }
    let code = if r.ok() { exit::OK } else { exit::CORRUPT };
    let mut human = format!(
        "checked {} snapshots, {} archives, {} blobs; read {} archives ({})\n",
        r.snapshots,
        r.archives,
        r.blobs,
        r.archives_read,
        bytes(r.bytes_read)
    );
    if r.ok() {
        human.push_str("no errors were found\n");
    } else {
        for e in &r.errors {
            human.push_str(&format!("error: {e}\n"));
        }
        for d in &r.damaged_archives {
            human.push_str(&format!("damaged archive: {d}\n"));
        }
        for f in &r.affected_files {
            human.push_str(&format!("affected file: {f}\n"));
        }
    }
    let mut doc = serde_json::to_value(&r)?;
    doc["ok"] = serde_json::Value::Bool(r.ok());
    Ok(Outcome::new(doc, human, code))
}
