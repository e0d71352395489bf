//! Source kinds, one file each: files and folders (`files`), JSONL records (`jsonl`); CSV/TSV
//! rows as records (`rows`, read by `files`); the registry slice `SOURCES` that names them
//! (`[input] kind = "..."`); and the id guard every source shares (`unique`). What every source
//! fulfils is `component::Source`.

mod documents;
pub mod files;
pub mod jsonl;
mod ocr;
mod rows;
mod unique;

use crate::component::Source;
use crate::options::ComponentKind;

/// Every source kind, selected by `[input] kind = "..."`.
pub static SOURCES: &[ComponentKind<dyn Source>] = &[files::KIND, jsonl::KIND];
