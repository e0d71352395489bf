//! Whisper through whisper-rs (whisper.cpp): a thin, safe layer over one loaded model.
//!
//! `WhisperModel` is loaded once per run from a verified catalog file and shared by `Arc`; each
//! worker calls `transcriber` on its own thread to get a `Transcriber` that owns a whisper state
//! (the per-thread decoding buffers). Nothing here decodes audio files: it takes 16 kHz mono f32.

use std::path::Path;

use anyhow::{Context, bail};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

/// Whisper's input sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

pub struct WhisperModel {
    ctx: WhisperContext,
}

/// How to transcribe; defaults suit a CPU worker.
#[derive(Clone, Debug)]
pub struct Options {
    /// A language code ("en"), or None to detect it.
    pub language: Option<String>,
    pub threads: usize,
    /// whisper.cpp's Silero VAD model, to skip non-speech.
    pub vad_model: Option<std::path::PathBuf>,
}

/// One transcribed segment, times in seconds.
#[derive(Clone, Debug)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
    pub no_speech_prob: f32,
}

impl WhisperModel {
    /// Loads a ggml Whisper model. The caller has verified the file (see `models::ModelStore`).
    pub fn load(path: &Path) -> anyhow::Result<WhisperModel> {
        // Route whisper.cpp's and ggml's own logging away from stderr (lai reports errors itself).
        whisper_rs::install_logging_hooks();
        let path_str = path
            .to_str()
            .with_context(|| format!("model path {} is not UTF-8", path.display()))?;
        let ctx = WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
            .map_err(|e| {
                anyhow::anyhow!(
                    "whisper.cpp could not load {}: {e}; is it a whisper.cpp ggml model?",
                    path.display()
                )
            })?;
        Ok(WhisperModel { ctx })
    }

    /// A transcriber with its own state; create one per worker thread.
    pub fn transcriber(&self) -> anyhow::Result<Transcriber> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| anyhow::anyhow!("cannot create a whisper state: {e}"))?;
        Ok(Transcriber { state })
    }
}

pub struct Transcriber {
    state: WhisperState,
}

impl Transcriber {
    /// Transcribes 16 kHz mono samples into segments.
    pub fn transcribe(&mut self, audio: &[f32], options: &Options) -> anyhow::Result<Vec<Segment>> {
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(i32::try_from(options.threads.max(1)).unwrap_or(1));
        params.set_language(Some(options.language.as_deref().unwrap_or("auto")));
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        // No "(music)" or "[BLANK_AUDIO]" inventions: silence must give an empty transcript.
        params.set_suppress_nst(true);
        if let Some(vad) = &options.vad_model {
            let vad = vad
                .to_str()
                .with_context(|| format!("VAD model path {} is not UTF-8", vad.display()))?;
            params.set_vad_model_path(Some(vad));
            params.enable_vad(true);
        }
        if let Err(e) = self.state.full(params, audio) {
            bail!("whisper.cpp failed to transcribe: {e}");
        }
        let mut segments = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(|e| anyhow::anyhow!("cannot read a segment's text: {e}"))?;
            let text = text.trim();
            if is_annotation(text) {
                continue;
            }
            segments.push(Segment {
                // whisper.cpp timestamps are in centiseconds.
                start_s: segment.start_timestamp() as f64 / 100.0,
                end_s: segment.end_timestamp() as f64 / 100.0,
                text: text.to_string(),
                no_speech_prob: segment.no_speech_probability(),
            });
        }
        Ok(segments)
    }
}

/// Whisper's non-speech markers ("[BLANK_AUDIO]", "(silence)", "[Music]"), not words anyone said.
fn is_annotation(text: &str) -> bool {
    text.is_empty()
        || (text.starts_with('[') && text.ends_with(']'))
        || (text.starts_with('(') && text.ends_with(')'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Catalog, ModelStore, models_dir};

    /// The catalog's models from the models directory, verified (run `scripts/fetch-models.py`).
    fn store() -> ModelStore {
        ModelStore {
            catalog: Catalog::load(None).unwrap(),
            dir: models_dir(None),
            verify: true,
        }
    }

    /// Samples of a 16 kHz mono 16-bit PCM WAV file from `samples/audio`.
    fn wav(name: &str) -> Vec<f32> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/audio")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        let data = bytes
            .windows(4)
            .position(|w| w == b"data")
            .expect("a WAV file has a data chunk")
            + 8;
        bytes[data..]
            .chunks_exact(2)
            .map(|s| f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0)
            .collect()
    }

    fn text(segments: &[Segment]) -> String {
        segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }

    // The tiny.en model converted from CTranslate2 loads in whisper.cpp and transcribes speech,
    // with and without the converted Silero VAD.
    #[test]
    fn converted_models_transcribe_speech() {
        let store = store();
        let model = store.resolve("whisper-tiny-en").unwrap();
        let vad = store.resolve("silero-vad").unwrap();
        let whisper = WhisperModel::load(model.file("model").unwrap()).unwrap();
        let mut transcriber = whisper.transcriber().unwrap();
        let audio = wav("hello.wav");
        for vad_model in [None, vad.file("model").map(Path::to_path_buf)] {
            let options = Options {
                language: Some("en".into()),
                threads: 2,
                vad_model,
            };
            let said = text(&transcriber.transcribe(&audio, &options).unwrap());
            for word in ["hello", "john", "smith", "london"] {
                assert!(said.contains(word), "`{word}` missing from {said:?}");
            }
        }
        // Silence with VAD gives no text at all, not hallucinated words.
        let options = Options {
            language: Some("en".into()),
            threads: 2,
            vad_model: vad.file("model").map(Path::to_path_buf),
        };
        let said = text(
            &transcriber
                .transcribe(&wav("silence.wav"), &options)
                .unwrap(),
        );
        assert!(said.trim().is_empty(), "silence gave {said:?}");
    }

    // The multilingual base model converted from CTranslate2 loads and transcribes too.
    #[test]
    fn converted_base_model_transcribes() {
        let model = store().resolve("whisper-base").unwrap();
        let whisper = WhisperModel::load(model.file("model").unwrap()).unwrap();
        let options = Options {
            language: None,
            threads: 2,
            vad_model: None,
        };
        let said = text(
            &whisper
                .transcriber()
                .unwrap()
                .transcribe(&wav("hello.wav"), &options)
                .unwrap(),
        );
        assert!(said.contains("john") && said.contains("london"), "{said:?}");
    }
}
