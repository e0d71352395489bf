//! Window packing: several short clips heard in one Whisper window.
//!
//! Whisper's encoder always works on a 30-second window, so a 5-second clip alone pays for 30
//! seconds of encoder work. `Packer` groups prepared clips (`Speech`) into windows, and
//! `Transcriber::transcribe_packed` lays a window's clips out one after another with a second
//! of silence between them, decodes it with one whisper.cpp call, and hands each clip the
//! segments that fall on its own stretch of the window, mapped back to its own timeline.
//!
//! No text of one clip may land in another: a segment that overlaps two clips, or a clip with
//! sound that got no segment (its words may sit in a neighbour's), sends the clips concerned
//! back to be transcribed alone. Nothing here knows files or items; callers key clips by index.

use std::borrow::Cow;

use super::{Options, Segment, Speech, Transcriber, Transcript};
use crate::audio::TARGET_RATE;

/// Audio in one packed window, gaps included: a little under Whisper's 30 s, so the last
/// clip's end is not cut off into a second window.
pub const WINDOW_S: f64 = 29.0;
/// Longest clip worth packing. Longer ones fill at least half a window on their own, and are
/// transcribed alone.
pub const MAX_CLIP_S: f64 = 15.0;
/// Silence laid between two clips. Whisper ends segments at such pauses, and its segment
/// times are off by a few tenths of a second, so the gap must be wider than that error.
const GAP_S: f64 = 1.0;
/// How far a segment may reach into a clip that is not its own before it counts as heard
/// across the gap (Whisper's segment edges drift into the gap, rarely past it).
const OVERLAP_TOLERANCE_S: f64 = 0.3;
/// RMS below which a clip (without VAD) is silence, and so may rightly get no segment.
const SILENCE_RMS: f32 = 1e-3;

/// Clips waiting to be packed, and the choice of which go together.
pub struct Packer<K> {
    pending: Vec<(K, Speech<'static>)>,
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
        self.pending.push((key, speech));
    }

