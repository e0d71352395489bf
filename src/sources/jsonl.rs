//! The `jsonl` source: one item per line of JSON-lines files or standard input.
//!
//! Lines are read with a hard length limit so one runaway record cannot exhaust memory; blank
//! lines are skipped; a malformed line, or one that is not a JSON object, becomes a failed item
//! naming its line number, and so does a file that cannot be opened or read to its end. The
//! files source reuses `read_records` for `.jsonl` files.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::unique::{Place, Unique, display};
use crate::component::{Input, Source, Wanted};
use crate::item::{Item, json_type};
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn Source> = ComponentKind {
    name: "jsonl",
    doc: "JSON-lines records, one item per line, from files or `-` (stdin).",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[ID_FIELD, MAX_LINE_BYTES];

pub const ID_FIELD: OptionSpec = opt(
    "id_field",
    Ty::Str,
    Default::Value("\"id\""),
    "Record field used as the item id; records without it get `<file>:<line>`.",
);

pub const MAX_LINE_BYTES: OptionSpec = opt(
    "max_line_bytes",
    Ty::Int {
        min: 1,
        max: i64::MAX,
    },
    Default::Value("268435456"),
    "Longest accepted line (a JSONL line, a CSV/TSV row); a longer JSONL line fails as an item, a longer row fails and ends its file (memory stays bounded).",
);

/// How JSONL records are turned into items; shared with the files source.
#[derive(Clone)]
pub struct RecordReader {
    pub id_field: String,
    pub max_line_bytes: usize,
}

impl RecordReader {
    pub fn from_options(options: &Options) -> Self {
        RecordReader {
            id_field: options.str("id_field"),
            max_line_bytes: options.usize("max_line_bytes"),
        }
    }

    /// Emits one item per non-blank line of `reader`. Records without an id are known as
    /// `ID_NAME:LINE` (the stable name: a file's path below its input), and origins say
    /// `ORIGIN_NAME:LINE` (the path as given, "stdin"). A UTF-8 byte order mark before the first
    /// record is skipped. Returns false if `emit` asked to stop.
    pub fn read_records(
        &self,
        reader: &mut dyn BufRead,
        (id_name, origin_name): (&str, &str),
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> io::Result<bool> {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            number += 1;
            let origin = format!("{origin_name}:{number}");
            let fallback_id = format!("{id_name}:{number}");
            let item = match read_line(reader, &mut line, self.max_line_bytes)? {
                Line::End => return Ok(true),
                Line::Complete => {
                    if number == 1 && line.starts_with(BOM) {
                        line.drain(..BOM.len());
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    self.parse(&line, fallback_id, origin)
                }
                Line::TooLong { bytes, sha256 } => {
                    let mut item = Item::failed(
                        fallback_id,
                        origin,
                        b"",
                        format!(
                            "line {number} is {bytes} bytes, longer than max_line_bytes ({}); raise `max_line_bytes` in [input] or split the record",
                            self.max_line_bytes
                        ),
                    );
                    item.input_sha256 = sha256;
                    item
                }
            };
            if wanted(&item.id) && !emit(item) {
                return Ok(false);
            }
        }
    }

    fn parse(&self, line: &[u8], fallback_id: String, origin: String) -> Item {
        let line_no = origin.rsplit(':').next().unwrap_or("?").to_string();
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(fields)) => {
                let id = match fields.get(&self.id_field) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => fallback_id,
                };
                Item::new(id, origin, line, fields)
            }
            Ok(other) => Item::failed(
                fallback_id,
                origin,
                line,
                format!(
                    "line {line_no}: expected a JSON object like {{\"text\": \"...\"}}, found {}",
                    json_type(&other)
                ),
            ),
            Err(e) => Item::failed(
                fallback_id,
                origin,
                line,
                format!(
                    "line {line_no}: not valid JSON ({} at column {}); fix or remove the line",
                    describe(&e),
                    e.column()
                ),
            ),
        }
    }
}

/// The UTF-8 byte order mark some Windows tools write at the start of a file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

enum Line {
    End,
    Complete,
    /// The line exceeded the limit; it was consumed and hashed but not kept.
    TooLong {
        bytes: u64,
        sha256: String,
    },
}

