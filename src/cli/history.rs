//! `history`: the operation journal as a table or JSON.

use anyhow::Result;
use serde_json::json;

use cachevault::journal;

use super::args::HistoryArgs;
use super::{bytes, exit, table, Ctx, Outcome};

pub fn history(ctx: &Ctx, a: &HistoryArgs) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    let mut entries = journal::read(&repo)?;
    if a.this_root {
        let cfg = ctx.config.as_ref().ok_or_else(|| {
            anyhow::anyhow!("--this-root needs --config FILE: the root is the config's")
        })?;
        let root = cfg.root_text();
        entries.retain(|e| e.root.as_ref().is_none_or(|r| *r == root));
    }
    if let Some(op) = &a.operation {
        entries.retain(|e| &e.operation == op);
    }
    if let Some(n) = a.last {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let b = if e.bytes < 0 {
                format!("-{}", bytes(e.bytes.unsigned_abs()))
            } else if e.bytes > 0 {
                format!("+{}", bytes(e.bytes as u64))
            } else {
                String::new()
            };
            vec![
                e.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.operation.clone(),
                e.root.clone().unwrap_or_default(),
                format!("{:.2}s", e.seconds),
                e.result.clone(),
                b,
                e.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let human = format!(
        "{}{} operations, oldest first\n",
        table(
            &[
                "Time",
                "Operation",
                "Root",
                "Took",
                "Result",
                "Bytes",
                "Error"
            ],
            &rows
        ),
        entries.len()
    );
    Ok(Outcome::new(
        json!({"operations": entries}),
        human,
        exit::OK,
    ))
}
