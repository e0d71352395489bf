//! The shipped transcribe pipeline on real audio with the real Whisper and VAD models
//! (fetched by `scripts/fetch-models.py`): every supported format, bad files, subtitles, short
//! clips packed into shared windows without mixing, and a one-hour recording in bounded memory.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

mod common;

use common::{engines, jsonl, lai, lai_run, repo};

fn transcribe(inputs: &[&Path], out: &Path) -> assert_cmd::assert::Assert {
    lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(repo("pipelines/transcribe.toml"))
        .args(inputs)
        .arg("-o")
        .arg(out)
        .arg("--report")
        .arg(out.join("report.json"))
        .assert()
}

/// Seconds of a subtitle timestamp, "00:01:02,500" or "00:01:02.500".
fn seconds(stamp: &str) -> f64 {
    let parts: Vec<f64> = stamp
        .replace(',', ".")
        .split(':')
        .map(|p| p.parse().unwrap())
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// Checks a subtitle file's structure and that its cues never run backwards; returns the text.
fn check_subtitles(path: &Path, vtt: bool) -> String {
    let content = std::fs::read_to_string(path).unwrap();
    let body = if vtt {
        content
            .strip_prefix("WEBVTT\n\n")
            .unwrap_or_else(|| panic!("{} lacks the WEBVTT header", path.display()))
    } else {
        content.as_str()
    };
    let mut text = String::new();
    let mut last_start = 0.0;
    for (i, cue) in body.split_terminator("\n\n").enumerate() {
        let mut lines = cue.lines();
        if !vtt {
            assert_eq!(
                lines.next(),
                Some((i + 1).to_string().as_str()),
                "{content}"
            );
        }
        let times = lines.next().unwrap();
        let (start, end) = times.split_once(" --> ").expect("a timing line");
        let pattern = if vtt { '.' } else { ',' };
        for stamp in [start, end] {
            assert_eq!(stamp.len(), 12, "{stamp}");
            assert_eq!(stamp.chars().nth(8), Some(pattern), "{stamp}");
        }
        let (start, end) = (seconds(start), seconds(end));
        assert!(start >= last_start && end >= start, "{content}");
        last_start = start;
        for line in lines {
            assert!(!line.trim().is_empty());
            text.push_str(line);
            text.push(' ');
        }
    }
    text.to_lowercase()
}

// Speech in every supported container and codec is transcribed (Opus in WebM, in WebM with a
// video track, in Ogg named .opus and .ogg included); silence stays empty; a 0-byte file, a
// truncated MP3, a text file named .wav and AC-3 in Matroska each fail alone with a clear
// message while the rest of the folder is transcribed; SRT and VTT files are valid.
#[test]
fn folder_of_formats_and_bad_files() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("video")).unwrap();
    for name in [
        "hello.wav",
        "meeting.mp3",
        "voicemail.flac",
        "lecture.ogg",
        "interview.m4a",
        "silence.wav",
    ] {
        std::fs::copy(repo("samples/audio").join(name), input.join(name)).unwrap();
    }
    std::fs::copy(
        repo("samples/video/training.mp4"),
        input.join("video/training.mp4"),
    )
    .unwrap();
    std::fs::write(input.join("empty.wav"), b"").unwrap();
    std::fs::write(input.join("notes.wav"), "meeting notes, not audio at all\n").unwrap();
    let mp3 = std::fs::read(repo("samples/audio/meeting.mp3")).unwrap();
    std::fs::write(input.join("cut.mp3"), &mp3[..mp3.len() / 3]).unwrap();
    for name in [
        "hello-opus.webm",
        "standup.webm",
        "voicemail.opus",
        "lecture-opus.ogg",
        "dolby-ac3.mka",
    ] {
        std::fs::copy(repo("tests/data").join(name), input.join(name)).unwrap();
    }

    let out = dir.path().join("out");
    transcribe(&[&input], &out).code(1);

    let records = jsonl(&out.join("transcripts.jsonl"));
    let text = |id: &str| -> String {
        let record = records
            .iter()
            .find(|r| r["id"].as_str().unwrap().ends_with(id))
            .unwrap_or_else(|| panic!("no record for {id}: {records:?}"));
        assert_eq!(record["language"], "en");
        assert!(record["duration_s"].as_f64().unwrap() > 2.5);
        record["text"].as_str().unwrap().to_lowercase()
    };
    let expect = [
        ("hello.wav", &["john", "smith", "london"][..]),
        ("meeting.mp3", &["quarterly", "meeting", "budget"]),
        ("voicemail.flac", &["maria", "clinic", "tuesday"]),
        ("lecture.ogg", &["sunlight", "carbon dioxide", "oxygen"]),
        ("interview.m4a", &["joining", "renewable energy"]),
        ("video/training.mp4", &["safety training", "helmet"]),
        ("hello-opus.webm", &["john smith", "london"]),
        ("standup.webm", &["invoice", "reviewing"]),
        ("voicemail.opus", &["pharmacy", "friday"]),
        ("lecture-opus.ogg", &["museum", "saturday", "dinosaur"]),
    ];
    for (id, words) in expect {
        let said = text(id);
        for word in words {
            assert!(said.contains(word), "{id}: `{word}` missing from {said:?}");
        }
        let srt = check_subtitles(&out.join("subtitles").join(format!("{id}.srt")), false);
        let vtt = check_subtitles(&out.join("subtitles").join(format!("{id}.vtt")), true);
        assert!(
            srt.contains(words[0]) && vtt.contains(words[0]),
            "{srt:?} {vtt:?}"
        );
    }
    assert_eq!(text("silence.wav"), "");
    assert_eq!(records.len(), 11);

    let errors = jsonl(&out.join("errors.jsonl"));
    let error = |id: &str| -> String {
        errors
            .iter()
            .find(|r| r["id"].as_str().unwrap().ends_with(id))
            .unwrap_or_else(|| panic!("no error for {id}: {errors:?}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(error("empty.wav").contains("empty (0 bytes)"));
    assert!(
        error("cut.mp3").contains("truncated"),
        "{}",
        error("cut.mp3")
    );
    assert!(error("notes.wav").contains("not a readable audio"));
    assert!(
        error("dolby-ac3.mka").contains("no audio track in a codec lai decodes"),
        "{}",
        error("dolby-ac3.mka")
    );
    assert_eq!(errors.len(), 4);

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let stage = &report["stages"][0];
    assert!(stage["audio_s"].as_f64().unwrap() > 30.0, "{stage}");
    assert!(report["models"].as_array().unwrap().len() == 2);
}

/// Each sample clip and words only it says.
const CLIP_WORDS: &[(&str, &[&str])] = &[
    ("audio/hello.wav", &["john", "smith", "london"]),
    ("audio/meeting.mp3", &["quarterly", "budget"]),
    ("audio/voicemail.flac", &["maria", "clinic", "tuesday"]),
    ("audio/lecture.ogg", &["sunlight", "oxygen"]),
    ("audio/interview.m4a", &["renewable"]),
    ("video/training.mp4", &["helmet"]),
];

// A folder of short clips (two copies of each sample, so several packed windows) transcribed
// with packing: every file has its own key words and none of another file's, and every segment
// and word lies within its own file's duration, in order.
#[test]
fn packed_clips_keep_their_own_words() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (sample, _) in CLIP_WORDS {
        let name = Path::new(sample).file_name().unwrap().to_str().unwrap();
        for copy in ["a", "b"] {
            std::fs::copy(
                repo("samples").join(sample),
                input.join(format!("{copy}-{name}")),
            )
            .unwrap();
        }
    }
    let pipeline = dir.path().join("words.toml");
    let shipped = std::fs::read_to_string(repo("pipelines/transcribe.toml")).unwrap();
    std::fs::write(
        &pipeline,
        shipped.replace("# word_timestamps = true", "word_timestamps = true"),
    )
    .unwrap();
    let out = dir.path().join("out");
    lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(&pipeline)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);

    let records = jsonl(&out.join("transcripts.jsonl"));
    assert_eq!(records.len(), 2 * CLIP_WORDS.len());
    for record in &records {
        let id = record["id"].as_str().unwrap();
        let text = record["text"].as_str().unwrap().to_lowercase();
        let duration = record["duration_s"].as_f64().unwrap();
        for (sample, words) in CLIP_WORDS {
            let own = id.ends_with(Path::new(sample).file_name().unwrap().to_str().unwrap());
            for word in *words {
                assert_eq!(
                    text.contains(word),
                    own,
                    "{id}: `{word}` {} in {text:?}",
                    if own { "missing" } else { "from another file" }
                );
            }
        }
        let mut last = 0.0;
        for segment in record["segments"].as_array().unwrap() {
            let (start, end) = (
                segment["start"].as_f64().unwrap(),
                segment["end"].as_f64().unwrap(),
            );
            assert!(
                last <= start && start <= end && end <= duration + 0.01,
                "{id} ({duration} s): {segment}"
            );
            last = start;
            for word in segment["words"].as_array().unwrap() {
                let (a, b) = (
                    word["start"].as_f64().unwrap(),
                    word["end"].as_f64().unwrap(),
                );
                assert!(
                    start - 0.01 <= a && a <= b && b <= end + 0.01,
                    "{id}: {word} outside {segment}"
                );
            }
        }
    }
}

