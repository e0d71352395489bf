//! The `csv` output: chosen fields as columns, one row per item (via the `csv` crate).

use std::io::{self, Write};
use std::path::PathBuf;

use super::{AppendFile, Committed, OpenContext, Place, Sink, SinkSpec};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::pipeline::item::Item;

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "csv",
    doc: "A CSV table with the chosen fields as columns (non-string values as JSON).",
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
        let mut row = Vec::new();
        if file.is_new() {
            row_bytes(&mut row, self.columns.iter())?;
            file.write_all(&row)?;
            file.end_header();
        }
        Ok(Box::new(CsvSink {
            file,
            row,
            columns: self.columns.clone(),
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
        let fields = self
            .columns
            .iter()
            .map(|c| item.field_text(c).unwrap_or_default());
        row_bytes(&mut self.row, fields)?;
        let start = self.file.len();
        self.file.write_all(&self.row)?;
        places.push(self.file.place_since(start));
        Ok(())
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
