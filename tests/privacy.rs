//! Item content never reaches what lai logs: every shipped pipeline runs on inputs full of
//! canary strings, with one item that fails in a stage and one that makes a stage panic (the
//! debug-build hook `LAI_TEST_PANIC_ON` puts the item's fields in the panic message), and no
//! canary, sample sentence, transcript or panic message may appear in stderr, stdout, the dead
//! letters (errors.jsonl), the ledger, the run report or any other file that is not one of the
//! pipeline's declared outputs. The models come from `scripts/fetch-models.py`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

mod common;

use common::{engines, jsonl, lai, repo};

/// Every pipeline in pipelines/, each of which a test below runs.
const SHIPPED: &[&str] = &[
    "calls",
    "classify",
    "classify-tickets",
    "embed",
    "extract",
    "redact",
    "redact-documents",
    "redact-hipaa",
    "summarize",
    "transcribe",
    "transcribe-clean",
];

/// Part of the panic hook's message, which holds the item's fields.
const PANIC_MESSAGE: &str = "LAI_TEST_PANIC_ON matched";

/// A test's unique canary marks: `CANARY-<run>-<tag>` in inputs; found case-insensitively.
struct Canaries {
    run: String,
}

impl Canaries {
    fn new() -> Canaries {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Canaries {
            run: format!("{:08x}{:04x}", nanos, std::process::id() & 0xffff),
        }
    }

    fn mark(&self, tag: &str) -> String {
        format!("CANARY-{}-{tag}", self.run)
    }

    /// The text that marks the panicking item.
    fn panic_trigger(&self) -> String {
        format!("panic-me-{}", self.run)
    }
}

/// What one run left behind.
struct Run {
    out: PathBuf,
    stderr: String,
    stdout: String,
    report: String,
    code: Option<i32>,
}

/// Runs `pipeline` over `inputs` into a fresh folder under `dir`, with the panic hook armed.
fn run(dir: &Path, name: &str, pipeline: &Path, inputs: &[PathBuf], canaries: &Canaries) -> Run {
    let out = dir.join(format!("out-{name}"));
    let report = dir.join(format!("report-{name}.json"));
    let output = lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(pipeline)
        .args(inputs)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .env("LAI_TEST_PANIC_ON", canaries.panic_trigger())
        .output()
        .expect("lai runs");
    Run {
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        report: std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no report: {e}")),
        code: output.status.code(),
        out,
    }
}

/// Files the pipeline declares as outputs (`path`, or every file under `dir`), in `out`.
fn declared_outputs(pipeline: &Path, out: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    config
        .get("output")
        .and_then(toml::Value::as_array)
        .expect("the pipeline has outputs")
        .iter()
        .filter_map(|o| o.get("path").or_else(|| o.get("dir"))?.as_str())
        .map(|p| PathBuf::from(p.replace("{out}", &out.to_string_lossy())))
        // A Parquet table's record log, an SQLite table's journal: the same records.
        .flat_map(|p| {
            ["", ".rows.jsonl", "-wal", "-shm", "-journal"].map(|suffix| {
                let mut name = p.clone().into_os_string();
                name.push(suffix);
                PathBuf::from(name)
            })
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The needles found in `haystack`, compared case-insensitively.
fn found_in(haystack: &[u8], needles: &[String]) -> Vec<String> {
    let haystack = haystack.to_ascii_lowercase();
    needles
        .iter()
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            haystack.windows(n.len()).any(|w| w == n.as_bytes())
        })
        .cloned()
        .collect()
}

/// Asserts that no `content` appears anywhere the run logged: stderr, stdout, the report, and
/// every file in the output folder other than the pipeline's declared outputs (errors.jsonl and
/// the ledger's files among them). Returns the log files it checked.
fn assert_no_content_in_logs(run: &Run, pipeline: &Path, content: &[String]) -> Vec<PathBuf> {
    let mut needles = content.to_vec();
    needles.push(PANIC_MESSAGE.to_string());
    for (what, text) in [
        ("stderr", &run.stderr),
        ("stdout", &run.stdout),
        ("the run report", &run.report),
    ] {
        let leaked = found_in(text.as_bytes(), &needles);
        assert!(leaked.is_empty(), "{what} holds {leaked:?}:\n{text}");
    }
    let outputs = declared_outputs(pipeline, &run.out);
    let logs: Vec<PathBuf> = files_under(&run.out)
        .into_iter()
        .filter(|f| !outputs.iter().any(|o| f.starts_with(o)))
        .collect();
    for file in &logs {
        let bytes = std::fs::read(file).unwrap();
        let leaked = found_in(&bytes, &needles);
        assert!(leaked.is_empty(), "{} holds {leaked:?}", file.display());
    }
    let names: Vec<String> = logs
        .iter()
        .filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned()))
        .collect();
    assert!(names.iter().any(|n| n == "errors.jsonl"), "{names:?}");
    assert!(names.iter().any(|n| n == "lai-ledger.sqlite"), "{names:?}");
    logs
}

