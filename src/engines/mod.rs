//! Thin, safe wrappers over the native runtimes. Each loads a model once (shared by `Arc`) and
//! hands out per-worker state created on the worker's own thread. Engines never read catalog
//! entries or unverified paths: stages pass them files that `models::ModelStore` has verified.

// The llm stage (issue 5) is the llama engine's first user; until then only its tests drive it.
#[allow(dead_code)]
pub mod llama;
pub mod whisper;
