//! Models: the catalog (`models.toml`, built into the binary, with a local overlay merged over
//! it), models given by path in a pipeline, the models directory, and verification, so that no
//! native engine ever sees a file whose sha256 does not match.
//!
//! A stage names its models (`ModelRef`: a catalog name, or files by path); before a run starts,
//! `ModelStore::resolve` finds each file and checks size and sha256 (unless the user opted out
//! with `--no-verify`, which the run report records). A model by path becomes an in-memory
//! catalog entry and goes through the same checks. This module never loads a model.

pub mod facts;
pub mod pull;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::options::tree::{Node, Value};
use crate::options::{Diagnostics, ModelShape, Options};

/// The catalog shipped with this build.
const BUILTIN_CATALOG: &str = include_str!("../../models.toml");

/// Where the built-in catalog's entries come from, for `lai models list`.
pub const BUILTIN: &str = "built-in";

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    model: Vec<ModelEntry>,
}

/// One `[[model]]` of the catalog.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub engine: String,
    pub description: String,
    pub license: String,
    /// Credit a licence requires (CC-BY), shown by `lai models list`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// How an ONNX text encoder is used: its window and, for sentence embeddings, pooling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderConfig>,
    /// `"cuda"` for a model only the CUDA build uses (ONNX Runtime's CUDA library).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// The package-registry source; read by `scripts/fetch-models.py`, not by lai.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pypi: Option<toml::Value>,
    pub file: Vec<FileEntry>,
    /// Which catalog file it came from: `BUILTIN` or a path; an overlay's entry replaces a
    /// built-in one of the same name.
    #[serde(skip)]
    pub origin: String,
}

/// `[model.encoder]`: facts about a BERT-style ONNX model that its files do not state.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Most tokens per window, [CLS] and [SEP] included (longer texts are split, never cut).
    pub max_tokens: usize,
    /// Sentence embeddings: "mean" over the tokens or the "cls" token's output.
    pub pooling: Option<String>,
    /// Sentence embeddings: scale to unit length.
    #[serde(default)]
    pub normalize: bool,
}

/// One file of a model.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub role: String,
    /// Relative to the models directory, or absolute (a file the user brings).
    pub path: String,
    pub size: u64,
    /// Empty for a file the user brings without a pin: the run hashes it, records the hash and
    /// is marked unverified.
    #[serde(default)]
    pub sha256: String,
    /// Upstream download for `lai models pull`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl ModelEntry {
    pub fn size(&self) -> u64 {
        self.file.iter().map(|f| f.size).sum()
    }

    /// Whether this binary uses the model: a `build = "cuda"` model serves the CUDA build only.
    pub fn for_this_build(&self) -> bool {
        self.build.as_deref() != Some("cuda") || cfg!(feature = "cuda")
    }
}

pub struct Catalog {
    pub models: Vec<ModelEntry>,
    /// Where it came from, for messages: "built-in" or a path.
    pub source: String,
}

impl Catalog {
    /// The built-in catalog, with the local overlay (`overlay_path`, if present) and then the
    /// file given with `--catalog` (or `$LAI_CATALOG`) merged over it: an entry of a later file
    /// replaces the earlier one of the same name.
    pub fn load(extra: Option<&Path>) -> anyhow::Result<Catalog> {
        let mut catalog = Catalog::parse(BUILTIN_CATALOG, BUILTIN)?;
        let overlay = overlay_path().filter(|p| p.exists());
        for path in overlay.as_deref().into_iter().chain(extra) {
            catalog.merge(Catalog::read(path)?);
        }
        Ok(catalog)
    }

    fn read(path: &Path) -> anyhow::Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model catalog {}", path.display()))?;
        Catalog::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, source: &str) -> anyhow::Result<Catalog> {
        let file: CatalogFile =
            toml::from_str(text).with_context(|| format!("invalid model catalog {source}"))?;
        let models = file
            .model
            .into_iter()
            .map(|m| ModelEntry {
                origin: source.to_string(),
                ..m
            })
            .collect();
        Ok(Catalog {
            models,
            source: source.to_string(),
        })
    }

    /// Adds `other`'s entries, each replacing one of the same name in place.
    fn merge(&mut self, other: Catalog) {
        for entry in other.models {
            match self.models.iter_mut().find(|m| m.name == entry.name) {
                Some(old) => *old = entry,
                None => self.models.push(entry),
            }
        }
        self.source = format!("{} + {}", self.source, other.source);
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The named models, or all when `names` is empty; an unknown name is an error.
    pub fn select(&self, names: &[String]) -> anyhow::Result<Vec<&ModelEntry>> {
        if names.is_empty() {
            return Ok(self.models.iter().filter(|m| m.for_this_build()).collect());
        }
        names
            .iter()
            .map(|n| {
                self.get(n).ok_or_else(|| {
                    let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                    anyhow::anyhow!(
                        "no model named `{n}` in the {} catalog; {}",
                        self.source,
                        crate::options::suggest(n, &known)
                    )
                })
            })
            .collect()
    }
}

