//! Outputs that can be trusted: one per-item file per item with a bounded name, a write that
//! fails for one item fails only that item, CSV cells that no spreadsheet runs as formulas and
//! a CSV header that always matches its rows, bytes on disk before the ledger commits them, and
//! per-item files that a rerun writes again when they went missing.
//!
//! Every test runs the real `lai` binary with a rules-only redact pipeline (no model: fast).

use std::path::{Path, PathBuf};

use predicates::prelude::*;

mod common;

use common::{ids, jsonl, lai_run};

/// A rules-only redact pipeline over text and JSONL files, with a JSONL output, a CSV output
/// with `columns`, and a per-item text output (after the JSONL one, so a failed text write
/// shows whether the JSONL record was taken back).
fn pipeline(dir: &Path, columns: &str) -> PathBuf {
    let path = dir.join("redact.toml");
    let text = format!(
        "name = \"redact\"\n[input]\nkind = \"files\"\nglob = [\"**/*.txt\", \"**/*.md\", \"**/*.jsonl\"]\n\
         [[stage]]\nuse = \"redact\"\nentities = [\"email\"]\n\
         [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/redacted.jsonl\"\n\
         [[output]]\nkind = \"csv\"\npath = \"{{out}}/table.csv\"\ncolumns = [{columns}]\n\
         [[output]]\nkind = \"text\"\ndir = \"{{out}}/text\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A folder `docs` in `dir` holding `files` (name, contents).
fn docs(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (name, text) in files {
        std::fs::write(docs.join(name), text).unwrap();
    }
    docs
}

/// The file names in a folder, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every row of a CSV file, header first.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

// Inputs that differ only in their extension, and record ids that differ only in characters a
// file name cannot hold, each get a file of their own with their own text, named the same way
// in a second run (which then has nothing to do).
#[test]
fn each_item_gets_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"id\"");
    let input = docs(
        dir.path(),
        &[
            ("a.txt", "plain a"),
            ("a.md", "markdown a"),
            (
                "r.jsonl",
                "{\"id\": \"a/b\", \"text\": \"slash\"}\n{\"id\": \"a_b\", \"text\": \"underscore\"}\n",
            ),
        ],
    );
    let out = dir.path().join("out");
    lai_run(&p, &input, &out, &["-q"]).success();
    let text = out.join("text");
    let files = names(&text);
    assert_eq!(files.len(), 4, "{files:?}");
    let mut contents: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(text.join(f)).unwrap())
        .collect();
    contents.sort();
    assert_eq!(contents, ["markdown a", "plain a", "slash", "underscore"]);
    assert!(files.contains(&"a.md.txt".to_string()), "{files:?}");
    assert!(files.contains(&"a_b.txt".to_string()), "{files:?}");

    lai_run(&p, &input, &out, &["-q"]).success();
    assert_eq!(names(&text), files, "the same names in every run");
}

// An input whose name is long enough that adding the extension would pass the file system's
// 255 bytes is written under a shortened name; the run succeeds instead of stopping.
#[test]
fn long_names_are_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"id\"");
    let long = format!("{}.txt", "n".repeat(246));
    let input = docs(dir.path(), &[(&long, "long name"), ("short.txt", "short")]);
    let out = dir.path().join("out");
    lai_run(&p, &input, &out, &["-q"]).success();
    let files = names(&out.join("text"));
    assert_eq!(files.len(), 2, "{files:?}");
    for name in &files {
        assert!(name.len() + ".lai-tmp".len() <= 255, "{name}");
    }
    assert_eq!(ids(&out.join("redacted.jsonl")).len(), 2);
}

