//! Audio decoding: any container and codec symphonia knows, plus Opus through libopus, to 16 kHz
//! mono f32, in chunks.
//!
//! `decode` streams a file: packets are decoded, downmixed to mono, resampled (rubato, FFT) to
//! 16 kHz and handed out as chunks of about `chunk_s` seconds, each cut at the quietest moment
//! near its end so words are not split. Memory is bounded by one chunk, whatever the file's
//! length. Problems (unknown container, a codec lai cannot decode, truncation, corrupt data)
//! come back as a message for the item, never a panic.

use std::fs::File;
use std::path::Path;
use std::sync::LazyLock;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CodecRegistry, CodecType, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The rate every chunk is delivered at (Whisper's).
pub const TARGET_RATE: u32 = 16_000;

/// How far back from a chunk's nominal end to look for a quiet place to cut.
const CUT_SEARCH_S: f64 = 10.0;
/// Frame length for finding the quietest place.
const CUT_FRAME: usize = 320;
/// Decode errors tolerated before a file counts as corrupt (one glitchy frame is not fatal).
const MAX_BAD_PACKETS: usize = 8;
/// Sample rates a real recording can have. A header outside them is damaged or hostile, and is
/// refused before a resampler sized from it is allocated.
pub const RATES_HZ: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// symphonia's decoders and libopus's: Opus in Ogg (`.opus`, `.ogg`) and WebM/Matroska is what
/// Teams, Zoom, WebRTC, WhatsApp and browsers record.
static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
    let mut registry = CodecRegistry::new();
    symphonia::default::register_enabled_codecs(&mut registry);
    registry.register_all::<symphonia_adapter_libopus::OpusDecoder>();
    registry
});

/// What the decoder learned about a file.
#[derive(Clone, Debug)]
pub struct AudioInfo {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    /// Seconds of audio delivered.
    pub duration_s: f64,
}

/// A chunk of 16 kHz mono audio and where it starts in the file.
pub struct Chunk {
    pub start_s: f64,
    pub samples: Vec<f32>,
}

