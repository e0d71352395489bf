//! The `transcribe` stage: Whisper (whisper.cpp through whisper-rs) over audio and video files.
//!
//! Output fields: `text`, `segments` (start, end, text, confidence, and `words` if asked),
//! `language`, `duration_s`, and `audio` (the source's codec, sample rate and channels).
//! With `channels = "split"` each channel of a multi-channel file (a call's agent and caller) is
//! heard on its own and the segments are merged by time, each with its `speaker`.
//!
//! Items name a file in a path field (the `files` source sets it for audio/video files). The
//! model is loaded once per run and shared; whisper states (a model's per-call buffers) are
//! kept in a stage-wide pool, and a busy worker takes one for its batch. A worker takes a batch
//! of files: a decoder thread decodes and resamples them one file ahead of Whisper, the
//! worker's thread finds their speech (VAD) and packs short clips several to a 30-second window
//! (see `engines::whisper::pack`), and helper threads, each with a whisper state, hear the
//! windows; each file still gets only its own segments on its own timeline. Files longer than
//! a window are streamed instead: decoded a chunk ahead, so memory is bounded by a few chunks
//! whatever the file's length, cut at quiet moments (see `audio`) and their segments shifted
//! back onto the file's timeline.
//!
//! ggml's threads wait for each other at every step of Whisper's decoder, so a worker whose
//! fair share of `--jobs` is more than one thread (a small folder, one long file, or the last
//! batch of a run once the other workers are idle) hears several windows or chunks at once,
//! each on its own state with one thread, rather than one at a time with all its threads:
//! about 10 % less time on one long file.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use serde_json::{Map, Value, json};

use super::common::{Shared, TIMEOUT, WORKERS, batch_size, max_wait};
use crate::audio::{self, AudioInfo, TARGET_RATE};
use crate::component::threads::{BatchOf, Threads};
use crate::component::{Deadline, Meter, Per, Stage, StartContext, Unit, Worker};
use crate::device::{DEVICE, Device, Placement};
use crate::engines::whisper::pack::{Heard, MAX_CLIP_S, Packer};
use crate::engines::whisper::{self, Speech, Transcriber, Transcript, WhisperModel};
use crate::models::facts::{Facts, ModelFacts};
use crate::models::{self, ModelRef};
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

/// Audio processed, and how many times faster than real time.
pub static AUDIO_SECONDS: Unit = Unit {
    total: "audio_s",
    rate: "audio_x_realtime",
    per: Per::WallSecond,
    whole: false,
    describe: |seconds, elapsed| {
        format!(
            "{:.1} audio min, {:.0}× real time",
            seconds / 60.0,
            seconds / elapsed.as_secs_f64().max(1e-3)
        )
    },
};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "transcribe",
    doc: "Speech to text with Whisper: audio/video files in, `text`, timed `segments`, `language` and `duration_s` out.",
    options: OPTIONS,
    build,
};

/// Shortest chunk: Whisper works in 30-second windows, so less only costs accuracy.
const MIN_CHUNK_S: f64 = 30.0;
/// Files up to this long are decoded whole (and packed when short enough); longer ones are
/// streamed chunk by chunk. Bounds the memory of a batch's decoded clips.
const WHOLE_FILE_S: f64 = 30.0;
/// Decoded files the decoder thread may hold ahead of Whisper.
const DECODED_AHEAD: usize = 2;

