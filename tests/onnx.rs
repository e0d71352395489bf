//! The ONNX stages on real models: `embed` (all-MiniLM-L6-v2), `classify` and `redact`'s NER
//! recognizer (Rampart PII). Needs `scripts/fetch-models.py` to have run.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::{engines, jsonl, lai, repo};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a pipeline over an input; returns the output folder's records file and the exit code.
fn run(pipeline: &Path, input: &Path, out: &Path) -> i32 {
    let _engines = engines();
    let output = lai()
        .args(["run", "-q"])
        .arg(pipeline)
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    output.status.code().unwrap_or(-1)
}

fn vector(record: &Value) -> Vec<f32> {
    record["embedding"]
        .as_array()
        .expect("an embedding list")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The npy matrix as rows (header parsed the way NumPy does: shape tuple in a dict literal).
fn read_npy(path: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap();
    let dims: Vec<usize> = shape
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let data = &bytes[10 + header_len..];
    assert_eq!(
        data.len(),
        dims[0] * dims[1] * 4,
        "npy data size matches its shape"
    );
    data.chunks_exact(dims[1] * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
        .collect()
}

// Embeddings: unit length, 384 numbers, the npy rows equal the JSONL vectors; a text is
// embedded the same alone and among others of other lengths (padding never leaks in); related
// texts are nearer than unrelated ones.
#[test]
fn embed_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "The invoice was paid twice, please refund one payment.",
        "I was charged two times for the same bill and want my money back.",
        "The hiking trail follows the river up to a waterfall.",
        "ok",
        "A much longer text about the quarterly results of the company, which grew in every region \
         except the north, where sales fell because two large customers moved to a competitor.",
    ];
    let lines: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}\n", serde_json::json!({"id": i, "text": t})))
        .collect();
    let input = write(dir.path(), "in.jsonl", &lines);
    let alone = write(
        dir.path(),
        "alone.jsonl",
        &format!("{}\n", serde_json::json!({"id": 0, "text": texts[0]})),
    );
    let out = dir.path().join("out");
    assert_eq!(run(&repo("pipelines/embed.toml"), &input, &out), 0);
    let records = jsonl(&out.join("embeddings.jsonl"));
    assert_eq!(records.len(), texts.len());
    let vectors: Vec<Vec<f32>> = records.iter().map(vector).collect();
    for v in &vectors {
        assert_eq!(v.len(), 384);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert!(records.iter().all(|r| r["embedding_chunks"] == 1));
    let npy = read_npy(&out.join("embeddings.npy"));
    assert_eq!(npy.len(), texts.len());
    for (row, v) in npy.iter().zip(&vectors) {
        assert!(row.iter().zip(v).all(|(a, b)| (a - b).abs() < 1e-6));
    }
    let ids = std::fs::read_to_string(out.join("embeddings.ids.txt")).unwrap();
    assert_eq!(
        ids.lines().collect::<Vec<_>>(),
        ["\"0\"", "\"1\"", "\"2\"", "\"3\"", "\"4\""]
    );
    assert!(cosine(&vectors[0], &vectors[1]) > cosine(&vectors[0], &vectors[2]) + 0.3);

    let out_alone = dir.path().join("alone");
    assert_eq!(run(&repo("pipelines/embed.toml"), &alone, &out_alone), 0);
    let single = vector(&jsonl(&out_alone.join("embeddings.jsonl"))[0]);
    assert!(cosine(&single, &vectors[0]) > 0.99999);
}

