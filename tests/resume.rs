//! Runs that survive: `kill -9` at random moments then a rerun gives the uninterrupted run's
//! outputs, a second run on the same folder is refused, changed inputs or settings reprocess
//! exactly the affected items, failures are retried on request, and N shards merged equal one
//! unsharded run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

mod common;

use common::{jsonl, lai, lai_run};

/// A rules-only redact pipeline (no model: fast) with a JSONL, a CSV and a per-item output.
fn pipeline(dir: &Path, entities: &str, per_item: bool) -> PathBuf {
    let path = dir.join("redact.toml");
    let mut text = format!(
        "name = \"redact\"\n[input]\nkind = \"files\"\n[[stage]]\nuse = \"redact\"\nentities = [{entities}]\npatterns = {{ employee_id = 'EMP-\\d{{6}}' }}\n\
         [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/redacted.jsonl\"\n\
         [[output]]\nkind = \"csv\"\npath = \"{{out}}/redactions.csv\"\ncolumns = [\"id\", \"redactions\"]\n"
    );
    if per_item {
        text += "[[output]]\nkind = \"text\"\ndir = \"{out}/text\"\n";
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `n` documents as JSONL, every 97th line malformed (it must reach the dead letters).
fn corpus(path: &Path, n: usize, salt: &str) {
    let mut lines = String::new();
    for i in 0..n {
        if i % 97 == 50 {
            lines += "{\"id\": \"broken\", \"text\": \n";
            continue;
        }
        let filler = "lorem ipsum dolor ".repeat(1 + i % 40);
        let doc = serde_json::json!({
            "id": format!("doc-{i}"),
            "text": format!("Ticket {i}{salt}: call 555-{:03}-{:04} or write to user{i}@example.com, EMP-{:06}. {filler}", i % 1000, i % 10000, i * 7 % 1_000_000),
        });
        lines += &doc.to_string();
        lines.push('\n');
    }
    std::fs::write(path, lines).unwrap();
}

fn run(pipeline: &Path, input: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    lai_run(pipeline, input, out, &[&["--jobs", "2"], extra].concat())
}

/// The lines of a file, sorted (outputs are compared order aside).
fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

/// Every file below `dir` (but the ledger and lock) with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with("shard-") {
                    stack.push(path);
                }
            } else if !name.starts_with("lai-ledger") && name != "lai.lock" {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The run report's item counts.
fn counts(report: &Path) -> Value {
    let text = std::fs::read_to_string(report).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["items"].clone()
}

/// The ledger agrees with the outputs: every current done item's byte range in the JSONL
/// output holds a record with its id, and those ranges cover the file exactly once.
fn assert_ledger_matches(out: &Path) {
    let db = rusqlite::Connection::open(out.join("lai-ledger.sqlite")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT i.id, o.offset, o.length FROM items i JOIN outputs o ON o.item = i.item
             WHERE i.current = 1 AND i.status = 'done' AND o.path = 'redacted.jsonl'
             ORDER BY o.offset",
        )
        .unwrap();
    let rows: Vec<(String, u64, u64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let bytes = std::fs::read(out.join("redacted.jsonl")).unwrap();
    let mut end = 0;
    for (id, offset, length) in &rows {
        assert_eq!(*offset, end, "records are contiguous");
        let record: Value =
            serde_json::from_slice(&bytes[*offset as usize..(offset + length) as usize]).unwrap();
        assert_eq!(record["id"], id.as_str());
        end = offset + length;
    }
    assert_eq!(end, bytes.len() as u64, "no record outside the ledger");
    let replaced_outputs: i64 = db
        .query_row(
            "SELECT count(*) FROM outputs o JOIN items i ON i.item = o.item WHERE i.current = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(replaced_outputs, 0, "replaced results left no records");
}

// Killed with SIGKILL at five points of observed progress (the JSONL output grown past a
// random, rising share of its final size), then run to completion: the outputs are byte for
// byte those of an uninterrupted run (order aside), each item exactly once, and the ledger
// agrees with them. Kills follow the output, not the clock, so every one lands mid-run however
// fast or loaded the machine is.
#[test]
fn sigkill_then_resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"email\", \"phone\"", true);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text += "[[output]]\nkind = \"sqlite\"\npath = \"{out}/records.sqlite\"\ncolumns = [\"text\"]\n\
             [[output]]\nkind = \"parquet\"\npath = \"{out}/records.parquet\"\ncolumns = [\"text\"]\n";
    std::fs::write(&p, text).unwrap();
    let input = dir.path().join("docs.jsonl");
    corpus(&input, 30_000, "");
    let reference = dir.path().join("reference");
    run(&p, &input, &reference, &["-q"]).code(1); // the broken lines fail
    let full = std::fs::metadata(reference.join("redacted.jsonl"))
        .unwrap()
        .len();

    let out = dir.path().join("out");
    let output = out.join("redacted.jsonl");
    let mut seed = 0x9e37_79b9_u64;
    for kill in 0..5u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Kill k at 10%..80% of the final size, rising: a resumed run starts at or below the
        // previous kill's point (repair drops what the ledger had not committed) and must pass
        // this one before it can finish.
        let share = (0.1 + 0.14 * kill as f64 + (seed % 1000) as f64 / 1000.0 * 0.1).min(0.8);
        let target = (full as f64 * share) as u64;
        let mut child = Process::new(assert_cmd::cargo::cargo_bin("lai"))
            .args(["run", "-q", "--progress", "never", "--jobs", "2"])
            .arg(&p)
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::fs::metadata(&output).map_or(0, |m| m.len()) < target {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "run {kill} ended ({status}) before its output reached {target} of {full} bytes"
                );
            }
            assert!(Instant::now() < deadline, "run {kill} made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let report = dir.path().join("report.json");
    run(&p, &input, &out, &["--report", report.to_str().unwrap()]).code(1);
    assert!(
        counts(&report)["skipped"].as_u64().unwrap() > 0,
        "it resumed"
    );

    for file in ["redacted.jsonl", "redactions.csv", "errors.jsonl"] {
        assert_eq!(
            sorted_lines(&out.join(file)),
            sorted_lines(&reference.join(file)),
            "{file}"
        );
    }
    assert_eq!(tree(&out.join("text")), tree(&reference.join("text")));
    let ids: Vec<String> = jsonl(&out.join("redacted.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no item twice");
    assert_eq!(ids.len(), 30_000 - 309);
    // The SQLite table: a row per item written, the same text as its JSONL record.
    let db = rusqlite::Connection::open(out.join("records.sqlite")).unwrap();
    let mut rows: Vec<(String, String)> = db
        .prepare("SELECT id, text FROM records")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    let mut records: Vec<(String, String)> = jsonl(&out.join("redacted.jsonl"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    records.sort();
    assert!(
        rows == records,
        "the SQLite rows are the JSONL records, once each"
    );
    let mut rows: Vec<(String, String)> = common::parquet_rows(&out.join("records.parquet"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    rows.sort();
    assert!(
        rows == records,
        "the Parquet rows are the JSONL records, once each"
    );
    assert!(
        !std::fs::read_dir(out.join("text")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".lai-tmp")),
        "no temporary file left"
    );
    assert_ledger_matches(&out);
}

// A second run on a folder in use exits at once with code 75 and a message; the first one is
// unharmed. `--quiet` prints nothing on success.
#[test]
fn concurrent_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"email\"", false);
    let out = dir.path().join("out");
    // The first run reads stdin, so it holds the folder until stdin closes.
    let mut first = Process::new(assert_cmd::cargo::cargo_bin("lai"))
        .args(["run", "-q", "--progress", "never"])
        .arg(&p)
        .arg("-")
        .arg("-o")
        .arg(&out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.join("lai-ledger.sqlite").exists() {
        assert!(Instant::now() < deadline, "the first run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let input = dir.path().join("docs.jsonl");
    corpus(&input, 10, "");
    // Refused, not queued: the first run holds the folder until its stdin closes below, so a
    // second run that waited would never end (the timeout turns that into a failure).
    lai()
        .args(["run", "--progress", "never"])
        .arg(&p)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .timeout(Duration::from_secs(300))
        .assert()
        .code(75)
        .stderr(predicates::str::contains("another lai run is using"));

    let mut stdin = first.stdin.take().unwrap();
    stdin
        .write_all(b"{\"id\": \"a\", \"text\": \"mail me at a@example.com\"}\n")
        .unwrap();
    drop(stdin);
    let output = first.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        output.stderr.is_empty(),
        "--quiet printed: {:?}",
        output.stderr
    );
    let records = jsonl(&out.join("redacted.jsonl"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["text"], "mail me at [EMAIL]");
}

// Changed inputs reprocess exactly those items; a changed setting reprocesses all, with each
// new record replacing the old; a reformatted pipeline file or a renamed file reprocess none.
#[test]
fn changes_reprocess_exactly_the_affected_items() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs");
    std::fs::create_dir(&input).unwrap();
    for i in 0..20 {
        std::fs::write(
            input.join(format!("{i}.txt")),
            format!("Doc {i}: a{i}@example.com, 555-010-{i:04}\n"),
        )
        .unwrap();
    }
    let p = pipeline(dir.path(), "\"email\"", true);
    let out = dir.path().join("out");
    let report = dir.path().join("report.json");
    let report_arg = ["--report", report.to_str().unwrap()];
    let written = || counts(&report)["written"].as_u64().unwrap();
    run(&p, &input, &out, &report_arg).code(0);
    assert_eq!(written(), 20);

    // Three files change.
    for i in [3, 7, 11] {
        std::fs::write(
            input.join(format!("{i}.txt")),
            format!("Doc {i} v2: b{i}@example.com\n"),
        )
        .unwrap();
    }
    run(&p, &input, &out, &report_arg).code(0);
    assert_eq!(written(), 3);
    let records = jsonl(&out.join("redacted.jsonl"));
    assert_eq!(records.len(), 20);
    assert_eq!(
        records
            .iter()
            .filter(|r| r["text"].as_str().unwrap().contains("v2"))
            .count(),
        3
    );

    // A setting changes: phones are redacted now, in every record.
    let p = pipeline(dir.path(), "\"email\", \"phone\"", true);
    run(&p, &input, &out, &report_arg).code(0);
    assert_eq!(written(), 20);
    let records = jsonl(&out.join("redacted.jsonl"));
    assert_eq!(records.len(), 20);
    assert_eq!(
        records
            .iter()
            .filter(|r| r["text"].as_str().unwrap().contains("[PHONE]"))
            .count(),
        17
    );
    assert_eq!(
        sorted_lines(&out.join("redactions.csv")).len(),
        21,
        "one header, 20 rows"
    );
    assert_ledger_matches(&out);

    // Comments and key order do not change what the pipeline does.
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        format!(
            "# reformatted\n{}",
            text.replace("name = \"redact\"", "name = \"redact\"   # same")
        ),
    )
    .unwrap();
    run(&p, &input, &out, &report_arg).code(0);
    assert_eq!(written(), 0);

    // A renamed file is not processed again.
    std::fs::rename(input.join("5.txt"), input.join("5-renamed.txt")).unwrap();
    run(&p, &input, &out, &report_arg).code(0);
    assert_eq!(written(), 0);
    assert_eq!(counts(&report)["skipped"], 20);

    // --fresh redoes everything, and the outputs stay one record per item.
    run(&p, &input, &out, &[&report_arg[..], &["--fresh"]].concat()).code(0);
    assert_eq!(written(), 20);
    assert_eq!(jsonl(&out.join("redacted.jsonl")).len(), 20);
    assert_ledger_matches(&out);
}

// Swapping a model reprocesses every item; the same model again reprocesses none.
#[test]
fn swapped_model_reprocesses() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    corpus(&input, 6, "");
    let report = dir.path().join("report.json");
    let out = dir.path().join("out");
    for (model, expected) in [
        ("all-minilm-l6-v2", 6),
        ("all-minilm-l6-v2-int8", 6),
        ("all-minilm-l6-v2-int8", 0),
    ] {
        let p = dir.path().join("embed.toml");
        std::fs::write(
            &p,
            format!("[input]\nkind = \"files\"\n[[stage]]\nuse = \"embed\"\nmodel = \"{model}\"\n[[output]]\nkind = \"jsonl\"\n"),
        )
        .unwrap();
        run(&p, &input, &out, &["--report", report.to_str().unwrap()]).code(0);
        assert_eq!(counts(&report)["written"], expected, "{model}");
        let records = jsonl(&out.join("records.jsonl"));
        assert_eq!(records.len(), 6);
        assert!(
            records
                .iter()
                .all(|r| r["_lai"]["models"][model].is_string()),
            "{model}"
        );
    }
}

// Failures are recorded and skipped by a plain rerun (which still exits 1); --retry-failed
// processes only them, and a fixed input replaces its dead letter.
#[test]
fn failures_are_retried_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"email\"", false);
    let input = dir.path().join("docs.jsonl");
    let good = r#"{"id": "ok", "text": "a@example.com"}"#;
    std::fs::write(&input, format!("{good}\n{{\"id\": \"n\", \"text\": 5}}\n")).unwrap();
    let out = dir.path().join("out");
    let report = dir.path().join("report.json");
    let report_arg = ["--report", report.to_str().unwrap()];
    run(&p, &input, &out, &report_arg).code(1);
    assert_eq!(jsonl(&out.join("errors.jsonl"))[0]["id"], "n");
    run(&p, &input, &out, &report_arg)
        .code(1)
        .stderr(predicates::str::contains("--retry-failed"));
    assert_eq!(counts(&report)["skipped"], 2);
    run(
        &p,
        &input,
        &out,
        &[&report_arg[..], &["--retry-failed"]].concat(),
    )
    .code(1);
    assert_eq!(counts(&report)["failed"], 1);
    assert_eq!(counts(&report)["skipped"], 1);
    assert_eq!(
        jsonl(&out.join("errors.jsonl")).len(),
        1,
        "the retry replaced its dead letter"
    );

    std::fs::write(
        &input,
        format!("{good}\n{{\"id\": \"n\", \"text\": \"five\"}}\n"),
    )
    .unwrap();
    run(&p, &input, &out, &report_arg).code(0);
    assert_eq!(counts(&report)["written"], 1);
    assert_eq!(
        std::fs::read_to_string(out.join("errors.jsonl")).unwrap(),
        ""
    );
    assert_eq!(jsonl(&out.join("redacted.jsonl")).len(), 2);
    lai()
        .args(["ledger", "-o"])
        .arg(&out)
        .arg("n")
        .assert()
        .success()
        .stdout(predicates::str::contains("replaced").and(predicates::str::contains("current")));
}

// All N shards, run as N processes at once (one taking K and N from a Kubernetes Indexed Job's
// variables), then merged, give the unsharded run's outputs; no item is in two shards.
#[test]
fn shards_merged_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"email\", \"phone\"", true);
    let input = dir.path().join("docs.jsonl");
    corpus(&input, 2_000, "");
    let whole = dir.path().join("whole");
    run(&p, &input, &whole, &["-q"]).code(1);

    let out = dir.path().join("sharded");
    let children: Vec<_> = (0..3)
        .map(|k| {
            let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("lai"));
            cmd.args(["run", "-q", "--progress", "never", "--jobs", "1"])
                .arg(&p)
                .arg(&input)
                .arg("-o")
                .arg(&out);
            if k == 2 {
                cmd.env("JOB_COMPLETION_INDEX", "2")
                    .env("JOB_COMPLETIONS", "3");
            } else {
                cmd.arg("--shard").arg(format!("{k}/3"));
            }
            cmd.stderr(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut child in children {
        assert_eq!(child.wait().unwrap().code(), Some(1));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for k in 0..3 {
        let records = jsonl(&out.join(format!("shard-{k}-of-3/redacted.jsonl")));
        assert!(records.len() > 400, "shard {k} has {}", records.len());
        total += records.len();
        seen.extend(
            records
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(seen.len(), total, "no item in two shards");

    lai()
        .arg("merge")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("merged 3 shards"));
    let (merged, reference) = (tree(&out), tree(&whole));
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &reference {
        let sorted = |b: &[u8]| {
            let mut lines: Vec<&[u8]> = b.split(|c| *c == b'\n').collect();
            lines.sort();
            lines.concat()
        };
        assert_eq!(sorted(&merged[path]), sorted(bytes), "{}", path.display());
    }
    let csv = std::fs::read_to_string(out.join("redactions.csv")).unwrap();
    assert_eq!(csv.matches("id,redactions").count(), 1, "one header");
    assert_ledger_matches(&out);
    // Merging again gives the same files.
    lai().arg("merge").arg(&out).assert().success();
    assert_eq!(tree(&out), merged);
}

// Two pipelines writing into one folder (as scripts/setup.sh does) keep their own items: a
// rerun of either skips everything and neither loses the other's records.
#[test]
fn pipelines_sharing_a_folder_keep_their_items() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    corpus(&input, 60, ""); // line 51 is broken
    let first = pipeline(dir.path(), "\"email\"", false);
    let second = dir.path().join("second.toml");
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(
        &second,
        text.replace("name = \"redact\"", "name = \"phones\"")
            .replace("[\"email\"]", "[\"phone\"]")
            .replace("redacted.jsonl", "phones.jsonl")
            .replace("redactions.csv", "phones.csv"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = dir.path().join("report.json");
    let report_arg = ["--report", report.to_str().unwrap()];
    for p in [&first, &second, &first, &second] {
        run(p, &input, &out, &report_arg).code(1);
    }
    assert_eq!(counts(&report)["written"], 0);
    assert_eq!(jsonl(&out.join("redacted.jsonl")).len(), 59);
    assert_eq!(jsonl(&out.join("phones.jsonl")).len(), 59);
    assert_eq!(
        jsonl(&out.join("errors.jsonl")).len(),
        2,
        "one dead letter per pipeline"
    );
    run(
        &first,
        &input,
        &out,
        &[&report_arg[..], &["--fresh"]].concat(),
    )
    .code(1);
    assert_eq!(
        jsonl(&out.join("phones.jsonl")).len(),
        59,
        "--fresh is per pipeline"
    );
    assert_eq!(jsonl(&out.join("errors.jsonl")).len(), 2);
}