const OPTIONS: &[OptionSpec] = &[
    // Packing needs many clips at hand: the clips of a folder often come too long to pair with
    // the next one, and each batch ends with windows half empty.
    batch_size("64"),
    max_wait("\"100ms\""),
    TIMEOUT,
    WORKERS,
    opt(
        "model",
        Ty::Model(&models::WHISPER),
        Default::Value("\"whisper-tiny-en-q8_0\""),
        "Whisper model: a catalog name (`lai models list`), or a whisper.cpp ggml file (f16 or quantized) by path: { path = \"/models/ggml-large-v3-turbo-q5_0.bin\", sha256 = \"...\" }.",
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
        Ty::Model(&models::VAD),
        Default::Value("\"silero-vad\""),
        "Silero VAD model in whisper.cpp's ggml format: a catalog name, or { path = \"/models/ggml-silero-v6.2.3.bin\", sha256 = \"...\" }.",
    ),
    opt(
        "word_timestamps",
        Ty::Bool,
        Default::Value("false"),
        "Add `words` (start, end, text, probability) to each segment.",
    ),
    opt(
        "beam_size",
        Ty::Int { min: 1, max: 16 },
        Default::Value("1"),
        "Beams of whisper.cpp's beam search; 1 decodes greedily (fastest). 5 is Whisper's own choice: sometimes more accurate on hard audio, and slower.",
    ),
    opt(
        "max_context",
        Ty::Int { min: 0, max: 224 },
        Default::Value("64"),
        "Tokens of the text already heard in a chunk that prime Whisper for the next 30 seconds (whisper.cpp's `--max-context`): names and spellings stay consistent. More (up to 224, Whisper's own) costs about 0.4 MB of memory per token per whisper state; 0 hears each 30 seconds alone.",
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
        "pack",
        Ty::Bool,
        Default::Value("true"),
        "Transcribe short files (up to 22 s of speech) several to one 30-second Whisper window, each keeping only its own segments: faster on folders of short clips. Needs a fixed language (an English-only model, or `language` set).",
    ),
    opt(
        "threads",
        Ty::Int { min: 0, max: 256 },
        Default::Value("0"),
        "CPU threads per worker; 0 shares `--jobs` among the workers busy at the moment (one long file gets them all). Threads are never oversubscribed: a worker waits for its threads.",
    ).speed(),
    opt(
        "chunk",
        Ty::Duration,
        Default::Value("\"2m\""),
        "Audio is decoded and transcribed in pieces of about this length (cut at a quiet moment), so memory stays bounded for long files. A file that says how long it is gets equal pieces, as many as this asks for rounded to share evenly among the Whisper states hearing it at once, so no short last piece runs alone.",
    ),
    opt(
        "channels",
        Ty::Choice(&["mix", "split"]),
        Default::Value("\"mix\""),
        "\"mix\" hears a file's channels mixed together. \"split\" transcribes each channel of a multi-channel file on its own (a call recording's agent and caller, one per side) and merges the segments by time, each with its `speaker`; `text` becomes one line per turn, \"speaker: words\". A silent channel costs almost nothing (VAD); mono files are transcribed as usual, but like every file in split mode they are not packed.",
    ),
    opt(
        "channel_names",
        Ty::StrList,
        Default::Value("[]"),
        "With `channels = \"split\"`: the speakers' names, channel by channel (e.g. [\"agent\", \"caller\"]); a channel without a name is \"channel N\".",
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
    model_ref: ModelRef,
    vad_model: Option<ModelRef>,
    options: whisper::Options,
    threads: usize,
    /// Pack short clips into shared windows.
    pack: bool,
    /// `channels = "split"`: each channel heard alone, with these speaker names (by channel).
    split: Option<Vec<String>>,
    chunk_s: f64,
    path_field: String,
    device: Placement,
    /// Loaded by the first worker to start, then shared by all.
    model: Shared<WhisperModel>,
    /// Whisper states no worker is using: a worker takes one for each batch, and more while
    /// it may use more threads than one (`Helpers`, `TranscribeWorker::hear`), so that the
    /// states of idle workers serve busy ones.
    spare_states: Mutex<Vec<Transcriber>>,
}

impl Transcribe {
    /// A spare whisper state, or a new one.
    fn take_state(&self, model: &WhisperModel) -> Result<Transcriber, String> {
        let spare = self.spare_states.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match spare {
            Some(state) => Ok(state),
            None => model.transcriber().map_err(|e| format!("{e:#}")),
        }
    }

    fn give_back(&self, states: impl IntoIterator<Item = Transcriber>) {
        let mut spares = self.spare_states.lock().unwrap_or_else(|p| p.into_inner());
        spares.extend(states);
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
    let split = options.str("channels") == "split";
    let names = options.str_list("channel_names");
    if !split && !names.is_empty() {
        diag.error(
            &options.span_of("channel_names"),
            format!(
                "`channel_names` in {} names speakers by channel, which needs `channels = \"split\"`; add it, or remove `channel_names`",
                options.context
            ),
        );
        return None;
    }
    let model = ModelRef::from_option(options, "model", &models::WHISPER, diag)?;
    Some(Box::new(Transcribe {
        model_name: model.name(),
        model_ref: model,
        vad_model: match options.bool("vad") {
            true => Some(ModelRef::from_option(options, "vad_model", &models::VAD, diag)?),
            false => None,
        },
        options: whisper::Options {
            language: (language != "auto").then_some(language),
            translate: options.bool("translate"),
            prompt: options.opt_str("prompt"),
            threads: 1,
            temperature_increment: options.float("temperature_increment") as f32,
            no_speech_threshold: options.float("no_speech_threshold") as f32,
            word_timestamps: options.bool("word_timestamps"),
            beam_size: options.usize("beam_size"),
            max_context: options.usize("max_context"),
            vad_model: None,
        },
        threads: options.usize("threads"),
        pack: options.bool("pack"),
        split: split.then_some(names),
        chunk_s,
        path_field: options.str("path_field"),
        device: Placement::from_options(options, diag)?,
        model: Shared::default(),
        spare_states: Mutex::default(),
    }))
}

impl Stage for Transcribe {
    fn models(&self) -> Vec<ModelRef> {
        std::iter::once(self.model_ref.clone())
            .chain(self.vad_model.clone())
            .collect()
    }

    fn check_models(&self, facts: &ModelFacts) -> Vec<String> {
        let Some(Facts::Whisper {
            multilingual: false,
        }) = facts.get(&self.model_name)
        else {
            return Vec::new();
        };
        let model = &self.model_name;
        let mut problems = Vec::new();
        if let Some(language) = self.options.language.as_deref().filter(|l| *l != "en") {
            problems.push(format!(
                "`language = \"{language}\"`, but model `{model}` is English-only (its vocabulary has no language tokens); use a multilingual model such as whisper-base, or `language = \"en\"`"
            ));
        }
        if self.options.translate {
            problems.push(format!(
                "`translate = true` needs a multilingual model, and `{model}` is English-only; use a multilingual model such as whisper-base, or remove `translate`"
            ));
        }
        problems
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        let mut options = self.options.clone();
        options.threads = self.threads;
        if let Some(vad) = &self.vad_model {
            options.vad_model = Some(ctx.model_file(&vad.name(), "whisper", "vad")?.to_path_buf());
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
            transcriber: None,
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
            model,
        }))
    }
}

