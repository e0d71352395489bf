//! `lai models`: pulling from a loopback HTTP server the test starts itself (resume, wrong
//! hash, atomic rename), and verification of truncated or altered files.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use predicates::prelude::*;
use sha2::{Digest, Sha256};

/// A tiny HTTP/1.1 server: serves `body` at any path, honours `Range: bytes=N-`, and cuts the
/// first full-body response off halfway when `cut_first` is set. Records the Range headers.
struct Server {
    url: String,
    ranges: Arc<Mutex<Vec<String>>>,
}

fn serve(body: Vec<u8>, cut_first: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ranges);
    std::thread::spawn(move || {
        let mut first = cut_first;
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut offset = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    seen.lock().unwrap().push(v.trim().to_string());
                    offset = v.trim().trim_end_matches('-').parse().unwrap();
                }
            }
            let rest = &body[offset..];
            let head = if offset > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {offset}-{}/{}\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    rest.len()
                )
            };
            stream.write_all(head.as_bytes()).unwrap();
            let send = if first { &rest[..rest.len() / 2] } else { rest };
            first = false;
            let _ = stream.write_all(send);
            let _ = stream.flush();
        }
    });
    Server { url, ranges }
}

/// A catalog with one model `tiny` whose single file is pinned to `content`.
fn catalog(dir: &Path, content: &[u8], url: &str) -> std::path::PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(
        &path,
        format!(
            "[[model]]\nname = \"tiny\"\nengine = \"onnx\"\ndescription = \"test weights\"\nlicense = \"MIT\"\n\n\
             [[model.file]]\nrole = \"model\"\npath = \"tiny/w.bin\"\nsize = {}\nsha256 = \"{}\"\nurl = \"{url}/w.bin\"\n",
            content.len(),
            hex::encode(Sha256::digest(content))
        ),
    )
    .unwrap();
    path
}

fn lai(catalog: &Path, models: &Path) -> Command {
    let mut cmd = Command::cargo_bin("lai").unwrap();
    // No local catalog of the machine's user.
    cmd.env("XDG_CONFIG_HOME", models);
    cmd.arg("--catalog")
        .arg(catalog)
        .arg("--models-dir")
        .arg(models);
    cmd
}

fn weights() -> Vec<u8> {
    (0..3_000_000u64).map(|i| (i * 7919 % 251) as u8).collect()
}

// An interrupted transfer leaves only a .partial file; the next pull resumes with a Range request.
#[test]
fn pull_resumes_after_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let server = serve(content.clone(), true);
    let cat = catalog(dir.path(), &content, &server.url);
    let models = dir.path().join("models");
    let target = models.join("tiny/w.bin");

    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "run the same command again to resume",
        ));
    assert!(!target.exists(), "no half file under the final name");
    let partial = models.join("tiny/w.bin.partial");
    let had = std::fs::metadata(&partial).unwrap().len();
    assert!(had > 0 && had < content.len() as u64);

    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("pulled"));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert!(!partial.exists());
    assert_eq!(
        server.ranges.lock().unwrap().as_slice(),
        [format!("{had}-")]
    );

    lai(&cat, &models)
        .args(["models", "verify", "tiny"])
        .assert()
        .code(0);
    // A second pull finds the file intact and downloads nothing.
    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("present"));
}

// A source serving other bytes is rejected: nothing is left under either name.
#[test]
fn pull_rejects_wrong_hash() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let mut other = content.clone();
    other[1000] ^= 0xff;
    let server = serve(other, false);
    let cat = catalog(dir.path(), &content, &server.url);
    let models = dir.path().join("models");
    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("sha256").and(predicate::str::contains("not used")));
    assert!(!models.join("tiny/w.bin").exists());
    assert!(!models.join("tiny/w.bin.partial").exists());
}

// --mirror fetches `<mirror>/<path>`; a model with no source says how to get it.
#[test]
fn pull_from_mirror_and_without_source() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let server = serve(content.clone(), false);
    let cat = catalog(dir.path(), &content, "http://127.0.0.1:9/unreachable");
    let models = dir.path().join("models");
    lai(&cat, &models)
        .args(["models", "pull", "tiny", "--mirror", &server.url])
        .assert()
        .code(0);
    assert_eq!(std::fs::read(models.join("tiny/w.bin")).unwrap(), content);
    lai(&cat, &models)
        .args(["models", "pull", "nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no model named `nosuch`"));
}

