//! The `jsonl` output: one JSON record per line, to a file or stdout; also the dead letters.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use anyhow::Context;

use super::{OpenContext, Sink, SinkSpec, create_parent};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::pipeline::item::{Item, Provenance};
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
        let path = ctx.resolve(&self.path).display().to_string();
        Ok(Box::new(JsonlSink::create(&path, what)?))
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
    out: BufWriter<Box<dyn Write + Send>>,
    target: String,
    what: Writes,
}

impl JsonlSink {
    /// Creates (truncates) the file at `path`.
    pub fn create(path: &str, what: Writes) -> anyhow::Result<Self> {
        let path_buf = std::path::PathBuf::from(path);
        create_parent(&path_buf)?;
        let file = File::create(&path_buf).with_context(|| format!("cannot create {path}"))?;
        Ok(JsonlSink {
            out: BufWriter::with_capacity(256 * 1024, Box::new(file)),
            target: path.to_string(),
            what,
        })
    }
}

/// Records to standard output (filter mode, or `path = "-"`).
pub fn stdout(what: Writes) -> JsonlSink {
    JsonlSink {
        out: BufWriter::with_capacity(256 * 1024, Box::new(io::stdout())),
        target: "stdout".into(),
        what,
    }
}

/// The dead letters: one error record per failed item, never its content.
pub fn dead_letters(path: &str) -> anyhow::Result<Box<dyn Sink>> {
    Ok(Box::new(JsonlSink::create(path, Writes::Errors)?))
}

impl Sink for JsonlSink {
    fn write(&mut self, item: &Item) -> io::Result<()> {
        match &self.what {
            Writes::Records(only, run) => {
                serde_json::to_writer(&mut self.out, &item.record(only, run))?
            }
            Writes::Errors => serde_json::to_writer(&mut self.out, &item.error_record())?,
        }
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}