// A text ten times longer than the model's window (256 tokens) is covered whole: 2,560
// one-token words take 12 windows of 254 with 32 shared, and a change in its last sentence
// changes its vector (a cut text would not). With `long = "error"` it fails alone.
#[test]
fn long_text_is_pooled_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let long = "the ".repeat(2560);
    let a = format!("{long}The patient was discharged in good health.");
    let b = format!("{long}Volcanic ash closed every airport in the region.");
    let lines = [
        serde_json::json!({"id": "a", "text": a}),
        serde_json::json!({"id": "b", "text": b}),
        serde_json::json!({"id": "short", "text": "A short note."}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect::<String>();
    let input = write(dir.path(), "in.jsonl", &lines);
    let out = dir.path().join("out");
    assert_eq!(run(&repo("pipelines/embed.toml"), &input, &out), 0);
    let records = jsonl(&out.join("embeddings.jsonl"));
    assert_eq!(records[0]["embedding_chunks"], 12);
    assert_eq!(records[2]["embedding_chunks"], 1);
    let (va, vb) = (vector(&records[0]), vector(&records[1]));
    assert!(cosine(&va, &vb) < 0.9999, "the last window counts");

    let shipped = std::fs::read_to_string(repo("pipelines/embed.toml")).unwrap();
    let strict = write(
        dir.path(),
        "strict.toml",
        &shipped.replace("to = \"embedding\"", "to = \"embedding\"\nlong = \"error\""),
    );
    let out = dir.path().join("strict");
    assert_eq!(run(&strict, &input, &out), 1);
    assert_eq!(jsonl(&out.join("embeddings.jsonl")).len(), 1);
    let errors = jsonl(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 2);
    let errors = errors.iter().map(Value::to_string).collect::<String>();
    assert!(errors.contains("more than the model's window"), "{errors}");
}

/// Accuracy of a classify pipeline on the shipped held-out set (labels removed from the input).
fn held_out_accuracy(pipeline: &Path, dir: &Path) -> f64 {
    let held_out = jsonl(&repo("samples/classify/held-out.jsonl"));
    let lines: String = held_out
        .iter()
        .map(|r| {
            format!(
                "{}\n",
                serde_json::json!({"id": r["id"], "text": r["text"]})
            )
        })
        .collect();
    let input = write(dir, "held-out.jsonl", &lines);
    let out = dir.join(format!(
        "out-{}",
        pipeline.file_stem().unwrap().to_string_lossy()
    ));
    assert_eq!(run(pipeline, &input, &out), 0);
    let got = jsonl(&out.join("labels.jsonl"));
    assert_eq!(got.len(), held_out.len());
    for r in &got {
        let top = r["label_top"].as_array().unwrap();
        assert_eq!(top[0]["label"], r["label"]);
        assert!(r["label_score"].as_f64().unwrap() > 0.0);
    }
    let right = got
        .iter()
        .zip(&held_out)
        .filter(|(g, h)| g["label"] == h["label"])
        .count();
    right as f64 / held_out.len() as f64
}

// Classification of the held-out tickets beats the majority-class baseline (25%: four labels,
// eight tickets each) by a wide margin: few-shot centroid and k-NN from the shipped examples,
// and zero-shot from label descriptions.
#[test]
fn classify_beats_majority() {
    let dir = tempfile::tempdir().unwrap();
    let centroid = held_out_accuracy(&repo("pipelines/classify.toml"), dir.path());
    assert!(centroid >= 0.8, "centroid accuracy {centroid}");

    let shipped = std::fs::read_to_string(repo("pipelines/classify.toml")).unwrap();
    let examples = repo("samples/classify/examples.csv");
    let knn = shipped
        .replace("method = \"centroid\"", "method = \"knn\"\nk = 5")
        .replace(
            "../samples/classify/examples.csv",
            &examples.to_string_lossy(),
        );
    let knn = held_out_accuracy(&write(dir.path(), "knn.toml", &knn), dir.path());
    assert!(knn >= 0.75, "k-NN accuracy {knn}");

    let zero_shot = shipped
        .replace(
            "examples = \"../samples/classify/examples.csv\"",
            "labels = { billing = \"invoices, charges, payments and refunds\", technical = \"software bugs, errors and crashes\", account = \"login, password, profile and user access\", shipping = \"parcel delivery, couriers and orders in transit\" }",
        )
        .replace("method = \"centroid\"\n", "");
    let zero_shot = held_out_accuracy(&write(dir.path(), "zero.toml", &zero_shot), dir.path());
    assert!(zero_shot >= 0.6, "zero-shot accuracy {zero_shot}");
}

// Mistakes in a classify stage are found by `lai check`, naming the key and what to do.
#[test]
fn classify_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.csv", "sentence,label\nhello,a\n");
    write(
        dir.path(),
        "one.jsonl",
        "{\"text\": \"x\", \"label\": \"a\"}\n",
    );
    let cases = [
        ("", "needs `labels`"),
        ("examples = \"missing.csv\"", "cannot read"),
        ("examples = \"bad.csv\"", "no column `text`"),
        ("examples = \"one.jsonl\"", "at least two"),
        (
            "examples = \"one.jsonl\"\nlabels = { a = \"x\" }",
            "keep one",
        ),
    ];
    for (extra, message) in cases {
        let pipeline = write(
            dir.path(),
            "p.toml",
            &format!(
                "[input]\nkind = \"files\"\n\n[[stage]]\nuse = \"classify\"\n{extra}\n\n[[output]]\nkind = \"jsonl\"\n"
            ),
        );
        let output = lai().arg("check").arg(&pipeline).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra}: {stderr}");
        assert!(
            stderr.contains(message) && stderr.contains("p.toml:"),
            "{extra}: {stderr}"
        );
    }
}

