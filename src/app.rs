//! Turns a parsed command into work: loads the pipeline, opens outputs, runs, reports, and
//! decides the exit code. The only place that knows about exit codes and the terminal.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::cli::{Cli, Command, ModelsCommand, Order, RunArgs, When};
use crate::component::{Fence, Input, OpenContext, Sink};
use crate::config::{self, LoadError};
use crate::item::printable;
use crate::item::{Item, Provenance, sha256_hex};
use crate::ledger::shard::{self, Shard};
use crate::ledger::{Ledger, Priors, RunEnd, RunRow};
use crate::models::{self, Catalog, FileState, ModelStore};
use crate::options::{ComponentKind, Default, OptionSpec};
use crate::pipeline::report::{self, ItemCounts, PipelineInfo, RunReport};
use crate::pipeline::{self, Admit, Pipeline, RunOptions, Stop};
use crate::registry::{REPAIRS, SINKS, SOURCES, STAGES};
use crate::sinks;

pub const EXIT_OK: u8 = 0;
pub const EXIT_ITEMS_FAILED: u8 = 1;
/// Usage or configuration error, or a fatal error that stopped the run.
pub const EXIT_FATAL: u8 = 2;
/// Another run holds the output folder's lock (cron: try again later; EX_TEMPFAIL).
pub const EXIT_LOCKED: u8 = 75;
pub const EXIT_INTERRUPTED: u8 = 130;
/// The reader of stdout went away (`| head`): what a shell shows for a process that SIGPIPE
/// ended, without dying mid-write.
pub const EXIT_READER_GONE: u8 = 141;

/// After this many failed items, stderr gets a note instead of one line each.
const MAX_PRINTED_FAILURES: u64 = 50;

const DEFAULT_OUT: &str = "lai-out";

pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let store = |verify| -> anyhow::Result<ModelStore> {
        Ok(ModelStore {
            catalog: Catalog::load(cli.catalog.as_deref())?,
            dir: models::models_dir(cli.models_dir.as_deref()),
            verify,
        })
    };
    match cli.command {
        Command::Run(ref args) => run(args, store(!args.no_verify)?),
        Command::Check { ref pipelines } => Ok(check(pipelines)),
        Command::Ledger {
            ref out,
            failed,
            ref ids,
        } => ledger_command(out.as_deref(), failed, ids),
        Command::Merge { ref out } => merge(out),
        Command::Stages { ref name } => stages(name.as_deref()),
        Command::Models(ref command) => models_command(command, &store(true)?),
    }
}

fn load_or_report(path: &Path) -> Option<Pipeline> {
    match config::load(path) {
        Ok(p) => Some(p),
        Err(e) => {
            match &e {
                LoadError::Unreadable(_) => stderr_line!("error: {e}"),
                LoadError::Invalid(problems) => {
                    for p in problems {
                        stderr_line!("error: {p}");
                    }
                    stderr_line!(
                        "{}: {} problem{}; see `lai stages` for every key",
                        path.display(),
                        problems.len(),
                        if problems.len() == 1 { "" } else { "s" }
                    );
                }
            }
            None
        }
    }
}

fn check(paths: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in paths {
        match load_or_report(path) {
            Some(p) => {
                let stages: Vec<&str> = p.stages.iter().map(|s| s.label.as_str()).collect();
                print_out(&format!(
                    "ok: {} ({}: {} -> {} output{})\n",
                    path.display(),
                    p.name,
                    stages.join(" -> "),
                    p.outputs.len(),
                    if p.outputs.len() == 1 { "" } else { "s" }
                ));
            }
            None => ok = false,
        }
    }
    ExitCode::from(if ok { EXIT_OK } else { EXIT_FATAL })
}

