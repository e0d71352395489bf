//! The `csv` output: chosen fields as columns, one row per item (via the `csv` crate).

use std::fs::File;
use std::io::{self, BufWriter};

use anyhow::Context;

use super::{OpenContext, Sink, SinkSpec, create_parent};
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
        create_parent(&path)?;
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = csv::Writer::from_writer(BufWriter::with_capacity(256 * 1024, file));
        writer.write_record(&self.columns)?;
        Ok(Box::new(CsvSink {
            writer,
            columns: self.columns.clone(),
            target: path.display().to_string(),
        }))
    }
}

struct CsvSink {
    writer: csv::Writer<BufWriter<File>>,
    columns: Vec<String>,
    target: String,
}

impl Sink for CsvSink {
    fn write(&mut self, item: &Item) -> io::Result<()> {
        let row = self
            .columns
            .iter()
            .map(|c| item.field_text(c).unwrap_or_default());
        self.writer.write_record(row).map_err(io::Error::other)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}
