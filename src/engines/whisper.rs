//! Whisper through whisper-rs (whisper.cpp): a thin, safe layer over one loaded model.
//!
//! `WhisperModel` is loaded once per run from a verified catalog file and shared by `Arc`; each
//! worker calls `transcriber` on its own thread to get a `Transcriber` that owns a whisper state
//! (the per-thread decoding buffers). Nothing here decodes audio files: it takes 16 kHz mono f32.

pub mod pack;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::device::Device;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperTokenData as TokenData, WhisperVadContext, WhisperVadContextParams, WhisperVadParams,
};

pub struct WhisperModel {
    ctx: WhisperContext,
}

/// How to transcribe; `Options::default()` is English-agnostic greedy decoding on one thread.
#[derive(Clone, Debug)]
pub struct Options {
    /// A language code ("en"), or None to detect it.
    pub language: Option<String>,
    /// Translate into English instead of transcribing.
    pub translate: bool,
    /// Text that primes the decoder: names, spellings, a style.
    pub prompt: Option<String>,
    pub threads: usize,
    /// Raise the temperature by this much and decode again when a window looks like a failure
    /// (repetitive or unlikely text); 0 turns the fallback off.
    pub temperature_increment: f32,
    /// A window whose no-speech probability is above this (and whose text is unlikely) is silence.
    pub no_speech_threshold: f32,
    /// Time each word, not only each segment.
    pub word_timestamps: bool,
    /// Beams of whisper.cpp's beam search; 1 decodes greedily.
    pub beam_size: usize,
    /// Tokens of the text heard so far in a call that prime the decoder for its next 30 s
    /// (whisper.cpp's `n_max_text_ctx`, at most 224 are used). The decoder's first step computes
    /// the vocabulary's logits for every one of them: about 0.4 MB of each state's memory
    /// per token.
    pub max_context: usize,
    /// whisper.cpp's Silero VAD model, to skip non-speech.
    pub vad_model: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            language: None,
            translate: false,
            prompt: None,
            threads: 1,
            temperature_increment: 0.2,
            no_speech_threshold: 0.6,
            word_timestamps: false,
            beam_size: 1,
            max_context: 64,
            vad_model: None,
        }
    }
}

/// What one call to `transcribe` heard.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// The language spoken: the one asked for, the detected one, or "en" for English-only models.
    pub language: Option<String>,
    pub segments: Vec<Segment>,
}

/// One transcribed segment, times in seconds.
#[derive(Clone, Debug)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
    /// Mean probability of the segment's text tokens, 0..1.
    pub confidence: f32,
    /// Filled when word timestamps were asked for.
    pub words: Vec<Word>,
}

#[derive(Clone, Debug)]
pub struct Word {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
    pub probability: f32,
}

