//! Turns a parsed command into work: loads the pipeline, opens outputs, runs, reports, and
//! decides the exit code. The only place that knows about exit codes and the terminal.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{Context, anyhow, bail};

use crate::cli::{Cli, Command, Engine, ModelsCommand, Order, RunArgs, When};
use crate::component::{Fence, Input, OpenContext, resolve};
use crate::config::{self, LoadError};
use crate::confine;
use crate::item::{Item, Provenance, printable, timestamp};
use crate::ledger::resume::{self, Admit, Folder};
use crate::ledger::shard::{self, Shard};
use crate::ledger::{RunEnd, RunRow};
use crate::models::{self, Catalog, FileState, ModelStore, ResolvedModel};
use crate::options::{ComponentKind, Default, OptionSpec};
use crate::pipeline::cost::{EnergyStart, Prices};
use crate::pipeline::report::{RunFacts, RunReport};
use crate::pipeline::{self, Pipeline, RunOptions, Stop};
use crate::sinks::{Outputs, REPAIRS, SINKS};
use crate::sources::SOURCES;
use crate::stages::STAGES;
use crate::stages::redact::vault::{self, KeySource, Keys};

/// How lai ends, for cron and scripts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Exit {
    Ok = 0,
    ItemsFailed = 1,
    /// Usage or configuration error, or a fatal error that stopped the run.
    Fatal = 2,
    /// Another run holds the output folder's lock (cron: try again later; EX_TEMPFAIL).
    Locked = 75,
    Interrupted = 130,
    /// The reader of stdout went away (`| head`): what a shell shows for a process that
    /// SIGPIPE ended, without dying mid-write.
    ReaderGone = 141,
}