fn run(args: &RunArgs, store: ModelStore) -> anyhow::Result<ExitCode> {
    let Some(pipeline) = load_or_report(&args.pipeline) else {
        return Ok(ExitCode::from(EXIT_FATAL));
    };
    let inputs = inputs(&args.inputs)?;
    // Every model is found and verified before any engine sees it.
    let mut names: Vec<String> = pipeline
        .stages
        .iter()
        .flat_map(|s| s.stage.models())
        .collect();
    names.sort();
    names.dedup();
    let models = names
        .iter()
        .map(|n| store.resolve(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started_at = SystemTime::now();
    let run_id = run_id(started_at);
    let provenance = Arc::new(Provenance {
        lai_version: env!("CARGO_PKG_VERSION"),
        pipeline_sha256: pipeline.sha256.clone(),
        models: models
            .iter()
            .map(|m| {
                let main = m
                    .file("model")
                    .or(m.files.first().map(|f| f.path.as_path()));
                let sha = m
                    .files
                    .iter()
                    .find(|f| Some(f.path.as_path()) == main)
                    .map_or(String::new(), |f| f.sha256.clone());
                (m.name.clone(), sha)
            })
            .collect(),
    });
    // The resume key: what the pipeline does and with which exact model files.
    let all_files: Vec<String> = models
        .iter()
        .flat_map(|m| {
            m.files
                .iter()
                .map(move |f| format!("model {} {}", m.name, f.sha256))
        })
        .collect();
    let config_sha256 =
        sha256_hex(format!("{}\n{}", pipeline.config, all_files.join("\n")).as_bytes());
    let shard = match &args.shard {
        Some(text) => Some(Shard::parse(text)?),
        None => Shard::from_env(&|name| std::env::var(name).ok())?,
    };
    let from_stdin = inputs.iter().any(|i| matches!(i, Input::Stdin));
    // A filter: `-` in, records out on stdout, nothing written to files.
    let filter = from_stdin && args.out.is_none();
    if filter && (args.fresh || args.retry_failed) {
        bail!("--fresh and --retry-failed need an output folder (--out): a filter keeps no ledger");
    }
    let mut out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    if let Some(shard) = &shard {
        out_dir = shard.dir(&out_dir);
    }
    // Inputs and outputs never meet: an input that is an output is refused before anything is
    // opened, and a walk passes over the outputs inside its folder.
    let inputs = if filter {
        inputs
    } else {
        let planned = OpenContext {
            out_dir: out_dir.clone(),
            provenance: Arc::clone(&provenance),
            resume: std::collections::HashMap::new(),
        };
        let mut writes = vec![out_dir.clone(), planned.resolve(&pipeline.dead_letter)];
        writes.extend(pipeline.outputs.iter().flat_map(|o| o.writes(&planned)));
        writes.extend(args.report.clone());
        Fence::new(writes).apply(inputs)?
    };

    // The output folder: one run at a time, repaired after a crash, earlier results known.
    let mut _lock = None;
    let mut ledger = None;
    let mut priors = Priors::default();
    let mut resume = std::collections::HashMap::new();
    if !filter {
        let Some(lock) = crate::ledger::lock(&out_dir)? else {
            stderr_line!(
                "error: another lai run is using {} (its lock file {} is held); this run did nothing. Wait for it to finish, or give another --out",
                out_dir.display(),
                out_dir.join(crate::ledger::LOCK).display()
            );
            return Ok(ExitCode::from(EXIT_LOCKED));
        };
        _lock = Some(lock);
        let mut l = Ledger::open(&out_dir, REPAIRS)?;
        let cut = l.repair()?;
        if cut > 0 && !args.quiet {
            stderr_line!("note: cut {cut} bytes of unfinished records left by an interrupted run");
        }
        l.begin_run(&RunRow {
            run_id: &run_id,
            name: &pipeline.name,
            pipeline: &pipeline.path.display().to_string(),
            pipeline_sha256: &pipeline.sha256,
            config_sha256: &config_sha256,
            models: serde_json::to_string(&provenance.models)?,
            shard: shard.map(|s| s.label()),
            started_at: &crate::item::timestamp(started_at),
        })?;
        if args.fresh {
            l.forget_all()?;
        }
        l.compact()?;
        resume = l.resume()?;
        priors = l.priors()?;
        ledger = Some(l);
    }
    let ctx = OpenContext {
        out_dir: out_dir.clone(),
        provenance: Arc::clone(&provenance),
        resume,
    };
    type Outputs = (Vec<Box<dyn Sink>>, Option<Box<dyn Sink>>);
    let (outputs, dead_letters): Outputs = if filter {
        let records = sinks::jsonl::Writes::Records(Vec::new(), Arc::clone(&provenance));
        let stdout = sinks::jsonl::stdout(records);
        (vec![Box::new(stdout)], None)
    } else {
        let outputs = pipeline
            .outputs
            .iter()
            .map(|o| o.open(&ctx))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dead = ctx.resolve(&pipeline.dead_letter);
        (outputs, Some(sinks::jsonl::dead_letters(&ctx, &dead)?))
    };
    let targets: Vec<String> = outputs.iter().map(|o| o.target()).collect();
    let dead_target = dead_letters.as_ref().map(|d| d.target());
    if let Some(shard) = &shard
        && let Some(outside) = targets
            .iter()
            .chain(&dead_target)
            .find(|t| *t != "stdout" && !Path::new(t).starts_with(&out_dir))
    {
        bail!(
            "shard {}: output {outside} is outside the shard's folder {}; in a sharded run every output path must start with {{out}}",
            shard.label(),
            out_dir.display()
        );
    }

    // Intake: items done before are skipped (another shard's items never get here).
    let skipped_failed = AtomicU64::new(0);
    let same_as = std::sync::Mutex::new(Vec::new());
    let admit = |item: &Item| -> Admit {
        let prior = priors.get(&item.id);
        if args.retry_failed {
            return if prior.is_some_and(|p| !p.done) {
                Admit::Process
            } else {
                Admit::Skip
            };
        }
        // An input that could not be read (or repeats an id) is reported on every run.
        if item.failure.is_some() {
            return Admit::Process;
        }
        match prior {
            Some(p) if p.input_sha256 == item.input_sha256 && p.config_sha256 == config_sha256 => {
                if !p.done {
                    skipped_failed.fetch_add(1, Ordering::Relaxed);
                }
                Admit::Skip
            }
            _ => {
                // A renamed file: the same bytes were done under a name that is gone.
                let renamed = || {
                    priors
                        .done_copies(&item.input_sha256, &config_sha256)
                        .into_iter()
                        .find(|(id, origin)| *id != item.id && !Path::new(origin).exists())
                };
                if item.rel_path.is_some()
                    && item.failure.is_none()
                    && let Some((id, _)) = renamed()
                {
                    let copy = Item::hashed(
                        item.id.clone(),
                        item.origin.clone(),
                        item.input_sha256.clone(),
                        serde_json::Map::new(),
                    );
                    same_as
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((copy, id));
                    return Admit::Skip;
                }
                Admit::Process
            }
        }
    };

    let stop = Stop::new();
    install_signal_handler(&stop, args.quiet);
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    let ordered = args.order == Order::Input;
    let progress = match args.progress {
        When::Always => true,
        When::Never => false,
        When::Auto => !args.quiet && std::io::stderr().is_terminal(),
    };
    let options = RunOptions {
        jobs,
        models: &models,
        ordered,
        progress,
        shard,
        admit: &admit,
    };

    let printed = AtomicU64::new(0);
    let on_failure = |item: &Item| {
        let n = printed.fetch_add(1, Ordering::Relaxed);
        if let (Some(f), true) = (&item.failure, n < MAX_PRINTED_FAILURES) {
            stderr_line!(
                "error: {}: {}: {}",
                printable(&item.origin),
                f.stage,
                printable(&f.reason)
            );
        } else if n == MAX_PRINTED_FAILURES {
            stderr_line!("error: more items failed; see the dead letters for all of them");
        }
    };

    let outcome = pipeline::run(
        &pipeline,
        inputs,
        outputs,
        dead_letters,
        ledger.as_mut(),
        &options,
        &stop,
        &on_failure,
    );

    // Items that failed in an earlier run and were not retried are still failures.
    let failed_before = skipped_failed.into_inner();
    let exit = if outcome.fatal.is_some() {
        EXIT_FATAL
    } else if outcome.reader_gone {
        EXIT_READER_GONE
    } else if outcome.interrupted {
        EXIT_INTERRUPTED
    } else if outcome.failed + failed_before > 0 {
        EXIT_ITEMS_FAILED
    } else {
        EXIT_OK
    };
    let finished_at = crate::item::timestamp(SystemTime::now());
    if let Some(ledger) = ledger.as_mut() {
        let same_as = same_as.into_inner().unwrap_or_else(|p| p.into_inner());
        for (item, id) in &same_as {
            ledger.same_as(item, id);
        }
        ledger.commit(&[])?;
        // Records of items processed again (changed input, prompt or model) leave the files.
        ledger.compact()?;
        if ledger.duplicate_ids > 0 {
            stderr_line!(
                "warning: {} items had the id of an earlier item of this run; each id keeps only its last result in the outputs. Give every record a unique `id`",
                ledger.duplicate_ids
            );
        }
        ledger.end_run(&RunEnd {
            finished_at: finished_at.clone(),
            exit_code: i32::from(exit),
            read: outcome.read,
            done: outcome.written,
            failed: outcome.failed,
            skipped: outcome.skipped,
        })?;
    }
    let report = RunReport {
        lai_version: env!("CARGO_PKG_VERSION"),
        run_id: run_id.clone(),
        pipeline: PipelineInfo {
            path: pipeline.path.display().to_string(),
            name: pipeline.name.clone(),
            description: pipeline.description.clone(),
            sha256: pipeline.sha256.clone(),
        },
        started_at: crate::item::timestamp(started_at),
        finished_at,
        elapsed_s: outcome.elapsed.as_secs_f64(),
        exit_code: i32::from(exit),
        interrupted: outcome.interrupted,
        fatal_error: outcome.fatal.as_ref().map(|e| format!("{e:#}")),
        jobs,
        ordered,
        models_verified: store.verify && models.iter().all(|m| m.verified),
        models,
        peak_rss_bytes: report::peak_rss_bytes(),
        inputs: args
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        items: ItemCounts::from(&outcome),
        stages: report::stage_reports(&outcome),
        gpu: crate::pipeline::gpu::report(),
        outputs: targets,
        dead_letter: dead_target,
    };
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    if let Some(e) = &outcome.fatal {
        stderr_line!("error: {e:#}");
    }
    if !args.quiet {
        if outcome.read == 0 && outcome.fatal.is_none() && !outcome.interrupted {
            stderr_line!(
                "warning: no items found in the inputs; check the paths and `glob` in [input]"
            );
        }
        stderr_line!("{}", report.summary_table());
        if failed_before > 0 {
            stderr_line!(
                "skipped {} items done by earlier runs and {failed_before} that failed in them (`lai ledger --failed` lists them, --retry-failed retries them)",
                outcome.skipped - failed_before,
            );
        } else if outcome.skipped > 0 {
            stderr_line!(
                "skipped {} items done by earlier runs (--fresh redoes everything)",
                outcome.skipped
            );
        }
    }
    Ok(ExitCode::from(exit))
}

/// Checks the command-line inputs before anything starts: each must exist.
fn inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let stdin_count = paths.iter().filter(|p| p.as_os_str() == "-").count();
    if stdin_count > 1 {
        bail!("`-` (stdin) can be given only once");
    }
    paths
        .iter()
        .map(|p| {
            if p.as_os_str() == "-" {
                Ok(Input::Stdin)
            } else if p.exists() {
                Ok(Input::Path(p.clone(), Fence::none()))
            } else {
                bail!(
                    "input not found: {}; give existing files or folders, or `-` for stdin",
                    printable(&p.display().to_string())
                )
            }
        })
        .collect()
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn install_signal_handler(stop: &Arc<Stop>, quiet: bool) {
    let stop = Arc::clone(stop);
    let result = ctrlc::set_handler(move || {
        if stop.request() {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        if !quiet {
            stderr_line!("\nstopping: finishing items in flight (press Ctrl-C again to quit now)");
        }
    });
    if let Err(e) = result {
        stderr_line!("warning: cannot handle Ctrl-C/SIGTERM gracefully: {e}");
    }
}

fn run_id(started: SystemTime) -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let secs = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("{secs}-{}", hex::encode(random))
}

fn write_report(path: &Path, report: &RunReport) -> anyhow::Result<()> {
    crate::component::create_parent(path)?;
    let text = serde_json::to_string_pretty(report).context("serializing the run report")?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the run report to {}", path.display()))
}

fn merge(out: &Path) -> anyhow::Result<ExitCode> {
    let Some(_lock) = crate::ledger::lock(out)? else {
        stderr_line!(
            "error: another lai run is using {}; merge when it has finished",
            out.display()
        );
        return Ok(ExitCode::from(EXIT_LOCKED));
    };
    let merged = shard::merge(out, REPAIRS)?;
    print_out(&format!(
        "merged {} shards into {}: {} items done, {} failed\n",
        merged.shards,
        out.display(),
        merged.done,
        merged.failed
    ));
    Ok(ExitCode::from(EXIT_OK))
}

fn ledger_command(out: Option<&Path>, failed: bool, ids: &[String]) -> anyhow::Result<ExitCode> {
    let out = out.unwrap_or(Path::new(DEFAULT_OUT));
    if !out.join(crate::ledger::FILE).exists() {
        bail!(
            "no run ledger in {}; give the output folder of a run with -o",
            out.display()
        );
    }
    let text = if failed {
        crate::ledger::views::show_failed(out)?
    } else if ids.is_empty() {
        crate::ledger::views::show_runs(out)?
    } else {
        crate::ledger::views::show_items(out, ids)?
    };
    print_out(&text);
    Ok(ExitCode::from(EXIT_OK))
}

fn stages(name: Option<&str>) -> anyhow::Result<ExitCode> {
    let sections: [(&str, Vec<KindDoc>); 3] = [
        ("Stages ([[stage]] use = \"...\")", describe(STAGES)),
        ("Inputs ([input] kind = \"...\")", describe(SOURCES)),
        ("Outputs ([[output]] kind = \"...\")", describe(SINKS)),
    ];
    let mut shown = 0;
    let mut out = String::new();
    for (title, kinds) in &sections {
        let kinds: Vec<_> = kinds
            .iter()
            .filter(|k| name.is_none_or(|n| n == k.0))
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}\n");
        for (kind, doc, options) in kinds {
            shown += 1;
            let _ = writeln!(out, "{kind}\n    {doc}\n");
            for o in *options {
                let default = match o.default {
                    Default::Required => "(required)".to_string(),
                    Default::Unset => "(unset)".to_string(),
                    Default::Value(v) => v.to_string(),
                };
                let _ = writeln!(
                    out,
                    "    {:<16} {}\n    {:<16} default: {default}\n    {:<16} {}\n",
                    o.name, o.ty, "", "", o.doc
                );
            }
        }
    }
    print_out(&out);
    if shown == 0 {
        bail!(
            "no stage, input or output kind named `{}`; run `lai stages` for the list",
            name.unwrap_or_default()
        );
    }
    Ok(ExitCode::from(EXIT_OK))
}

/// Writes to stdout; a closed pipe (`lai stages | head`) is a normal end, not an error.
fn print_out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A component kind's name, docs and options, for `lai stages`.
type KindDoc = (&'static str, &'static str, &'static [OptionSpec]);

fn describe<T: ?Sized>(kinds: &'static [ComponentKind<T>]) -> Vec<KindDoc> {
    kinds.iter().map(|k| (k.name, k.doc, k.options)).collect()
}

fn models_command(command: &ModelsCommand, store: &ModelStore) -> anyhow::Result<ExitCode> {
    let mut out = format!(
        "models directory: {} (catalog: {})\n",
        store.dir.display(),
        store.catalog.source
    );
    let ok = match command {
        ModelsCommand::List => {
            let _ = writeln!(
                out,
                "\n{:<24} {:<8} {:>9}  {:<12} status",
                "name", "engine", "size", "licence"
            );
            for m in &store.catalog.models {
                let states = m
                    .file
                    .iter()
                    .map(|f| models::check_file(&store.dir, f))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let status = states
                    .iter()
                    .find(|s| !matches!(s, FileState::Ok))
                    .map_or("ok".to_string(), |s| s.to_string());
                let _ = writeln!(
                    out,
                    "{:<24} {:<8} {:>7.1}MB  {:<12} {status}\n    {}",
                    m.name,
                    m.engine,
                    m.size() as f64 / 1e6,
                    m.license,
                    m.description
                );
            }
            let credits: Vec<String> = store
                .catalog
                .models
                .iter()
                .filter_map(|m| Some(format!("  {}: {}", m.name, m.attribution.as_ref()?)))
                .collect();
            if !credits.is_empty() {
                let _ = writeln!(out, "\nAttribution:\n{}", credits.join("\n"));
            }
            true
        }
        ModelsCommand::Verify { names } => {
            let mut all_ok = true;
            for m in store.catalog.select(names)? {
                for f in &m.file {
                    let state = models::check_file(&store.dir, f)?;
                    all_ok &= state.is_usable();
                    let detail = match &state {
                        FileState::WrongHash { actual } => {
                            format!(": sha256 {actual}, expected {}", f.sha256)
                        }
                        FileState::WrongSize { actual } => {
                            format!(": {actual} bytes, expected {}", f.size)
                        }
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "{:<24} {:<10} {}{detail}",
                        m.name,
                        state.to_string(),
                        f.path
                    );
                }
            }
            if !all_ok {
                let _ = writeln!(
                    out,
                    "\nsome models are missing or corrupt: fetch them with `lai models pull NAME` or `scripts/fetch-models.py NAME`"
                );
            }
            all_ok
        }
        ModelsCommand::Pull { names, mirror } => {
            print_out(&out);
            out.clear();
            pull(store, names, mirror.as_deref())?
        }
    };
    print_out(&out);
    Ok(ExitCode::from(if ok { EXIT_OK } else { EXIT_ITEMS_FAILED }))
}

/// Downloads every missing or corrupt file of the named models; true if all are now intact.
fn pull(store: &ModelStore, names: &[String], mirror: Option<&str>) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for m in store.catalog.select(names)? {
        for f in &m.file {
            if models::check_file(&store.dir, f)? == FileState::Ok {
                stdout_line!("{:<24} present   {}", m.name, f.path);
                continue;
            }
            let Some(url) = models::pull::source_url(f, mirror) else {
                stderr_line!(
                    "error: {}: no download address for {}; prepare it with `scripts/fetch-models.py {}` or give --mirror URL",
                    m.name,
                    f.path,
                    m.name
                );
                all_ok = false;
                continue;
            };
            let bar = indicatif::ProgressBar::new(f.size);
            if !std::io::stderr().is_terminal() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let result = models::pull::pull_file(&url, &store.dir.join(&f.path), f, &|done, _| {
                bar.set_position(done)
            });
            bar.finish_and_clear();
            match result {
                Ok(()) => stdout_line!("{:<24} pulled    {} (sha256 ok)", m.name, f.path),
                Err(e) => {
                    stderr_line!("error: {}: {e:#}", m.name);
                    all_ok = false;
                }
            }
        }
    }
    Ok(all_ok)
}
