//! The runtime: a bounded channel graph from source through stages to the writer.
//!
//! ```text
//! source thread --raw--> intake --> stage 1 workers --> ... --> stage N workers --> writer
//!                          |  (one permit per item in flight)                         |
//!                          +<------------------- permit returned --------------------+
//! ```
//!
//! Every edge is a bounded crossbeam channel, and intake takes a permit per item that the writer
//! returns once the item is written, so at most `in_flight` items exist at any time: memory stays
//! flat for any number of inputs, and the writer's reorder buffer (input order for pipes) is
//! bounded by the same number. The bytes those items hold are bounded too (`budget.rs`): the
//! source waits for room before it hands on a large document. Each stage has a pool of worker threads; each worker pulls batches
//! from the stage's queue with its own `Batcher` and owns its engine state. A failed item keeps
//! flowing (stages skip it) so the writer can send it to the dead letters in order. A stop
//! (Ctrl-C, SIGTERM, a fatal error) ends intake; what is in flight drains and is flushed.

pub mod batcher;
pub mod budget;
pub mod cost;
pub mod gpu;
pub mod panics;
pub mod progress;
pub mod report;
pub mod route;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use crossbeam_channel::{Receiver, Sender, bounded, select};

use crate::component::threads::Threads;
use crate::component::{
    Deadline, Input, Meter, Place, Sink, SinkSpec, Source, Stage, StageCounters, StartContext,
};
use crate::item::{Item, Usage};
use crate::ledger::Ledger;
use crate::ledger::resume::Admit;
use crate::ledger::shard::Shard;
use crate::models::ResolvedModel;
use batcher::Batcher;
use progress::Progress;

/// Fewest and most items in flight. The bound scales with the stages' batch sizes so every
/// worker can hold a full batch while the next one queues, and is capped so that large items
/// (whole documents, decoded audio) cannot add up to unbounded memory.
const MIN_IN_FLIGHT: usize = 64;
const MAX_IN_FLIGHT: usize = 4096;

/// How the writer flushes: whenever its queue is empty, and at least every this many items.
const FLUSH_EVERY: u64 = 1024;