/// The dead letters by id: (stage, error).
fn dead_letters(run: &Run) -> Vec<(String, String, String)> {
    jsonl(&run.out.join("errors.jsonl"))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("stage"), s("error"))
        })
        .collect()
}

/// Asserts that the panicking item (its id ends with `id`) failed alone with the generic message
/// (debug builds; a release build has no hook and processes it).
fn assert_panicked_alone(run: &Run, id: &str, stage: &str) {
    let dead = dead_letters(run);
    let panicked: Vec<_> = dead
        .iter()
        .filter(|(_, _, e)| e.contains("panicked"))
        .collect();
    if !cfg!(debug_assertions) {
        assert!(panicked.is_empty(), "{dead:?}");
        return;
    }
    assert_eq!(panicked.len(), 1, "only the marked item panics: {dead:?}");
    let (got_id, got_stage, error) = panicked[0];
    assert!(
        Path::new(got_id).ends_with(id) && got_stage == stage,
        "{dead:?}"
    );
    assert!(
        error.starts_with(&format!("stage `{stage}` panicked on this item at src/"))
            && error.ends_with("(a bug in lai; please report it, with no item content)"),
        "{error}"
    );
}

/// Text inputs: a sample document, a text file and JSONL records full of canaries, one record
/// whose `text` is a number (a stage failure) and one that panics.
fn text_inputs(dir: &Path, c: &Canaries) -> (Vec<PathBuf>, Vec<String>) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(repo("samples/docs/notes.txt"), input.join("notes.txt")).unwrap();
    let letter = format!(
        "Dear claims team, I am {} and my policy is {}. The water damage in my kitchen \
         happened on 3 March; call me at {} or write to {}@example.com. Kind regards.",
        c.mark("name"),
        c.mark("policy"),
        c.mark("phone"),
        c.mark("mail")
    );
    std::fs::write(input.join("letter.txt"), &letter).unwrap();
    let records = [
        json!({"id": "rec-ok", "text": format!("My laptop {} will not start; I am {}.", c.mark("laptop"), c.mark("owner"))}),
        json!({"id": "rec-number", "text": 4242, "note": c.mark("note")}),
        json!({"id": "rec-panic", "text": format!("{} {} wrote this.", c.panic_trigger(), c.mark("boom"))}),
    ];
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(input.join("records.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut content: Vec<String> = ["name", "policy", "phone", "mail", "laptop", "owner", "note"]
        .iter()
        .map(|t| c.mark(t))
        .chain([c.mark("boom"), letter])
        .collect();
    // The sample's sentences are content too.
    let notes = std::fs::read_to_string(repo("samples/docs/notes.txt")).unwrap();
    content.extend(
        notes
            .split(['.', '\n'])
            .map(str::trim)
            .filter(|s| s.len() >= 16)
            .map(String::from),
    );
    (vec![input], content)
}

/// Runs a text pipeline in `dir` and checks the logs and the failures; returns the run and the
/// ids of the healthy items that got through.
fn text_pipeline(
    dir: &tempfile::TempDir,
    pipeline: &Path,
    first_stage: &str,
) -> (Run, Vec<String>) {
    let c = Canaries::new();
    let (inputs, content) = text_inputs(dir.path(), &c);
    let name = pipeline.file_stem().unwrap().to_string_lossy().into_owned();
    let run = run(dir.path(), &name, pipeline, &inputs, &c);
    assert_eq!(run.code, Some(1), "some items fail:\n{}", run.stderr);
    assert_no_content_in_logs(&run, pipeline, &content);
    let dead = dead_letters(&run);
    assert!(
        dead.iter().any(|(id, stage, e)| id == "rec-number"
            && stage == first_stage
            && e.contains("it is a number")),
        "{dead:?}"
    );
    assert_panicked_alone(&run, "rec-panic", first_stage);
    let ok: Vec<String> = ["rec-ok", "letter.txt", "notes.txt"]
        .iter()
        .filter(|id| !dead.iter().any(|(d, _, _)| d.ends_with(*id)))
        .map(|s| s.to_string())
        .collect();
    (run, ok)
}

// redact: rules and the NER model; the healthy items are redacted and written, the failing and
// panicking ones are reported by id alone.
#[test]
fn redact_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let (run, ok) = text_pipeline(&dir, &repo("pipelines/redact.toml"), "redact");
    assert_eq!(ok.len(), 3, "{:?}", dead_letters(&run));
    assert_eq!(jsonl(&run.out.join("redacted.jsonl")).len(), 3);
}

