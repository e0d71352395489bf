//! The `llm` stage: a local GGUF model (llama.cpp) over a text field — cleanup, summaries,
//! structured extraction, labels, or any prompt template.
//!
//! A worker owns one llama context with `parallel` sequence slots and hands the engine every
//! request of its batch at once, so prompts and next tokens of many items decode together and a
//! finished slot is refilled at once (continuous batching). An input longer than fits in the
//! context is split by tokens at sentence ends; the pieces' outputs are joined (cleanup, custom
//! prompts), reduced by summarizing the summaries (summarize), merged field by field (JSON), or
//! voted on (labels), and the item records how many pieces there were. Greedy decoding is the
//! default; with a temperature each request is seeded from `seed` and the item's id, so a rerun,
//! or a run with another `parallel`, gives the same output.
//!
//! Besides its output field, the stage writes `llm.<output>`: the model, pieces, prompt and
//! generated token counts, and whether anything was cut short or kept by the cleanup guard.
//!
//! Each built-in task is one row of `task::TASKS` (its prompt, system message, output field,
//! way of combining pieces, token budget and guard), looked up once when the stage is built.
//! The worker reaches llama.cpp only through `engine::Engine`, so its splitting, combining
//! and guarding can be unit-tested over a fake engine.

mod engine;
mod task;
mod text;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::common::{MAX_WAIT, Shared, TIMEOUT, batch_size, workers};
use crate::component::{Egress, Meter, Per, Stage, StartContext, Unit, Worker};
use crate::device::{DEVICE, Placement};
use crate::engines::llama::{Completion, GeneratorOptions, LlmModel, Prompt, Request};
use crate::models::facts::{Facts, ModelFacts};
use crate::models::{self, ModelRef};
use crate::item::{Item, json_type};
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};
use crate::engines::openai::{Client, Endpoint};
use engine::{Engine, Llama, Remote};
use task::{Combine, Task};
use text::{Piece, Template};

/// Tokens generated, and how many per second a worker was busy.
pub static GENERATED: Unit = Unit {
    total: "tokens",
    rate: "tokens_per_busy_s",
    per: Per::BusySecond,
    whole: true,
    describe: |tokens, elapsed| {
        format!(
            "{tokens} tokens, {:.0} tokens/s",
            tokens / elapsed.as_secs_f64().max(1e-3)
        )
    },
};

/// Prompt tokens of the stage's requests, and of those the ones copied from a prompt
/// beginning shared with the rest of the batch (`prefix_cache`) rather than decoded.
pub static PROMPT_TOKENS: Unit = Unit {
    total: "prompt_tokens",
    rate: "prompt_tokens_per_busy_s",
    per: Per::BusySecond,
    whole: true,
    describe: |tokens, _| format!("{tokens} prompt tokens"),
};
pub static CACHED_PROMPT_TOKENS: Unit = Unit {
    total: "cached_prompt_tokens",
    rate: "cached_prompt_tokens_per_busy_s",
    per: Per::BusySecond,
    whole: true,
    describe: |tokens, _| format!("{tokens} prompt tokens from the shared prefix"),
};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "llm",
    doc: "An LLM over a text field, local (llama.cpp, GGUF) or on a model server (`endpoint`, OpenAI-compatible): `task` cleanup, summarize, extract (JSON fields) or classify (one of `choices`), or your own `prompt`; many items decode together.",
    options: OPTIONS,
    build,
};

/// Largest token count an option takes (a 128k context).
const TOKENS_MAX: i64 = 131_072;
const TOKENS: Ty = Ty::Int {
    min: 0,
    max: TOKENS_MAX,
};

