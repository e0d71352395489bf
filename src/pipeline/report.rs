//! The run report: a machine-readable JSON summary (`--report FILE`) and the summary table.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Outcome;

#[derive(Serialize)]
pub struct RunReport {
    pub lai_version: &'static str,
    pub run_id: String,
    pub pipeline: PipelineInfo,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_s: f64,
    pub exit_code: i32,
    pub interrupted: bool,
    pub fatal_error: Option<String>,
    pub jobs: usize,
    pub ordered: bool,
    /// False when the run was started with `--no-verify` or used a file without a pin (such
    /// as a runtime library from `$LAI_ONNXRUNTIME`).
    pub models_verified: bool,
    /// Every model the pipeline used: files, their catalog sha256, whether they were verified.
    pub models: Vec<crate::models::ResolvedModel>,
    /// Peak resident memory of the process (Linux), to show memory stays flat.
    pub peak_rss_bytes: Option<u64>,
    pub inputs: Vec<String>,
    pub items: ItemCounts,
    pub stages: Vec<StageReport>,
    /// The GPU's utilisation and memory during the run, when a stage ran on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<super::gpu::GpuReport>,
    pub outputs: Vec<String>,
    pub dead_letter: Option<String>,
}

#[derive(Serialize)]
pub struct PipelineInfo {
    pub path: String,
    pub name: String,
    pub description: String,
    pub sha256: String,
}

#[derive(Serialize)]
pub struct ItemCounts {
    pub read: u64,
    pub written: u64,
    pub failed: u64,
    pub failed_at_input: u64,
    /// Read but not processed: done by an earlier run (resume), or not a failure under
    /// `--retry-failed`.
    pub skipped: u64,
}

#[derive(Serialize)]
pub struct StageReport {
    pub stage: String,
    /// "gpu" when its workers ran their model on the GPU.
    pub device: &'static str,
    pub workers: usize,
    pub items: u64,
    pub failed: u64,
    pub busy_s: f64,
    /// Items per second of wall time.
    pub items_per_s: f64,
    /// Share of the workers' wall time spent processing, 0-100.
    pub busy_pct: f64,
    /// Seconds of audio processed, for stages that work on audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_s: Option<f64>,
    /// Audio seconds per wall-clock second of the whole run (30 = thirty times real time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_x_realtime: Option<f64>,
    /// Tokens generated, for stages that run a language model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Generated tokens per second of the stage's busy time (per worker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_busy_s: Option<f64>,
}

impl ItemCounts {
    pub fn from(outcome: &Outcome) -> Self {
        ItemCounts {
            read: outcome.read,
            written: outcome.written,
            failed: outcome.failed,
            failed_at_input: outcome.input_failed,
            skipped: outcome.skipped,
        }
    }
}

pub fn stage_reports(outcome: &Outcome) -> Vec<StageReport> {
    let wall = outcome.elapsed.as_secs_f64().max(1e-9);
    outcome
        .stages
        .iter()
        .map(|(label, workers, c)| {
            let busy_s = c.busy_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let items = c.items.load(Ordering::Relaxed);
            let audio_ms = c.audio_ms.load(Ordering::Relaxed);
            let audio_s = (audio_ms > 0).then_some(audio_ms as f64 / 1000.0);
            let tokens = Some(c.tokens.load(Ordering::Relaxed)).filter(|t| *t > 0);
            StageReport {
                stage: label.clone(),
                device: if c.on_gpu.load(Ordering::Relaxed) {
                    "gpu"
                } else {
                    "cpu"
                },
                workers: *workers,
                items,
                failed: c.failed.load(Ordering::Relaxed),
                busy_s,
                items_per_s: items as f64 / wall,
                busy_pct: (100.0 * busy_s / (wall * *workers as f64)).min(100.0),
                audio_s,
                audio_x_realtime: audio_s.map(|a| a / wall),
                tokens,
                tokens_per_busy_s: tokens.map(|t| t as f64 / busy_s.max(1e-9)),
            }
        })
        .collect()
}

impl RunReport {
    /// The table printed at the end of a run: per stage items, failures, rate and busy share.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>8} {:>12} {:>6}",
            "stage", "items", "failed", "items/s", "busy"
        );
        let rate = |n: u64| n as f64 / self.elapsed_s.max(1e-9);
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>8} {:>12.1} {:>6}",
            "read",
            self.items.read,
            self.items.failed_at_input,
            rate(self.items.read),
            ""
        );
        for s in &self.stages {
            let on = if s.device == "gpu" { " (gpu)" } else { "" };
            let _ = writeln!(
                out,
                "{:<14} {:>10} {:>8} {:>12.1} {:>5.0}%",
                format!("{}{on}", s.stage),
                s.items,
                s.failed,
                s.items_per_s,
                s.busy_pct
            );
            // The stage's own unit of work, if it has one.
            let elapsed = Duration::from_secs_f64(self.elapsed_s);
            let rates = [
                s.audio_s.map(|a| super::progress::audio_rate(a, elapsed)),
                s.tokens.map(|t| super::progress::token_rate(t, elapsed)),
            ];
            for rate in rates.into_iter().flatten() {
                let _ = writeln!(out, "{:<14} {rate}", "");
            }
        }
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>8} {:>12.1} {:>6}",
            "written",
            self.items.written,
            self.items.failed,
            rate(self.items.written),
            ""
        );
        if let Some(gpu) = &self.gpu {
            let _ = writeln!(out, "{}", gpu.summary());
        }
        let _ = write!(
            out,
            "{} items in {:.2}s: {} written, {} failed, {} skipped{}",
            self.items.read,
            self.elapsed_s,
            self.items.written,
            self.items.failed,
            self.items.skipped,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        out
    }
}

/// The process's peak resident set size, from /proc (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp.
pub fn timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // Known instants format as RFC 3339 UTC.
    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40Z");
    }
}
