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

/// A table per item id: `sql`'s rows for it (`?1` is the id).
fn per_item(out_dir: &Path, ids: &[String], sql: &str, headers: &[&str]) -> anyhow::Result<String> {
    let conn = read_only(out_dir)?;
    let mut text = String::new();
    for id in ids {
        text.push_str(&table(&conn, sql, &[id], headers)?);
    }
    Ok(text)
}

/// Every row of the given item ids, oldest first, with the run's pipeline and models and where
/// the output went.
pub fn show_items(out_dir: &Path, ids: &[String]) -> anyhow::Result<String> {
    per_item(
        out_dir,
        ids,
        "SELECT i.id, i.status, CASE i.current WHEN 1 THEN 'current' ELSE 'replaced' END,
                i.finished_at, i.run_id, r.pipeline, r.models, coalesce(i.error, i.same_as),
                (SELECT group_concat(o.path || coalesce('@' || o.offset, ''), ' ')
                 FROM outputs o WHERE o.item = i.item)
         FROM items i JOIN runs r ON r.run_id = i.run_id WHERE i.id = ?1 ORDER BY i.item",
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
    )
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

/// What each run cost, oldest first, and the total over them. `items CPU-s` adds up the
/// item rows of the run: with lai's own CPU-seconds it makes the run's.
pub fn show_cost(out_dir: &Path) -> anyhow::Result<String> {
    let conn = read_only(out_dir)?;
    let j = |path: &str| format!("json_extract(r.cost, '$.{path}')");
    let columns = format!(
        "round({cpu}, 3), round({own}, 3), round((SELECT sum(i.cpu_s) FROM items i WHERE i.run_id = r.run_id), 3),
         round({gpu}, 3), round({energy} / 3.6e6, 6), round({money}, 6), round({cloud}, 6)",
        cpu = j("total.cpu_s"),
        own = j("lai_own.cpu_s"),
        gpu = j("total.gpu_s"),
        energy = j("total.energy_j"),
        money = j("total.money"),
        cloud = j("total.cloud"),
    );
    let sums = format!(
        "round(sum({cpu}), 3), round(sum({own}), 3), round((SELECT sum(cpu_s) FROM items), 3),
         round(sum({gpu}), 3), round(sum({energy}) / 3.6e6, 6), round(sum({money}), 6), round(sum({cloud}), 6)",
        cpu = j("total.cpu_s"),
        own = j("lai_own.cpu_s"),
        gpu = j("total.gpu_s"),
        energy = j("total.energy_j"),
        money = j("total.money"),
        cloud = j("total.cloud"),
    );
    table(
        &conn,
        &format!(
            "SELECT * FROM (
               SELECT r.run_id, r.started_at, coalesce(r.items_read - r.items_skipped, 0), {columns},
                      {currency}, {method}
               FROM runs r ORDER BY r.rowid)
             UNION ALL
             SELECT 'total', count(*) || ' runs', sum(coalesce(r.items_read - r.items_skipped, 0)), {sums},
                    CASE WHEN count(DISTINCT {currency}) > 1 THEN 'mixed' ELSE max({currency}) END, ''
             FROM runs r",
            currency = j("currency"),
            method = j("energy_method"),
        ),
        &[],
        &[
            "run",
            "started",
            "items",
            "CPU-s",
            "lai own CPU-s",
            "items CPU-s",
            "GPU-s",
            "kWh",
            "money",
            "cloud",
            "currency",
            "energy",
        ],
    )
}

/// What each row of the given item ids cost: its seconds at its run's rates.
pub fn show_item_cost(out_dir: &Path, ids: &[String]) -> anyhow::Result<String> {
    per_item(
        out_dir,
        ids,
        "SELECT i.id, i.run_id, CASE i.current WHEN 1 THEN 'current' ELSE 'replaced' END,
                round(i.cpu_s, 4), round(i.gpu_s, 4),
                round(i.cpu_s * json_extract(r.cost, '$.joules_per_cpu_s')
                      + i.gpu_s * json_extract(r.cost, '$.joules_per_gpu_s'), 3),
                round(i.cpu_s * json_extract(r.cost, '$.money_per_cpu_s')
                      + i.gpu_s * json_extract(r.cost, '$.money_per_gpu_s'), 8),
                json_extract(r.cost, '$.currency')
         FROM items i JOIN runs r ON r.run_id = i.run_id WHERE i.id = ?1 ORDER BY i.item",
        &[
            "id", "run", "result", "CPU-s", "GPU-s", "energy J", "money", "currency",
        ],
    )
}