// redact-documents: PDF, DOCX, HTML and an e-mail with attachments, with canaries in their
// text, titles and headers, and broken ones holding canaries in their bytes: no content in the
// logs, and no phone, mail address or name of them in the outputs.
#[test]
fn redact_documents_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let c = Canaries::new();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mark = |t: &str| c.mark(t);
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(input.join(name), bytes).unwrap();
    write(
        "letter.pdf",
        common::pdf(&[
            &format!("Claim {}. Call 555-201-7788.", mark("pdf")),
            &format!("Or write to pdf.{}@example.com", c.run),
        ]),
    );
    write(
        "memo.docx",
        common::docx(
            &format!("Memo for ann.{}@example.com", c.run),
            &[&format!("Note {} for 555-301-8899.", mark("docx"))],
        ),
    );
    write(
        "page.html",
        format!(
            "<html><head><title>{}</title></head><body><p>Visit {} at 555-401-9911.</p></body></html>",
            mark("htmltitle"),
            mark("html")
        )
        .into_bytes(),
    );
    write(
        "mail.eml",
        format!(
            "From: Sam <sam.{run}@example.com>\r\nTo: claims@example.org\r\nSubject: {subject}\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nMy number is 555-501-2233. {body}\r\n\
             --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"n.txt\"\r\n\r\n\
             Attached {att}, mail att.{run}@example.com\r\n--b--\r\n",
            run = c.run,
            subject = mark("subject"),
            body = mark("body"),
            att = mark("attachment"),
        )
        .into_bytes(),
    );
    write(
        "broken.pdf",
        format!("%PDF-1.4 {}", mark("brokenpdf")).into_bytes(),
    );
    write(
        "broken.docx",
        format!("PK\x03\x04{}", mark("brokendocx")).into_bytes(),
    );
    // A scan: a page of text rendered to pixels (poppler's pdftoppm), read back by OCR; and an
    // image no OCR can read, with a canary in its bytes.
    let page = dir.path().join("page.pdf");
    std::fs::write(
        &page,
        common::pdf(&[&format!("Scanned {} call 555-601-4455", mark("scan"))]),
    )
    .unwrap();
    let rendered = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "150", "-singlefile"])
        .arg(&page)
        .arg(input.join("scan"))
        .status()
        .expect("pdftoppm (poppler-utils) is installed: scripts/deps.sh");
    assert!(rendered.success());
    write(
        "broken.png",
        format!("\u{89}PNG\r\n\u{1a}\n{}", mark("brokenpng")).into_bytes(),
    );
    let content: Vec<String> = [
        "pdf",
        "docx",
        "htmltitle",
        "html",
        "subject",
        "body",
        "attachment",
        "brokenpdf",
        "brokendocx",
        "scan",
        "brokenpng",
    ]
    .iter()
    .map(|t| mark(t))
    .collect();
    let pipeline = repo("pipelines/redact-documents.toml");
    let run = run(dir.path(), "redact-documents", &pipeline, &[input], &c);
    assert_eq!(run.code, Some(1), "the broken files fail:\n{}", run.stderr);
    assert_no_content_in_logs(&run, &pipeline, &content);
    let dead = dead_letters(&run);
    assert_eq!(dead.len(), 3, "{dead:?}");
    let records = jsonl(&run.out.join("redacted.jsonl"));
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "letter.pdf",
            "mail.eml",
            "mail.eml/1-n.txt",
            "memo.docx",
            "page.html",
            "scan.png"
        ]
    );
    let written: String = files_under(&run.out.join("redacted"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .chain([std::fs::read_to_string(run.out.join("redacted.jsonl")).unwrap()])
        .collect();
    for gone in [&format!("{}@example.com", c.run), "555-"] {
        assert!(!written.contains(gone), "{gone} in {written}");
    }
}

// redact-hipaa: the same for the Safe Harbor pipeline (dates to years, ages over 89).
#[test]
fn redact_hipaa_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let (run, ok) = text_pipeline(&dir, &repo("pipelines/redact-hipaa.toml"), "redact");
    assert_eq!(ok.len(), 3, "{:?}", dead_letters(&run));
    assert_eq!(jsonl(&run.out.join("redacted.jsonl")).len(), 3);
}