/// Decodes `path`, calling `on_chunk` per chunk of about `chunk_s` seconds (the last one may be
/// shorter). `channel` picks one channel (0 is the first; one the file lacks is silence); `None`
/// mixes them all down. Stops early, without error, if `on_chunk` returns false. `give_up` is
/// asked before every packet; when it says so, decoding ends with an error (the stage's
/// `timeout`).
///
/// With `even_for: Some(n)` (chunks heard n at a time, by parallel workers) the chunks are cut
/// evenly when the file says how long it is (see `even_chunk_s`), so that the last ones finish
/// together instead of one short chunk at the end running alone; with `None` every chunk but the
/// last is about `chunk_s` long.
pub fn decode(
    path: &Path,
    chunk_s: f64,
    even_for: Option<usize>,
    channel: Option<usize>,
    give_up: &dyn Fn() -> bool,
    on_chunk: &mut dyn FnMut(Chunk) -> bool,
) -> Result<AudioInfo, String> {
    let file = File::open(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "; a confined run reads only its inputs and models: give the file's folder as an input too, or run with --no-confine"
        } else {
            ""
        };
        format!("cannot open {}: {e}{hint}", path.display())
    })?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err("file is empty (0 bytes); there is no audio to transcribe".into());
    }
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| {
            format!(
                "not a readable audio/video file ({e}); supported: WAV, MP3, FLAC, OGG (Vorbis, Opus), OPUS, M4A/MP4 (AAC, ALAC), WebM/MKV (Opus, Vorbis, AAC, FLAC)"
            )
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(
            "the file has no audio track in a codec lai decodes (PCM, MP3, FLAC, Vorbis, Opus, AAC, ALAC); \
             convert it first, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`",
        )?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let registry = &*CODECS;
    let codec = registry
        .get_codec(params.codec)
        .map_or_else(|| codec_name(params.codec), |d| d.short_name.to_string());
    let mut decoder = registry
        .make(&params, &DecoderOptions::default())
        .map_err(|e| {
            format!(
                "the audio codec ({codec}) is not supported ({e}); convert the file first, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"
            )
        })?;
    let sample_rate = params
        .sample_rate
        .ok_or("the audio track has no sample rate")?;
    if !RATES_HZ.contains(&sample_rate) {
        return Err(format!(
            "the audio track declares an implausible sample rate of {sample_rate} Hz (expected {} to {} Hz); the file is damaged",
            RATES_HZ.start(),
            RATES_HZ.end()
        ));
    }
    let expected_frames = params.n_frames;

    let chunk_s = match (even_for, expected_frames) {
        (Some(at_once), Some(frames)) => {
            even_chunk_s(frames as f64 / f64::from(sample_rate), chunk_s, at_once)
        }
        _ => chunk_s,
    };
    let mut chunker = Chunker::new(sample_rate, chunk_s)?;
    let mut channels = params.channels.map_or(0, |c| c.count());
    let mut decoded_frames: u64 = 0;
    let mut bad_packets = 0;
    let mut interleaved: Option<SampleBuffer<f32>> = None;
    let mut mono = Vec::new();
    loop {
        if give_up() {
            return Err("decoding was stopped: out of time".into());
        }
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(format!("cannot read the {codec} stream: {e}")),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::DecodeError(e)) => {
                bad_packets += 1;
                if bad_packets > MAX_BAD_PACKETS {
                    return Err(format!(
                        "corrupt {codec} data ({e}) in more than {MAX_BAD_PACKETS} places"
                    ));
                }
                continue;
            }
            Err(e) => return Err(format!("cannot decode the {codec} stream: {e}")),
        };
        let spec = *decoded.spec();
        channels = spec.channels.count();
        let frames = decoded.frames();
        let buffer = match &mut interleaved {
            Some(b) if b.capacity() >= frames * channels => b,
            slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buffer.copy_interleaved_ref(decoded);
        decoded_frames += frames as u64;
        mono.clear();
        let frames = buffer.samples().chunks_exact(channels.max(1));
        match channel {
            None => mono.extend(frames.map(|f| f.iter().sum::<f32>() / f.len() as f32)),
            Some(c) => mono.extend(frames.map(|f| f.get(c).copied().unwrap_or(0.0))),
        }
        if !chunker.push(&mono, on_chunk)? {
            return Ok(chunker.info(codec, sample_rate, channels));
        }
    }
    if let Some(expected) = expected_frames {
        // Containers that know their length reveal truncation; allow for encoder padding.
        if expected > 0 && decoded_frames + u64::from(sample_rate) / 10 < expected * 98 / 100 {
            return Err(format!(
                "the file is truncated: it holds {:.1} s of {codec} audio but declares {:.1} s",
                decoded_frames as f64 / f64::from(sample_rate),
                expected as f64 / f64::from(sample_rate)
            ));
        }
    }
    if decoded_frames == 0 {
        return Err(format!("no {codec} audio could be decoded from the file"));
    }
    chunker.finish(on_chunk)?;
    Ok(chunker.info(codec, sample_rate, channels))
}

/// Names of codecs symphonia can recognise in a container but not decode.
fn codec_name(codec: CodecType) -> String {
    use symphonia::core::codecs::*;
    let name = match codec {
        CODEC_TYPE_SPEEX => "Speex",
        CODEC_TYPE_WMA => "WMA",
        CODEC_TYPE_EAC3 => "E-AC-3",
        CODEC_TYPE_AC4 => "AC-4",
        CODEC_TYPE_DCA => "DTS",
        CODEC_TYPE_MUSEPACK => "Musepack",
        CODEC_TYPE_WAVPACK => "WavPack",
        CODEC_TYPE_MONKEYS_AUDIO => "Monkey's Audio",
        CODEC_TYPE_TTA => "TTA",
        CODEC_TYPE_ATRAC1 | CODEC_TYPE_ATRAC3 | CODEC_TYPE_ATRAC3PLUS | CODEC_TYPE_ATRAC9 => {
            "ATRAC"
        }
        other => return format!("unknown codec {other}"),
    };
    name.to_string()
}

