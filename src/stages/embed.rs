//! The `embed` stage: a sentence-embedding vector per item from a BERT-style ONNX model.
//!
//! Pooling (mean or [CLS]) and unit length come from the model's `[model.encoder]` entry in the
//! catalog. A text longer than the model's window is split into overlapping windows, never cut:
//! its vector pools every window (mean pooling: the mean of the window means, weighted by their
//! token counts; CLS: the mean of the windows' [CLS] vectors), and the item records how many
//! windows it took. A worker hands all windows of its batch to the engine at once, which runs them
//! shortest first in batches bounded by `token_budget`, so little padding is computed.
//! `Embedder` is shared with the `classify` stage.

use std::sync::Arc;

use anyhow::anyhow;
use serde_json::{Value, json};

use super::{MAX_WAIT, Shared, TIMEOUT, batch_size, workers};
use crate::component::StartContext;
use crate::component::threads::Threads;
use crate::component::{Stage, Worker};
use crate::device::{DEVICE, Placement};
use crate::engines::onnx::{Encoder, TextModel, load_runtime};
use crate::item::Item;
use crate::models::EncoderConfig;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "embed",
    doc: "A sentence embedding per item (ONNX Runtime, BERT-style model such as all-MiniLM-L6-v2); long texts are pooled over overlapping windows, never cut.",
    options: OPTIONS,
    build,
};

/// Options shared with `classify`, which embeds the same way.
pub const MODEL: OptionSpec = opt(
    "model",
    Ty::Str,
    Default::Value("\"all-minilm-l6-v2\""),
    "Sentence-embedding ONNX model from the catalog (`lai models list`).",
);
pub const FIELD: OptionSpec = opt(
    "field",
    Ty::Str,
    Default::Value("\"text\""),
    "Input text field.",
);
pub const OVERLAP: OptionSpec = opt(
    "overlap_tokens",
    Ty::Int { min: 0, max: 4096 },
    Default::Value("32"),
    "Tokens shared by consecutive windows of a text longer than the model's window.",
);
pub const LONG: OptionSpec = opt(
    "long",
    Ty::Choice(&["pool", "error"]),
    Default::Value("\"pool\""),
    "A text longer than the model's window: pool its windows' vectors, or fail the item.",
);
pub const TOKEN_BUDGET: OptionSpec = opt(
    "token_budget",
    Ty::Int {
        min: 0,
        max: 1 << 24,
    },
    Default::Value("0"),
    "Most tokens (padding included) in one model call. 0: 512 on the CPU (small batches stay in its caches: 512 ran 2x faster than 8192), 16384 on the GPU (which needs big ones to be busy).",
).speed();

/// `token_budget = 0` on each device.
const BUDGET_CPU: usize = 512;
const BUDGET_GPU: usize = 16384;

pub const THREADS: OptionSpec = opt(
    "threads",
    Ty::Int { min: 0, max: 1024 },
    Default::Value("0"),
    "ONNX Runtime threads per worker; 0 uses all of `--jobs` (shared with other stages, never oversubscribed).",
).speed();

const OPTIONS: &[OptionSpec] = &[
    batch_size("256"),
    MAX_WAIT,
    TIMEOUT,
    workers("1"),
    MODEL,
    FIELD,
    opt(
        "to",
        Ty::Str,
        Default::Value("\"embedding\""),
        "Output field: the vector as a list of numbers; `<to>_chunks` gets the window count.",
    ),
    OVERLAP,
    LONG,
    TOKEN_BUDGET,
    THREADS,
    DEVICE,
];

/// How a stage embeds text: the options `embed` and `classify` share.
pub struct Embedding {
    pub model_name: String,
    pub field: String,
    pub overlap: usize,
    pub pool_long: bool,
    pub token_budget: usize,
    pub threads: usize,
    pub device: Placement,
    embedder: Shared<Embedder>,
}

impl Embedding {
    pub fn from_options(options: &Options, diag: &mut Diagnostics) -> Option<Embedding> {
        Some(Embedding {
            model_name: options.str("model"),
            field: options.str("field"),
            overlap: options.usize("overlap_tokens"),
            pool_long: options.str("long") == "pool",
            token_budget: options.usize("token_budget"),
            threads: options.usize("threads"),
            device: Placement::from_options(options, diag)?,
            embedder: Shared::default(),
        })
    }

    /// The catalog models to resolve: the encoder and ONNX Runtime.
    pub fn models(&self) -> Vec<String> {
        vec![self.model_name.clone(), runtime().to_string()]
    }