// redact with the vault operator: the vault (an undeclared file in the output folder) holds no
// value in the clear, and `lai reveal` with the key gets the removed values back.
#[test]
fn redact_vault_holds_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("redact.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let text = std::fs::read_to_string(repo("pipelines/redact.toml")).unwrap();
    let pipeline = dir.path().join("redact-vault.toml");
    let vaulted = text.replace(
        "operator = \"tag\"",
        &format!("operator = \"vault\"\nkey = \"file:{}\"", key.display()),
    );
    assert_ne!(
        vaulted, text,
        "the shipped pipeline sets `operator = \"tag\"`"
    );
    std::fs::write(&pipeline, vaulted).unwrap();
    let (run, ok) = text_pipeline(&dir, &pipeline, "redact");
    assert_eq!(ok.len(), 3, "{:?}", dead_letters(&run));
    let redacted = run.out.join("redacted.jsonl");
    let sealed = std::fs::read_to_string(&redacted).unwrap();
    assert!(sealed.contains("[EMAIL_"), "{sealed}");
    let restored = lai()
        .args(["reveal", "-o"])
        .arg(&run.out)
        .arg("--key")
        .arg(format!("file:{}", key.display()))
        .arg("--text")
        .arg(&redacted)
        .output()
        .unwrap();
    assert_eq!(restored.status.code(), Some(0));
    let restored = String::from_utf8_lossy(&restored.stdout);
    assert!(
        !restored.contains("[EMAIL_") && restored.contains('@'),
        "{restored}"
    );
}

// embed: item text never reaches the logs; the healthy items are embedded.
#[test]
fn embed_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let (run, ok) = text_pipeline(&dir, &repo("pipelines/embed.toml"), "embed");
    assert_eq!(ok.len(), 3, "{:?}", dead_letters(&run));
    assert_eq!(jsonl(&run.out.join("embeddings.jsonl")).len(), 3);
}

// classify: item text never reaches the logs; the healthy items are labelled.
#[test]
fn classify_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let (run, ok) = text_pipeline(&dir, &repo("pipelines/classify.toml"), "classify");
    assert_eq!(ok.len(), 3, "{:?}", dead_letters(&run));
    assert_eq!(jsonl(&run.out.join("labels.jsonl")).len(), 3);
}

