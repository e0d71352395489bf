//! What the stages on the ONNX text-encoder engine share: `embed`, `classify` and `redact`'s NER
//! model import it from here, never from each other.
//!
//! It holds the option specs they have in common, the session of a worker on its device, the
//! loading of a model's tokenizer and catalog entry, and sentence embedding itself: a text longer
//! than the model's window is split into overlapping windows, never cut, and its vector pools
//! every window (mean pooling: the mean of the window means, weighted by their token counts; CLS:
//! the mean of the windows' [CLS] vectors). A worker hands all windows of its batch to the engine
//! at once, which runs them shortest first in batches bounded by `token_budget`, so little
//! padding is computed.
//!
//! The engine is behind `TextEncoder` (tokens, windows, output rows), so the pooling here and the
//! stages' decisions can be unit-tested with a fake instead of a model.

use std::ops::Range;
use std::sync::Arc;

use anyhow::anyhow;

use super::common::Shared;
use crate::component::threads::Threads;
use crate::component::{Meter, Per, StartContext, Unit};
use crate::device::Placement;
use crate::engines::onnx::{Encoder, TextModel, Tokens, load_runtime};
use crate::item::Item;
use crate::models::{self, EncoderConfig, ModelRef};
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

/// Options of every stage that embeds text (`embed`, `classify`).
pub const MODEL: OptionSpec = opt(
    "model",
    Ty::Model(&models::TEXT_ENCODER),
    Default::Value("\"all-minilm-l6-v2\""),
    "Sentence-embedding ONNX model: a catalog name (`lai models list`), or files by path: { path = \"/models/e5.onnx\", sha256 = \"...\", tokenizer = \"/models/tokenizer.json\" } (`max_tokens`, `pooling` and `normalize` are read from a sentence-transformers export beside the model; set them where it has none).",
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
/// Shared by every stage on the engine, `redact` included.
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

/// The catalog entry of the ONNX Runtime library: the CUDA build loads the one with the CUDA
/// provider (it runs CPU stages too; a process loads one).
pub fn runtime() -> &'static str {
    if cfg!(feature = "cuda") {
        "onnxruntime-cuda"
    } else {
        "onnxruntime"
    }
}

/// Tokens the encoder read, [CLS] and [SEP] of each window included (what embedding
/// services charge by).
pub static ENCODED_TOKENS: Unit = Unit {
    total: "encoded_tokens",
    rate: "encoded_tokens_per_busy_s",
    per: Per::BusySecond,
    whole: true,
    describe: |tokens, _| format!("{tokens} tokens encoded"),
};

/// A worker's ONNX session and how it is driven on its device.
pub struct Session {
    pub encoder: Encoder,
    /// CPU threads per model call.
    pub threads: usize,
    /// Most tokens (padding included) per model call.
    pub token_budget: usize,
    meter: Meter,
}

impl Session {
    /// Counts the tokens of windows about to be encoded.
    pub fn count(&self, windows: &[&[u32]]) {
        let tokens: usize = windows.iter().map(|w| w.len() + 2).sum();
        self.meter.add(&ENCODED_TOKENS, tokens as f64);
    }
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
        meter: ctx.meter.clone(),
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

/// What a stage asks of a text encoder: a trait so that the logic around it (pooling, a label
/// decision) can be tested with a fake instead of a model.
pub trait TextEncoder {
    /// Word-piece ids of a text, without the [CLS] and [SEP] markers.
    fn tokenize(&self, text: &str) -> Result<Tokens, String>;
    /// Most tokens in one window, [CLS] and [SEP] included.
    fn max_tokens(&self) -> usize;
    /// Token ranges covering `len` tokens in windows that fit the model, each overlapping the
    /// previous one by `overlap` tokens; an empty text has one empty window.
    fn windows(&self, len: usize, overlap: usize) -> Vec<Range<usize>>;
    /// Runs every window and calls `each(window index, rows, width)` with the output rows of its
    /// tokens: [CLS], the window's tokens, [SEP]. An error fails every window.
    fn run(
        &mut self,
        windows: &[&[u32]],
        each: &mut dyn FnMut(usize, &[f32], usize),
    ) -> anyhow::Result<()>;
}

/// The real engine: the shared tokenizer and one worker's session, each model call holding a
/// lease on the process's threads.
pub struct OnnxEncoder<'a> {
    pub text: &'a TextModel,
    pub session: Session,
    pub threads: Arc<Threads>,
}