    /// Loads the shared model (once) and this worker's session.
    pub fn start<'a>(&'a self, ctx: &StartContext) -> anyhow::Result<EmbedWorker<'a>> {
        let embedder = self
            .embedder
            .get(|| Embedder::load(ctx, &self.model_name))?;
        Ok(EmbedWorker {
            spec: self,
            embedder,
            session: session(
                ctx,
                &self.model_name,
                self.threads,
                self.token_budget,
                self.device,
            )?,
            threads: Arc::clone(&ctx.threads),
        })
    }
}

/// The catalog entry of the ONNX Runtime library: the CUDA build loads the one with the CUDA
/// provider (it runs CPU stages too; a process loads one).
pub fn runtime() -> &'static str {
    if cfg!(feature = "cuda") {
        "onnxruntime-cuda"
    } else {
        "onnxruntime"
    }
}

/// A worker's ONNX session and how it is driven on its device.
pub struct Session {
    pub encoder: Encoder,
    /// CPU threads per model call.
    pub threads: usize,
    /// Most tokens (padding included) per model call.
    pub token_budget: usize,
}

/// A worker's session of the ONNX model `name` on its device. `threads` 0 is all of `--jobs` on
/// the CPU and one on the GPU (the CPU is left to other stages); `token_budget` 0 is the
/// device's own.
pub fn session(
    ctx: &StartContext,
    name: &str,
    threads: usize,
    token_budget: usize,
    placement: Placement,
) -> anyhow::Result<Session> {
    let device = ctx.place(placement)?;
    let threads = device.pick(threads, ctx.threads.total(), 1);
    let env = load_runtime(ctx.model_file(runtime(), "runtime", "library")?)?;
    let model = ctx.model_file(name, "onnx", "model")?;
    Ok(Session {
        encoder: Encoder::load(env, model, threads, device)?,
        threads,
        token_budget: device.pick(token_budget, BUDGET_CPU, BUDGET_GPU),
    })
}

/// A model's tokenizer and window, and its catalog `[model.encoder]` entry, for any stage on
/// the onnx engine.
pub fn text_model(ctx: &StartContext, name: &str) -> anyhow::Result<(TextModel, EncoderConfig)> {
    let config = ctx.model(name)?.encoder.clone().ok_or_else(|| {
        anyhow!("model `{name}` has no [model.encoder] entry in the catalog (max_tokens, pooling); it cannot be used as a text encoder")
    })?;
    let text = TextModel::load(
        ctx.model_file(name, "onnx", "tokenizer")?,
        config.max_tokens,
    )?;
    Ok((text, config))
}

enum Pooling {
    Mean,
    Cls,
}

/// A sentence-embedding model: tokenizer, window and pooling.
pub struct Embedder {
    text: TextModel,
    pooling: Pooling,
    normalize: bool,
}

impl Embedder {
    fn load(ctx: &StartContext, name: &str) -> anyhow::Result<Embedder> {
        let (text, config) = text_model(ctx, name)?;
        let pooling = match config.pooling.as_deref() {
            Some("mean") => Pooling::Mean,
            Some("cls") => Pooling::Cls,
            other => {
                return Err(anyhow!(
                    "model `{name}`: [model.encoder] pooling is {other:?}; a sentence-embedding model needs pooling = \"mean\" or \"cls\""
                ));
            }
        };
        Ok(Embedder {
            text,
            pooling,
            normalize: config.normalize,
        })
    }
}

/// A text's vector and how it was made.
pub struct Vector {
    pub values: Vec<f32>,
    pub chunks: usize,
}

/// One worker's session and the shared embedder.
pub struct EmbedWorker<'a> {
    spec: &'a Embedding,
    embedder: &'a Embedder,
    session: Session,
    threads: Arc<Threads>,
}

