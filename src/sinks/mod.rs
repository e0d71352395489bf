//! Sinks: where finished items go. The registry slice `SINKS` and the `Sink` traits.
//!
//! A `SinkSpec` is the validated `[[output]]` table; `open` creates the file(s) when the run
//! starts (never during `lai check`). A `Sink` is driven by the runtime's single writer thread,
//! so sinks need no locking; the writer flushes them whenever its queue runs dry, and a flush
//! puts the bytes on disk (`sync_data`) before the ledger commits the items, so a crash or a
//! power cut loses at most the items still in flight.
//!
//! A write that fails because of the item (a name the file system refuses, a field an npy
//! matrix cannot take) is an `item_error`: the item fails alone, and the outputs that already
//! took it `undo` their write. Any other write error (a closed pipe, a full disk) ends the run.
//!
//! Every write says where the item went (`Place`): a byte range of a file the sink appends to
//! (`AppendFile`), or a file of the item's own. The ledger keeps those places, so a rerun can
//! cut a file back to its last committed length (a torn record after `kill -9`), drop the
//! records of items that are processed again, and merge shards record by record.

pub mod csv;
pub mod jsonl;
pub mod npy;
pub mod subtitles;
pub mod text;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::config::ComponentKind;
use crate::pipeline::item::{Item, Provenance};
use std::sync::Arc;

/// What `open` needs to know about the run.
pub struct OpenContext {
    /// The run's output folder, substituted for `{out}` in paths.
    pub out_dir: PathBuf,
    /// What every record says about how it was made.
    pub provenance: Arc<Provenance>,
    /// Files a previous run left, with the length and header length the ledger committed:
    /// these are continued instead of created.
    pub resume: HashMap<PathBuf, Committed>,
}

/// How much of an appended file is known good, per the ledger.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Committed {
    pub len: u64,
    /// Bytes before the first record (a CSV header row, the npy header).
    pub header: u64,
}

impl OpenContext {
    /// Resolves a path template like "{out}/records.jsonl".
    pub fn resolve(&self, template: &str) -> PathBuf {
        PathBuf::from(template.replace("{out}", &self.out_dir.to_string_lossy()))
    }
}

pub trait SinkSpec: Send + Sync {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>>;
    /// The files or folders `open` would write, known before anything is opened, so the run
    /// can refuse an input that is one of them.
    fn writes(&self, ctx: &OpenContext) -> Vec<PathBuf>;
}

pub trait Sink: Send {
    /// Writes one item, adding where it went to `places`.
    ///
    /// # Errors
    /// An `item_error` (then nothing of the item was written) or an error of the output itself.
    fn write(&mut self, item: &Item, places: &mut Vec<Place>) -> io::Result<()>;
    /// Takes back the last item written, because a later output failed for it: no output may
    /// hold a record of a failed item.
    fn undo(&mut self) -> io::Result<()>;
    /// Writes everything buffered and puts it on disk: the ledger commits the items next.
    fn flush(&mut self) -> io::Result<()>;
    /// Where it writes, for the run report: a path or "stdout".
    fn target(&self) -> String;
    /// The files it appends to, with their length and header length so far.
    fn appended(&self) -> Vec<(PathBuf, Committed)> {
        Vec::new()
    }
}

/// Where one item's output went.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub path: PathBuf,
    /// `(offset, length)` of its record in a file shared by all items; `None` for a file of
    /// its own (a transcript's SRT).
    pub range: Option<(u64, u64)>,
    /// The length of a file of its own, so a resume can tell that it was emptied.
    pub own_len: Option<u64>,
}

impl Place {
    /// A file of the item's own, `len` bytes long.
    pub fn own(path: PathBuf, len: u64) -> Place {
        Place {
            path,
            range: None,
            own_len: Some(len),
        }
    }
}

/// Why a write failed because of the item, not the output: the item fails, the run goes on.
#[derive(Debug)]
struct ItemError(String);

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ItemError {}

/// A write error that is this item's failure (see the module doc). `why` names the file or
/// field and never holds item content.
pub fn item_error(why: String) -> io::Error {
    io::Error::other(ItemError(why))
}

/// True for an error made by `item_error`.
pub fn is_item_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ItemError>())
}

/// Every output kind, selected by `[[output]] kind = "..."`.
pub static SINKS: &[ComponentKind<dyn SinkSpec>] = &[
    jsonl::KIND,
    csv::KIND,
    npy::KIND,
    text::KIND,
    subtitles::SRT,
    subtitles::VTT,
];

/// Creates the parent folder of a file about to be written.
pub fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", parent.display()))?;
    }
    Ok(())
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

/// Brings a file's own header in line with its length after the ledger cut or joined its
/// records (resume, compaction, merge): an npy matrix declares its row count.
pub fn refit(path: &Path) -> anyhow::Result<()> {
    let mut magic = [0u8; 6];
    let is_npy = File::open(path)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"\x93NUMPY";
    if is_npy {
        npy::fix_header(path)?;
    }
    Ok(())
}