struct TranscribeWorker<'a> {
    stage: &'a Transcribe,
    /// The worker's whisper state while it is busy with a batch (a spare one otherwise).
    transcriber: Option<Transcriber>,
    options: whisper::Options,
    /// Threads per call: `None` shares `--jobs` among the busy workers.
    want: Option<usize>,
    threads: Arc<Threads>,
    meter: Meter,
    deadline: Deadline,
    model: &'a WhisperModel,
}

impl Worker for TranscribeWorker<'_> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        match self.stage.take_state(self.model) {
            Ok(state) => self.transcriber = Some(state),
            Err(e) => return vec![Err(e); batch.len()],
        }
        let results = self.process_with_state(batch);
        self.stage.give_back(self.transcriber.take());
        results
    }
}

impl TranscribeWorker<'_> {
    /// `process`, with a whisper state taken for the batch.
    fn process_with_state(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        let mut results: Vec<Result<(), String>> = vec![Ok(()); batch.len()];
        let mut paths = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            match self.path_of(item) {
                Ok(path) => paths.push((i, path)),
                Err(e) => results[i] = Err(e),
            }
        }
        if let Some(names) = &self.stage.split {
            for (i, path) in paths {
                results[i] = self.transcribe_split(&mut batch[i], &path, names);
            }
            return results;
        }
        let mut long = Vec::new();
        let deadline = self.deadline.clone();
        std::thread::scope(|scope| {
            // Decoding runs ahead of Whisper on its own thread, a bounded number of files ahead.
            let (tx, rx) = crossbeam_channel::bounded(DECODED_AHEAD);
            scope.spawn(move || {
                for (i, path) in paths {
                    let decoded = decode_whole(&path, &|| deadline.passed());
                    if tx.send((i, decoded)).is_err() {
                        break;
                    }
                }
            });
            let mut helpers = Helpers::new(scope);
            let mut packer = Packer::default();
            for (i, decoded) in rx {
                match decoded {
                    Err(e) => results[i] = Err(e),
                    Ok(None) => long.push(i),
                    Ok(Some((samples, info))) => {
                        if let Err(e) = self.prepare(i, samples, info, &mut packer, batch) {
                            results[i] = Err(e);
                        }
                    }
                }
                while let Some(window) = packer.window(false) {
                    self.hear_window(window, &mut helpers, &mut packer, batch, &mut results);
                }
            }
            loop {
                while let Some(window) = packer.window(true) {
                    self.hear_window(window, &mut helpers, &mut packer, batch, &mut results);
                }
                let Some((window, heard)) = helpers.wait() else {
                    break;
                };
                self.settle_window(window, heard, &mut packer, batch, &mut results);
            }
            self.stage.give_back(helpers.finish());
        });
        for i in long {
            results[i] = self.transcribe_streaming(&mut batch[i]);
        }
        results
    }
}