/// The chunk length for `Chunker` that cuts `total_s` of audio into a multiple of `at_once`
/// nearly equal chunks (each cut within `CUT_SEARCH_S` after an even share, so the last chunk is
/// never a short tail), as many as `chunk_s` asks for, rounded; or `chunk_s` itself when even
/// chunks would be shorter than half of it (a file of one or two chunks' length, heard alone).
fn even_chunk_s(total_s: f64, chunk_s: f64, at_once: usize) -> f64 {
    let at_once = at_once.max(1);
    let parts = ((total_s / chunk_s).round().max(1.0) as usize).next_multiple_of(at_once);
    let even = total_s / parts as f64;
    if even < chunk_s / 2.0 {
        return chunk_s;
    }
    // The chunker looks for its cut this far back from a chunk's length.
    even + even.min(CUT_SEARCH_S)
}

/// Resamples mono audio to 16 kHz and cuts it into chunks at quiet places.
struct Chunker {
    resampler: Option<FftFixedIn<f32>>,
    /// Input waiting for a full resampler block.
    pending: Vec<f32>,
    /// Resampled output not yet handed out.
    buffer: Vec<f32>,
    /// Output samples at the start that are resampler delay, to drop.
    skip: usize,
    chunk_len: usize,
    emitted: usize,
    /// Input frames pushed, and their rate: the output is cut to exactly their length.
    frames_in: u64,
    rate: u32,
}

