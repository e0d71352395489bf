//! The `llm` stage with the real SmolLM2 model (fetched by `scripts/fetch-models.py`):
//! reproducible output across runs and `parallel` values, grammar-constrained JSON and labels,
//! inputs longer than the context, bad options, and Whisper + llama in one run.

use std::path::Path;

use serde_json::Value;

mod common;

use common::{engines, jsonl, lai, lai_run, repo};

/// Twelve short documents as JSONL.
fn corpus(dir: &Path) -> std::path::PathBuf {
    let docs = [
        "Hi, my laptop will not turn on since this morning. I tried charging it overnight. Ticket from Ana Lopez, ana@example.com.",
        "Please cancel my subscription at the end of the month. Regards, Tom Baker.",
        "The invoice INV-2231 for 450 euros was charged twice to my card. I want a refund.",
        "Great service yesterday, the technician Paul fixed the router in ten minutes. Thanks!",
        "I cannot log in to the portal; it says my password expired. Call me on 555-0142.",
        "Our office printer jams on every second page. Model HP 4250, floor 3.",
        "Why was I billed 30 dollars extra this month? Nothing changed in my plan.",
        "The new app update is wonderful, much faster than before.",
        "Meeting with Dr. Rivera moved to Friday 10 am. Bring the lab results.",
        "VPN disconnects every five minutes when I work from home since Monday.",
        "I would like to upgrade to the family plan with four lines.",
        "Package arrived damaged; the screen of the monitor is cracked. Order 99812.",
    ];
    let path = dir.join("docs.jsonl");
    let lines: Vec<String> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| serde_json::json!({"id": format!("doc-{i:02}"), "text": d}).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Writes a one-stage pipeline (the given `[[stage]]` keys) reading JSONL into `{out}/out.jsonl`.
fn pipeline(dir: &Path, name: &str, stage: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\n[input]\nkind = \"files\"\n[[stage]]\nuse = \"llm\"\n{stage}\n[[output]]\nkind = \"jsonl\"\npath = \"{{out}}/out.jsonl\"\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `pipeline` over `input` into `out` and returns the records without their run-specific
/// provenance.
fn run(pipeline: &Path, input: &Path, out: &Path) -> Vec<Value> {
    lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(pipeline)
        .arg(input)
        .arg("-o")
        .arg(out)
        .assert()
        .success();
    jsonl(&out.join("out.jsonl"))
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("_lai");
            r
        })
        .collect()
}

// Same input, same settings: byte-identical output on a rerun and with any `parallel`, both
// greedy and sampled with a seed.
#[test]
fn reruns_and_parallel_values_give_identical_output() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    for (name, sampling) in [("greedy", ""), ("sampled", "temperature = 0.8\nseed = 7\n")] {
        let outputs: Vec<Vec<Value>> = [8, 8, 1, 3]
            .iter()
            .enumerate()
            .map(|(i, parallel)| {
                let stage = format!(
                    "prompt = \"Write a one-line reply to this customer message:\\n\\n{{{{text}}}}\"\nmax_tokens = 40\nparallel = {parallel}\n{sampling}"
                );
                let p = pipeline(dir.path(), &format!("{name}{i}"), &stage);
                run(&p, &input, &dir.path().join(format!("{name}{i}")))
            })
            .collect();
        assert_eq!(outputs[0].len(), 12);
        assert!(
            outputs[0]
                .iter()
                .all(|r| !r["completion"].as_str().unwrap().is_empty())
        );
        for (i, other) in outputs.iter().enumerate().skip(1) {
            assert_eq!(&outputs[0], other, "{name}: run {i} differs");
        }
    }
}

