//! The `srt` and `vtt` outputs: subtitle files from timed segments, one per input file.
//!
//! They are `text` outputs with a renderer: files mirror the input tree under `dir`, named after
//! the input with the subtitle extension, written atomically. Cues are numbered from 1, times
//! never run backwards (a segment that starts before its predecessor is moved up to it), and
//! cue text cannot break the format (no blank lines, no `-->` inside a cue).

use serde_json::Value;

use super::text::TextSpec;
use crate::component::SinkSpec;
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const SRT: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "srt",
    doc: "SubRip subtitles (.srt) from `segments`, one file per input, mirroring the input tree.",
    options: OPTIONS,
    build: |options, diag| build(options, diag, "srt", srt),
};

pub const VTT: ComponentKind<dyn SinkSpec> = ComponentKind {
    name: "vtt",
    doc: "WebVTT subtitles (.vtt) from `segments`, one file per input, mirroring the input tree.",
    options: OPTIONS,
    build: |options, diag| build(options, diag, "vtt", vtt),
};

const OPTIONS: &[OptionSpec] = &[
    opt(
        "dir",
        Ty::Str,
        Default::Value("\"{out}/subtitles\""),
        "Folder to write into (`{out}` is the --out folder).",
    ),
    opt(
        "field",
        Ty::Str,
        Default::Value("\"segments\""),
        "Field holding the segments: a list of { start, end, text } with times in seconds.",
    ),
];

fn build(
    options: &Options,
    _diag: &mut Diagnostics,
    extension: &str,
    render: fn(&Item, &str) -> Option<String>,
) -> Option<Box<dyn SinkSpec>> {
    Some(Box::new(TextSpec {
        dir: options.str("dir"),
        field: options.str("field"),
        extension: extension.to_string(),
        render,
    }))
}

/// A cue: start and end in milliseconds, its text on non-empty lines, and who speaks it (a
/// segment's `speaker`, set by `transcribe` with `channels = "split"`).
struct Cue {
    start: u64,
    end: u64,
    text: String,
    speaker: Option<String>,
}

/// The item's segments as cues in non-decreasing time order; None if the field is not a list.
fn cues(item: &Item, field: &str) -> Option<Vec<Cue>> {
    let Value::Array(segments) = item.fields.get(field)? else {
        return None;
    };
    let ms = |v: Option<&Value>| {
        (v.and_then(Value::as_f64).unwrap_or(0.0).max(0.0) * 1000.0).round() as u64
    };
    let mut cues: Vec<Cue> = Vec::with_capacity(segments.len());
    for segment in segments {
        let text = segment.get("text").and_then(Value::as_str).unwrap_or("");
        let text = text
            .replace("-->", "->")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if text.is_empty() {
            continue;
        }
        let floor = cues.last().map_or(0, |c| c.start);
        let start = ms(segment.get("start")).max(floor);
        let end = ms(segment.get("end")).max(start);
        let speaker = segment
            .get("speaker")
            .and_then(Value::as_str)
            .map(|s| {
                s.replace(['<', '>', '&', '\n', '\r', '[', ']'], " ")
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty());
        cues.push(Cue {
            start,
            end,
            text,
            speaker,
        });
    }
    Some(cues)
}

fn timestamp(ms: u64, separator: char) -> String {
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// SubRip has no speaker markup: the speaker opens the cue's text as "[agent] ".
fn srt(item: &Item, field: &str) -> Option<String> {
    let mut out = String::new();
    for (i, cue) in cues(item, field)?.iter().enumerate() {
        let speaker = cue
            .speaker
            .as_ref()
            .map_or(String::new(), |s| format!("[{s}] "));
        out.push_str(&format!(
            "{}\n{} --> {}\n{speaker}{}\n\n",
            i + 1,
            timestamp(cue.start, ','),
            timestamp(cue.end, ','),
            cue.text
        ));
    }
    Some(out)
}

/// WebVTT marks the speaker with a voice span: "<v agent>". Cue text is markup there, so `&`,
/// `<` and `>` in what was said are written as character references.
fn vtt(item: &Item, field: &str) -> Option<String> {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues(item, field)? {
        let speaker = cue
            .speaker
            .as_ref()
            .map_or(String::new(), |s| format!("<v {s}>"));
        let text = cue
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        out.push_str(&format!(
            "{} --> {}\n{speaker}{text}\n\n",
            timestamp(cue.start, '.'),
            timestamp(cue.end, '.'),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn item(segments: Value) -> Item {
        let mut fields = Map::new();
        fields.insert("segments".into(), segments);
        Item::new("a".into(), "a".into(), b"", fields)
    }

    // Both formats number and time cues the way players expect.
    #[test]
    fn formats() {
        let item = item(json!([
            {"start": 0.0, "end": 2.5, "text": "Hello there."},
            {"start": 3661.042, "end": 3662.0, "text": "An hour later."},
        ]));
        assert_eq!(
            srt(&item, "segments").unwrap(),
            "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n2\n01:01:01,042 --> 01:01:02,000\nAn hour later.\n\n"
        );
        assert_eq!(
            vtt(&item, "segments").unwrap(),
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n01:01:01.042 --> 01:01:02.000\nAn hour later.\n\n"
        );
    }

    // Times never run backwards, empty cues are dropped and text cannot break a cue (nor, in
    // WebVTT, open a tag).
    #[test]
    fn malformed_segments_stay_valid() {
        let item = item(json!([
            {"start": 5.0, "end": 6.0, "text": "first"},
            {"start": 4.0, "end": 3.0, "text": "a --> b\n\nc"},
            {"start": 7.0, "end": 8.0, "text": "  "},
            {"start": 9.0, "end": 9.5, "text": "AT&T <b>"},
        ]));
        assert_eq!(
            vtt(&item, "segments").unwrap(),
            "WEBVTT\n\n00:00:05.000 --> 00:00:06.000\nfirst\n\n00:00:05.000 --> 00:00:05.000\na -&gt; b\nc\n\n00:00:09.000 --> 00:00:09.500\nAT&amp;T &lt;b&gt;\n\n"
        );
        assert!(srt(&self::item(json!("not a list")), "segments").is_none());
    }

    // A segment's speaker opens its SRT cue in brackets and is a WebVTT voice span; markup in
    // a name cannot break either format.
    #[test]
    fn speakers() {
        let item = item(json!([
            {"start": 0.0, "end": 1.0, "text": "Thanks for calling.", "speaker": "agent"},
            {"start": 1.5, "end": 2.0, "text": "Hi.", "speaker": "<b>caller]\n"},
            {"start": 2.5, "end": 3.0, "text": "No speaker."},
        ]));
        assert_eq!(
            srt(&item, "segments").unwrap(),
            "1\n00:00:00,000 --> 00:00:01,000\n[agent] Thanks for calling.\n\n2\n00:00:01,500 --> 00:00:02,000\n[b caller] Hi.\n\n3\n00:00:02,500 --> 00:00:03,000\nNo speaker.\n\n"
        );
        assert_eq!(
            vtt(&item, "segments").unwrap(),
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v agent>Thanks for calling.\n\n00:00:01.500 --> 00:00:02.000\n<v b caller>Hi.\n\n00:00:02.500 --> 00:00:03.000\nNo speaker.\n\n"
        );
    }
}