/// A clip waiting in the packer: its batch index, what the decoder learned of its file, and
/// how many packed windows already failed to hear it.
type Waiting = (usize, AudioInfo, u8);

/// A packed window: its clips, in the order they are laid out.
type Window = Vec<(Waiting, Speech<'static>)>;

/// The whisper states that hear a worker's windows, each on a thread of its own, while the
/// worker's thread decodes, finds speech and packs the next ones. There are as many as the
/// worker's fair share of threads, one thread each (one helper with the worker's threads when
/// `threads` is set, or on the GPU): ggml's threads wait for each other at every step of the
/// decoder, so two one-thread states hear two windows faster than one two-thread state hears
/// them in turn.
struct Helpers<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    jobs: (Sender<Window>, Receiver<Window>),
    done: (Sender<HeardWindow>, Receiver<HeardWindow>),
    /// Each helper's thread; it ends with its state, unless a panic left the state unfit.
    running: Vec<std::thread::ScopedJoinHandle<'scope, Option<Transcriber>>>,
    /// Windows sent and not yet received back.
    in_flight: usize,
}

/// A window a helper heard, and what it heard of each clip.
type HeardWindow = (Window, Vec<anyhow::Result<Heard>>);

impl<'scope, 'env> Helpers<'scope, 'env> {
    fn new(scope: &'scope std::thread::Scope<'scope, 'env>) -> Self {
        Helpers {
            scope,
            jobs: crossbeam_channel::unbounded(),
            done: crossbeam_channel::unbounded(),
            running: Vec::new(),
            in_flight: 0,
        }
    }

    /// Gives `window` to a helper if the worker's fair share of threads leaves one for it
    /// (starting a helper if none is idle); hands it back otherwise.
    fn offer(&mut self, window: Window, worker: &TranscribeWorker<'_>) -> Option<Window> {
        if self.in_flight >= worker.states_at_once() {
            return Some(window);
        }
        if self.running.len() <= self.in_flight {
            // Without memory for another state, the worker hears the window itself.
            let Ok(state) = worker.stage.take_state(worker.model) else {
                return Some(window);
            };
            self.start(state, worker);
        }
        self.in_flight += 1;
        self.jobs.0.send(window).ok();
        None
    }

