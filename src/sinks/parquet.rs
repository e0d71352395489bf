//! The `parquet` output: one row per item, columns inferred from the records (via the `parquet`
//! and `arrow` crates).
//!
//! A Parquet file is written whole (its footer indexes every row group), so it cannot grow by
//! appended records the way the ledger keeps outputs exactly once. The sink therefore appends
//! each record to a record log beside it, `PATH.rows.jsonl`, which the ledger treats like any
//! JSONL output (cut back after `kill -9`, replaced records dropped, shards joined), and at the
//! end of every run, and whenever the ledger repairs the log, writes the Parquet file anew from
//! it: to a temporary name, then renamed over the old one. So the Parquet file is always whole
//! and holds each item once, as of the last run that ended.
//!
//! Columns are the records' fields (or the chosen ones), typed by arrow's JSON schema inference
//! over the whole log: text, integers, floats, booleans, lists and structs (`_lai`). A list of
//! numbers of one length in every record (an embedding) becomes a fixed-size list of float32.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::jsonl::{JsonlSink, Writes};
use crate::component::{Committed, OpenContext, Place, Sink, SinkSpec};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "parquet",
    doc: "A Parquet table, one row per item, columns inferred from the records (vectors as fixed-size float32 lists); rebuilt at the end of each run from its record log PATH.rows.jsonl, so it holds each item once.",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "path",
        Ty::Str,
        Default::Value("\"{out}/records.parquet\""),
        "File to write (`{out}` is the --out folder); its record log is PATH.rows.jsonl.",
    ),
    opt(
        "columns",
        Ty::StrList,
        Default::Value("[]"),
        "Fields to write as columns; empty writes every field. `id` and `_lai` are always written.",
    ),
];

/// What the record log's name adds to the Parquet file's.
const LOG: &str = ".rows.jsonl";
/// Rows per record batch read from the log (and so per row group written, at most).
const BATCH_ROWS: usize = 4096;

struct ParquetSpec {
    path: String,
    columns: Vec<String>,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn SinkSpec>> {
    // The ledger knows the record log by the name `.parquet.rows.jsonl` when it repairs it.
    if !options.str("path").ends_with(".parquet") {
        diag.error(
            &options.span_of("path"),
            format!("`path` in {} must end in `.parquet`", options.context),
        );
        return None;
    }
    Some(Box::new(ParquetSpec {
        path: options.str("path"),
        columns: options.str_list("columns"),
    }))
}

fn log_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(LOG);
    name.into()
}

fn temp_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lai-tmp");
    name.into()
}

impl SinkSpec for ParquetSpec {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>> {
        let path = ctx.resolve(&self.path);
        let records = Writes::Records(self.columns.clone(), Arc::clone(&ctx.provenance));
        let log = JsonlSink::open(ctx, &log_of(&path), records)?;
        Ok(Box::new(ParquetSink { log, path }))
    }

    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf> {
        let path = ctx.resolve(&self.path);
        vec![log_of(&path), temp_of(&path), path]
    }
}

struct ParquetSink {
    log: JsonlSink,
    path: PathBuf,
}

impl Sink for ParquetSink {
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()> {
        self.log.write(item, places)
    }

    fn undo(&mut self) -> io::Result<()> {
        self.log.undo()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        write_table(&log_of(&self.path), &self.path).map_err(|e| io::Error::other(format!("{e:#}")))
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn appended(&self) -> Vec<(PathBuf, Committed)> {
        self.log.appended()
    }
}

/// The ledger's repair after it cut or joined a record log: the table is written anew.
pub fn repair(path: &Path) -> anyhow::Result<()> {
    let Some(table) = path
        .to_str()
        .and_then(|p| p.strip_suffix(LOG))
        .filter(|t| t.ends_with(".parquet"))
    else {
        return Ok(());
    };
    write_table(path, Path::new(table))
}

/// Writes the Parquet file `table` from the record log `log`, through a temporary file.
fn write_table(log: &Path, table: &Path) -> anyhow::Result<()> {
    let cannot = || {
        format!(
            "cannot write {} from its record log {}",
            table.display(),
            log.display()
        )
    };
    let schema = schema(log).with_context(cannot)?;
    let temp = temp_of(table);
    let written = (|| -> anyhow::Result<()> {
        let out = File::create(&temp)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))?;
        let reader = arrow_json::ReaderBuilder::new(Arc::clone(&schema))
            .with_batch_size(BATCH_ROWS)
            .with_coerce_primitive(true)
            .build(BufReader::new(File::open(log)?))?;
        for batch in reader {
            // Arrow's message may quote a record's value: only where is said.
            let batch = batch.map_err(|_| {
                anyhow!(
                    "a record's fields do not fit the table's columns (a field that is text in one record and a list or object in another); choose `columns`"
                )
            })?;
            writer.write(&batch)?;
        }
        writer.close()?;
        File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, table)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(cannot)
}