impl TextEncoder for OnnxEncoder<'_> {
    fn tokenize(&self, text: &str) -> Result<Tokens, String> {
        self.text.tokenize(text, false)
    }

    fn max_tokens(&self) -> usize {
        self.text.max_tokens
    }

    fn windows(&self, len: usize, overlap: usize) -> Vec<Range<usize>> {
        self.text.windows(len, overlap)
    }

    fn run(
        &mut self,
        windows: &[&[u32]],
        each: &mut dyn FnMut(usize, &[f32], usize),
    ) -> anyhow::Result<()> {
        let (threads, n) = (&self.threads, self.session.threads);
        self.session.count(windows);
        self.session.encoder.run(
            self.text,
            windows,
            self.session.token_budget,
            || threads.borrow(Some(n)),
            each,
        )
    }
}

/// How a text's vector is made from its windows' output rows.
#[derive(Clone, Copy)]
pub enum Pooling {
    /// The mean of every token row, markers included.
    Mean,
    /// The mean of the windows' [CLS] rows.
    Cls,
}

/// A sentence-embedding model: tokenizer, window and pooling.
pub struct SentenceModel {
    text: TextModel,
    pooling: Pooling,
    normalize: bool,
}

impl SentenceModel {
    fn load(ctx: &StartContext, name: &str) -> anyhow::Result<SentenceModel> {
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
        Ok(SentenceModel {
            text,
            pooling,
            normalize: config.normalize,
        })
    }
}

/// How a stage embeds text: the options `embed` and `classify` share.
pub struct Embedding {
    pub model_name: String,
    model_ref: ModelRef,
    pub field: String,
    pub overlap: usize,
    pub pool_long: bool,
    pub token_budget: usize,
    pub threads: usize,
    pub device: Placement,
    model: Shared<SentenceModel>,
}

impl Embedding {
    pub fn from_options(options: &Options, diag: &mut Diagnostics) -> Option<Embedding> {
        let model = ModelRef::from_option(options, "model", &models::TEXT_ENCODER, diag)?;
        Some(Embedding {
            model_name: model.name(),
            model_ref: model,
            field: options.str("field"),
            overlap: options.usize("overlap_tokens"),
            pool_long: options.str("long") == "pool",
            token_budget: options.usize("token_budget"),
            threads: options.usize("threads"),
            device: Placement::from_options(options, diag)?,
            model: Shared::default(),
        })
    }

    /// The models to resolve: the encoder and ONNX Runtime.
    pub fn models(&self) -> Vec<ModelRef> {
        vec![
            self.model_ref.clone(),
            ModelRef::Catalog(runtime().to_string()),
        ]
    }

    /// Loads the shared model (once) and this worker's session.
    pub fn start<'a>(&'a self, ctx: &StartContext) -> anyhow::Result<EmbedWorker<'a>> {
        let model = self
            .model
            .get(|| SentenceModel::load(ctx, &self.model_name))?;
        let engine = OnnxEncoder {
            text: &model.text,
            session: session(
                ctx,
                &self.model_name,
                self.threads,
                self.token_budget,
                self.device,
            )?,
            threads: Arc::clone(&ctx.threads),
        };
        Ok(self.worker(Box::new(engine), model.pooling, model.normalize))
    }

    /// A worker that embeds with `engine`: the model's session, or a test's fake.
    pub fn worker<'a>(
        &'a self,
        engine: Box<dyn TextEncoder + 'a>,
        pooling: Pooling,
        normalize: bool,
    ) -> EmbedWorker<'a> {
        EmbedWorker {
            spec: self,
            engine,
            pooling,
            normalize,
        }
    }
}

/// A text's vector and how it was made.
pub struct Vector {
    pub values: Vec<f32>,
    pub chunks: usize,
}

