//! The `transcribe` stage: Whisper (whisper.cpp through whisper-rs) over audio and video files.
//!
//! Output fields: `text`, `segments` (start, end, text, confidence, and `words` if asked),
//! `language`, `duration_s`, and `audio` (the source's codec, sample rate and channels).
//!
//! Items name a file in a path field (the `files` source sets it for audio/video files). The
//! model is loaded once per run and shared; each worker owns a whisper state and a decoder
//! thread that decodes and resamples the next chunk while whisper works on the current one, so
//! memory is bounded by two chunks per worker whatever the file's length. Chunks are cut at quiet
//! moments (see `audio`) and their segments shifted back onto the file's timeline.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{MAX_WAIT, Shared, Stage, TIMEOUT, WORKERS, Worker, batch_size};
use crate::audio::{self, TARGET_RATE};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::engines::device::{DEVICE, Device, Placement};
use crate::engines::whisper::{self, Transcriber, WhisperModel};
use crate::pipeline::item::Item;
use crate::pipeline::threads::Threads;
use crate::pipeline::{Deadline, Meter, StartContext};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "transcribe",
    doc: "Speech to text with Whisper: audio/video files in, `text`, timed `segments`, `language` and `duration_s` out.",
    options: OPTIONS,
    build,
};

/// Shortest chunk: Whisper works in 30-second windows, so less only costs accuracy.
const MIN_CHUNK_S: f64 = 30.0;

const OPTIONS: &[OptionSpec] = &[
    batch_size("1"),
    MAX_WAIT,
    TIMEOUT,
    WORKERS,
    opt(
        "model",
        Ty::Str,
        Default::Value("\"whisper-tiny-en\""),
        "Whisper model from the catalog (`lai models list`).",
    ),
    opt(
        "language",
        Ty::Str,
        Default::Value("\"auto\""),
        "Spoken language as a code (\"en\", \"de\"), or \"auto\" to detect it per file; English-only models always say \"en\".",
    ),
    opt(
        "translate",
        Ty::Bool,
        Default::Value("false"),
        "Translate the speech into English (multilingual models only).",
    ),
    opt(
        "prompt",
        Ty::Str,
        Default::Unset,
        "Initial prompt: names, terms and spellings the speech is likely to use.",
    ),
    opt(
        "vad",
        Ty::Bool,
        Default::Value("true"),
        "Skip non-speech with Silero VAD: faster on recordings with pauses, and no text invented for silence.",
    ),
    opt(
        "vad_model",
        Ty::Str,
        Default::Value("\"silero-vad\""),
        "VAD model from the catalog.",
    ),
    opt(
        "word_timestamps",
        Ty::Bool,
        Default::Value("false"),
        "Add `words` (start, end, text, probability) to each segment.",
    ),
    opt(
        "temperature_increment",
        Ty::Float { min: 0.0, max: 1.0 },
        Default::Value("0.2"),
        "When a window decodes badly (repetitive or unlikely text), decode again this much hotter; 0 turns the fallback off.",
    ),
    opt(
        "no_speech_threshold",
        Ty::Float { min: 0.0, max: 1.0 },
        Default::Value("0.6"),
        "A window whose no-speech probability is above this is treated as silence.",
    ),
    opt(
        "threads",
        Ty::Int { min: 0, max: 256 },
        Default::Value("0"),
        "CPU threads per worker; 0 shares `--jobs` among the workers busy at the moment (one long file gets them all). Threads are never oversubscribed: a worker waits for its threads.",
    ),
    opt(
        "chunk",
        Ty::Duration,
        Default::Value("\"2m\""),
        "Audio is decoded and transcribed in pieces of about this length (cut at a quiet moment), so memory stays bounded for long files.",
    ),
    opt(
        "path_field",
        Ty::Str,
        Default::Value("\"path\""),
        "Field holding the audio or video file's path.",
    ),
    DEVICE,
];