    fn start(&mut self, state: Transcriber, worker: &TranscribeWorker<'_>) {
        let (jobs, done) = (self.jobs.1.clone(), self.done.0.clone());
        let (threads, options, deadline) = (
            Arc::clone(&worker.threads),
            worker.options.clone(),
            worker.deadline.clone(),
        );
        // The threads the worker was given, or one per state when it shares the run's.
        let want = worker.want.or(Some(1));
        let batch = BatchOf::this_thread();
        self.running.push(self.scope.spawn(move || {
            batch.enter();
            let mut state = Some(state);
            // Every window taken is answered, so the worker never waits for one in vain.
            for window in jobs {
                let clips: Vec<&Speech> = window.iter().map(|(_, s)| s).collect();
                let heard = state.as_mut().and_then(|state| {
                    let mut options = options.clone();
                    let lease = threads.borrow(want);
                    options.threads = lease.count;
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        state.transcribe_packed(&clips, &options, &|| deadline.passed())
                    }))
                    .ok()
                });
                let heard = heard.unwrap_or_else(|| {
                    state = None;
                    clips
                        .iter()
                        .map(|_| Err(anyhow::anyhow!("the transcriber crashed. This is a bug.")))
                        .collect()
                });
                if done.send((window, heard)).is_err() {
                    break;
                }
            }
            state
        }));
    }

    /// A window a helper has finished, if any.
    fn finished(&mut self) -> Option<HeardWindow> {
        let heard = self.done.1.try_recv().ok()?;
        self.in_flight -= 1;
        Some(heard)
    }

    /// Waits for the next window a helper finishes; `None` when none is being heard.
    fn wait(&mut self) -> Option<HeardWindow> {
        if self.in_flight == 0 {
            return None;
        }
        let heard = self.done.1.recv().ok()?;
        self.in_flight -= 1;
        Some(heard)
    }

    /// Stops the helpers; their states, to be spares again.
    fn finish(self) -> Vec<Transcriber> {
        drop(self.jobs);
        self.running
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    }
}

/// The whisper state a busy worker took for its batch (`Worker::process`).
fn busy_state(slot: &mut Option<Transcriber>) -> &mut Transcriber {
    slot.as_mut()
        .expect("a worker has a whisper state while busy. This is a bug.")
}

/// Packed windows a clip may be heard in before it is transcribed alone.
const PACKED_TRIES: u8 = 2;

