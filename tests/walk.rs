//! Reading inputs safely: the output folder is never read back, an input that is an output is
//! refused, broken links and loops fail their own item only, ids do not depend on how a folder
//! is spelled, duplicate ids are resolved the same way every run, byte order marks are skipped
//! and control characters in file names are printed escaped.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod common;

use common::{ids, jsonl, lai, lai_run};

/// A rules-only redact pipeline (no model: fast) taking `glob`, with a JSONL output and a
/// per-item text output (whose `.txt` files the default glob would take).
fn pipeline(dir: &Path, glob: &str) -> PathBuf {
    let path = dir.join("redact.toml");
    let text = format!(
        "name = \"redact\"\n[input]\nkind = \"files\"\nglob = [{glob}]\n[[stage]]\nuse = \"redact\"\nentities = [\"email\"]\n\
         [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/redacted.jsonl\"\n\
         [[output]]\nkind = \"text\"\ndir = \"{{out}}/text\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

const TEXT_AND_JSONL: &str = "\"**/*.txt\", \"**/*.jsonl\"";

/// `lai run` in `cwd` with any inputs and arguments; the output, whatever the exit code.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    lai()
        .current_dir(cwd)
        .args(["run", "--progress", "never"])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn counts(report: &Path) -> Value {
    let text = std::fs::read_to_string(report).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["items"].clone()
}

// `lai run p.toml .` with the default `lai-out` inside `.`: a rerun reads only the inputs, not
// the text and JSONL files the first run wrote there.
#[test]
fn output_folder_inside_the_input_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), TEXT_AND_JSONL);
    std::fs::write(dir.path().join("a.txt"), "mail a@example.com").unwrap();
    for _ in 0..3 {
        let out = run_in(dir.path(), &[p.to_str().unwrap(), "."]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(ids(&dir.path().join("lai-out/redacted.jsonl")), ["a.txt"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("lai-out/text"))
            .unwrap()
            .count(),
        1
    );
}

// An input that is one of the run's outputs, or lies in its per-item folder, is refused with
// exit 2 before anything is written: the file is left byte for byte as it was.
#[test]
fn an_input_that_is_an_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), TEXT_AND_JSONL);
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "mail a@example.com").unwrap();
    let out = dir.path().join("out");
    lai_run(&p, &docs, &out, &[]).code(0);
    let records = out.join("redacted.jsonl");
    let before = std::fs::read(&records).unwrap();
    lai_run(&p, &records, &out, &[])
        .code(2)
        .stderr(predicates::str::contains("is also an output of this run"));
    lai_run(&p, &out.join("text/a.txt.txt"), &out, &[])
        .code(2)
        .stderr(predicates::str::contains(
            "lies inside an output of this run",
        ));
    // Spelled another way, through `..`, it is still the same file.
    let sideways = dir.path().join("docs/../out/redacted.jsonl");
    lai_run(&p, &sideways, &out, &[]).code(2);
    assert_eq!(std::fs::read(&records).unwrap(), before);
}

// A dangling symlink, a symlink loop and a symlink out of the input folder each fail as one
// item naming the path; the run reads the rest and exits 1, on every rerun; the target outside
// is never read.
#[test]
fn broken_links_fail_their_own_item() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"**/*.txt\"");
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "mail a@example.com").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "SECRET-OUTSIDE").unwrap();
    std::os::unix::fs::symlink("missing.txt", docs.join("dangling.txt")).unwrap();
    std::os::unix::fs::symlink(".", docs.join("loop")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", docs.join("outside.txt")).unwrap();
    std::fs::create_dir(docs.join("sub")).unwrap();
    std::os::unix::fs::symlink("../a.txt", docs.join("sub/inside.txt")).unwrap();
    let out = dir.path().join("out");
    for run in 0..2 {
        let assert = lai_run(&p, &docs, &out, &[]).code(1);
        let text = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for (path, why) in [
            ("dangling.txt", "does not exist"),
            ("loop", "symbolic link loop"),
            ("outside.txt", "outside the input folder"),
        ] {
            assert!(
                text.lines().any(|l| l.contains(path) && l.contains(why)),
                "run {run}: no error for {path}: {text}"
            );
        }
    }
    let errors = ids(&out.join("errors.jsonl"));
    assert_eq!(errors, ["dangling.txt", "loop", "outside.txt"]);
    // The link inside the folder leads to a file already read: one item, not two.
    assert_eq!(ids(&out.join("redacted.jsonl")), ["a.txt"]);
    let written = std::fs::read_to_string(out.join("redacted.jsonl")).unwrap();
    assert!(!written.contains("SECRET-OUTSIDE"));
}

