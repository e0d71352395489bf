//! The `npy` output: one float32 matrix (NumPy `.npy`, one row per item) and a row-to-id file.
//!
//! For large corpora, where JSON numbers would be ten times the size. The header is rewritten
//! with the row count at every flush, so the file is a valid matrix of every row written so far
//! (`numpy.load(path, mmap_mode="r")`). The ids file has one JSON string per line, row order.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::append::AppendFile;
use crate::component::{Committed, OpenContext, Place, Sink, SinkSpec};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

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
        let mut matrix = AppendFile::open(ctx, &path)?;
        let width = if matrix.is_new() {
            matrix.write_all(&header(0, None))?;
            matrix.end_header();
            None
        } else {
            width(&path)?
        };
        let rows = match width {
            Some(w) => (matrix.len() - HEADER_LEN as u64) / (4 * w as u64),
            None => 0,
        };
        Ok(Box::new(NpySink {
            matrix,
            ids: AppendFile::open(ctx, &ids_path)?,
            field: self.field.clone(),
            rows,
            width,
            last: (0, 0, width),
        }))
    }

    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf> {
        let path = ctx.resolve(&self.path);
        let ids = match &self.ids {
            Some(ids) => ctx.resolve(ids),
            None => path.with_extension("ids.txt"),
        };
        vec![path, ids]
    }
}

struct NpySink {
    matrix: AppendFile,
    ids: AppendFile,
    field: String,
    rows: u64,
    width: Option<usize>,
    /// Before the last row: both files' lengths and the width, for `undo`.
    last: (u64, u64, Option<usize>),
}

/// The npy header for a `rows` x `width` float32 matrix, padded to `HEADER_LEN` bytes.
fn header(rows: u64, width: Option<usize>) -> Vec<u8> {
    let shape = match width {
        Some(w) => format!("({rows}, {w})"),
        None => "(0, 0)".to_string(),
    };
    let mut dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}").into_bytes();
    let prefix = 10; // magic (6), version (2), header length (2)
    dict.resize(HEADER_LEN - prefix - 1, b' ');
    dict.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&dict);
    bytes
}

/// The row width an npy file written by lai declares (`None` while it has no rows).
fn width(path: &Path) -> anyhow::Result<Option<usize>> {
    let mut head = vec![0u8; HEADER_LEN];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("cannot read the header of {}", path.display()))?;
    let text = String::from_utf8_lossy(&head);
    let shape = text
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .with_context(|| {
            format!(
                "{} is not an npy file written by lai; move it away",
                path.display()
            )
        })?;
    let w: usize = shape
        .split(',')
        .nth(1)
        .and_then(|w| w.trim().parse().ok())
        .with_context(|| format!("{}: unreadable npy shape ({shape})", path.display()))?;
    Ok((w > 0).then_some(w))
}

/// The npy format's `Repair`: rewrites the header of an npy file whose rows were cut or joined
/// by the ledger (resume, merge), so its shape matches its length again. Other files are left
/// alone.
pub fn repair(path: &Path) -> anyhow::Result<()> {
    let mut magic = [0u8; 6];
    let is_npy = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"\x93NUMPY";
    if !is_npy {
        return Ok(());
    }
    let width = width(path)?;
    let len = std::fs::metadata(path)?.len();
    let rows = width.map_or(0, |w| (len - HEADER_LEN as u64) / (4 * w as u64));
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(&header(rows, width))?;
    Ok(())
}

impl Sink for NpySink {
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()> {
        let Some(Value::Array(values)) = item.fields.get(&self.field) else {
            return Err(crate::component::item_error(format!(
                "it has no list field `{}` for the npy output {}; set the output's `field`",
                self.field,
                self.matrix.path().display()
            )));
        };
        if self.width.is_some_and(|w| w != values.len()) {
            return Err(crate::component::item_error(format!(
                "`{}` has {} numbers, earlier rows of {} have {}; an npy matrix needs equal rows",
                self.field,
                values.len(),
                self.matrix.path().display(),
                self.width.unwrap_or_default()
            )));
        }
        self.last = (self.matrix.len(), self.ids.len(), self.width);
        self.width = Some(values.len());
        let start = self.matrix.len();
        for v in values {
            let x = v.as_f64().unwrap_or(f64::NAN) as f32;
            self.matrix.write_all(&x.to_le_bytes())?;
        }
        places.push(self.matrix.place_since(start));
        let start = self.ids.len();
        serde_json::to_writer(&mut self.ids, &item.id)?;
        self.ids.write_all(b"\n")?;
        places.push(self.ids.place_since(start));
        self.rows += 1;
        Ok(())
    }

    fn undo(&mut self) -> io::Result<()> {
        let (matrix, ids, width) = self.last;
        self.matrix.cut(matrix)?;
        self.ids.cut(ids)?;
        self.width = width;
        self.rows -= 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.matrix.overwrite(0, &header(self.rows, self.width))?;
        self.matrix.flush()?;
        self.ids.flush()
    }

    fn target(&self) -> String {
        self.matrix.path().display().to_string()
    }

    fn appended(&self) -> Vec<(PathBuf, Committed)> {
        vec![self.matrix.committed(), self.ids.committed()]
    }
}