/// The local catalog overlay: `$XDG_CONFIG_HOME/lai/models.toml`, else
/// `~/.config/lai/models.toml`; `None` when neither variable is set.
pub fn overlay_path() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let config = env("XDG_CONFIG_HOME").or_else(|| Some(env("HOME")?.join(".config")))?;
    Some(config.join("lai/models.toml"))
}

/// Writes `entry` into the catalog file at `path` (created if absent), replacing an entry of
/// the same name. The file is rewritten whole (its comments are not kept), through a temporary
/// file and a rename, so a crash leaves the old or the new file.
pub fn write_entry(path: &Path, entry: ModelEntry) -> anyhow::Result<()> {
    let mut file = if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model catalog {}", path.display()))?;
        toml::from_str::<CatalogFile>(&text)
            .with_context(|| format!("invalid model catalog {}", path.display()))?
    } else {
        CatalogFile { model: Vec::new() }
    };
    match file.model.iter_mut().find(|m| m.name == entry.name) {
        Some(old) => *old = entry,
        None => file.model.push(entry),
    }
    let text = format!(
        "# lai's local model catalog, merged over the built-in one (`lai models list`).\n\
         # Written by `lai models add`; entries may be edited by hand (comments are not kept).\n\n{}",
        toml::to_string(&file).context("cannot write the catalog as TOML. This is a bug.")?
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temporary = path.with_extension("toml.partial");
    std::fs::write(&temporary, text)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The role a file given to `lai models add` plays, from its name.
pub fn role_from_name(path: &Path) -> &'static str {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match name.as_str() {
        "tokenizer.json" => "tokenizer",
        "config.json" => "config",
        _ if name.starts_with("license") => "license",
        _ => "model",
    }
}

/// The engine of a model file, from its extension: .gguf llama, .onnx onnx, else whisper.
pub fn engine_from_name(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gguf") => "llama",
        Some("onnx") => "onnx",
        _ => "whisper",
    }
}

