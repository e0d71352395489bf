//! The `npy` output: one float32 matrix (NumPy `.npy`, one row per item) and a row-to-id file.
//!
//! For large corpora, where JSON numbers would be ten times the size. The header is rewritten
//! with the row count at every flush, so the file is a valid matrix of every row written so far
//! (`numpy.load(path, mmap_mode="r")`). The ids file has one JSON string per line, row order.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use anyhow::Context;
use serde_json::Value;

use super::{OpenContext, Sink, SinkSpec, create_parent};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::pipeline::item::Item;

pub const KIND: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "npy",
    doc: "A vector field of every item as rows of a float32 NumPy .npy matrix, plus an ids file (one JSON string per row).",
    options: OPTIONS,
    build,
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "path",
        Ty::Str,
        Default::Value("\"{out}/embeddings.npy\""),
        "Matrix file to write (`{out}` is the --out folder).",
    ),
    opt(
        "ids",
        Ty::Str,
        Default::Unset,
        "Row ids file; default: the path with `.ids.txt` in place of `.npy`.",
    ),
    opt(
        "field",
        Ty::Str,
        Default::Value("\"embedding\""),
        "Field holding a list of numbers; every item's list must have the same length.",
    ),
];

/// Header bytes reserved: room for any row count; NumPy pads headers to 64 bytes.
const HEADER_LEN: usize = 128;

struct NpySpec {
    path: String,
    ids: Option<String>,
    field: String,
}

fn build(options: &Options, _diag: &mut Diagnostics) -> Option<Box<dyn SinkSpec>> {
    Some(Box::new(NpySpec {
        path: options.str("path"),
        ids: options.opt_str("ids"),
        field: options.str("field"),
    }))
}

impl SinkSpec for NpySpec {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>> {
        let path = ctx.resolve(&self.path);
        let ids_path = match &self.ids {
            Some(ids) => ctx.resolve(ids),
            None => path.with_extension("ids.txt"),
        };
        create_parent(&path)?;
        create_parent(&ids_path)?;
        let create = |p: &std::path::Path| {
            File::create(p).with_context(|| format!("cannot create {}", p.display()))
        };
        let mut sink = NpySink {
            matrix: BufWriter::with_capacity(1 << 20, create(&path)?),
            ids: BufWriter::new(create(&ids_path)?),
            field: self.field.clone(),
            rows: 0,
            width: None,
            target: path.display().to_string(),
        };
        sink.write_header()?;
        Ok(Box::new(sink))
    }
}

struct NpySink {
    matrix: BufWriter<File>,
    ids: BufWriter<File>,
    field: String,
    rows: u64,
    width: Option<usize>,
    target: String,
}

impl NpySink {
    fn write_header(&mut self) -> io::Result<()> {
        let shape = match self.width {
            Some(w) => format!("({}, {w})", self.rows),
            None => "(0, 0)".to_string(),
        };
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}").into_bytes();
        let prefix = 10; // magic (6), version (2), header length (2)
        header.resize(HEADER_LEN - prefix - 1, b' ');
        header.push(b'\n');
        self.matrix.seek(SeekFrom::Start(0))?;
        self.matrix.write_all(b"\x93NUMPY\x01\x00")?;
        self.matrix
            .write_all(&(header.len() as u16).to_le_bytes())?;
        self.matrix.write_all(&header)?;
        self.matrix.seek(SeekFrom::End(0))?;
        Ok(())
    }
}

impl Sink for NpySink {
    fn write(&mut self, item: &Item) -> io::Result<()> {
        let Some(Value::Array(values)) = item.fields.get(&self.field) else {
            return Err(io::Error::other(format!(
                "item {} has no list field `{}` for the npy output; set its `field`",
                item.id, self.field
            )));
        };
        if *self.width.get_or_insert(values.len()) != values.len() {
            return Err(io::Error::other(format!(
                "item {}: `{}` has {} numbers, earlier rows have {}; an npy matrix needs equal rows",
                item.id,
                self.field,
                values.len(),
                self.width.unwrap_or_default()
            )));
        }
        for v in values {
            let x = v.as_f64().unwrap_or(f64::NAN) as f32;
            self.matrix.write_all(&x.to_le_bytes())?;
        }
        serde_json::to_writer(&mut self.ids, &item.id)?;
        self.ids.write_all(b"\n")?;
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_header()?;
        self.matrix.flush()?;
        self.ids.flush()
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}
