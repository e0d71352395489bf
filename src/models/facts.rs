//! What a model file says about itself, read from its header without loading it: whether a
//! whisper.cpp model is multilingual, a GGUF model's chat template and training context. Stages
//! check their options against these facts before a run (and in `lai check`), so a model brought
//! by path needs no hand-written settings, and a setting it cannot honour is refused by name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};

/// The facts of one model's main file.
#[derive(Clone, Debug, PartialEq)]
pub enum Facts {
    /// A whisper.cpp ggml model.
    Whisper {
        /// Its vocabulary has the language tokens (whisper.cpp: `n_vocab >= 51865`).
        multilingual: bool,
    },
    /// A GGUF model for llama.cpp.
    Gguf {
        architecture: String,
        /// `<architecture>.context_length`: the context it was trained for.
        context_length: Option<u64>,
        /// `tokenizer.chat_template` is present.
        chat_template: bool,
    },
    /// Nothing read (ONNX models are checked by ONNX Runtime when they load).
    Unread,
}

/// The facts of every model of a run, by the name the run knows it by.
#[derive(Default)]
pub struct ModelFacts(HashMap<String, Facts>);

impl ModelFacts {
    /// Reads each model's main file, given as (name, engine, path); a file that is not what
    /// its engine reads is an error naming the model and the file.
    pub fn read<'a>(
        models: impl IntoIterator<Item = (&'a str, &'a str, &'a Path)>,
    ) -> anyhow::Result<ModelFacts> {
        let mut facts = HashMap::new();
        for (name, engine, path) in models {
            let read = Facts::read(engine, path).with_context(|| {
                format!(
                    "model `{name}`: {} is not a {engine} model file",
                    path.display()
                )
            })?;
            facts.insert(name.to_string(), read);
        }
        Ok(ModelFacts(facts))
    }

    /// The facts of model `name`; `None` when it was not read (not installed at `lai check`).
    pub fn get(&self, name: &str) -> Option<&Facts> {
        self.0.get(name)
    }
}

/// whisper.cpp's legacy ggml magic, "ggml" as a little-endian u32.
const GGML_MAGIC: u32 = 0x6767_6d6c;
/// The smallest multilingual vocabulary (whisper.cpp's test for language tokens).
const MULTILINGUAL_VOCAB: i32 = 51865;

impl Facts {
    pub fn read(engine: &str, path: &Path) -> anyhow::Result<Facts> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut r = BufReader::new(file);
        match engine {
            "whisper" => whisper(&mut r),
            "llama" => gguf(&mut r),
            _ => Ok(Facts::Unread),
        }
    }
}

fn whisper(r: &mut impl Read) -> anyhow::Result<Facts> {
    let magic = u32::from_le_bytes(bytes(r)?);
    if magic != GGML_MAGIC {
        bail!("it does not start with whisper.cpp's ggml magic (found {magic:#010x})");
    }
    let n_vocab = i32::from_le_bytes(bytes(r)?);
    Ok(Facts::Whisper {
        multilingual: n_vocab >= MULTILINGUAL_VOCAB,
    })
}

/// GGUF value types (ggml's `gguf_type`).
const GGUF_STRING: u32 = 8;
const GGUF_ARRAY: u32 = 9;
/// Keys and strings longer than this are not a GGUF header (a chat template is a few KB).
const MAX_STRING: u64 = 16 << 20;

fn gguf(r: &mut impl Read) -> anyhow::Result<Facts> {
    if &bytes::<4>(r)? != b"GGUF" {
        bail!("it does not start with the GGUF magic");
    }
    let version = u32::from_le_bytes(bytes(r)?);
    if version < 2 {
        bail!("GGUF version {version} is too old for llama.cpp; convert the model again");
    }
    let _tensors = u64::from_le_bytes(bytes(r)?);
    let entries = u64::from_le_bytes(bytes(r)?);
    let mut architecture = String::new();
    let mut context = None;
    let mut chat_template = false;
    let mut lengths = HashMap::new();
    for _ in 0..entries {
        let key = string(r)?;
        let ty = u32::from_le_bytes(bytes(r)?);
        match (key.as_str(), ty) {
            ("general.architecture", GGUF_STRING) => architecture = string(r)?,
            ("tokenizer.chat_template", GGUF_STRING) => {
                chat_template = !string(r)?.trim().is_empty();
            }
            (k, _) if k.ends_with(".context_length") => {
                if let Some(n) = integer(r, ty)? {
                    lengths.insert(k.trim_end_matches(".context_length").to_string(), n);
                }
            }
            _ => skip(r, ty)?,
        }
    }
    if let Some(n) = lengths.get(&architecture) {
        context = Some(*n);
    }
    Ok(Facts::Gguf {
        architecture,
        context_length: context,
        chat_template,
    })
}

fn bytes<const N: usize>(r: &mut impl Read) -> anyhow::Result<[u8; N]> {
    let mut b = [0; N];
    r.read_exact(&mut b).context("the header ends early")?;
    Ok(b)
}