/// A catalog entry for files the user brings, each hashed and pinned by its absolute path.
pub fn local_entry(
    name: &str,
    engine: &str,
    files: &[(String, PathBuf)],
    license: &str,
) -> anyhow::Result<ModelEntry> {
    let file = files
        .iter()
        .map(|(role, path)| {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let size = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            Ok(FileEntry {
                role: role.clone(),
                path: path.display().to_string(),
                size,
                sha256: sha256_file(&path)?,
                url: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listed: Vec<String> = file
        .iter()
        .map(|f| format!("{} {}", f.role, f.path))
        .collect();
    Ok(ModelEntry {
        name: name.to_string(),
        engine: engine.to_string(),
        description: format!("added with `lai models add`: {}", listed.join(", ")),
        license: license.to_string(),
        attribution: None,
        encoder: (engine == "onnx").then(|| {
            let paths: Vec<&Path> = files.iter().map(|(_, p)| p.as_path()).collect();
            let found = facts::EncoderHints::beside(&paths);
            EncoderConfig {
                max_tokens: found.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                pooling: Some(found.pooling.unwrap_or_else(|| "mean".into())),
                normalize: found.normalize.unwrap_or(true),
            }
        }),
        build: None,
        pypi: None,
        file,
        origin: String::new(),
    })
}

/// The models directory: the flag, else `$LAI_MODELS_DIR`, else `$XDG_DATA_HOME/lai/models`,
/// else `~/.local/share/lai/models`.
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("LAI_MODELS_DIR") {
        return dir;
    }
    let data = env("XDG_DATA_HOME").unwrap_or_else(|| {
        env("HOME")
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".local/share")
    });
    data.join("lai/models")
}

/// What is on disk for one catalog file.
#[derive(Debug, PartialEq)]
pub enum FileState {
    Ok,
    /// Present, but the catalog pins no sha256 for it.
    Unpinned,
    Missing,
    WrongSize {
        actual: u64,
    },
    WrongHash {
        actual: String,
    },
}

impl FileState {
    pub fn is_usable(&self) -> bool {
        matches!(self, FileState::Ok | FileState::Unpinned)
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileState::Ok => write!(f, "ok"),
            FileState::Unpinned => write!(f, "present (no sha256 pinned)"),
            FileState::Missing => write!(f, "missing"),
            FileState::WrongSize { .. } => write!(f, "corrupt (wrong size)"),
            FileState::WrongHash { .. } => write!(f, "corrupt (wrong sha256)"),
        }
    }
}

/// Checks one file: size first (cheap; catches truncation), then sha256.
pub fn check_file(dir: &Path, file: &FileEntry) -> anyhow::Result<FileState> {
    let path = dir.join(&file.path);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if file.sha256.is_empty() {
        return Ok(FileState::Unpinned);
    }
    if meta.len() != file.size {
        return Ok(FileState::WrongSize { actual: meta.len() });
    }
    let actual = sha256_file(&path)?;
    Ok(if actual == file.sha256 {
        FileState::Ok
    } else {
        FileState::WrongHash { actual }
    })
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Where models come from in a run, and whether they are verified.
pub struct ModelStore {
    pub catalog: Catalog,
    pub dir: PathBuf,
    pub verify: bool,
}

/// A model whose files were found (and, unless opted out, verified) before any engine loads it.
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedModel {
    pub name: String,
    pub engine: String,
    pub files: Vec<ResolvedFile>,
    pub encoder: Option<EncoderConfig>,
    /// False when `--no-verify` was given or a file has no pinned sha256.
    pub verified: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResolvedFile {
    pub role: String,
    pub path: PathBuf,
    /// The sha256 checked against the pin, or for an unpinned file the one computed now; ""
    /// only under `--no-verify` for an unpinned file.
    pub sha256: String,
}

impl ResolvedModel {
    /// The path of the file with this role ("model", "tokenizer", ...).
    pub fn file(&self, role: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|f| f.role == role)
            .map(|f| f.path.as_path())
    }

    /// The sha256 of its main file (the `model` file, else the first), for provenance.
    pub fn main_sha256(&self) -> String {
        self.files
            .iter()
            .find(|f| f.role == "model")
            .or(self.files.first())
            .map_or(String::new(), |f| f.sha256.clone())
    }
}

/// A model a stage uses: a catalog name, or files given by path in the pipeline.
#[derive(Clone, Debug)]
pub enum ModelRef {
    Catalog(String),
    Files(FileModel),
}

/// A model given by path (`model = { path = "...", sha256 = "..." }`): it becomes an in-memory
/// catalog entry, so engines and provenance treat it like any other.
#[derive(Clone, Debug)]
pub struct FileModel {
    pub engine: String,
    /// The main file (role "model") first, then the others by role.
    pub files: Vec<PinnedFile>,
    pub encoder: Option<EncoderConfig>,
    /// Where it was written, for messages: "`model` in [[stage]] 2 (llm) of p.toml".
    pub origin: String,
}

#[derive(Clone, Debug)]
pub struct PinnedFile {
    pub role: String,
    pub path: PathBuf,
    /// The sha256 the pipeline pins, if any.
    pub sha256: Option<String>,
}

impl ModelRef {
    /// The name a run knows it by: the catalog name, or the main file's path.
    pub fn name(&self) -> String {
        match self {
            ModelRef::Catalog(name) => name.clone(),
            ModelRef::Files(model) => model.files[0].path.display().to_string(),
        }
    }

    /// The model option `key` of a validated component (`Ty::Model(shape)`): a catalog name,
    /// or a table of files by path, relative to the pipeline file's folder. `None` when unset.
    pub fn from_option(
        options: &Options,
        key: &str,
        shape: &ModelShape,
        diag: &mut Diagnostics,
    ) -> Option<ModelRef> {
        let node = options.node(key)?;
        let Value::Table(entries) = node.value else {
            return Some(ModelRef::Catalog(options.str(key)));
        };
        let text = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .and_then(|e| match &e.node.value {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
        };
        let pinned = |role: &str, node: &Node| -> Option<PinnedFile> {
            let (path, sha256) = match &node.value {
                Value::Str(path) => (path.clone(), None),
                Value::Table(file) => {
                    let get = |k: &str| {
                        file.iter()
                            .find(|e| e.key == k)
                            .and_then(|e| match &e.node.value {
                                Value::Str(s) => Some(s.clone()),
                                _ => None,
                            })
                    };
                    (get("path")?, get("sha256"))
                }
                _ => return None,
            };
            Some(PinnedFile {
                role: role.to_string(),
                path: diag.path_in_file(&path),
                sha256: sha256.map(|s| s.to_ascii_lowercase()),
            })
        };
        let mut files = vec![PinnedFile {
            role: shape.role.into(),
            path: diag.path_in_file(&text("path")?),
            sha256: text("sha256").map(|s| s.to_ascii_lowercase()),
        }];
        for entry in &entries {
            if shape.files.iter().any(|(role, _)| *role == entry.key) {
                files.push(pinned(&entry.key, &entry.node)?);
            }
        }
        let number = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .and_then(|e| match e.node.value {
                    Value::Int(n) => usize::try_from(n).ok(),
                    _ => None,
                })
        };
        let flag = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| matches!(e.node.value, Value::Bool(true)))
        };
        let origin = format!("`{key}` in {}", options.context);
        let mut encoder = None;
        if shape.encoder {
            let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
            let found = facts::EncoderHints::beside(&paths);
            let beside =
                "sentence_bert_config.json, 1_Pooling/config.json or config.json beside the model";
            let Some(max_tokens) = number("max_tokens").or(found.max_tokens) else {
                diag.error(
                    &options.span_of(key),
                    format!("{origin}: the model's window cannot be read from {beside}; set `max_tokens` in the table (512 for BERT-style models)"),
                );
                return None;
            };
            let pooling = text("pooling").or(found.pooling);
            match pooling.as_deref() {
                _ if !shape.pooled => {}
                Some(p) if crate::options::POOLINGS.contains(&p) => {}
                Some(other) => {
                    diag.error(
                        &options.span_of(key),
                        format!("{origin}: the model's export pools by `{other}`, which lai does not do; lai pools by \"mean\" or \"cls\" (set `pooling` only if the model was trained for it)"),
                    );
                    return None;
                }
                None => {
                    diag.error(
                        &options.span_of(key),
                        format!("{origin}: how to pool the model's token vectors cannot be read from {beside}; set `pooling = \"mean\"` or `\"cls\"` in the table, as the model card says"),
                    );
                    return None;
                }
            }
            encoder = Some(EncoderConfig {
                max_tokens,
                pooling,
                normalize: flag("normalize").or(found.normalize).unwrap_or(true),
            });
        }
        Some(ModelRef::Files(FileModel {
            engine: shape.engine.to_string(),
            files,
            encoder,
            origin: format!("{origin} of {}", diag.file()),
        }))
    }
}