// A per-item file that cannot be written (a folder stands where it goes) fails that item
// alone: the run ends with exit 1, the dead letter names the item and the output, the other
// items are written, and the failed item's JSONL record was taken back.
#[test]
fn a_failed_write_fails_only_its_item() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"id\"");
    let input = docs(dir.path(), &[("good.txt", "fine"), ("bad.txt", "blocked")]);
    let out = dir.path().join("out");
    let blocker = out.join("text/bad.txt.txt");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), "a file inside the folder").unwrap();

    lai_run(&p, &input, &out, &[])
        .code(1)
        .stderr(predicate::str::contains("bad.txt.txt"));
    let errors = jsonl(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["id"].as_str().unwrap().ends_with("bad.txt"));
    assert_eq!(errors[0]["stage"], "output");
    assert!(
        errors[0].to_string().contains("bad.txt.txt"),
        "{}",
        errors[0]
    );
    let records = ids(&out.join("redacted.jsonl"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].ends_with("good.txt"));
    assert_eq!(
        csv_rows(&out.join("table.csv")).len(),
        2,
        "header and one row"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("text/good.txt.txt")).unwrap(),
        "fine"
    );

    // Once the way is clear, retrying writes it.
    std::fs::remove_dir_all(&blocker).unwrap();
    lai_run(&p, &input, &out, &["-q", "--retry-failed"]).success();
    assert_eq!(ids(&out.join("redacted.jsonl")).len(), 2);
    assert!(blocker.is_file());
}

// Text that a spreadsheet would evaluate (=, +, -, @, tab, CR first) is written with a leading
// `'`; other text is written as it is.
#[test]
fn csv_cells_are_never_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"id\", \"note\"");
    let notes = [
        "=HYPERLINK(\"http://evil\",\"x\")",
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1)",
        "\t=1",
        "\r=1",
        "safe = text",
    ];
    let lines: String = notes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_json::json!({"id": format!("r{i}"), "text": "x", "note": n}).to_string() + "\n"
        })
        .collect();
    let input = docs(dir.path(), &[("r.jsonl", &lines)]);
    let out = dir.path().join("out");
    lai_run(&p, &input, &out, &["-q"]).success();
    let rows = csv_rows(&out.join("table.csv"));
    assert_eq!(rows[0], ["id", "note"]);
    for row in &rows[1..] {
        let i: usize = row[0][1..].parse().unwrap();
        let expected = if i < 6 {
            format!("'{}", notes[i])
        } else {
            notes[i].to_string()
        };
        assert_eq!(row[1], expected);
    }
    assert_eq!(rows.len(), 1 + notes.len());
}

// A rerun with another column list into the same folder is refused with a message that names
// the CSV file and says what to do, and leaves the file as it was; with --fresh the file is
// written anew with the new header, and every row has as many cells as the header.
#[test]
fn a_changed_csv_header_is_refused_or_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let input = docs(dir.path(), &[("a.txt", "one"), ("b.txt", "two")]);
    let out = dir.path().join("out");
    lai_run(&pipeline(dir.path(), "\"id\""), &input, &out, &["-q"]).success();
    let table = out.join("table.csv");
    let before = std::fs::read(&table).unwrap();

    let p = pipeline(dir.path(), "\"id\", \"text\"");
    lai_run(&p, &input, &out, &["-q"])
        .code(2)
        .stderr(predicate::str::contains("table.csv").and(predicate::str::contains("--fresh")));
    assert_eq!(
        std::fs::read(&table).unwrap(),
        before,
        "the file is untouched"
    );

    lai_run(&p, &input, &out, &["-q", "--fresh"]).success();
    let rows = csv_rows(&table);
    assert_eq!(rows[0], ["id", "text"]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.len() == 2), "{rows:?}");
}

