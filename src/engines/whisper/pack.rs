//! Window packing: several short clips heard in one Whisper window.
//!
//! Whisper's encoder always works on a 30-second window, so a 5-second clip alone pays for 30
//! seconds of encoder work. `Packer` groups prepared clips (`Speech`) into windows, and
//! `Transcriber::transcribe_packed` lays a window's clips out one after another with silence
//! between them, decodes it with one whisper.cpp call, and hands each clip the segments that
//! fall on its own stretch of the window, mapped back to its own timeline.
//!
//! No text of one clip may land in another. Whisper's segment *ends* are good to a few tenths
//! of a second, but a segment's start is just where the previous segment ended, so a segment
//! is given to the clip its end falls in, and only if the clip before had no speech left after
//! the segment's start. Any other segment, or a clip with sound that got no segment (Whisper
//! sometimes stops early, or its words may sit in a neighbour's segment), makes the clips
//! concerned unclear: the caller packs them again with other neighbours, and transcribes a clip
//! that is unclear twice alone. Nothing here knows files or items; callers key clips.

use std::borrow::Cow;

use super::{Hear, Options, Segment, Speech, Transcriber, Transcript, hear_speech};
use crate::audio::TARGET_RATE;

/// Audio in one packed window, gaps included: a little under Whisper's 30 s, so the last
/// clip's end is not cut off into a second window.
pub const WINDOW_S: f64 = 29.0;
/// Longest clip worth packing: one that leaves room for another clip of a few seconds.
pub const MAX_CLIP_S: f64 = WINDOW_S - 2.0 * GAP_S - 3.0;
/// A window filled this far is heard; one with more room waits for clips that fill it better
/// (the clips of a folder are often too long to pair with the next one that comes)...
const FULL_S: f64 = WINDOW_S - 5.0;
/// ... until this many windows' worth of clips wait (or no more will come).
const WAITING_WINDOWS: f64 = 3.0;
/// Silence laid between two clips. Whisper ends segments at such pauses; the wider the gap,
/// the less often a segment runs across it (measured: 2 s needs a third fewer second tries
/// than 1 s).
const GAP_S: f64 = 2.0;
/// How far a segment's end may reach into the next clip and still be the previous clip's
/// (Whisper's end times are late by up to a few tenths of a second).
const END_TOLERANCE_S: f64 = 0.3;
/// How much of a clip may lie after the start of a segment given to the next clip: Whisper's
/// start is the previous segment's end, which is often a few tenths early, and a clip ends
/// with a little silence (the VAD's padding).
const START_TOLERANCE_S: f64 = 0.5;
/// RMS below which a clip (without VAD) is silence, and so may rightly get no segment.
const SILENCE_RMS: f32 = 1e-3;

/// Clips waiting to be packed, and the choice of which go together.
pub struct Packer<K> {
    /// Each clip, and where it may go.
    pending: Vec<(K, Speech<'static>, Place)>,
}

/// Where a waiting clip may go in a window.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Anywhere,
    /// It must open its window (see `push_first`).
    First,
    /// It must have its window to itself (see `push_alone`).
    Alone,
}

impl<K> Default for Packer<K> {
    fn default() -> Self {
        Packer {
            pending: Vec::new(),
        }
    }
}

impl<K> Packer<K> {
    pub fn push(&mut self, key: K, speech: Speech<'static>) {
        self.pending.push((key, speech, Place::Anywhere));
    }

    /// Queues a clip Whisper did not reach in its last window, to open a window of its own:
    /// Whisper always hears a window's first clip.
    pub fn push_first(&mut self, key: K, speech: Speech<'static>) {
        self.pending.push((key, speech, Place::First));
    }

    /// Queues a clip to be heard alone: one too long to share a window, or one whose share of
    /// packed windows stayed unclear.
    pub fn push_alone(&mut self, key: K, speech: Speech<'static>) {
        self.pending.push((key, speech, Place::Alone));
    }