/// Reads one line (without its `\n` / `\r\n`) into `buf`, keeping at most `max` bytes.
fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut overflow: Option<(u64, Sha256)> = None;
    let mut saw_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        saw_any = true;
        let (chunk, done) = match memchr(available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        match &mut overflow {
            Some((bytes, hasher)) => {
                *bytes += chunk.len() as u64;
                hasher.update(chunk);
            }
            None if buf.len() + chunk.len() > max => {
                let mut hasher = Sha256::new();
                hasher.update(&*buf);
                hasher.update(chunk);
                overflow = Some(((buf.len() + chunk.len()) as u64, hasher));
                buf.clear();
                buf.shrink_to(64 * 1024);
            }
            None => buf.extend_from_slice(chunk),
        }
        let consumed = done.unwrap_or(available.len());
        reader.consume(consumed);
        if done.is_some() {
            break;
        }
    }
    if let Some((bytes, hasher)) = overflow {
        return Ok(Line::TooLong {
            bytes,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    if !saw_any {
        return Ok(Line::End);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Complete)
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

struct Jsonl {
    reader: RecordReader,
}

fn build(options: &Options, _diag: &mut Diagnostics) -> Option<Box<dyn Source>> {
    Some(Box::new(Jsonl {
        reader: RecordReader::from_options(options),
    }))
}

impl Source for Jsonl {
    fn read(
        &self,
        inputs: &[Input],
        wanted: Wanted,
        emit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()> {
        let mut unique = Unique::default();
        for input in inputs {
            let going = match input {
                Input::Stdin => {
                    let place = unique.place(Place::Lines("stdin".into()));
                    read_stdin(&self.reader, wanted, &mut |item| {
                        emit(unique.admit(item, place))
                    })?
                }
                Input::Path(path, _) => {
                    let origin = display(path);
                    let id = path.file_name().map_or_else(
                        || origin.clone(),
                        |name| name.to_string_lossy().into_owned(),
                    );
                    let same_file = std::fs::metadata(path)
                        .is_ok_and(|m| !unique.first_visit(crate::component::fence::key(&m)));
                    if same_file {
                        continue;
                    }
                    let place = unique.place(Place::Lines(origin.clone()));
                    read_file(&self.reader, path, (&id, &origin), wanted, &mut |item| {
                        emit(unique.admit(item, place))
                    })
                }
            };
            if !going {
                break;
            }
        }
        Ok(())
    }
}

/// Reads the records of one JSONL file. A file that cannot be opened or read to its end
/// becomes a failed item (known by the file's id) and the run goes on; false if `emit` asked
/// to stop.
pub fn read_file(
    reader: &RecordReader,
    path: &Path,
    (id, origin): (&str, &str),
    wanted: Wanted,
    emit: &mut dyn FnMut(Item) -> bool,
) -> bool {
    let result = File::open(path)
        .map_err(|e| format!("cannot open file: {e}"))
        .and_then(|file| {
            let mut buffered = BufReader::with_capacity(256 * 1024, file);
            reader
                .read_records(&mut buffered, (id, origin), wanted, emit)
                .map_err(|e| format!("cannot read file to its end: {e}; the records after that point were not read"))
        });
    match result {
        Ok(going) => going,
        // Its records may belong to other shards; the file's own failure goes with its id.
        Err(reason) if wanted(id) => emit(Item::failed(id.into(), origin.into(), b"", reason)),
        Err(_) => true,
    }
}

/// Reads JSONL records from standard input.
pub fn read_stdin(
    reader: &RecordReader,
    wanted: Wanted,
    emit: &mut dyn FnMut(Item) -> bool,
) -> anyhow::Result<bool> {
    let mut stdin = BufReader::with_capacity(256 * 1024, io::stdin());
    reader
        .read_records(&mut stdin, ("stdin", "stdin"), wanted, emit)
        .context("reading standard input")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], max: usize) -> Vec<Item> {
        let reader = RecordReader {
            id_field: "id".into(),
            max_line_bytes: max,
        };
        let mut items = Vec::new();
        reader
            .read_records(&mut &text[..], ("t", "t"), &|_| true, &mut |i| {
                items.push(i);
                true
            })
            .unwrap();
        items
    }

    // Good lines become items; bad ones become failed items naming their line; blanks are skipped.
    #[test]
    fn bad_lines_are_items() {
        let items = read(
            b"{\"id\":7,\"text\":\"a\"}\n\n{oops\n[1]\n{\"text\":\"b\"}\r\n",
            1024,
        );
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].id, "7");
        assert!(
            items[1]
                .failure
                .as_ref()
                .unwrap()
                .reason
                .starts_with("line 3: not valid JSON")
        );
        assert!(
            items[2]
                .failure
                .as_ref()
                .unwrap()
                .reason
                .contains("found an array")
        );
        assert_eq!(items[3].id, "t:5");
        assert!(items[3].failure.is_none());
    }

    // An over-long line fails alone, and the next line is still read.
    #[test]
    fn long_line_is_bounded() {
        let mut text = vec![b'x'; 5000];
        text.extend_from_slice(b"\n{\"text\":\"ok\"}");
        let items = read(&text, 100);
        assert!(
            items[0]
                .failure
                .as_ref()
                .unwrap()
                .reason
                .contains("longer than max_line_bytes")
        );
        assert!(items[1].failure.is_none());
    }
}