/// A stop request shared by the signal handler and the runtime.
pub struct Stop {
    requested: AtomicBool,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        let (wake_tx, wake_rx) = bounded(1);
        Arc::new(Stop {
            requested: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        })
    }

    /// Asks the run to stop taking items; returns true if a stop was already requested.
    pub fn request(&self) -> bool {
        let again = self.requested.swap(true, Ordering::SeqCst);
        let _ = self.wake_tx.try_send(());
        again
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// A validated and built pipeline, ready to run.
pub struct Pipeline {
    pub path: PathBuf,
    pub sha256: String,
    /// What the pipeline does, as canonical text: every component's kind and effective options
    /// (not its speed settings) and the sha256 of each file they read. With the models'
    /// sha256s it keys resume: a changed prompt reprocesses, a reformatted file does not.
    pub config: String,
    pub name: String,
    pub description: String,
    pub source: Arc<dyn Source>,
    pub stages: Vec<StagePlan>,
    pub outputs: Vec<Box<dyn SinkSpec>>,
    pub dead_letter: String,
    /// `confine = "required"`: no run without files and network confined.
    pub confine_required: bool,
}

impl Pipeline {
    /// The models its stages load.
    pub fn models(&self) -> Vec<crate::models::ModelRef> {
        self.stages.iter().flat_map(|s| s.stage.models()).collect()
    }

    /// Every stage's problems with its models' facts, each naming its stage.
    pub fn check_models(&self, facts: &crate::models::facts::ModelFacts) -> Vec<String> {
        self.stages
            .iter()
            .flat_map(|plan| {
                let label = &plan.label;
                plan.stage
                    .check_models(facts)
                    .into_iter()
                    .map(move |m| format!("{label}: {m}"))
            })
            .collect()
    }

    /// Each stage's `prepare`, in order; the first error, naming its stage.
    pub fn prepare(&self) -> anyhow::Result<()> {
        for plan in &self.stages {
            (plan.stage.prepare()).map_err(|e| anyhow::anyhow!("{}: {e:#}", plan.label))?;
        }
        Ok(())
    }

    /// Where its stages send item text off the machine, by stage label.
    pub fn egress(&self) -> Vec<(String, crate::component::Egress)> {
        let stages = self.stages.iter();
        stages
            .filter_map(|s| s.stage.egress().map(|e| (s.label.clone(), e)))
            .collect()
    }

    /// The addresses its stages connect to (resolved by `prepare`).
    pub fn connects(&self) -> Vec<std::net::SocketAddr> {
        self.stages
            .iter()
            .flat_map(|s| s.stage.connects())
            .collect()
    }

    /// Path templates of the files its stages write beside the outputs (a redaction vault).
    pub fn stage_writes(&self) -> Vec<String> {
        self.stages.iter().flat_map(|s| s.stage.writes()).collect()
    }
}

/// One stage as the runtime needs it: the built stage plus its batching and worker settings.
pub struct StagePlan {
    /// Unique label for progress and reports: the kind, numbered if it repeats ("redact#2").
    pub label: String,
    pub batch_size: usize,
    pub max_wait: Duration,
    /// 0 means one per `--jobs`.
    pub workers: usize,
    /// Longest one item may take in a call of the stage.
    pub timeout: Option<Duration>,
    /// The items the stage takes; the rest pass it by unchanged.
    pub when: Option<route::When>,
    pub stage: Arc<dyn Stage>,
}

pub struct RunOptions<'a> {
    /// Thread budget: a stage with `workers = 0` gets this many workers.
    pub jobs: usize,
    /// The pipeline's models, found and verified.
    pub models: &'a [ResolvedModel],
    /// The output folder, `{out}` in the stages' path templates.
    pub out_dir: &'a Path,
    /// Write items in input order (needed for stdin-to-stdout pipes).
    pub ordered: bool,
    pub progress: bool,
    /// Takes only this shard's items (the source passes over the others).
    pub shard: Option<Shard>,
    /// Decides at intake what happens to each item the source read.
    pub admit: &'a (dyn Fn(&Item) -> Admit + Sync),
}

/// What happened in a run.
pub struct Outcome {
    pub read: u64,
    /// Items the source read that `admit` turned away.
    pub skipped: u64,
    pub written: u64,
    pub failed: u64,
    /// Items that failed while being read, before any stage.
    pub input_failed: u64,
    pub interrupted: bool,
    /// The reader of the records on stdout went away (`lai run ... - | head`).
    pub reader_gone: bool,
    pub elapsed: Duration,
    /// The process's CPU seconds when the run ended, start-up included.
    pub process_cpu_s: f64,
    pub stages: Vec<(String, usize, Arc<StageCounters>)>,
    /// A fatal error that ended the run early (a stage could not start, an output failed).
    pub fatal: Option<anyhow::Error>,
}

/// One run, as `run` takes it.
pub struct Run<'a> {
    pub pipeline: &'a Pipeline,
    pub inputs: Vec<Input>,
    /// Where finished items go.
    pub sinks: Vec<Box<dyn Sink>>,
    /// Where failed items go (identity and error, never content).
    pub dead_letters: Option<Box<dyn Sink>>,
    /// Commits each flushed item.
    pub ledger: Option<&'a mut Ledger>,
    pub options: RunOptions<'a>,
    pub stop: &'a Arc<Stop>,
    /// Called for each failed item (to print it).
    pub on_failure: &'a (dyn Fn(&Item) + Sync),
}

