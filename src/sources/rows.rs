//! CSV, TSV and Parquet files as records: one item per row, its fields named by the header row
//! (the schema's columns for Parquet).
//!
//! Every column becomes a string field of the item, except the `text_columns`, which are joined
//! (one per line) into the text field instead, so that a stage such as `redact` covers them. Rows are read one at a time through the `csv` crate, so memory is bounded
//! by the longest row (`max_line_bytes`, counted while reading, as for JSONL lines). A row with
//! the wrong number of fields or with bytes that are not UTF-8 becomes a failed item naming its
//! line; a header the rows cannot be named by (empty, duplicate names, a missing text column)
//! or a file that cannot be read to its end fails as one item, and the run goes on. Rows are
//! known by their first line (the csv crate's count: after blank lines, which it skips, a row
//! is numbered from the first blank one).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::jsonl::BOM;
use crate::component::Wanted;
use crate::item::Item;

/// How rows are turned into items.
#[derive(Clone)]
pub struct RowReader {
    pub id_field: String,
    pub text_field: String,
    /// Columns joined, one per line, into `text_field`; empty: none.
    pub text_columns: Vec<String>,
    pub max_row_bytes: usize,
}

/// Whether a file is a Parquet table.
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Rows per batch read from a Parquet file: memory holds one batch, and one row group of the
/// file's pages at most.
const PARQUET_BATCH: usize = 256;

/// Whether a file is read as rows, and its field delimiter.
pub fn delimiter(path: &Path) -> Option<u8> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "csv" => Some(b','),
        "tsv" | "tab" => Some(b'\t'),
        _ => None,
    }
}

/// A reader that fails once more than `max` bytes were read since the count was last reset:
/// the csv crate holds a whole row in memory, so this bounds what one row can take.
struct Bounded<R> {
    inner: R,
    since_reset: Rc<Cell<usize>>,
    max: usize,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.since_reset.get() > self.max {
            return Err(io::Error::other(TOO_LONG));
        }
        let n = self.inner.read(buf)?;
        self.since_reset.set(self.since_reset.get() + n);
        Ok(n)
    }
}

const TOO_LONG: &str = "row longer than max_line_bytes";

impl RowReader {
    /// Emits one item per row of the file at `path`; rows without an id are known as
    /// `ID:LINE`, origins are `ORIGIN:LINE`. Returns false if `emit` asked to stop.
    pub fn read_file(
        &self,
        path: &Path,
        delimiter: u8,
        (id, origin): (&str, &str),
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> bool {
        let fail = |reason: String, emit: &mut dyn FnMut(Item) -> bool| {
            !wanted(id) || emit(Item::failed(id.into(), origin.into(), b"", reason))
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return fail(format!("cannot open file: {e}"), emit),
        };
        let since_reset = Rc::new(Cell::new(0));
        let bounded = Bounded {
            inner: BufReader::with_capacity(256 * 1024, file),
            since_reset: Rc::clone(&since_reset),
            // Room for the csv crate's own buffer beyond the row.
            max: self.max_row_bytes.saturating_add(64 * 1024),
        };
        let mut rows = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(bounded);
        let mut record = csv::ByteRecord::new();
        let header = match rows.read_byte_record(&mut record) {
            Ok(true) => match self.header(&record) {
                Ok(h) => h,
                Err(why) => return fail(why, emit),
            },
            Ok(false) => return fail("the file is empty: it has no header row".into(), emit),
            Err(e) => return fail(format!("cannot read the header row: {e}"), emit),
        };
        loop {
            since_reset.set(0);
            let line = rows.position().line();
            match rows.read_byte_record(&mut record) {
                Ok(false) => return true,
                Ok(true) => {}
                Err(e) => {
                    let reason = if e.to_string().contains(TOO_LONG) {
                        format!(
                            "the row at line {line} is longer than max_line_bytes ({}): most likely a double quote that is never closed; fix it, or raise `max_line_bytes` in [input]; the rows after it were not read",
                            self.max_row_bytes
                        )
                    } else {
                        format!(
                            "cannot read the row at line {line}: {e}; the rows after it were not read"
                        )
                    };
                    let item = Item::failed(
                        format!("{id}:{line}"),
                        format!("{origin}:{line}"),
                        b"",
                        reason,
                    );
                    return !wanted(&item.id) || emit(item);
                }
            }
            let line = record.position().map_or(line, csv::Position::line);
            if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                continue;
            }
            let item = self.row(&header, &record, line, (id, origin));
            if wanted(&item.id) && !emit(item) {
                return false;
            }
        }
    }

