//! The `sqlite` output: a table with a row per item, keyed by its id (via rusqlite).
//!
//! Rows are upserted by id, so an item processed again (a changed input, a retried failure, a
//! rerun after `kill -9`) replaces its row, and an item that fails on reprocessing loses it,
//! as its record leaves the other outputs. Each flush commits the rows written since the last
//! one (synchronous, before the ledger commits the items), so a crash leaves whole rows only,
//! and a row written but not yet in the ledger is simply replaced when its item is processed
//! again. Columns are the chosen fields, or every field the records have (a new field adds a
//! column); text and numbers are stored as they are, lists and objects (a vector) as JSON text.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use rusqlite::{Connection, params_from_iter, types::Value as Sql};
use serde_json::Value;

use crate::component::{OpenContext, Place, Sink, SinkSpec, create_parent};
use crate::item::{Item, Provenance};
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "sqlite",
    doc: "An SQLite table, one row per item upserted by `id` (reprocessing replaces it): the chosen fields as columns, or every field; lists and objects as JSON text, `_lai` provenance as JSON.",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "path",
        Ty::Str,
        Default::Value("\"{out}/records.sqlite\""),
        "Database file to write (`{out}` is the --out folder).",
    ),
    opt(
        "table",
        Ty::Str,
        Default::Value("\"records\""),
        "Table to write; created if missing, given new columns as fields appear.",
    ),
    opt(
        "columns",
        Ty::StrList,
        Default::Value("[]"),
        "Fields to write as columns; empty writes every field. `id` and `_lai` are always written.",
    ),
];

struct SqliteSpec {
    path: String,
    table: String,
    columns: Vec<String>,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn SinkSpec>> {
    let table = options.str("table");
    if table.is_empty() || table.starts_with("sqlite_") {
        diag.error(
            &options.span_of("table"),
            format!(
                "`table` in {} must be a name of your own (not empty, not sqlite_...)",
                options.context
            ),
        );
        return None;
    }
    Some(Box::new(SqliteSpec {
        path: options.str("path"),
        table,
        columns: options.str_list("columns"),
    }))
}

/// The columns of `table` (quoted), by their name in lower case (SQLite's names ignore case).
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<HashMap<String, String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    names.map(|n| n.map(|n| (n.to_lowercase(), n))).collect()
}

/// A name quoted for SQL: `"a ""b"""`.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl SinkSpec for SqliteSpec {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>> {
        let path = ctx.resolve(&self.path);
        create_parent(&path)?;
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the SQLite output {}", path.display()))?;
        let table = quoted(&self.table);
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY NOT NULL, _lai TEXT);"
        ))
        .with_context(|| format!("{} is not a usable SQLite database", path.display()))?;
        let keyed: bool = conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'id' AND pk = 1",
            [&self.table],
            |r| r.get(0),
        )?;
        let known = columns(&conn, &table)?;
        if !keyed {
            bail!(
                "{}: table `{}` exists without `id` as its primary key, so rows cannot be replaced by id; give the sqlite output another `table` or `path`",
                path.display(),
                self.table
            );
        }
        let mut sink = SqliteSink {
            conn,
            path,
            table,
            columns: self.columns.clone(),
            known,
            provenance: Arc::clone(&ctx.provenance),
            open: false,
            item_pending: false,
        };
        for column in &self.columns {
            sink.add_column(column)
                .map_err(|e| anyhow::anyhow!("{}: {e}", sink.path.display()))?;
        }
        Ok(Box::new(sink))
    }

    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf> {
        let path = ctx.resolve(&self.path);
        let mut files = vec![path.clone()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            files.push(name.into());
        }
        files
    }
}

struct SqliteSink {
    conn: Connection,
    path: PathBuf,
    /// The table's name, quoted.
    table: String,
    /// The fields chosen; empty: all.
    columns: Vec<String>,
    /// The table's columns, by their name in lower case.
    known: HashMap<String, String>,
    provenance: Arc<Provenance>,
    /// A transaction is open (rows written since the last flush).
    open: bool,
    /// The last item's savepoint is open, for `undo`.
    item_pending: bool,
}

fn sql_error(e: rusqlite::Error) -> io::Error {
    io::Error::other(e)
}