/// Writes a WAV file (8 kHz, 16-bit mono, so the resampler is exercised) of `minutes` minutes:
/// silence, with the hello sample spoken at the start of every fifth minute.
fn long_recording(path: &Path, minutes: usize) {
    let hello = std::fs::read(repo("samples/audio/hello.wav")).unwrap();
    let data = hello.windows(4).position(|w| w == b"data").unwrap() + 8;
    // Every other 16 kHz sample gives 8 kHz.
    let speech: Vec<u8> = hello[data..]
        .chunks_exact(4)
        .flat_map(|pair| [pair[0], pair[1]])
        .collect();
    let rate = 8000u32;
    let minute = rate as usize * 60 * 2;
    let bytes = (minute * minutes) as u32;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(b"RIFF").unwrap();
    file.write_all(&(36 + bytes).to_le_bytes()).unwrap();
    file.write_all(b"WAVEfmt ").unwrap();
    for field in [
        16u32.to_le_bytes(),
        [1, 0, 1, 0],
        rate.to_le_bytes(),
        (rate * 2).to_le_bytes(),
    ] {
        file.write_all(&field).unwrap();
    }
    file.write_all(&[2, 0, 16, 0]).unwrap();
    file.write_all(b"data").unwrap();
    file.write_all(&bytes.to_le_bytes()).unwrap();
    let silence = vec![0u8; minute];
    for m in 0..minutes {
        if m % 5 == 0 {
            file.write_all(&speech).unwrap();
            file.write_all(&silence[speech.len()..]).unwrap();
        } else {
            file.write_all(&silence).unwrap();
        }
    }
    file.flush().unwrap();
}