// Truncated and byte-flipped files are reported as corrupt with both hashes; exit 1.
#[test]
fn verify_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let cat = catalog(dir.path(), &content, "http://127.0.0.1:9");
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("tiny")).unwrap();
    let target = models.join("tiny/w.bin");
    lai(&cat, &models)
        .args(["models", "list"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("missing"));
    std::fs::write(&target, &content[..1000]).unwrap();
    lai(&cat, &models)
        .args(["models", "verify", "tiny"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("1000 bytes, expected 3000000"));
    let mut flipped = content.clone();
    flipped[5] ^= 1;
    std::fs::write(&target, &flipped).unwrap();
    lai(&cat, &models)
        .args(["models", "verify", "tiny"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("corrupt (wrong sha256)").and(predicate::str::contains(
                hex::encode(Sha256::digest(&content)),
            )),
        );
}

/// A real small whisper.cpp model from the models directory, copied to `dir` (tests never write
/// to the models directory).
fn whisper_copy(dir: &Path) -> (std::path::PathBuf, String) {
    let models = models_dir();
    let copy = dir.join("my-whisper.bin");
    std::fs::copy(models.join("whisper-tiny-en/ggml-tiny.en-q8_0.bin"), &copy).unwrap();
    let sha = hex::encode(Sha256::digest(std::fs::read(&copy).unwrap()));
    (copy, sha)
}

/// A transcribe pipeline in `dir` with the given `model = ...` value, and a folder with one clip.
fn transcribe_pipeline(dir: &Path, model: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    transcribe_pipeline_with(dir, model, "vad = false")
}

/// The same with other settings of the stage (`vad`).
fn transcribe_pipeline_with(
    dir: &Path,
    model: &str,
    settings: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let pipeline = dir.join("byom.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"byom\"\n[input]\nkind = \"files\"\nglob = [\"**/*.wav\"]\n\
             [[stage]]\nuse = \"transcribe\"\nmodel = {model}\n{settings}\n\
             [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/t.jsonl\"\n"
        ),
    )
    .unwrap();
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/audio/hello.wav"),
        input.join("hello.wav"),
    )
    .unwrap();
    (pipeline, input)
}

fn run_lai(
    config_home: &Path,
    pipeline: &Path,
    input: &Path,
    out: &Path,
) -> assert_cmd::assert::Assert {
    Command::cargo_bin("lai")
        .unwrap()
        .env("XDG_CONFIG_HOME", config_home)
        .args(["run", "--progress", "never"])
        .arg(pipeline)
        .arg(input)
        .arg("-o")
        .arg(out)
        .assert()
}

/// Runs a pinned model's pipeline: no warning, the clip transcribed, and the provenance has
/// `model`'s sha256 (name or path as the run knows it, sha256).
fn assert_pinned_run(
    config: &Path,
    pipeline: &Path,
    input: &Path,
    out: &Path,
    model: (&str, &str),
) {
    run_lai(config, pipeline, input, out)
        .code(0)
        .stderr(predicate::str::contains("not pinned").not());
    let (text, models) = transcript(out);
    assert!(text.contains("london"), "{text}");
    assert_eq!(models[model.0], model.1);
}

