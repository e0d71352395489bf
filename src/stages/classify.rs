//! The `classify` stage: a label per item by sentence-embedding similarity.
//!
//! Zero-shot: each label has a description (`labels = { billing = "a question about ..." }`),
//! and an item gets the label whose description's vector is nearest (cosine). Few-shot: an
//! `examples` file (CSV or JSONL, text and label columns) gives labelled texts; `method =
//! "centroid"` compares the item with each label's mean example vector, `"knn"` lets the `k`
//! nearest examples vote, weighted by similarity. The reference vectors are computed once per run
//! by the first worker. Outputs: `<to>` (the label), `<to>_score` (cosine for zero-shot and
//! centroid; the winning share of the neighbours' similarity for knn) and `<to>_top`, the best
//! `top_k` labels with scores. An LLM's judgement instead is the llm stage's `choices`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::encoder::{EmbedWorker, Embedding, FIELD, LONG, MODEL, OVERLAP, THREADS, TOKEN_BUDGET};
use super::common::{MAX_WAIT, Shared, TIMEOUT, batch_size, workers};
use crate::component::StartContext;
use crate::component::{Stage, Worker};
use crate::device::DEVICE;
use crate::item::Item;
use crate::options::ComponentKind;
use crate::options::{Default, Diagnostics, OptionSpec, Options, Ty, opt};

pub const KIND: ComponentKind<dyn Stage> = ComponentKind {
    name: "classify",
    doc: "A label per item by embedding similarity: zero-shot from label descriptions, or few-shot from a labelled examples file (nearest centroid or k-NN).",
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
        Default::Value("\"label\""),
        "Output field for the label; `<to>_score` and `<to>_top` hold the score and the best labels.",
    ),
    opt(
        "labels",
        Ty::StrTable,
        Default::Unset,
        "Zero-shot: label = description, e.g. `{ billing = \"invoices, payments and refunds\" }`.",
    ),
    opt(
        "examples",
        Ty::Str,
        Default::Unset,
        "Few-shot: a CSV or JSONL file of labelled texts (relative to the pipeline file).",
    ),
    opt(
        "text_column",
        Ty::Str,
        Default::Value("\"text\""),
        "Column (CSV) or field (JSONL) of an example's text.",
    ),
    opt(
        "label_column",
        Ty::Str,
        Default::Value("\"label\""),
        "Column (CSV) or field (JSONL) of an example's label.",
    ),
    opt(
        "method",
        Ty::Choice(&["centroid", "knn"]),
        Default::Value("\"centroid\""),
        "Few-shot: nearest label centroid, or a vote of the `k` nearest examples.",
    ),
    opt(
        "k",
        Ty::Int { min: 1, max: 1000 },
        Default::Value("5"),
        "Neighbours that vote with method = \"knn\".",
    ),
    opt(
        "top_k",
        Ty::Int { min: 1, max: 100 },
        Default::Value("3"),
        "Labels listed in `<to>_top`.",
    ),
    OVERLAP,
    LONG,
    TOKEN_BUDGET,
    THREADS,
    DEVICE,
];

/// How items are compared with the references.
enum Method {
    /// One reference per label (a description or a centroid).
    Nearest,
    Knn(usize),
}

struct Classify {
    embedding: Embedding,
    to: String,
    /// Reference texts and the index of their label in `labels`.
    references: Vec<(String, usize)>,
    labels: Vec<String>,
    method: Method,
    top_k: usize,
    /// Reference vectors: one per label for `Nearest`, one per example for `Knn`.
    vectors: Shared<Vec<(Vec<f32>, usize)>>,
}