    /// The next window's clips: a clip queued with `push_alone` by itself; else the fullest
    /// window the waiting clips make (longest first, so short ones are left to fill gaps
    /// later), once it is full to within `WINDOW_S - FULL_S` or `WAITING_WINDOWS` windows' worth
    /// wait (with `drain`, at once); a clip queued with `push_first` opens the window.
    pub fn window(&mut self, drain: bool) -> Option<Vec<(K, Speech<'static>)>> {
        if let Some(i) = self.pending.iter().position(|(.., p)| *p == Place::Alone) {
            let (key, speech, _) = self.pending.remove(i);
            return Some(vec![(key, speech)]);
        }
        let needed: f64 = self
            .pending
            .iter()
            .map(|(_, s, _)| s.duration_s() + GAP_S)
            .sum();
        if self.pending.is_empty() || (!drain && needed < WINDOW_S + GAP_S) {
            return None;
        }
        self.pending.sort_by_key(|(_, s, place)| {
            (*place != Place::First, std::cmp::Reverse(s.samples.len()))
        });
        // Each clip in turn opens a window (only the first, if it must), filled longest first;
        // the fullest is taken.
        let openers = match self.pending[0].2 {
            Place::First => 1,
            _ => self.pending.len(),
        };
        let (used, taken) = (0..openers)
            .rev()
            .map(|open| self.fill(open))
            .max_by(|a, b| a.0.total_cmp(&b.0))?;
        // A window with room to spare waits for clips that fill it, while few enough wait.
        if !drain && used < FULL_S && needed < WAITING_WINDOWS * (WINDOW_S + GAP_S) {
            return None;
        }
        let (window, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .zip(taken)
            .partition(|(_, taken)| *taken);
        self.pending = kept.into_iter().map(|(clip, _)| clip).collect();
        Some(window.into_iter().map(|((k, s, _), _)| (k, s)).collect())
    }

    /// The window `pending[open]` opens, filled with the longest other clips that fit (the
    /// pending clips are sorted longest first): its length, gaps included, and which it takes.
    fn fill(&self, open: usize) -> (f64, Vec<bool>) {
        let mut used = self.pending[open].1.duration_s();
        let mut taken = vec![false; self.pending.len()];
        taken[open] = true;
        for (j, (_, speech, place)) in self.pending.iter().enumerate() {
            let len = speech.duration_s() + GAP_S;
            if j != open && *place == Place::Anywhere && used + len <= WINDOW_S {
                used += len;
                taken[j] = true;
            }
        }
        (used, taken)
    }
}

/// Where each clip lies in a packed window, in seconds.
struct Layout {
    /// (start, end) of each clip, in order, `GAP_S` apart.
    spans: Vec<(f64, f64)>,
}

/// Whose a segment of a packed window is.
#[derive(Debug, PartialEq)]
enum Owner {
    Clip(usize),
    /// It may hold words of these clips.
    Across(Vec<usize>),
}

impl Layout {
    fn new(durations: impl IntoIterator<Item = f64>) -> Layout {
        let mut at = 0.0;
        let spans = durations
            .into_iter()
            .map(|d| {
                let span = (at, at + d);
                at += d + GAP_S;
                span
            })
            .collect();
        Layout { spans }
    }

    /// The clip a segment from `start` to `end` (window seconds) belongs to: the one its end
    /// reaches into, unless a clip before that one still had sound after `start`.
    fn owner(&self, start: f64, end: f64) -> Owner {
        let last = self
            .spans
            .iter()
            .rposition(|&(a, _)| end > a + END_TOLERANCE_S)
            .unwrap_or(0);
        let first = self.spans[..last]
            .iter()
            .position(|&(_, b)| start < b - START_TOLERANCE_S)
            .unwrap_or(last);
        if first == last {
            Owner::Clip(last)
        } else {
            Owner::Across((first..=last).collect())
        }
    }

