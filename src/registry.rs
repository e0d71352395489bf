//! Every component kind lai knows, by kind: the only place that names them all. `lai stages`,
//! `lai check` and pipeline files learn about a kind from these slices, so adding a stage, a
//! source or an output is one new file and one line here.

use crate::component::{Repair, SinkSpec, Source, Stage};
use crate::options::ComponentKind;
use crate::{sinks, sources, stages};

/// Every source kind, selected by `[input] kind = "..."`.
pub static SOURCES: &[ComponentKind<dyn Source>] = &[sources::files::KIND, sources::jsonl::KIND];

/// Every stage kind, in the order `lai stages` lists them.
pub static STAGES: &[ComponentKind<dyn Stage>] = &[
    stages::transcribe::KIND,
    stages::llm::KIND,
    stages::embed::KIND,
    stages::classify::KIND,
    stages::redact::KIND,
];

/// Every output kind, selected by `[[output]] kind = "..."`.
pub static SINKS: &[ComponentKind<dyn SinkSpec>] = &[
    sinks::jsonl::KIND,
    sinks::csv::KIND,
    sinks::npy::KIND,
    sinks::text::KIND,
    sinks::subtitles::SRT,
    sinks::subtitles::VTT,
];

/// The output formats that repair their own files after the ledger cut or joined records.
pub static REPAIRS: &[Repair] = &[sinks::npy::repair];