const OPTIONS: &[OptionSpec] = &[
    batch_size("128"),
    MAX_WAIT,
    TIMEOUT,
    workers("1"),
    opt(
        "model",
        Ty::Model(&models::LLAMA),
        Default::Value("\"smollm2-135m-instruct\""),
        "GGUF model: a catalog name (`lai models list`), or a file by path: { path = \"/models/qwen2.5-7b-instruct-q4_k_m.gguf\", sha256 = \"...\" }.",
    ),
    opt(
        "task",
        Ty::Choice(&task::NAMES),
        Default::Unset,
        "Built-in prompt and way of combining pieces: cleanup (fix a transcript's casing, punctuation and fillers; guarded), summarize, extract (needs `fields` or `schema`), classify (needs `choices`). Leave out to use `prompt` alone.",
    ),
    opt(
        "prompt",
        Ty::Str,
        Default::Unset,
        "The user message, replacing the task's: `{{text}}` is the input field (or one piece of it), `{{name}}` any item field, `{{choices}}` and `{{fields}}` the configured ones. Without a chat template in the model it is the whole prompt.",
    ),
    opt(
        "prompt_file",
        Ty::Str,
        Default::Unset,
        "Read `prompt` from this file (relative to the pipeline file).",
    ),
    opt(
        "system",
        Ty::Str,
        Default::Unset,
        "System message, replacing the task's.",
    ),
    opt(
        "field",
        Ty::Str,
        Default::Value("\"text\""),
        "Input text field.",
    ),
    opt(
        "to",
        Ty::Str,
        Default::Unset,
        "Output field; default clean_text (cleanup), summary, label (choices), completion; JSON output is merged into the item's fields unless `to` is given.",
    ),
    opt(
        "output",
        Ty::Choice(&["text", "json"]),
        Default::Value("\"text\""),
        "\"json\": constrain the output to `schema` (or `fields`) with a grammar and parse it into fields.",
    ),
    opt(
        "fields",
        Ty::StrList,
        Default::Unset,
        "JSON output as an object of these fields, each a string (at most 120 characters) or null.",
    ),
    opt(
        "schema",
        Ty::Str,
        Default::Unset,
        "JSON output following this JSON Schema (inline JSON text).",
    ),
    opt(
        "schema_file",
        Ty::Str,
        Default::Unset,
        "Read `schema` from this file (relative to the pipeline file).",
    ),
    opt(
        "choices",
        Ty::StrList,
        Default::Unset,
        "The output is exactly one of these labels (grammar-constrained).",
    ),
    opt(
        "parallel",
        Ty::Int { min: 0, max: 256 },
        Default::Value("0"),
        "Sequences decoded together in one context; more uses the CPU or GPU better, up to a point. 0: 8 on the CPU, 64 on the GPU. With `endpoint`: requests in flight per worker (0: 8).",
    ).speed(),
    opt(
        "context",
        Ty::Int {
            min: 128,
            max: TOKENS_MAX,
        },
        Default::Value("2048"),
        "Context tokens per sequence (prompt plus output); longer inputs are split into pieces that fit.",
    ),
    opt(
        "max_tokens",
        TOKENS,
        Default::Value("0"),
        "Most tokens generated per piece; 0 picks per task (cleanup: 1.5 × the piece, summarize 256, JSON 512, labels 32, else 512).",
    ),
    opt(
        "stop",
        Ty::StrList,
        Default::Value("[]"),
        "Generation ends before the first of these strings.",
    ),
    opt(
        "temperature",
        Ty::Float { min: 0.0, max: 2.0 },
        Default::Value("0"),
        "0 decodes greedily; above 0, sampling seeded by `seed` and the item's id.",
    ),
    opt(
        "seed",
        Ty::Int {
            min: 0,
            max: u32::MAX as i64,
        },
        Default::Value("0"),
        "Seed for sampling (with a temperature): the same seed gives the same output.",
    ),
    opt(
        "chunk_tokens",
        TOKENS,
        Default::Value("0"),
        "Most input tokens per piece; 0 fits pieces to the context.",
    ),
    opt(
        "overlap_tokens",
        TOKENS,
        Default::Value("64"),
        "Tokens of whole sentences repeated at the start of the next piece (summaries, JSON and labels; joined outputs never repeat text).",
    ),
    opt(
        "guard",
        Ty::Bool,
        Default::Value("true"),
        "cleanup only: keep the source text of a piece (and flag the item) when the cleaned text drifts from it.",
    ),
    opt(
        "min_similarity",
        Ty::Float { min: 0.0, max: 1.0 },
        Default::Value("0.75"),
        "Guard: least word-level similarity (in-order common words, fillers ignored) between source and cleaned text.",
    ),
    opt(
        "max_length_change",
        Ty::Float {
            min: 0.0,
            max: 10.0,
        },
        Default::Value("0.25"),
        "Guard: most relative change in word count (0.25 allows 75%..125% of the source's words, fillers ignored).",
    ),
    opt(
        "threads",
        Ty::Int { min: 0, max: 256 },
        Default::Value("0"),
        "CPU threads per worker's context; 0 uses all of `--jobs` (shared with other stages, never oversubscribed), or one on the GPU.",
    ).speed(),
    opt(
        "prefix_cache",
        Ty::Bool,
        Default::Value("true"),
        "Decode the beginning that a batch's prompts share (chat frame, system message, instructions) once per context and copy its KV cache into each sequence, so an item pays only for its own tokens; false decodes every prompt whole. Outputs are the same either way.",
    ).speed(),
    opt(
        "endpoint",
        Ty::Str,
        Default::Unset,
        "Send each piece to this OpenAI-compatible server (vLLM, TGI, llama.cpp's llama-server, ...) instead of loading `model`: its base URL, e.g. \"http://gpu-box:8000/v1\" (requests go to ENDPOINT/chat/completions). Needs `served_model`; the text sent must be redacted by a stage before this one, or `allow_unredacted` says why not.",
    ),
    opt(
        "served_model",
        Ty::Str,
        Default::Unset,
        "With `endpoint`: the model name the server serves (the request's `model`).",
    ),
    opt(
        "api_key_env",
        Ty::Str,
        Default::Unset,
        "With `endpoint`: the environment variable holding the API key (sent as a bearer token). The key itself never goes in the pipeline file.",
    ),
    opt(
        "api_key_file",
        Ty::Str,
        Default::Unset,
        "With `endpoint`: a file holding the API key (relative to the pipeline file).",
    ),
    opt(
        "allow_unredacted",
        Ty::Str,
        Default::Unset,
        "With `endpoint`: why this stage may send text that no redact stage before it covers (recorded with every run); without it `lai check` refuses such a pipeline.",
    ),
    opt(
        "retries",
        Ty::Int { min: 0, max: 20 },
        Default::Value("4"),
        "With `endpoint`: tries after the first for a request that failed in a way that can pass (no connection, timeout, HTTP 429 or 5xx), waiting 0.5 s, 1 s, 2 s, ... between them.",
    ),
    opt(
        "request_timeout",
        Ty::Duration,
        Default::Value("\"300s\""),
        "With `endpoint`: longest one request may take, connection to last byte.",
    ),
    DEVICE,
    opt(
        "gpu_layers",
        Ty::Int {
            min: 0,
            max: 100_000,
        },
        Default::Value("100000"),
        "On the GPU: how many of the model's layers go there (the rest stay on the CPU, for a model larger than the GPU's memory); the default is all.",
    ).speed(),
];

/// `parallel = 0`: sequences per context on each device.
const PARALLEL_CPU: usize = 8;
const PARALLEL_GPU: usize = 64;
/// `parallel = 0` with an `endpoint`: requests in flight per worker.
const PARALLEL_REMOTE: usize = 8;

struct Llm {
    model_name: String,
    model_ref: ModelRef,
    task: Option<&'static Task>,
    /// The user gave the prompt (needed for a model without a chat template).
    custom_prompt: bool,
    system: Option<String>,
    template: Template,
    field: String,
    to: Option<String>,
    json: Option<Json>,
    choices: Vec<String>,
    grammar: Option<String>,
    combine: Combine,
    parallel: usize,
    context: usize,
    max_tokens: usize,
    stop: Vec<String>,
    temperature: f32,
    seed: u32,
    chunk_tokens: usize,
    overlap_tokens: usize,
    guard: Option<Guard>,
    threads: usize,
    prefix_cache: bool,
    device: Placement,
    gpu_layers: u32,
    model: Shared<LlmModel>,
    /// Set when the stage sends its pieces to a chat completions server.
    remote: Option<RemoteConfig>,
}

/// A chat completions server the stage sends its pieces to.
struct RemoteConfig {
    url: String,
    served_model: String,
    key: KeySource,
    allow_unredacted: Option<String>,
    retries: u32,
    timeout: std::time::Duration,
    /// Item fields the prompt sends.
    fields: Vec<String>,
    /// The addresses and key, found by `prepare` before the run is confined.
    ready: std::sync::OnceLock<(Endpoint, Option<String>)>,
}

/// Where the API key comes from.
enum KeySource {
    None,
    Env(String),
    File(std::path::PathBuf),
}

impl RemoteConfig {
    fn key(&self) -> anyhow::Result<Option<String>> {
        let key = match &self.key {
            KeySource::None => return Ok(None),
            KeySource::Env(name) => std::env::var(name).map_err(|_| {
                anyhow::anyhow!("`api_key_env`: the environment variable {name} is not set; export the server's API key in it")
            })?,
            KeySource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("`api_key_file`: cannot read {}: {e}", path.display())
            })?,
        };
        let key = key.trim().to_string();
        if key.is_empty() || key.chars().any(char::is_control) {
            anyhow::bail!("the API key for {} is empty or holds control characters", self.url);
        }
        Ok(Some(key))
    }
}