    /// A window time on clip `i`'s own timeline (seconds from its start, within its length).
    fn local(&self, i: usize, t: f64) -> f64 {
        let (a, b) = self.spans[i];
        t.clamp(a, b) - a
    }
}

/// What a packed window made of one clip.
#[derive(Debug)]
pub enum Heard {
    /// Its own segments, on its own timeline.
    Own(Transcript),
    /// Its share of the window could not be told apart: hear it again.
    Unclear,
    /// Whisper stopped before it (it judged the rest of the window silent): hear it again,
    /// first in a window.
    Unheard,
}

impl Transcriber {
    /// Transcribes several prepared clips in one Whisper window (see `transcribe_packed`).
    /// Only call it when `can_pack`.
    pub fn transcribe_packed(
        &mut self,
        clips: &[&Speech],
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> Vec<anyhow::Result<Heard>> {
        transcribe_packed(self, clips, options, give_up)
    }
}

/// Transcribes several prepared clips in one Whisper window (see the module doc); one result
/// per clip, in order. A failed call fails every clip only when `give_up` says so; otherwise
/// its clips are unclear (one of them may be what whisper.cpp cannot take, and fails alone
/// later).
pub fn transcribe_packed(
    engine: &mut impl Hear,
    clips: &[&Speech],
    options: &Options,
    give_up: &dyn Fn() -> bool,
) -> Vec<anyhow::Result<Heard>> {
    if clips.len() == 1 {
        return vec![hear_speech(engine, clips[0], options, give_up).map(Heard::Own)];
    }
    let layout = Layout::new(clips.iter().map(|c| c.duration_s()));
    let rate = f64::from(TARGET_RATE);
    let gap = (GAP_S * rate) as usize;
    let mut window: Vec<f32> =
        Vec::with_capacity(clips.iter().map(|c| c.samples.len() + gap).sum());
    for (i, clip) in clips.iter().enumerate() {
        if i > 0 {
            window.resize(window.len() + gap, 0.0);
        }
        debug_assert!((window.len() as f64 / rate - layout.spans[i].0).abs() < 1e-3);
        window.extend_from_slice(&clip.samples);
    }
    let heard = match engine.hear(&window, options, give_up) {
        Ok(heard) => heard,
        Err(e) if give_up() => {
            let reason = format!("{e:#}");
            return clips
                .iter()
                .map(|_| Err(anyhow::anyhow!("{reason}")))
                .collect();
        }
        Err(_) => return clips.iter().map(|_| Ok(Heard::Unclear)).collect(),
    };
    let mut own: Vec<Vec<Segment>> = clips.iter().map(|_| Vec::new()).collect();
    let mut unclear = vec![false; clips.len()];
    for segment in heard.segments {
        match layout.owner(segment.start_s, segment.end_s) {
            Owner::Clip(i) => own[i].push(segment),
            Owner::Across(clips) => clips.into_iter().for_each(|i| unclear[i] = true),
        }
    }
    // Clips after the last segment's end were not heard at all. A clip before it with sound
    // but no segment may have its words in the segment before (whose end fell short).
    let heard_to = own
        .iter()
        .rposition(|segments| !segments.is_empty())
        .map_or(0, |i| i + 1);
    for i in 0..heard_to {
        if own[i].is_empty() && !unclear[i] && rms(&clips[i].samples) >= SILENCE_RMS {
            unclear[i.saturating_sub(1)..=i].fill(true);
        }
    }
    own.into_iter()
        .enumerate()
        .map(|(i, mut segments)| {
            if unclear[i] {
                return Ok(Heard::Unclear);
            }
            if i >= heard_to && rms(&clips[i].samples) >= SILENCE_RMS {
                return Ok(Heard::Unheard);
            }
            for segment in &mut segments {
                segment.map_times(&|t, start| clips[i].original(layout.local(i, t), start));
            }
            Ok(Heard::Own(Transcript {
                language: heard.language.clone(),
                segments,
            }))
        })
        .collect()
}

fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

impl Speech<'_> {
    /// The same speech owning its samples, to wait in a `Packer`.
    pub fn into_owned(self) -> Speech<'static> {
        Speech {
            samples: Cow::Owned(self.samples.into_owned()),
            pieces: self.pieces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(seconds: f64) -> Speech<'static> {
        let samples = vec![0.1; (seconds * f64::from(TARGET_RATE)) as usize];
        Speech::whole(Cow::Owned(samples))
    }