impl EmbedWorker<'_> {
    /// Embeds the `field` of every item and hands each item its vector; an item without the
    /// text, or whose text cannot be embedded, fails alone.
    pub fn embed_items(
        &mut self,
        batch: &mut [Item],
        mut each: impl FnMut(&mut Item, Vector) -> Result<(), String>,
    ) -> Vec<Result<(), String>> {
        let field = &self.spec.field;
        let texts: Vec<Result<&str, String>> = batch
            .iter()
            .map(|i| {
                i.text(field).map_err(|e| {
                    format!("{e}; add it to the input or set the stage's `field` to a text field")
                })
            })
            .collect();
        let ok: Vec<&str> = texts
            .iter()
            .filter_map(|t| t.as_ref().ok().copied())
            .collect();
        let mut vectors = match self.embed(&ok) {
            Ok(v) => v.into_iter(),
            Err(e) => return vec![Err(format!("embedding failed: {e:#}")); batch.len()],
        };
        let texts: Vec<Result<(), String>> = texts.into_iter().map(|t| t.map(|_| ())).collect();
        batch
            .iter_mut()
            .zip(texts)
            .map(|(item, text)| {
                text?;
                let vector = vectors
                    .next()
                    .unwrap_or_else(|| Err("no vector. This is a bug.".into()))?;
                each(item, vector)
            })
            .collect()
    }

    /// Embeds every text; a text that cannot be embedded fails alone. An engine error fails all.
    pub fn embed(&mut self, texts: &[&str]) -> anyhow::Result<Vec<Result<Vector, String>>> {
        let spec = self.spec;
        let model = &self.embedder.text;
        let mut results: Vec<Result<Vector, String>> = Vec::with_capacity(texts.len());
        let mut tokens = Vec::with_capacity(texts.len());
        for text in texts {
            let t = model.tokenize(text, false);
            match &t {
                Ok(t) if !spec.pool_long && t.ids.len() + 2 > model.max_tokens => {
                    results.push(Err(format!(
                        "text has {} tokens, more than the model's window of {}; set `long = \"pool\"` to embed it in windows",
                        t.ids.len() + 2,
                        model.max_tokens
                    )));
                }
                Ok(_) => results.push(Ok(Vector {
                    values: Vec::new(),
                    chunks: 0,
                })),
                Err(e) => results.push(Err(e.clone())),
            }
            tokens.push(t.map(|t| t.ids).unwrap_or_default());
        }
        // Every window of every text that can be embedded, and the text it belongs to.
        let mut windows: Vec<&[u32]> = Vec::new();
        let mut owner = Vec::new();
        for (i, ids) in tokens.iter().enumerate() {
            if results[i].is_ok() {
                for w in model.windows(ids.len(), spec.overlap) {
                    windows.push(&ids[w]);
                    owner.push(i);
                }
            }
        }
        let (threads, n) = (&self.threads, self.session.threads);
        let pooling = &self.embedder.pooling;
        // Rows summed into each text's vector: all token rows (mean) or one per window (CLS).
        let mut pooled = vec![0usize; texts.len()];
        self.session.encoder.run(
            model,
            &windows,
            self.session.token_budget,
            || threads.borrow(Some(n)),
            |w, rows, width| {
                let i = owner[w];
                let Ok(vector) = &mut results[i] else {
                    return;
                };
                if vector.values.is_empty() {
                    vector.values = vec![0.0; width];
                }
                let rows = match pooling {
                    Pooling::Mean => rows,
                    Pooling::Cls => &rows[..width],
                };
                for row in rows.chunks_exact(width) {
                    add(&mut vector.values, row);
                    pooled[i] += 1;
                }
                vector.chunks += 1;
            },
        )?;
        for (vector, &rows) in results.iter_mut().zip(&pooled) {
            let Ok(vector) = vector else { continue };
            let rows = rows.max(1) as f32;
            vector.values.iter_mut().for_each(|x| *x /= rows);
            if self.embedder.normalize {
                let norm = vector.values.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    vector.values.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
        Ok(results)
    }
}

fn add(sum: &mut [f32], row: &[f32]) {
    for (s, x) in sum.iter_mut().zip(row) {
        *s += x;
    }
}

/// A vector as JSON numbers, each printed as its shortest `f32` form ("0.1", not
/// "0.10000000149011612").
pub fn to_json(values: &[f32]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|x| {
                x.to_string()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
    )
}

struct Embed {
    embedding: Embedding,
    to: String,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn Stage>> {
    Some(Box::new(Embed {
        embedding: Embedding::from_options(options, diag)?,
        to: options.str("to"),
    }))
}

impl Stage for Embed {
    fn models(&self) -> Vec<String> {
        self.embedding.models()
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        Ok(Box::new(EmbedStageWorker {
            stage: self,
            worker: self.embedding.start(ctx)?,
        }))
    }
}

struct EmbedStageWorker<'a> {
    stage: &'a Embed,
    worker: EmbedWorker<'a>,
}

impl Worker for EmbedStageWorker<'_> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        let to = &self.stage.to;
        self.worker.embed_items(batch, |item, vector| {
            item.fields.insert(to.clone(), to_json(&vector.values));
            item.fields
                .insert(format!("{to}_chunks"), json!(vector.chunks));
            Ok(())
        })
    }
}
