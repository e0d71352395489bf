//! Tests that run the real `lai` binary on real files: exit codes, pipes, bad inputs, reports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

mod common;

use common::{engines, jsonl, lai, lai_run, repo};

/// A minimal pipeline: the given [input] extras, a redact stage, JSONL and CSV outputs.
fn write_pipeline(dir: &Path, input_extra: &str) -> PathBuf {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[input]\nkind = \"files\"\n{input_extra}\n\n[[stage]]\nuse = \"redact\"\n\n\
             [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/out.jsonl\"\n\n\
             [[output]]\nkind = \"csv\"\npath = \"{{out}}/out.csv\"\ncolumns = [\"id\", \"text\"]\n"
        ),
    )
    .unwrap();
    path
}

// The Safe Harbor pipeline keeps only the year of every date, generalises ages over 89 and
// removes names; the default pipeline keeps other dates and redacts only the birth date.
#[test]
fn safe_harbor_dates_and_ages() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("notes.jsonl");
    std::fs::write(
        &input,
        r#"{"id":"n1","text":"Patient John Smith, a 93-year-old man, DOB 03/12/1931, was admitted on 2024-05-17 and seen again on March 3, 2025."}"#,
    )
    .unwrap();
    let text = |pipeline: &str| {
        let out = dir.path().join(pipeline);
        lai_run(
            &repo(&format!("pipelines/{pipeline}.toml")),
            &input,
            &out,
            &[],
        )
        .code(0);
        jsonl(&out.join("redacted.jsonl"))[0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        text("redact-hipaa"),
        "Patient [PERSON], a 90+-year-old man, DOB 1931, was admitted on 2024 and seen again on 2025."
    );
    assert_eq!(
        text("redact"),
        "Patient [PERSON], a 93-year-old man, DOB [DATE_OF_BIRTH], was admitted on 2024-05-17 and seen again on March 3, 2025."
    );
}