impl WhisperModel {
    /// Loads a ggml Whisper model onto `device`. The caller has verified the file (see
    /// `models::ModelStore`).
    pub fn load(path: &Path, device: Device) -> anyhow::Result<WhisperModel> {
        // Route whisper.cpp's and ggml's own logging away from stderr (lai reports errors itself).
        whisper_rs::install_logging_hooks();
        check_cpu()?;
        let path_str = path
            .to_str()
            .with_context(|| format!("model path {} is not UTF-8", path.display()))?;
        let mut params = WhisperContextParameters::default();
        // Flash attention is whisper.cpp's faster path on CUDA, and on the CPU with the tiled
        // kernel of the ggml lai builds whisper.cpp with (scripts/whisper-ggml.cmake): 16 % less
        // CPU time on the transcription benchmark. The CUDA build keeps whisper-rs-sys's ggml,
        // whose CPU flash attention is slower than none.
        params
            .use_gpu(device == Device::Gpu)
            .flash_attn(device == Device::Gpu || !cfg!(feature = "cuda"));
        let ctx = WhisperContext::new_with_params(path_str, params).map_err(|e| {
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
        Ok(Transcriber {
            state,
            vad: None,
            multilingual: self.ctx.is_multilingual(),
            first_special: self.ctx.token_eot(),
        })
    }
}

pub struct Transcriber {
    state: WhisperState,
    /// The Silero VAD context, created on first use.
    vad: Option<WhisperVadContext>,
    multilingual: bool,
    /// Token ids from here on are special (timestamps, language, task), not text.
    first_special: i32,
}

/// Speech closer than this to the next speech is kept together, pause included.
const VAD_MERGE_GAP_S: f64 = 1.0;
/// Audio kept before and after each stretch of speech, so word edges are not clipped.
const VAD_PAD_S: f64 = 0.2;
/// Silence put between stretches of speech when they are joined for Whisper.
const VAD_JOIN_S: f64 = 0.1;

/// whisper.cpp's abort callback: asks the `&dyn Fn() -> bool` behind `data`.
unsafe extern "C" fn abort_if(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `transcribe` sets `data` to a `&&dyn Fn() -> bool` that outlives the call.
    let give_up = unsafe { &*(data as *const &dyn Fn() -> bool) };
    give_up()
}

impl Transcriber {
    /// Transcribes 16 kHz mono samples. With a VAD model, only the stretches of speech are
    /// joined and transcribed (silence gives no segments, and costs no Whisper time); segment
    /// and word times are mapped back onto `audio`'s timeline.
    /// `give_up` is polled while whisper.cpp computes; when it says so, the call ends with an
    /// error.
    pub fn transcribe(
        &mut self,
        audio: &[f32],
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Transcript> {
        match self.speech(Cow::Borrowed(audio), options)? {
            Some(speech) => self.transcribe_speech(&speech, options, give_up),
            None => Ok(self.silence(options)),
        }
    }

    /// What Whisper should hear of `audio`: its stretches of speech joined (with a VAD model),
    /// or all of it; `None` when the VAD hears no speech at all.
    pub fn speech<'a>(
        &mut self,
        audio: Cow<'a, [f32]>,
        options: &Options,
    ) -> anyhow::Result<Option<Speech<'a>>> {
        let Some(path) = &options.vad_model else {
            return Ok(Some(Speech::whole(audio)));
        };
        let stretches = self.speech_stretches(path, &audio)?;
        if stretches.is_empty() {
            return Ok(None);
        }
        Ok(Some(Speech::join(&audio, &stretches)))
    }

    /// Transcribes prepared speech on its own (in as many windows as it needs), times on the
    /// timeline of the audio it came from.
    pub fn transcribe_speech(
        &mut self,
        speech: &Speech,
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Transcript> {
        hear_speech(self, speech, options, give_up)
    }

    /// The transcript of audio without speech: no segments, the language if it is known.
    pub fn silence(&self, options: &Options) -> Transcript {
        Transcript {
            language: self.language(options).map(String::from),
            segments: Vec::new(),
        }
    }

    /// Whether one Whisper call may hear several clips at once: only when the language is
    /// fixed, since whisper.cpp detects (and decodes in) one language per call.
    pub fn can_pack(&self, options: &Options) -> bool {
        self.language(options).is_some()
    }

    /// The language to decode in: English for English-only models, else the one asked for
    /// (`None`: detect it).
    fn language<'o>(&self, options: &'o Options) -> Option<&'o str> {
        if self.multilingual {
            options.language.as_deref()
        } else {
            Some("en")
        }
    }

