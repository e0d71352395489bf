//! Models: the catalog (`models.toml`, built into the binary), the models directory, and
//! verification, so that no native engine ever sees a file whose sha256 does not match.
//!
//! A stage names its models; before a run starts, `ModelStore::resolve` finds each file in the
//! models directory and checks size and sha256 (unless the user opted out with `--no-verify`,
//! which the run report records). This module never loads a model.

pub mod pull;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The catalog shipped with this build.
const BUILTIN_CATALOG: &str = include_str!("../../models.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<ModelEntry>,
}

/// One `[[model]]` of the catalog.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub engine: String,
    pub description: String,
    pub license: String,
    /// Credit a licence requires (CC-BY), shown by `lai models list`.
    pub attribution: Option<String>,
    pub file: Vec<FileEntry>,
    /// How an ONNX text encoder is used: its window and, for sentence embeddings, pooling.
    pub encoder: Option<EncoderConfig>,
    /// `"cuda"` for a model only the CUDA build uses (ONNX Runtime's CUDA library).
    pub build: Option<String>,
    /// The package-registry source; read by `scripts/fetch-models.py`, not by lai.
    #[allow(dead_code)]
    pub pypi: Option<toml::Value>,
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
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub role: String,
    /// Relative to the models directory.
    pub path: String,
    pub size: u64,
    /// Empty for a file the user brings without a pin; such a file is used unverified.
    #[serde(default)]
    pub sha256: String,
    /// Upstream download for `lai models pull`.
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
    /// The catalog given with `--catalog` (or `$LAI_CATALOG`), else the built-in one.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Catalog> {
        let Some(path) = path else {
            return Catalog::parse(BUILTIN_CATALOG, "built-in models.toml");
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model catalog {}", path.display()))?;
        Catalog::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, source: &str) -> anyhow::Result<Catalog> {
        let file: CatalogFile =
            toml::from_str(text).with_context(|| format!("invalid model catalog {source}"))?;
        Ok(Catalog {
            models: file.model,
            source: source.to_string(),
        })
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
    /// The catalog's sha256 (what was checked), or "" if unpinned.
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

impl ModelStore {
    /// Finds and verifies each of `names`, once each.
    pub fn resolve_all(&self, mut names: Vec<String>) -> anyhow::Result<Vec<ResolvedModel>> {
        names.sort();
        names.dedup();
        names.iter().map(|n| self.resolve(n)).collect()
    }

    /// Finds and verifies every file of `name`, or says exactly what is wrong and how to fix it.
    pub fn resolve(&self, name: &str) -> anyhow::Result<ResolvedModel> {
        let entry = self
            .catalog
            .select(&[name.to_string()])?
            .into_iter()
            .next()
            .expect("select returns one entry per name. This is a bug.");
        let fix = format!(
            "fetch it again with `lai models pull {name}` or `scripts/fetch-models.py {name}`"
        );
        let mut verified = self.verify;
        let mut files = Vec::new();
        if let Some(local) = runtime_override(entry)? {
            return Ok(local);
        }
        for file in &entry.file {
            let path = self.dir.join(&file.path);
            if !self.verify {
                if !path.exists() {
                    anyhow::bail!("model `{name}`: {} is missing; {fix}", path.display());
                }
            } else {
                match check_file(&self.dir, file)? {
                    FileState::Ok => {}
                    FileState::Unpinned => verified = false,
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
                sha256: file.sha256.clone(),
            });
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
        let err = store.resolve("m").unwrap_err().to_string();
        assert!(err.contains("not installed") && err.contains("lai models pull m"));
        std::fs::create_dir(dir.path().join("m")).unwrap();
        let path = dir.path().join("m/w.bin");
        std::fs::write(&path, &content[..10]).unwrap();
        let err = store.resolve("m").unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("w.bin"), "{err}");
        let mut flipped = content.clone();
        flipped[3] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = store.resolve("m").unwrap_err().to_string();
        assert!(
            err.contains("has sha256") && err.contains("expected"),
            "{err}"
        );
        std::fs::write(&path, &content).unwrap();
        assert!(store.resolve("m").unwrap().verified);
    }
}