// Keyed pseudonyms hold across runs with one key and differ with another; the vault opens
// with that key alone and `lai reveal` restores every original exactly. Without a key, a run
// that hashes stops before any item, and no value shows anywhere but where it was asked for.
#[test]
fn keyed_pseudonyms_and_vault_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let texts = [
        "Jane Roe (jane.roe@example.com) paid from DE89370400440532013000.",
        "Call Zoë Ångström on +44 20 7946 0958 or jane.roe@example.com.",
        "Nothing personal here.",
    ];
    let input = d.join("in.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({ "id": format!("r{i}"), "text": t }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let pipeline = |operator: &str, key: &Path| {
        let path = d.join(format!("{operator}.toml"));
        std::fs::write(
            &path,
            format!(
                "[input]\nkind = \"jsonl\"\n\n[[stage]]\nuse = \"redact\"\n\
                 entities = [\"email\", \"iban\", \"phone\"]\n\
                 deny = {{ person = [\"Jane Roe\", \"Zoë Ångström\"] }}\n\
                 operator = \"{operator}\"\nkey = \"file:{}\"\n\n\
                 [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/out.jsonl\"\n",
                key.display()
            ),
        )
        .unwrap();
        path
    };
    let (k1, k2) = (d.join("k1.key"), d.join("k2.key"));
    let clean = |what: &str, text: &str| {
        for v in ["Jane", "jane.roe", "DE89", "7946", "Zoë"] {
            assert!(!text.contains(v), "{v} in {what}");
        }
    };
    // The vault is hex, where four digits can turn up by chance: the whole number there.
    let secret = |file: &Path| {
        let text = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = String::from_utf8_lossy(&text);
        for v in ["Jane", "jane.roe", "DE89", "7946 0958", "Zoë"] {
            assert!(!text.contains(v), "{v} in {}", file.display());
        }
    };

    // No key file yet: the run stops before any item, saying how to make one.
    let run = lai_run(&pipeline("vault", &k1), &input, &d.join("none"), &[]).code(2);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains("k1.key") && stderr.contains("head -c 32"),
        "{stderr}"
    );
    clean("stderr", &stderr);
    assert!(
        !d.join("none").exists(),
        "nothing opened before the key was read"
    );
    // The default key source, unset: the same refusal, naming the variable.
    let hash = d.join("hash.toml");
    std::fs::write(
        &hash,
        "[input]\nkind = \"jsonl\"\n[[stage]]\nuse = \"redact\"\noperator = \"hash\"\n[[output]]\nkind = \"jsonl\"\npath = \"{out}/out.jsonl\"\n",
    )
    .unwrap();
    let mut cmd = lai();
    cmd.env_remove("LAI_REDACT_KEY")
        .args(["run", "--progress", "never"]);
    cmd.arg(&hash).arg(&input).arg("-o").arg(d.join("nokey"));
    cmd.assert()
        .code(2)
        .stderr(predicate::str::contains("$LAI_REDACT_KEY"));

    std::fs::write(&k1, b"site key one: 0123456789abcdef0123").unwrap();
    std::fs::write(&k2, b"site key two: 0123456789abcdef0123").unwrap();
    // A filter has no folder for the vault: refused before anything is read.
    let mut cmd = lai();
    cmd.args(["run", "--progress", "never"])
        .arg(pipeline("vault", &k1))
        .arg("-");
    cmd.write_stdin(lines.join("\n"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out"));
    let redacted = |operator: &str, key: &Path, out: &str| -> Vec<String> {
        let out = d.join(out);
        let report = out.join("report.json");
        let run = lai_run(
            &pipeline(operator, key),
            &input,
            &out,
            &["--report", report.to_str().unwrap()],
        )
        .code(0);
        clean("stderr", &String::from_utf8_lossy(&run.get_output().stderr));
        secret(&report);
        secret(&out.join("lai-ledger.sqlite"));
        jsonl(&out.join("out.jsonl"))
            .iter()
            .map(|r| r["text"].as_str().unwrap().to_string())
            .collect()
    };
    let first = redacted("vault", &k1, "a");
    assert_eq!(
        first,
        redacted("vault", &k1, "b"),
        "same key, same pseudonyms"
    );
    assert_eq!(first, redacted("hash", &k1, "c"), "hash and vault agree");
    let other = redacted("vault", &k2, "d");
    assert_ne!(first[0], other[0], "another key, other pseudonyms");
    assert!(
        first[0].starts_with("[PERSON_") && first[1].contains(" or [EMAIL_"),
        "{first:?}"
    );
    let email = first[0].split(['(', ')']).nth(1).unwrap().to_string();
    assert!(
        first[1].contains(&email),
        "one value, one pseudonym: {first:?}"
    );

    // The vault holds no value in the clear and is listed in the report.
    let vault = d.join("a/redact.vault");
    secret(&vault);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a/report.json")).unwrap()).unwrap();
    assert!(report.to_string().contains("redact.vault"), "{report}");
    assert!(!d.join("c/redact.vault").exists(), "hash writes no vault");

    // Reveal: every record restored exactly, and one pseudonym's value.
    let key1 = format!("file:{}", k1.display());
    let restored = lai()
        .args(["reveal", "-o"])
        .arg(d.join("a"))
        .args(["--key", &key1, "--text"])
        .arg(d.join("a/out.jsonl"))
        .assert()
        .code(0);
    let restored: Vec<Value> = String::from_utf8_lossy(&restored.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let restored: Vec<&str> = restored
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(restored, texts);
    lai()
        .args(["reveal", "--vault"])
        .arg(&vault)
        .args(["--key", &key1, &email])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "\"value\":\"jane.roe@example.com\"",
        ));
    lai()
        .args(["reveal", "-o"])
        .arg(d.join("a"))
        .args(["--key", &key1, "[EMAIL_0000000000000000]"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "EMAIL_0000000000000000 is not in the vault",
        ));
    // A vault with a per-run key could never be opened: `lai check` says so.
    let per_run = pipeline("vault", Path::new("x"));
    let text = std::fs::read_to_string(&per_run).unwrap();
    std::fs::write(
        &per_run,
        text.replace("key = \"file:x\"", "key = \"per-run\""),
    )
    .unwrap();
    lai()
        .arg("check")
        .arg(&per_run)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("per-run"));
    // Another key opens nothing and says so.
    let key2 = format!("file:{}", k2.display());
    lai()
        .args(["reveal", "-o"])
        .arg(d.join("a"))
        .args(["--key", &key2, &email])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("another key"));
}

