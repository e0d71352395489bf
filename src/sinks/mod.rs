//! Output kinds, one file each, and the registry slice `SINKS` that names them (`[[output]]
//! kind = "..."`). What every sink fulfils is `component::Sink`; `append` is the file that grows
//! by whole records and can be continued after a crash, which most of them write.
//!
//! Adding an output kind is one file here and its module and `KIND` below.

mod append;
pub mod csv;
pub mod jsonl;
pub mod npy;
pub mod parquet;
pub mod sqlite;
pub mod subtitles;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use crate::component::{OpenContext, Repair, Sink, SinkSpec};
use crate::item::Provenance;
use crate::options::ComponentKind;

/// Every output kind, selected by `[[output]] kind = "..."`.
pub static SINKS: &[ComponentKind<dyn SinkSpec>] = &[
    jsonl::KIND,
    csv::KIND,
    npy::KIND,
    sqlite::KIND,
    parquet::KIND,
    text::KIND,
    subtitles::SRT,
    subtitles::VTT,
];

/// The output formats that repair their own files after the ledger cut or joined records.
pub static REPAIRS: &[Repair] = &[npy::repair, parquet::repair];

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
