//! The `jsonl` output: one JSON record per line, to a file or stdout; also the dead letters.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::append::AppendFile;
use crate::component::{Committed, OpenContext, Place, Sink, SinkSpec};
use crate::item::{Item, Provenance};
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use std::sync::Arc;

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "jsonl",
    doc: "JSON-lines records: the item's fields plus `id` and `_lai` provenance.",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "path",
        Ty::Str,
        Default::Value("\"{out}/records.jsonl\""),
        "File to write (`{out}` is the --out folder); \"-\" writes to stdout.",
    ),
    opt(
        "fields",
        Ty::StrList,
        Default::Value("[]"),
        "Fields to keep; empty keeps all. `id` and `_lai` are always written.",
    ),
];

struct JsonlSpec {
    path: String,
    fields: Vec<String>,
}

fn build(options: &Options, _diag: &mut Diagnostics) -> Option<Box<dyn SinkSpec>> {
    Some(Box::new(JsonlSpec {
        path: options.str("path"),
        fields: options.str_list("fields"),
    }))
}

impl SinkSpec for JsonlSpec {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>> {
        let what = Writes::Records(self.fields.clone(), Arc::clone(&ctx.provenance));
        if self.path == "-" {
            return Ok(Box::new(stdout(what)));
        }
        Ok(Box::new(JsonlSink::open(
            ctx,
            &ctx.resolve(&self.path),
            what,
        )?))
    }

    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf> {
        if self.path == "-" {
            return Vec::new();
        }
        vec![ctx.resolve(&self.path)]
    }
}

/// What a JSONL sink writes per item.
pub enum Writes {
    /// The output record, with all fields (empty list) or only those listed.
    Records(Vec<String>, Arc<Provenance>),
    /// The dead-letter record: identity and error, never content.
    Errors,
}

pub struct JsonlSink {
    out: Out,
    what: Writes,
    /// Where the last record started, for `undo`.
    last: u64,
}

enum Out {
    File(AppendFile),
    Stdout(BufWriter<io::Stdout>),
}

impl JsonlSink {
    /// Creates the file at `path`, or continues it where the last run's ledger left it.
    pub fn open(ctx: &OpenContext, path: &Path, what: Writes) -> anyhow::Result<Self> {
        Ok(JsonlSink {
            out: Out::File(AppendFile::open(ctx, path)?),
            what,
            last: 0,
        })
    }
}

/// Records to standard output (filter mode, or `path = "-"`).
pub fn stdout(what: Writes) -> JsonlSink {
    JsonlSink {
        out: Out::Stdout(BufWriter::with_capacity(256 * 1024, io::stdout())),
        what,
        last: 0,
    }
}

/// The dead letters: one error record per failed item, never its content.
pub fn dead_letters(ctx: &OpenContext, path: &Path) -> anyhow::Result<Box<dyn Sink>> {
    Ok(Box::new(JsonlSink::open(ctx, path, Writes::Errors)?))
}

impl Sink for JsonlSink {
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()> {
        let (out, start): (&mut dyn Write, _) = match &mut self.out {
            Out::File(file) => {
                let start = file.len();
                self.last = start;
                (file, Some(start))
            }
            Out::Stdout(out) => (out, None),
        };
        match &self.what {
            Writes::Records(only, run) => {
                serde_json::to_writer(&mut *out, &item.record(only, run))?
            }
            Writes::Errors => serde_json::to_writer(&mut *out, &item.error_record())?,
        }
        out.write_all(b"\n")?;
        if let (Out::File(file), Some(start)) = (&self.out, start) {
            places.push(file.place_since(start));
        }
        Ok(())
    }

    /// A record already sent to stdout cannot be taken back; a file is cut back.
    fn undo(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::File(file) => file.cut(self.last),
            Out::Stdout(_) => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::File(file) => file.flush(),
            Out::Stdout(out) => out.flush(),
        }
    }

    fn target(&self) -> String {
        match &self.out {
            Out::File(file) => file.path().display().to_string(),
            Out::Stdout(_) => "stdout".into(),
        }
    }

    fn appended(&self) -> Vec<(PathBuf, Committed)> {
        match &self.out {
            Out::File(file) => vec![file.committed()],
            Out::Stdout(_) => Vec::new(),
        }
    }
}