/// The transcript and the `_lai.models` provenance of the one record in `out`.
fn transcript(out: &Path) -> (String, serde_json::Value) {
    let text = std::fs::read_to_string(out.join("t.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    (
        record["text"].as_str().unwrap().to_lowercase(),
        record["_lai"]["models"].clone(),
    )
}

// A whisper model by path runs pinned and unpinned (warning; provenance has the real sha256);
// a flipped byte is refused before whisper.cpp sees the file, exit 2, naming the file.
#[test]
fn model_by_path_pinned_unpinned_and_flipped() {
    let dir = tempfile::tempdir().unwrap();
    let (copy, sha) = whisper_copy(dir.path());
    let path = copy.display().to_string();

    let (pipeline, input) = transcribe_pipeline(
        dir.path(),
        &format!("{{ path = \"{path}\", sha256 = \"{sha}\" }}"),
    );
    let out = dir.path().join("pinned");
    assert_pinned_run(dir.path(), &pipeline, &input, &out, (&path, &sha));

    // Silero VAD by path too.
    let vad = dir.path().join("vad.bin");
    std::fs::copy(models_dir().join("silero-vad/ggml-silero-v6.2.3.bin"), &vad).unwrap();
    let vad_sha = hex::encode(Sha256::digest(std::fs::read(&vad).unwrap()));
    let (pipeline, input) = transcribe_pipeline_with(
        dir.path(),
        &format!("{{ path = \"{path}\", sha256 = \"{sha}\" }}"),
        &format!("vad = true\nvad_model = {{ path = \"vad.bin\", sha256 = \"{vad_sha}\" }}"),
    );
    let out = dir.path().join("vad");
    assert_pinned_run(
        dir.path(),
        &pipeline,
        &input,
        &out,
        (&vad.display().to_string(), &vad_sha),
    );

    // What the file says of itself is checked against the options: this one is English-only.
    let (pipeline, _) = transcribe_pipeline_with(
        dir.path(),
        "{ path = \"my-whisper.bin\" }",
        "vad = false\nlanguage = \"de\"",
    );
    Command::cargo_bin("lai")
        .unwrap()
        .arg("check")
        .arg(&pipeline)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("`language = \"de\"`, but model")
                .and(predicate::str::contains("is English-only")),
        );

    // Relative to the pipeline file's folder, no pin.
    let (pipeline, input) = transcribe_pipeline(dir.path(), "{ path = \"my-whisper.bin\" }");
    run_lai(dir.path(), &pipeline, &input, &dir.path().join("unpinned"))
        .code(0)
        .stderr(predicate::str::contains("is not pinned").and(predicate::str::contains(&sha)));
    let (text, models) = transcript(&dir.path().join("unpinned"));
    assert!(text.contains("london"), "{text}");
    assert_eq!(models[&path], sha.as_str());

    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[1_000_000] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    let (pipeline, input) = transcribe_pipeline(
        dir.path(),
        &format!("{{ path = \"{path}\", sha256 = \"{sha}\" }}"),
    );
    run_lai(dir.path(), &pipeline, &input, &dir.path().join("flipped"))
        .code(2)
        .stderr(
            predicate::str::contains(path.as_str())
                .and(predicate::str::contains("refusing to load")),
        );
    assert!(!dir.path().join("flipped/t.jsonl").exists());

    // A missing file names the key and the path; a misspelt key is a `lai check` error.
    let (pipeline, input) = transcribe_pipeline(dir.path(), "{ path = \"nowhere.bin\" }");
    run_lai(dir.path(), &pipeline, &input, &dir.path().join("missing"))
        .code(2)
        .stderr(
            predicate::str::contains("`model` in [[stage]] 1")
                .and(predicate::str::contains("nowhere.bin")),
        );
    let (pipeline, _) = transcribe_pipeline(dir.path(), "{ path = \"w.bin\", sha265 = \"x\" }");
    Command::cargo_bin("lai")
        .unwrap()
        .arg("check")
        .arg(&pipeline)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `sha256`?"));
}

// `lai models add` pins a model in the local catalog; `list` says where it comes from, next to
// the built-ins, and a pipeline names it.
#[test]
fn models_add_list_and_run_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (copy, sha) = whisper_copy(dir.path());
    let config = dir.path().join("config");
    let lai = || {
        let mut cmd = Command::cargo_bin("lai").unwrap();
        cmd.env("XDG_CONFIG_HOME", &config);
        cmd
    };
    lai()
        .args(["models", "add", "my-whisper"])
        .arg(&copy)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("added `my-whisper`"));
    let overlay = config.join("lai/models.toml");
    let written = std::fs::read_to_string(&overlay).unwrap();
    assert!(
        written.contains(&sha) && written.contains("engine = \"whisper\""),
        "{written}"
    );
    lai().args(["models", "list"]).assert().code(0).stdout(
        predicate::str::contains("my-whisper")
            .and(predicate::str::contains(format!(
                "from: {}",
                overlay.display()
            )))
            .and(predicate::str::contains("from: built-in")),
    );
    let (pipeline, input) = transcribe_pipeline(dir.path(), "\"my-whisper\"");
    let out = dir.path().join("out");
    assert_pinned_run(&config, &pipeline, &input, &out, ("my-whisper", &sha));
    // An ONNX model without its tokenizer is refused with what to add.
    lai()
        .args(["models", "add", "enc"])
        .arg(dir.path().join("model.onnx"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tokenizer.json"));
}

/// The models directory the tests read real models from.
fn models_dir() -> std::path::PathBuf {
    std::env::var_os("LAI_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap()).join(".local/share/lai/models")
        })
}

/// A pipeline of redact (NER), embed and llm over JSONL, each given `model` by the caller.
fn text_pipeline(
    dir: &Path,
    name: &str,
    ner: &str,
    embedder: &str,
    llm: &str,
) -> std::path::PathBuf {
    let pipeline = dir.join(format!("{name}.toml"));
    std::fs::write(
        &pipeline,
        format!(
            "name = \"{name}\"\n[input]\nkind = \"files\"\nglob = [\"**/*.jsonl\"]\n\
             [[stage]]\nuse = \"redact\"\nner_model = {ner}\n\
             [[stage]]\nuse = \"embed\"\nmodel = {embedder}\n\
             [[stage]]\nuse = \"llm\"\nmodel = {llm}\ntask = \"classify\"\nchoices = [\"billing\", \"medical\"]\n\
             [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/r.jsonl\"\n"
        ),
    )
    .unwrap();
    pipeline
}