// JSON output follows the schema for every document (types, enum, required keys), and labels
// come only from the choices.
#[test]
fn json_and_choices_are_constrained() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let schema = r#"{"type": "object", "properties": {"topic": {"type": "string", "maxLength": 60}, "urgent": {"type": "boolean"}, "mood": {"enum": ["positive", "neutral", "negative"]}, "amount": {"type": ["integer", "null"]}}, "required": ["topic", "urgent", "mood", "amount"]}"#;
    std::fs::write(dir.path().join("schema.json"), schema).unwrap();
    let p = pipeline(
        dir.path(),
        "json",
        "task = \"extract\"\nschema_file = \"schema.json\"\nto = \"facts\"",
    );
    let records = run(&p, &input, &dir.path().join("json"));
    assert_eq!(records.len(), 12);
    for r in &records {
        let facts = &r["facts"];
        assert!(facts["topic"].is_string(), "{r}");
        assert!(facts["urgent"].is_boolean(), "{r}");
        assert!(
            ["positive", "neutral", "negative"].contains(&facts["mood"].as_str().unwrap()),
            "{r}"
        );
        assert!(facts["amount"].is_i64() || facts["amount"].is_null(), "{r}");
        assert_eq!(r["llm"]["facts"]["pieces"], 1);
    }

    let labels = [
        "billing",
        "technical problem",
        "account",
        "feedback",
        "other",
    ];
    let p = pipeline(
        dir.path(),
        "labels",
        "task = \"classify\"\nchoices = [\"billing\", \"technical problem\", \"account\", \"feedback\", \"other\"]",
    );
    let records = run(&p, &input, &dir.path().join("labels"));
    assert_eq!(records.len(), 12);
    for r in &records {
        assert!(labels.contains(&r["label"].as_str().unwrap()), "{r}");
    }
    // A field list merges the fields into the record itself.
    let p = pipeline(
        dir.path(),
        "fields",
        "task = \"extract\"\nfields = [\"name\", \"email\"]",
    );
    let records = run(&p, &input, &dir.path().join("fields"));
    for r in &records {
        for key in ["name", "email"] {
            assert!(r[key].is_string() || r[key].is_null(), "{r}");
        }
    }
}

// The shared prompt prefix (on by default) changes nothing in the records: labels (a system
// message and long instructions) and JSON fields are byte-identical with `prefix_cache =
// false` at `parallel = 3`, and the run report counts the prompt tokens the prefix saved.
#[test]
fn prefix_cache_keeps_outputs_identical() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let labels = "task = \"classify\"\nchoices = [\"billing\", \"technical problem\", \"account\", \"feedback\", \"other\"]\nsystem = \"You sort the messages that customers send to the support desk of a telephone and internet company. Billing covers invoices, charges and refunds; technical problems cover devices, connections and software; account covers logins, plans and cancellations; feedback is praise or complaints about service.\"\nparallel = 3";
    let fields = "task = \"extract\"\nfields = [\"name\", \"email\"]\nparallel = 3";
    for (name, stage) in [("labels", labels), ("fields", fields)] {
        let mut runs = Vec::new();
        for (setting, cache) in [("on", ""), ("off", "\nprefix_cache = false")] {
            let p = pipeline(
                dir.path(),
                &format!("{name}-{setting}"),
                &format!("{stage}{cache}"),
            );
            let out = dir.path().join(format!("{name}-{setting}"));
            let report = out.join("report.json");
            lai()
                .args(["run", "--progress", "never", "--jobs", "2", "--report"])
                .arg(&report)
                .arg(&p)
                .arg(&input)
                .arg("-o")
                .arg(&out)
                .assert()
                .success();
            let records: Vec<Value> = jsonl(&out.join("out.jsonl"))
                .into_iter()
                .map(|mut r| {
                    r.as_object_mut().unwrap().remove("_lai");
                    r
                })
                .collect();
            let report: Value =
                serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
            let llm = report["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["stage"] == "llm")
                .unwrap()
                .clone();
            runs.push((records, llm));
        }
        let ((on, on_report), (off, off_report)) = (&runs[0], &runs[1]);
        assert_eq!(on.len(), 12);
        assert_eq!(on, off, "{name}: records differ with the prefix cache");
        let prompt = on_report["prompt_tokens"].as_u64().unwrap();
        let cached = on_report["cached_prompt_tokens"].as_u64().unwrap();
        assert_eq!(off_report["prompt_tokens"].as_u64(), Some(prompt));
        assert!(
            off_report.get("cached_prompt_tokens").is_none(),
            "{off_report}"
        );
        // Each of the 12 prompts takes its instructions (and the system message) from the prefix.
        assert!(
            cached > 12 * 30 && cached < prompt,
            "{name}: {cached} of {prompt}"
        );
    }
}