/// JSON output: the schema's text, what `{{fields}}` says (the property names, else the
/// schema), and the required keys.
struct Json {
    schema: String,
    described: String,
    required: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct Guard {
    min_similarity: f64,
    max_length_change: f64,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn Stage>> {
    let mut problems: Vec<(&str, String)> = Vec::new();
    let stage = configure(options, diag, &mut problems);
    for (key, message) in &problems {
        diag.error(&options.span_of(key), message.clone());
    }
    stage
        .filter(|_| problems.is_empty())
        .map(|s| Box::new(s) as Box<dyn Stage>)
}

/// Text given inline in `key` or read from the file named in `file_key`.
fn inline_or_file(
    options: &Options,
    diag: &mut Diagnostics,
    key: &'static str,
    file_key: &'static str,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<String> {
    let ctx = &options.context;
    match (options.opt_str(key), options.opt_str(file_key)) {
        (Some(_), Some(_)) => {
            problems.push((
                file_key,
                format!("{ctx} has both `{key}` and `{file_key}`; keep one"),
            ));
            None
        }
        (Some(text), None) => Some(text),
        (None, Some(name)) => {
            let path = diag.relative_path(&name);
            std::fs::read_to_string(&path)
                .map_err(|e| {
                    problems.push((
                        file_key,
                        format!(
                            "`{file_key}` in {ctx}: cannot read {}: {e}; the path is taken relative to the pipeline file",
                            path.display()
                        ),
                    ))
                })
                .ok()
        }
        (None, None) => None,
    }
}

fn configure(
    options: &Options,
    diag: &mut Diagnostics,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<Llm> {
    let ctx = options.context.clone();
    // The option's type admits only the table's names.
    let task = options.opt_str("task").as_deref().and_then(task::find);
    let field = options.str("field");

    let custom_prompt = inline_or_file(options, diag, "prompt", "prompt_file", problems);
    let prompt_key = if options.opt_str("prompt_file").is_some() {
        "prompt_file"
    } else {
        "prompt"
    };
    let prompt = custom_prompt.clone().or(task.map(|t| t.prompt.to_string()));
    if prompt.is_none() {
        problems.push((
            "task",
            format!(
                "{ctx} needs a `task` ({}) or a `prompt`",
                task::NAMES.join(", ")
            ),
        ));
    }
    // Go on without a prompt, so every other problem is reported too.
    let template = match Template::parse(prompt.as_deref().unwrap_or("{{text}}")) {
        Ok(t) => t,
        Err(e) => {
            problems.push((prompt_key, format!("`{prompt_key}` in {ctx}: {e}")));
            Template::parse("{{text}}").ok()?
        }
    };
    if !template.uses("text") && !template.uses(&field) {
        problems.push((
            prompt_key,
            format!(
                "the prompt in {ctx} never uses `{{{{text}}}}`, the input (`{field}`); put it where the text goes"
            ),
        ));
    }

    // Constraints: JSON (schema or field list) or labels.
    let choices = options.str_list("choices");
    let wants_json =
        options.str("output") == "json" || task.is_some_and(|t| t.combine == Combine::Merge);
    let schema = inline_or_file(options, diag, "schema", "schema_file", problems);
    let fields = options.str_list("fields");
    let schema = match (schema, fields.is_empty()) {
        (Some(_), false) => {
            problems.push((
                "fields",
                format!("{ctx} has both `schema` and `fields`; keep one"),
            ));
            None
        }
        (Some(s), true) => Some(s),
        (None, false) => Some(fields_schema(&fields)),
        (None, true) => None,
    };
    let json = match (wants_json, schema) {
        (true, None) => {
            problems.push((
                "output",
                format!(
                    "JSON output in {ctx} needs `fields = [\"name\", ...]` or a `schema` (JSON Schema)"
                ),
            ));
            None
        }
        (false, Some(_)) => {
            problems.push((
                "output",
                format!("{ctx} has a schema but `output` is not \"json\"; add `output = \"json\"`"),
            ));
            None
        }
        (true, Some(schema)) => match parse_schema(&schema) {
            Ok(json) => Some(json),
            Err(e) => {
                let key = if options.opt_str("schema_file").is_some() {
                    "schema_file"
                } else {
                    "schema"
                };
                problems.push((key, format!("`{key}` in {ctx}: {e}")));
                None
            }
        },
        (false, None) => None,
    };
    if json.is_some() && !choices.is_empty() {
        problems.push((
            "choices",
            format!("{ctx} has both JSON output and `choices`; keep one"),
        ));
    }
    if let Some(task) = task.filter(|t| t.combine == Combine::Vote && choices.is_empty()) {
        problems.push((
            "task",
            format!("{} in {ctx} needs `choices = [\"label\", ...]`", task.name),
        ));
    }
    if choices.iter().any(|c| c.trim().is_empty()) {
        problems.push(("choices", format!("`choices` in {ctx} has an empty label")));
    }
    let grammar = match (&json, choices.is_empty()) {
        (Some(json), _) => match llama_cpp_2::json_schema_to_grammar(&json.schema) {
            Ok(g) => Some(g),
            Err(e) => {
                problems.push((
                    "schema",
                    format!("llama.cpp cannot turn the schema in {ctx} into a grammar: {e}"),
                ));
                None
            }
        },
        (None, false) => Some(choices_grammar(&choices)),
        (None, true) => None,
    };

    let combine = if json.is_some() {
        Combine::Merge
    } else if !choices.is_empty() {
        Combine::Vote
    } else {
        task.map_or(Combine::Join, |t| t.combine)
    };
    let to = options.opt_str("to").or_else(|| {
        match combine {
            Combine::Merge => None,
            Combine::Vote => Some("label"),
            _ => Some(task.and_then(|t| t.to).unwrap_or("completion")),
        }
        .map(String::from)
    });
    let guard = (task.is_some_and(|t| t.guarded) && options.bool("guard")).then(|| Guard {
        min_similarity: options.float("min_similarity"),
        max_length_change: options.float("max_length_change"),
    });
    let system = options
        .opt_str("system")
        .or_else(|| task.and_then(|t| t.system).map(String::from));
    let remote = remote_config(options, diag, &template, &field, problems);
    let model = ModelRef::from_option(options, "model", &models::LLAMA, diag)?;
    Some(Llm {
        model_name: remote.as_ref().map_or(model.name(), |r| r.served_model.clone()),
        model_ref: model,
        task,
        custom_prompt: custom_prompt.is_some(),
        system,
        template,
        field,
        to,
        json,
        choices,
        grammar,
        combine,
        parallel: options.usize("parallel"),
        context: options.usize("context"),
        max_tokens: options.usize("max_tokens"),
        stop: options.str_list("stop"),
        temperature: options.float("temperature") as f32,
        seed: u32::try_from(options.int("seed")).unwrap_or(0),
        chunk_tokens: options.usize("chunk_tokens"),
        overlap_tokens: options.usize("overlap_tokens"),
        guard,
        threads: options.usize("threads"),
        prefix_cache: options.bool("prefix_cache"),
        device: Placement::from_options(options, diag)?,
        gpu_layers: u32::try_from(options.int("gpu_layers")).unwrap_or(u32::MAX),
        model: Shared::default(),
        remote,
    })
}

/// The `endpoint` options, checked; `None` for a local model.
fn remote_config(
    options: &Options,
    diag: &mut Diagnostics,
    template: &Template,
    field: &str,
    problems: &mut Vec<(&'static str, String)>,
) -> Option<RemoteConfig> {
    let ctx = &options.context;
    let only_remote = ["served_model", "api_key_env", "api_key_file", "allow_unredacted"];
    let Some(url) = options.opt_str("endpoint") else {
        for key in only_remote.into_iter().filter(|k| options.opt_str(k).is_some()) {
            problems.push((key, format!("`{key}` in {ctx} goes with `endpoint`, which is not set")));
        }
        return None;
    };
    if let Err(e) = crate::engines::openai::host_port(&url) {
        problems.push(("endpoint", format!("`endpoint` in {ctx}: {e}")));
    }
    if options.given("model") {
        problems.push((
            "model",
            format!("{ctx} has both `model` (a local GGUF) and `endpoint` (a server); keep one, and name the server's model with `served_model`"),
        ));
    }
    let Some(served_model) = options.opt_str("served_model") else {
        problems.push((
            "endpoint",
            format!("{ctx} has an `endpoint` and no `served_model`; name the model the server serves, e.g. `served_model = \"qwen2.5-7b-instruct\"`"),
        ));
        return None;
    };
    let key = match (options.opt_str("api_key_env"), options.opt_str("api_key_file")) {
        (Some(_), Some(_)) => {
            problems.push(("api_key_file", format!("{ctx} has both `api_key_env` and `api_key_file`; keep one")));
            KeySource::None
        }
        (Some(name), None) => KeySource::Env(name),
        (None, Some(file)) => KeySource::File(diag.path_in_file(&file)),
        (None, None) => KeySource::None,
    };
    // What the prompt sends: the input field and every item field it names.
    let builtins = ["text", "choices", "fields"];
    let mut fields = vec![field.to_string()];
    for var in template.vars().filter(|v| !builtins.contains(v)) {
        if !fields.iter().any(|f| f == var) {
            fields.push(var.to_string());
        }
    }
    Some(RemoteConfig {
        url: url.trim_end_matches('/').to_string(),
        served_model,
        key,
        allow_unredacted: options.opt_str("allow_unredacted"),
        retries: u32::try_from(options.int("retries")).unwrap_or(0),
        timeout: options.duration("request_timeout"),
        fields,
        ready: std::sync::OnceLock::new(),
    })
}

/// Longest string a `fields` entry may hold; bounds the output so a small model cannot ramble
/// until `max_tokens`.
const FIELD_MAX_CHARS: usize = 120;

/// The schema for a field list: an object of exactly these keys, each a short string or null.
fn fields_schema(fields: &[String]) -> String {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| {
            (
                f.clone(),
                json!({"anyOf": [{"type": "string", "maxLength": FIELD_MAX_CHARS}, {"type": "null"}]}),
            )
        })
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": fields,
        "additionalProperties": false,
    })
    .to_string()
}

fn parse_schema(schema: &str) -> Result<Json, String> {
    let value: Value = serde_json::from_str(schema).map_err(|e| format!("not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("a JSON Schema must be an object such as {\"type\": \"object\", ...}".into());
    }
    let required = value["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let described = match value["properties"].as_object() {
        Some(properties) => properties.keys().cloned().collect::<Vec<_>>().join(", "),
        None => value.to_string(),
    };
    Ok(Json {
        schema: value.to_string(),
        described,
        required,
    })
}

/// A GBNF grammar whose only sentences are the labels.
fn choices_grammar(choices: &[String]) -> String {
    let alternatives: Vec<String> = choices
        .iter()
        .map(|c| {
            let escaped = c
                .chars()
                .flat_map(|ch| match ch {
                    '"' => vec!['\\', '"'],
                    '\\' => vec!['\\', '\\'],
                    '\n' => vec!['\\', 'n'],
                    other => vec![other],
                })
                .collect::<String>();
            format!("\"{escaped}\"")
        })
        .collect();
    format!("root ::= {}", alternatives.join(" | "))
}

impl Stage for Llm {
    fn models(&self) -> Vec<ModelRef> {
        if self.remote.is_some() {
            return Vec::new();
        }
        vec![self.model_ref.clone()]
    }

    fn prepare(&self) -> anyhow::Result<()> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let key = remote.key()?;
        let endpoint = Endpoint::resolve(&remote.url)?;
        let _ = remote.ready.set((endpoint, key));
        Ok(())
    }

    fn egress(&self) -> Option<Egress> {
        self.remote.as_ref().map(|r| Egress {
            endpoint: r.url.clone(),
            fields: r.fields.clone(),
            allow_unredacted: r.allow_unredacted.clone(),
        })
    }

    fn connects(&self) -> Vec<SocketAddr> {
        let ready = self.remote.as_ref().and_then(|r| r.ready.get());
        ready.map_or(Vec::new(), |(endpoint, _)| endpoint.addrs.clone())
    }

    fn check_models(&self, facts: &ModelFacts) -> Vec<String> {
        let Some(Facts::Gguf {
            context_length,
            chat_template,
            ..
        }) = facts.get(&self.model_name)
        else {
            return Vec::new();
        };
        let model = &self.model_name;
        let mut problems = Vec::new();
        if !chat_template && !self.custom_prompt {
            problems.push(format!(
                "model `{model}` has no chat template in its GGUF metadata (a base model), so the built-in `{}` prompt cannot be used; give the stage a `prompt` that writes the whole prompt in the model's format",
                self.task.map_or("task", |t| t.name)
            ));
        }
        if let Some(trained) = context_length.filter(|&n| (self.context as u64) > n) {
            problems.push(format!(
                "`context = {}` is more than model `{model}` was trained for ({trained} tokens); set `context` to at most {trained}",
                self.context
            ));
        }
        problems
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        if let Some(remote) = &self.remote {
            let (endpoint, key) = remote
                .ready
                .get()
                .ok_or_else(|| anyhow::anyhow!("the endpoint was not prepared. This is a bug."))?;
            let schema = match (&self.json, self.choices.is_empty()) {
                (Some(json), _) => serde_json::from_str(&json.schema).ok(),
                (None, false) => Some(json!({"type": "string", "enum": self.choices})),
                (None, true) => None,
            };
            return Ok(Box::new(LlmWorker {
                stage: self,
                engine: Remote {
                    client: Client::new(
                        endpoint,
                        &remote.served_model,
                        key.clone(),
                        remote.timeout,
                        remote.retries,
                    ),
                    endpoint: remote.url.clone(),
                    parallel: if self.parallel == 0 { PARALLEL_REMOTE } else { self.parallel },
                    schema,
                    deadline: ctx.deadline.clone(),
                    served: None,
                },
                meter: ctx.meter.clone(),
            }));
        }
        let device = ctx.place(self.device)?;
        let model = self.model.get(|| {
            LlmModel::load(
                ctx.model_file(&self.model_name, "llama", "model")?,
                device,
                self.gpu_layers,
            )
        })?;
        // On the GPU the CPU only samples tokens: one thread, leaving the rest to other stages.
        let threads = device.pick(self.threads, ctx.threads.total(), 1);
        let parallel = device.pick(self.parallel, PARALLEL_CPU, PARALLEL_GPU);
        let generator = model.generator(&GeneratorOptions {
            parallel,
            context: self.context,
            threads,
            share_prefix: self.prefix_cache,
        })?;
        Ok(Box::new(LlmWorker {
            stage: self,
            engine: Llama {
                model,
                generator,
                threads: Arc::clone(&ctx.threads),
                n_threads: threads,
                deadline: ctx.deadline.clone(),
            },
            meter: ctx.meter.clone(),
        }))
    }
}

/// The stage's logic over one engine: llama.cpp in a run, a fake in unit tests.
struct LlmWorker<'a, E> {
    stage: &'a Llm,
    engine: E,
    meter: Meter,
}

