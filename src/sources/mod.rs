//! Source kinds: files and folders (`files`), JSONL records (`jsonl`), and the id guard every
//! source shares (`unique`). The contract a source fulfils is `component::Source`; the registry
//! slice that names the kinds is `registry::SOURCES`.

pub mod files;
pub mod jsonl;
mod unique;