impl Exit {
    /// A run's exit: its worst event, counting items that failed in earlier runs and were
    /// not retried as failures still.
    fn of(outcome: &pipeline::Outcome, failed_before: u64) -> Exit {
        if outcome.fatal.is_some() {
            Exit::Fatal
        } else if outcome.reader_gone {
            Exit::ReaderGone
        } else if outcome.interrupted {
            Exit::Interrupted
        } else if outcome.failed + failed_before > 0 {
            Exit::ItemsFailed
        } else {
            Exit::Ok
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

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
        Command::Check { ref pipelines } => Ok(check(pipelines, &store(false)?)),
        Command::Ledger {
            ref out,
            failed,
            cost,
            ref ids,
        } => ledger_command(out.as_deref(), failed, cost, ids),
        Command::Merge { ref out } => merge(out),
        Command::Reveal {
            ref out,
            ref vault,
            ref key,
            ref text,
            ref pseudonyms,
        } => reveal(out.as_deref(), vault, key, text.as_deref(), pseudonyms),
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

fn check(paths: &[PathBuf], store: &ModelStore) -> ExitCode {
    let mut ok = true;
    for path in paths {
        match load_or_report(path) {
            Some(p) => {
                // The models that are here are checked against the options; the others when a
                // run resolves them.
                let here: Vec<_> = p
                    .models()
                    .iter()
                    .filter_map(|m| store.resolve(m).ok())
                    .collect();
                let problems = match models::read_facts(&here) {
                    Ok(facts) => p.check_models(&facts),
                    Err(e) => vec![format!("{e:#}")],
                };
                if !problems.is_empty() {
                    for problem in &problems {
                        stderr_line!("error: {}: {problem}", path.display());
                    }
                    ok = false;
                    continue;
                }
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
    (if ok { Exit::Ok } else { Exit::Fatal }).into()
}

/// `lai run`: the pipeline loaded and its models verified, the output folder opened, the
/// run, then the ledger closed and the report written.
fn run(args: &RunArgs, store: ModelStore) -> anyhow::Result<ExitCode> {
    let energy = EnergyStart::now();
    let Some(pipeline) = load_or_report(&args.pipeline) else {
        return Ok(Exit::Fatal.into());
    };
    let prices = prices(args)?;
    let mode = match (args.no_confine, pipeline.confine_required) {
        (true, true) => bail!(
            "{} requires confinement (`confine = \"required\"`); drop --no-confine, or set `confine = \"auto\"` in the pipeline",
            args.pipeline.display()
        ),
        (true, false) => confine::Mode::Off,
        (false, true) => confine::Mode::Required,
        (false, false) => confine::Mode::Auto,
    };
    if mode == confine::Mode::Required {
        // Before anything is opened: a kernel that cannot confine files and TCP ports.
        confine::check_required()?;
    }
    let inputs = inputs(&args.inputs)?;
    // Every model is found and verified before any engine sees it.
    let models = store.resolve_all(pipeline.models())?;
    let problems = pipeline.check_models(&models::read_facts(&models)?);
    if !problems.is_empty() {
        for problem in &problems {
            stderr_line!("error: {}: {problem}", args.pipeline.display());
        }
        return Ok(Exit::Fatal.into());
    }
    pipeline.prepare()?;
    let started_at = SystemTime::now();
    let run_id = run_id(started_at);
    let provenance = Arc::new(Provenance::new(
        &pipeline.sha256,
        models.iter().map(|m| (m.name.clone(), m.main_sha256())),
    ));
    let shard = shard(args)?;
    // A filter: `-` in, records out on stdout, nothing written to files.
    let filter = inputs.iter().any(|i| matches!(i, Input::Stdin)) && args.out.is_none();
    if filter && (args.fresh || args.retry_failed) {
        bail!("--fresh and --retry-failed need an output folder (--out): a filter keeps no ledger");
    }
    if let Some(file) = pipeline
        .stage_writes()
        .iter()
        .find(|t| filter && t.contains("{out}"))
    {
        bail!(
            "a stage writes {file}, and a filter (`-` without --out) has no output folder; give --out DIR, or the stage a path of its own"
        );
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    let out_dir = shard.map_or(out_dir.clone(), |s| s.dir(&out_dir));
    let row = RunRow {
        run_id: &run_id,
        name: &pipeline.name,
        pipeline: &pipeline.path.display().to_string(),
        pipeline_sha256: &pipeline.sha256,
        config_sha256: &resume::key(&pipeline.config, &models),
        models: serde_json::to_string(&provenance.models)?,
        shard: shard.map(|s| s.label()),
        started_at: &timestamp(started_at),
    };
    let ctx = OpenContext::new(out_dir.clone(), Arc::clone(&provenance));
    let Some((inputs, mut folder, outputs)) =
        open_outputs(args, &pipeline, ctx, inputs, !filter, &row)?
    else {
        return Ok(Exit::Locked.into());
    };
    let mut targets = outputs.targets();
    // Files the stages write themselves (a redaction vault) are listed with the outputs.
    let stage_writes = pipeline.stage_writes().into_iter();
    targets
        .0
        .extend(stage_writes.map(|t| resolve(&t, &out_dir).display().to_string()));
    if let Some(shard) = &shard {
        shard.check_outputs(targets.0.iter().chain(&targets.1), &out_dir)?;
    }
    // The report is opened now, while the run may still create files anywhere.
    let report_file = args.report.as_deref().map(open_report).transpose()?;

    // From here on the kernel holds the run to what it declared; no thread was started before.
    let temp = (mode != confine::Mode::Off)
        .then(|| confine::PrivateTemp::create(&run_id))
        .transpose()?;
    let mut policy = confinement_policy(args, &pipeline, &models, &inputs, &out_dir, &targets);
    if let Some(temp) = &temp {
        policy.write.push(temp.path().to_path_buf());
        policy
            .remove_dirs
            .extend(temp.parent().map(Path::to_path_buf));
    }
    let confinement = confine::apply(&policy, mode)?;
    if !args.quiet {
        for warning in &confinement.warnings {
            stderr_line!("warning: {warning}");
        }
    }
    if let Some(folder) = folder.as_mut() {
        folder
            .ledger
            .record_confinement(&serde_json::to_string(&confinement)?)?;
    }

    let stop = Stop::new();
    install_signal_handler(&stop, args.quiet);
    let (ledger, policy) = folder.as_mut().map(Folder::split).unzip();
    let admit = |item: &Item| policy.map_or(Admit::Process, |p| p.admit(item));
    let options = run_options(args, &models, &out_dir, shard, &admit);
    let (jobs, ordered) = (options.jobs, options.ordered);
    let outcome = pipeline::run(pipeline::Run {
        pipeline: &pipeline,
        inputs,
        sinks: outputs.sinks,
        dead_letters: outputs.dead_letters,
        ledger,
        options,
        stop: &stop,
        on_failure: &print_failure(),
    });

    // Items that failed in an earlier run and were not retried are still failures.
    let failed_before = folder.as_ref().map_or(0, Folder::failed_before);
    let exit = Exit::of(&outcome, failed_before);
    let finished_at = timestamp(SystemTime::now());
    let facts = RunFacts {
        run_id: &run_id,
        pipeline: &pipeline,
        started_at,
        finished_at: finished_at.clone(),
        exit_code: exit as u8,
        jobs,
        ordered,
        models,
        verify: store.verify,
        inputs: &args.inputs,
        outputs: targets,
        confinement,
        prices: &prices,
        energy: &energy,
    };
    let report = RunReport::new(facts, &outcome);
    if let Some(folder) = folder {
        let cost = serde_json::to_string(&report.cost)?;
        close_folder(folder, exit, &outcome, &finished_at, cost)?;
    }
    if let (Some(path), Some(file)) = (&args.report, report_file) {
        write_report(path, file, &report)?;
    }
    print_summary(args.quiet, &outcome, &report, failed_before);
    Ok(exit.into())
}

/// The site's prices: `[cost]` of the `--cost` file, then each `--price KEY=VALUE`.
fn prices(args: &RunArgs) -> anyhow::Result<Prices> {
    let mut prices = match &args.cost {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the cost file {}", path.display()))?;
            Prices::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        None => Prices::default(),
    };
    for assignment in &args.price {
        prices.set(assignment).map_err(|e| anyhow!(e))?;
    }
    Ok(prices)
}

/// `--shard K/N`, else the shard a Kubernetes indexed job or a Slurm array gives.
fn shard(args: &RunArgs) -> anyhow::Result<Option<Shard>> {
    match &args.shard {
        Some(text) => Ok(Some(Shard::parse(text)?)),
        None => Shard::from_env(&|name| std::env::var(name).ok()),
    }
}

/// A run's inputs fenced off from its outputs, its output folder (none for a filter), and its
/// outputs, opened.
type Opened = (Vec<Input>, Option<Folder>, Outputs);

/// Opens the run's outputs: for a filter, stdout alone; else the output folder (locked,
/// repaired, earlier results known, the run `row` begun) and every output in it, with the
/// inputs fenced off from everything the run writes. `None` (after saying so) when another run
/// holds the folder.
fn open_outputs(
    args: &RunArgs,
    pipeline: &Pipeline,
    mut ctx: OpenContext,
    inputs: Vec<Input>,
    in_folder: bool,
    row: &RunRow,
) -> anyhow::Result<Option<Opened>> {
    if !in_folder {
        return Ok(Some((inputs, None, Outputs::stdout(ctx.provenance))));
    }
    // Inputs and outputs never meet: an input that is an output is refused before anything is
    // opened, and a walk passes over the outputs inside its folder.
    let mut writes = Outputs::planned(&pipeline.outputs, &pipeline.dead_letter, &ctx);
    writes.extend(pipeline.stage_writes().iter().map(|t| ctx.resolve(t)));
    writes.extend(args.report.clone());
    let inputs = Fence::new(writes).apply(inputs)?;
    let out_dir = &ctx.out_dir;
    let Some(folder) = Folder::open(out_dir, REPAIRS, row, args.fresh, args.retry_failed)? else {
        stderr_line!(
            "error: another lai run is using {} (its lock file {} is held); this run did nothing. Wait for it to finish, or give another --out",
            out_dir.display(),
            out_dir.join(crate::ledger::LOCK).display()
        );
        return Ok(None);
    };
    if folder.cut > 0 && !args.quiet {
        stderr_line!(
            "note: cut {} bytes of unfinished records left by an interrupted run",
            folder.cut
        );
    }
    ctx.resume = folder.resume.clone();
    let outputs = Outputs::open(&pipeline.outputs, &pipeline.dead_letter, &ctx)?;
    Ok(Some((inputs, Some(folder), outputs)))
}

/// The runtime's settings from the command line.
fn run_options<'a>(
    args: &RunArgs,
    models: &'a [ResolvedModel],
    out_dir: &'a Path,
    shard: Option<Shard>,
    admit: &'a (dyn Fn(&Item) -> Admit + Sync),
) -> RunOptions<'a> {
    RunOptions {
        jobs: args.jobs.unwrap_or_else(default_jobs).max(1),
        models,
        out_dir,
        ordered: args.order == Order::Input,
        progress: match args.progress {
            When::Always => true,
            When::Never => false,
            When::Auto => !args.quiet && std::io::stderr().is_terminal(),
        },
        shard,
        admit,
    }
}

/// Ends the run in the output folder's ledger.
fn close_folder(
    folder: Folder,
    exit: Exit,
    outcome: &pipeline::Outcome,
    finished_at: &str,
    cost: String,
) -> anyhow::Result<()> {
    let duplicates = folder.finish(&RunEnd {
        cost,
        finished_at: finished_at.to_string(),
        exit_code: i32::from(exit as u8),
        read: outcome.read,
        done: outcome.written,
        failed: outcome.failed,
        skipped: outcome.skipped,
    })?;
    if duplicates > 0 {
        stderr_line!(
            "warning: {duplicates} items had the id of an earlier item of this run; each id keeps only its last result in the outputs. Give every record a unique `id`"
        );
    }
    Ok(())
}

/// Prints a failed item's origin, stage and reason (never its content), up to a limit.
fn print_failure() -> impl Fn(&Item) + Sync {
    let printed = AtomicU64::new(0);
    move |item: &Item| {
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
    }
}

/// The end of a run on stderr: a fatal error, the summary table and what was skipped.
fn print_summary(quiet: bool, outcome: &pipeline::Outcome, report: &RunReport, failed_before: u64) {
    if let Some(e) = &outcome.fatal {
        stderr_line!("error: {e:#}");
    }
    if quiet {
        return;
    }
    if outcome.read == 0 && outcome.fatal.is_none() && !outcome.interrupted {
        stderr_line!(
            "warning: no items found in the inputs; check the paths and `glob` in [input]"
        );
    }
    stderr_line!("{}", report.summary_table());
    stderr_line!("{}", report.confinement.summary());
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
            std::process::exit(Exit::Interrupted as i32);
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

/// Creates (or empties) the run report's file.
fn open_report(path: &Path) -> anyhow::Result<std::fs::File> {
    crate::component::create_parent(path)?;
    std::fs::File::create(path)
        .with_context(|| format!("cannot write the run report to {}", path.display()))
}

fn write_report(path: &Path, mut file: std::fs::File, report: &RunReport) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report).context("serializing the run report")?;
    file.write_all((text + "\n").as_bytes())
        .with_context(|| format!("cannot write the run report to {}", path.display()))
}

/// What a started run may still touch (see `confine`): its inputs, the pipeline file, its
/// models' folders and the system's libraries and files to read; its output folder, the
/// folders of outputs written elsewhere and the report to write (and the run's own temp folder,
/// which the caller adds).
fn confinement_policy(
    args: &RunArgs,
    pipeline: &Pipeline,
    models: &[ResolvedModel],
    inputs: &[Input],
    out_dir: &Path,
    targets: &(Vec<String>, Option<String>),
) -> confine::Policy {
    let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
    let input_paths: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Path(p, _) => Some(p.clone()),
            Input::Stdin => None,
        })
        .collect();
    let mut read = paths(&[
        "/usr",
        "/lib",
        "/lib32",
        "/lib64",
        "/bin",
        "/opt",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/localtime",
        "/etc/ssl",
        "/etc/pki",
        "/etc/ca-certificates",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/nsswitch.conf",
        "/etc/gai.conf",
        "/etc/host.conf",
        "/proc/self",
        "/proc/cpuinfo",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/sys",
        "/sys",
        "/dev/zero",
        "/dev/urandom",
        "/dev/random",
    ]);
    read.push(pipeline.path.clone());
    read.extend(input_paths.iter().cloned());
    // A model's folder: engines read files beside the model (tokenizer, configuration).
    let model_dirs = models.iter().flat_map(|m| &m.files);
    read.extend(model_dirs.filter_map(|f| f.path.parent().map(Path::to_path_buf)));
    // Libraries loaded later (ONNX Runtime, ggml's backends) come from where the binary is or
    // from where its libraries were mapped from.
    read.extend(
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf)),
    );
    read.extend(mapped_library_dirs());
    if let Some(dirs) = std::env::var_os("LD_LIBRARY_PATH") {
        read.extend(std::env::split_paths(&dirs));
    }

