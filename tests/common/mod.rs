//! Helpers shared by the integration tests.

// Each test crate includes this module and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use assert_cmd::Command;
use serde_json::Value;

/// A path inside this repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The `lai` binary under test.
pub fn lai() -> Command {
    Command::cargo_bin("lai").expect("the lai binary is built")
}

/// `lai run --progress never PIPELINE INPUT -o OUT EXTRA...`, for the caller to assert on.
pub fn lai_run(
    pipeline: &Path,
    input: &Path,
    out: &Path,
    extra: &[&str],
) -> assert_cmd::assert::Assert {
    lai()
        .args(["run", "--progress", "never"])
        .arg(pipeline)
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .assert()
}

/// Every record of a JSONL file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// The ids of a JSONL file's records, sorted.
pub fn ids(path: &Path) -> Vec<String> {
    let mut ids: Vec<String> = jsonl(path)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Held by a test while it runs engines: the engines' threads spin while they wait, so two
/// runs at once on a small machine crawl rather than share. Tests of one binary that take it
/// run one after another.
pub fn engines() -> MutexGuard<'static, ()> {
    static ENGINES: Mutex<()> = Mutex::new(());
    ENGINES.lock().unwrap_or_else(|p| p.into_inner())
}
