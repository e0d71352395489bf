//! The run report: a machine-readable JSON summary (`--report FILE`) and the summary table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;

use super::cost::{CostReport, EnergyStart, Prices, Share, StageWork, Work, account};
use super::{Outcome, Pipeline};
use crate::component::Per;
use crate::confine::Confinement;
use crate::item::{Usage, timestamp};
use crate::models::ResolvedModel;

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
    /// What the kernel held the run to after start-up (files, network) and what the probes
    /// that tried to get past it were answered.
    pub confinement: Confinement,
    /// CPU and GPU seconds, energy, money and the cloud's price: the run's, lai's own and the
    /// mean per item (each stage's is in its entry).
    pub cost: CostReport,
}

/// What the report says of a run besides its outcome.
pub struct RunFacts<'a> {
    pub run_id: &'a str,
    pub pipeline: &'a Pipeline,
    pub started_at: SystemTime,
    pub finished_at: String,
    pub exit_code: u8,
    pub jobs: usize,
    pub ordered: bool,
    pub models: Vec<ResolvedModel>,
    /// Verification was on (no `--no-verify`).
    pub verify: bool,
    /// The command-line inputs.
    pub inputs: &'a [PathBuf],
    /// Where each output wrote, and where the dead letters went.
    pub outputs: (Vec<String>, Option<String>),
    pub confinement: Confinement,
    pub prices: &'a Prices,
    /// The energy counters as they were when the run started.
    pub energy: &'a EnergyStart,
}

impl RunReport {
    pub fn new(facts: RunFacts, outcome: &Outcome) -> RunReport {
        let pipeline = facts.pipeline;
        let mut stages = stage_reports(outcome);
        let cost = account(
            facts.prices,
            facts.energy,
            &Work {
                process_cpu_s: outcome.process_cpu_s,
                // The machine's price is shared by all its cores, whatever --jobs was.
                cores: std::thread::available_parallelism().map_or(facts.jobs, usize::from),
                items: outcome.read - outcome.skipped,
                stages: outcome
                    .stages
                    .iter()
                    .map(|(_, _, c)| {
                        let s = |ns: &std::sync::atomic::AtomicU64| {
                            ns.load(Ordering::Relaxed) as f64 / 1e9
                        };
                        let usage = Usage {
                            cpu_s: s(&c.cpu_ns),
                            gpu_s: s(&c.gpu_ns),
                        };
                        StageWork {
                            usage,
                            units: c.work(),
                        }
                    })
                    .collect(),
                gpu_joules: super::gpu::energy_joules(),
            },
        );
        for (stage, share) in stages.iter_mut().zip(&cost.stages) {
            stage.cost = share.clone();
        }
        RunReport {
            lai_version: env!("CARGO_PKG_VERSION"),
            run_id: facts.run_id.to_string(),
            pipeline: PipelineInfo {
                path: pipeline.path.display().to_string(),
                name: pipeline.name.clone(),
                description: pipeline.description.clone(),
                sha256: pipeline.sha256.clone(),
            },
            started_at: timestamp(facts.started_at),
            finished_at: facts.finished_at,
            elapsed_s: outcome.elapsed.as_secs_f64(),
            exit_code: i32::from(facts.exit_code),
            interrupted: outcome.interrupted,
            fatal_error: outcome.fatal.as_ref().map(|e| format!("{e:#}")),
            jobs: facts.jobs,
            ordered: facts.ordered,
            models_verified: facts.verify && facts.models.iter().all(|m| m.verified),
            models: facts.models,
            peak_rss_bytes: peak_rss_bytes(),
            inputs: facts
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            items: ItemCounts::from(outcome),
            stages,
            gpu: super::gpu::report(),
            outputs: facts.outputs.0,
            dead_letter: facts.outputs.1,
            confinement: facts.confinement,
            cost,
        }
    }
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
    /// Items the stage's `when` did not admit: they went on without it.
    pub passed_by: u64,
    pub busy_s: f64,
    /// Items per second of wall time.
    pub items_per_s: f64,
    /// Share of the workers' wall time spent processing, 0-100.
    pub busy_pct: f64,
    /// The stage's own work, in the units it declared (`component::Unit`): each unit's total
    /// and rate under the unit's keys ("audio_s" and "audio_x_realtime", "tokens" and
    /// "tokens_per_busy_s").
    #[serde(flatten)]
    pub work: serde_json::Map<String, serde_json::Value>,
    /// The same, as lines for the summary table.
    #[serde(skip)]
    pub work_lines: Vec<String>,
    /// The CPU and GPU seconds charged to its batches, their energy, money and cloud price.
    pub cost: Share,
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
            let mut work = serde_json::Map::new();
            let mut work_lines = Vec::new();
            for (unit, total) in c.work().into_iter().filter(|(_, t)| *t > 0.0) {
                let per = match unit.per {
                    Per::WallSecond => wall,
                    Per::BusySecond => busy_s.max(1e-9),
                };
                let shown = if unit.whole {
                    serde_json::json!(total.round() as u64)
                } else {
                    serde_json::json!(total)
                };
                work.insert(unit.total.to_string(), shown);
                work.insert(unit.rate.to_string(), serde_json::json!(total / per));
                work_lines.push((unit.describe)(total, outcome.elapsed));
            }
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
                passed_by: c.passed.load(Ordering::Relaxed),
                busy_s,
                items_per_s: items as f64 / wall,
                busy_pct: (100.0 * busy_s / (wall * *workers as f64)).min(100.0),
                work,
                work_lines,
                cost: Share::default(),
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
            if s.passed_by > 0 {
                let _ = writeln!(out, "{:<14} {} items passed by (`when`)", "", s.passed_by);
            }
            // The stage's own units of work, if it has any.
            for line in &s.work_lines {
                let _ = writeln!(out, "{:<14} {line}", "");
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
        let _ = writeln!(out, "{}", self.cost.summary());
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