struct Transcribe {
    model_name: String,
    vad_model_name: Option<String>,
    options: whisper::Options,
    threads: usize,
    chunk_s: f64,
    path_field: String,
    device: Placement,
    /// Loaded by the first worker to start, then shared by all.
    model: Shared<WhisperModel>,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn Stage>> {
    let chunk_s = options.duration("chunk").as_secs_f64();
    if chunk_s < MIN_CHUNK_S {
        diag.error(
            &options.span_of("chunk"),
            format!(
                "`chunk` in {} is too short ({chunk_s} s); use at least \"30s\" (Whisper hears 30-second windows)",
                options.context
            ),
        );
        return None;
    }
    let language = options.str("language");
    if language != "auto" && !whisper::is_language(&language) {
        diag.error(
            &options.span_of("language"),
            format!(
                "`language` in {} is \"{language}\", not a language Whisper knows; use a code such as \"en\", \"de\" or \"fr\", or \"auto\" to detect it",
                options.context
            ),
        );
        return None;
    }
    Some(Box::new(Transcribe {
        model_name: options.str("model"),
        vad_model_name: options.bool("vad").then(|| options.str("vad_model")),
        options: whisper::Options {
            language: (language != "auto").then_some(language),
            translate: options.bool("translate"),
            prompt: options.opt_str("prompt"),
            threads: 1,
            temperature_increment: options.float("temperature_increment") as f32,
            no_speech_threshold: options.float("no_speech_threshold") as f32,
            word_timestamps: options.bool("word_timestamps"),
            vad_model: None,
        },
        threads: options.usize("threads"),
        chunk_s,
        path_field: options.str("path_field"),
        device: Placement::from_options(options, diag)?,
        model: Shared::default(),
    }))
}

impl Stage for Transcribe {
    fn models(&self) -> Vec<String> {
        std::iter::once(self.model_name.clone())
            .chain(self.vad_model_name.clone())
            .collect()
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        let mut options = self.options.clone();
        options.threads = self.threads;
        if let Some(vad) = &self.vad_model_name {
            options.vad_model = Some(ctx.model_file(vad, "whisper", "vad")?.to_path_buf());
        }
        let device = ctx.place(self.device)?;
        let model = self.model.get(|| {
            WhisperModel::load(
                ctx.model_file(&self.model_name, "whisper", "model")?,
                device,
            )
        })?;
        Ok(Box::new(TranscribeWorker {
            stage: self,
            transcriber: model.transcriber()?,
            options,
            // On the GPU whisper.cpp's CPU work is small: one thread, the rest to other stages.
            want: match (self.threads, device) {
                (0, Device::Gpu) => Some(1),
                (0, Device::Cpu) => None,
                (n, _) => Some(n),
            },
            threads: Arc::clone(&ctx.threads),
            meter: ctx.meter.clone(),
            deadline: ctx.deadline.clone(),
        }))
    }
}

struct TranscribeWorker<'a> {
    stage: &'a Transcribe,
    transcriber: Transcriber,
    options: whisper::Options,
    /// Threads per call: `None` shares `--jobs` among the busy workers.
    want: Option<usize>,
    threads: Arc<Threads>,
    meter: Meter,
    deadline: Deadline,
}

impl Worker for TranscribeWorker<'_> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        batch.iter_mut().map(|item| self.transcribe(item)).collect()
    }
}

impl TranscribeWorker<'_> {
    fn transcribe(&mut self, item: &mut Item) -> Result<(), String> {
        let field = &self.stage.path_field;
        let Some(Value::String(path)) = item.fields.get(field) else {
            return Err(format!(
                "no `{field}` field naming an audio file; `transcribe` takes audio/video files, or records with a `{field}` field"
            ));
        };
        let path = PathBuf::from(path);
        let mut segments: Vec<Value> = Vec::new();
        let mut text = String::new();
        let mut language: Option<String> = None;
        let (tx, rx) = crossbeam_channel::bounded::<audio::Chunk>(1);
        let chunk_s = self.stage.chunk_s;
        // Decoding runs one chunk ahead, on its own thread.
        let (decoded, heard) = std::thread::scope(|scope| {
            let decoder =
                scope.spawn(move || audio::decode(&path, chunk_s, &mut |c| tx.send(c).is_ok()));
            let mut heard = Ok(());
            for chunk in &rx {
                let mut options = self.options.clone();
                let lease = self.threads.borrow(self.want);
                options.threads = lease.count;
                let deadline = &self.deadline;
                let transcript = self
                    .transcriber
                    .transcribe(&chunk.samples, &options, &|| deadline.passed());
                drop(lease);
                let transcript = match transcript {
                    Ok(t) => t,
                    Err(e) => {
                        heard = Err(format!("{e:#}"));
                        break;
                    }
                };
                // The language of the first chunk with speech (or of the first chunk, if none has).
                if segments.is_empty() {
                    language = transcript.language.or(language.take());
                }
                for s in transcript.segments {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(&s.text);
                    segments.push(segment_json(
                        &s,
                        chunk.start_s,
                        self.options.word_timestamps,
                    ));
                }
                self.meter
                    .add_audio_seconds(chunk.samples.len() as f64 / f64::from(TARGET_RATE));
            }
            drop(rx);
            let decoded = decoder
                .join()
                .unwrap_or_else(|_| Err("the audio decoder crashed. This is a bug.".into()));
            (decoded, heard)
        });
        let info = decoded?;
        heard?;
        let fields: &mut Map<String, Value> = &mut item.fields;
        fields.insert("text".into(), Value::String(text));
        fields.insert("segments".into(), Value::Array(segments));
        fields.insert("language".into(), json!(language));
        fields.insert("duration_s".into(), json!(round_ms(info.duration_s)));
        fields.insert(
            "audio".into(),
            json!({"codec": info.codec, "sample_rate": info.sample_rate, "channels": info.channels}),
        );
        Ok(())
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// A segment as output: times on the file's timeline, in seconds to the millisecond.
fn segment_json(s: &whisper::Segment, offset: f64, with_words: bool) -> Value {
    let mut segment = json!({
        "start": round_ms(offset + s.start_s),
        "end": round_ms(offset + s.end_s),
        "text": s.text,
        "confidence": (f64::from(s.confidence) * 1000.0).round() / 1000.0,
    });
    if with_words {
        segment["words"] = s
            .words
            .iter()
            .map(|w| {
                json!({
                    "start": round_ms(offset + w.start_s),
                    "end": round_ms(offset + w.end_s),
                    "text": w.text,
                    "probability": (f64::from(w.probability) * 1000.0).round() / 1000.0,
                })
            })
            .collect();
    }
    segment
}