fn build(options: &Options, diag: &mut Diagnostics) -> Option<Box<dyn Stage>> {
    let ctx = &options.context;
    let described = options.str_table("labels");
    let examples = options.opt_str("examples");
    let mut labels: Vec<String> = Vec::new();
    let mut references = Vec::new();
    let mut label_index = |label: &str| match labels.iter().position(|l| l == label) {
        Some(i) => i,
        None => {
            labels.push(label.to_string());
            labels.len() - 1
        }
    };
    match (described.is_empty(), &examples) {
        (false, None) => {
            for entry in &described {
                let text = if entry.value.trim().is_empty() {
                    entry.name.clone()
                } else {
                    entry.value.clone()
                };
                references.push((text, label_index(&entry.name)));
            }
        }
        (true, Some(name)) => {
            let path = diag.relative_path(name);
            match read_examples(
                &path,
                &options.str("text_column"),
                &options.str("label_column"),
            ) {
                Ok(rows) => {
                    for (text, label) in rows {
                        references.push((text, label_index(&label)));
                    }
                }
                Err(e) => {
                    diag.error(
                        &options.span_of("examples"),
                        format!("`examples` in {ctx}: {e}"),
                    );
                    return None;
                }
            }
        }
        (false, Some(_)) => {
            diag.error(
                &options.span_of("examples"),
                format!("{ctx} has both `labels` and `examples`; keep one (zero-shot or few-shot)"),
            );
            return None;
        }
        (true, None) => {
            diag.error(
                &options.span,
                format!(
                    "{ctx} needs `labels` (label = description, zero-shot) or `examples` (a labelled CSV/JSONL file)"
                ),
            );
            return None;
        }
    }
    if labels.len() < 2 {
        diag.error(
            &options.span_of(if examples.is_some() {
                "examples"
            } else {
                "labels"
            }),
            format!(
                "{ctx} has {} label(s); classification needs at least two",
                labels.len()
            ),
        );
        return None;
    }
    let method = match (examples.is_some(), options.str("method").as_str()) {
        (true, "knn") => Method::Knn(options.usize("k")),
        _ => Method::Nearest,
    };
    Some(Box::new(Classify {
        embedding: Embedding::from_options(options, diag)?,
        to: options.str("to"),
        references,
        labels,
        method,
        top_k: options.usize("top_k"),
        vectors: Shared::default(),
    }))
}

/// (text, label) rows of a CSV (with a header) or JSONL file; errors name the line.
fn read_examples(
    path: &std::path::Path,
    text_column: &str,
    label_column: &str,
) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    let raw = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read {shown}: {e}; the path is taken relative to the pipeline file")
    })?;
    let mut rows = Vec::new();
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "ndjson");
    if is_jsonl {
        for (n, line) in raw
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let line_no = n + 1;
            let record: Value = serde_json::from_str(line)
                .map_err(|e| format!("{shown}:{line_no}: not a JSON object: {e}"))?;
            let get = |column: &str| {
                record
                    .get(column)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("{shown}:{line_no}: no string field `{column}`"))
            };
            rows.push((get(text_column)?, get(label_column)?));
        }
    } else {
        let mut reader = csv::Reader::from_reader(raw.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| format!("{shown}: {e}"))?
            .clone();
        let column = |name: &str| {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                format!(
                    "{shown}: no column `{name}` in the header ({}); set `text_column`/`label_column`",
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
        };
        let (t, l) = (column(text_column)?, column(label_column)?);
        for record in reader.records() {
            let record = record.map_err(|e| format!("{shown}: {e}"))?;
            let line_no = record.position().map_or(0, |p| p.line());
            match (record.get(t), record.get(l)) {
                (Some(text), Some(label)) if !label.trim().is_empty() => {
                    rows.push((text.to_string(), label.trim().to_string()))
                }
                _ => return Err(format!("{shown}:{line_no}: a row needs a text and a label")),
            }
        }
    }
    if rows.is_empty() {
        return Err(format!("{shown} has no examples"));
    }
    Ok(rows)
}

impl Stage for Classify {
    fn models(&self) -> Vec<crate::models::ModelRef> {
        self.embedding.models()
    }

    fn start(&self, ctx: &StartContext) -> anyhow::Result<Box<dyn Worker + '_>> {
        Ok(Box::new(self.worker(self.embedding.start(ctx)?)?))
    }
}

impl Classify {
    /// A worker that embeds with `worker`; the first one computes the reference vectors.
    fn worker<'a>(&'a self, mut worker: EmbedWorker<'a>) -> anyhow::Result<ClassifyWorker<'a>> {
        let vectors = self.vectors.get(|| self.reference_vectors(&mut worker))?;
        Ok(ClassifyWorker {
            stage: self,
            worker,
            vectors,
        })
    }