    /// The column names, checked: each named, none twice, every text column present.
    fn header(&self, record: &csv::ByteRecord) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = Vec::with_capacity(record.len());
        for (i, raw) in record.iter().enumerate() {
            let raw = if i == 0 {
                raw.strip_prefix(BOM).unwrap_or(raw)
            } else {
                raw
            };
            let name = std::str::from_utf8(raw)
                .map_err(|_| {
                    format!(
                        "column {} of the header row is not UTF-8; save the file as UTF-8",
                        i + 1
                    )
                })?
                .trim()
                .to_string();
            if name.is_empty() {
                return Err(format!(
                    "column {} of the header row has no name; the first row must name every column",
                    i + 1
                ));
            }
            // Names are not quoted back: a file without a header row would put a record's
            // values into the message.
            if let Some(j) = names.iter().position(|n| *n == name) {
                return Err(format!(
                    "columns {} and {} of the header row have the same name; give each column its own name",
                    j + 1,
                    i + 1
                ));
            }
            names.push(name);
        }
        if let Some(missing) = self.text_columns.iter().find(|c| !names.contains(c)) {
            return Err(format!(
                "no column `{missing}` (in `text_columns`) among the {} the header row names; the first row must name the columns",
                names.len()
            ));
        }
        Ok(names)
    }

    /// One row as an item, or a failed item naming the line and what is wrong with it.
    fn row(
        &self,
        header: &[String],
        record: &csv::ByteRecord,
        line: u64,
        (id, origin): (&str, &str),
    ) -> Item {
        let fallback_id = format!("{id}:{line}");
        let origin = format!("{origin}:{line}");
        if record.len() != header.len() {
            return Item::failed(
                fallback_id,
                origin,
                record.as_slice(),
                format!(
                    "line {line}: {} fields, but the header row names {} columns; a field holding the delimiter or a line break must be in double quotes",
                    record.len(),
                    header.len()
                ),
            );
        }
        let mut fields = Map::new();
        for (column, (name, raw)) in header.iter().zip(record.iter()).enumerate() {
            match std::str::from_utf8(raw) {
                Ok(value) => {
                    fields.insert(name.clone(), Value::String(value.to_string()));
                }
                // The column by number: in a file without a header row, its "name" is data.
                Err(e) => {
                    return Item::failed(
                        fallback_id,
                        origin,
                        record.as_slice(),
                        format!(
                            "line {line}, column {}: not UTF-8 (at byte {} of the field); save the file as UTF-8",
                            column + 1,
                            e.valid_up_to()
                        ),
                    );
                }
            }
        }
        self.item(fields, fallback_id, origin)
    }

    /// A row's fields as an item: the text columns joined into the text field, the id from the
    /// id column, else `fallback_id`.
    fn item(&self, mut fields: Map<String, Value>, fallback_id: String, origin: String) -> Item {
        if !self.text_columns.is_empty() {
            // Moved, not copied: a stage that works on the text field (`redact`) then covers
            // every word of these columns, and no unredacted copy rides along in the record.
            let text = self
                .text_columns
                .iter()
                .filter_map(|c| fields.shift_remove(c))
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            fields.insert(self.text_field.clone(), Value::String(text));
        }
        let row_id = match fields.get(&self.id_field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => fallback_id,
        };
        let bytes = serde_json::to_vec(&fields).unwrap_or_default();
        Item::new(row_id, origin, &bytes, fields)
    }

    /// Emits one item per row of the Parquet file at `path`, read a batch at a time; rows
    /// without an id are known as `ID:ROW` (rows count from 1), origins are `ORIGIN:row ROW`.
    /// Returns false if `emit` asked to stop.
    pub fn read_parquet(
        &self,
        path: &Path,
        (id, origin): (&str, &str),
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> bool {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        // The reader's own messages may quote values of the file: only where it stopped is said.
        let unreadable = |row: u64| {
            format!(
                "not a readable Parquet file from row {row} on (damaged, or a column type lai cannot turn into JSON); check it with another Parquet reader, or export it again; the rows after that point were not read"
            )
        };
        let fail = |reason: String, emit: &mut dyn FnMut(Item) -> bool| {
            !wanted(id) || emit(Item::failed(id.into(), origin.into(), b"", reason))
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return fail(format!("cannot open file: {e}"), emit),
        };
        let builder = match ParquetRecordBatchReaderBuilder::try_new(file) {
            Ok(b) => b.with_batch_size(PARQUET_BATCH),
            Err(_) => return fail(unreadable(1), emit),
        };
        let columns: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if let Some(missing) = self.text_columns.iter().find(|c| !columns.contains(c)) {
            return fail(
                format!(
                    "no column `{missing}` (in `text_columns`) among the file's {} columns",
                    columns.len()
                ),
                emit,
            );
        }
        let batches = match builder.build() {
            Ok(b) => b,
            Err(_) => return fail(unreadable(1), emit),
        };
        let mut row = 0u64;
        for batch in batches {
            let mut json = Vec::new();
            let written = batch.map_err(|_| ()).and_then(|batch| {
                let mut writer = arrow_json::LineDelimitedWriter::new(&mut json);
                writer.write(&batch).map_err(|_| ())?;
                writer.finish().map_err(|_| ())
            });
            if written.is_err() {
                let item = Item::failed(
                    format!("{id}:{}", row + 1),
                    format!("{origin}:row {}", row + 1),
                    b"",
                    unreadable(row + 1),
                );
                return !wanted(&item.id) || emit(item);
            }
            for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                row += 1;
                let fields = match serde_json::from_slice(line) {
                    Ok(Value::Object(fields)) => fields,
                    _ => Map::new(),
                };
                let item = self.item(fields, format!("{id}:{row}"), format!("{origin}:row {row}"));
                if wanted(&item.id) && !emit(item) {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, content: &[u8], reader: &RowReader) -> Vec<Item> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let mut items = Vec::new();
        let delimiter = delimiter(&path).unwrap();
        assert!(
            reader.read_file(&path, delimiter, (name, name), &|_| true, &mut |item| {
                items.push(item);
                true
            })
        );
        items
    }

    fn reader(text_columns: &[&str]) -> RowReader {
        RowReader {
            id_field: "id".into(),
            text_field: "text".into(),
            text_columns: text_columns.iter().map(ToString::to_string).collect(),
            max_row_bytes: 1000,
        }
    }

    fn error(item: &Item) -> &str {
        item.failure.as_ref().map_or("", |f| f.reason.as_str())
    }

    // Rows become items with every column as a field and the chosen columns as text; ids come
    // from the id column or the line; quoted fields may hold delimiters, quotes and line breaks;
    // a row with the wrong number of fields or bytes that are not UTF-8 fails alone, by line.
    #[test]
    fn rows_become_items() {
        let csv = b"\xEF\xBB\xBFid,subject,body\nT-1,Printer,\"Jammed, again\"\n,Login,\"line one\nline \"\"two\"\"\"\nT-3,short\nT-4,Bad,caf\xe9\nT-5,VPN,down\n";
        let items = read("tickets.csv", csv, &reader(&["subject", "body"]));
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "T-1",
                "tickets.csv:3",
                "tickets.csv:5",
                "tickets.csv:6",
                "T-5"
            ]
        );
        assert_eq!(items[0].fields["text"], "Printer\nJammed, again");
        assert_eq!(items[0].fields["id"], "T-1");
        assert!(!items[0].fields.contains_key("body"));
        assert_eq!(items[1].fields["text"], "Login\nline one\nline \"two\"");
        assert!(
            error(&items[2]).contains("line 5: 2 fields, but the header row names 3"),
            "{}",
            error(&items[2])
        );
        assert!(
            error(&items[3]).contains("line 6, column 3: not UTF-8"),
            "{}",
            error(&items[3])
        );
        assert_eq!(items[4].origin, "tickets.csv:7");

        let tsv = read(
            "notes.tsv",
            b"text\tdept\nhello there\tcardiology\n",
            &reader(&[]),
        );
        assert_eq!(tsv[0].fields["text"], "hello there");
        assert_eq!(tsv[0].fields["dept"], "cardiology");
    }

    // A header the rows cannot be named by, or a missing text column, fails the file once.
    #[test]
    fn bad_headers_fail_the_file() {
        for (content, want) in [
            (&b""[..], "has no header row"),
            (b"a,,c\n1,2,3\n", "column 2 of the header row has no name"),
            (
                b"a,b,a\n1,2,3\n",
                "columns 1 and 3 of the header row have the same name",
            ),
            (
                b"subject,x\n1,2\n",
                "no column `body` (in `text_columns`) among the 2",
            ),
        ] {
            let items = read("t.csv", content, &reader(&["body"]));
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].id, "t.csv");
            assert!(error(&items[0]).contains(want), "{}", error(&items[0]));
        }
    }

    // An unclosed quote cannot pull the rest of a big file into memory: the row fails once it
    // passes max_line_bytes, naming its line, after the rows before it were read.
    #[test]
    fn runaway_row_is_bounded() {
        let mut csv = b"id,text\n1,fine\n2,\"never closed ".to_vec();
        csv.extend(std::iter::repeat_n(b'x', 200_000));
        let items = read("big.csv", &csv, &reader(&[]));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].fields["text"], "fine");
        assert!(
            error(&items[1]).contains("row at line 3 is longer than max_line_bytes (1000)"),
            "{}",
            error(&items[1])
        );
    }
}