/// One item's progress through the rounds of generation.
#[derive(Default)]
struct Job {
    /// This round's input (the field, then, when reducing, the joined summaries).
    text: String,
    pieces: Vec<Piece>,
    /// Pieces of the first round: how the input was split.
    split: usize,
    round: usize,
    prompt_tokens: usize,
    tokens: usize,
    truncated: bool,
    /// Pieces whose cleaned text the guard rejected, and the lowest similarity seen.
    kept_source: usize,
    similarity: Option<f64>,
    result: Option<Result<Value, String>>,
}

/// Most rounds of summarizing summaries before giving up.
const MAX_ROUNDS: usize = 8;

impl<E: Engine> Worker for LlmWorker<'_, E> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        let mut jobs: Vec<Job> = batch.iter().map(|item| self.job(item)).collect();
        loop {
            let mut requests = Vec::new();
            let mut owners = Vec::new();
            for (i, job) in jobs.iter_mut().enumerate() {
                if job.result.is_some() {
                    continue;
                }
                match self.requests(job, &batch[i]) {
                    Ok(rs) => {
                        owners.extend(std::iter::repeat_n(i, rs.len()));
                        requests.extend(rs);
                    }
                    Err(e) => job.result = Some(Err(e)),
                }
            }
            if requests.is_empty() {
                break;
            }
            let results = self.engine.generate(&requests);
            let mut by_job: BTreeMap<usize, Vec<Result<Completion, String>>> = BTreeMap::new();
            let count = |n: fn(&Completion) -> usize| -> f64 {
                results.iter().flatten().map(|c| n(c) as f64).sum()
            };
            self.meter.add(&PROMPT_TOKENS, count(|c| c.prompt_tokens));
            self.meter
                .add(&CACHED_PROMPT_TOKENS, count(|c| c.cached_tokens));
            // Last, so the progress bar shows the generated tokens.
            self.meter.add(&GENERATED, count(|c| c.tokens));
            for (owner, result) in owners.into_iter().zip(results) {
                by_job.entry(owner).or_default().push(result);
            }
            for (i, results) in by_job {
                self.receive(&mut jobs[i], results);
            }
        }
        batch
            .iter_mut()
            .zip(jobs)
            .map(|(item, job)| self.finish(item, job))
            .collect()
    }
}