// `./docs`, `docs/`, `/abs/docs` and `docs/../docs` give the same ids, so a rerun with another
// spelling skips everything; the same file named twice is one item.
#[test]
fn ids_do_not_depend_on_how_the_folder_is_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), TEXT_AND_JSONL);
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("a.txt"), "mail a@example.com").unwrap();
    std::fs::write(docs.join("sub/b.txt"), "mail b@example.com").unwrap();
    std::fs::write(docs.join("t.jsonl"), "{\"text\": \"c@example.com\"}\n").unwrap();
    let report = dir.path().join("report.json");
    let absolute = docs.to_str().unwrap();
    for (i, spelling) in ["./docs", "docs/", absolute, "docs/../docs"]
        .iter()
        .enumerate()
    {
        let args = [p.to_str().unwrap(), spelling, "-o", "out"];
        let args = [&args[..], &["--report", report.to_str().unwrap()]].concat();
        let out = run_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{spelling}: {}", stderr(&out));
        let skipped = if i == 0 { 0 } else { 3 };
        assert_eq!(counts(&report)["skipped"], skipped, "{spelling}");
    }
    assert_eq!(
        ids(&dir.path().join("out/redacted.jsonl")),
        ["a.txt", "sub/b.txt", "t.jsonl:1"]
    );
    let a = docs.join("a.txt");
    let out = run_in(
        dir.path(),
        &[p.to_str().unwrap(), "docs/a.txt", a.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ids(&dir.path().join("lai-out/redacted.jsonl")), ["a.txt"]);
}

// Two records with one id, and two folders with the same file name: the later one fails with
// "duplicate id, first seen at ..." under an id of its own, on every run, and the first one's
// record stays in the outputs.
#[test]
fn duplicate_ids_fail_the_later_item_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), TEXT_AND_JSONL);
    for folder in ["one", "two"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        std::fs::write(dir.path().join(folder).join("x.txt"), "x@example.com").unwrap();
    }
    std::fs::write(
        dir.path().join("one/t.jsonl"),
        "{\"id\": \"a\", \"text\": \"first\"}\n{\"id\": \"b\", \"text\": \"b\"}\n{\"id\": \"a\", \"text\": \"second\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    for run in 0..2 {
        let output = run_in(
            dir.path(),
            &[p.to_str().unwrap(), "one", "two", "-o", "out"],
        );
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(
            text.contains("duplicate id `a`, first seen at one/t.jsonl:1"),
            "run {run}: {text}"
        );
        assert!(
            text.contains("duplicate id `x.txt`, first seen at one/x.txt"),
            "run {run}: {text}"
        );
    }
    assert_eq!(ids(&out.join("errors.jsonl")), ["a#2", "x.txt#2"]);
    let records = jsonl(&out.join("redacted.jsonl"));
    let a: Vec<&Value> = records.iter().filter(|r| r["id"] == "a").collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["text"], "first");
}

// A UTF-8 byte order mark at the start of a JSONL file or a text file is not part of the data.
#[test]
fn byte_order_marks_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), TEXT_AND_JSONL);
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(
        docs.join("t.jsonl"),
        "\u{feff}{\"id\": \"j\", \"text\": \"write j@example.com\"}\n",
    )
    .unwrap();
    std::fs::write(docs.join("a.txt"), "\u{feff}write a@example.com").unwrap();
    let out = dir.path().join("out");
    lai_run(&p, &docs, &out, &[]).code(0);
    let records = jsonl(&out.join("redacted.jsonl"));
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r["text"].as_str().unwrap().starts_with("write "), "{r}");
    }
}

// A file name with a newline and an escape sequence is printed escaped: it can neither forge
// a line of lai's output nor drive the terminal.
#[test]
fn control_characters_in_names_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"**/*.txt\"");
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("bad\nerror: forged\x1b[31m.txt"), b"\0binary").unwrap();
    let out = dir.path().join("out");
    let assert = lai_run(&p, &docs, &out, &[]).code(1);
    let text = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(text.contains("bad\\nerror: forged\\x1b[31m.txt"), "{text}");
    assert!(!text.contains('\x1b'), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("error: forged")),
        "{text}"
    );
}