fn string(r: &mut impl Read) -> anyhow::Result<String> {
    let len = u64::from_le_bytes(bytes(r)?);
    if len > MAX_STRING {
        bail!("a header string of {len} bytes: the file is damaged");
    }
    let mut b = vec![0; len as usize];
    r.read_exact(&mut b).context("the header ends early")?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// An unsigned or signed integer value; `None` for other types (skipped).
fn integer(r: &mut impl Read, ty: u32) -> anyhow::Result<Option<u64>> {
    Ok(match ty {
        4 => Some(u64::from(u32::from_le_bytes(bytes(r)?))),
        5 => u64::try_from(i32::from_le_bytes(bytes(r)?)).ok(),
        10 => Some(u64::from_le_bytes(bytes(r)?)),
        11 => u64::try_from(i64::from_le_bytes(bytes(r)?)).ok(),
        _ => {
            skip(r, ty)?;
            None
        }
    })
}

fn skip(r: &mut impl Read, ty: u32) -> anyhow::Result<()> {
    let size = match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        GGUF_STRING => {
            let len = u64::from_le_bytes(bytes(r)?);
            if len > MAX_STRING {
                bail!("a header string of {len} bytes: the file is damaged");
            }
            len
        }
        GGUF_ARRAY => {
            let ty = u32::from_le_bytes(bytes(r)?);
            let n = u64::from_le_bytes(bytes(r)?);
            if ty == GGUF_ARRAY || n > 1 << 32 {
                bail!("a header array of {n} entries of type {ty}: the file is damaged");
            }
            for _ in 0..n {
                skip(r, ty)?;
            }
            return Ok(());
        }
        _ => bail!("unknown GGUF value type {ty}: the file is damaged or newer than lai"),
    };
    let copied = std::io::copy(&mut r.take(size), &mut std::io::sink())?;
    if copied < size {
        bail!("the header ends early");
    }
    Ok(())
}

/// How a text encoder brought by path is used, from the configuration files a
/// sentence-transformers or Hugging Face export keeps beside the graph (in the graph's folder or
/// the one above it, as in `onnx/model.onnx`): `sentence_bert_config.json` (window),
/// `1_Pooling/config.json` (pooling), `modules.json` (normalization) and `config.json`
/// (`max_position_embeddings`, when nothing else gives the window).
#[derive(Debug, Default, PartialEq)]
pub struct EncoderHints {
    pub max_tokens: Option<usize>,
    pub pooling: Option<String>,
    pub normalize: Option<bool>,
}