impl<E: Engine> LlmWorker<'_, E> {
    fn job(&self, item: &Item) -> Job {
        let field = &self.stage.field;
        match item.text(field) {
            Ok(text) => Job {
                text: text.to_string(),
                ..Job::default()
            },
            Err(e) => Job {
                result: Some(Err(format!(
                    "{e}; set the stage's `field` to the field that holds the text"
                ))),
                ..Job::default()
            },
        }
    }

    /// The prompt for one piece of input. With a chat template, the template frames the
    /// rendered message (all of it data); without one, the pipeline's prompt is the model's raw
    /// format and only the values put into it are data.
    fn prompt(&self, piece: &str, item: &Item) -> Result<Prompt, String> {
        let stage = self.stage;
        let choices = stage.choices.join(", ");
        let fields = stage.json.as_ref().map_or("", |j| j.described.as_str());
        let user = stage.template.render(
            &[
                ("text", piece),
                (stage.field.as_str(), piece),
                ("choices", &choices),
                ("fields", fields),
            ],
            &item.fields,
        )?;
        if let Some(prompt) = self
            .engine
            .chat_prompt(stage.system.as_deref(), &user.text())
        {
            return prompt;
        }
        let mut prompt = Prompt::default();
        if let Some(system) = &stage.system {
            prompt.push_control(system);
            prompt.push_control("\n\n");
        }
        prompt.append(user);
        Ok(prompt)
    }

    /// Splits this round's input so each piece's prompt and output fit in the context, and
    /// builds one request per piece.
    fn requests(&self, job: &mut Job, item: &Item) -> Result<Vec<Request>, String> {
        let stage = self.stage;
        let overhead = self.engine.prompt_tokens(&self.prompt("", item)?);
        // Room for the input and the output; a few tokens spare for merges at piece edges.
        let room = stage.context.saturating_sub(overhead + 8);
        let proportional = stage.max_tokens == 0 && stage.task.is_some_and(|t| t.proportional);
        let max_tokens = match stage.max_tokens {
            n if n > 0 => n,
            _ if proportional => 0,
            _ => stage.combine.max_tokens(),
        };
        let mut limit = if proportional {
            // Input n, output up to 1.5 n + 32.
            room.saturating_sub(32) * 2 / 5
        } else {
            room.saturating_sub(max_tokens)
        };
        if stage.chunk_tokens > 0 {
            limit = limit.min(stage.chunk_tokens);
        }
        if limit < 16 {
            return Err(format!(
                "no room for the input: the prompt takes {overhead} tokens and the output up to {max_tokens} of the {}-token context; raise `context` or lower `max_tokens`",
                stage.context
            ));
        }
        let overlap = if stage.combine == Combine::Join {
            0
        } else {
            stage.overlap_tokens.min(limit / 2)
        };
        job.pieces = text::split(&job.text, limit, overlap, |t| self.engine.count_tokens(t));
        if job.pieces.is_empty() {
            match stage.combine {
                // Nothing to clean or summarize.
                Combine::Join | Combine::Reduce => {
                    job.result = Some(Ok(Value::String(String::new())));
                    return Ok(Vec::new());
                }
                // The model still decides what an empty document holds.
                Combine::Merge | Combine::Vote => job.pieces.push(Piece {
                    text: String::new(),
                    gap: String::new(),
                }),
            }
        }
        if job.round == 0 {
            job.split = job.pieces.len();
        }
        job.pieces
            .iter()
            .enumerate()
            .map(|(k, piece)| {
                Ok(Request {
                    prompt: self.prompt(&piece.text, item)?,
                    max_tokens: if proportional {
                        self.engine.count_tokens(&piece.text) * 3 / 2 + 32
                    } else {
                        max_tokens
                    },
                    stop: stage.stop.clone(),
                    grammar: stage.grammar.clone(),
                    temperature: stage.temperature,
                    seed: request_seed(stage.seed, &item.id, job.round, k),
                })
            })
            .collect()
    }

    /// Takes a round's completions: finishes the job, or sets up the next round.
    fn receive(&self, job: &mut Job, results: Vec<Result<Completion, String>>) {
        let n = results.len();
        let mut outputs = Vec::with_capacity(n);
        for (k, result) in results.into_iter().enumerate() {
            match result {
                Ok(c) => {
                    job.prompt_tokens += c.prompt_tokens;
                    job.tokens += c.tokens;
                    job.truncated |= c.truncated;
                    outputs.push(c);
                }
                Err(e) => {
                    let at = if n > 1 {
                        format!("piece {} of {n}: ", k + 1)
                    } else {
                        String::new()
                    };
                    job.result = Some(Err(format!("{at}{e}")));
                    return;
                }
            }
        }
        job.result = match self.stage.combine {
            Combine::Join => Some(Ok(Value::String(self.join(job, &outputs)))),
            Combine::Reduce if outputs.len() == 1 => {
                Some(Ok(Value::String(outputs[0].text.trim().to_string())))
            }
            Combine::Reduce if job.round + 1 >= MAX_ROUNDS => Some(Err(format!(
                "the summaries of the pieces did not fit in one piece after {MAX_ROUNDS} rounds; raise `context` or lower `max_tokens`"
            ))),
            Combine::Reduce => {
                job.text = outputs
                    .iter()
                    .map(|c| c.text.trim())
                    .collect::<Vec<_>>()
                    .join("\n\n");
                job.round += 1;
                None
            }
            Combine::Merge => Some(merge(
                &outputs,
                self.stage.json.as_ref().map_or(&[], |j| &j.required),
            )),
            Combine::Vote => Some(vote(&outputs, &self.stage.choices)),
        };
    }

    /// Cleaned (or generated) pieces joined with the source's breaks; under the guard, a piece
    /// loses the label, quotes or fence the model wrapped it in, and one that drifted from its
    /// source, or was cut short, keeps the source text.
    fn join(&self, job: &mut Job, outputs: &[Completion]) -> String {
        let mut out = String::new();
        for (piece, completion) in job.pieces.iter().zip(outputs) {
            let mut text = completion.text.trim();
            if let Some(guard) = self.stage.guard {
                text = text::unwrap_answer(text, &piece.text);
                let source = text::words(&piece.text);
                let cleaned = text::words(text);
                let similarity = text::similarity(&source, &cleaned);
                let change =
                    (cleaned.len() as f64 - source.len() as f64).abs() / source.len().max(1) as f64;
                job.similarity = Some(job.similarity.map_or(similarity, |s| s.min(similarity)));
                if completion.truncated
                    || similarity < guard.min_similarity
                    || change > guard.max_length_change
                {
                    job.kept_source += 1;
                    text = piece.text.as_str();
                }
            }
            out.push_str(text);
            if !piece.gap.is_empty() {
                out.push_str(if piece.gap.contains("\n\n") {
                    "\n\n"
                } else if piece.gap.contains('\n') {
                    "\n"
                } else {
                    " "
                });
            }
        }
        out.trim_end().to_string()
    }

    /// Writes the job's result and its record under `llm.<output>`.
    fn finish(&self, item: &mut Item, job: Job) -> Result<(), String> {
        let value = job
            .result
            .unwrap_or_else(|| Err("not processed. This is a bug.".into()))?;
        let stage = self.stage;
        let key = match (&stage.to, value) {
            (Some(to), value) => {
                item.fields.insert(to.clone(), value);
                to.clone()
            }
            (None, Value::Object(fields)) => {
                item.fields.extend(fields);
                "fields".to_string()
            }
            (None, _) => return Err("JSON output is not an object. This is a bug.".into()),
        };
        let mut record = json!({
            "model": stage.model_name,
            "pieces": job.split,
            "prompt_tokens": job.prompt_tokens,
            "tokens": job.tokens,
            "truncated": job.truncated,
        });
        if let Some(task) = stage.task {
            record["task"] = json!(task.name);
        }
        for (key, value) in self.engine.provenance() {
            record[key.as_str()] = value;
        }
        if job.round > 0 {
            record["rounds"] = json!(job.round + 1);
        }
        if stage.guard.is_some() {
            record["kept_source"] = json!(job.kept_source);
            if let Some(s) = job.similarity {
                record["similarity"] = json!((s * 1000.0).round() / 1000.0);
            }
        }
        let meta = item
            .fields
            .entry("llm")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        meta[key.as_str()] = record;
        Ok(())
    }
}

