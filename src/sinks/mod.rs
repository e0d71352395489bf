//! Output kinds (JSONL, CSV, npy, text files, subtitles) and what they share: `AppendFile`, a
//! file that grows by whole records and can be continued after a crash. The contract a sink
//! fulfils is `component::Sink`; the registry slice that names the kinds is `registry::SINKS`.

pub mod csv;
pub mod jsonl;
pub mod npy;
pub mod subtitles;
pub mod text;

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::component::{Committed, OpenContext, Place, Sink, SinkSpec, create_parent};
use crate::item::Provenance;

/// A run's outputs, opened: the pipeline's sinks and the dead letters of failed items.
pub struct Outputs {
    pub sinks: Vec<Box<dyn Sink>>,
    pub dead_letters: Option<Box<dyn Sink>>,
}

impl Outputs {
    /// A filter's only output: records as JSONL on stdout, nothing written to files.
    pub fn stdout(provenance: Arc<Provenance>) -> Outputs {
        let records = jsonl::Writes::Records(Vec::new(), provenance);
        Outputs {
            sinks: vec![Box::new(jsonl::stdout(records))],
            dead_letters: None,
        }
    }

    /// Opens every `[[output]]` and the dead letters at `dead_letter` (a path template).
    pub fn open(
        specs: &[Box<dyn SinkSpec>],
        dead_letter: &str,
        ctx: &OpenContext,
    ) -> anyhow::Result<Outputs> {
        let sinks = specs
            .iter()
            .map(|o| o.open(ctx))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dead = ctx.resolve(dead_letter);
        Ok(Outputs {
            sinks,
            dead_letters: Some(jsonl::dead_letters(ctx, &dead)?),
        })
    }

    /// The files and folders these outputs would write, known before anything is opened.
    pub fn planned(
        specs: &[Box<dyn SinkSpec>],
        dead_letter: &str,
        ctx: &OpenContext,
    ) -> Vec<PathBuf> {
        let mut writes = vec![ctx.out_dir.clone(), ctx.resolve(dead_letter)];
        writes.extend(specs.iter().flat_map(|o| o.writes(ctx)));
        writes
    }

    /// Where each output writes (a path or "stdout"), and where the dead letters go.
    pub fn targets(&self) -> (Vec<String>, Option<String>) {
        let targets = self.sinks.iter().map(|o| o.target()).collect();
        (targets, self.dead_letters.as_ref().map(|d| d.target()))
    }
}

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