/// Runs a pipeline over its inputs until they are done or the run is stopped.
pub fn run(run: Run) -> Outcome {
    let Run {
        pipeline,
        inputs,
        mut sinks,
        mut dead_letters,
        ledger,
        options,
        stop,
        on_failure,
    } = run;
    let options = &options;
    let started = Instant::now();
    let (workers, in_flight) = sizes(pipeline, options.jobs);

    let labels: Vec<String> = pipeline.stages.iter().map(|s| s.label.clone()).collect();
    let progress = Progress::new(options.progress, &labels);
    let counters: Vec<Arc<StageCounters>> = labels.iter().map(|_| Arc::default()).collect();
    let fatal: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let fail_run = |e: anyhow::Error| {
        let mut slot = fatal.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
        stop.request();
    };

    let budget = Arc::new(budget::ByteBudget::new(budget::MAX_BYTES_IN_FLIGHT));
    let (raw_rx, source_done_rx) =
        start_source(pipeline, inputs.clone(), options, &budget, in_flight);
    if options.progress {
        let source = Arc::clone(&pipeline.source);
        let bars = progress.clone();
        thread::spawn(move || {
            if let Some(total) = source.count(&inputs) {
                bars.set_total(total);
            }
        });
    }

    let threads = Arc::new(Threads::new(options.jobs));
    let (permit_tx, permit_rx) = bounded::<()>(in_flight);
    let mut counts = Counts::default();
    let mut read = 0u64;
    let mut skipped = 0u64;
    let mut reader_gone = false;

    thread::scope(|scope| {
        // Wire the stage queues: queue i feeds stage i; the last queue feeds the writer.
        let (first_tx, mut rx) = bounded::<Item>(in_flight);
        for (i, plan) in pipeline.stages.iter().enumerate() {
            let (tx, next_rx) = bounded::<Item>(in_flight);
            for _ in 0..workers[i] {
                let batcher = Batcher::new(rx.clone(), plan.batch_size, plan.max_wait);
                let tx = tx.clone();
                let counters = Arc::clone(&counters[i]);
                let bar = progress.stage(i);
                let fail_run = &fail_run;
                let ctx = StartContext {
                    models: options.models,
                    out_dir: options.out_dir,
                    threads: Arc::clone(&threads),
                    meter: Meter::new(Arc::clone(&counters), bar.clone(), started),
                    deadline: Deadline::default(),
                };
                scope.spawn(move || {
                    if let Err(e) = work(plan, &ctx, &batcher, &tx, &counters, &bar) {
                        fail_run(e);
                    }
                });
            }
            rx = next_rx;
        }
        let writer_rx = rx;

        let mut writer = Writer {
            sinks: std::mem::take(&mut sinks),
            dead_letters: dead_letters.take(),
            ledger,
            on_failure,
            permits: &permit_rx,
            budget: &budget,
            progress: &progress,
            counts: Counts::default(),
        };
        let writer_stop = Arc::clone(stop);
        let writer = scope.spawn(move || {
            let result = writer.run(&writer_rx, options.ordered);
            // Flush what was written even when a later write failed.
            let flushed = writer.flush();
            let result = result.and(flushed).and_then(|()| writer.finish());
            if result.is_err() {
                // Nothing more can be written (`| head` closed the pipe, a full disk): intake
                // must stop waiting for permits this writer will never return.
                writer_stop.request();
            }
            (writer.counts, result)
        });

        let intake = Intake {
            raw: &raw_rx,
            admit: options.admit,
            permits: &permit_tx,
            budget: &budget,
            progress: &progress,
            stop,
        };
        (read, skipped) = intake.run(first_tx);

        let result = match writer.join() {
            Ok((c, result)) => {
                counts = c;
                result.map_err(Some)
            }
            Err(_) => Err(None),
        };
        match result {
            Ok(()) => {}
            Err(Some(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                // The reader of our output went away (`| head`): stop quietly.
                reader_gone = true;
                stop.request();
            }
            Err(Some(e)) => fail_run(anyhow!("writing outputs failed: {e}")),
            Err(None) => fail_run(anyhow!("the output writer crashed. This is a bug.")),
        }
    });
    progress.finish();

    let interrupted = stop.requested();
    if !interrupted {
        // The source has finished (its channel closed); surface a stream error like a broken stdin.
        if let Ok(Err(e)) = source_done_rx.recv_timeout(Duration::from_secs(5)) {
            fail_run(e);
        }
    }
    let fatal = fatal.into_inner().unwrap_or_else(|p| p.into_inner());
    Outcome {
        read,
        skipped,
        written: counts.written,
        failed: counts.failed,
        input_failed: counts.input_failed,
        interrupted: interrupted && fatal.is_none() && !reader_gone,
        reader_gone,
        elapsed: started.elapsed(),
        process_cpu_s: crate::component::threads::process_cpu_s(),
        stages: labels
            .into_iter()
            .zip(workers)
            .zip(counters)
            .map(|((l, w), c)| (l, w, c))
            .collect(),
        fatal,
    }
}

/// Workers per stage (`workers = 0`: one per job), and how many items may be in flight.
fn sizes(pipeline: &Pipeline, jobs: usize) -> (Vec<usize>, usize) {
    let workers: Vec<usize> = pipeline
        .stages
        .iter()
        .map(|s| {
            if s.workers == 0 {
                jobs.max(1)
            } else {
                s.workers
            }
        })
        .collect();
    let in_flight = pipeline
        .stages
        .iter()
        .zip(&workers)
        .map(|(s, w)| 2 * s.batch_size * w)
        .max()
        .unwrap_or(0)
        .clamp(MIN_IN_FLIGHT, MAX_IN_FLIGHT);
    (workers, in_flight)
}

/// Starts the source on its own detached thread (it may block on stdin forever after a stop):
/// items arrive on the first channel, the source's end (or stream error) on the second.
fn start_source(
    pipeline: &Pipeline,
    inputs: Vec<Input>,
    options: &RunOptions,
    budget: &Arc<budget::ByteBudget>,
    in_flight: usize,
) -> (Receiver<Item>, Receiver<anyhow::Result<()>>) {
    let (raw_tx, raw_rx) = bounded::<Item>(in_flight);
    let (done_tx, done_rx) = bounded::<anyhow::Result<()>>(1);
    let source = Arc::clone(&pipeline.source);
    let shard = options.shard;
    let budget = Arc::clone(budget);
    thread::spawn(move || {
        let wanted = |id: &str| shard.is_none_or(|s| s.owns(id));
        // A reader that panics must not pass for one that reached the end of the inputs.
        let result = panics::guard(|| {
            source.read(&inputs, &wanted, &mut |mut item| {
                #[cfg(debug_assertions)]
                test_hooks::panic_on_marked_source(&item);
                item.weight = item.size();
                budget.take(item.weight);
                raw_tx.send(item).is_ok()
            })
        })
        .unwrap_or_else(|caught| {
            let at = caught
                .location
                .map_or_else(String::new, |l| format!(" at {l}"));
            Err(anyhow!(
                "reading the inputs stopped: the input reader panicked{at} (a bug in lai; please report it, with no item content); the items read before were processed, run again to resume the rest"
            ))
        });
        let _ = done_tx.send(result);
    });
    (raw_rx, done_rx)
}

/// Intake: moves items from the source into the graph, one permit each, until the source ends
/// or the run stops.
struct Intake<'a> {
    raw: &'a Receiver<Item>,
    admit: &'a (dyn Fn(&Item) -> Admit + Sync),
    permits: &'a Sender<()>,
    budget: &'a budget::ByteBudget,
    progress: &'a Progress,
    stop: &'a Stop,
}