/// Each piece's JSON object, merged: a key's first non-null value wins, lists are
/// concatenated without repeats.
fn merge(outputs: &[Completion], required: &[String]) -> Result<Value, String> {
    let mut merged = Map::new();
    let n = outputs.len();
    for (k, c) in outputs.iter().enumerate() {
        let at = if n > 1 {
            format!(" (piece {} of {n})", k + 1)
        } else {
            String::new()
        };
        // Messages name what is wrong and where, never the answer's text: it is item content.
        let value: Value = serde_json::from_str(c.text.trim()).map_err(|e| {
            let advice = if c.truncated {
                format!(
                    "it was cut at `max_tokens` ({} tokens): raise `max_tokens`",
                    c.tokens
                )
            } else {
                "a larger model or a simpler `schema` may do better".to_string()
            };
            format!(
                "the model's answer{at} was not valid JSON ({}); {advice}",
                json_error(&e)
            )
        })?;
        let kind = json_type(&value);
        let Value::Object(object) = value else {
            return Err(format!(
                "the model's answer{at} is JSON but not an object (it is {kind}); give the stage a `schema` whose top level is an object"
            ));
        };
        if let Some(missing) = required.iter().find(|k| !object.contains_key(*k)) {
            return Err(format!(
                "the model's answer{at} lacks the required field `{missing}`; a larger model may do better, or make the field optional in the `schema`"
            ));
        }
        for (key, value) in object {
            match (merged.get_mut(&key), value) {
                (None, value) => {
                    merged.insert(key, value);
                }
                (Some(slot @ Value::Null), value) => *slot = value,
                (Some(Value::Array(list)), Value::Array(more)) => {
                    for v in more {
                        if !list.contains(&v) {
                            list.push(v);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Value::Object(merged))
}

/// How an answer fails to parse as JSON, and where, without quoting it.
fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "it ends early",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data => "an unexpected value",
        serde_json::error::Category::Io => "a read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// The label most pieces chose (ties: the earliest).
fn vote(outputs: &[Completion], choices: &[String]) -> Result<Value, String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in outputs {
        let label = c.text.trim();
        if !choices.iter().any(|choice| choice == label) {
            // The answer itself is not shown: it is item content.
            return Err(format!(
                "the model's answer is not one of the choices ({}); this should not happen under the choices' grammar: check `stop`, which can cut a label short",
                choices.join(", ")
            ));
        }
        match counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => counts.push((label, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let label = counts
        .iter()
        .find(|(_, n)| *n == best)
        .map_or("", |(l, _)| l);
    Ok(Value::String(label.to_string()))
}

/// A request's sampling seed from the stage's seed, the item's id, the round and the piece:
/// the same for the same input whatever else is in the batch (FNV-1a, stable across builds).
fn request_seed(seed: u32, id: &str, round: usize, piece: usize) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(id.bytes())
        .chain((round as u64).to_le_bytes())
        .chain((piece as u64).to_le_bytes());
    for b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash ^ (hash >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::StageCounters;
    use crate::options::tree::{self, Value as Toml};

    /// The stage as `configure` builds it from these options (TOML), with its problems.
    fn configured(toml: &str) -> (Option<Llm>, Vec<String>) {
        let Ok(tree::Node {
            value: Toml::Table(entries),
            ..
        }) = tree::parse_document(toml)
        else {
            panic!("the test's options are not a TOML table")
        };
        let mut diag = Diagnostics::new("test", toml);
        let options =
            Options::validate("stage llm".into(), 0..0, &entries, OPTIONS, &[], &mut diag);
        let mut problems = Vec::new();
        let stage = configure(&options, &mut diag, &mut problems);
        assert!(diag.problems.is_empty(), "the test's options are wrong");
        (stage, problems.into_iter().map(|(_, m)| m).collect())
    }

    fn stage(toml: &str) -> Llm {
        let (stage, problems) = configured(toml);
        assert!(problems.is_empty(), "{problems:?}");
        stage.expect("a stage without problems")
    }

    /// Stands in for llama.cpp: a token is a word, the model has no chat template, and each
    /// prompt is answered by the first rule whose key it contains.
    struct Fake {
        rules: Vec<(&'static str, &'static str)>,
        /// Each request's prompt text and `max_tokens`, in order.
        seen: Vec<(String, usize)>,
    }

    impl Engine for Fake {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }

        fn prompt_tokens(&self, prompt: &Prompt) -> usize {
            self.count_tokens(&prompt.text())
        }

        fn chat_prompt(&self, _: Option<&str>, _: &str) -> Option<Result<Prompt, String>> {
            None
        }

        fn generate(&mut self, requests: &[Request]) -> Vec<Result<Completion, String>> {
            requests
                .iter()
                .map(|r| {
                    let prompt = r.prompt.text();
                    self.seen.push((prompt.clone(), r.max_tokens));
                    let (_, answer) = self
                        .rules
                        .iter()
                        .find(|(key, _)| prompt.contains(key))
                        .ok_or_else(|| format!("the fake has no answer for {prompt:?}"))?;
                    Ok(Completion {
                        text: answer.to_string(),
                        prompt_tokens: self.count_tokens(&prompt),
                        cached_tokens: 0,
                        tokens: self.count_tokens(answer),
                        truncated: false,
                    })
                })
                .collect()
        }
    }

    /// Runs one batch of texts through the stage over a fake answering by `rules`.
    fn run(
        stage: &Llm,
        rules: &[(&'static str, &'static str)],
        texts: &[&str],
    ) -> (Vec<Item>, Vec<Result<(), String>>, Fake) {
        let mut worker = LlmWorker {
            stage,
            engine: Fake {
                rules: rules.to_vec(),
                seen: Vec::new(),
            },
            meter: Meter::new(
                Arc::new(StageCounters::default()),
                indicatif::ProgressBar::hidden(),
                std::time::Instant::now(),
            ),
        };
        let mut batch: Vec<Item> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut fields = Map::new();
                fields.insert("text".into(), json!(text));
                Item::new(
                    format!("item{i}"),
                    format!("item{i}"),
                    text.as_bytes(),
                    fields,
                )
            })
            .collect();
        let results = worker.process(&mut batch);
        (batch, results, worker.engine)
    }

    // Ten words each: with `chunk_tokens = 16` every sentence is a piece of its own, and none
    // is short enough to be carried over as overlap.
    const ALPHA: &str = "Alpha one two three four five six seven eight nine.";
    const BETA: &str = "Beta one two three four five six seven eight nine.";
    const GAMMA: &str = "Gamma one two three four five six seven eight nine.";

    // Three pieces vote two labels to one (the first piece is outvoted); each item of a batch
    // gets its own pieces' answers, and a label's default budget is 32 tokens.
    #[test]
    fn pieces_vote_on_a_label() {
        let stage = stage("task = \"classify\"\nchoices = [\"spam\", \"ham\"]\nchunk_tokens = 16");
        let rules = [("Alpha", "ham"), ("Beta", "spam"), ("Gamma", " spam\n")];
        let three = format!("{ALPHA} {BETA} {GAMMA}");
        let (items, results, fake) = run(&stage, &rules, &[&three, ALPHA]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(items[0].fields["label"], "spam");
        assert_eq!(items[0].fields["llm"]["label"]["pieces"], 3);
        assert_eq!(items[0].fields["llm"]["label"]["task"], "classify");
        assert_eq!(items[1].fields["label"], "ham");
        assert_eq!(items[1].fields["llm"]["label"]["pieces"], 1);
        assert_eq!(fake.seen.len(), 4);
        assert!(fake.seen.iter().all(|(_, max)| *max == 32));
        assert!(
            fake.seen[0]
                .0
                .starts_with("Classify the text below as one of: spam, ham.")
        );
    }

    // Two pieces' JSON merges into the item's fields (a null filled by the later piece); a
    // piece that lacks a required key fails its item alone, saying which piece.
    #[test]
    fn pieces_merge_json_fields() {
        let stage = stage("task = \"extract\"\nfields = [\"name\", \"city\"]\nchunk_tokens = 16");
        let rules = [
            ("Alpha", r#"{"name": "Ana", "city": null}"#),
            ("Beta", r#"{"name": "Bob", "city": "Oslo"}"#),
            ("Gamma", r#"{"name": "Cy"}"#),
        ];
        let (items, results, _) = run(
            &stage,
            &rules,
            &[&format!("{ALPHA} {BETA}"), &format!("{ALPHA} {GAMMA}")],
        );
        assert_eq!(results[0], Ok(()));
        assert_eq!(items[0].fields["name"], "Ana");
        assert_eq!(items[0].fields["city"], "Oslo");
        assert_eq!(items[0].fields["llm"]["fields"]["pieces"], 2);
        let err = results[1].clone().unwrap_err();
        assert!(
            err.contains("(piece 2 of 2) lacks the required field `city`"),
            "{err}"
        );
    }

    // The guard keeps the source of a piece whose cleaned text lost too many words (though
    // every word left is the source's) and takes the other piece's cleaned text; it keeps
    // the source of a rewrite with as many words but other ones too. Without the guard both
    // go through. Cleanup's budget is proportional to the piece: 1.5 × 10 words + 32.
    #[test]
    fn guard_keeps_a_shortened_piece() {
        let source = "alpha um one two three four five six seven eight. beta one two three four five six seven eight nine.";
        let rules = [
            ("alpha um", "Alpha one two three four five six seven eight."),
            ("beta one", "Beta one two three four five six."),
            (
                "gamma one",
                "Gamma uno dos tres cuatro cinco seis siete ocho nueve.",
            ),
        ];
        let rewritten = "gamma one two three four five six seven eight nine.";
        let guarded = stage("task = \"cleanup\"\nchunk_tokens = 16");
        let (items, results, fake) = run(&guarded, &rules, &[source, rewritten]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            items[0].fields["clean_text"],
            "Alpha one two three four five six seven eight. beta one two three four five six seven eight nine."
        );
        assert_eq!(items[0].fields["llm"]["clean_text"]["kept_source"], 1);
        assert_eq!(items[0].fields["llm"]["clean_text"]["pieces"], 2);
        assert_eq!(items[1].fields["clean_text"], rewritten);
        assert_eq!(items[1].fields["llm"]["clean_text"]["kept_source"], 1);
        assert_eq!(items[1].fields["llm"]["clean_text"]["similarity"], 0.1);
        assert_eq!(fake.seen[0].1, 10 * 3 / 2 + 32);
        assert!(
            fake.seen[0]
                .0
                .starts_with("You are a careful copy editor of speech transcripts.\n\nCorrect")
        );

        let unguarded = stage("task = \"cleanup\"\nchunk_tokens = 16\nguard = false");
        let (items, _, _) = run(&unguarded, &rules, &[source, rewritten]);
        assert_eq!(
            items[0].fields["clean_text"],
            "Alpha one two three four five six seven eight. Beta one two three four five six."
        );
        assert_eq!(
            items[1].fields["clean_text"],
            "Gamma uno dos tres cuatro cinco seis siete ocho nueve."
        );
        assert!(
            items[0].fields["llm"]["clean_text"]
                .get("kept_source")
                .is_none()
        );
    }

    // Three pieces' summaries are summarized again, in a second round, into one.
    #[test]
    fn summaries_reduce_to_one() {
        let stage = stage("task = \"summarize\"\nchunk_tokens = 16");
        let rules = [
            ("sum-a\n\nsum-b\n\nsum-c", "The whole."),
            ("Alpha", "sum-a"),
            ("Beta", "sum-b"),
            ("Gamma", "sum-c"),
        ];
        let (items, results, fake) = run(&stage, &rules, &[&format!("{ALPHA} {BETA} {GAMMA}")]);
        assert!(results[0].is_ok(), "{results:?}");
        assert_eq!(items[0].fields["summary"], "The whole.");
        assert_eq!(items[0].fields["llm"]["summary"]["pieces"], 3);
        assert_eq!(items[0].fields["llm"]["summary"]["rounds"], 2);
        assert_eq!(fake.seen.len(), 4);
        assert!(fake.seen.iter().all(|(_, max)| *max == 256));
    }

    // The `task` option offers the table's names; each task's row sets what `configure`
    // derives, and a label task without `choices` is refused by name.
    #[test]
    fn tasks_come_from_the_table() {
        let spec = OPTIONS
            .iter()
            .find(|o| o.name == "task")
            .expect("a task option");
        let Ty::Choice(names) = spec.ty else {
            panic!("`task` is a choice")
        };
        assert_eq!(names, ["cleanup", "summarize", "extract", "classify"]);
        for task in task::TASKS {
            let template = Template::parse(task.prompt).expect("the prompt parses");
            assert!(template.uses("text"), "{}", task.name);
        }
        let cleanup = stage("task = \"cleanup\"");
        assert_eq!(cleanup.to.as_deref(), Some("clean_text"));
        assert_eq!(cleanup.combine, Combine::Join);
        assert!(cleanup.guard.is_some());
        let summarize = stage("task = \"summarize\"");
        assert_eq!(summarize.to.as_deref(), Some("summary"));
        assert_eq!(summarize.combine, Combine::Reduce);
        assert!(summarize.guard.is_none() && summarize.system.is_none());
        let extract = stage("task = \"extract\"\nfields = [\"a\"]");
        assert_eq!((extract.to, extract.combine), (None, Combine::Merge));
        let custom = stage("prompt = \"Say {{text}}\"");
        assert_eq!(custom.to.as_deref(), Some("completion"));
        let (_, problems) = configured("task = \"classify\"");
        assert!(
            problems
                .iter()
                .any(|p| p == "classify in stage llm needs `choices = [\"label\", ...]`"),
            "{problems:?}"
        );
        let (_, problems) = configured("field = \"text\"");
        assert!(
            problems.iter().any(|p| p
                == "stage llm needs a `task` (cleanup, summarize, extract, classify) or a `prompt`"),
            "{problems:?}"
        );
    }

    fn out(text: &str) -> Completion {
        Completion {
            text: text.into(),
            prompt_tokens: 10,
            cached_tokens: 0,
            tokens: 5,
            truncated: false,
        }
    }

    // Pieces' JSON merges field by field; bad JSON, other values and missing keys fail with
    // where and why, never the answer's text.
    #[test]
    fn merging_pieces() {
        let required = ["name".to_string(), "tags".to_string()];
        let merged = merge(
            &[
                out(r#"{"name": null, "tags": ["a"]}"#),
                out(r#"{"name": "Ana", "tags": ["a", "b"]}"#),
                out(r#"{"name": "Bob", "tags": []}"#),
            ],
            &required,
        )
        .unwrap();
        assert_eq!(merged, json!({"name": "Ana", "tags": ["a", "b"]}));
        let mut cut = out(r#"{"name": "SECRET-1"#);
        cut.truncated = true;
        let err = merge(&[cut], &required).unwrap_err();
        assert!(
            err.contains("not valid JSON (it ends early at line 1 column 18)")
                && err.contains("max_tokens"),
            "{err}"
        );
        let err = merge(&[out(r#"{"name": SECRET-2}"#)], &required).unwrap_err();
        assert!(err.contains("a syntax error at line 1 column 10"), "{err}");
        let err = merge(&[out(r#"["SECRET-3"]"#)], &required).unwrap_err();
        assert!(err.contains("not an object (it is an array)"), "{err}");
        let err = merge(&[out(r#"{"name": "SECRET-4"}"#)], &required).unwrap_err();
        assert!(err.contains("`tags`") && !err.contains("SECRET"), "{err}");
    }

    // The majority label wins, ties go to the earliest, and a label outside the choices fails.
    #[test]
    fn voting_on_labels() {
        let choices = ["spam".to_string(), "ham".to_string()];
        let votes = [out("ham"), out("spam"), out(" spam\n")];
        assert_eq!(vote(&votes, &choices).unwrap(), "spam");
        assert_eq!(vote(&[out("ham"), out("spam")], &choices).unwrap(), "ham");
        let err = vote(&[out("SECRET eggs")], &choices).unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
    }

    // Labels become a grammar of exact alternatives (quotes escaped); a field list becomes a
    // schema llama.cpp can compile.
    #[test]
    fn grammars() {
        assert_eq!(
            choices_grammar(&["a \"b\"".into(), "c".into()]),
            r#"root ::= "a \"b\"" | "c""#
        );
        let schema = fields_schema(&["name".into(), "date".into()]);
        let json = parse_schema(&schema).unwrap();
        assert_eq!(json.described, "name, date");
        assert_eq!(json.required, ["name", "date"]);
        assert!(llama_cpp_2::json_schema_to_grammar(&json.schema).is_ok());
        assert!(parse_schema("[1]").is_err());
        // Seeds depend on the item, round and piece only.
        assert_eq!(request_seed(1, "a", 0, 0), request_seed(1, "a", 0, 0));
        assert_ne!(request_seed(1, "a", 0, 0), request_seed(1, "a", 0, 1));
        assert_ne!(request_seed(1, "a", 0, 0), request_seed(2, "a", 0, 0));
    }
}
