//! The `csv` output: chosen fields as columns, one row per item (via the `csv` crate).
//!
//! Text from items is data, never a formula: a string cell that a spreadsheet would evaluate
//! (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is written with a `'` in
//! front, as OWASP advises against CSV injection. Numbers are written as they are.
//!
//! A file continued from an earlier run must have this run's header; a file whose header lists
//! other columns is refused (its rows have the old columns), unless it holds no rows, when its
//! header is written anew.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::bail;
use serde_json::Value;

use super::append::AppendFile;
use crate::component::{Committed, OpenContext, Place, Sink, SinkSpec};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "csv",
    doc: "A CSV table with the chosen fields as columns (non-string values as JSON); text a spreadsheet would run as a formula (starting with = + - @, tab, CR) gets a leading '.",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "path",
        Ty::Str,
        Default::Value("\"{out}/records.csv\""),
        "File to write (`{out}` is the --out folder).",
    ),
    opt(
        "columns",
        Ty::StrList,
        Default::Required,
        "Fields to write as columns, in order, e.g. [\"id\", \"text\"].",
    ),
];

struct CsvSpec {
    path: String,
    columns: Vec<String>,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn SinkSpec>> {
    let columns = options.str_list("columns");
    if columns.is_empty() {
        diag.error(
            &options.span_of("columns"),
            format!(
                "`columns` in {} must name at least one field",
                options.context
            ),
        );
        return None;
    }
    Some(Box::new(CsvSpec {
        path: options.str("path"),
        columns,
    }))
}

impl SinkSpec for CsvSpec {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>> {
        let path = ctx.resolve(&self.path);
        let mut file = AppendFile::open(ctx, &path)?;
        let mut header = Vec::new();
        row_bytes(&mut header, self.columns.iter())?;
        if !file.is_new() {
            let found = file.read_header().map_err(|e| {
                anyhow::anyhow!("cannot read the header of {}: {e}", path.display())
            })?;
            if found != header {
                if file.len() > found.len() as u64 {
                    bail!(
                        "{} has the columns {} but this pipeline writes {}; its rows cannot change columns. Rerun with --fresh to write every item again, or move the file away, or give the csv output another `path`",
                        path.display(),
                        String::from_utf8_lossy(&found).trim_end(),
                        String::from_utf8_lossy(&header).trim_end()
                    );
                }
                // No rows yet: the header is written anew.
                file.cut(0)
                    .map_err(|e| anyhow::anyhow!("cannot rewrite {}: {e}", path.display()))?;
            }
        }
        if file.is_new() {
            file.write_all(&header)?;
            file.end_header();
        }
        Ok(Box::new(CsvSink {
            file,
            row: header,
            columns: self.columns.clone(),
            last: 0,
        }))
    }

    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf> {
        vec![ctx.resolve(&self.path)]
    }
}

struct CsvSink {
    file: AppendFile,
    /// One row's bytes, reused.
    row: Vec<u8>,
    columns: Vec<String>,
    /// Where the last row started, for `undo`.
    last: u64,
}

/// A field as a cell: text that a spreadsheet would evaluate gets a leading `'`.
fn cell(item: &Item, column: &str) -> String {
    let text = item.field_text(column).unwrap_or_default();
    let is_text = !matches!(
        item.fields.get(column),
        Some(Value::Number(_) | Value::Bool(_) | Value::Null)
    );
    if is_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

/// Writes one CSV row (quoted as needed, `\n`-terminated) into `buf`.
fn row_bytes<T: AsRef<[u8]>>(buf: &mut Vec<u8>, fields: impl Iterator<Item = T>) -> io::Result<()> {
    buf.clear();
    let mut writer = csv::Writer::from_writer(buf);
    writer.write_record(fields).map_err(io::Error::other)?;
    writer.flush()
}

impl Sink for CsvSink {
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()> {
        let fields = self.columns.iter().map(|c| cell(item, c));
        row_bytes(&mut self.row, fields)?;
        let start = self.file.len();
        self.last = start;
        self.file.write_all(&self.row)?;
        places.push(self.file.place_since(start));
        Ok(())
    }

    fn undo(&mut self) -> io::Result<()> {
        self.file.cut(self.last)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn target(&self) -> String {
        self.file.path().display().to_string()
    }

    fn appended(&self) -> Vec<(PathBuf, Committed)> {
        vec![self.file.committed()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    // Text that a spreadsheet would run as a formula is quoted with `'`; numbers stay numbers.
    #[test]
    fn formula_cells_are_escaped() {
        let mut fields = Map::new();
        for (k, v) in [
            ("eq", json!("=HYPERLINK(\"http://x\")")),
            ("plus", json!("+1")),
            ("minus", json!("-2+3")),
            ("at", json!("@SUM(A1)")),
            ("tab", json!("\t=1")),
            ("cr", json!("\r=1")),
            ("plain", json!("hello = world")),
            ("number", json!(-3.5)),
        ] {
            fields.insert(k.into(), v);
        }
        let item = Item::new("a".into(), "a".into(), b"", fields);
        for column in ["eq", "plus", "minus", "at", "tab", "cr"] {
            assert!(cell(&item, column).starts_with('\''), "{column}");
        }
        assert_eq!(cell(&item, "plain"), "hello = world");
        assert_eq!(cell(&item, "number"), "-3.5");
    }
}
