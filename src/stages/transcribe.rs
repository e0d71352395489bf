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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::{MAX_WAIT, Stage, WORKERS, Worker, batch_size};
use crate::audio::{self, TARGET_RATE};
use crate::config::ComponentKind;
use crate::config::schema::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::engines::whisper::{self, Transcriber, WhisperModel};
use crate::pipeline::item::Item;
use crate::pipeline::{Meter, StartContext};

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
        "CPU threads per worker; 0 shares `--jobs` among the workers busy at the moment (one long file gets them all).",
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
];

struct Transcribe {
    model_name: String,
    vad_model_name: Option<String>,
    options: whisper::Options,
    threads: usize,
    chunk_s: f64,
    path_field: String,
    /// Loaded by the first worker to start, then shared by all.
    model: Mutex<Option<Arc<WhisperModel>>>,
    /// The run's threads, lent to workers chunk by chunk (`threads = 0`).
    budget: ThreadBudget,
}

/// `--jobs` threads shared by the workers: each chunk borrows its fair share of the workers
/// busy at the moment (all of them when one long file is the only work) and never more than
/// are free, because ggml's threads spin while they wait and oversubscribed cores crawl.
#[derive(Default)]
struct ThreadBudget {
    /// (free, total); total is set when the first worker starts.
    threads: Mutex<(usize, usize)>,
    returned: Condvar,
    /// Workers inside `process` right now.
    busy: AtomicUsize,
}

impl ThreadBudget {
    fn init(&self, jobs: usize) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        if threads.1 == 0 {
            *threads = (jobs.max(1), jobs.max(1));
        }
    }

    fn borrow(&self) -> usize {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        while threads.0 == 0 {
            threads = self
                .returned
                .wait(threads)
                .unwrap_or_else(|p| p.into_inner());
        }
        let fair = (threads.1 / self.busy.load(Ordering::SeqCst).max(1)).max(1);
        let n = fair.min(threads.0);
        threads.0 -= n;
        n
    }

    fn give_back(&self, n: usize) {
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).0 += n;
        self.returned.notify_all();
    }
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
        model: Mutex::new(None),
        budget: ThreadBudget::default(),
    }))
}

impl Stage for Transcribe {
    fn models(&self) -> Vec<String> {
        std::iter::once(self.model_name.clone())
            .chain(self.vad_model_name.clone())
            .collect()
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        // Whisper models have a `model` file, VAD models a `vad` file.
        let file = |name: &str, role: &str| -> anyhow::Result<PathBuf> {
            let model = ctx
                .models
                .iter()
                .find(|m| m.name == name)
                .with_context(|| format!("model `{name}` was not resolved. This is a bug."))?;
            match model.file(role) {
                Some(path) if model.engine == "whisper" => Ok(path.to_path_buf()),
                _ => bail!(
                    "model `{name}` is not a Whisper {} (engine {}); see `lai models list` for whisper models",
                    if role == "vad" { "VAD model" } else { "model" },
                    model.engine
                ),
            }
        };
        let mut options = self.options.clone();
        options.threads = self.threads;
        if let Some(vad) = &self.vad_model_name {
            options.vad_model = Some(file(vad, "vad")?);
        }
        let model = {
            let mut slot = self.model.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(model) => Arc::clone(model),
                None => {
                    let model = Arc::new(WhisperModel::load(&file(&self.model_name, "model")?)?);
                    *slot = Some(Arc::clone(&model));
                    model
                }
            }
        };
        self.budget.init(ctx.jobs);
        Ok(Box::new(TranscribeWorker {
            stage: self,
            transcriber: model.transcriber()?,
            options,
            meter: ctx.meter.clone(),
        }))
    }
}

struct TranscribeWorker<'a> {
    stage: &'a Transcribe,
    transcriber: Transcriber,
    options: whisper::Options,
    meter: Meter,
}

impl Worker for TranscribeWorker<'_> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        let busy = &self.stage.budget.busy;
        busy.fetch_add(1, Ordering::SeqCst);
        let results = batch.iter_mut().map(|item| self.transcribe(item)).collect();
        busy.fetch_sub(1, Ordering::SeqCst);
        results
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
                let budget = &self.stage.budget;
                let mut options = self.options.clone();
                let borrowed = if self.stage.threads == 0 {
                    options.threads = budget.borrow();
                    options.threads
                } else {
                    0
                };
                let transcript = self.transcriber.transcribe(&chunk.samples, &options);
                budget.give_back(borrowed);
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
