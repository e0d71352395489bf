//! File surgery for the ledger: cutting a file back to its committed length, copying record
//! ranges, and the output formats' own repairs afterwards. No file format is known here.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;

use crate::component::Repair;

/// Runs every format's repair on `path` (each leaves files of other formats alone).
pub(super) fn repair(path: &Path, repairs: &[Repair]) -> anyhow::Result<()> {
    repairs.iter().try_for_each(|r| r(path))
}

pub(super) fn truncate(path: &Path, len: u64, repairs: &[Repair]) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot repair {}", path.display()))?;
    file.set_len(len)
        .with_context(|| format!("cannot repair {}", path.display()))?;
    repair(path, repairs)
}

/// Copies `length` bytes at `offset` of `from` to `to`: one record, or a header.
pub(super) fn copy_range(
    from: &mut File,
    to: &mut impl Write,
    offset: u64,
    length: u64,
) -> io::Result<u64> {
    from.seek(SeekFrom::Start(offset))?;
    let copied = io::copy(&mut from.take(length), to)?;
    if copied != length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file ends inside a record at byte {offset}"),
        ));
    }
    Ok(copied)
}