    let mut write = vec![out_dir.to_path_buf(), "/dev/null".into()];
    // Outputs placed outside the output folder: a folder (per-item files) as it is; a file by
    // its folder, where compaction replaces it. Folders are made now, as a confined run could
    // not make them.
    let out_dir = std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf());
    let elsewhere = targets.0.iter().chain(&targets.1).map(PathBuf::from);
    let stage_writes = pipeline.stage_writes();
    for target in elsewhere.chain(stage_writes.iter().map(|t| resolve(t, &out_dir))) {
        let target = std::path::absolute(&target).unwrap_or(target);
        if target.starts_with(&out_dir) {
            continue;
        }
        let folder = if target.is_dir() {
            Some(target.as_path())
        } else {
            target.parent()
        };
        if let Some(folder) = folder {
            let _ = std::fs::create_dir_all(folder);
            write.push(folder.to_path_buf());
        }
    }
    write.extend(args.report.clone());
    // GPUs are driven through their device files.
    if let Ok(dev) = std::fs::read_dir("/dev") {
        let gpu = |name: &str| name.starts_with("nvidia") || name == "dri";
        write.extend(
            dev.flatten()
                .filter(|e| gpu(&e.file_name().to_string_lossy()))
                .map(|e| e.path()),
        );
    }

    let mut probe_in: Vec<PathBuf> = input_paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent().map_or(p.clone(), Path::to_path_buf)
            }
        })
        .collect();
    probe_in.extend(pipeline.path.parent().map(Path::to_path_buf));
    let absolute = |list: Vec<PathBuf>| -> Vec<PathBuf> {
        let mut list: Vec<PathBuf> = list
            .into_iter()
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect();
        list.sort();
        list.dedup();
        list
    };
    let mut connect: Vec<u16> = pipeline.connects().iter().map(|a| a.port()).collect();
    connect.sort_unstable();
    connect.dedup();
    let egress = pipeline.egress().into_iter().map(|(label, e)| {
        let how = e
            .allow_unredacted
            .map_or("redacted before".to_string(), |why| {
                format!("UNREDACTED (allow_unredacted: {why})")
            });
        format!(
            "{label} sends `{}` to {}: {how}",
            e.fields.join("`, `"),
            e.endpoint
        )
    });
    confine::Policy {
        read: absolute(read),
        write: absolute(write),
        remove_dirs: Vec::new(),
        connect,
        egress: egress.collect(),
        probe_in: probe_in
            .into_iter()
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect(),
    }
}

