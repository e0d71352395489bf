//! Sinks: where finished items go. The registry slice `SINKS` and the `Sink` traits.
//!
//! A `SinkSpec` is the validated `[[output]]` table; `open` creates the file(s) when the run
//! starts (never during `lai check`). A `Sink` is driven by the runtime's single writer thread,
//! so sinks need no locking; the writer flushes them whenever its queue runs dry, so a crash
//! loses at most the items still in flight.

pub mod csv;
pub mod jsonl;
pub mod npy;
pub mod subtitles;
pub mod text;

use std::io;
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
}

impl OpenContext {
    /// Resolves a path template like "{out}/records.jsonl".
    pub fn resolve(&self, template: &str) -> PathBuf {
        PathBuf::from(template.replace("{out}", &self.out_dir.to_string_lossy()))
    }
}

pub trait SinkSpec: Send + Sync {
    fn open(&self, ctx: &OpenContext) -> anyhow::Result<Box<dyn Sink>>;
}

pub trait Sink: Send {
    fn write(&mut self, item: &Item) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Where it writes, for the run report: a path or "stdout".
    fn target(&self) -> String;
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