    /// One whisper.cpp `full` call over `samples`; times in seconds of `samples`.
    fn decode(
        &mut self,
        samples: &[f32],
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Transcript> {
        let language = self.language(options);
        let strategy = match options.beam_size {
            0 | 1 => SamplingStrategy::Greedy { best_of: 1 },
            n => SamplingStrategy::BeamSearch {
                beam_size: i32::try_from(n).unwrap_or(i32::MAX),
                // whisper.cpp's default: no patience factor.
                patience: -1.0,
            },
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(c_threads(options.threads));
        params.set_language(Some(language.unwrap_or("auto")));
        params.set_translate(options.translate);
        if let Some(prompt) = &options.prompt {
            params.set_initial_prompt(prompt);
        }
        // Each call hears only its own audio: no text of an earlier call primes this one.
        params.set_no_context(true);
        params.set_n_max_text_ctx(i32::try_from(options.max_context).unwrap_or(i32::MAX));
        params.set_temperature_inc(options.temperature_increment);
        params.set_no_speech_thold(options.no_speech_threshold);
        params.set_token_timestamps(options.word_timestamps);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        // No "(music)" or "[BLANK_AUDIO]" inventions: silence must give an empty transcript.
        params.set_suppress_nst(true);
        // SAFETY: the user data is `give_up`, borrowed for the whole `full` call below, and
        // `abort_if` reads it as exactly that type.
        unsafe {
            params.set_abort_callback(Some(abort_if));
            params.set_abort_callback_user_data(&give_up as *const &dyn Fn() -> bool as *mut _);
        }
        if let Err(e) = self.state.full(params, samples) {
            if give_up() {
                bail!("whisper.cpp was stopped: out of time");
            }
            bail!("whisper.cpp failed to transcribe: {e}");
        }
        let language = match language {
            Some(l) => Some(l.to_string()),
            None => {
                whisper_rs::get_lang_str(self.state.full_lang_id_from_state()).map(String::from)
            }
        };
        // whisper.cpp times are in centiseconds of the audio it was given.
        let at = |cs: i64| cs as f64 / 100.0;
        let mut segments = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(|e| anyhow::anyhow!("cannot read a segment's text: {e}"))?;
            let text = text.trim();
            if is_annotation(text) {
                continue;
            }
            let mut tokens = Vec::new();
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                let data = token.token_data();
                if data.id >= self.first_special {
                    continue;
                }
                let piece = token
                    .to_str_lossy()
                    .map_or_else(|_| String::new(), |p| p.into_owned());
                tokens.push((data, piece));
            }
            let confidence = if tokens.is_empty() {
                0.0
            } else {
                tokens.iter().map(|(d, _)| d.p).sum::<f32>() / tokens.len() as f32
            };
            let words = if options.word_timestamps {
                words(&tokens, &at)
            } else {
                Vec::new()
            };
            segments.push(Segment {
                start_s: at(segment.start_timestamp()),
                end_s: at(segment.end_timestamp()),
                text: text.to_string(),
                confidence,
                words,
            });
        }
        Ok(Transcript { language, segments })
    }

    /// The stretches of speech in `audio` as sample ranges: padded, and merged across short pauses.
    fn speech_stretches(
        &mut self,
        model: &Path,
        audio: &[f32],
    ) -> anyhow::Result<Vec<(usize, usize)>> {
        let vad = match &mut self.vad {
            Some(vad) => vad,
            slot @ None => {
                let path = model
                    .to_str()
                    .with_context(|| format!("VAD model path {} is not UTF-8", model.display()))?;
                // Silero is tiny: one thread is plenty, and more would spin against whisper's.
                let mut params = WhisperVadContextParams::new();
                params.set_n_threads(1);
                let vad = WhisperVadContext::new(path, params).map_err(|e| {
                    anyhow::anyhow!(
                        "whisper.cpp could not load the VAD model {}: {e}",
                        model.display()
                    )
                })?;
                slot.insert(vad)
            }
        };
        let found = vad
            .segments_from_samples(WhisperVadParams::new(), audio)
            .map_err(|e| anyhow::anyhow!("voice activity detection failed: {e}"))?;
        let rate = f64::from(crate::audio::TARGET_RATE);
        let sample = |cs: f32| ((f64::from(cs) / 100.0 * rate) as usize).min(audio.len());
        let pad = (VAD_PAD_S * rate) as usize;
        let gap = (VAD_MERGE_GAP_S * rate) as usize;
        let mut speech: Vec<(usize, usize)> = Vec::new();
        for segment in found {
            let start = sample(segment.start).saturating_sub(pad);
            let end = (sample(segment.end) + pad).min(audio.len());
            match speech.last_mut() {
                Some(last) if start <= last.1 + gap => last.1 = last.1.max(end),
                _ if end > start => speech.push((start, end)),
                _ => {}
            }
        }
        Ok(speech)
    }
}

fn c_threads(n: usize) -> i32 {
    i32::try_from(n.max(1)).unwrap_or(1)
}