    /// The next window's clips: once the waiting clips fill a window (or, with `drain`, whatever
    /// waits), the longest ones that fit together, so the short ones are left to fill gaps later.
    pub fn window(&mut self, drain: bool) -> Option<Vec<(K, Speech<'static>)>> {
        let needed: f64 = self
            .pending
            .iter()
            .map(|(_, s)| s.duration_s() + GAP_S)
            .sum();
        if self.pending.is_empty() || (!drain && needed < WINDOW_S + GAP_S) {
            return None;
        }
        self.pending
            .sort_by_key(|(_, s)| std::cmp::Reverse(s.samples.len()));
        let mut used = -GAP_S;
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for (key, speech) in self.pending.drain(..) {
            let len = speech.duration_s() + GAP_S;
            if taken.is_empty() || used + len <= WINDOW_S {
                used += len;
                taken.push((key, speech));
            } else {
                kept.push((key, speech));
            }
        }
        self.pending = kept;
        Some(taken)
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
    /// It overlaps these clips: its text may mix theirs.
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

    /// The clip a segment from `start` to `end` (window seconds) belongs to.
    fn owner(&self, start: f64, end: f64) -> Owner {
        let touched: Vec<usize> = (0..self.spans.len())
            .filter(|&i| {
                let (a, b) = self.spans[i];
                end.min(b) - start.max(a) > OVERLAP_TOLERANCE_S
            })
            .collect();
        match touched.as_slice() {
            [one] => Owner::Clip(*one),
            [] => {
                // Short enough to fit within the tolerance: the clip nearest to its middle.
                let middle = (start + end) / 2.0;
                let distance = |&(a, b): &(f64, f64)| (a - middle).max(middle - b).max(0.0);
                let nearest = (0..self.spans.len())
                    .min_by(|&i, &j| distance(&self.spans[i]).total_cmp(&distance(&self.spans[j])))
                    .expect("a layout has clips. This is a bug.");
                Owner::Clip(nearest)
            }
            _ => Owner::Across(touched),
        }
    }

    /// A window time on clip `i`'s own timeline (seconds from its start, within its length).
    fn local(&self, i: usize, t: f64) -> f64 {
        let (a, b) = self.spans[i];
        t.clamp(a, b) - a
    }
}

impl Transcriber {
    /// Transcribes several prepared clips in one Whisper window (see the module doc); one
    /// result per clip, in order, each on its own clip's timeline. Clips whose share of the
    /// window cannot be told apart are transcribed again alone. Only call it when `can_pack`.
    pub fn transcribe_packed(
        &mut self,
        clips: &[&Speech],
        options: &Options,
        give_up: &dyn Fn() -> bool,
    ) -> Vec<anyhow::Result<Transcript>> {
        if clips.len() == 1 {
            return vec![self.transcribe_speech(clips[0], options, give_up)];
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
        let heard = match self.decode(&window, options, give_up) {
            Ok(heard) => heard,
            Err(e) if give_up() => {
                let reason = format!("{e:#}");
                return clips
                    .iter()
                    .map(|_| Err(anyhow::anyhow!("{reason}")))
                    .collect();
            }
            // One clip may be what whisper.cpp cannot take: each alone, so it fails alone.
            Err(_) => {
                return clips
                    .iter()
                    .map(|c| self.transcribe_speech(c, options, give_up))
                    .collect();
            }
        };
        let mut own: Vec<Vec<Segment>> = clips.iter().map(|_| Vec::new()).collect();
        let mut alone = vec![false; clips.len()];
        for segment in heard.segments {
            match layout.owner(segment.start_s, segment.end_s) {
                Owner::Clip(i) => own[i].push(segment),
                Owner::Across(clips) => clips.into_iter().for_each(|i| alone[i] = true),
            }
        }
        // A clip with sound but no segment: its words may be in a neighbour's segment.
        for i in 0..clips.len() {
            if own[i].is_empty() && !alone[i] && rms(&clips[i].samples) >= SILENCE_RMS {
                let neighbours = i.saturating_sub(1)..(i + 2).min(clips.len());
                alone[neighbours].fill(true);
            }
        }
        own.into_iter()
            .enumerate()
            .map(|(i, mut segments)| {
                if alone[i] {
                    return self.transcribe_speech(clips[i], options, give_up);
                }
                for segment in &mut segments {
                    segment.map_times(&|t| clips[i].original(layout.local(i, t)));
                }
                Ok(Transcript {
                    language: heard.language.clone(),
                    segments,
                })
            })
            .collect()
    }
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

    // Segments inside a clip, or drifting a little into the gaps, belong to that clip; one that
    // spans a gap is across both; a sliver in a gap goes to the nearest clip.
    #[test]
    fn segments_find_their_clip() {
        let layout = Layout::new([4.0, 5.0, 3.0]); // 0-4, 5-10, 11-14
        assert_eq!(layout.owner(0.0, 3.9), Owner::Clip(0));
        assert_eq!(layout.owner(0.2, 4.8), Owner::Clip(0));
        assert_eq!(layout.owner(4.7, 9.6), Owner::Clip(1));
        assert_eq!(layout.owner(5.2, 10.2), Owner::Clip(1));
        assert_eq!(layout.owner(11.0, 14.5), Owner::Clip(2));
        assert_eq!(layout.owner(2.0, 7.0), Owner::Across(vec![0, 1]));
        assert_eq!(layout.owner(0.0, 14.0), Owner::Across(vec![0, 1, 2]));
        assert_eq!(layout.owner(10.3, 10.5), Owner::Clip(1));
        assert_eq!(layout.owner(10.6, 10.9), Owner::Clip(2));
        assert_eq!(layout.local(1, 4.8), 0.0);
        assert!((layout.local(1, 7.5) - 2.5).abs() < 1e-9);
        assert_eq!(layout.local(2, 15.0), 3.0);
    }

    // A window waits until its clips fill it, takes the longest that fit, never more than a
    // window, and the rest drain at the end.
    #[test]
    fn packer_fills_windows() {
        let mut packer = Packer::default();
        for (i, seconds) in [5.0, 12.0, 3.0, 5.0].into_iter().enumerate() {
            packer.push(i, clip(seconds));
            assert!(packer.window(false).is_none());
        }
        packer.push(4, clip(6.0));
        let first = packer.window(false).unwrap();
        let keys: Vec<usize> = first.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![1, 4, 0, 2]); // 12 + 6 + 5 + 3 + three 1 s gaps = 29 s
        assert!(packer.window(false).is_none());
        let rest: Vec<usize> = packer
            .window(true)
            .unwrap()
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(rest, vec![3]);
        assert!(packer.window(true).is_none());
    }
}
