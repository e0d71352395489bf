//! Confinement of `lai run`, on the real binary and this machine's kernel: what the report and
//! the ledger say was enforced, the probes the kernel refused, and the switches that turn it
//! off or make it a condition of the run.

use std::path::Path;

use serde_json::Value;

mod common;

use common::{engines, jsonl, lai, lai_run, repo};

/// The run report at `path`.
fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// What the ledger in `out` recorded of its runs' confinement.
fn ledger_confinement(out: &Path) -> Vec<Value> {
    let db = rusqlite::Connection::open(out.join("lai-ledger.sqlite")).unwrap();
    let mut rows = db
        .prepare("SELECT confinement FROM runs ORDER BY rowid")
        .unwrap();
    rows.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|text| serde_json::from_str(&text.unwrap()).unwrap())
        .collect()
}

// A run with a model (the NER model's runtime library is loaded after confinement) is confined
// by default: the report and the ledger say files are enforced and no socket may be opened,
// and the kernel refused both probes (a file created in the input folder, a TCP connection);
// the run's own temp folder is gone afterwards. `--no-confine` is recorded as such and gives
// the same records.
#[test]
fn runs_are_confined_and_prove_it() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let docs = repo("samples/docs");
    let (confined, open) = (dir.path().join("confined"), dir.path().join("open"));
    let report_path = dir.path().join("r1.json");
    lai()
        .args(["run", "-q", "--progress", "never"])
        .arg(repo("pipelines/redact.toml"))
        .arg(&docs)
        .arg("-o")
        .arg(&confined)
        .arg("--report")
        .arg(&report_path)
        .assert()
        .code(0)
        .stderr("");
    let report1 = report(&report_path);
    let confinement = &report1["confinement"];
    assert_eq!(confinement["mode"], "auto");
    if confinement["landlock_abi"].is_null() {
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    // Fully, or as much as an older Landlock can (ABI 6 is asked for).
    let files = confinement["files"].as_str().unwrap();
    assert!(
        files == "enforced" || files.starts_with("partly enforced"),
        "{confinement:#}"
    );
    assert_eq!(confinement["network"], "no sockets", "{confinement:#}");
    let probes: Vec<&str> = confinement["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(probes.len(), 2, "{probes:?}");
    assert!(
        probes[0].starts_with(&format!("create a file in {}", docs.display())),
        "{probes:?}"
    );
    assert!(probes.iter().all(|p| p.ends_with(": denied")), "{probes:?}");
    let left: Vec<_> = std::fs::read_dir(&docs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("probe"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        confinement["warnings"].as_array().unwrap().is_empty(),
        "{confinement:#}"
    );
    let run_id = report1["run_id"].as_str().unwrap();
    assert!(!std::env::temp_dir().join(format!("lai-{run_id}")).exists());
    let ledger = ledger_confinement(&confined);
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0]["files"], files);
    assert_eq!(ledger[0]["probes"], confinement["probes"]);

    let report_path = dir.path().join("r2.json");
    lai()
        .args(["run", "-q", "--progress", "never", "--no-confine"])
        .arg(repo("pipelines/redact.toml"))
        .arg(&docs)
        .arg("-o")
        .arg(&open)
        .arg("--report")
        .arg(&report_path)
        .assert()
        .code(0);
    let off = &report(&report_path)["confinement"];
    assert_eq!(off["mode"], "off (--no-confine)");
    assert_eq!(off["files"], "not enforced");
    assert_eq!(ledger_confinement(&open)[0]["mode"], "off (--no-confine)");
    assert_eq!(
        jsonl(&confined.join("redacted.jsonl")),
        jsonl(&open.join("redacted.jsonl"))
    );
}

// `confine = "required"` runs where the kernel confines, and refuses --no-confine before
// anything is written; `lai check` names a wrong value.
#[test]
fn required_confinement() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("required.toml");
    let text = "confine = \"required\"\n[input]\nkind = \"jsonl\"\n[[stage]]\nuse = \"redact\"\n[[output]]\nkind = \"jsonl\"\npath = \"{out}/out.jsonl\"\n";
    std::fs::write(&pipeline, text).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\":\"1\",\"text\":\"mail ann@example.com\"}\n").unwrap();
    let out = dir.path().join("out");
    let refused = lai_run(&pipeline, &input, &out, &["-q", "--no-confine"]).code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(
        stderr.contains("requires confinement (`confine = \"required\"`); drop --no-confine"),
        "{stderr}"
    );
    assert!(!out.join("out.jsonl").exists());
    let run = lai_run(&pipeline, &input, &out, &["-q"]);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    if stderr.contains("cannot confine files and TCP ports") {
        eprintln!("skipped: this kernel cannot confine a run (no Landlock ABI 4)");
        return;
    }
    run.code(0);
    assert_eq!(jsonl(&out.join("out.jsonl"))[0]["text"], "mail [EMAIL]");

    std::fs::write(&pipeline, text.replace("\"required\"", "\"yes\"")).unwrap();
    let wrong = lai().arg("check").arg(&pipeline).assert().code(2);
    let stderr = String::from_utf8_lossy(&wrong.get_output().stderr).to_string();
    assert!(stderr.contains("confine"), "{stderr}");
}