    fn reference_vectors(
        &self,
        worker: &mut EmbedWorker,
    ) -> anyhow::Result<Vec<(Vec<f32>, usize)>> {
        let texts: Vec<&str> = self.references.iter().map(|(t, _)| t.as_str()).collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for (result, (text, label)) in worker.embed(&texts)?.into_iter().zip(&self.references) {
            let vector = result.map_err(|e| anyhow::anyhow!("example {text:?}: {e}"))?;
            vectors.push((vector.values, *label));
        }
        if let Method::Knn(_) = self.method {
            return Ok(vectors);
        }
        // One unit-length mean vector per label.
        let mut sums: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        for (v, label) in vectors {
            let sum = sums.entry(label).or_insert_with(|| vec![0.0; v.len()]);
            sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
        }
        Ok(sums
            .into_iter()
            .map(|(label, mut v)| {
                normalize(&mut v);
                (v, label)
            })
            .collect())
    }

    /// Labels with scores, best first.
    fn rank(&self, vector: &[f32], references: &[(Vec<f32>, usize)]) -> Vec<(usize, f32)> {
        let mut sims: Vec<(usize, f32)> = references
            .iter()
            .map(|(r, label)| (*label, dot(vector, r)))
            .collect();
        sims.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Method::Knn(k) = self.method {
            let neighbours = &sims[..k.min(sims.len())];
            let total: f32 = neighbours.iter().map(|(_, s)| s.max(0.0)).sum();
            let mut votes = vec![0.0f32; self.labels.len()];
            for (label, s) in neighbours {
                votes[*label] += s.max(0.0) / total.max(f32::MIN_POSITIVE);
            }
            sims = votes
                .into_iter()
                .enumerate()
                .filter(|(_, v)| *v > 0.0)
                .collect();
            sims.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        sims
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

struct ClassifyWorker<'a> {
    stage: &'a Classify,
    worker: EmbedWorker<'a>,
    vectors: &'a Vec<(Vec<f32>, usize)>,
}

impl Worker for ClassifyWorker<'_> {
    fn process(&mut self, batch: &mut [Item]) -> Vec<Result<(), String>> {
        let (stage, references) = (self.stage, self.vectors);
        let to = &stage.to;
        self.worker.embed_items(batch, |item, mut vector| {
            normalize(&mut vector.values);
            let ranked = stage.rank(&vector.values, references);
            let (best, score) = ranked.first().copied().unwrap_or((0, 0.0));
            let round = |x: f32| (f64::from(x) * 10_000.0).round() / 10_000.0;
            let top: Vec<Value> = ranked
                .iter()
                .take(stage.top_k)
                .map(|(l, s)| json!({ "label": stage.labels[*l], "score": round(*s) }))
                .collect();
            item.fields.insert(to.clone(), json!(stage.labels[best]));
            item.fields
                .insert(format!("{to}_score"), json!(round(score)));
            item.fields.insert(format!("{to}_top"), Value::Array(top));
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

    /// A unit vector at `degrees` from the first axis.
    fn angle(degrees: f32) -> Vec<f32> {
        let r = degrees.to_radians();
        vec![r.cos(), r.sin()]
    }

    /// Each word's vector points at its angle: "a0" and "a90" are label a's examples (centroid
    /// at 45°), "b15" and "b25" label b's (centroid at 20°); the item "x5" sits at 5°, nearest
    /// to the single example "a0" but to b's centroid.
    fn engine() -> FakeEncoder {
        let words = vec![
            ("a0", angle(0.0)),
            ("a90", angle(90.0)),
            ("b15", angle(15.0)),
            ("b25", angle(25.0)),
            ("x5", angle(5.0)),
            ("x60", angle(60.0)),
        ];
        FakeEncoder::new(words, 16)
    }

    /// A classifier of the examples, as `build` makes it from an examples file.
    fn stage(examples: &[(&str, &str)], method: Method) -> Classify {
        let mut diag = Diagnostics::new("test", "");
        let options = Options::defaults("test", OPTIONS);
        let mut labels: Vec<String> = Vec::new();
        let mut references = Vec::new();
        for (text, label) in examples {
            if !labels.iter().any(|l| l == label) {
                labels.push(label.to_string());
            }
            let index = labels.iter().position(|l| l == label).unwrap();
            references.push((text.to_string(), index));
        }
        Classify {
            embedding: Embedding::from_options(&options, &mut diag).unwrap(),
            to: "label".into(),
            references,
            labels,
            method,
            top_k: 3,
            vectors: Shared::default(),
        }
    }

    const EXAMPLES: &[(&str, &str)] = &[("a0", "a"), ("a90", "a"), ("b15", "b"), ("b25", "b")];

    /// The item's `label`, `label_score` and `label_top` for the text.
    fn classify(stage: &Classify, text: &str) -> (Value, f64, Vec<(String, f64)>) {
        let embed = stage
            .embedding
            .worker(Box::new(engine()), Pooling::Mean, true);
        let mut worker = stage.worker(embed).unwrap();
        let mut fields = Map::new();
        fields.insert("text".into(), json!(text));
        let mut batch = [Item::new("t".into(), "t".into(), b"", fields)];
        assert!(worker.process(&mut batch)[0].is_ok());
        let f = &batch[0].fields;
        let top = f["label_top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let label = t["label"].as_str().unwrap().to_string();
                (label, t["score"].as_f64().unwrap())
            })
            .collect();
        (f["label"].clone(), f["label_score"].as_f64().unwrap(), top)
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 2e-4
    }

    // Centroid: the item goes to the label whose mean example is nearest (b at 20°, cos 15°),
    // though its single nearest example is a's; a's centroid at 45° follows in the top list.
    #[test]
    fn centroid_picks_nearest_mean() {
        let stage = stage(EXAMPLES, Method::Nearest);
        let (label, score, top) = classify(&stage, "x5");
        assert_eq!(label, json!("b"));
        assert!(near(score, 0.9659), "{score}");
        assert_eq!(top.len(), 2);
        assert_eq!(top[1].0, "a");
        assert!(near(top[1].1, 0.7660), "{top:?}");
        // At 60° the item is nearer a's centroid (15° away) than b's (40° away).
        let (label, _, _) = classify(&stage, "x60");
        assert_eq!(label, json!("a"));
    }

    // k-NN: with k = 1 the nearest example decides alone (a, the whole vote); with k = 3 the
    // two b examples outvote it, b's score its share of the neighbours' similarity.
    #[test]
    fn knn_neighbours_vote() {
        let (label, score, top) = classify(&stage(EXAMPLES, Method::Knn(1)), "x5");
        assert_eq!(label, json!("a"));
        assert!(near(score, 1.0), "{score}");
        assert_eq!(top.len(), 1, "a label without votes is not listed: {top:?}");
        let (label, score, top) = classify(&stage(EXAMPLES, Method::Knn(3)), "x5");
        assert_eq!(label, json!("b"));
        // cos 10° + cos 20° over that plus cos 5°.
        assert!(near(score, 0.6589), "{score}");
        assert_eq!(top[1].0, "a");
        assert!(near(top[1].1, 0.3411), "{top:?}");
    }

    // Zero-shot: one description per label, the nearest wins.
    #[test]
    fn zero_shot_picks_nearest_description() {
        let stage = stage(&[("b25", "b"), ("a90", "a")], Method::Nearest);
        let (label, _, top) = classify(&stage, "x60");
        assert_eq!(label, json!("a"));
        assert_eq!(top[1].0, "b");
    }

    // An example that cannot be embedded stops the worker's start, naming the example.
    #[test]
    fn bad_example_is_named() {
        let stage = stage(&[("a0", "a"), ("unheard", "b")], Method::Nearest);
        let embed = stage
            .embedding
            .worker(Box::new(engine()), Pooling::Mean, true);
        let Err(e) = stage.worker(embed) else {
            panic!("an unknown word cannot be embedded");
        };
        assert_eq!(
            e.to_string(),
            "example \"unheard\": unknown word \"unheard\""
        );
    }
}