// The NER model finds names and addresses that no rule can, marks them as its own, and reads a
// text many times its window: a name at the very end of a long text is still redacted.
#[test]
fn ner_finds_names_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let filler =
        "We reviewed the quarterly plan and agreed on the next steps for the project. ".repeat(120);
    let records = [
        serde_json::json!({"id": "letter", "text": "Dear Margaret Thompson, your new card will be sent to 4821 Willow Creek Road, Springfield, IL 62704 next week."}),
        serde_json::json!({"id": "long", "text": format!("{filler}Signed, Jonathan Whitaker")}),
        serde_json::json!({"id": "clean", "text": "The meeting moved to Tuesday afternoon."}),
    ];
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    let input = write(dir.path(), "in.jsonl", &lines);
    let out = dir.path().join("out");
    assert_eq!(run(&repo("pipelines/redact.toml"), &input, &out), 0);
    let got = jsonl(&out.join("redacted.jsonl"));
    let letter = got[0]["text"].as_str().unwrap();
    assert!(
        !letter.contains("Margaret") && !letter.contains("Thompson"),
        "{letter}"
    );
    assert!(
        !letter.contains("Willow Creek") && !letter.contains("62704"),
        "{letter}"
    );
    assert!(
        letter.contains("[PERSON]") && letter.contains("[ADDRESS]"),
        "{letter}"
    );
    let spans = got[0]["redactions"]["spans"].as_array().unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s["entity"] == "person" && s["source"] == "ner")
    );
    let long = got[1]["text"].as_str().unwrap();
    assert!(
        long.ends_with("Signed, [PERSON]"),
        "{}",
        &long[long.len() - 60..]
    );
    assert_eq!(got[2]["text"], "The meeting moved to Tuesday afternoon.");
    assert_eq!(got[2]["redactions"]["count"], 0);
}

// The shipped CSV pipeline: every ticket of samples/tickets.csv labelled right, once in the
// Parquet table and once in the SQLite table; a rerun after a ticket changed replaces its rows.
#[test]
fn tickets_from_csv_into_parquet_and_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tickets.csv");
    std::fs::copy(repo("samples/tickets.csv"), &input).unwrap();
    let out = dir.path().join("out");
    let pipeline = repo("pipelines/classify-tickets.toml");
    type Labels = Vec<(String, String)>;
    let labels = || -> (Labels, Labels) {
        let mut parquet: Vec<(String, String)> = common::parquet_rows(&out.join("tickets.parquet"))
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().into(),
                    r["label"].as_str().unwrap().into(),
                )
            })
            .collect();
        parquet.sort();
        let db = rusqlite::Connection::open(out.join("tickets.sqlite")).unwrap();
        let sqlite = db
            .prepare("SELECT id, label FROM tickets ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (parquet, sqlite)
    };
    assert_eq!(run(&pipeline, &input, &out), 0);
    let want: Vec<(String, String)> = [
        ("T-2001", "billing"),
        ("T-2002", "technical"),
        ("T-2003", "account"),
        ("T-2004", "shipping"),
        ("T-2005", "billing"),
        ("T-2006", "account"),
        ("T-2007", "shipping"),
        ("T-2008", "technical"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .to_vec();
    assert_eq!(labels(), (want.clone(), want.clone()));
    let csv = std::fs::read_to_string(&input).unwrap().replace(
        "Could you send me a copy of last month's invoice for my records?",
        "My parcel went to the wrong address and the courier will not redeliver.",
    );
    std::fs::write(&input, csv).unwrap();
    assert_eq!(run(&pipeline, &input, &out), 0);
    let mut changed = want;
    changed[4].1 = "shipping".into();
    assert_eq!(labels(), (changed.clone(), changed));
}