// The shipped pipeline redacts the shipped samples: every planted value is gone, outputs exist.
#[test]
fn redact_pipeline_on_samples() {
    let out = tempfile::tempdir().unwrap();
    lai()
        .args(["run", "--progress", "never"])
        .arg(repo("pipelines/redact.toml"))
        .arg(repo("samples/docs"))
        .arg("-o")
        .arg(out.path())
        .assert()
        .code(0);
    let text = std::fs::read_to_string(out.path().join("redacted.jsonl")).unwrap();
    for secret in [
        "maria.gonzalez@example.org",
        "7946 0958",
        "DE89 3704",
        "EMP-204817",
        "CASE-2024-00817",
        "203.0.113.42",
        "2001:db8::",
        "4111 1111",
        "123-45-6789",
        "867-5309",
        "5500-0000",
        "portal.example.com",
        "Project Bluebird",
        // Found by the NER model.
        "Maria Gonzalez",
        "Robert Chen",
    ] {
        assert!(!text.contains(secret), "{secret} was not redacted");
    }
    assert!(text.contains("[IBAN]") && text.contains("[EMPLOYEE_ID]"));
    // Dates, times and version numbers are not PII.
    assert!(text.contains("2024-03-15 at 10:30:00") && text.contains("3.2.1"));
    // Per-item text files mirror the input tree below the input folder.
    let letter = std::fs::read_to_string(out.path().join("redacted/claim-letter.txt.txt")).unwrap();
    assert!(letter.contains("[EMAIL]") && !letter.contains("maria"));
    let csv = std::fs::read_to_string(out.path().join("redactions.csv")).unwrap();
    assert!(csv.starts_with("id,redactions\n"));
    assert_eq!(jsonl(&out.path().join("errors.jsonl")).len(), 0);
}

// stdin to stdout: records come back in input order, redacted, and exit code 0.
#[test]
fn stdin_filter_preserves_order() {
    let input: String = (0..3000)
        .map(|i| format!("{{\"id\":\"r{i}\",\"text\":\"user{i}@example.com wrote {i}\"}}\n"))
        .collect();
    // The rules alone: this is about order (the NER model has its own tests).
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("redact-rules.toml");
    let shipped = std::fs::read_to_string(repo("pipelines/redact.toml")).unwrap();
    let rules: String = shipped
        .lines()
        .filter(|l| !l.starts_with("ner_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&pipeline, rules).unwrap();
    let output = lai()
        .args(["run", "--jobs", "4"])
        .arg(&pipeline)
        .arg("-")
        .write_stdin(input)
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let records: Vec<Value> = String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3000);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["id"], format!("r{i}"));
        assert_eq!(r["text"], format!("[EMAIL] wrote {i}"));
    }
}

// Bad JSONL lines become dead letters naming their line; good lines are all written; exit 1.
#[test]
fn bad_lines_fail_alone() {
    let out = tempfile::tempdir().unwrap();
    let input = "{\"id\":\"a\",\"text\":\"call +1 415 555 0100\"}\n{broken\n\"just a string\"\n{\"id\":\"b\",\"text\":\"ok\"}\n";
    lai()
        .args(["run", "-q"])
        .arg(repo("pipelines/redact.toml"))
        .arg("-")
        .arg("-o")
        .arg(out.path())
        .write_stdin(input)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("stdin:2").and(predicate::str::contains("line 3")));
    let good = jsonl(&out.path().join("redacted.jsonl"));
    assert_eq!(good.len(), 2);
    assert_eq!(good[0]["text"], "call [PHONE]");
    let dead = jsonl(&out.path().join("errors.jsonl"));
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["origin"], "stdin:2");
    assert!(
        dead[1]["error"]
            .as_str()
            .unwrap()
            .contains("found a string")
    );
}

// A CSV of tickets: one item per row, the id column as id, the chosen columns moved into the
// redacted text (no unredacted copy in the output), other columns kept; a row with the wrong
// number of fields fails alone by line without quoting it, and a TSV without the chosen columns
// fails as one file; a rerun skips the rows done.
#[test]
fn csv_rows_are_items() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("tickets.csv"),
        "id,subject,body,priority\n\
         T-1,Printer,\"Jammed, call 555-123-4567\",low\n\
         T-2,Login,\"Cannot log in\nsince Monday, mail jane.canary@example.com\",high\n\
         T-3,canary-secret-row\n",
    )
    .unwrap();
    std::fs::write(
        input.join("notes.tsv"),
        "text\tdept\nCall 555-987-6543\tcardiology\n",
    )
    .unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "glob = [\"**/*.csv\", \"**/*.tsv\"]\ntext_columns = [\"subject\", \"body\"]",
    );
    let out = dir.path().join("out");
    let run = lai_run(&pipeline, &input, &out, &[]).code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains("tickets.csv:5") && !stderr.contains("canary"),
        "{stderr}"
    );
    let rows = jsonl(&out.join("out.jsonl"));
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["T-1", "T-2"]);
    assert_eq!(rows[0]["text"], "Printer\nJammed, call [PHONE]");
    assert_eq!(rows[1]["priority"], "high");
    let written = std::fs::read_to_string(out.join("out.jsonl")).unwrap();
    assert!(
        !written.contains("canary") && !written.contains("555-"),
        "{written}"
    );
    let errors = std::fs::read_to_string(out.join("errors.jsonl")).unwrap();
    assert!(
        errors.contains("line 5: 2 fields, but the header row names 4 columns")
            && errors.contains("no column `subject` (in `text_columns`)")
            && !errors.contains("canary"),
        "{errors}"
    );

    let again = lai_run(&pipeline, &input, &out, &[]).code(1);
    let summary = String::from_utf8_lossy(&again.get_output().stderr).to_string();
    assert!(summary.contains("2 skipped"), "{summary}");
}