// classify-tickets: the same, with labels going to Parquet and SQLite tables.
#[test]
fn classify_tickets_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = repo("pipelines/classify-tickets.toml");
    let c = Canaries::new();
    let input = dir.path().join("tickets.csv");
    let content = [
        c.mark("subject"),
        c.mark("body"),
        c.mark("short-row"),
        c.mark("panic"),
    ];
    std::fs::write(
        &input,
        format!(
            "id,priority,subject,body\n\
             t1,high,{},\"charged twice, {}\"\n\
             t2,low,{}\n\
             t3,normal,Login,{} {}\n\
             t4,normal,Parcel,never arrived\n",
            content[0],
            content[1],
            content[2],
            content[3],
            c.panic_trigger()
        ),
    )
    .unwrap();
    let run = run(dir.path(), "classify-tickets", &pipeline, &[input], &c);
    assert_eq!(run.code, Some(1), "some rows fail:\n{}", run.stderr);
    assert_no_content_in_logs(&run, &pipeline, &content);
    assert_panicked_alone(&run, "t3", "classify");
    let dead = dead_letters(&run);
    assert!(
        dead.iter()
            .any(|(id, stage, e)| id.ends_with("tickets.csv:3")
                && stage == "input"
                && e.contains("line 3")),
        "{dead:?}"
    );
    let ids: Vec<String> = common::parquet_rows(&run.out.join("tickets.parquet"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["t1", "t4"]);
}

// summarize: neither item text nor the model's summaries reach the logs.
#[test]
fn summarize_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = text_pipeline(&dir, &repo("pipelines/summarize.toml"), "llm");
    let summaries = jsonl(&run.out.join("summaries.jsonl"));
    assert!(!summaries.is_empty());
    let said: Vec<String> = summaries
        .iter()
        .filter_map(|r| r["summary"].as_str())
        .filter(|s| s.len() >= 16)
        .map(String::from)
        .collect();
    assert_no_content_in_logs(&run, &repo("pipelines/summarize.toml"), &said);
}

// extract: two llm stages (JSON fields, then a label); item text and answers stay out of logs.
#[test]
fn extract_logs_no_content() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = text_pipeline(&dir, &repo("pipelines/extract.toml"), "llm");
    let records = jsonl(&run.out.join("extracted.jsonl"));
    let said: Vec<String> = records
        .iter()
        .flat_map(|r| ["name", "email", "phone", "date"].map(|k| r[k].as_str().map(String::from)))
        .flatten()
        .filter(|s| s.len() >= 8)
        .collect();
    assert_no_content_in_logs(&run, &repo("pipelines/extract.toml"), &said);
}

// An llm answer that is not valid JSON (cut at `max_tokens` while copying the document) fails
// with where and why, never the answer's text, which here holds the document's canaries.
#[test]
fn llm_json_failure_quotes_no_answer() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("copy.toml");
    std::fs::write(
        &pipeline,
        r#"name = "copy"
[input]
kind = "files"
glob = ["**/*.txt", "**/*.jsonl"]
[[stage]]
use = "llm"
prompt = "Copy the document below into the field `copy`, word for word.\n\nDocument:\n{{text}}"
output = "json"
fields = ["copy"]
max_tokens = 10
[[output]]
kind = "jsonl"
path = "{out}/copied.jsonl"
"#,
    )
    .unwrap();
    let c = Canaries::new();
    let (inputs, content) = text_inputs(dir.path(), &c);
    let run = run(dir.path(), "copy", &pipeline, &inputs, &c);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_no_content_in_logs(&run, &pipeline, &content);
    let dead = dead_letters(&run);
    let cut: Vec<_> = dead
        .iter()
        .filter(|(_, _, e)| e.contains("was not valid JSON (it ends early at line "))
        .collect();
    assert!(!cut.is_empty(), "{dead:?}");
    assert!(cut.iter().all(|(_, _, e)| e.contains("raise `max_tokens`")));
}

/// Audio inputs: a sample clip, a "WAV" file that is text with a canary (it fails to decode),
/// and a silent clip whose path marks it to panic.
fn audio_inputs(dir: &Path, c: &Canaries) -> (Vec<PathBuf>, Vec<String>) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(repo("samples/audio/hello.wav"), input.join("hello.wav")).unwrap();
    std::fs::write(
        input.join("broken.wav"),
        format!("RIFF not audio at all: {}", c.mark("wav")),
    )
    .unwrap();
    let panics = input.join(format!("{}.wav", c.panic_trigger()));
    std::fs::copy(repo("samples/audio/silence.wav"), &panics).unwrap();
    (vec![input], vec![c.mark("wav")])
}