/// A whisper.cpp ggml model (f16 or quantized), for `transcribe`.
pub const WHISPER: ModelShape = ModelShape {
    engine: "whisper",
    role: "model",
    files: &[],
    encoder: false,
    pooled: false,
};
/// whisper.cpp's Silero VAD model, for `transcribe`'s `vad_model`.
pub const VAD: ModelShape = ModelShape {
    engine: "whisper",
    role: "vad",
    files: &[],
    encoder: false,
    pooled: false,
};
/// A GGUF model, for `llm`.
pub const LLAMA: ModelShape = ModelShape {
    engine: "llama",
    role: "model",
    files: &[],
    encoder: false,
    pooled: false,
};
/// A sentence-embedding ONNX model and its tokenizer.json, for `embed` and `classify`.
pub const TEXT_ENCODER: ModelShape = ModelShape {
    engine: "onnx",
    role: "model",
    files: &[("tokenizer", true)],
    encoder: true,
    pooled: true,
};
/// A token-classification ONNX model, its tokenizer.json and the config.json with its labels
/// (`id2label`), for `redact`'s NER.
pub const TOKEN_CLASSIFIER: ModelShape = ModelShape {
    engine: "onnx",
    role: "model",
    files: &[("tokenizer", true), ("config", true)],
    encoder: true,
    pooled: false,
};

/// The window `lai models add` writes for a text encoder whose export does not say (BERT's).
pub const DEFAULT_MAX_TOKENS: usize = 512;