// Binary, non-UTF-8 and empty files each fail with their own message; the good file is written.
#[test]
fn nasty_files_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a-good.txt"), "mail me at x@y.org").unwrap();
    std::fs::write(docs.join("b-binary.txt"), b"\x7fELF\x02\x01\x01\0\0\0\0").unwrap();
    std::fs::write(docs.join("c-latin1.txt"), b"caf\xe9 cr\xe8me").unwrap();
    std::fs::write(docs.join("d-empty.txt"), b"").unwrap();
    let pipeline = write_pipeline(dir.path(), "");
    let out = dir.path().join("out");
    lai()
        .arg("run")
        .arg(&pipeline)
        .arg(&docs)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("binary file")
                .and(predicate::str::contains("not valid UTF-8"))
                .and(predicate::str::contains("empty")),
        );
    let good = jsonl(&out.join("out.jsonl"));
    assert_eq!(good.len(), 1);
    assert_eq!(good[0]["text"], "mail me at [EMAIL]");
    let dead = jsonl(&out.join("errors.jsonl"));
    assert_eq!(dead.len(), 3);
    // Dead letters never carry content.
    assert!(
        !std::fs::read_to_string(out.join("errors.jsonl"))
            .unwrap()
            .contains("caf")
    );
}

// `lai check` prints every problem with file:line:column and a fix, and exits 2.
#[test]
fn check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[input]\nkind = \"files\"\n\n[[stage]]\nuse = \"redact\"\n\n[[stage]]\nuse = \"redact\"\nbach_size = 10\nworkers = \"two\"\noperator = \"tagg\"\n\n[[output]]\nkind = \"jsonl\"\n",
    )
    .unwrap();
    lai()
        .arg("check")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("bad.toml:9:1: unknown key `bach_size` in [[stage]] 2 (redact); did you mean `batch_size`?")
                .and(predicate::str::contains("bad.toml:10:11: `workers`"))
                .and(predicate::str::contains("bad.toml:11:12: `operator`"))
                .and(predicate::str::contains("3 problems")),
        );
    // Malformed TOML is a config error too, with its location.
    std::fs::write(&path, "[input\nkind = 1\n").unwrap();
    lai().arg("check").arg(&path).assert().code(2).stderr(
        predicate::str::contains("bad.toml:1:").and(predicate::str::contains("TOML syntax error")),
    );
    // A valid file passes.
    lai()
        .arg("check")
        .arg(repo("pipelines/redact.toml"))
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("ok:"));
}

// A stage placed on the GPU: the CPU build says so at the key, before any work; "cpu" and
// "auto" are fine, and a wrong value gets the choices.
#[test]
fn gpu_stage_in_a_cpu_build() {
    if cfg!(feature = "cuda") {
        return; // the CUDA build accepts it; bench/gpu.sh runs it on a GPU.
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu.toml");
    let pipeline = |device: &str| {
        format!(
            "[input]\nkind = \"jsonl\"\n\n[[stage]]\nuse = \"embed\"\ndevice = \"{device}\"\n\n[[output]]\nkind = \"jsonl\"\n"
        )
    };
    std::fs::write(&path, pipeline("gpu")).unwrap();
    let refused = "gpu.toml:6:10: `device` in [[stage]] 1 (embed) is \"gpu\", but this lai is a CPU build; build the CUDA one with scripts/build-cuda.sh, or set device = \"cpu\"";
    lai()
        .arg("check")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(refused));
    let out = dir.path().join("out");
    lai()
        .arg("run")
        .arg(&path)
        .arg("-")
        .arg("-o")
        .arg(&out)
        .write_stdin("{\"id\":\"a\",\"text\":\"hello\"}\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(refused));
    assert!(
        !out.join("lai-ledger.sqlite").exists(),
        "nothing was started"
    );
    for ok in ["cpu", "auto"] {
        std::fs::write(&path, pipeline(ok)).unwrap();
        lai().arg("check").arg(&path).assert().code(0);
    }
    std::fs::write(&path, pipeline("cuda")).unwrap();
    lai()
        .arg("check")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("one of auto | cpu | gpu"));
}