/// The records of a run's `r.jsonl`, by id.
fn records(out: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(out.join("r.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (r["id"].as_str().unwrap().to_string(), r)
        })
        .collect()
}

// The text engines by path, with no catalog entry: the NER model with its config, an embedder
// whose window, pooling and normalization are read from the sentence-transformers files beside
// it (a `lai check` error names `max_tokens`, then `pooling`, while they are missing), and a
// GGUF. Each gives what the same model by catalog name gives, and provenance has its sha256.
#[test]
fn text_models_by_path_match_the_catalogs() {
    let dir = tempfile::tempdir().unwrap();
    let models = models_dir();
    let copy = |from: &str, to: &str| {
        let to = dir.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(models.join(from), &to).unwrap();
        hex::encode(Sha256::digest(std::fs::read(&to).unwrap()))
    };
    copy("rampart-pii/model_int8.onnx", "ner/model.onnx");
    copy("rampart-pii/tokenizer.json", "ner/tokenizer.json");
    copy("rampart-pii/config.json", "ner/config.json");
    let embedder_sha = copy("all-minilm-l6-v2/model-fp32.onnx", "minilm/onnx/model.onnx");
    copy("all-minilm-l6-v2/tokenizer.json", "minilm/tokenizer.json");
    let llm_sha = copy(
        "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
        "smol.gguf",
    );
    let by_path = text_pipeline(
        dir.path(),
        "by-path",
        "{ path = \"ner/model.onnx\", tokenizer = \"ner/tokenizer.json\", config = \"ner/config.json\" }",
        "{ path = \"minilm/onnx/model.onnx\", tokenizer = \"minilm/tokenizer.json\" }",
        &format!("{{ path = \"smol.gguf\", sha256 = \"{llm_sha}\" }}"),
    );
    let by_name = text_pipeline(
        dir.path(),
        "by-name",
        "\"rampart-pii\"",
        "\"all-minilm-l6-v2\"",
        "\"smollm2-135m-instruct\"",
    );
    let check = || {
        Command::cargo_bin("lai")
            .unwrap()
            .arg("check")
            .arg(&by_path)
            .assert()
    };
    check()
        .code(2)
        .stderr(predicate::str::contains("set `max_tokens`"));
    let write = |name: &str, text: &str| {
        let path = dir.path().join("minilm").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "sentence_bert_config.json",
        r#"{"max_seq_length": 256, "do_lower_case": false}"#,
    );
    check()
        .code(2)
        .stderr(predicate::str::contains("set `pooling = \"mean\"`"));
    write(
        "1_Pooling/config.json",
        r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}"#,
    );
    write(
        "modules.json",
        r#"[{"idx": 0, "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "type": "sentence_transformers.models.Normalize"}]"#,
    );
    check().code(0);

    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("notes.jsonl"),
        "{\"id\": \"a\", \"text\": \"Please ask Maria Gonzalez in accounts why invoice 4471 was charged twice.\"}\n\
         {\"id\": \"b\", \"text\": \"The patient reported chest pain and was given aspirin.\"}\n",
    )
    .unwrap();
    let run = |pipeline: &Path, out: &str| {
        run_lai(dir.path(), pipeline, &input, &dir.path().join(out)).code(0);
        records(&dir.path().join(out))
    };
    let path_records = run(&by_path, "by-path-out");
    let name_records = run(&by_name, "by-name-out");
    assert_eq!(path_records.len(), 2);
    for (id, r) in &path_records {
        let same = &name_records[id];
        assert_eq!(
            r["text"], same["text"],
            "{id}: redaction by path and by name"
        );
        assert!(
            ["billing", "medical"].contains(&r["label"].as_str().unwrap_or_default()),
            "{r}"
        );
        assert_eq!(
            r["label"], same["label"],
            "{id}: classify by path and by name"
        );
        let (a, b) = (
            r["embedding"].as_array().unwrap(),
            same["embedding"].as_array().unwrap(),
        );
        assert_eq!(a.len(), 384);
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap())
            .sum();
        assert!(
            dot > 0.9999,
            "{id}: cosine {dot} between the embeddings by path and by name"
        );
    }
    let redacted = path_records["a"]["text"].as_str().unwrap();
    assert!(
        !redacted.contains("Maria") && !redacted.contains("Gonzalez"),
        "{redacted}"
    );
    let provenance = &path_records["a"]["_lai"]["models"];
    let key = |rel: &str| dir.path().join(rel).display().to_string();
    assert_eq!(
        provenance[&key("minilm/onnx/model.onnx")],
        embedder_sha.as_str()
    );
    assert_eq!(provenance[&key("smol.gguf")], llm_sha.as_str());
}