// Every output's bytes are put on disk (fdatasync) before the ledger commits the items that
// wrote them: in a trace of the run's system calls, the first write to each output is followed
// by a sync of that output before the next write to the ledger's log. Needs `strace`.
#[test]
fn outputs_reach_the_disk_before_the_ledger_commits() {
    let traces = std::process::Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !traces {
        eprintln!("skipped: strace is not installed or may not trace here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"id\"");
    let input = docs(dir.path(), &[("a.txt", "one")]);
    let out = dir.path().join("out");
    let trace = dir.path().join("trace");
    let status = std::process::Command::new("strace")
        .args(["-f", "-y", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=write,pwrite64,fdatasync,fsync,rename,renameat,renameat2",
        ])
        .arg(assert_cmd::cargo::cargo_bin("lai"))
        .args(["run", "-q", "--progress", "never"])
        .arg(&p)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let lines: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let find =
        |from: usize, what: &dyn Fn(&str) -> bool| (from..lines.len()).find(|&i| what(&lines[i]));
    for (output, written) in [
        ("redacted.jsonl>", "write("),
        ("table.csv>", "write("),
        ("a.txt.txt", "rename"),
    ] {
        let first = find(0, &|l| l.contains(written) && l.contains(output))
            .unwrap_or_else(|| panic!("no {written} of {output} in the trace"));
        let commit = find(first, &|l| l.contains("lai-ledger.sqlite-wal>"))
            .unwrap_or_else(|| panic!("no ledger commit after {output} was written"));
        let synced = find(first, &|l| {
            (l.contains("fdatasync(") || l.contains("fsync(")) && l.contains(output)
        });
        assert!(
            synced.is_some_and(|s| s < commit),
            "{output} is not synced before the ledger commit"
        );
    }
}

// A done item whose per-item file was deleted or emptied is written again by the next run,
// with each record still once in the JSONL output; the other item is not redone.
#[test]
fn missing_per_item_files_are_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "\"id\"");
    let input = docs(
        dir.path(),
        &[("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")],
    );
    let out = dir.path().join("out");
    lai_run(&p, &input, &out, &["-q"]).success();
    let text = out.join("text");
    std::fs::remove_file(text.join("a.txt.txt")).unwrap();
    std::fs::write(text.join("b.txt.txt"), "").unwrap();

    let report = dir.path().join("report.json");
    lai_run(
        &p,
        &input,
        &out,
        &["-q", "--report", report.to_str().unwrap()],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(text.join("a.txt.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        std::fs::read_to_string(text.join("b.txt.txt")).unwrap(),
        "beta"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["items"]["skipped"], 1, "{}", report["items"]);
    assert_eq!(ids(&out.join("redacted.jsonl")).len(), 3);
    assert_eq!(csv_rows(&out.join("table.csv")).len(), 4);
}

// The SQLite output keeps one row per item, keyed by id: a changed input replaces its row, an
// item that fails on reprocessing loses it (as its record leaves the JSONL output), and
// provenance is JSON. A table that has no `id` key is refused, naming it.
#[test]
fn sqlite_rows_follow_their_items() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "name = \"redact\"\n[input]\nkind = \"files\"\n[[stage]]\nuse = \"redact\"\nentities = [\"email\"]\n\
         [[output]]\nkind = \"jsonl\"\npath = \"{out}/redacted.jsonl\"\n\
         [[output]]\nkind = \"sqlite\"\npath = \"{out}/db/results.sqlite\"\ntable = \"notes\"\n",
    )
    .unwrap();
    let input = docs(
        dir.path(),
        &[("a.txt", "mail a@example.com"), ("b.txt", "hello")],
    );
    let out = dir.path().join("out");
    let rows = || -> Vec<(String, String)> {
        let db = rusqlite::Connection::open(out.join("db/results.sqlite")).unwrap();
        let mut stmt = db
            .prepare("SELECT id, text, json_extract(_lai, '$.origin') FROM notes ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            let (id, origin): (String, String) = (r.get(0)?, r.get(2)?);
            assert!(origin.ends_with(&id), "{origin}");
            Ok((id, r.get(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let row = |id: &str, text: &str| (id.to_string(), text.to_string());
    lai_run(&p, &input, &out, &["-q"]).code(0);
    assert_eq!(
        rows(),
        [row("a.txt", "mail [EMAIL]"), row("b.txt", "hello")]
    );
    std::fs::write(input.join("a.txt"), "write to b@example.org now").unwrap();
    lai_run(&p, &input, &out, &["-q"]).code(0);
    assert_eq!(
        rows(),
        [row("a.txt", "write to [EMAIL] now"), row("b.txt", "hello")]
    );
    std::fs::write(input.join("b.txt"), b"\xff\xfe not text").unwrap();
    lai_run(&p, &input, &out, &["-q"]).code(1);
    assert_eq!(rows(), [row("a.txt", "write to [EMAIL] now")]);
    assert_eq!(ids(&out.join("redacted.jsonl")), ["a.txt"]);

    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("db")).unwrap();
    rusqlite::Connection::open(other.join("db/results.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE notes (name TEXT)")
        .unwrap();
    lai_run(&p, &input, &other, &[]).code(2).stderr(
        predicate::str::contains("table `notes`").and(predicate::str::contains("primary key")),
    );
}

// Records written to Parquet read back as the same items: ids, text and other fields, through
// a pipeline whose input is the Parquet file (rows known by their id, or by row number). A
// damaged Parquet file fails as one item and quotes nothing of it.
#[test]
fn parquet_out_and_back_in() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"id\":\"r1\",\"text\":\"mail a@example.com\",\"n\":3}\n\
         {\"id\":\"r2\",\"text\":\"plain\",\"n\":4.5,\"tags\":[\"x\",\"y\"]}\n",
    )
    .unwrap();
    let p = |name: &str, output: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\n[input]\nkind = \"files\"\n[[stage]]\nuse = \"redact\"\nentities = [\"email\"]\n{output}"
            ),
        )
        .unwrap();
        path
    };
    let out = dir.path().join("out");
    let to_parquet = p(
        "to",
        "[[output]]\nkind = \"parquet\"\npath = \"{out}/t.parquet\"\n",
    );
    lai_run(&to_parquet, &rows, &out, &["-q"]).code(0);
    let table = common::parquet_rows(&out.join("t.parquet"));
    assert_eq!(table.len(), 2);
    assert_eq!(table[0]["text"], "mail [EMAIL]");
    assert_eq!(table[1]["tags"], serde_json::json!(["x", "y"]));

    let back = dir.path().join("back");
    let from_parquet = p(
        "from",
        "[[output]]\nkind = \"jsonl\"\npath = \"{out}/back.jsonl\"\n",
    );
    lai_run(&from_parquet, &out.join("t.parquet"), &back, &["-q"]).code(0);
    let records = jsonl(&back.join("back.jsonl"));
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert_eq!(records[0]["text"], "mail [EMAIL]");
    // A column holding 3 and 4.5 is a float column.
    assert_eq!(records[0]["n"], 3.0);
    assert_eq!(records[1]["n"], 4.5);
    assert!(
        records[0]["_lai"]["origin"]
            .as_str()
            .unwrap()
            .ends_with("t.parquet:row 1")
    );

    let broken = dir.path().join("broken.parquet");
    std::fs::write(&broken, b"PAR1 canary-parquet-bytes PAR1").unwrap();
    let run = lai_run(&from_parquet, &broken, &dir.path().join("b"), &[]).code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("not a readable Parquet file"), "{stderr}");
    assert!(!stderr.contains("canary"), "{stderr}");
}

// SQLite's column names ignore case: a field `Note` lands in the column `note`, `ID` beside
// `id` is no second key, and a record with both `Tag` and `tag` fails alone, naming why; the
// other rows are written and keyed by the items' ids.
#[test]
fn sqlite_columns_ignore_case() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "name = \"s\"\n[input]\nkind = \"files\"\n[[stage]]\nuse = \"redact\"\nentities = [\"email\"]\n\
         [[output]]\nkind = \"sqlite\"\npath = \"{out}/t.sqlite\"\n",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"x\",\"note\":\"n1\"}\n\
         {\"id\":\"b\",\"ID\":\"B\",\"text\":\"y\",\"Note\":\"n2\"}\n\
         {\"id\":\"c\",\"text\":\"z\",\"Tag\":1,\"tag\":2}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = lai_run(&p, &input, &out, &[]).code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("but for case"), "{stderr}");
    let db = rusqlite::Connection::open(out.join("t.sqlite")).unwrap();
    let rows: Vec<(String, String)> = db
        .prepare("SELECT id, note FROM records ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("a".to_string(), "n1".to_string()),
            ("b".into(), "n2".into())
        ]
    );
}