/// An error writing one item's row: the item's, unless the database itself failed (a full
/// disk, an I/O error, a file that cannot be written), which ends the run.
fn row_error(e: rusqlite::Error, path: &std::path::Path) -> io::Error {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(
            DiskFull | SystemIoFailure | CannotOpen | ReadOnly | DatabaseCorrupt | NotADatabase,
        ) => sql_error(e),
        // Neither SQLite's message nor the field's name is quoted: columns are named by the
        // item's fields, and a CSV without a header row names them by its first row's values.
        Some(code) => crate::component::item_error(format!(
            "the row cannot be written to {}: SQLite refused it ({code:?})",
            path.display()
        )),
        None => crate::component::item_error(format!(
            "the row cannot be written to {}: {}",
            path.display(),
            match e {
                rusqlite::Error::InvalidColumnName(why) => why,
                _ => "a value SQLite cannot store".into(),
            }
        )),
    }
}

impl SqliteSink {
    /// The table's column for field `name`, added if the table has none.
    fn add_column(&mut self, name: &str) -> rusqlite::Result<String> {
        if let Some(column) = self.known.get(&name.to_lowercase()) {
            return Ok(column.clone());
        }
        self.conn.execute_batch(&format!(
            "ALTER TABLE {} ADD COLUMN {}",
            self.table,
            quoted(name)
        ))?;
        self.known.insert(name.to_lowercase(), name.to_string());
        Ok(name.to_string())
    }

    fn begin(&mut self) -> rusqlite::Result<()> {
        if self.item_pending {
            self.conn.execute_batch("RELEASE item")?;
            self.item_pending = false;
        }
        if !self.open {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.open = true;
        }
        Ok(())
    }

    fn upsert(&mut self, item: &Item) -> rusqlite::Result<()> {
        let record = serde_json::to_value(item.record(&self.columns, &self.provenance))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let Value::Object(record) = record else {
            unreachable!("a record is a JSON object")
        };
        let mut names: Vec<String> = Vec::with_capacity(record.len());
        let mut values = Vec::with_capacity(record.len());
        for (name, value) in record {
            let column = quoted(&self.add_column(&name)?);
            let key = column == "\"id\"";
            if key && names.contains(&column) {
                // `ID` beside `id`: the key is the item's id either way.
                continue;
            }
            if names.contains(&column) {
                return Err(rusqlite::Error::InvalidColumnName(
                    "two of its fields have the same name but for case (SQLite's column names ignore case); rename one, or choose `columns`".into(),
                ));
            }
            // The row's key is the item's id, whichever field the input named it by.
            let value = if key {
                Value::String(item.id.clone())
            } else {
                value
            };
            values.push(match value {
                Value::Null => Sql::Null,
                Value::Bool(b) => Sql::Integer(i64::from(b)),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Sql::Integer(i),
                    None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => Sql::Text(s),
                other => Sql::Text(other.to_string()),
            });
            names.push(column);
        }
        let marks = vec!["?"; names.len()].join(", ");
        // Columns this record lacks are emptied, so a replaced row keeps nothing of the old one.
        let mut sets: Vec<String> = self
            .known
            .values()
            .filter(|c| c.as_str() != "id")
            .map(|c| {
                let q = quoted(c);
                if names.contains(&q) {
                    format!("{q} = excluded.{q}")
                } else {
                    format!("{q} = NULL")
                }
            })
            .collect();
        sets.sort();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {}",
            self.table,
            names.join(", "),
            sets.join(", ")
        );
        self.conn
            .prepare_cached(&sql)?
            .execute(params_from_iter(values))?;
        Ok(())
    }
}

impl Sink for SqliteSink {
    fn write(&mut self, item: &Item, _places: &mut Vec<Place>) -> io::Result<()> {
        self.begin().map_err(sql_error)?;
        self.conn
            .execute_batch("SAVEPOINT item")
            .map_err(sql_error)?;
        self.item_pending = true;
        self.upsert(item).map_err(|e| row_error(e, &self.path))
    }

    fn undo(&mut self) -> io::Result<()> {
        if self.item_pending {
            self.conn
                .execute_batch("ROLLBACK TO item; RELEASE item")
                .map_err(sql_error)?;
            self.item_pending = false;
            // Columns the item added went with it.
            self.known = columns(&self.conn, &self.table).map_err(sql_error)?;
        }
        Ok(())
    }

    /// A failed item's earlier row goes, as its record leaves the other outputs.
    fn failed(&mut self, item: &Item) -> io::Result<()> {
        self.begin().map_err(sql_error)?;
        self.conn
            .execute(
                &format!("DELETE FROM {} WHERE id = ?1", self.table),
                [&item.id],
            )
            .map_err(sql_error)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.item_pending {
            self.conn.execute_batch("RELEASE item").map_err(sql_error)?;
            self.item_pending = false;
        }
        if self.open {
            self.conn.execute_batch("COMMIT").map_err(sql_error)?;
            self.open = false;
        }
        Ok(())
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}