const SENTENCES: usize = 60;

/// A transcript of `sentences` numbered sentences.
fn long_transcript(sentences: usize) -> String {
    let topics = [
        "budget",
        "hiring plan",
        "office move",
        "security audit",
        "product launch",
    ];
    (0..sentences)
        .map(|i| {
            format!(
                "so um point {i} is about the {} and we uh agreed to review it next week.",
                topics[i % topics.len()]
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// An input far longer than the context is processed whole: cleanup splits it into pieces
// and joins them, summarize reduces the pieces'
// summaries; both record the split.
#[test]
fn inputs_longer_than_the_context_are_split_not_cut() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let text = long_transcript(SENTENCES);
    let input = dir.path().join("long.jsonl");
    std::fs::write(
        &input,
        serde_json::json!({"id": "meeting", "text": text}).to_string() + "\n",
    )
    .unwrap();

    let p = pipeline(
        dir.path(),
        "clean",
        "task = \"cleanup\"\ncontext = 384\nparallel = 4",
    );
    let r = &run(&p, &input, &dir.path().join("clean"))[0];
    let meta = &r["llm"]["clean_text"];
    assert!(meta["pieces"].as_u64().unwrap() >= 6, "{meta}");
    // Pieces the model mangled keep their source (the guard), so the whole text is there: the
    // first and last sentences, nearly every numbered one, about as many words.
    let clean = r["clean_text"].as_str().unwrap();
    let found = (0..SENTENCES)
        .filter(|i| clean.contains(&format!("point {i} ")))
        .count();
    assert!(
        clean.contains("point 0 ") && clean.contains(&format!("point {} ", SENTENCES - 1)),
        "{meta} {clean}"
    );
    assert!(
        found * 10 >= SENTENCES * 9,
        "{found} of {SENTENCES}: {clean}"
    );
    let ratio = clean.split_whitespace().count() as f64 / text.split_whitespace().count() as f64;
    assert!((0.75..=1.25).contains(&ratio), "{ratio}: {clean}");

    let p = pipeline(
        dir.path(),
        "summary",
        "task = \"summarize\"\ncontext = 512\nmax_tokens = 64\nparallel = 4",
    );
    let r = &run(&p, &input, &dir.path().join("summary"))[0];
    let meta = &r["llm"]["summary"];
    assert!(meta["pieces"].as_u64().unwrap() >= 4, "{meta}");
    assert!(meta["rounds"].as_u64().unwrap() >= 2, "{meta}");
    assert!(!r["summary"].as_str().unwrap().trim().is_empty(), "{r}");
}

// Wrong settings are caught before any model loads, each naming its key's line; a record
// without the input field fails alone.
#[test]
fn bad_options_and_bad_items_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (stage, expected) in [
        ("task = \"classify\"", "needs `choices"),
        ("prompt = \"Say hi\"", "never uses `{{text}}`"),
        ("prompt = \"Hi {{text\"", "never closed"),
        ("task = \"extract\"", "needs `fields"),
        ("output = \"json\"\nschema = \"{nope\"", "not valid JSON"),
        ("prompt_file = \"missing.txt\"", "cannot read"),
        ("task = \"sumarize\"", "did you mean `summarize`"),
        ("task = \"cleanup\"\nparalel = 4", "did you mean `parallel`"),
    ] {
        let p = pipeline(dir.path(), "bad", stage);
        let out = lai()
            .arg("check")
            .arg(&p)
            .assert()
            .failure()
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stage}: {stderr}");
        assert!(stderr.contains("bad.toml:"), "{stage}: {stderr}");
    }

    let input = dir.path().join("mixed.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"text\": \"Refund please.\"}\n{\"id\": \"b\", \"body\": \"no text field\"}\n",
    )
    .unwrap();
    let p = pipeline(
        dir.path(),
        "mixed",
        "task = \"classify\"\nchoices = [\"billing\", \"other\"]",
    );
    let out = dir.path().join("mixed-out");
    lai_run(&p, &input, &out, &[]).code(1);
    assert_eq!(jsonl(&out.join("out.jsonl")).len(), 1);
    let errors = std::fs::read_to_string(out.join("errors.jsonl")).unwrap();
    assert!(errors.contains("no `text` text field"), "{errors}");
}

// The shipped transcribe-clean pipeline runs Whisper and llama.cpp in one process: every
// recording gets a transcript and a guarded cleanup, with nothing the model put around the text
// (an invented label such as "Transcription:", an opener, quotes or a code fence).
#[test]
fn transcribe_then_cleanup_in_one_run() {
    let _engines = engines();
    let out = tempfile::tempdir().unwrap();
    lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(repo("pipelines/transcribe-clean.toml"))
        .arg(repo("samples/audio"))
        .arg("-o")
        .arg(out.path())
        .assert()
        .success();
    let records = jsonl(&out.path().join("transcripts.jsonl"));
    assert_eq!(records.len(), 6);
    for r in &records {
        let clean = r["clean_text"].as_str().unwrap();
        let meta = &r["llm"]["clean_text"];
        assert!(meta["kept_source"].is_u64(), "{r}");
        let said = r["text"].as_str().unwrap().to_lowercase();
        let lower = clean.to_lowercase();
        for invented in [
            "transcription",
            "transcript:",
            "corrected text",
            "cleaned",
            "here is",
            "here's",
            "sure",
            "```",
            "\"",
        ] {
            assert!(
                !lower.starts_with(invented) || said.starts_with(invented),
                "the cleanup starts with {invented:?}: {r}"
            );
        }
        assert!(!clean.ends_with("```"), "{r}");
        if r["id"].as_str().unwrap().contains("hello") {
            assert!(clean.contains("John Smith"), "{r}");
        }
    }
    assert!(out.path().join("text/hello.wav.txt").exists());
}

// A stage `timeout` turns a generation that runs too long into item errors that say so; the
// run ends normally (exit 1) instead of hanging, and a whisper stage honours it too.
#[test]
fn timeout_fails_items_instead_of_hanging() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let p = pipeline(
        dir.path(),
        "slow",
        "prompt = \"Write a long story about {{text}}\"\nmax_tokens = 2000\ntimeout = \"1ms\"",
    );
    let out = dir.path().join("slow-out");
    let started = std::time::Instant::now();
    lai_run(&p, &input, &out, &["--jobs", "2"]).code(1);
    // Generous: a stuck run never ends; a busy machine only slows a working one.
    assert!(started.elapsed().as_secs() < 600, "it gave up early");
    let errors = jsonl(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 12);
    assert!(
        errors.iter().all(|e| e["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out: stage `llm`")),
        "{errors:?}"
    );

    let audio = dir.path().join("audio.toml");
    std::fs::write(
        &audio,
        "[input]\nkind = \"files\"\n[[stage]]\nuse = \"transcribe\"\ntimeout = \"1ms\"\n[[output]]\nkind = \"jsonl\"\n",
    )
    .unwrap();
    let out = dir.path().join("audio-out");
    lai_run(&audio, &repo("samples/audio/lecture.ogg"), &out, &[]).code(1);
    let errors = jsonl(&out.join("errors.jsonl"));
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out: stage `transcribe`"),
        "{errors:?}"
    );
}
