//! What a stage is, and what the runtime gives each of its workers: the models, the run's CPU
//! threads, a meter for the stage's own unit of work and the deadline of the current batch.
//!
//! A stage is built once per run (shared by `Arc`), and each worker thread calls `start` to get
//! its own `Worker`, so per-thread engine state lives on the thread that uses it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::threads::Threads;
use crate::device::{Device, Placement};
use crate::item::Item;
use crate::models::facts::ModelFacts;
use crate::models::{ModelRef, ResolvedModel};

/// A configured stage, shared by all of its workers.
pub trait Stage: Send + Sync {
    /// The models this stage loads; each is found and verified before the run.
    fn models(&self) -> Vec<ModelRef> {
        Vec::new()
    }

    /// Checks the stage's options against what its models say of themselves (read from their
    /// headers, never loaded): one message per problem, naming the key to change. A model not
    /// in `facts` (not installed when `lai check` runs) is not checked.
    fn check_models(&self, _facts: &ModelFacts) -> Vec<String> {
        Vec::new()
    }

    /// Checks what the stage needs from outside the pipeline file (a secret key) before the
    /// run opens its outputs, so a missing one changes nothing. Errors stop the run.
    fn prepare(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Where the stage sends item text off this machine, and which fields: `lai check` wants a
    /// redact stage before it covering those fields, and the run lets the network reach only
    /// these endpoints.
    fn egress(&self) -> Option<Egress> {
        None
    }

    /// The item fields this stage redacts (the redact stage).
    fn redacts(&self) -> Vec<String> {
        Vec::new()
    }

    /// The addresses the stage connects to, resolved by `prepare` before the run is confined.
    fn connects(&self) -> Vec<SocketAddr> {
        Vec::new()
    }

    /// Path templates (`{out}/...`) of files the stage itself writes, beside the outputs: the
    /// run fences its inputs off from them, keeps them inside a shard's folder and lists them
    /// in the report.
    fn writes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Creates one worker's state on the worker's own thread (an engine context, scratch
    /// buffers). Errors here stop the run: the stage cannot work at all.
    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>>;
}

/// Item text leaving the machine: to which endpoint, which fields, and the reason the pipeline
/// gives for sending them unredacted (`allow_unredacted`), if it does.
#[derive(Clone, Debug)]
pub struct Egress {
    pub endpoint: String,
    pub fields: Vec<String>,
    pub allow_unredacted: Option<String>,
}

/// One worker's view of a stage.
pub trait Worker {
    /// Processes a batch of healthy items in place; one result per item, in order. An `Err`
    /// fails that item alone, with the message as its reason.
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>>;
}

/// Per-stage counters, updated by its workers.
#[derive(Default)]
pub struct StageCounters {
    pub items: AtomicU64,
    pub failed: AtomicU64,
    /// Items its `when` did not admit, which went on without it.
    pub passed: AtomicU64,
    pub busy_ns: AtomicU64,
    /// CPU time charged to its batches (`threads`), and GPU time: the wall time of its batches
    /// on the GPU.
    pub cpu_ns: AtomicU64,
    pub gpu_ns: AtomicU64,
    /// The stage's own work, in the units it declared (`Unit`), in the order first counted.
    pub work: Mutex<Vec<(&'static Unit, f64)>>,
    /// A worker of the stage runs its model on the GPU.
    pub on_gpu: AtomicBool,
}

/// A unit a stage measures its work in (audio seconds, generated tokens, pages). The stage
/// declares it and counts it on its `Meter`; the progress bar and the run report show it
/// without the runtime knowing any unit by name.
pub struct Unit {
    /// Report key of the total ("audio_s").
    pub total: &'static str,
    /// Report key of the rate ("audio_x_realtime"), and what it is per.
    pub rate: &'static str,
    pub per: Per,
    /// Totals are whole numbers (tokens), reported as integers.
    pub whole: bool,
    /// One line for the progress bar and the summary: `total` after `elapsed` of the run.
    pub describe: fn(total: f64, elapsed: Duration) -> String,
}

/// What a unit's rate is per.
#[derive(Clone, Copy)]
pub enum Per {
    /// Per second of the run's wall time (audio seconds: times real time).
    WallSecond,
    /// Per second the stage's workers were busy (tokens per worker-second).
    BusySecond,
}

impl StageCounters {
    /// Adds `amount` of `unit` (units are told apart by their report key); returns the new
    /// total.
    fn add(&self, unit: &'static Unit, amount: f64) -> f64 {
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        match work.iter_mut().find(|(u, _)| u.total == unit.total) {
            Some((_, total)) => {
                *total += amount;
                *total
            }
            None => {
                work.push((unit, amount));
                amount
            }
        }
    }

    /// The totals so far.
    pub fn work(&self) -> Vec<(&'static Unit, f64)> {
        self.work.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a stage worker gets when it starts.
pub struct StartContext<'a> {
    pub models: &'a [ResolvedModel],
    /// The run's output folder (a shard's own in a sharded run): `{out}` in path templates.
    pub out_dir: &'a Path,
    /// The run's CPU threads (`--jobs`), lent to engine calls of all stages.
    pub threads: Arc<Threads>,
    pub meter: Meter,
    /// When the worker's current batch must give up (the stage's `timeout`).
    pub deadline: Deadline,
}

/// When a stage call must give up: the runtime sets it around each batch from the stage's
/// `timeout`, and engines poll it in their long loops (whisper's abort callback, the llama
/// token loop), so a hang becomes an item error instead of a stuck run.
#[derive(Clone, Default)]
pub struct Deadline(Arc<AtomicU64>);

/// Nanoseconds since the first call, the clock of `Deadline` (0 means none set).
fn clock_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

impl Deadline {
    pub fn passed(&self) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        at != 0 && clock_ns() >= at
    }

    pub fn set(&self, after: Option<Duration>) {
        let at = after.map_or(0, |d| clock_ns().saturating_add(d.as_nanos() as u64));
        self.0.store(at, Ordering::Relaxed);
    }
}

impl StartContext<'_> {
    /// Resolves a path template like "{out}/redact.vault".
    pub fn resolve(&self, template: &str) -> PathBuf {
        super::sink::resolve(template, self.out_dir)
    }

    /// A context outside any run, for unit tests of a single stage.
    #[cfg(test)]
    pub fn detached(models: &[ResolvedModel]) -> StartContext<'_> {
        StartContext {
            models,
            out_dir: Path::new("lai-out"),
            threads: Arc::new(Threads::new(2)),
            meter: Meter::new(
                Arc::default(),
                indicatif::ProgressBar::hidden(),
                Instant::now(),
            ),
            deadline: Deadline::default(),
        }
    }

    /// The device for this worker's model: the stage's `device` option resolved on this machine
    /// (an error says why "gpu" cannot be had). The run report records it, and the runtime
    /// samples the GPU's utilisation while a stage runs on it.
    pub fn place(&self, placement: Placement) -> anyhow::Result<Device> {
        let device = placement.resolve()?;
        if device == Device::Gpu {
            self.meter.counters.on_gpu.store(true, Ordering::Relaxed);
        }
        Ok(device)
    }

    /// The resolved model `name` (every name in the stage's `models()` is resolved).
    pub fn model(&self, name: &str) -> anyhow::Result<&ResolvedModel> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| anyhow!("model `{name}` was not resolved. This is a bug."))
    }

    /// The file with `role` of the resolved model `name`, which must be an `engine` model.
    pub fn model_file(&self, name: &str, engine: &str, role: &str) -> anyhow::Result<&Path> {
        let model = self.model(name)?;
        match model.file(role) {
            Some(path) if model.engine == engine => Ok(path),
            _ => Err(anyhow!(
                "model `{name}` is not a {engine} model with a `{role}` file (its engine is {}); see `lai models list`",
                model.engine
            )),
        }
    }
}

/// Counts a stage's work in its own units for progress and the run report.
#[derive(Clone)]
pub struct Meter {
    counters: Arc<StageCounters>,
    bar: indicatif::ProgressBar,
    started: Instant,
}

impl Meter {
    /// A meter for one stage's workers; rates on its progress bar count from `started`, the
    /// start of the run.
    pub fn new(
        counters: Arc<StageCounters>,
        bar: indicatif::ProgressBar,
        started: Instant,
    ) -> Meter {
        Meter {
            counters,
            bar,
            started,
        }
    }

    pub fn add(&self, unit: &'static Unit, amount: f64) {
        let total = self.counters.add(unit, amount);
        self.bar
            .set_message((unit.describe)(total, self.started.elapsed()));
    }
}
