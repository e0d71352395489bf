//! The `embed` stage: a sentence-embedding vector per item from a BERT-style ONNX model.
//!
//! Pooling (mean or [CLS]) and unit length come from the model's `[model.encoder]` entry in the
//! catalog. A text longer than the model's window is split into overlapping windows, never cut:
//! its vector pools every window (mean pooling: the mean of the window means, weighted by their
//! token counts; CLS: the mean of the windows' [CLS] vectors), and the item records how many
//! windows it took. A worker hands all windows of its batch to the engine at once, which runs them
//! shortest first in batches bounded by `token_budget`, so little padding is computed. The
//! embedding itself lives in `encoder.rs`, shared with the `classify` stage.

use serde_json::{Value, json};

use super::encoder::{EmbedWorker, Embedding, FIELD, LONG, MODEL, OVERLAP, THREADS, TOKEN_BUDGET};
use super::{MAX_WAIT, TIMEOUT, batch_size, workers};
use crate::component::StartContext;
use crate::component::{Stage, Worker};
use crate::device::DEVICE;
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "embed",
    doc: "A sentence embedding per item (ONNX Runtime, BERT-style model such as all-MiniLM-L6-v2); long texts are pooled over overlapping windows, never cut.",
    options: OPTIONS,
    build,
};

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