/// Folders of the shared libraries this process has mapped.
fn mapped_library_dirs() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .filter_map(|path| Path::new(path).parent().map(Path::to_path_buf))
        .collect()
}

fn merge(out: &Path) -> anyhow::Result<ExitCode> {
    let Some(_lock) = crate::ledger::lock(out)? else {
        stderr_line!(
            "error: another lai run is using {}; merge when it has finished",
            out.display()
        );
        return Ok(Exit::Locked.into());
    };
    let merged = shard::merge(out, REPAIRS)?;
    print_out(&format!(
        "merged {} shards into {}: {} items done, {} failed\n",
        merged.shards,
        out.display(),
        merged.done,
        merged.failed
    ));
    Ok(Exit::Ok.into())
}

/// `lai reveal`: values behind pseudonyms, from a run's vault and the key.
fn reveal(
    out: Option<&Path>,
    vaults: &[PathBuf],
    key: &str,
    text: Option<&Path>,
    pseudonyms: &[String],
) -> anyhow::Result<ExitCode> {
    let source = KeySource::parse(key)
        .filter(|k| *k != KeySource::PerRun)
        .with_context(|| format!("--key must be file:PATH or env:NAME, not `{key}`"))?;
    if text.is_none() && pseudonyms.is_empty() {
        bail!("give the pseudonyms to reveal, or --text FILE to restore every pseudonym in a file");
    }
    let vaults = if vaults.is_empty() {
        vault::of_run(out.unwrap_or(Path::new(DEFAULT_OUT)))?
    } else {
        vaults.to_vec()
    };
    let (values, unopened) = vault::read(&vaults, &Keys::load(&source)?)?;
    if !unopened.is_empty() {
        stderr_line!(
            "warning: {} vault lines did not open with this key (damaged or altered; their pseudonyms stay as they are): {}",
            unopened.len(),
            unopened.join(", ")
        );
    }
    let mut stdout = std::io::stdout().lock();
    let mut unknown = 0;
    if let Some(path) = text {
        let input: Box<dyn BufRead> = if path == Path::new("-") {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Box::new(std::io::BufReader::new(file))
        };
        for line in input.lines() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            let (restored, n) = vault::restore_line(&line, &values);
            unknown += n;
            writeln!(stdout, "{restored}")?;
        }
        if unknown > 0 {
            stderr_line!("note: {unknown} pseudonyms are not in the vault and stay as they are");
        }
        return Ok(Exit::Ok.into());
    }
    for pseudonym in pseudonyms {
        let bare = pseudonym
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']');
        match values.get(bare) {
            Some(value) => {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::json!({ "pseudonym": bare, "value": value })
                )?;
            }
            None => {
                unknown += 1;
                stderr_line!("error: {bare} is not in the vault");
            }
        }
    }
    Ok(if unknown > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Ok
    }
    .into())
}

