//! What a sink is: where finished items go.
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

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::item::{Item, Provenance};

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
    /// A context for a run that continues no file of an earlier run.
    pub fn new(out_dir: PathBuf, provenance: Arc<Provenance>) -> OpenContext {
        OpenContext {
            out_dir,
            provenance,
            resume: HashMap::new(),
        }
    }

    /// Resolves a path template like "{out}/records.jsonl".
    pub fn resolve(&self, template: &str) -> PathBuf {
        resolve(template, &self.out_dir)
    }
}

/// Resolves a path template like "{out}/records.jsonl" against the run's output folder.
pub fn resolve(template: &str, out_dir: &Path) -> PathBuf {
    template.replace("{out}", &out_dir.to_string_lossy()).into()
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
    /// An item failed: an output that keeps one row per id (and so cannot wait for the ledger
    /// to drop an earlier result) removes the item's earlier row.
    fn failed(&mut self, _item: &Item) -> io::Result<()> {
        Ok(())
    }
    /// Writes everything buffered and puts it on disk: the ledger commits the items next.
    fn flush(&mut self) -> io::Result<()>;
    /// The run wrote its last item and the ledger committed it: a format written whole (a
    /// Parquet table) is written now.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
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

/// A file format's own repair after the ledger cut or joined its records (resume, compaction,
/// merge), such as an npy matrix's header that declares its row count. Each format that needs
/// one recognises its own files and leaves the others alone; `sinks::REPAIRS` lists them.
pub type Repair = fn(&Path) -> anyhow::Result<()>;

/// Creates the parent folder of a file about to be written.
pub fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", parent.display()))?;
    }
    Ok(())
}