impl EncoderHints {
    pub fn beside(files: &[&Path]) -> EncoderHints {
        let mut dirs: Vec<&Path> = Vec::new();
        for file in files {
            let parent = file.parent().unwrap_or(Path::new(""));
            // The folder above only for an export's `onnx/` folder, never a stranger's files.
            let above = parent.parent().filter(|_| parent.ends_with("onnx"));
            for dir in [Some(parent), above].into_iter().flatten() {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        let json = |name: &str| {
            dirs.iter().find_map(|d| {
                let text = std::fs::read_to_string(d.join(name)).ok()?;
                serde_json::from_str::<serde_json::Value>(&text).ok()
            })
        };
        let count = |v: &serde_json::Value, key: &str| {
            v.get(key)?.as_u64().and_then(|n| usize::try_from(n).ok())
        };
        // The window: the export's own, else the tokenizer's, else the position table's size
        // (RoBERTa-family tables hold two more rows than tokens: positions start at pad + 1).
        let positions = || {
            let config = json("config.json")?;
            let rows = count(&config, "max_position_embeddings")?;
            let roberta = config
                .get("model_type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| t.contains("roberta") || t == "camembert");
            Some(if roberta {
                rows.saturating_sub(2)
            } else {
                rows
            })
        };
        let max_tokens = json("sentence_bert_config.json")
            .and_then(|c| count(&c, "max_seq_length"))
            .or_else(|| {
                json("tokenizer_config.json")
                    .and_then(|c| count(&c, "model_max_length"))
                    .filter(|&n| n <= 1 << 20)
            })
            .or_else(positions);
        let pooling = json("1_Pooling/config.json").map(|c| {
            let on = |mode: &str| c.get(mode).and_then(serde_json::Value::as_bool) == Some(true);
            match () {
                () if on("pooling_mode_mean_tokens") => "mean".to_string(),
                () if on("pooling_mode_cls_token") => "cls".to_string(),
                () => [
                    "max_tokens",
                    "lasttoken",
                    "weightedmean_tokens",
                    "mean_sqrt_len_tokens",
                ]
                .into_iter()
                .find(|m| on(&format!("pooling_mode_{m}")))
                .unwrap_or("unknown")
                .to_string(),
            }
        });
        let normalize = json("modules.json").and_then(|m| {
            let modules = m.as_array()?;
            Some(modules.iter().any(|module| {
                module
                    .get("type")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| t.ends_with(".Normalize"))
            }))
        });
        EncoderHints {
            max_tokens,
            pooling,
            normalize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf_string(s: &str) -> Vec<u8> {
        let mut b = (s.len() as u64).to_le_bytes().to_vec();
        b.extend(s.as_bytes());
        b
    }

    fn header(entries: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((entries.len() as u64).to_le_bytes());
        for (key, ty, value) in entries {
            b.extend(gguf_string(key));
            b.extend(ty.to_le_bytes());
            b.extend(value);
        }
        b
    }

    #[test]
    fn gguf_facts_skip_arrays_and_find_the_architectures_context() {
        let mut tokens = GGUF_STRING.to_le_bytes().to_vec();
        tokens.extend(2u64.to_le_bytes());
        tokens.extend(gguf_string("<s>"));
        tokens.extend(gguf_string("hello"));
        let file = header(&[
            ("general.architecture", GGUF_STRING, gguf_string("llama")),
            ("other.context_length", 4, 99u32.to_le_bytes().to_vec()),
            ("llama.context_length", 4, 8192u32.to_le_bytes().to_vec()),
            ("tokenizer.ggml.tokens", GGUF_ARRAY, tokens),
            ("general.file_type", 4, 3u32.to_le_bytes().to_vec()),
            (
                "tokenizer.chat_template",
                GGUF_STRING,
                gguf_string("{{ x }}"),
            ),
        ]);
        assert_eq!(
            gguf(&mut file.as_slice()).unwrap(),
            Facts::Gguf {
                architecture: "llama".into(),
                context_length: Some(8192),
                chat_template: true,
            }
        );
        let base = header(&[("general.architecture", GGUF_STRING, gguf_string("gemma3"))]);
        assert_eq!(
            gguf(&mut base.as_slice()).unwrap(),
            Facts::Gguf {
                architecture: "gemma3".into(),
                context_length: None,
                chat_template: false,
            }
        );
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let file = header(&[("general.architecture", GGUF_STRING, gguf_string("llama"))]);
        for cut in 0..file.len() {
            assert!(gguf(&mut &file[..cut]).is_err(), "cut at {cut}");
        }
        let huge = header(&[("k", GGUF_STRING, u64::MAX.to_le_bytes().to_vec())]);
        assert!(gguf(&mut huge.as_slice()).is_err());
        assert!(gguf(&mut b"ggml0000".as_slice()).is_err());
    }

    #[test]
    fn encoder_hints_come_from_the_export_beside_the_graph() {
        let root = tempfile::tempdir().unwrap();
        let onnx = root.path().join("onnx");
        std::fs::create_dir_all(onnx.join("x")).unwrap();
        std::fs::create_dir_all(root.path().join("1_Pooling")).unwrap();
        let write = |name: &str, text: &str| std::fs::write(root.path().join(name), text).unwrap();
        let model = onnx.join("model.onnx");
        assert_eq!(EncoderHints::beside(&[&model]), EncoderHints::default());
        write("config.json", r#"{"max_position_embeddings": 512}"#);
        write(
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        );
        write(
            "modules.json",
            r#"[{"type": "sentence_transformers.models.Transformer"}]"#,
        );
        assert_eq!(
            EncoderHints::beside(&[&model]),
            EncoderHints {
                max_tokens: Some(512),
                pooling: Some("cls".into()),
                normalize: Some(false),
            }
        );
        write("sentence_bert_config.json", r#"{"max_seq_length": 256}"#);
        write(
            "1_Pooling/config.json",
            r#"{"pooling_mode_max_tokens": true}"#,
        );
        write(
            "modules.json",
            r#"[{"type": "sentence_transformers.models.Normalize"}]"#,
        );
        assert_eq!(
            EncoderHints::beside(&[&model]),
            EncoderHints {
                max_tokens: Some(256),
                pooling: Some("max_tokens".into()),
                normalize: Some(true),
            }
        );
        // A RoBERTa-family table has two rows more than the window; the tokenizer's own
        // limit comes first.
        std::fs::remove_file(root.path().join("sentence_bert_config.json")).unwrap();
        write(
            "config.json",
            r#"{"model_type": "xlm-roberta", "max_position_embeddings": 514}"#,
        );
        assert_eq!(EncoderHints::beside(&[&model]).max_tokens, Some(512));
        write("tokenizer_config.json", r#"{"model_max_length": 256}"#);
        assert_eq!(EncoderHints::beside(&[&model]).max_tokens, Some(256));
        // Above a folder that is not an export's `onnx/`, nothing is read.
        let elsewhere = root.path().join("x").join("model.onnx");
        std::fs::create_dir_all(root.path().join("x")).unwrap();
        assert_eq!(EncoderHints::beside(&[&elsewhere]), EncoderHints::default());
    }

    #[test]
    fn whisper_vocabulary_says_multilingual() {
        let file = |n_vocab: i32| {
            let mut b = GGML_MAGIC.to_le_bytes().to_vec();
            b.extend(n_vocab.to_le_bytes());
            b
        };
        let facts = |n| whisper(&mut file(n).as_slice()).unwrap();
        assert_eq!(
            facts(51864),
            Facts::Whisper {
                multilingual: false
            }
        );
        assert_eq!(facts(51865), Facts::Whisper { multilingual: true });
        assert_eq!(facts(51866), Facts::Whisper { multilingual: true });
        assert!(whisper(&mut b"GGUF\x03\0\0\0".as_slice()).is_err());
    }
}