    // A segment is its end's clip's, unless the clip before still had sound after its start
    // (Whisper's start is only the previous segment's end); then it is across both.
    #[test]
    fn segments_find_their_clip() {
        let layout = Layout::new([4.0, 5.0, 3.0]); // 0-4, 6-11, 13-16
        assert_eq!(layout.owner(0.0, 3.9), Owner::Clip(0));
        assert_eq!(layout.owner(0.2, 4.8), Owner::Clip(0));
        assert_eq!(layout.owner(4.0, 10.6), Owner::Clip(1));
        assert_eq!(layout.owner(3.6, 10.6), Owner::Clip(1));
        assert_eq!(layout.owner(3.4, 10.6), Owner::Across(vec![0, 1]));
        assert_eq!(layout.owner(6.0, 11.3), Owner::Clip(1));
        assert_eq!(layout.owner(11.0, 13.2), Owner::Clip(1));
        assert_eq!(layout.owner(11.0, 16.0), Owner::Clip(2));
        assert_eq!(layout.owner(2.0, 9.0), Owner::Across(vec![0, 1]));
        assert_eq!(layout.owner(0.0, 16.0), Owner::Across(vec![0, 1, 2]));
        assert_eq!(layout.local(1, 5.8), 0.0);
        assert!((layout.local(1, 8.5) - 2.5).abs() < 1e-9);
        assert_eq!(layout.local(2, 17.0), 3.0);
    }

    // A window waits until its clips fill it, takes the longest that fit, never more than a
    // window, and the rest drain at the end.
    #[test]
    fn packer_fills_windows() {
        let mut packer = Packer::default();
        for (i, seconds) in [5.0, 12.0, 3.0].into_iter().enumerate() {
            packer.push(i, clip(seconds));
            assert!(packer.window(false).is_none());
        }
        packer.push(3, clip(6.0));
        assert_eq!(keys(packer.window(false)), vec![1, 3, 0]); // 12 + 6 + 5 + two 2 s gaps = 27 s
        assert!(packer.window(false).is_none());
        assert_eq!(keys(packer.window(true)), vec![2]);
        assert!(packer.window(true).is_none());
    }

    // A clip Whisper did not reach opens the next window, one such clip per window.
    #[test]
    fn unheard_clips_open_windows() {
        let mut packer = Packer::default();
        packer.push(0, clip(10.0));
        packer.push(1, clip(10.0));
        packer.push_first(2, clip(3.0));
        packer.push_first(3, clip(4.0));
        assert_eq!(keys(packer.window(true)), vec![3, 0, 1]);
        assert_eq!(keys(packer.window(true)), vec![2]);
    }

    /// A Whisper that hears the segments a test lays out (window seconds), or fails.
    struct Fake {
        segments: Vec<(f64, f64, &'static str)>,
        fail: bool,
        /// Length of the last window heard, in seconds.
        heard_s: f64,
    }