impl FileModel {
    /// The catalog entry it stands for; its files must exist.
    fn entry(&self, name: &str) -> anyhow::Result<ModelEntry> {
        let file = self
            .files
            .iter()
            .map(|f| {
                let size = std::fs::metadata(&f.path)
                    .with_context(|| {
                        format!(
                            "{}: the {} file {} cannot be read; check the path (a relative path \
                             starts at the pipeline file's folder)",
                            self.origin,
                            f.role,
                            f.path.display()
                        )
                    })?
                    .len();
                Ok(FileEntry {
                    role: f.role.clone(),
                    path: f.path.display().to_string(),
                    size,
                    sha256: f.sha256.clone().unwrap_or_default(),
                    url: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(ModelEntry {
            name: name.to_string(),
            engine: self.engine.clone(),
            description: format!("given by path in {}", self.origin),
            license: String::new(),
            attribution: None,
            encoder: self.encoder.clone(),
            build: None,
            pypi: None,
            file,
            origin: self.origin.clone(),
        })
    }
}

/// What the models' own files say of them (see `facts`), by the names a run knows them by.
pub fn read_facts(models: &[ResolvedModel]) -> anyhow::Result<facts::ModelFacts> {
    facts::ModelFacts::read(
        models
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.engine.as_str(), m.file("model")?))),
    )
}

impl ModelStore {
    /// Finds and verifies each model, once each.
    pub fn resolve_all(&self, mut models: Vec<ModelRef>) -> anyhow::Result<Vec<ResolvedModel>> {
        models.sort_by_key(ModelRef::name);
        models.dedup_by_key(|m| m.name());
        models.iter().map(|m| self.resolve(m)).collect()
    }

    /// Finds and verifies every file of a model, or says exactly what is wrong and how to fix it.
    pub fn resolve(&self, model: &ModelRef) -> anyhow::Result<ResolvedModel> {
        let name = model.name();
        match model {
            ModelRef::Catalog(_) => {
                let entry = self
                    .catalog
                    .select(std::slice::from_ref(&name))?
                    .into_iter()
                    .next()
                    .expect("select returns one entry per name. This is a bug.");
                if let Some(local) = runtime_override(entry)? {
                    return Ok(local);
                }
                // Files in the models directory come from a source; files elsewhere, from the user.
                let in_models_dir = entry.file.iter().all(|f| Path::new(&f.path).is_relative());
                let fix = if in_models_dir {
                    format!(
                        "fetch it again with `lai models pull {name}` or `scripts/fetch-models.py {name}`"
                    )
                } else {
                    format!(
                        "check the file, or run `lai models add {name} ...` again if it was \
                         replaced on purpose (catalog {})",
                        entry.origin
                    )
                };
                self.check_entry(entry, &fix)
            }
            ModelRef::Files(files) => {
                let fix = format!(
                    "check the file, or set the `sha256` of {} to the new file's if it was \
                     replaced on purpose",
                    files.origin
                );
                self.check_entry(&files.entry(&name)?, &fix)
            }
        }
    }

