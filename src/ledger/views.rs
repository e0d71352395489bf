//! What `lai ledger` shows: the runs, items and failures of an output folder, read-only.

use std::path::Path;

use anyhow::Context;
use rusqlite::Connection;

use super::FILE;

/// Opens a ledger read-only, for `lai ledger` (works while a run writes to it).
fn read_only(out_dir: &Path) -> anyhow::Result<Connection> {
    let path = out_dir.join(FILE);
    Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the run ledger {}", path.display()))
}

/// Rows of a query as aligned text columns under `headers`.
fn table(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    headers: &[&str],
) -> anyhow::Result<String> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(args)?;
    let mut cells: Vec<Vec<String>> = vec![headers.iter().map(|h| h.to_string()).collect()];
    while let Some(r) = rows.next()? {
        let row = (0..headers.len())
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "-".to_string(),
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Real(x) => x.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                })
            })
            .collect::<rusqlite::Result<Vec<String>>>()?;
        cells.push(row);
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// Every run into the folder, oldest first.
pub fn show_runs(out_dir: &Path) -> anyhow::Result<String> {
    let conn = read_only(out_dir)?;
    table(
        &conn,
        "SELECT run_id, started_at, coalesce(finished_at, 'unfinished'), exit_code, items_read,
                items_done, items_failed, items_skipped, shard, name, pipeline, substr(config_sha256, 1, 12), models
         FROM runs ORDER BY rowid",
        &[],
        &["run", "started", "finished", "exit", "read", "done", "failed", "skipped", "shard", "name", "pipeline", "config", "models"],
    )
}

/// Every row of the given item ids, oldest first, with the run's pipeline and models and where
/// the output went.
pub fn show_items(out_dir: &Path, ids: &[String]) -> anyhow::Result<String> {
    let conn = read_only(out_dir)?;
    let mut text = String::new();
    for id in ids {
        text.push_str(&table(
            &conn,
            "SELECT i.id, i.status, CASE i.current WHEN 1 THEN 'current' ELSE 'replaced' END,
                    i.finished_at, i.run_id, r.pipeline, r.models, coalesce(i.error, i.same_as),
                    (SELECT group_concat(o.path || coalesce('@' || o.offset, ''), ' ')
                     FROM outputs o WHERE o.item = i.item)
             FROM items i JOIN runs r ON r.run_id = i.run_id WHERE i.id = ?1 ORDER BY i.item",
            &[id],
            &[
                "id",
                "status",
                "result",
                "finished",
                "run",
                "pipeline",
                "models",
                "error/same as",
                "outputs",
            ],
        )?);
    }
    Ok(text)
}

/// Items whose latest result is a failure.
pub fn show_failed(out_dir: &Path) -> anyhow::Result<String> {
    let conn = read_only(out_dir)?;
    table(
        &conn,
        "SELECT id, origin, stage, error, run_id FROM items
         WHERE current = 1 AND status = 'failed' ORDER BY item",
        &[],
        &["id", "origin", "stage", "error", "run"],
    )
}