    impl Fake {
        fn new(segments: &[(f64, f64, &'static str)]) -> Fake {
            Fake {
                segments: segments.to_vec(),
                fail: false,
                heard_s: 0.0,
            }
        }
    }

    impl Hear for Fake {
        fn hear(
            &mut self,
            samples: &[f32],
            _: &Options,
            _: &dyn Fn() -> bool,
        ) -> anyhow::Result<Transcript> {
            self.heard_s = samples.len() as f64 / f64::from(TARGET_RATE);
            if self.fail {
                anyhow::bail!("whisper failed");
            }
            let segments = self.segments.iter().map(|&(start_s, end_s, text)| Segment {
                start_s,
                end_s,
                text: text.to_string(),
                confidence: 0.9,
                words: Vec::new(),
            });
            Ok(Transcript {
                language: Some("en".into()),
                segments: segments.collect(),
            })
        }
    }

    fn hear_packed(fake: &mut Fake, seconds: &[f64], give_up: bool) -> Vec<Result<Heard, String>> {
        let clips: Vec<Speech> = seconds.iter().map(|&s| clip(s)).collect();
        let clips: Vec<&Speech> = clips.iter().collect();
        transcribe_packed(fake, &clips, &Options::default(), &|| give_up)
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    /// (text, start, end) of each segment a clip owns, on its own timeline.
    fn own(heard: &Result<Heard, String>) -> Vec<(String, f64, f64)> {
        match heard {
            Ok(Heard::Own(t)) => t
                .segments
                .iter()
                .map(|s| (s.text.clone(), s.start_s, s.end_s))
                .collect(),
            other => panic!("not its own segments: {other:?}"),
        }
    }

    // Three clips in one window (0-4, 6-11, 13-16 s): each gets its own segment, on its own
    // timeline; the window is the clips and two gaps.
    #[test]
    fn packed_segments_go_home() {
        let mut fake = Fake::new(&[(0.0, 3.8, "one"), (4.0, 10.9, "two"), (11.0, 15.5, "three")]);
        let heard = hear_packed(&mut fake, &[4.0, 5.0, 3.0], false);
        assert!((fake.heard_s - 16.0).abs() < 1e-3, "{}", fake.heard_s);
        assert_eq!(own(&heard[0]), vec![("one".to_string(), 0.0, 3.8)]);
        let two = own(&heard[1]);
        assert_eq!(two[0].0, "two");
        assert!(
            two[0].1.abs() < 1e-9 && (two[0].2 - 4.9).abs() < 1e-9,
            "{two:?}"
        );
        let three = own(&heard[2]);
        assert!(
            three[0].0 == "three" && (three[0].2 - 2.5).abs() < 1e-9,
            "{three:?}"
        );
    }

    // A segment across a gap makes both its clips unclear; Whisper stopping early leaves the
    // clips after it unheard; a clip with sound but no segment is unclear with the one before.
    #[test]
    fn doubtful_clips_are_heard_again() {
        let mut fake = Fake::new(&[(0.0, 9.0, "one two")]);
        let heard = hear_packed(&mut fake, &[4.0, 5.0, 3.0], false);
        assert!(matches!(heard[0], Ok(Heard::Unclear)) && matches!(heard[1], Ok(Heard::Unclear)));
        assert!(matches!(heard[2], Ok(Heard::Unheard)), "{:?}", heard[2]);

        let mut fake = Fake::new(&[(0.0, 3.8, "one"), (11.0, 15.5, "three")]);
        let heard = hear_packed(&mut fake, &[4.0, 5.0, 3.0], false);
        assert!(
            heard[..2].iter().all(|h| matches!(h, Ok(Heard::Unclear))),
            "{heard:?}"
        );
        assert_eq!(own(&heard[2])[0].0, "three");
    }

    // A failed call makes its clips unclear (one may fail alone later), unless the run gives up.
    #[test]
    fn failed_windows_fail_only_when_giving_up() {
        let mut fake = Fake::new(&[]);
        fake.fail = true;
        let heard = hear_packed(&mut fake, &[4.0, 5.0], false);
        assert!(
            heard.iter().all(|h| matches!(h, Ok(Heard::Unclear))),
            "{heard:?}"
        );
        let heard = hear_packed(&mut fake, &[4.0, 5.0], true);
        assert!(
            heard
                .iter()
                .all(|h| h.as_ref().is_err_and(|e| e == "whisper failed"))
        );
    }

    // Clips that leave a window half empty wait for one that fills the gap, or for the end.
    #[test]
    fn packer_waits_to_fill_windows() {
        let mut packer = Packer::default();
        packer.push(0, clip(18.0));
        packer.push(1, clip(16.0));
        assert!(packer.window(false).is_none());
        packer.push(2, clip(9.0));
        assert_eq!(keys(packer.window(false)), vec![0, 2]); // 18 + 2 + 9 = 29 s
        for (i, seconds) in [(3, 15.0), (4, 17.0), (5, 19.0)] {
            packer.push(i, clip(seconds));
            assert!(packer.window(false).is_none());
        }
        // 16 + 15 + 17 + 19 + 20 s and their gaps: more than three windows wait, so the fullest
        // window that can be made is heard, then the next clip that fills one.
        packer.push(6, clip(20.0));
        assert_eq!(keys(packer.window(false)), vec![6]);
        packer.push(7, clip(12.0));
        assert_eq!(keys(packer.window(false)), vec![3, 7]); // 15 + 2 + 12 = 29 s
    }

    // A clip to be heard alone gets a window of its own at once, before any packed one.
    #[test]
    fn lone_clips_go_first_and_alone() {
        let mut packer = Packer::default();
        packer.push(0, clip(10.0));
        packer.push_alone(1, clip(3.0));
        packer.push(2, clip(10.0));
        assert_eq!(keys(packer.window(false)), vec![1]);
        assert!(packer.window(false).is_none());
        assert_eq!(keys(packer.window(true)), vec![0, 2]);
    }

    fn keys(window: Option<Vec<(usize, Speech<'static>)>>) -> Vec<usize> {
        window.unwrap().iter().map(|(k, _)| *k).collect()
    }
}