// Every pipeline shipped in pipelines/ validates.
#[test]
fn shipped_pipelines_are_valid() {
    for entry in std::fs::read_dir(repo("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        lai().arg("check").arg(&path).assert().code(0);
    }
}

// `lai run` with a bad pipeline or a missing input exits 2 before doing anything.
#[test]
fn usage_errors_exit_2() {
    let out = tempfile::tempdir().unwrap();
    lai()
        .arg("run")
        .arg(repo("pipelines/redact.toml"))
        .arg("/no/such/folder")
        .arg("-o")
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("input not found: /no/such/folder"));
    lai().args(["run", "--jobs"]).assert().code(2);
}

// `lai stages` is generated from the registry: every kind and option appears.
#[test]
fn stages_lists_registry() {
    lai().arg("stages").assert().code(0).stdout(
        predicate::str::contains("redact")
            .and(predicate::str::contains("batch_size"))
            .and(predicate::str::contains("operator"))
            .and(predicate::str::contains("one of tag | mask | hash"))
            .and(predicate::str::contains("Inputs ([input]"))
            .and(predicate::str::contains("columns")),
    );
    lai().args(["stages", "nope"]).assert().code(2);
}

// A 50 MB single-line record is processed (not truncated, no crash); a line over
// `max_line_bytes` fails alone and the next line is still processed.
#[test]
fn huge_lines() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(
        "{{\"id\":\"big\",\"text\":\"{}a@b.org\"}}\n{{\"id\":\"next\",\"text\":\"c@d.org\"}}\n",
        "lorem ipsum ".repeat(50 * 1024 * 1024 / 12)
    );
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, &big).unwrap();
    let out = dir.path().join("out");
    lai()
        .args(["run", "-q"])
        .arg(write_pipeline(dir.path(), ""))
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(0);
    let records = jsonl(&out.join("out.jsonl"));
    assert_eq!(records.len(), 2);
    assert!(records[0]["text"].as_str().unwrap().ends_with("[EMAIL]"));

    let out = dir.path().join("out2");
    lai()
        .args(["run", "-q"])
        .arg(write_pipeline(dir.path(), "max_line_bytes = 1000000"))
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("longer than max_line_bytes"));
    let records = jsonl(&out.join("out.jsonl"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], "next");
}

// The run report is JSON with counts, stage stats and the pipeline's hash.
#[test]
fn run_report() {
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report.json");
    lai()
        .args(["run", "-q"])
        .arg(repo("pipelines/redact.toml"))
        .arg(repo("samples/tickets.jsonl"))
        .arg("-o")
        .arg(out.path())
        .arg("--report")
        .arg(&report)
        .assert()
        .code(0)
        .stderr("");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["items"]["read"], 5);
    assert_eq!(report["items"]["written"], 5);
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["stages"][0]["stage"], "redact");
    assert_eq!(report["pipeline"]["sha256"].as_str().unwrap().len(), 64);
}