fn peak_rss(out: &Path) -> f64 {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    report["peak_rss_bytes"].as_f64().unwrap()
}

// A one-hour recording is transcribed with memory bounded by the chunk window: its peak RSS is
// within 100 MB of a one-minute file's (the whole hour decoded at once would add 230 MB), and
// timestamps land on the hour's timeline.
#[test]
fn one_hour_in_bounded_memory() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.wav");
    let long = dir.path().join("long.wav");
    long_recording(&short, 1);
    long_recording(&long, 60);

    let short_out = dir.path().join("short-out");
    transcribe(&[&short], &short_out).code(0);
    let long_out = dir.path().join("long-out");
    transcribe(&[&long], &long_out).code(0);

    let growth = peak_rss(&long_out) - peak_rss(&short_out);
    assert!(growth < 100e6, "peak RSS grew by {:.0} MB", growth / 1e6);

    let record = &jsonl(&long_out.join("transcripts.jsonl"))[0];
    assert!(
        (record["duration_s"].as_f64().unwrap() - 3600.0).abs() < 0.5,
        "{record}"
    );
    let segments = record["segments"].as_array().unwrap();
    let starts: Vec<f64> = segments
        .iter()
        .map(|s| s["start"].as_f64().unwrap())
        .collect();
    // The sample is spoken at 0, 5, 10, ... 55 minutes.
    for m in (0..60).step_by(5) {
        let at = m as f64 * 60.0;
        assert!(
            starts.iter().any(|s| (s - at).abs() < 2.0),
            "no segment near {at} s: {starts:?}"
        );
    }
    let text = record["text"].as_str().unwrap().to_lowercase();
    assert!(text.matches("london").count() >= 10, "{text}");
}

// A language Whisper does not know, or a chunk too short to hear, is a configuration error
// that names the key and says what to write instead.
#[test]
fn bad_options_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("t.toml");
    std::fs::write(
        &pipeline,
        "[input]\nkind = \"files\"\n\n[[stage]]\nuse = \"transcribe\"\nlanguage = \"klingon\"\n\n\
         [[stage]]\nuse = \"transcribe\"\nchunk = \"5s\"\n\n\
         [[stage]]\nuse = \"transcribe\"\nchannel_names = [\"agent\"]\n\n[[output]]\nkind = \"srt\"\n",
    )
    .unwrap();
    let out = lai()
        .arg("check")
        .arg(&pipeline)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.contains("t.toml:6:") && err.contains("\"klingon\", not a language Whisper knows"),
        "{err}"
    );
    assert!(
        err.contains("t.toml:10:") && err.contains("at least \"30s\""),
        "{err}"
    );
    assert!(
        err.contains("t.toml:14:") && err.contains("needs `channels = \"split\"`"),
        "{err}"
    );
}