impl Intake<'_> {
    /// Feeds `first` (the first stage's queue); returns (items read, items skipped).
    fn run(&self, first: Sender<Item>) -> (u64, u64) {
        let (mut seq, mut skipped) = (0u64, 0u64);
        while !self.stop.requested() {
            let mut item = select! {
                recv(self.stop.wake_rx) -> _ => break,
                recv(self.raw) -> msg => match msg { Ok(item) => item, Err(_) => break },
            };
            if (self.admit)(&item) == Admit::Skip {
                self.budget.give_back(item.weight);
                skipped += 1;
                self.progress.read().inc(1);
                self.progress.written().inc(1);
                continue;
            }
            select! {
                send(self.permits, ()) -> sent => if sent.is_err() { break },
                recv(self.stop.wake_rx) -> _ => break,
            }
            item.seq = seq;
            seq += 1;
            self.progress.read().inc(1);
            if first.send(item).is_err() {
                break;
            }
        }
        (seq + skipped, skipped)
    }
}

/// One worker of a stage: start its state, then process batches until the queue closes.
fn work(
    plan: &StagePlan,
    ctx: &StartContext,
    batcher: &Batcher<Item>,
    tx: &Sender<Item>,
    counters: &StageCounters,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let start = || {
        plan.stage
            .start(ctx)
            .map_err(|e| e.context(format!("stage `{}` could not start", plan.label)))
    };
    let mut worker = start()?;
    if counters.on_gpu.load(Ordering::Relaxed) {
        gpu::start_sampling();
    }
    while let Some(batch) = batcher.next_batch() {
        let (mut healthy, passing): (Vec<Item>, Vec<Item>) = batch
            .into_iter()
            .partition(|i| i.failure.is_none() && plan.when.as_ref().is_none_or(|w| w.admits(i)));
        let routed_past = passing.iter().filter(|i| i.failure.is_none()).count();
        counters
            .passed
            .fetch_add(routed_past as u64, Ordering::Relaxed);
        if !healthy.is_empty() {
            let started = Instant::now();
            let busy = ctx.threads.busy();
            // A panic may leave items half-written: a retry starts from their fields as they came.
            let before: Vec<_> = if healthy.len() > 1 {
                healthy.iter().map(|i| i.fields.clone()).collect()
            } else {
                Vec::new()
            };
            let results = match attempt(plan, ctx, &mut healthy, |b| worker.process(b)) {
                Ok(results) => results,
                Err(panicked) if healthy.len() == 1 => {
                    worker = restart(worker, &start)?;
                    vec![Err(panicked)]
                }
                Err(_) => {
                    // Which item made the batch panic is unknown, and the worker's state may be
                    // broken: retry each item alone on a fresh worker, so only the items that
                    // panic by themselves fail.
                    worker = restart(worker, &start)?;
                    let mut results = Vec::with_capacity(healthy.len());
                    for (item, fields) in healthy.iter_mut().zip(before) {
                        item.fields = fields;
                        let alone = std::slice::from_mut(item);
                        match attempt(plan, ctx, alone, |b| worker.process(b)) {
                            Ok(mut one) => results
                                .push(one.pop().expect("one result for one item. This is a bug.")),
                            Err(panicked) => {
                                worker = restart(worker, &start)?;
                                results.push(Err(panicked));
                            }
                        }
                    }
                    results
                }
            };
            let cpu_s = busy.finish();
            let took = started.elapsed();
            let gpu_s = if counters.on_gpu.load(Ordering::Relaxed) {
                took.as_secs_f64()
            } else {
                0.0
            };
            counters
                .busy_ns
                .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
            counters
                .cpu_ns
                .fetch_add((cpu_s * 1e9) as u64, Ordering::Relaxed);
            counters
                .gpu_ns
                .fetch_add((gpu_s * 1e9) as u64, Ordering::Relaxed);
            // The batch's compute is shared equally by its items.
            let share = Usage {
                cpu_s: cpu_s / healthy.len() as f64,
                gpu_s: gpu_s / healthy.len() as f64,
            };
            let mut failures = 0;
            for (item, result) in healthy.iter_mut().zip(results) {
                item.timings.push((plan.label.clone(), took.as_secs_f64()));
                item.usage += share;
                if let Err(reason) = result {
                    item.fail(&plan.label, reason);
                    failures += 1;
                }
            }
            counters
                .items
                .fetch_add(healthy.len() as u64, Ordering::Relaxed);
            counters.failed.fetch_add(failures, Ordering::Relaxed);
            bar.inc(healthy.len() as u64);
        }
        for item in healthy.into_iter().chain(passing) {
            if tx.send(item).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One call of a worker on `items` under the stage's timeout: a result per item (a timed-out
/// failure says so), or, if the stage panicked, the reason every item of the call fails with.
/// A panic's message is never read: it may hold item text.
fn attempt(
    plan: &StagePlan,
    ctx: &StartContext,
    items: &mut [Item],
    process: impl FnOnce(&mut [Item]) -> Vec<Result<(), String>>,
) -> Result<Vec<Result<(), String>>, String> {
    let n = items.len();
    let started = Instant::now();
    ctx.deadline.set(plan.timeout.map(|t| t * n as u32));
    let results = panics::guard(|| {
        #[cfg(debug_assertions)]
        test_hooks::panic_on_marked(items);
        process(items)
    });
    let timed_out = ctx.deadline.passed();
    ctx.deadline.set(None);
    let took = started.elapsed();
    let results = match results {
        Ok(r) if r.len() == n => r,
        Ok(_) => vec![
            Err(format!(
                "stage `{}` returned the wrong number of results. This is a bug.",
                plan.label
            ));
            n
        ],
        Err(caught) => {
            let at = caught
                .location
                .map_or_else(String::new, |l| format!(" at {l}"));
            return Err(format!(
                "stage `{}` panicked on this item{at} (a bug in lai; please report it, with no item content)",
                plan.label
            ));
        }
    };
    Ok(results
        .into_iter()
        .map(|result| match (result, timed_out, plan.timeout) {
            (Err(_), true, Some(t)) => Err(format!(
                "timed out: stage `{}` took longer than its `timeout` of {:.1}s per item ({} items in {:.1}s); raise `timeout` in the pipeline file, or check this input",
                plan.label,
                t.as_secs_f64(),
                n,
                took.as_secs_f64()
            )),
            (result, _, _) => result,
        })
        .collect())
}

/// A fresh worker in place of one whose call panicked (its engine state may be half-updated).
fn restart<W>(worker: W, start: &impl Fn() -> anyhow::Result<W>) -> anyhow::Result<W> {
    // Dropping broken state may panic too; that must not take the run down.
    let _ = panics::guard(move || drop(worker));
    start()
}

/// Hooks for the tests that prove item content stays out of logs; debug builds only.
#[cfg(debug_assertions)]
mod test_hooks {
    use super::Item;

    /// `LAI_TEST_PANIC_ON=<text>` makes a stage call panic when an item's fields contain the
    /// text, with the fields in the panic message: a stage bug at its worst.
    pub fn panic_on_marked(items: &[Item]) {
        static MARK: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let mark = MARK.get_or_init(|| {
            std::env::var("LAI_TEST_PANIC_ON")
                .ok()
                .filter(|m| !m.is_empty())
        });
        let Some(mark) = mark else { return };
        for item in items {
            let fields = serde_json::Value::Object(item.fields.clone()).to_string();
            if fields.contains(mark.as_str()) {
                panic!("LAI_TEST_PANIC_ON matched an item with these fields: {fields}");
            }
        }
    }

    /// `LAI_TEST_SOURCE_PANIC_ON=<text>`: the same, in the input reader as it reads the item.
    pub fn panic_on_marked_source(item: &Item) {
        static MARK: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let mark = MARK.get_or_init(|| {
            std::env::var("LAI_TEST_SOURCE_PANIC_ON")
                .ok()
                .filter(|m| !m.is_empty())
        });
        let Some(mark) = mark else { return };
        let fields = serde_json::Value::Object(item.fields.clone()).to_string();
        if fields.contains(mark.as_str()) {
            panic!("LAI_TEST_SOURCE_PANIC_ON matched an item with these fields: {fields}");
        }
    }
}

#[derive(Default)]
struct Counts {
    written: u64,
    failed: u64,
    input_failed: u64,
}

/// The single thread that owns every sink: delivers finished items, in input order if asked.
struct Writer<'a> {
    sinks: Vec<Box<dyn Sink>>,
    dead_letters: Option<Box<dyn Sink>>,
    ledger: Option<&'a mut Ledger>,
    on_failure: &'a (dyn Fn(&Item) + Sync),
    /// Receiving a permit back lets intake admit one more item.
    permits: &'a Receiver<()>,
    /// Bytes given back let the source read on.
    budget: &'a budget::ByteBudget,
    progress: &'a Progress,
    counts: Counts,
}

impl Writer<'_> {
    fn run(&mut self, rx: &Receiver<Item>, ordered: bool) -> std::io::Result<()> {
        let mut pending: BTreeMap<u64, Item> = BTreeMap::new();
        let mut next = 0u64;
        let mut since_flush = 0u64;
        while let Ok(item) = rx.recv() {
            if ordered {
                pending.insert(item.seq, item);
                while let Some(item) = pending.remove(&next) {
                    self.deliver(item)?;
                    next += 1;
                    since_flush += 1;
                }
            } else {
                self.deliver(item)?;
                since_flush += 1;
            }
            if since_flush > 0 && (rx.is_empty() || since_flush >= FLUSH_EVERY) {
                self.flush()?;
                since_flush = 0;
            }
        }
        // Items held back after a stop mid-run (their predecessors were abandoned): keep them.
        for (_, item) in pending {
            self.deliver(item)?;
        }
        Ok(())
    }

    fn deliver(&mut self, mut item: Item) -> std::io::Result<()> {
        let mut places = Vec::new();
        if item.failure.is_none() {
            self.write_outputs(&mut item, &mut places)?;
        }
        if let Some(failure) = &item.failure {
            self.counts.failed += 1;
            if failure.stage == "input" {
                self.counts.input_failed += 1;
            }
            (self.on_failure)(&item);
            for sink in &mut self.sinks {
                sink.failed(&item)?;
            }
            if let Some(dead) = self.dead_letters.as_mut() {
                dead.write(&item, &mut places)?;
            }
        } else {
            self.counts.written += 1;
        }
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.written(&item, places);
        }
        self.progress.written().inc(1);
        let _ = self.permits.try_recv();
        self.budget.give_back(item.weight);
        Ok(())
    }

    /// Writes a finished item to every output. An output that fails because of the item (a
    /// file name the file system refuses) makes it a failed item, and the outputs before it
    /// take it back, so no output holds a record of a failed item; the run goes on.
    fn write_outputs(&mut self, item: &mut Item, places: &mut Vec<Place>) -> std::io::Result<()> {
        for i in 0..self.sinks.len() {
            match self.sinks[i].write(item, places) {
                Ok(()) => {}
                Err(e) if crate::component::is_item_error(&e) => {
                    for sink in &mut self.sinks[..i] {
                        sink.undo()?;
                    }
                    places.clear();
                    item.fail("output", e.to_string());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Flushes every sink (its bytes reach the disk), then commits the flushed items to the
    /// ledger: a record is in the ledger only once its bytes are on disk.
    /// Every item is written and committed: outputs written whole are written now.
    fn finish(&mut self) -> std::io::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.finish())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sinks
            .iter_mut()
            .chain(self.dead_letters.as_mut())
            .try_for_each(|s| s.flush())?;
        let files: Vec<_> = (self.sinks.iter().chain(self.dead_letters.as_ref()))
            .flat_map(|s| s.appended())
            .collect();
        if let Some(ledger) = self.ledger.as_mut() {
            ledger
                .commit(&files)
                .map_err(|e| std::io::Error::other(format!("the run ledger: {e:#}")))?;
        }
        Ok(())
    }
}
