//! A file that grows by whole records: the shared writer of the JSONL, CSV and npy outputs.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::component::{Committed, OpenContext, Place, create_parent};

/// A file that grows by whole records: created empty, or continued at the length the ledger
/// committed (anything after it, a torn or unrecorded record, is cut off first).
pub struct AppendFile {
    out: BufWriter<File>,
    path: PathBuf,
    len: u64,
    header: u64,
    /// Bytes were written since the last `sync_data` (an idle flush costs no disk sync).
    unsynced: bool,
}

impl AppendFile {
    pub fn open(ctx: &OpenContext, path: &Path) -> anyhow::Result<AppendFile> {
        create_parent(path)?;
        let fail =
            |e: io::Error| anyhow::anyhow!("cannot open {} for writing: {e}", path.display());
        let (mut file, committed) = match ctx.resume.get(path) {
            Some(c) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(fail)?;
                file.set_len(c.len).map_err(fail)?;
                (file, *c)
            }
            None => (
                File::create(path).map_err(fail)?,
                Committed { len: 0, header: 0 },
            ),
        };
        file.seek(SeekFrom::End(0)).map_err(fail)?;
        Ok(AppendFile {
            out: BufWriter::with_capacity(256 * 1024, file),
            path: path.to_path_buf(),
            len: committed.len,
            header: committed.header,
            unsynced: false,
        })
    }

    /// True for a file created by this run (it still needs its header).
    pub fn is_new(&self) -> bool {
        self.len == 0
    }

    /// The header a continued file already has (empty for a new file).
    pub fn read_header(&mut self) -> io::Result<Vec<u8>> {
        self.out.flush()?;
        let file = self.out.get_mut();
        let mut header = vec![0; self.header as usize];
        file.seek(SeekFrom::Start(0))?;
        io::Read::read_exact(file, &mut header)?;
        file.seek(SeekFrom::End(0))?;
        Ok(header)
    }

    /// Cuts the file back to `len` bytes (an `undo`, or a header written anew when `len` is 0).
    pub fn cut(&mut self, len: u64) -> io::Result<()> {
        self.out.flush()?;
        let file = self.out.get_mut();
        file.set_len(len)?;
        file.seek(SeekFrom::End(0))?;
        self.len = len;
        self.header = self.header.min(len);
        self.unsynced = true;
        Ok(())
    }

    /// Marks everything written so far as the header.
    pub fn end_header(&mut self) {
        self.header = self.len;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The place of the record written since `start` (a `len()` taken before writing it).
    pub fn place_since(&self, start: u64) -> Place {
        Place {
            path: self.path.clone(),
            range: Some((start, self.len - start)),
            own_len: None,
        }
    }

    /// Overwrites bytes at `offset` (inside the header) without moving the end.
    pub fn overwrite(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.out.flush()?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(bytes)?;
        file.seek(SeekFrom::End(0))?;
        self.unsynced = true;
        Ok(())
    }

    pub fn committed(&self) -> (PathBuf, Committed) {
        let c = Committed {
            len: self.len,
            header: self.header,
        };
        (self.path.clone(), c)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for AppendFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.len += n as u64;
        self.unsynced |= n > 0;
        Ok(n)
    }

    /// Writes the buffer out and, if anything changed since the last flush, puts it on disk.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.unsynced {
            self.out.get_ref().sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }
}
