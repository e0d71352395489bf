//! Thin, safe wrappers over the native runtimes. Each loads a model once (shared by the stage's
//! workers) and hands out per-worker state created on the worker's own thread. Engines never read catalog
//! entries or unverified paths: stages pass them files that `models::ModelStore` has verified.

pub mod llama;
pub mod onnx;
pub mod openai;
pub mod whisper;

/// Held by each unit test that runs a model, so that such tests run one at a time: ggml's
/// threads spin, and two engines busy on two cores slow each other down many times over (two
/// llama tests side by side took six minutes instead of six seconds).
#[cfg(test)]
pub(crate) fn one_engine_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding it leaves nothing to repair.
    ENGINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