impl Chunker {
    fn new(rate: u32, chunk_s: f64) -> Result<Chunker, String> {
        let resampler = if rate == TARGET_RATE {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(rate as usize, TARGET_RATE as usize, 1024, 2, 1)
                    .map_err(|e| format!("cannot resample from {rate} Hz: {e}"))?,
            )
        };
        let skip = resampler.as_ref().map_or(0, |r| r.output_delay());
        Ok(Chunker {
            resampler,
            pending: Vec::new(),
            buffer: Vec::new(),
            skip,
            chunk_len: ((chunk_s * f64::from(TARGET_RATE)) as usize).max(TARGET_RATE as usize),
            emitted: 0,
            frames_in: 0,
            rate,
        })
    }

    fn push(
        &mut self,
        mono: &[f32],
        on_chunk: &mut dyn FnMut(Chunk) -> bool,
    ) -> Result<bool, String> {
        self.frames_in += mono.len() as u64;
        match &mut self.resampler {
            None => self.buffer.extend_from_slice(mono),
            Some(r) => {
                self.pending.extend_from_slice(mono);
                let mut used = 0;
                while self.pending.len() - used >= r.input_frames_next() {
                    let need = r.input_frames_next();
                    let out = r
                        .process(&[&self.pending[used..used + need]], None)
                        .map_err(|e| format!("resampling failed: {e}"))?;
                    used += need;
                    take_output(&mut self.skip, &mut self.buffer, &out[0]);
                }
                self.pending.drain(..used);
            }
        }
        self.emit_full(on_chunk)
    }

    /// Emits every complete chunk, each cut at the quietest frame near its end.
    fn emit_full(&mut self, on_chunk: &mut dyn FnMut(Chunk) -> bool) -> Result<bool, String> {
        while self.buffer.len() >= self.chunk_len {
            let search = ((CUT_SEARCH_S * f64::from(TARGET_RATE)) as usize).min(self.chunk_len / 2);
            let cut = quietest_cut(&self.buffer[self.chunk_len - search..self.chunk_len])
                + self.chunk_len
                - search;
            // An exact-size copy: the buffer keeps its capacity, so memory stays at one chunk.
            let samples = self.buffer[..cut].to_vec();
            self.buffer.drain(..cut);
            if !self.emit(samples, on_chunk) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn emit(&mut self, samples: Vec<f32>, on_chunk: &mut dyn FnMut(Chunk) -> bool) -> bool {
        let start_s = self.emitted as f64 / f64::from(TARGET_RATE);
        self.emitted += samples.len();
        on_chunk(Chunk { start_s, samples })
    }

    fn finish(&mut self, on_chunk: &mut dyn FnMut(Chunk) -> bool) -> Result<(), String> {
        if let Some(r) = &mut self.resampler {
            let pending = std::mem::take(&mut self.pending);
            if !pending.is_empty() {
                let out = r
                    .process_partial(Some(&[&pending[..]]), None)
                    .map_err(|e| format!("resampling failed: {e}"))?;
                take_output(&mut self.skip, &mut self.buffer, &out[0]);
            }
            // Flush the resampler's delay line so the file's last moment is not lost.
            let out = r
                .process_partial::<&[f32]>(None, None)
                .map_err(|e| format!("resampling failed: {e}"))?;
            take_output(&mut self.skip, &mut self.buffer, &out[0]);
            // The flush pads with zeros; keep exactly the input's duration.
            let total = (self.frames_in * u64::from(TARGET_RATE)).div_ceil(u64::from(self.rate));
            let keep = (total as usize).saturating_sub(self.emitted);
            self.buffer.truncate(keep);
        }
        if !self.emit_full(on_chunk)? {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.buffer);
        if !rest.is_empty() {
            self.emit(rest, on_chunk);
        }
        Ok(())
    }

    fn info(&self, codec: String, sample_rate: u32, channels: usize) -> AudioInfo {
        AudioInfo {
            codec,
            sample_rate,
            channels,
            duration_s: (self.emitted + self.buffer.len()) as f64 / f64::from(TARGET_RATE),
        }
    }
}

/// Appends resampled output, dropping what remains of the resampler's initial delay.
fn take_output(skip: &mut usize, buffer: &mut Vec<f32>, out: &[f32]) {
    let n = (*skip).min(out.len());
    *skip -= n;
    buffer.extend_from_slice(&out[n..]);
}

/// Index (within `window`) of the start of its quietest frame.
fn quietest_cut(window: &[f32]) -> usize {
    window
        .chunks(CUT_FRAME)
        .enumerate()
        .map(|(i, frame)| (i * CUT_FRAME, frame.iter().map(|s| s * s).sum::<f32>()))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(window.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/audio")
    }

    // A 16 kHz WAV decodes to its own length; chunks are cut and numbered in time.
    #[test]
    fn wav_chunks() {
        let mut chunks = Vec::new();
        let info = decode(
            &samples_dir().join("hello.wav"),
            1.0,
            None,
            None,
            &|| false,
            &mut |c| {
                chunks.push((c.start_s, c.samples.len()));
                true
            },
        )
        .unwrap();
        assert_eq!(info.sample_rate, 16_000);
        assert!(
            (info.duration_s - 3.727).abs() < 0.01,
            "{}",
            info.duration_s
        );
        assert!(chunks.len() >= 3);
        let total: usize = chunks.iter().map(|c| c.1).sum();
        assert_eq!(total, 59_627);
        assert_eq!(chunks[0].0, 0.0);
    }

    // Not audio at all, and empty files, are clear errors.
    #[test]
    fn bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "this is not audio at all, just text").unwrap();
        let err = decode(&text, 30.0, None, None, &|| false, &mut |_| true).unwrap_err();
        assert!(err.contains("not a readable audio"), "{err}");
        let empty = dir.path().join("empty.mp3");
        std::fs::write(&empty, b"").unwrap();
        assert!(
            decode(&empty, 30.0, None, None, &|| false, &mut |_| true)
                .unwrap_err()
                .contains("empty")
        );
    }

    /// A 16-bit mono PCM WAV file declaring `rate`, holding `frames` frames of a tone.
    fn wav_at(path: &Path, rate: u32, frames: u32) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(36 + frames * 2).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 0, 1, 0]);
        bytes.extend_from_slice(&rate.to_le_bytes());
        bytes.extend_from_slice(&(rate.wrapping_mul(2)).to_le_bytes());
        bytes.extend_from_slice(&[2, 0, 16, 0]);
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&(frames * 2).to_le_bytes());
        for i in 0..frames {
            let s = ((i as f32 * 0.1).sin() * 8000.0) as i16;
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }

    // A sample rate outside 1 kHz..384 kHz is an item error (no resampler is built for it);
    // the bounds themselves decode.
    #[test]
    fn implausible_sample_rates() {
        let dir = tempfile::tempdir().unwrap();
        for rate in [8, 999, 384_001, 4_000_000] {
            let path = dir.path().join(format!("{rate}.wav"));
            wav_at(&path, rate, 4000);
            let err = decode(&path, 30.0, None, None, &|| false, &mut |_| true).unwrap_err();
            assert!(err.contains("implausible sample rate"), "{rate}: {err}");
        }
        for rate in [1_000, 384_000] {
            let path = dir.path().join(format!("{rate}.wav"));
            wav_at(&path, rate, rate);
            let info = decode(&path, 30.0, None, None, &|| false, &mut |_| true).unwrap();
            assert!((info.duration_s - 1.0).abs() < 0.01, "{rate}: {info:?}");
        }
    }

    // Decoding asks `give_up` as it goes and stops with an error when told to.
    #[test]
    fn decoding_gives_up() {
        let err = decode(
            &samples_dir().join("hello.wav"),
            30.0,
            None,
            None,
            &|| true,
            &mut |_| true,
        )
        .unwrap_err();
        assert!(err.contains("out of time"), "{err}");
    }

    // A file cut for two chunks at a time gets an even number of chunks of equal length (as many
    // as `chunk` asks, rounded), cut in the `CUT_SEARCH_S` after each share; one too short for
    // two chunks of half a `chunk` each keeps the usual length.
    #[test]
    fn even_chunks() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // 242.6 s: 120 + 120 + a 2.6 s tail before; now two chunks of 121.3 s.
        assert!(close(even_chunk_s(242.6, 120.0, 2), 121.3 + CUT_SEARCH_S));
        assert!(close(even_chunk_s(242.6, 120.0, 1), 121.3 + CUT_SEARCH_S));
        assert!(close(even_chunk_s(300.0, 120.0, 2), 75.0 + CUT_SEARCH_S));
        assert!(close(
            even_chunk_s(3600.0, 120.0, 4),
            3600.0 / 32.0 + CUT_SEARCH_S
        ));
        assert!(close(even_chunk_s(130.0, 120.0, 2), 65.0 + CUT_SEARCH_S));
        assert!(close(even_chunk_s(100.0, 120.0, 2), 120.0));
        assert!(close(even_chunk_s(12.0, 30.0, 1), 30.0));
        assert!(close(even_chunk_s(12.0, 4.0, 1), 8.0));
    }

    // Decoding a 70 s file in 30 s chunks: fixed chunks (how a caller learns whether a file is
    // longer than a chunk) are at most 30 s, the last a tail; chunks for two at once are two,
    // each cut within `CUT_SEARCH_S` after 35 s.
    #[test]
    fn fixed_and_even_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seventy.wav");
        wav_at(&path, 16_000, 70 * 16_000);
        let lengths = |even_for| {
            let mut lengths = Vec::new();
            decode(&path, 30.0, even_for, None, &|| false, &mut |c| {
                lengths.push(c.samples.len() as f64 / 16_000.0);
                true
            })
            .unwrap();
            lengths
        };
        let fixed = lengths(None);
        assert!(
            fixed.len() == 3 && fixed.iter().all(|&s| s <= 30.0),
            "{fixed:?}"
        );
        let even = lengths(Some(2));
        assert!(
            even.len() == 2 && (35.0..=45.0).contains(&even[0]),
            "{even:?}"
        );
    }

    // The quietest frame is found.
    #[test]
    fn cuts_at_silence() {
        let mut window = vec![0.5f32; 3200];
        window[1600..1920].fill(0.0);
        assert_eq!(quietest_cut(&window), 1600);
    }
}