fn ledger_command(
    out: Option<&Path>,
    failed: bool,
    cost: bool,
    ids: &[String],
) -> anyhow::Result<ExitCode> {
    let out = out.unwrap_or(Path::new(DEFAULT_OUT));
    if !out.join(crate::ledger::FILE).exists() {
        bail!(
            "no run ledger in {}; give the output folder of a run with -o",
            out.display()
        );
    }
    let text = if failed {
        crate::ledger::views::show_failed(out)?
    } else if cost && ids.is_empty() {
        crate::ledger::views::show_cost(out)?
    } else if cost {
        crate::ledger::views::show_item_cost(out, ids)?
    } else if ids.is_empty() {
        crate::ledger::views::show_runs(out)?
    } else {
        crate::ledger::views::show_items(out, ids)?
    };
    print_out(&text);
    Ok(Exit::Ok.into())
}

fn stages(name: Option<&str>) -> anyhow::Result<ExitCode> {
    let sections: [(&str, Vec<KindDoc>); 3] = [
        (
            "Stages ([[stage]] use = \"...\"; any stage also takes `when = { field = \"NAME\", TEST = VALUE }`,\nTEST one of equals, matches, above, below, longer_than, shorter_than, missing: it\ntakes only the items that meet it, and the rest pass it by)",
            describe(STAGES),
        ),
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
                // A doc of several lines (a table of choices) keeps the doc column.
                let option_doc = o.doc.replace('\n', &format!("\n    {:<16} ", ""));
                let default = match o.default {
                    Default::Required => "(required)".to_string(),
                    Default::Unset => "(unset)".to_string(),
                    Default::Value(v) => v.to_string(),
                };
                let _ = writeln!(
                    out,
                    "    {:<16} {}\n    {:<16} default: {default}\n    {:<16} {}\n",
                    o.name, o.ty, "", "", option_doc
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
    Ok(Exit::Ok.into())
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
                    "{:<24} {:<8} {:>7.1}MB  {:<12} {status}\n    {}\n    from: {}",
                    m.name,
                    m.engine,
                    m.size() as f64 / 1e6,
                    m.license,
                    m.description,
                    m.origin
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
        ModelsCommand::Add {
            name,
            files,
            engine,
            role_files,
            license,
        } => {
            let path = models::overlay_path().ok_or_else(|| {
                anyhow::anyhow!(
                    "neither $XDG_CONFIG_HOME nor $HOME is set, so there is no local catalog to add to"
                )
            })?;
            add_model(&path, name, files, *engine, role_files, license)?;
            let _ = writeln!(out, "added `{name}` to {}", path.display());
            true
        }
        ModelsCommand::Pull { names, mirror } => {
            print_out(&out);
            out.clear();
            pull(store, names, mirror.as_deref())?
        }
    };
    print_out(&out);
    Ok((if ok { Exit::Ok } else { Exit::ItemsFailed }).into())
}

/// `lai models add`: the files with their roles, hashed, written into the overlay at `path`.
fn add_model(
    path: &Path,
    name: &str,
    files: &[PathBuf],
    engine: Option<Engine>,
    role_files: &[String],
    license: &str,
) -> anyhow::Result<()> {
    let mut roles: Vec<(String, PathBuf)> = files
        .iter()
        .map(|f| (models::role_from_name(f).to_string(), f.clone()))
        .collect();
    for given in role_files {
        let (role, file) = given.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--file {given}: write ROLE=PATH, e.g. --file tokenizer=tokenizer.json")
        })?;
        roles.push((role.to_string(), PathBuf::from(file)));
    }
    let main = roles.iter().find(|(role, _)| role == "model");
    let engine = match (engine, main) {
        (Some(Engine::Whisper), _) => "whisper",
        (Some(Engine::Llama), _) => "llama",
        (Some(Engine::Onnx), _) => "onnx",
        (None, Some((_, file))) => models::engine_from_name(file),
        (None, None) => anyhow::bail!(
            "`{name}` has no model file: give it as PATH, or name the engine with --engine"
        ),
    };
    let models_roles: Vec<&str> = roles.iter().map(|(r, _)| r.as_str()).collect();
    if models_roles.iter().filter(|r| **r == "model").count() > 1 {
        anyhow::bail!(
            "`{name}`: more than one file would be the model ({}); name the others' roles with --file ROLE=PATH",
            roles
                .iter()
                .filter(|(r, _)| r == "model")
                .map(|(_, f)| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if engine == "onnx" && main.is_some() && !models_roles.contains(&"tokenizer") {
        anyhow::bail!("`{name}`: an ONNX model needs its tokenizer.json; add it as a PATH");
    }
    let entry = models::local_entry(name, engine, &roles, license)?;
    models::write_entry(path, entry)
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