// The shipped calls pipeline (`channels = "split"`) on a two-channel support call, the agent on
// the left and the caller on the right, in stereo Opus: every segment carries the speaker of
// its channel and only that speaker's words, the text reads turn by turn in spoken order, and
// the subtitles name the speakers. A mono file in the same folder is transcribed as usual.
#[test]
fn two_channel_call_is_split_by_speaker() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(
        repo("samples/calls/support-call.opus"),
        input.join("support-call.opus"),
    )
    .unwrap();
    std::fs::copy(repo("samples/audio/hello.wav"), input.join("hello.wav")).unwrap();
    let out = dir.path().join("out");
    lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(repo("pipelines/calls.toml"))
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let records = jsonl(&out.join("transcripts.jsonl"));
    assert_eq!(records.len(), 2);
    let call = records
        .iter()
        .find(|r| r["id"] == "support-call.opus")
        .unwrap();
    assert_eq!(call["audio"]["channels"], 2);
    let said_by = |speaker: &str| -> String {
        call["segments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["speaker"] == speaker)
            .map(|s| s["text"].as_str().unwrap().to_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (agent, caller) = (said_by("agent"), said_by("caller"));
    for word in ["insurance", "daniel", "sorry", "damage happen"] {
        assert!(
            agent.contains(word) && !caller.contains(word),
            "{word}: {call}"
        );
    }
    for word in ["water damage", "kitchen", "thursday", "pipe"] {
        assert!(
            caller.contains(word) && !agent.contains(word),
            "{word}: {call}"
        );
    }
    let text = call["text"].as_str().unwrap();
    let turns: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(turns, ["agent", "caller", "agent", "caller"], "{text}");
    let srt = check_subtitles(&out.join("subtitles/support-call.opus.srt"), false);
    assert!(srt.contains("[agent] thank you"), "{srt}");
    let vtt = check_subtitles(&out.join("subtitles/support-call.opus.vtt"), true);
    assert!(vtt.contains("<v caller>hello"), "{vtt}");

    let mono = records.iter().find(|r| r["id"] == "hello.wav").unwrap();
    assert!(
        mono["text"].as_str().unwrap().contains("John Smith"),
        "{mono}"
    );
    assert!(mono["segments"][0].get("speaker").is_none(), "{mono}");
}

// Non-English speech through the multilingual catalog model (whisper-base) with
// `language = "auto"`: German and French are detected and their key words transcribed, and
// `translate = true` gives English instead. The recordings are espeak-ng speech (made with
// `espeak-ng -v de -s 130` and `-v fr+m1 -s 140`, 16 kHz FLAC).
#[test]
fn other_languages_are_detected_and_translated() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["speech-de.flac", "speech-fr.flac"] {
        std::fs::copy(repo("tests/data").join(name), input.join(name)).unwrap();
    }
    let shipped = std::fs::read_to_string(repo("pipelines/transcribe.toml")).unwrap();
    let multilingual = shipped.replace(
        "model = \"whisper-tiny-en-q8_0\"",
        "model = \"whisper-base\"",
    );
    assert_ne!(
        multilingual, shipped,
        "the shipped pipeline names its model"
    );
    // (file, language, words transcribed, words translated, words only the language has)
    let expected = [
        (
            "speech-de.flac",
            "de",
            ["morgen", "berlin", "montag"],
            ["morning", "berlin", "monday"],
            ["morgen", "montag"],
        ),
        (
            "speech-fr.flac",
            "fr",
            ["paris", "merci", "beau"],
            ["thank", "you", "very"],
            ["merci", "j'habite"],
        ),
    ];
    for translate in [false, true] {
        let pipeline = dir.path().join(format!("ml-{translate}.toml"));
        let text = if translate {
            multilingual.replace(
                "language = \"auto\"",
                "language = \"auto\"\ntranslate = true",
            )
        } else {
            multilingual.clone()
        };
        std::fs::write(&pipeline, text).unwrap();
        let out = dir.path().join(format!("out-{translate}"));
        lai_run(&pipeline, &input, &out, &["--jobs", "2"]).code(0);
        let records = jsonl(&out.join("transcripts.jsonl"));
        assert_eq!(records.len(), 2);
        for (name, language, said, translated, native) in expected {
            let record = records
                .iter()
                .find(|r| r["id"].as_str().unwrap().ends_with(name))
                .unwrap_or_else(|| panic!("no record for {name}: {records:?}"));
            assert_eq!(record["language"], language, "{record}");
            let heard = record["text"].as_str().unwrap().to_lowercase();
            for word in if translate { translated } else { said } {
                assert!(
                    heard.contains(word),
                    "`{word}` missing from {name} (translate = {translate}): {heard:?}"
                );
            }
            if translate {
                for word in native {
                    assert!(
                        !heard.contains(word),
                        "`{word}` left untranslated in {name}: {heard:?}"
                    );
                }
            }
        }
    }
}
