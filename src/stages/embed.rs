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
use super::common::{MAX_WAIT, TIMEOUT, batch_size, workers};
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
    fn models(&self) -> Vec<crate::models::ModelRef> {
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

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::stages::encoder::Pooling;
    use crate::stages::encoder::fake::FakeEncoder;

    // A text longer than the window is embedded over two overlapping windows: the item gets
    // the mean of every row of both and a window count of 2.
    #[test]
    fn long_text_gets_pooled_vector() {
        let mut diag = Diagnostics::new("test", "");
        let options = Options::defaults("test", OPTIONS);
        let mut embed = Embed {
            embedding: Embedding::from_options(&options, &mut diag).unwrap(),
            to: options.str("to"),
        };
        embed.embedding.overlap = 1;
        // Rows [n, 1] for "1" to "5"; windows of 3 tokens: 0..3 and 2..5.
        let words = ["1", "2", "3", "4", "5"];
        let words = (1..=5)
            .map(|n| (words[n - 1], vec![n as f32, 1.0]))
            .collect();
        let engine = FakeEncoder::new(words, 5);
        let mut worker = EmbedStageWorker {
            stage: &embed,
            worker: embed
                .embedding
                .worker(Box::new(engine), Pooling::Mean, false),
        };
        let mut fields = Map::new();
        fields.insert("text".into(), json!("1 2 3 4 5"));
        let mut batch = [Item::new("t".into(), "t".into(), b"", fields)];
        assert!(worker.process(&mut batch)[0].is_ok());
        // [6,3] 1 2 3 [0,0] and [12,3] 3 4 5 [0,0]: sums [12, 6] and [24, 6] over 10 rows.
        assert_eq!(batch[0].fields["embedding"], json!([3.6, 1.2]));
        assert_eq!(batch[0].fields["embedding_chunks"], json!(2));
    }
}