/// Runs an audio pipeline and checks that the logs hold neither canaries nor transcripts.
fn audio_pipeline(pipeline: &Path, text_fields: &[&str]) {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let c = Canaries::new();
    let (inputs, mut content) = audio_inputs(dir.path(), &c);
    let name = pipeline.file_stem().unwrap().to_string_lossy().into_owned();
    let run = run(dir.path(), &name, pipeline, &inputs, &c);
    assert_eq!(run.code, Some(1), "some items fail:\n{}", run.stderr);
    let records = jsonl(&run.out.join("transcripts.jsonl"));
    let hello = records
        .iter()
        .find(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| Path::new(id).ends_with("hello.wav"))
        })
        .unwrap_or_else(|| panic!("hello.wav is transcribed: {records:?}"));
    for field in text_fields {
        let text = hello[*field]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(text.len() >= 8, "{field}: {text:?}");
        content.push(text);
    }
    assert_no_content_in_logs(&run, pipeline, &content);
    let dead = dead_letters(&run);
    assert!(
        dead.iter()
            .any(|(id, stage, _)| Path::new(id).ends_with("broken.wav") && stage == "transcribe"),
        "{dead:?}"
    );
    assert_panicked_alone(&run, &format!("{}.wav", c.panic_trigger()), "transcribe");
}

// transcribe: neither the transcript nor a broken file's bytes nor a panic reach the logs.
#[test]
fn transcribe_logs_no_content() {
    audio_pipeline(&repo("pipelines/transcribe.toml"), &["text"]);
}

// calls: each channel heard alone (`channels = "split"`); no transcript reaches the logs.
#[test]
fn calls_logs_no_content() {
    audio_pipeline(&repo("pipelines/calls.toml"), &["text"]);
}

// transcribe-clean: Whisper then the llm cleanup; neither transcript reaches the logs.
#[test]
fn transcribe_clean_logs_no_content() {
    audio_pipeline(
        &repo("pipelines/transcribe-clean.toml"),
        &["text", "clean_text"],
    );
}

// The tests above cover every pipeline that ships.
#[test]
fn every_shipped_pipeline_is_covered() {
    let mut shipped: Vec<String> = std::fs::read_dir(repo("pipelines"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(String::from)
        })
        .collect();
    shipped.sort();
    assert_eq!(shipped, SHIPPED);
}

// The NER model reads Korean, Japanese, Arabic, Hindi, Greek, emoji and combining marks
// without failing an item (a Korean name once made its offsets slice inside a character).
#[test]
fn ner_reads_every_script() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "김민준 씨는 서울시 강남구 테헤란로 152에 삽니다. 연락처는 010-1234-5678입니다.",
        "이서연과 박지훈이 부산에서 만났다.",
        "山田太郎さんの住所は東京都新宿区西新宿2-8-1です。",
        "اسمي محمد عبد الله وأسكن في القاهرة",
        "मेरा नाम राहुल शर्मा है और मैं दिल्ली में रहता हूँ",
        "Ο Γιώργος Παπαδόπουλος μένει στην Αθήνα",
        "José Müller e\u{301}e\u{301} lives at 12 Main St 👍🏽👨‍👩‍👧 ﬁle ǅ Ⅻ ㎏ ﾊﾟ",
    ];
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": format!("script-{i}"), "text": t}).to_string())
        .collect();
    let input = dir.path().join("scripts.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let output = lai()
        .args(["run", "--progress", "never", "--jobs", "2"])
        .arg(repo("pipelines/redact.toml"))
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let records = jsonl(&out.join("redacted.jsonl"));
    assert_eq!(records.len(), texts.len());
    for record in &records {
        let text = record["text"].as_str().unwrap();
        for span in record["redactions"]["spans"].as_array().unwrap() {
            let (start, end) = (
                span["start"].as_u64().unwrap(),
                span["end"].as_u64().unwrap(),
            );
            assert!(start < end, "{record}");
        }
        assert!(!text.is_empty());
    }
}