/// whisper.cpp's ggml is built for the AVX-512 and VNNI extensions of the CPU it was built on
/// (scripts/whisper-ggml.cmake). On a CPU without one of them that binary would die of SIGILL
/// mid-run; this says why, and what to do, before any audio is touched.
fn check_cpu() -> anyhow::Result<()> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let built = whisper_rs::print_system_info();
        let extensions = [
            ("AVX512", has!("avx512f")),
            ("AVX512_VBMI", has!("avx512vbmi")),
            ("AVX512_VNNI", has!("avx512vnni")),
            ("AVX512_BF16", has!("avx512bf16")),
            ("AVX_VNNI", has!("avxvnni")),
        ];
        if let Some(name) = lacking(built, &extensions) {
            anyhow::bail!(
                "this lai was built on a CPU with {name} for whisper.cpp, and this CPU lacks it; build lai on this machine, or a portable lai with GGML_AVX512=OFF GGML_AVX512_VNNI=OFF GGML_AVX512_VBMI=OFF GGML_AVX512_BF16=OFF GGML_AVX_VNNI=OFF in the environment (after `cargo clean -p whisper-rs-sys`)"
            );
        }
    }
    Ok(())
}

/// The first extension whisper.cpp's system info (`... | AVX512 = 1 | ...`) says it was built
/// with that this CPU lacks.
fn lacking<'a>(built: &str, extensions: &[(&'a str, bool)]) -> Option<&'a str> {
    extensions
        .iter()
        .find(|(name, here)| !here && built.contains(&format!("| {name} = 1")))
        .map(|(name, _)| *name)
}

/// Audio prepared for Whisper: the stretches of speech of a clip joined into one buffer (or the
/// whole clip, without VAD), and the way back to the clip's own timeline.
pub struct Speech<'a> {
    pub samples: Cow<'a, [f32]>,
    /// (start in `samples`, start in the original, length), in seconds, in order.
    pieces: Vec<(f64, f64, f64)>,
}

impl<'a> Speech<'a> {
    fn whole(audio: Cow<'a, [f32]>) -> Speech<'a> {
        let len = audio.len() as f64 / f64::from(crate::audio::TARGET_RATE);
        Speech {
            samples: audio,
            pieces: vec![(0.0, 0.0, len)],
        }
    }

    fn join(audio: &[f32], speech: &[(usize, usize)]) -> Speech<'a> {
        let rate = f64::from(crate::audio::TARGET_RATE);
        let join = (VAD_JOIN_S * rate) as usize;
        let total: usize = speech.iter().map(|(s, e)| e - s + join).sum();
        let mut samples = Vec::with_capacity(total);
        let mut pieces = Vec::with_capacity(speech.len());
        for &(start, end) in speech {
            pieces.push((
                samples.len() as f64 / rate,
                start as f64 / rate,
                (end - start) as f64 / rate,
            ));
            samples.extend_from_slice(&audio[start..end]);
            samples.resize(samples.len() + join, 0.0);
        }
        Speech {
            samples: Cow::Owned(samples),
            pieces,
        }
    }

    /// Seconds of audio Whisper hears.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(crate::audio::TARGET_RATE)
    }

    /// The original time of a time in `samples`. A time in the silence joined after a piece is
    /// that piece's end, unless it is a `start`: Whisper starts a segment after a pause where
    /// the previous one ended, and the words it opens begin with the next piece.
    fn original(&self, t: f64, start: bool) -> f64 {
        let i = self.pieces.partition_point(|p| p.0 <= t).saturating_sub(1);
        let (at, from, len) = self.pieces[i];
        match self.pieces.get(i + 1) {
            Some(&(_, next, _)) if start && t - at >= len => next,
            _ => from + (t - at).clamp(0.0, len),
        }
    }
}

impl Transcript {
    /// Maps every segment and word time through `f` (given whether the time is a start).
    fn map_times(&mut self, f: &dyn Fn(f64, bool) -> f64) {
        for segment in &mut self.segments {
            segment.map_times(f);
        }
    }
}

