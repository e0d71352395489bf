//! Thin, safe wrappers over the native runtimes. Each loads a model once (shared by the stage's
//! workers) and hands out per-worker state created on the worker's own thread. Engines never read catalog
//! entries or unverified paths: stages pass them files that `models::ModelStore` has verified.

pub mod llama;
pub mod onnx;
pub mod openai;
pub mod whisper;