// Memory stays flat: ten times the input does not raise peak RSS much.
#[test]
fn memory_is_flat() {
    let dir = tempfile::tempdir().unwrap();
    let peak = |lines: usize| {
        let input = dir.path().join(format!("in-{lines}.jsonl"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..lines {
            writeln!(f, "{{\"id\":{i},\"text\":\"Ticket {i}: contact jo{i}@example.com, card 4111 1111 1111 1111, from 10.0.{}.{}\"}}", i % 250, i % 200).unwrap();
        }
        drop(f);
        let report = dir.path().join(format!("r-{lines}.json"));
        lai()
            .args(["run", "-q"])
            .arg(write_pipeline(dir.path(), ""))
            .arg(&input)
            .arg("-o")
            .arg(dir.path().join(format!("out-{lines}")))
            .arg("--report")
            .arg(&report)
            .assert()
            .code(0);
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        report["peak_rss_bytes"].as_u64().unwrap()
    };
    let small = peak(20_000);
    let large = peak(200_000);
    assert!(
        (large as f64) < small as f64 * 1.5 + 8e6,
        "peak RSS grew from {small} to {large} bytes"
    );
}

// SIGINT stops intake, flushes what finished, and exits 130, even while stdin stays open.
#[test]
fn interrupt_flushes_and_exits_130() {
    let out = tempfile::tempdir().unwrap();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("lai"))
        .args(["run", "-q"])
        .arg(repo("pipelines/redact.toml"))
        .arg("-")
        .arg("-o")
        .arg(out.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..10 {
        writeln!(stdin, "{{\"id\":{i},\"text\":\"n{i}@example.com\"}}").unwrap();
    }
    stdin.flush().unwrap();
    // Wait until the records are written (flushed when the queue runs dry).
    let path = out.path().join("redacted.jsonl");
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::read_to_string(&path).map_or(0, |t| t.lines().count()) < 10 {
        assert!(
            Instant::now() < deadline,
            "records were not flushed while running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(130));
    assert_eq!(jsonl(&path).len(), 10);
}

// A reader that goes away (`lai run ... - | head -1`) ends the run at once, quietly, with 141
// (as SIGPIPE would) instead of leaving it waiting for output room forever or panicking.
#[test]
fn closed_stdout_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: String = (0..200_000)
        .map(|i| format!("{{\"id\":{i},\"text\":\"mail a{i}@example.org\"}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let stderr = dir.path().join("stderr");
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("lai"))
        .args(["run", "-q"])
        .arg(write_pipeline(dir.path(), ""))
        .arg("-")
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(141), "a cut-off run ends like SIGPIPE");
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("lai kept running after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = std::fs::read_to_string(&stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// A closed stderr (`lai run ... 2>&1 | head -1`) never panics: failures that cannot be printed
// are still counted, and the run ends with its usual exit code.
#[test]
fn closed_stderr_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // Every other line is broken, so lai has many failures to print.
    let lines: String = (0..2_000)
        .map(|i| {
            if i % 2 == 0 {
                format!("{{\"id\":{i},\"text\":\"mail a{i}@example.org\"}}\n")
            } else {
                "{\"id\": \n".to_string()
            }
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("lai"))
        .args(["run", "--progress", "never"])
        .arg(write_pipeline(dir.path(), ""))
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("out"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "some items failed; no panic (101)");
    assert_eq!(jsonl(&dir.path().join("out/out.jsonl")).len(), 1_000);
}

// A run needs no network: the shipped redact pipeline (rules and the NER model) runs inside a
// network namespace with no interfaces at all and gives the same records as outside it.
#[test]
fn runs_without_any_network() {
    if !StdCommand::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: `unshare -n` is not available here (needs user namespaces or root)");
        return;
    }
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let inside = dir.path().join("inside");
    let status = StdCommand::new("unshare")
        .arg("-n")
        .arg(assert_cmd::cargo::cargo_bin("lai"))
        .args(["run", "-q", "--progress", "never"])
        .arg(repo("pipelines/redact.toml"))
        .arg(repo("samples/docs"))
        .arg("-o")
        .arg(&inside)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let outside = dir.path().join("outside");
    lai()
        .args(["run", "-q", "--progress", "never"])
        .arg(repo("pipelines/redact.toml"))
        .arg(repo("samples/docs"))
        .arg("-o")
        .arg(&outside)
        .assert()
        .code(0);
    let records = jsonl(&inside.join("redacted.jsonl"));
    assert!(!records.is_empty());
    assert_eq!(records, jsonl(&outside.join("redacted.jsonl")));
}

// PDF (text layer, by page), DOCX, HTML and e-mail files become items with their text, `mime`,
// `title` and pages; an e-mail's attachments become items of their own with the mail as
// `parent` (a hostile attachment name stays inside the output folder); redaction covers the
// mail's headers, which open its text. A scanned PDF, a corrupt DOCX and an image attachment
// each fail alone, saying why and quoting nothing; an inline picture is no attachment.
#[test]
fn documents_are_items() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let letter = common::pdf(&[
        "Dear Ms Canary,\nyour claim 4471 was approved.",
        "Questions? Call 555-123-4567.",
    ]);
    std::fs::write(input.join("letter.pdf"), &letter).unwrap();
    std::fs::write(input.join("scan.pdf"), common::pdf(&[""])).unwrap();
    std::fs::write(
        input.join("memo.docx"),
        common::docx(
            "Memo & plan",
            &[
                "First point: write to jane.canary@example.com",
                "Second <point>.",
            ],
        ),
    )
    .unwrap();
    std::fs::write(input.join("broken.docx"), b"PK\x03\x04canary-broken-zip").unwrap();
    // A PDF whose objects the reader cannot make sense of; its error must quote none of them.
    std::fs::write(
        input.join("broken.pdf"),
        b"%PDF-1.4\n1 0 obj\n<< /Type /canary-name /Pages (canary-string) >>\nendobj\n\
          xref\n0 2\n0000000000 65535 f \n0000000009 00000 n \ncanary-junk\n\
          trailer\n<< /Root 1 0 R /Size 2 >>\nstartxref\n64\n%%EOF\n",
    )
    .unwrap();
    std::fs::write(
        input.join("page.html"),
        "<html><head><title>Visit &amp; notes</title><style>.x { color: red }</style>\
         <script>var s = \"canary-script\";</script></head>\
         <body><h1>Visit</h1><p>Patient phone 555-987-6543.</p></body></html>",
    )
    .unwrap();
    let mail = format!(
        "From: Jane Canary <jane.canary@example.com>\r\nTo: claims@example.org\r\n\
         Subject: Claim 4471\r\nDate: Tue, 3 Mar 2026 09:30:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached. Call 555-222-3333.\r\n\
         --b1\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"../../outside.txt\"\r\n\r\n\
         Notes: reach me at x.canary@example.net\r\n\
         --b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"claim.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b1\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"photo.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
         --b1\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline; filename=\"image001.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n",
        common::base64(&common::pdf(&[
            "Claim form: policy holder phone 555-444-5555."
        ]))
    );
    std::fs::write(input.join("mail.eml"), mail).unwrap();
    std::fs::write(
        input.join("inbox.mbox"),
        "From alice@example.com Tue Mar  3 09:30:00 2026\nFrom: alice@example.com\nSubject: One\n\n\
         First, call 555-666-7777.\n\n\
         From bob@example.com Tue Mar  3 10:30:00 2026\nFrom: bob@example.com\nSubject: Two\n\n\
         >From the second message.\n",
    )
    .unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "glob = [\"**/*.pdf\", \"**/*.docx\", \"**/*.html\", \"**/*.eml\", \"**/*.mbox\"]",
    );
    let out = dir.path().join("out");
    let run = lai_run(&pipeline, &input, &out, &[]).code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(!stderr.contains("canary"), "{stderr}");
    let records = jsonl(&out.join("out.jsonl"));
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no record {id} in {records:?}"))
    };
    let letter = by_id("letter.pdf");
    let text = letter["text"].as_str().unwrap();
    assert!(
        text.contains("claim 4471 was approved") && text.contains("[PHONE]"),
        "{text}"
    );
    assert_eq!(letter["mime"], "application/pdf");
    assert_eq!(letter["pages"], 2);
    let second = letter["page_starts"][1].as_u64().unwrap() as usize;
    let page2: String = text.chars().skip(second).collect();
    assert!(page2.starts_with("Questions?"), "{page2}");

    let memo = by_id("memo.docx");
    assert_eq!(memo["title"], "Memo & plan");
    assert_eq!(
        memo["text"],
        "First point: write to [EMAIL]\nSecond <point>."
    );

    let page = by_id("page.html");
    assert_eq!(page["title"], "Visit & notes");
    let text = page["text"].as_str().unwrap();
    assert!(text.starts_with("Visit\nPatient phone [PHONE]."), "{text}");
    assert!(
        !text.contains("canary") && !text.contains("color"),
        "{text}"
    );

    let mail = by_id("mail.eml");
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.starts_with("From: Jane Canary <[EMAIL]>\nTo: [EMAIL]\n"),
        "{text}"
    );
    assert!(
        text.contains("Subject: Claim 4471\n") && text.contains("See attached. Call [PHONE]."),
        "{text}"
    );
    assert_eq!(mail["title"], "Claim 4471");
    let notes = by_id("mail.eml/1-outside.txt");
    assert_eq!(notes["parent"], "mail.eml");
    assert_eq!(notes["text"], "Notes: reach me at [EMAIL]");
    let claim = by_id("mail.eml/2-claim.pdf");
    assert_eq!(claim["parent"], "mail.eml");
    assert!(
        claim["text"]
            .as_str()
            .unwrap()
            .contains("policy holder phone [PHONE]"),
        "{claim}"
    );

    assert_eq!(
        by_id("inbox.mbox/1.eml")["text"],
        "From: [EMAIL]\nSubject: One\n\nFirst, call [PHONE]."
    );
    assert_eq!(
        by_id("inbox.mbox/2.eml")["text"],
        "From: [EMAIL]\nSubject: Two\n\nFrom the second message."
    );

    let written = std::fs::read_to_string(out.join("out.jsonl")).unwrap();
    assert!(
        !written.contains("canary") && !written.contains("555-"),
        "{written}"
    );
    let errors = jsonl(&out.join("errors.jsonl"));
    let reason = |id: &str| {
        let e = errors
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no error for {id} in {errors:?}"));
        e.to_string()
    };
    assert!(
        reason("scan.pdf").contains("OCR found no text on its 1 page"),
        "{errors:?}"
    );
    assert!(
        reason("broken.docx").contains("not a readable DOCX"),
        "{errors:?}"
    );
    assert!(
        reason("broken.pdf").contains("not a readable PDF"),
        "{errors:?}"
    );
    assert!(
        reason("mail.eml/3-photo.png").contains("cannot read"),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        !std::fs::read_to_string(out.join("errors.jsonl"))
            .unwrap()
            .contains("canary")
    );
    assert!(!dir.path().join("outside.txt").exists());
}