impl TranscribeWorker<'_> {
    fn path_of(&self, item: &Item) -> Result<PathBuf, String> {
        let field = &self.stage.path_field;
        match item.fields.get(field) {
            Some(Value::String(path)) => Ok(PathBuf::from(path)),
            _ => Err(format!(
                "no `{field}` field naming an audio file; `transcribe` takes audio/video files, or records with a `{field}` field"
            )),
        }
    }

    /// Readies a whole decoded file: silence is finished at once, its speech waits in the
    /// packer: to share a window when it is short (and the language fixed), else alone.
    fn prepare(
        &mut self,
        i: usize,
        samples: Vec<f32>,
        info: AudioInfo,
        packer: &mut Packer<Waiting>,
        batch: &mut [Item],
    ) -> Result<(), String> {
        self.meter.add(
            &AUDIO_SECONDS,
            samples.len() as f64 / f64::from(TARGET_RATE),
        );
        let state = busy_state(&mut self.transcriber);
        let speech = state
            .speech(Cow::Owned(samples), &self.options)
            .map_err(|e| format!("{e:#}"))?;
        let Some(speech) = speech else {
            let silence = state.silence(&self.options);
            write(&mut batch[i], silence, &info, self.options.word_timestamps);
            return Ok(());
        };
        if self.stage.pack && speech.duration_s() <= MAX_CLIP_S && state.can_pack(&self.options) {
            packer.push((i, info, 0), speech.into_owned());
        } else {
            packer.push_alone((i, info, 0), speech.into_owned());
        }
        Ok(())
    }

    /// Hands one window to a helper, waiting for one to finish first when as many as the
    /// worker's fair share are busy (or hears it here, when no helper could be started for lack
    /// of memory); writes what finished windows heard (`settle_window`).
    fn hear_window<'scope>(
        &mut self,
        window: Window,
        helpers: &mut Helpers<'scope, '_>,
        packer: &mut Packer<Waiting>,
        batch: &mut [Item],
        results: &mut [Result<(), String>],
    ) {
        let mut window = window;
        loop {
            while let Some((done, heard)) = helpers.finished() {
                self.settle_window(done, heard, packer, batch, results);
            }
            match helpers.offer(window, self) {
                None => return,
                Some(refused) => window = refused,
            }
            // As many helpers as the fair share are busy, or none could be started.
            match helpers.wait() {
                Some((done, heard)) => self.settle_window(done, heard, packer, batch, results),
                None => break,
            }
        }
        let clips: Vec<&Speech> = window.iter().map(|(_, s)| s).collect();
        let heard = self
            .with_threads(|t, options, give_up| Ok(t.transcribe_packed(&clips, options, give_up)))
            .expect("packed transcription reports per clip. This is a bug.");
        self.settle_window(window, heard, packer, batch, results);
    }

    /// Writes each clip's transcript of a heard window to its own item. A clip Whisper did not
    /// hear, or whose share of the window was unclear, goes back to the packer to be heard with
    /// other neighbours, and alone after `PACKED_TRIES`.
    fn settle_window(
        &mut self,
        window: Window,
        heard: Vec<anyhow::Result<Heard>>,
        packer: &mut Packer<Waiting>,
        batch: &mut [Item],
        results: &mut [Result<(), String>],
    ) {
        for (((i, info, tries), speech), heard) in window.into_iter().zip(heard) {
            let transcript = match heard {
                Ok(Heard::Own(t)) => Ok(t),
                Ok(Heard::Unheard) if tries + 1 < PACKED_TRIES => {
                    packer.push_first((i, info, tries + 1), speech);
                    continue;
                }
                Ok(Heard::Unclear) if tries + 1 < PACKED_TRIES => {
                    packer.push((i, info, tries + 1), speech);
                    continue;
                }
                Ok(Heard::Unclear | Heard::Unheard) => {
                    packer.push_alone((i, info, tries + 1), speech);
                    continue;
                }
                Err(e) => Err(format!("{e:#}")),
            };
            match transcript {
                Ok(t) => write(&mut batch[i], t, &info, self.options.word_timestamps),
                Err(e) => results[i] = Err(e),
            }
        }
    }

    /// How many whisper states this worker may keep busy at once, one thread each: its fair
    /// share of `--jobs` when it shares them (`threads = 0`, on the CPU), else one.
    fn states_at_once(&self) -> usize {
        match self.want {
            None => self.threads.share(),
            Some(_) => 1,
        }
    }

    /// Runs `f` with threads borrowed from the run's budget and the batch's deadline.
    fn with_threads<T>(
        &mut self,
        f: impl FnOnce(&mut Transcriber, &whisper::Options, &dyn Fn() -> bool) -> anyhow::Result<T>,
    ) -> Result<T, String> {
        let mut options = self.options.clone();
        let lease = self.threads.borrow(self.want);
        options.threads = lease.count;
        let deadline = &self.deadline;
        f(busy_state(&mut self.transcriber), &options, &|| deadline.passed())
            .map_err(|e| format!("{e:#}"))
    }

    /// Transcribes a file longer than a window, decoding it one chunk ahead.
    fn transcribe_streaming(&mut self, item: &mut Item) -> Result<(), String> {
        let path = self.path_of(item)?;
        let heard = self.hear(&path, None)?;
        write_fields(item, heard.text, heard.segments, heard.language, &heard.info);
        Ok(())
    }

    /// Transcribes each channel of a file alone and merges the segments by end time, each with its
    /// channel's speaker name; `text` is one line per turn. A mono file is transcribed as usual.
    fn transcribe_split(
        &mut self,
        item: &mut Item,
        path: &Path,
        names: &[String],
    ) -> Result<(), String> {
        let first = self.hear(path, Some(0))?;
        let channels = first.info.channels;
        if channels < 2 {
            write_fields(item, first.text, first.segments, first.language, &first.info);
            return Ok(());
        }
        let info = first.info.clone();
        let mut heard = vec![first];
        for channel in 1..channels {
            heard.push(self.hear(path, Some(channel))?);
        }
        // The language of the first channel that says something (a silent one detects none).
        let language = heard
            .iter()
            .find(|h| !h.segments.is_empty())
            .or(heard.first())
            .and_then(|h| h.language.clone());
        let mut segments: Vec<Value> = Vec::new();
        for (channel, hearing) in heard.into_iter().enumerate() {
            let speaker = names
                .get(channel)
                .cloned()
                .unwrap_or_else(|| format!("channel {}", channel + 1));
            for mut segment in hearing.segments {
                segment["speaker"] = json!(speaker);
                segments.push(segment);
            }
        }
        // By end: Whisper's segment ends are exact, a start after a pause is only the previous
        // segment's end (see `engines::whisper::pack`), which would put a reply before the
        // question it answers.
        let end = |s: &Value| s["end"].as_f64().unwrap_or(0.0);
        segments.sort_by(|a, b| end(a).total_cmp(&end(b)));
        write_fields(item, turns(&segments), segments, language, &info);
        Ok(())
    }

    /// Hears one channel of a file (`None`: all channels mixed), decoding it ahead of Whisper:
    /// its segments on the file's timeline, their text, and the language of the first chunk
    /// with speech. Chunks are cut at quiet moments and heard without each other's text, so on
    /// the CPU several are heard at once, one whisper state and one thread each, as many as the
    /// threads a call would get now: ggml's threads wait for each other at every step of the
    /// decoder, so two one-thread states hear a long file faster than one two-thread state.
    fn hear(&mut self, path: &Path, channel: Option<usize>) -> Result<Hearing, String> {
        // Spare states (an idle worker's), or new ones while there is memory for them.
        let mut extra: Vec<Transcriber> = (1..self.states_at_once())
            .map_while(|_| self.stage.take_state(self.model).ok())
            .collect();
        let states = 1 + extra.len();
        // One thread per state when there are several; else the share of the moment, per chunk.
        let want = if states > 1 { Some(1) } else { self.want };
        let (tx, rx) = crossbeam_channel::bounded::<(usize, audio::Chunk)>(0);
        let chunk_s = self.stage.chunk_s;
        let deadline = &self.deadline;
        let (threads, options) = (&self.threads, &self.options);
        let failed = AtomicBool::new(false);
        let heard = Mutex::new(Vec::new());
        let batch = BatchOf::this_thread();
        let transcribers = self.transcriber.iter_mut().chain(extra.iter_mut());
        let decoded = std::thread::scope(|scope| {
            for transcriber in transcribers.take(states) {
                let (rx, failed, heard) = (rx.clone(), &failed, &heard);
                scope.spawn(move || {
                    batch.enter();
                    for (k, chunk) in rx {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut options = options.clone();
                        let lease = threads.borrow(want);
                        options.threads = lease.count;
                        let transcript = transcriber
                            .transcribe(&chunk.samples, &options, &|| deadline.passed())
                            .map_err(|e| format!("{e:#}"));
                        drop(lease);
                        failed.fetch_or(transcript.is_err(), Ordering::Relaxed);
                        let audio_s = chunk.samples.len() as f64 / f64::from(TARGET_RATE);
                        let mut heard = heard.lock().unwrap_or_else(|p| p.into_inner());
                        heard.push((k, chunk.start_s, audio_s, transcript));
                    }
                });
            }
            drop(rx);
            // Decoding runs on this thread, handing each chunk to the first state free (one
            // chunk decoded ahead: memory is the states' chunks and one more); the states stop
            // when `tx` is dropped at the end.
            let tx = tx;
            let mut k = 0;
            audio::decode(path, chunk_s, Some(states), channel, &|| deadline.passed(), &mut |c| {
                k += 1;
                !failed.load(Ordering::Relaxed) && tx.send((k, c)).is_ok()
            })
        });
        self.stage.give_back(extra);
        let mut heard = heard.into_inner().unwrap_or_else(|p| p.into_inner());
        heard.sort_by_key(|(k, ..)| *k);
        let mut segments: Vec<Value> = Vec::new();
        let mut text = String::new();
        let mut language: Option<String> = None;
        for (_, start_s, audio_s, transcript) in heard {
            let transcript = transcript?;
            // The language of the first chunk with speech (or of the first chunk, if none has).
            if segments.is_empty() {
                language = transcript.language.or(language.take());
            }
            for s in transcript.segments {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&s.text);
                segments.push(segment_json(&s, start_s, self.options.word_timestamps));
            }
            // The file's audio counts once, however many of its channels are heard.
            if channel.unwrap_or(0) == 0 {
                self.meter.add(&AUDIO_SECONDS, audio_s);
            }
        }
        let info = decoded?;
        Ok(Hearing {
            text,
            segments,
            language,
            info,
        })
    }
}

