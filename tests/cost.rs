//! What a run costs, on the real binary: the figures of the report, the ledger and
//! `lai ledger --cost` add up across items, stages and runs, and bad prices are refused.

use std::path::Path;

use serde_json::Value;

mod common;

use common::{engines, lai, repo};

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * a.abs().max(1.0),
        "{what}: {a} != {b}"
    );
}

// Two runs of the redact pipeline (NER model and rules) at the sample prices: in each report
// the stages and lai's own work add up to the run in CPU-seconds, energy and money, the items'
// mean times their count is the stages' sum, and the cloud price is the price list's for the
// characters and tokens the stage counted. The ledger's item rows add up to their run's stages,
// and `lai ledger --cost` totals the runs.
#[test]
fn costs_add_up_across_items_stages_and_runs() {
    let _engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut reports = Vec::new();
    for (i, extra) in [&[][..], &["--fresh"][..]].iter().enumerate() {
        let path = dir.path().join(format!("r{i}.json"));
        lai()
            .args(["run", "-q", "--progress", "never", "--cost"])
            .arg(repo("samples/cost.toml"))
            .arg(repo("pipelines/redact.toml"))
            .arg(repo("samples/docs"))
            .arg("-o")
            .arg(&out)
            .arg("--report")
            .arg(&path)
            .args(*extra)
            .assert()
            .code(0);
        reports.push(report(&path));
    }
    let db = rusqlite::Connection::open(out.join("lai-ledger.sqlite")).unwrap();
    for r in &reports {
        let cost = &r["cost"];
        let stages = r["stages"].as_array().unwrap();
        let sum = |key: &str| stages.iter().map(|s| f(&s["cost"][key])).sum::<f64>();
        assert!(
            sum("cpu_s") > 0.0,
            "the NER model's batches cost CPU time: {cost:#}"
        );
        for key in ["cpu_s", "energy_j", "money"] {
            close(
                sum(key) + f(&cost["lai_own"][key]),
                f(&cost["total"][key]),
                key,
            );
            close(f(&cost["per_item"][key]) * f(&cost["items"]), sum(key), key);
        }
        assert_eq!(cost["items"], 4);
        assert!(cost["energy_method"].as_str().unwrap().contains("CPU"));
        // 0.0001 per 100 characters, 0.02 per million tokens.
        let stage = &stages[0];
        let cloud = f(&stage["chars"]) / 100.0 * 0.0001 + f(&stage["encoded_tokens"]) / 1e6 * 0.02;
        close(f(&stage["cost"]["cloud"]), cloud, "cloud");
        close(f(&cost["total"]["cloud"]), cloud, "cloud total");
        // The ledger: the run's cost as reported, its item rows adding up to its stages.
        let run_id = r["run_id"].as_str().unwrap();
        let (recorded, items_cpu): (String, f64) = db
            .query_row(
                "SELECT cost, (SELECT sum(cpu_s) FROM items i WHERE i.run_id = r.run_id)
                 FROM runs r WHERE run_id = ?1",
                [run_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        let recorded: Value = serde_json::from_str(&recorded).unwrap();
        assert_eq!(recorded["total"], cost["total"]);
        close(items_cpu, sum("cpu_s"), "the items' CPU-seconds");
    }
    let shown = lai()
        .args(["ledger", "--cost", "-o"])
        .arg(&out)
        .assert()
        .code(0);
    let text = String::from_utf8(shown.get_output().stdout.clone()).unwrap();
    let total = text.lines().last().unwrap();
    let cells: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(&cells[..4], &["total", "2", "runs", "8"], "{text}");
    let runs_cpu: f64 = reports
        .iter()
        .map(|r| f(&r["cost"]["total"]["cpu_s"]))
        .sum();
    assert!(
        (cells[4].parse::<f64>().unwrap() - runs_cpu).abs() < 0.002,
        "{text}"
    );
    // One item's rows: one per run, its money its seconds at its run's rates.
    let item = lai()
        .args(["ledger", "--cost", "-o"])
        .arg(&out)
        .arg("notes.txt")
        .assert()
        .code(0);
    let text = String::from_utf8(item.get_output().stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("replaced") && text.contains("current"),
        "{text}"
    );
}

// A misspelt key in the cost file, a bad number and an unknown --price are refused before
// anything is opened, naming the file, the line and the key.
#[test]
fn bad_prices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    let out = dir.path().join("out");
    let refused = |args: &[&str], says: &[&str]| {
        let run = lai()
            .args(["run", "--progress", "never"])
            .arg(repo("pipelines/redact.toml"))
            .arg(repo("samples/tickets.jsonl"))
            .arg("-o")
            .arg(&out)
            .args(args)
            .assert()
            .code(2);
        let stderr = String::from_utf8(run.get_output().stderr.clone()).unwrap();
        for s in says {
            assert!(stderr.contains(s), "{stderr}");
        }
        assert!(!out.exists());
    };
    std::fs::write(&prices, "[cost]\ncurrency = \"EUR\"\nkwh_price = 0.3\n").unwrap();
    let file = prices.to_str().unwrap();
    refused(&["--cost", file], &[file, "line 3", "kwh_price"]);
    std::fs::write(&prices, "[cost]\nmachine_per_hour = -2\n").unwrap();
    refused(&["--cost", file], &["machine_per_hour"]);
    refused(&["--price", "watts=3"], &["watts"]);
    refused(&["--price", "kwh=cheap"], &["cheap"]);
}