impl Segment {
    /// A start never passes its end: a segment wholly in a pause is put where the pause begins.
    fn map_times(&mut self, f: &dyn Fn(f64, bool) -> f64) {
        self.end_s = f(self.end_s, false);
        self.start_s = f(self.start_s, true).min(self.end_s);
        for word in &mut self.words {
            word.end_s = f(word.end_s, false);
            word.start_s = f(word.start_s, true).min(word.end_s);
        }
    }
}

/// Groups a segment's text tokens into words (a token starting with a space starts a word),
/// timed by `at` (centiseconds in, seconds out).
fn words(tokens: &[(TokenData, String)], at: &dyn Fn(i64) -> f64) -> Vec<Word> {
    let mut words: Vec<(Word, usize)> = Vec::new();
    for (data, piece) in tokens {
        match words.last_mut() {
            Some((word, n)) if !piece.starts_with(' ') => {
                word.text.push_str(piece);
                word.end_s = at(data.t1);
                word.probability += data.p;
                *n += 1;
            }
            _ => words.push((
                Word {
                    start_s: at(data.t0),
                    end_s: at(data.t1),
                    text: piece.clone(),
                    probability: data.p,
                },
                1,
            )),
        }
    }
    words
        .into_iter()
        .filter_map(|(mut word, n)| {
            word.text = word.text.trim().to_string();
            word.probability /= n as f32;
            (!word.text.is_empty()).then_some(word)
        })
        .collect()
}

/// Whether `code` is a language Whisper knows ("en", "de", ...).
pub fn is_language(code: &str) -> bool {
    whisper_rs::get_lang_id(code).is_some()
}

/// Whisper's non-speech markers ("[BLANK_AUDIO]", "(silence)", "[Music]"), not words anyone said.
fn is_annotation(text: &str) -> bool {
    text.is_empty()
        || (text.starts_with('[') && text.ends_with(']'))
        || (text.starts_with('(') && text.ends_with(')'))
}