/// One channel (or the mix) of a file, heard: see `TranscribeWorker::hear`.
struct Hearing {
    text: String,
    segments: Vec<Value>,
    language: Option<String>,
    info: AudioInfo,
}

/// Speaker-labelled segments, in time order, as text: one line per turn, "speaker: words".
fn turns(segments: &[Value]) -> String {
    let mut text = String::new();
    let mut last: Option<&str> = None;
    for segment in segments {
        let speaker = segment["speaker"].as_str().unwrap_or("");
        let said = segment["text"].as_str().unwrap_or("").trim();
        if said.is_empty() {
            continue;
        }
        if last == Some(speaker) {
            text.push(' ');
        } else {
            if last.is_some() {
                text.push('\n');
            }
            text.push_str(speaker);
            text.push_str(": ");
            last = Some(speaker);
        }
        text.push_str(said);
    }
    text
}

/// Decodes a file whole if it is at most `WHOLE_FILE_S` long; `None` for a longer file (which
/// is then streamed).
fn decode_whole(
    path: &std::path::Path,
    give_up: &dyn Fn() -> bool,
) -> Result<Option<(Vec<f32>, AudioInfo)>, String> {
    let mut whole: Option<Vec<f32>> = None;
    let mut long = false;
    let info = audio::decode(path, WHOLE_FILE_S, None, None, give_up, &mut |chunk| {
        if whole.is_some() {
            long = true;
            return false;
        }
        whole = Some(chunk.samples);
        true
    })?;
    if long {
        return Ok(None);
    }
    Ok(Some((whole.unwrap_or_default(), info)))
}

/// Writes a whole file's transcript (times already on the file's timeline) to its item.
fn write(item: &mut Item, transcript: Transcript, info: &AudioInfo, with_words: bool) {
    let text = transcript
        .segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let segments = transcript
        .segments
        .iter()
        .map(|s| segment_json(s, 0.0, with_words))
        .collect();
    write_fields(item, text, segments, transcript.language, info);
}

fn write_fields(
    item: &mut Item,
    text: String,
    segments: Vec<Value>,
    language: Option<String>,
    info: &AudioInfo,
) {
    let fields: &mut Map<String, Value> = &mut item.fields;
    fields.insert("text".into(), Value::String(text));
    fields.insert("segments".into(), Value::Array(segments));
    fields.insert("language".into(), json!(language));
    fields.insert("duration_s".into(), json!(round_ms(info.duration_s)));
    fields.insert(
        "audio".into(),
        json!({"codec": info.codec, "sample_rate": info.sample_rate, "channels": info.channels}),
    );
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