/// The table's schema: arrow's inference over every record, with lists of numbers that have one
/// length in every record made fixed-size float32 lists.
fn schema(log: &Path) -> anyhow::Result<Arc<Schema>> {
    let mut reader = BufReader::new(File::open(log)?);
    let (inferred, _) = arrow_json::reader::infer_json_schema_from_seekable(&mut reader, None)
        .map_err(|_| {
            anyhow!(
                "the records' fields have no common type (a field that is text in one record and a list or object in another); choose `columns`"
            )
        })?;
    reader.rewind()?;
    // Each top-level list of numbers, and its one length so far (None: lengths differ).
    let mut lengths: Vec<(String, Option<usize>)> = inferred
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::List(item) if item.data_type().is_numeric()))
        .map(|f| (f.name().clone(), None))
        .collect();
    let mut first = true;
    let mut line = String::new();
    while !lengths.is_empty() && reader.read_line(&mut line)? > 0 {
        if let Ok(serde_json::Value::Object(record)) = serde_json::from_str(&line) {
            lengths.retain_mut(|(name, len)| {
                let n = record
                    .get(name.as_str())
                    .and_then(|v| v.as_array())
                    .map(Vec::len);
                match (first, n) {
                    (true, Some(n)) if n > 0 => {
                        *len = Some(n);
                        true
                    }
                    (false, Some(n)) => *len == Some(n),
                    _ => false,
                }
            });
            first = false;
        }
        line.clear();
    }
    if inferred.fields().is_empty() {
        // No records yet: a table of ids with no rows.
        return Ok(Arc::new(Schema::new(vec![Field::new(
            "id",
            DataType::Utf8,
            true,
        )])));
    }
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(
            |f| match lengths.iter().find(|(name, _)| name == f.name()) {
                Some((_, Some(n))) => Field::new(
                    f.name(),
                    DataType::FixedSizeList(
                        Arc::new(Field::new("item", DataType::Float32, true)),
                        *n as i32,
                    ),
                    true,
                ),
                _ => f.as_ref().clone(),
            },
        )
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    // The table holds every record of the log once, typed: a list of numbers of one length in
    // every record is a fixed-size float32 list, one whose length varies stays a list; a rewrite
    // after the log was cut holds only what is left; the temporary file is gone.
    #[test]
    fn the_table_is_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("t.parquet");
        let log = log_of(&table);
        let lines = [
            r#"{"id":"a","n":1,"v":[0.5,1.0,2.0],"w":[1,2],"_lai":{"origin":"x"}}"#,
            r#"{"id":"b","n":2.5,"v":[3,4,5],"w":[1],"text":"hi"}"#,
        ];
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        repair(&log).unwrap();
        let read = |table: &Path| {
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(File::open(table).unwrap()).unwrap();
            let schema = builder.schema().clone();
            let rows: usize = builder
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum();
            (schema, rows)
        };
        let (schema, rows) = read(&table);
        assert_eq!(rows, 2);
        assert!(
            matches!(schema.field_with_name("v").unwrap().data_type(), DataType::FixedSizeList(f, 3) if f.data_type() == &DataType::Float32),
            "{schema:?}"
        );
        assert!(matches!(
            schema.field_with_name("w").unwrap().data_type(),
            DataType::List(_)
        ));
        assert_eq!(
            schema.field_with_name("n").unwrap().data_type(),
            &DataType::Float64
        );
        assert!(matches!(
            schema.field_with_name("_lai").unwrap().data_type(),
            DataType::Struct(_)
        ));
        std::fs::write(&log, lines[0].to_string() + "\n").unwrap();
        repair(&log).unwrap();
        assert_eq!(read(&table).1, 1);
        assert!(!temp_of(&table).exists());
        // Other files are not the sink's.
        repair(&dir.path().join("x.jsonl")).unwrap();
    }
}