    /// Checks every file of `entry`; a file without a pin is hashed, so the run records what
    /// it used, and a warning says it is unpinned.
    fn check_entry(&self, entry: &ModelEntry, fix: &str) -> anyhow::Result<ResolvedModel> {
        let name = &entry.name;
        let mut verified = self.verify;
        let mut files = Vec::new();
        let mut unpinned = Vec::new();
        for file in &entry.file {
            let path = self.dir.join(&file.path);
            let mut sha256 = file.sha256.clone();
            if !self.verify {
                if !path.exists() {
                    anyhow::bail!("model `{name}`: {} is missing; {fix}", path.display());
                }
            } else {
                match check_file(&self.dir, file)? {
                    FileState::Ok => {}
                    FileState::Unpinned => {
                        verified = false;
                        sha256 = sha256_file(&path)?;
                        unpinned.push(format!("{} (sha256 {sha256})", path.display()));
                    }
                    FileState::Missing => anyhow::bail!(
                        "model `{name}` is not installed: {} is missing (models directory {}); {fix}",
                        path.display(),
                        self.dir.display()
                    ),
                    FileState::WrongSize { actual } => anyhow::bail!(
                        "model `{name}`: {} is {actual} bytes, expected {} (truncated or replaced); \
                         refusing to load it (expected sha256 {}); {fix}",
                        path.display(),
                        file.size,
                        file.sha256
                    ),
                    FileState::WrongHash { actual } => anyhow::bail!(
                        "model `{name}`: {} has sha256 {actual}, expected {}; refusing to load a \
                         corrupted or swapped file; {fix}",
                        path.display(),
                        file.sha256
                    ),
                }
            }
            files.push(ResolvedFile {
                role: file.role.clone(),
                path,
                sha256,
            });
        }
        if !unpinned.is_empty() {
            stderr_line!(
                "warning: model `{name}` is not pinned: {} used as found, recorded by its sha256 \
                 and the run marked unverified; pin it with `sha256 = \"...\"`",
                unpinned.join(", ")
            );
        }
        Ok(ResolvedModel {
            name: name.to_string(),
            engine: entry.engine.clone(),
            files,
            encoder: entry.encoder.clone(),
            verified,
        })
    }
}

/// Environment variable naming a libonnxruntime to use instead of the catalog's.
pub const ONNX_RUNTIME_ENV: &str = "LAI_ONNXRUNTIME";

/// The runtime library named by `$LAI_ONNXRUNTIME` in place of the catalog's, if set: it has no
/// pin, so it is hashed, reported with its actual sha256 and marked unverified, with a warning.
fn runtime_override(entry: &ModelEntry) -> anyhow::Result<Option<ResolvedModel>> {
    let Some(path) = std::env::var_os(ONNX_RUNTIME_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if entry.engine != "runtime" {
        return Ok(None);
    }
    let path = PathBuf::from(path);
    let sha256 = sha256_file(&path).with_context(|| {
        format!(
            "{ONNX_RUNTIME_ENV} names {}, which cannot be read; point it at a libonnxruntime.so \
             (1.31) or unset it to use the catalog's `{}`",
            path.display(),
            entry.name
        )
    })?;
    stderr_line!(
        "warning: using ONNX Runtime from {ONNX_RUNTIME_ENV}={} (sha256 {sha256}): not pinned by \
         the catalog, so the run is marked unverified",
        path.display()
    );
    let role = entry.file.first().map_or("library", |f| f.role.as_str());
    Ok(Some(ResolvedModel {
        name: entry.name.clone(),
        engine: entry.engine.clone(),
        files: vec![ResolvedFile {
            role: role.to_string(),
            path,
            sha256,
        }],
        encoder: None,
        verified: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shipped catalog parses, and every file outside conversions is pinned.
    #[test]
    fn builtin_catalog_is_valid() {
        let catalog = Catalog::load(None).unwrap();
        for name in [
            "whisper-tiny-en",
            "whisper-base",
            "silero-vad",
            "smollm2-135m-instruct",
            "all-minilm-l6-v2",
            "all-minilm-l6-v2-int8",
            "rampart-pii",
            "onnxruntime",
        ] {
            let model = catalog
                .get(name)
                .unwrap_or_else(|| panic!("{name} is in the catalog"));
            for f in &model.file {
                assert_eq!(f.sha256.len(), 64, "{name} {}", f.path);
                assert!(f.size > 0);
            }
        }
        assert!(catalog.get("rampart-pii").unwrap().attribution.is_some());
    }

    // A truncated file and one with a flipped byte are both refused, naming model, path and hashes.
    #[test]
    fn refuses_truncated_and_flipped() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"weights weights weights".to_vec();
        let catalog = Catalog::parse(
            &format!(
                "[[model]]\nname = \"m\"\nengine = \"onnx\"\ndescription = \"d\"\nlicense = \"MIT\"\n\
                 [[model.file]]\nrole = \"model\"\npath = \"m/w.bin\"\nsize = {}\nsha256 = \"{}\"\n",
                content.len(),
                hex::encode(Sha256::digest(&content))
            ),
            "test",
        )
        .unwrap();
        let store = ModelStore {
            catalog,
            dir: dir.path().to_path_buf(),
            verify: true,
        };
        let err = store
            .resolve(&ModelRef::Catalog("m".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not installed") && err.contains("lai models pull m"));
        std::fs::create_dir(dir.path().join("m")).unwrap();
        let path = dir.path().join("m/w.bin");
        std::fs::write(&path, &content[..10]).unwrap();
        let err = store
            .resolve(&ModelRef::Catalog("m".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated") && err.contains("w.bin"), "{err}");
        let mut flipped = content.clone();
        flipped[3] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = store
            .resolve(&ModelRef::Catalog("m".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has sha256") && err.contains("expected"),
            "{err}"
        );
        std::fs::write(&path, &content).unwrap();
        assert!(
            store
                .resolve(&ModelRef::Catalog("m".into()))
                .unwrap()
                .verified
        );
    }
}