/// One worker's engine and the model's pooling.
pub struct EmbedWorker<'a> {
    spec: &'a Embedding,
    engine: Box<dyn TextEncoder + 'a>,
    pooling: Pooling,
    normalize: bool,
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
        let max_tokens = self.engine.max_tokens();
        let mut results: Vec<Result<Vector, String>> = Vec::with_capacity(texts.len());
        let mut tokens = Vec::with_capacity(texts.len());
        for text in texts {
            let t = self.engine.tokenize(text);
            match &t {
                Ok(t) if !spec.pool_long && t.ids.len() + 2 > max_tokens => {
                    results.push(Err(format!(
                        "text has {} tokens, more than the model's window of {}; set `long = \"pool\"` to embed it in windows",
                        t.ids.len() + 2,
                        max_tokens
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
                for w in self.engine.windows(ids.len(), spec.overlap) {
                    windows.push(&ids[w]);
                    owner.push(i);
                }
            }
        }
        let pooling = self.pooling;
        // Rows summed into each text's vector: all token rows (mean) or one per window (CLS).
        let mut pooled = vec![0usize; texts.len()];
        self.engine.run(&windows, &mut |w, rows, width| {
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
        })?;
        for (vector, &rows) in results.iter_mut().zip(&pooled) {
            let Ok(vector) = vector else { continue };
            let rows = rows.max(1) as f32;
            vector.values.iter_mut().for_each(|x| *x /= rows);
            if self.normalize {
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

/// A fake engine for unit tests of the logic around it, so they need no model: a text's tokens
/// are its words, each word's output row is given, [CLS] outputs the sum of its window's token
/// rows (unlike any one token's) and [SEP] zeros. Windows run last first, as a real engine
/// reorders them too.
#[cfg(test)]
pub mod fake {
    use super::*;

    pub struct FakeEncoder {
        /// Each word and its output row; a word's token id is its index here.
        pub words: Vec<(&'static str, Vec<f32>)>,
        pub max_tokens: usize,
        /// An engine error for every run.
        pub fail: Option<&'static str>,
    }

    impl FakeEncoder {
        pub fn new(words: Vec<(&'static str, Vec<f32>)>, max_tokens: usize) -> FakeEncoder {
            FakeEncoder {
                words,
                max_tokens,
                fail: None,
            }
        }
    }

    impl TextEncoder for FakeEncoder {
        fn tokenize(&self, text: &str) -> Result<Tokens, String> {
            let ids = text
                .split_whitespace()
                .map(|w| {
                    let i = self.words.iter().position(|(word, _)| *word == w);
                    i.map(|i| i as u32)
                        .ok_or_else(|| format!("unknown word {w:?}"))
                })
                .collect::<Result<Vec<u32>, String>>()?;
            Ok(Tokens {
                ids,
                offsets: Vec::new(),
            })
        }

        fn max_tokens(&self) -> usize {
            self.max_tokens
        }

        fn windows(&self, len: usize, overlap: usize) -> Vec<Range<usize>> {
            let size = self.max_tokens - 2;
            let step = size - overlap.min(size / 2);
            let first: Range<usize> = 0..len.min(size);
            let mut windows = vec![first];
            while let Some(last) = windows.last().filter(|w| w.end < len) {
                let start = last.start + step;
                windows.push(start..(start + size).min(len));
            }
            windows
        }

        fn run(
            &mut self,
            windows: &[&[u32]],
            each: &mut dyn FnMut(usize, &[f32], usize),
        ) -> anyhow::Result<()> {
            if let Some(e) = self.fail {
                anyhow::bail!("{e}");
            }
            let width = self.words[0].1.len();
            for (w, ids) in windows.iter().enumerate().rev() {
                let mut rows = vec![0.0; width];
                for id in *ids {
                    let row = &self.words[*id as usize].1;
                    rows.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                    rows.extend(row);
                }
                rows.extend(vec![0.0; width]);
                each(w, &rows, width);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::fake::FakeEncoder;
    use super::*;
    use crate::device::DEVICE;

    const SPEC: &[OptionSpec] = &[MODEL, FIELD, OVERLAP, LONG, TOKEN_BUDGET, THREADS, DEVICE];

    /// Default options, with windows of 4 tokens sharing 2 with the previous one.
    fn embedding() -> Embedding {
        let mut diag = Diagnostics::new("test", "");
        let mut e = Embedding::from_options(&Options::defaults("test", SPEC), &mut diag)
            .expect("default options");
        e.overlap = 2;
        e
    }

    /// Words "1" to "6" whose rows are [n, 1]; the model's window is 6 tokens, 4 of text.
    fn numbers() -> FakeEncoder {
        let words = ["1", "2", "3", "4", "5", "6"];
        let words = (1..=6)
            .map(|n| (words[n - 1], vec![n as f32, 1.0]))
            .collect();
        FakeEncoder::new(words, 6)
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    // A text of 6 tokens takes windows 0..4 and 2..6; mean pooling averages every row of both
    // ([CLS], tokens, [SEP]), the shared tokens counted once per window. A short text in the
    // same batch keeps its own vector.
    #[test]
    fn mean_pools_every_window() {
        let spec = embedding();
        let mut worker = spec.worker(Box::new(numbers()), Pooling::Mean, false);
        let out = worker.embed(&["1 2 3 4 5 6", "2"]).unwrap();
        let long = out[0].as_ref().unwrap();
        // Rows: [10,4] 1 2 3 4 [0,0] and [18,4] 3 4 5 6 [0,0]: sums [20, 8] and [36, 8].
        assert_eq!(long.chunks, 2);
        assert!(
            close(&long.values, &[56.0 / 12.0, 16.0 / 12.0]),
            "{:?}",
            long.values
        );
        let short = out[1].as_ref().unwrap();
        assert_eq!(short.chunks, 1);
        assert!(
            close(&short.values, &[4.0 / 3.0, 2.0 / 3.0]),
            "{:?}",
            short.values
        );
    }

    // CLS pooling takes one row per window, the [CLS] one, and `normalize` makes it unit length.
    #[test]
    fn cls_pools_window_markers() {
        let spec = embedding();
        let mut worker = spec.worker(Box::new(numbers()), Pooling::Cls, false);
        let out = worker.embed(&["1 2 3 4 5 6"]).unwrap();
        let v = out[0].as_ref().unwrap();
        assert_eq!(v.chunks, 2);
        assert!(close(&v.values, &[14.0, 4.0]), "{:?}", v.values);
        let mut worker = spec.worker(Box::new(numbers()), Pooling::Cls, true);
        let out = worker.embed(&["1 2 3 4 5 6"]).unwrap();
        let norm = 212f32.sqrt();
        let v = &out[0].as_ref().unwrap().values;
        assert!(close(v, &[14.0 / norm, 4.0 / norm]), "{v:?}");
    }

    // With `long = "error"` a text over the window fails alone, as does one that cannot be
    // tokenized; the others are embedded.
    #[test]
    fn long_and_bad_texts_fail_alone() {
        let mut spec = embedding();
        spec.pool_long = false;
        let mut worker = spec.worker(Box::new(numbers()), Pooling::Mean, false);
        let out = worker.embed(&["1 2 3 4 5 6", "1 2", "seven"]).unwrap();
        let err = out[0].as_ref().err().unwrap();
        assert!(
            err.starts_with("text has 8 tokens, more than the model's window of 6"),
            "{err}"
        );
        assert_eq!(out[1].as_ref().unwrap().chunks, 1);
        assert_eq!(out[2].as_ref().err().unwrap(), "unknown word \"seven\"");
    }

    fn item(fields: serde_json::Value) -> Item {
        let fields: Map<String, serde_json::Value> = serde_json::from_value(fields).unwrap();
        Item::new("t".into(), "t".into(), b"", fields)
    }

    // Each item gets its own vector in batch order; one without the text field fails alone; an
    // engine error fails them all.
    #[test]
    fn items_get_their_vectors() {
        let spec = embedding();
        let mut worker = spec.worker(Box::new(numbers()), Pooling::Cls, false);
        let mut batch = vec![
            item(json!({ "text": "5" })),
            item(json!({ "body": "1" })),
            item(json!({ "text": "3 4" })),
        ];
        let results = worker.embed_items(&mut batch, |item, v| {
            item.fields.insert("x".into(), json!(v.values[0]));
            Ok(())
        });
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(batch[0].fields["x"], json!(5.0));
        assert_eq!(batch[2].fields["x"], json!(7.0));
        let err = results[1].as_ref().err().unwrap();
        assert!(
            err.starts_with("no `text` text field: it is missing"),
            "{err}"
        );
        let mut broken = numbers();
        broken.fail = Some("out of memory");
        let mut worker = spec.worker(Box::new(broken), Pooling::Cls, false);
        let results = worker.embed_items(&mut batch, |_, _| Ok(()));
        for r in results {
            assert_eq!(r.err().unwrap(), "embedding failed: out of memory");
        }
    }
}