// An input reader that panics ends the run as a fatal error saying so (exit 2), quoting no
// item, rather than passing for the end of the inputs; the items read before are written.
#[test]
fn a_reader_that_panics_is_not_the_end_of_the_inputs() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"a\",\"text\":\"first\"}\n{\"id\":\"b\",\"text\":\"canary-reader\"}\n{\"id\":\"c\",\"text\":\"third\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = lai()
        .args(["run", "--progress", "never"])
        .arg(repo("pipelines/redact.toml"))
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .env("LAI_TEST_SOURCE_PANIC_ON", "canary-reader")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(stderr.contains("the input reader panicked"), "{stderr}");
    assert!(!stderr.contains("canary"), "{stderr}");
    let ids: Vec<String> = jsonl(&out.join("redacted.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["a"]);
}

// The shipped document pipeline on the samples: the scanned fax (a PDF page that is only an
// image) and the faxed note (a PNG) are read by OCR, redacted like any text, and say which
// engine read them and how sure it was; with `ocr = "off"` each fails alone, saying so.
#[test]
fn scans_are_read_by_ocr() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let pipeline = repo("pipelines/redact-documents.toml");
    lai_run(&pipeline, &repo("samples/documents"), &out, &["-q"]).code(0);
    let records = jsonl(&out.join("redacted.jsonl"));
    let record = |id: &str| {
        records
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {records:?}"))
            .clone()
    };
    for (id, words, mime) in [
        (
            "scanned-fax.pdf",
            "Springfield Cardiology",
            "application/pdf",
        ),
        ("faxed-note.png", "cleared for surgery", "image/png"),
    ] {
        let r = record(id);
        let text = r["text"].as_str().unwrap();
        assert!(
            text.contains(words) && text.contains("[PHONE]"),
            "{id}: {text}"
        );
        assert!(!text.contains("555-"), "{id}: {text}");
        assert_eq!(r["mime"], mime);
        assert!(
            r["ocr"]["engine"]
                .as_str()
                .unwrap()
                .starts_with("tesseract "),
            "{r}"
        );
        assert_eq!(r["ocr"]["language"], "eng");
        assert!(
            r["ocr"]["pages"][0]["confidence"].as_f64().unwrap() > 80.0,
            "{r}"
        );
    }
    // The letter has a text layer: no OCR.
    assert!(record("claim-letter.pdf").get("ocr").is_none());

    let off = dir.path().join("off.toml");
    std::fs::write(
        &off,
        std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace("[input]\n", "[input]\nocr = \"off\"\n")
            .replace("../samples", &repo("samples").to_string_lossy()),
    )
    .unwrap();
    let run = lai_run(
        &off,
        &repo("samples/documents"),
        &dir.path().join("off"),
        &[],
    )
    .code(1);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    assert!(
        stderr.contains("scanned-fax.pdf") && stderr.contains("OCR is off"),
        "{stderr}"
    );
    assert!(stderr.contains("faxed-note.png"), "{stderr}");
}