/// What packing needs of a Whisper engine: one call that hears a window of samples. The
/// engine is `Transcriber`; unit tests of `pack` give a fake that returns the segments a test
/// lays out, so the mapping of segments to clips is tested without a model.
pub trait Hear {
    fn hear(
        &mut self,
        samples: &[f32],
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Transcript>;
}

impl Hear for Transcriber {
    fn hear(
        &mut self,
        samples: &[f32],
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Transcript> {
        self.decode(samples, options, give_up)
    }
}

/// Hears prepared speech on its own, times on the timeline of the audio it came from.
pub fn hear_speech(
    engine: &mut impl Hear,
    speech: &Speech,
    options: &Options,
    give_up: &dyn Fn() -> bool,
) -> anyhow::Result<Transcript> {
    let mut transcript = engine.hear(&speech.samples, options, give_up)?;
    transcript.map_times(&|t, start| speech.original(t, start));
    Ok(transcript)
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

    // A binary built with an extension this CPU lacks is caught by name; one built without it,
    // or a CPU that has it, passes.
    #[test]
    fn extensions_the_cpu_lacks() {
        let built = "CPU : AVX2 = 1 | AVX512 = 1 | AVX512_VBMI = 0 | AVX512_VNNI = 1 |";
        let cpu = |avx512, vnni| {
            [
                ("AVX512", avx512),
                ("AVX512_VBMI", false),
                ("AVX512_VNNI", vnni),
            ]
        };
        assert_eq!(lacking(built, &cpu(true, true)), None);
        assert_eq!(lacking(built, &cpu(false, true)), Some("AVX512"));
        assert_eq!(lacking(built, &cpu(true, false)), Some("AVX512_VNNI"));
    }

    // Times on the joined speech map back to the clip: an end in the silence after a piece is
    // that piece's end, a start there is the next piece's start (where the words after the
    // pause are), and a segment wholly in the pause never starts after it ends.
    #[test]
    fn joined_speech_maps_back() {
        let audio = vec![0.0; 16_000 * 10];
        // Speech at 1-2 s and 6-7 s: joined, the second piece starts at 1.1 s.
        let speech = Speech::join(&audio, &[(16_000, 32_000), (96_000, 112_000)]);
        let segment = |start: f64, end: f64| {
            let mut s = Segment {
                start_s: start,
                end_s: end,
                text: String::new(),
                confidence: 1.0,
                words: Vec::new(),
            };
            s.map_times(&|t, start| speech.original(t, start));
            (s.start_s, s.end_s)
        };
        let close =
            |(a, b): (f64, f64), (x, y): (f64, f64)| (a - x).abs() < 1e-9 && (b - y).abs() < 1e-9;
        assert!(close(segment(0.0, 1.0), (1.0, 2.0)));
        assert!(
            close(segment(1.0, 1.6), (6.0, 6.5)),
            "{:?}",
            segment(1.0, 1.6)
        );
        assert!(close(segment(1.1, 2.1), (6.0, 7.0)));
        assert!(
            close(segment(1.02, 1.08), (2.0, 2.0)),
            "{:?}",
            segment(1.02, 1.08)
        );
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

    fn text(transcript: &Transcript) -> String {
        transcript
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }

    // The tiny.en model converted from CTranslate2 loads in whisper.cpp and transcribes speech,
    // with and without the converted Silero VAD; words are timed inside their segment.
    #[test]
    fn converted_models_transcribe_speech() {
        let _engine = crate::engines::one_engine_at_a_time();
        let store = store();
        let model = store
            .resolve(&crate::models::ModelRef::Catalog("whisper-tiny-en".into()))
            .unwrap();
        let vad = store
            .resolve(&crate::models::ModelRef::Catalog("silero-vad".into()))
            .unwrap();
        let whisper = WhisperModel::load(model.file("model").unwrap(), Device::Cpu).unwrap();
        let audio = wav("hello.wav");
        for vad_model in [None, vad.file("vad").map(Path::to_path_buf)] {
            let mut transcriber = whisper.transcriber().unwrap();
            let options = Options {
                threads: 2,
                word_timestamps: true,
                vad_model,
                ..Options::default()
            };
            let transcript = transcriber.transcribe(&audio, &options, &|| false).unwrap();
            let said = text(&transcript);
            for word in ["hello", "john", "smith", "london"] {
                assert!(said.contains(word), "`{word}` missing from {said:?}");
            }
            assert_eq!(transcript.language.as_deref(), Some("en"));
            let segment = &transcript.segments[0];
            assert!(segment.confidence > 0.3 && segment.confidence <= 1.0);
            let words = &segment.words;
            assert!(
                words
                    .iter()
                    .any(|w| w.text.to_lowercase().contains("hello")),
                "{words:?}"
            );
            for pair in words.windows(2) {
                assert!(pair[0].start_s <= pair[1].start_s, "{words:?}");
            }
            for w in words {
                assert!(w.start_s >= segment.start_s - 0.01 && w.end_s <= segment.end_s + 0.01);
            }
        }
        // Silence with VAD gives no text at all, not hallucinated words.
        let options = Options {
            threads: 2,
            vad_model: vad.file("vad").map(Path::to_path_buf),
            ..Options::default()
        };
        let mut transcriber = whisper.transcriber().unwrap();
        let said = text(
            &transcriber
                .transcribe(&wav("silence.wav"), &options, &|| false)
                .unwrap(),
        );
        assert!(said.trim().is_empty(), "silence gave {said:?}");
    }

    // The multilingual base model converted from CTranslate2 loads, detects English and
    // transcribes.
    #[test]
    fn converted_base_model_transcribes() {
        let _engine = crate::engines::one_engine_at_a_time();
        let model = store()
            .resolve(&crate::models::ModelRef::Catalog("whisper-base".into()))
            .unwrap();
        let whisper = WhisperModel::load(model.file("model").unwrap(), Device::Cpu).unwrap();
        let options = Options {
            threads: 2,
            ..Options::default()
        };
        let transcript = whisper
            .transcriber()
            .unwrap()
            .transcribe(&wav("hello.wav"), &options, &|| false)
            .unwrap();
        let said = text(&transcript);
        assert!(said.contains("john") && said.contains("london"), "{said:?}");
        assert_eq!(transcript.language.as_deref(), Some("en"));
    }
}
